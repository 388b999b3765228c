//! The defaults this emulator fills on write, and `GET /api/schema/core`, which publishes them
//! as JSON-schema `default`s so that ADC's "merge the backend defaults, then diff" is stable.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::Res;
use super::reply::value;

/// The defaults this emulator fills, per resource type; `/api/schema/core` is derived from it.
pub(super) fn defaults(r: Res) -> Value {
    let upstream = json!({
        "type": "roundrobin",
        "scheme": "http",
        "pass_host": "pass",
        "hash_on": "vars",
        "nodes": [{"priority": 0}],
    });
    match r {
        Res::Services => json!({"type": "http", "upstream": upstream}),
        Res::ServiceUpstreams => upstream,
        Res::Routes => json!({"priority": 0}),
        Res::Ssls => json!({"type": "server", "status": 1}),
        _ => json!({}),
    }
}

/// Fills `defaults` into `v`: absent scalars are inserted, present objects are descended into,
/// and a one-element array of an object applies that object to every element.
pub(super) fn apply_defaults(v: &mut Value, defaults: &Value) {
    let (Value::Object(target), Value::Object(defs)) = (v, defaults) else {
        return;
    };
    for (k, d) in defs {
        match (target.get_mut(k), d) {
            (None, Value::Object(_) | Value::Array(_)) => {}
            (None, scalar) => {
                target.insert(k.clone(), scalar.clone());
            }
            (Some(sub @ Value::Object(_)), Value::Object(_)) => apply_defaults(sub, d),
            (Some(Value::Array(items)), Value::Array(item_defaults)) => {
                if let Some(item_def) = item_defaults.first() {
                    items.iter_mut().for_each(|i| apply_defaults(i, item_def));
                }
            }
            _ => {}
        }
    }
}

/// A JSON schema carrying `defaults` as `default`s, in the shape ADC's extractor reads.
fn schema_of(defaults: &Value) -> Value {
    match defaults {
        Value::Object(m) => json!({
            "type": "object",
            "properties": m.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect::<Map<_, _>>(),
        }),
        Value::Array(items) => json!({
            "type": "array",
            "items": items.first().map_or_else(|| json!({}), schema_of),
        }),
        Value::String(_) => json!({"type": "string", "default": defaults}),
        Value::Bool(_) => json!({"type": "boolean", "default": defaults}),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            json!({"type": "integer", "default": defaults})
        }
        _ => json!({"type": "number", "default": defaults}),
    }
}

pub(super) async fn schema_core() -> Response {
    let mut out = Map::new();
    for (name, r) in [
        ("service", Res::Services),
        ("route", Res::Routes),
        ("stream_route", Res::StreamRoutes),
        ("upstream", Res::ServiceUpstreams),
        ("consumer", Res::Consumers),
        ("consumer_credential", Res::Credentials),
        ("ssl", Res::Ssls),
    ] {
        out.insert(name.into(), schema_of(&defaults(r)));
    }
    value(&Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_nested_objects_and_array_items() {
        let mut v =
            json!({"name": "s", "upstream": {"nodes": [{"host": "a", "port": 1, "weight": 1}]}});
        apply_defaults(&mut v, &defaults(Res::Services));
        assert_eq!(v["type"], "http");
        assert_eq!(v["upstream"]["type"], "roundrobin");
        assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
        let mut bare = json!({"name": "s"});
        apply_defaults(&mut bare, &defaults(Res::Services));
        assert!(
            bare.get("upstream").is_none(),
            "absent objects are not created"
        );
    }

    #[test]
    fn schema_core_carries_the_same_defaults() {
        let s = schema_of(&defaults(Res::Services));
        assert_eq!(s["properties"]["type"]["default"], "http");
        assert_eq!(
            s["properties"]["upstream"]["properties"]["nodes"]["items"]["properties"]["priority"]["default"],
            0
        );
    }
}
