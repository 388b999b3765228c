//! JSON helpers shared by the emulators: APISIX's PATCH merge and response builders.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Merges `patch` into `target` the way APISIX's `core.table.merge` does for `PATCH /{id}`:
/// objects merge recursively, `null` deletes the attribute, and anything else (arrays included)
/// replaces the old value whole.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (k, v) in patch_map {
        match v {
            Value::Null => {
                target_map.remove(k);
            }
            Value::Object(_) => {
                let slot = target_map.entry(k.clone()).or_insert(Value::Null);
                if slot.is_object() {
                    merge_patch(slot, v);
                } else {
                    *slot = strip_nulls(v);
                }
            }
            other => {
                target_map.insert(k.clone(), other.clone());
            }
        }
    }
}

/// A copy of `v` without `null` members (what Lua sees after decoding a fresh object).
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The Lua type name jsonschema error messages use (`got table`, `got number`, ...).
pub(crate) fn lua_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "userdata",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) | Value::Object(_) => "table",
    }
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_objects_replaces_arrays_and_deletes_nulls() {
        let mut v = json!({"a": 1, "o": {"x": 1, "y": 2}, "arr": [1, 2, 3], "gone": true});
        merge_patch(
            &mut v,
            &json!({"o": {"y": null, "z": 3}, "arr": [9], "gone": null, "new": {"k": null, "j": 1}}),
        );
        assert_eq!(
            v,
            json!({"a": 1, "o": {"x": 1, "z": 3}, "arr": [9], "new": {"j": 1}})
        );
    }

    #[test]
    fn lua_types() {
        assert_eq!(lua_type(&json!([])), "table");
        assert_eq!(lua_type(&json!({})), "table");
        assert_eq!(lua_type(&json!(1)), "number");
        assert_eq!(lua_type(&json!("s")), "string");
    }
}
