//! SSL objects: certificates and keys (PEM or secret references), SNIs, client verification,
//! and the server/client `oneOf`.

use serde_json::{Map, Value, json};

use super::CheckError;
use super::primitives::{
    SResult, array_of, default, host_def, id_def, int_enum, integer, labels_def, nested, object,
    opt, str_enum, string,
};

pub(super) fn check_ssl(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    (|| -> SResult {
        opt(obj, "id", id_def)?;
        opt(obj, "labels", labels_def)?;
        opt(obj, "cert", cert_def)?;
        opt(obj, "key", key_def)?;
        opt(obj, "certs", |v| array_of(v, 0, cert_def))?;
        opt(obj, "keys", |v| array_of(v, 0, key_def))?;
        opt(obj, "sni", host_def)?;
        opt(obj, "snis", |v| array_of(v, 1, host_def))?;
        opt(obj, "status", |v| int_enum(v, &[0, 1]))?;
        opt(obj, "type", |v| str_enum(v, &["server", "client"]))?;
        opt(obj, "ssl_protocols", |v| {
            array_of(v, 0, |i| str_enum(i, &["TLSv1.1", "TLSv1.2", "TLSv1.3"]))
        })?;
        for t in [
            "exptime",
            "validity_start",
            "validity_end",
            "create_time",
            "update_time",
        ] {
            opt(obj, t, |v| integer(v, None, None))?;
        }
        if let Some(Value::Object(client)) = obj.get_mut("client") {
            default(client, "depth", json!(1));
        }
        opt(obj, "client", |v| {
            let m = object(v)?;
            match m.get("ca") {
                Some(ca) => nested("ca", cert_def(ca))?,
                None => return Err("property \"ca\" is required".into()),
            }
            nested("depth", integer(&m["depth"], Some(0), None))
        })?;
        let is_server = obj.get("type").and_then(Value::as_str) != Some("client");
        let has = |k: &str| obj.contains_key(k);
        if is_server {
            let a = has("sni") && has("key") && has("cert");
            let b = has("snis") && has("key") && has("cert");
            match (a, b) {
                (false, false) => {
                    return Err("value should match only one schema, but matches none".into());
                }
                (true, true) => {
                    return Err(
                        "value should match only one schema, but matches both schemas 1 and 2"
                            .into(),
                    );
                }
                _ => {}
            }
        } else if !(has("key") && has("cert")) {
            return Err("object matches none of the required".into());
        }
        default(obj, "type", json!("server"));
        default(obj, "status", json!(1));
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    let certs = obj
        .get("certs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if certs != keys {
        return Err(CheckError::Plain(
            "mismatched number of certs and keys".into(),
        ));
    }
    Ok(())
}

/// Certificates: a PEM of at least 128 characters, or a `$secret://` / `$env://` reference.
fn cert_def(v: &Value) -> SResult {
    if v.as_str().is_some_and(is_secret_ref) {
        return Ok(());
    }
    string(v, 128, 64 * 1024)
}

/// Private keys: at least 32 characters (domain.md §1.1), or a secret reference.
fn key_def(v: &Value) -> SResult {
    if v.as_str().is_some_and(is_secret_ref) {
        return Ok(());
    }
    string(v, 32, 64 * 1024)
}

fn is_secret_ref(s: &str) -> bool {
    s.starts_with("$secret://") || s.starts_with("$env://")
}
