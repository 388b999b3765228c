//! Pools: validation and Cloudflare's defaults (`/accounts/{account}/load_balancers/pools`).

use serde_json::{Map, Value, json};

use super::envelope::CfError;
use super::fields::{bool_field, default, header_map, int_in, string_field, valid_address};
use super::{CfState, REGIONS};

pub(super) fn normalize_pool(
    st: &CfState,
    mut m: Map<String, Value>,
) -> Result<Map<String, Value>, CfError> {
    let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(CfError::invalid("pool name is required"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CfError::invalid(format!(
            "pool name {name:?} may contain only alphanumerics, '-' and '_'"
        )));
    }
    default(&mut m, "description", json!(""));
    default(&mut m, "enabled", json!(true));
    default(&mut m, "minimum_origins", json!(1));
    default(&mut m, "notification_email", json!(""));
    default(&mut m, "origin_steering", json!({"policy": "random"}));
    bool_field(&m, "enabled")?;
    int_in(&m, "minimum_origins", 0, 100)?;
    string_field(&m, "description")?;
    string_field(&m, "notification_email")?;
    match m.get("monitor") {
        None | Some(Value::Null) => {}
        Some(Value::String(mon)) => {
            if !st.monitors.iter().any(|x| x["id"] == mon.as_str()) {
                return Err(CfError::invalid(format!("monitor {mon} not found")));
            }
        }
        Some(_) => return Err(CfError::invalid("monitor must be a monitor id")),
    }
    let Some(Value::Array(origins)) = m.get_mut("origins") else {
        return Err(CfError::invalid(
            "the origin list length must be in range [1, 0]",
        ));
    };
    if origins.is_empty() {
        return Err(CfError::invalid(
            "the origin list length must be in range [1, 0]",
        ));
    }
    for o in origins.iter_mut() {
        let Value::Object(o) = o else {
            return Err(CfError::invalid("origins must be objects"));
        };
        if o.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(CfError::invalid("origin name is required"));
        }
        let address = o.get("address").and_then(Value::as_str).unwrap_or_default();
        if !valid_address(address) {
            return Err(CfError::invalid(format!(
                "invalid origin address {address:?}"
            )));
        }
        default(o, "enabled", json!(true));
        default(o, "weight", json!(1));
        bool_field(o, "enabled")?;
        match o.get("weight").and_then(Value::as_f64) {
            Some(w) if (0.0..=1.0).contains(&w) => {}
            _ => return Err(CfError::invalid("origin weight must be between 0 and 1")),
        }
        header_map(o, "header")?;
    }
    if let Some(regions) = m.get("check_regions").filter(|v| !v.is_null()) {
        let ok = regions.as_array().is_some_and(|r| {
            r.iter()
                .all(|x| x.as_str().is_some_and(|s| REGIONS.contains(&s)))
        });
        if !ok {
            return Err(CfError::invalid("invalid check_regions"));
        }
    }
    if let Some(lat) = m.get("latitude")
        && !lat.as_f64().is_some_and(|l| (-90.0..=90.0).contains(&l))
    {
        return Err(CfError::invalid("latitude must be between -90 and 90"));
    }
    if let Some(lon) = m.get("longitude")
        && !lon.as_f64().is_some_and(|l| (-180.0..=180.0).contains(&l))
    {
        return Err(CfError::invalid("longitude must be between -180 and 180"));
    }
    let policy = m["origin_steering"]["policy"].as_str().unwrap_or_default();
    if !matches!(
        policy,
        "random" | "hash" | "least_outstanding_requests" | "least_connections"
    ) {
        return Err(CfError::invalid("invalid origin_steering policy"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_and_origins_are_checked() {
        let st = CfState::default();
        let bad = normalize_pool(
            &st,
            json!({"name": "eu west", "origins": [{"name": "a", "address": "127.0.0.1"}]})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert!(bad.is_err());
        let empty = normalize_pool(
            &st,
            json!({"name": "eu", "origins": []})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(
            empty.message,
            "the origin list length must be in range [1, 0]: validation failed"
        );
        let ok = normalize_pool(
            &st,
            json!({"name": "eu-west_1", "origins": [{"name": "a", "address": "127.0.0.2"}]})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok["origins"][0]["weight"], 1);
        assert_eq!(ok["origins"][0]["enabled"], true);
        assert_eq!(ok["minimum_origins"], 1);
    }
}
