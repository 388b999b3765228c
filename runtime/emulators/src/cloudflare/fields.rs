//! Field checks and defaults shared by the monitor, pool and load balancer validators.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::envelope::CfError;

pub(super) fn default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_owned(), v);
    }
}

pub(super) fn int_in(m: &Map<String, Value>, k: &str, lo: i64, hi: i64) -> Result<(), CfError> {
    match m.get(k) {
        None => Ok(()),
        Some(v) => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(CfError::invalid(format!(
                "{k} must be an integer between {lo} and {hi}"
            ))),
        },
    }
}

pub(super) fn bool_field(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(CfError::invalid(format!("{k} must be a boolean"))),
    }
}

pub(super) fn string_field(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(CfError::invalid(format!("{k} must be a string"))),
    }
}

/// `header` maps: header name to a list of values.
pub(super) fn header_map(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None => Ok(()),
        Some(Value::Object(h))
            if h.values()
                .all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) =>
        {
            Ok(())
        }
        Some(_) => Err(CfError::invalid(format!(
            "{k} must map header names to arrays of strings"
        ))),
    }
}

pub(super) fn valid_address(a: &str) -> bool {
    a.parse::<IpAddr>().is_ok()
        || (!a.is_empty()
            && a.len() <= 253
            && a.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}
