//! Run-time checks of JSON values against a step's declared schemas: the input a step gets once
//! its `${{ }}` expressions are evaluated, and the output it returns. The same subset as the
//! checks of `with:` before the run (see the module documentation), with JSON Schema's own rule
//! for objects: properties not listed are allowed unless `additionalProperties` says otherwise.
//!
//! Problems are reported by path (`with.ttl`, `outputs.changes[2].kind`) with the kind of value
//! found, never the value itself: a step's output is untrusted text and may hold a secret the
//! masking has not seen (only `enum`/`const` mismatches quote the schema's allowed values).
//!
//! Cost: linear in the size of the value times the schema's branching (`anyOf`/`oneOf` try each
//! branch); at most [`MAX_PROBLEMS`] are kept.

use serde_json::Value as Json;

use super::value::{declared_types, resolve, type_name};

/// Problems kept per value (the first ones, in document order).
pub const MAX_PROBLEMS: usize = 5;
const MAX_DEPTH: usize = 64;

/// A numeric bound: its keyword, when a value fails it, and how a message says it.
type Bound = (&'static str, fn(f64, f64) -> bool, &'static str);

/// Checks `value` against `schema` (a schema root: its local `$ref`s resolve against it);
/// `path` names the value in messages (`with`, `outputs`). Empty when the value conforms.
pub fn check_json(schema: &Json, value: &Json, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, schema, value, path, 0, &mut out);
    out.truncate(MAX_PROBLEMS);
    out
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if is_integer(n) => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn has_type(v: &Json, t: &str) -> bool {
    match (t, v) {
        ("null", Json::Null)
        | ("boolean", Json::Bool(_))
        | ("number", Json::Number(_))
        | ("string", Json::String(_))
        | ("array", Json::Array(_))
        | ("object", Json::Object(_)) => true,
        ("integer", Json::Number(n)) => is_integer(n),
        _ => false,
    }
}

/// A schema's allowed value for a message: short, one line (schemas come from the component,
/// and are shown, not run).
fn show(v: &Json) -> String {
    let s = v.to_string();
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > 40 {
        format!("`{}…`", s.chars().take(40).collect::<String>())
    } else {
        format!("`{s}`")
    }
}

fn walk(root: &Json, schema: &Json, v: &Json, path: &str, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || out.len() >= MAX_PROBLEMS {
        return;
    }
    let schema = resolve(root, schema);
    if schema == &Json::Bool(false) {
        out.push(format!("`{path}` is not allowed"));
        return;
    }
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(list) = obj.get("allOf").and_then(Json::as_array) {
        for s in list {
            walk(root, s, v, path, depth + 1, out);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = obj.get(key).and_then(Json::as_array)
            && !list.is_empty()
            && list.iter().all(|s| {
                let mut trial = Vec::new();
                walk(root, s, v, path, depth + 1, &mut trial);
                !trial.is_empty()
            })
        {
            out.push(format!("`{path}` matches none of the allowed forms"));
            return;
        }
    }
    if let Some(t) = obj.get("type") {
        let types = declared_types(t);
        if !types.is_empty() && !types.iter().any(|t| has_type(v, t)) {
            let want: Vec<&str> = types.iter().map(|t| type_name(t)).collect();
            out.push(format!(
                "`{path}` must be {}, found {}",
                want.join(" or "),
                kind(v)
            ));
            return;
        }
    }
    if let Some(list) = obj.get("enum").and_then(Json::as_array)
        && !list.iter().any(|e| same(e, v))
    {
        let shown: Vec<String> = list.iter().take(10).map(show).collect();
        out.push(format!(
            "`{path}` must be one of {}{}, found another {}",
            shown.join(", "),
            if list.len() > 10 { ", …" } else { "" },
            kind(v).trim_start_matches("an ").trim_start_matches("a ")
        ));
    }
    if let Some(c) = obj.get("const")
        && !same(c, v)
    {
        out.push(format!("`{path}` must be {}", show(c)));
    }
    match v {
        Json::Number(n) => {
            let Some(f) = n.as_f64() else { return };
            let bound = |k: &str| obj.get(k).and_then(Json::as_f64);
            let checks: [Bound; 4] = [
                ("minimum", |f, m| f < m, "at least"),
                ("maximum", |f, m| f > m, "at most"),
                ("exclusiveMinimum", |f, m| f <= m, "greater than"),
                ("exclusiveMaximum", |f, m| f >= m, "less than"),
            ];
            for (key, fails, what) in checks {
                if let Some(m) = bound(key)
                    && fails(f, m)
                {
                    out.push(format!("`{path}` must be {what} {m}, found {n}"));
                }
            }
        }
        Json::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(m) = obj.get("minLength").and_then(Json::as_u64)
                && len < m
            {
                out.push(format!("`{path}` must be at least {m} characters long"));
            }
            if let Some(m) = obj.get("maxLength").and_then(Json::as_u64)
                && len > m
            {
                out.push(format!("`{path}` must be at most {m} characters long"));
            }
        }
        Json::Array(items) => {
            let n = items.len() as u64;
            if let Some(m) = obj.get("minItems").and_then(Json::as_u64)
                && n < m
            {
                out.push(format!("`{path}` must have at least {m} items, found {n}"));
            }
            if let Some(m) = obj.get("maxItems").and_then(Json::as_u64)
                && n > m
            {
                out.push(format!("`{path}` must have at most {m} items, found {n}"));
            }
            if let Some(is @ (Json::Object(_) | Json::Bool(false))) = obj.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(root, is, item, &format!("{path}[{i}]"), depth + 1, out);
                }
            }
        }
        Json::Object(entries) => {
            let props = obj.get("properties").and_then(Json::as_object);
            if let Some(req) = obj.get("required").and_then(Json::as_array) {
                for r in req.iter().filter_map(Json::as_str) {
                    if !entries.contains_key(r) {
                        out.push(format!("`{path}.{r}` is required and missing"));
                    }
                }
            }
            let additional = obj.get("additionalProperties");
            let open = obj.get("patternProperties").is_some();
            for (k, item) in entries {
                let child = format!("{path}.{}", printable(k));
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => walk(root, ps, item, &child, depth + 1, out),
                    None => match additional {
                        Some(Json::Bool(false)) if !open => {
                            out.push(format!("`{child}` is not a declared property"));
                        }
                        Some(s @ Json::Object(_)) => walk(root, s, item, &child, depth + 1, out),
                        _ => {}
                    },
                }
            }
        }
        _ => {}
    }
}

/// JSON Schema equality: numbers by value (`1` equals `1.0`), the rest structurally.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// A key of the checked value, as it may appear in a message: at most 64 characters, no
/// control characters (the value may come from a step).
fn printable(k: &str) -> String {
    let k: String = k
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if k.chars().count() > 64 {
        format!("{}…", k.chars().take(64).collect::<String>())
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conforming_values_pass() {
        let s = json!({
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "integer", "minimum": 100, "maximum": 599},
                "kind": {"enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "any": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "n": {"$ref": "#/$defs/n"}
            },
            "$defs": {"n": {"type": "number"}}
        });
        let v = json!({"status": 200.0, "kind": "a", "tags": ["x"], "any": null, "n": 1.5,
                       "extra": true});
        assert_eq!(check_json(&s, &v, "outputs"), Vec::<String>::new());
        // `true` and an empty schema accept everything.
        assert!(check_json(&json!(true), &json!([1, {}]), "outputs").is_empty());
        assert!(check_json(&json!({}), &json!("x"), "outputs").is_empty());
    }

    #[test]
    fn problems_name_the_path_and_the_kind_found_not_the_value() {
        let s = json!({
            "type": "object",
            "required": ["status", "region"],
            "additionalProperties": false,
            "properties": {
                "status": {"type": "integer"},
                "region": {"type": "string", "minLength": 2},
                "changes": {"type": "array", "items": {
                    "type": "object", "properties": {"kind": {"enum": ["create", "delete"]}}
                }}
            }
        });
        let v = json!({"status": "200-secret", "changes": [{"kind": "create"}, {"kind": "drop"}],
                       "tok\u{1b}en": 1});
        let p = check_json(&s, &v, "outputs");
        assert_eq!(
            p,
            vec![
                "`outputs.region` is required and missing",
                "`outputs.status` must be an integer, found a string",
                "`outputs.changes[1].kind` must be one of `\"create\"`, `\"delete\"`, found another string",
                "`outputs.tok?en` is not a declared property",
            ]
        );
        assert!(!p.iter().any(|m| m.contains("secret") || m.contains("drop")));
    }

    #[test]
    fn numbers_bounds_lists_and_forms() {
        let s = json!({"type": "object", "properties": {
            "ttl": {"type": "integer", "minimum": 1, "exclusiveMaximum": 86400},
            "w": {"type": "number"},
            "xs": {"type": "array", "minItems": 1, "maxItems": 2},
            "one": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "c": {"const": 1},
            "no": false
        }});
        let v = json!({"ttl": 0.5, "w": "1", "xs": [], "one": [], "c": 1.0, "no": 1});
        assert_eq!(
            check_json(&s, &v, "with"),
            vec![
                "`with.ttl` must be an integer, found a number",
                "`with.w` must be a number, found a string",
                "`with.xs` must have at least 1 items, found 0",
                "`with.one` matches none of the allowed forms",
                "`with.no` is not allowed",
            ]
        );
        let v = json!({"ttl": 86400, "xs": [1, 2, 3]});
        assert_eq!(
            check_json(&s, &v, "with"),
            vec![
                "`with.ttl` must be less than 86400, found 86400",
                "`with.xs` must have at most 2 items, found 3",
            ]
        );
    }

    #[test]
    fn at_most_a_few_problems_and_bounded_depth() {
        let s = json!({"type": "array", "items": {"type": "string"}});
        let v = json!([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(check_json(&s, &v, "outputs").len(), MAX_PROBLEMS);
        // A schema that refers to itself forever does not loop.
        let s = json!({"$ref": "#"});
        assert!(check_json(&s, &json!(1), "outputs").is_empty());
        let s = json!({"type": "array", "items": {"$ref": "#"}});
        let mut v = json!([]);
        for _ in 0..200 {
            v = json!([v]);
        }
        assert!(check_json(&s, &v, "outputs").is_empty());
    }
}
