//! Monitors: validation and Cloudflare's defaults (`/accounts/{account}/load_balancers/monitors`).

use serde_json::{Map, Value, json};

use super::envelope::CfError;
use super::fields::{bool_field, default, header_map, int_in, string_field};

pub(super) fn normalize_monitor(mut m: Map<String, Value>) -> Result<Map<String, Value>, CfError> {
    const TYPES: &[&str] = &["http", "https", "tcp", "udp_icmp", "icmp_ping", "smtp"];
    default(&mut m, "type", json!("http"));
    let ty = m["type"].as_str().unwrap_or_default().to_owned();
    if !TYPES.contains(&ty.as_str()) {
        return Err(CfError::invalid(format!(
            "type must be one of {}",
            TYPES.join(", ")
        )));
    }
    let is_http = ty == "http" || ty == "https";
    if is_http {
        default(&mut m, "method", json!("GET"));
        default(&mut m, "path", json!("/"));
        let Some(codes) = m.get("expected_codes").and_then(Value::as_str) else {
            return Err(CfError::invalid(
                "expected_codes must be specified for HTTP and HTTPS monitors",
            ));
        };
        let valid = codes.len() == 3
            && codes.as_bytes()[0].is_ascii_digit()
            && codes
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'x' || b == b'X');
        if !valid {
            return Err(CfError::invalid(format!(
                "invalid expected_codes {codes:?}"
            )));
        }
        default(&mut m, "expected_body", json!(""));
        default(&mut m, "follow_redirects", json!(false));
        default(&mut m, "allow_insecure", json!(false));
        default(&mut m, "header", json!({}));
    } else if ty == "tcp" {
        default(&mut m, "method", json!("connection_established"));
    }
    default(&mut m, "port", json!(0));
    default(&mut m, "timeout", json!(5));
    default(&mut m, "retries", json!(2));
    default(&mut m, "interval", json!(60));
    default(&mut m, "consecutive_up", json!(0));
    default(&mut m, "consecutive_down", json!(0));
    default(&mut m, "probe_zone", json!(""));
    default(&mut m, "description", json!(""));
    int_in(&m, "port", 0, 65_535)?;
    int_in(&m, "timeout", 1, 10)?;
    int_in(&m, "retries", 0, 5)?;
    int_in(&m, "interval", 5, 3600)?;
    int_in(&m, "consecutive_up", 0, 100)?;
    int_in(&m, "consecutive_down", 0, 100)?;
    for k in [
        "method",
        "path",
        "expected_body",
        "probe_zone",
        "description",
    ] {
        string_field(&m, k)?;
    }
    for k in ["follow_redirects", "allow_insecure"] {
        bool_field(&m, k)?;
    }
    header_map(&m, "header")?;
    if m["timeout"].as_i64() >= m["interval"].as_i64() {
        return Err(CfError::invalid("timeout must be less than interval"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_defaults_and_validation() {
        let m = normalize_monitor(
            json!({"type": "http", "expected_codes": "200"})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m["method"], "GET");
        assert_eq!(m["path"], "/");
        assert_eq!(m["interval"], 60);
        assert_eq!(m["timeout"], 5);
        assert_eq!(m["retries"], 2);
        let tcp = normalize_monitor(json!({"type": "tcp"}).as_object().cloned().unwrap()).unwrap();
        assert_eq!(tcp["method"], "connection_established");
        let e = normalize_monitor(json!({"type": "http"}).as_object().cloned().unwrap())
            .err()
            .unwrap();
        assert_eq!(e.code, 1002);
        assert!(e.message.ends_with(": validation failed"));
    }
}
