//! `meridian steps show NAME`: what a step takes, gives and needs, for a person. `--json` prints
//! the manifest with the full JSON Schemas instead.
//!
//! Everything here comes from the step (`describe`), so every piece is escaped for the terminal.

use std::fmt::Write as _;

use meridian_sandbox::Manifest;
use serde_json::Value as Json;

use crate::commands::safe;

/// The summary: name and version, description, inputs and outputs (name, type, required or
/// default, description), grants it needs, plan and compensate support.
pub fn summary(m: &Manifest, shown_as: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", safe(&m.name), safe(&m.version));
    if !m.description.is_empty() {
        let _ = writeln!(out, "  {}", indent(&m.description, 2));
    }
    let _ = writeln!(out, "\ninputs (`with:`):");
    fields(&mut out, &m.input_schema, true);
    let _ = writeln!(out, "\noutputs (`steps.ID.outputs.NAME`):");
    fields(&mut out, &m.output_schema, false);
    let _ = writeln!(out, "\ngrants it needs:");
    if m.needs.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for g in &m.needs {
        let _ = writeln!(out, "  {:<8} {}", g.kind.to_string(), indent(&g.detail, 11));
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "\nplan mode:  {} (`meridian plan` runs it with changes recorded, not made)",
        yes_no(m.supports_plan)
    );
    let _ = writeln!(
        out,
        "compensate: {}{}",
        yes_no(m.supports_compensate),
        if m.supports_compensate {
            " (undoes its change when a later step fails)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "\nfull JSON Schemas: meridian steps show {shown_as} --json"
    );
    out
}

/// Text from the step on one or more lines, continuation lines indented by `by` spaces.
fn indent(s: &str, by: usize) -> String {
    meridian_protocol::text::for_terminal(s.trim_end(), &" ".repeat(by)).into_owned()
}

/// One row per property of an object schema.
fn fields(out: &mut String, schema: &Json, inputs: bool) {
    let Some(props) = schema.get("properties").and_then(Json::as_object) else {
        let _ = writeln!(out, "  {}", type_of(schema, schema));
        return;
    };
    if props.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let width = props
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(28);
    for (name, prop) in props {
        let mut ty = type_of(prop, schema);
        if inputs {
            // In brackets: after "one of: a, b" a bare ", required" read as one more value.
            if required.contains(&name.as_str()) {
                ty.push_str(" (required)");
            } else if let Some(d) = prop.get("default") {
                let _ = write!(ty, " (default {d})");
            }
        }
        let desc = prop
            .get("description")
            .or_else(|| resolve(prop, schema).and_then(|r| r.get("description")))
            .and_then(Json::as_str)
            .unwrap_or("");
        let _ = writeln!(out, "  {:<width$}  {}", safe(name), safe(&ty));
        if !desc.is_empty() {
            let _ = writeln!(out, "  {:<width$}    {}", "", indent(desc, width + 6));
        }
    }
}

/// `#/$defs/X` of a `$ref`, looked up in the root schema.
fn resolve<'a>(prop: &Json, root: &'a Json) -> Option<&'a Json> {
    let r = prop.get("$ref")?.as_str()?;
    let path = r.strip_prefix("#/")?;
    path.split('/').try_fold(root, |node, key| node.get(key))
}

/// A short type: `string`, `integer or null`, `array of string`, `one of: a, b`.
fn type_of(prop: &Json, root: &Json) -> String {
    if let Some(target) = resolve(prop, root) {
        return type_of(target, root);
    }
    let consts: Vec<String> = ["oneOf", "anyOf"]
        .iter()
        .filter_map(|k| prop.get(*k).and_then(Json::as_array))
        .flatten()
        .filter_map(|v| {
            v.get("const")
                .or_else(|| v.get("enum").and_then(|e| e.get(0)))
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
        })
        .collect();
    if !consts.is_empty() {
        return format!("one of: {}", consts.join(", "));
    }
    if let Some(values) = prop.get("enum").and_then(Json::as_array) {
        let v: Vec<String> = values
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            .collect();
        return format!("one of: {}", v.join(", "));
    }
    if let Some(alts) = prop
        .get("anyOf")
        .or(prop.get("oneOf"))
        .and_then(Json::as_array)
    {
        let t: Vec<String> = alts.iter().map(|a| type_of(a, root)).collect();
        return t.join(" or ");
    }
    let base = match prop.get("type") {
        Some(Json::String(t)) => t.clone(),
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    match prop.get("items") {
        Some(items) if base == "array" => format!("array of {}", type_of(items, root)),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_follow_refs_and_name_enum_values() {
        let root = json!({
            "$defs": {"Action": {"oneOf": [{"const": "status"}, {"const": "fence"}]}},
            "properties": {}
        });
        assert_eq!(
            type_of(&json!({"$ref": "#/$defs/Action"}), &root),
            "one of: status, fence"
        );
        assert_eq!(
            type_of(&json!({"type": ["integer", "null"]}), &root),
            "integer or null"
        );
        assert_eq!(
            type_of(
                &json!({"type": "array", "items": {"type": "string"}}),
                &root
            ),
            "array of string"
        );
    }

    #[test]
    fn the_summary_lists_fields_grants_and_support_and_escapes_step_text() {
        let m: Manifest = serde_json::from_value(json!({
            "name": "probe",
            "version": "1.0.0",
            "description": "Checks a URL.\x1b[2J",
            "input_schema": {
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "description": "What to GET.\nSecond line."},
                    "tries": {"type": "integer", "default": 3}
                }
            },
            "output_schema": {"type": "object", "properties": {"status": {"type": "integer"}}},
            "needs": [{"kind": "http", "detail": "the probed URL"}],
            "supports_plan": true,
            "supports_compensate": false
        }))
        .unwrap();
        let s = summary(&m, "probe");
        assert!(!s.contains('\x1b'), "{s}");
        assert!(s.contains("url    string (required)"), "{s}");
        assert!(s.contains("tries  integer (default 3)"), "{s}");
        // The second line of a description stays under the first.
        assert!(s.contains("What to GET.\n           Second line."), "{s}");
        assert!(s.contains("http     the probed URL"), "{s}");
        assert!(s.contains("plan mode:  yes"), "{s}");
        assert!(s.contains("compensate: no"), "{s}");
        assert!(s.contains("meridian steps show probe --json"), "{s}");
    }
}
