//! The top-level `inputs:`: names, types, defaults checked against the type.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::{Cx, is_ident};
use crate::diag::suggest;
use crate::duration::parse_duration;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

const INPUT_TYPES: [&str; 7] = [
    "string", "number", "integer", "bool", "duration", "list", "map",
];

pub(super) fn inputs(cx: &mut Cx<'_>, node: &Node) -> IndexMap<String, InputDef> {
    let mut out = IndexMap::new();
    if node.is_null() {
        return out;
    }
    let Some(entries) = node.as_map() else {
        cx.wrong_type(node, "a mapping of input names", "`inputs`");
        return out;
    };
    for (k, v) in entries {
        let Some(name) = cx.key(k) else { continue };
        if !is_ident(&name) {
            cx.error(
                k.span,
                format!("invalid input name `{name}`"),
                Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
            );
        }
        let what = format!("in input `{name}`");
        let mut def = InputDef {
            span: k.span,
            ty: InputType::String,
            description: None,
            default: None,
            required: false,
        };
        if !v.is_null() {
            let Some(f) = cx.fields(v, &["type", "description", "default", "required"], &what)
            else {
                continue;
            };
            let mut type_ok = true;
            if let Some(t) = f.get("type") {
                match t.as_str() {
                    Some("string") => def.ty = InputType::String,
                    Some("number") => def.ty = InputType::Number,
                    Some("integer") => def.ty = InputType::Integer,
                    Some("bool") => def.ty = InputType::Bool,
                    Some("duration") => def.ty = InputType::Duration,
                    Some("list") => def.ty = InputType::List,
                    Some("map") => def.ty = InputType::Map,
                    other => {
                        let shown =
                            other.map_or_else(|| t.describe().to_owned(), |s| format!("`{s}`"));
                        let hint = other
                            .and_then(|s| match s {
                                "boolean" => Some("did you mean `bool`?".to_owned()),
                                "int" => Some("did you mean `integer`?".to_owned()),
                                "float" => Some("did you mean `number`?".to_owned()),
                                "array" => Some("did you mean `list`?".to_owned()),
                                "object" => Some("did you mean `map`?".to_owned()),
                                _ => suggest(s, INPUT_TYPES),
                            })
                            .or_else(|| Some(format!("input types: {}", INPUT_TYPES.join(", "))));
                        cx.error(
                            t.span,
                            format!("unknown type {shown} for input `{name}`"),
                            hint,
                        );
                        type_ok = false;
                    }
                }
            }
            if let Some(d) = f.get("description") {
                def.description = cx.text(d, &format!("the description of input `{name}`"));
            }
            if let Some(r) = f.get("required") {
                def.required = cx
                    .bool(r, &format!("`required` of input `{name}`"))
                    .unwrap_or(false);
            }
            if let Some(d) = f.get("default")
                && type_ok
            {
                def.default = input_default(cx, d, def.ty, &name);
                if def.required && def.default.is_some() {
                    cx.warn(
                        f.key_span("required").unwrap_or(k.span),
                        format!(
                            "input `{name}` is required but has a default, so it is never missing"
                        ),
                        Some("remove `required: true` or the default".into()),
                    );
                    def.required = false;
                }
            }
        }
        if out.contains_key(&name) {
            continue; // reported as a duplicate key
        }
        out.insert(name, def);
    }
    out
}

fn input_default(cx: &mut Cx<'_>, d: &Node, ty: InputType, name: &str) -> Option<Json> {
    let what = format!("the default of input `{name}`");
    let type_name = match ty {
        InputType::String => "string",
        InputType::Number => "number",
        InputType::Integer => "integer",
        InputType::Bool => "bool",
        InputType::Duration => "duration",
        InputType::List => "list",
        InputType::Map => "map",
    };
    let mismatch = |cx: &mut Cx<'_>, hint: Option<String>| {
        cx.error(
            d.span,
            format!(
                "{what} must be {} {type_name}, found {}",
                if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                },
                d.describe()
            ),
            hint,
        );
        None
    };
    match (ty, &d.kind) {
        (_, NodeKind::Scalar(Scalar::Null)) => None,
        (InputType::String, NodeKind::Scalar(Scalar::Str(s, _))) => Some(Json::String(s.clone())),
        (InputType::String, NodeKind::Scalar(Scalar::Number(_) | Scalar::Bool(_))) => {
            let t = d.scalar_text().unwrap_or_default();
            mismatch(cx, Some(format!("quote it to make it a string: '{t}'")))
        }
        (InputType::Number, NodeKind::Scalar(Scalar::Number(n))) => Some(Json::Number(n.clone())),
        (InputType::Integer, NodeKind::Scalar(Scalar::Number(n))) if n.is_i64() || n.is_u64() => {
            Some(Json::Number(n.clone()))
        }
        (InputType::Bool, NodeKind::Scalar(Scalar::Bool(b))) => Some(Json::Bool(*b)),
        (InputType::Duration, NodeKind::Scalar(Scalar::Str(..) | Scalar::Number(_))) => {
            let text = d.scalar_text().unwrap_or_default();
            match parse_duration(&text) {
                Ok(_) => Some(Json::String(text)),
                Err(e) => {
                    cx.error(
                        d.span,
                        format!("invalid duration for {what}: {e}"),
                        Some("write a duration like `30s`, `5m`, `1h30m` or `250ms`".into()),
                    );
                    None
                }
            }
        }
        (InputType::List, NodeKind::Seq(_)) | (InputType::Map, NodeKind::Map(_)) => {
            Some(cx.value(d).to_json())
        }
        _ => mismatch(cx, None),
    }
}
