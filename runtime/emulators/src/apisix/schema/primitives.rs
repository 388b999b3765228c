//! Schema primitives, reporting in the jsonschema-for-Lua wording: type, length, range, enum and
//! pattern checks, the shared property definitions (ids, hosts, IPs, timeouts, labels) and the
//! `oneOf` helpers every resource family builds on.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::json::lua_type;

pub(super) type SResult = Result<(), String>;

pub(super) fn default(obj: &mut Map<String, Value>, key: &str, v: Value) {
    obj.entry(key.to_owned()).or_insert(v);
}

pub(super) fn nested(name: &str, r: SResult) -> SResult {
    r.map_err(|e| format!("property \"{name}\" validation failed: {e}"))
}

pub(super) fn opt(obj: &Map<String, Value>, key: &str, f: impl Fn(&Value) -> SResult) -> SResult {
    match obj.get(key) {
        Some(v) => nested(key, f(v)),
        None => Ok(()),
    }
}

pub(super) fn object(v: &Value) -> Result<&Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("wrong type: expected object, got {}", lua_type(v)))
}

pub(super) fn string(v: &Value, min: usize, max: usize) -> SResult {
    let Value::String(s) = v else {
        return Err(format!("wrong type: expected string, got {}", lua_type(v)));
    };
    let n = s.chars().count();
    if n < min {
        return Err(format!(
            "string too short, expected at least {min}, got {n}"
        ));
    }
    if n > max {
        return Err(format!("string too long, expected at most {max}, got {n}"));
    }
    Ok(())
}

pub(super) fn pattern(v: &Value, pat: &str, ok: impl Fn(&str) -> bool) -> SResult {
    let s = v.as_str().unwrap_or_default();
    if ok(s) {
        Ok(())
    } else {
        Err(format!("failed to match pattern \"{pat}\" with \"{s}\""))
    }
}

pub(super) fn integer(v: &Value, min: Option<i64>, max: Option<i64>) -> SResult {
    let Some(n) = v.as_i64() else {
        let got = if v.is_number() { "number" } else { lua_type(v) };
        return Err(format!("wrong type: expected integer, got {got}"));
    };
    if let Some(min) = min
        && n < min
    {
        return Err(format!("expected {n} to be at least {min}"));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(format!("expected {n} to be at most {max}"));
    }
    Ok(())
}

pub(super) fn number(v: &Value, min: Option<f64>, exclusive: bool) -> SResult {
    let Some(n) = v.as_f64() else {
        return Err(format!("wrong type: expected number, got {}", lua_type(v)));
    };
    if let Some(min) = min {
        if exclusive && n <= min {
            return Err(format!("expected {n} to be greater than {min}"));
        }
        if !exclusive && n < min {
            return Err(format!("expected {n} to be at least {min}"));
        }
    }
    Ok(())
}

pub(super) fn boolean(v: &Value) -> SResult {
    if v.is_boolean() {
        Ok(())
    } else {
        Err(format!("wrong type: expected boolean, got {}", lua_type(v)))
    }
}

pub(super) fn str_enum(v: &Value, allowed: &[&str]) -> SResult {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err("matches none of the enum values".into()),
    }
}

pub(super) fn int_enum(v: &Value, allowed: &[i64]) -> SResult {
    match v.as_i64() {
        Some(n) if allowed.contains(&n) => Ok(()),
        _ => Err("matches none of the enum values".into()),
    }
}

pub(super) fn array_of(v: &Value, min_items: usize, item: impl Fn(&Value) -> SResult) -> SResult {
    let Value::Array(items) = v else {
        return Err(format!("wrong type: expected array, got {}", lua_type(v)));
    };
    if items.len() < min_items {
        return Err(format!("expect array to have at least {min_items} items"));
    }
    for (i, x) in items.iter().enumerate() {
        item(x).map_err(|e| format!("failed to validate item {}: {e}", i + 1))?;
    }
    Ok(())
}

pub(super) fn id_def(v: &Value) -> SResult {
    match v {
        Value::String(_) => {
            string(v, 1, 64)?;
            pattern(v, "^[a-zA-Z0-9-_.]+$", |s| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
        }
        Value::Number(_) => integer(v, Some(1), None),
        other => Err(format!(
            "wrong type: expected string, got {}",
            lua_type(other)
        )),
    }
}

pub(super) fn host_def(v: &Value) -> SResult {
    string(v, 0, usize::MAX)?;
    pattern(v, "^\\*?[0-9a-zA-Z-._]+$", |s| {
        let body = s.strip_prefix('*').unwrap_or(s);
        !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    })
}

pub(super) fn ip_def(v: &Value) -> SResult {
    string(v, 0, usize::MAX)?;
    let s = v.as_str().unwrap_or_default();
    let ok = match s.split_once('/') {
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
            (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
            _ => false,
        },
        None => s.parse::<IpAddr>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err("object matches none of the required".into())
    }
}

pub(super) fn timeout_def(v: &Value) -> SResult {
    let m = object(v)?;
    for k in ["connect", "send", "read"] {
        match m.get(k) {
            None => return Err(format!("property \"{k}\" is required")),
            Some(x) => nested(k, number(x, Some(0.0), true))?,
        }
    }
    Ok(())
}

pub(super) fn labels_def(v: &Value) -> SResult {
    let m = object(v)?;
    if m.len() > 16 {
        return Err("expect object to have at most 16 properties".into());
    }
    for (k, val) in m {
        let r = string(val, 1, 64)
            .and_then(|()| pattern(val, "^\\S+$", |s| !s.chars().any(char::is_whitespace)));
        r.map_err(|e| format!("failed to validate {k} (matching \".*\"): {e}"))?;
    }
    Ok(())
}

pub(super) fn plugins_def(v: &Value) -> SResult {
    object(v).map(|_| ())
}

pub(super) fn one_of_required(obj: &Map<String, Value>, keys: &[&str; 2]) -> SResult {
    match (obj.contains_key(keys[0]), obj.contains_key(keys[1])) {
        (true, false) | (false, true) => Ok(()),
        (false, false) => Err("value should match only one schema, but matches none".into()),
        (true, true) => {
            Err("value should match only one schema, but matches both schemas 1 and 2".into())
        }
    }
}

pub(super) fn at_most_one(obj: &Map<String, Value>, a: &str, b: &str) -> SResult {
    if obj.contains_key(a) && obj.contains_key(b) {
        Err("value should match only one schema, but matches both schemas 2 and 3".into())
    } else {
        Ok(())
    }
}
