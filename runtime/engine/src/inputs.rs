//! Turning `--input name=value` strings into typed workflow inputs.

use std::collections::BTreeMap;

use meridian_model::{InputType, Workflow};
use serde_json::{Map, Value as Json};

/// Types the given raw inputs against the workflow's declarations and fills defaults. Every problem
/// is reported, not only the first.
pub fn resolve(
    wf: &Workflow,
    raw: &BTreeMap<String, String>,
) -> Result<Map<String, Json>, Vec<String>> {
    let mut errors = Vec::new();
    for name in raw.keys() {
        if !wf.inputs.contains_key(name) {
            let declared: Vec<&str> = wf.inputs.keys().map(String::as_str).collect();
            errors.push(if declared.is_empty() {
                format!("unknown input `{name}`: the workflow declares no inputs")
            } else {
                format!("unknown input `{name}` (declared: {})", declared.join(", "))
            });
        }
    }
    let mut out = Map::new();
    for (name, def) in &wf.inputs {
        match raw.get(name) {
            Some(text) => match coerce(def.ty, text) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(e) => errors.push(format!("input `{name}`: {e}")),
            },
            None => match &def.default {
                Some(d) => {
                    out.insert(name.clone(), d.clone());
                }
                None if def.required => errors.push(format!(
                    "input `{name}` is required: give it (`--input {name}=<{}>`, or `\"inputs\": {{\"{name}\": …}}` in an API request, or a server's inputs file)",
                    type_name(def.ty)
                )),
                None => {
                    out.insert(name.clone(), Json::Null);
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn type_name(t: InputType) -> &'static str {
    match t {
        InputType::String => "string",
        InputType::Number => "number",
        InputType::Integer => "integer",
        InputType::Bool => "bool",
        InputType::Duration => "duration",
        InputType::List => "list",
        InputType::Map => "map",
    }
}

/// Parses one value given on the command line as the declared type.
pub fn coerce(ty: InputType, text: &str) -> Result<Json, String> {
    let t = text.trim();
    match ty {
        InputType::String => Ok(Json::String(text.to_string())),
        InputType::Number => {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Json::from(i));
            }
            t.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Json::Number)
                .ok_or_else(|| format!("`{text}` is not a number"))
        }
        InputType::Integer => t
            .parse::<i64>()
            .map(Json::from)
            .map_err(|_| format!("`{text}` is not a whole number")),
        InputType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Json::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Json::Bool(false)),
            _ => Err(format!(
                "`{text}` is not a bool (use true or false; yes/no, on/off and 1/0 are read too)"
            )),
        },
        InputType::Duration => meridian_model::duration::parse_duration(t)
            .map(|_| Json::String(t.to_string()))
            .map_err(|e| format!("`{text}` is not a duration: {e}")),
        InputType::List => {
            if t.starts_with('{') {
                Err(format!(
                    "`{text}` is a map, not a list (write [a, b] or a,b)"
                ))
            } else if t.starts_with('[') {
                match serde_json::from_str::<Json>(t) {
                    Ok(v @ Json::Array(_)) => Ok(v),
                    _ => Err(format!("`{text}` is not a JSON list")),
                }
            } else if t.is_empty() {
                Ok(Json::Array(vec![]))
            } else {
                Ok(Json::Array(
                    t.split(',')
                        .map(|s| Json::String(s.trim().to_string()))
                        .collect(),
                ))
            }
        }
        InputType::Map => {
            if t.starts_with('[') {
                Err(format!(
                    "`{text}` is a list, not a map (write {{\"k\": \"v\"}} or k=v,k2=v2)"
                ))
            } else if t.starts_with('{') {
                match serde_json::from_str::<Json>(t) {
                    Ok(v @ Json::Object(_)) => Ok(v),
                    _ => Err(format!("`{text}` is not a JSON object")),
                }
            } else {
                let mut m = Map::new();
                for pair in t.split(',').filter(|p| !p.trim().is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        format!("`{pair}` is not key=value (map inputs are k=v,k2=v2 or JSON)")
                    })?;
                    m.insert(k.trim().to_string(), Json::String(v.trim().to_string()));
                }
                Ok(Json::Object(m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercions() {
        assert_eq!(coerce(InputType::Number, "42").unwrap(), Json::from(42));
        assert_eq!(
            coerce(InputType::Number, "1.5").unwrap(),
            serde_json::json!(1.5)
        );
        assert!(coerce(InputType::Number, "x").is_err());
        assert_eq!(coerce(InputType::Integer, "42").unwrap(), Json::from(42));
        assert!(
            coerce(InputType::Integer, "1.5")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(coerce(InputType::Integer, "1e12").is_err());
        assert_eq!(coerce(InputType::Bool, "Yes").unwrap(), Json::Bool(true));
        assert!(coerce(InputType::Bool, "maybe").is_err());
        // A list for a map (from an inputs file's JSON) is named as such, not split on commas.
        let e = coerce(InputType::Map, "[1,2]").unwrap_err();
        assert!(e.contains("is a list, not a map"), "{e}");
        let e = coerce(InputType::List, r#"{"a":1}"#).unwrap_err();
        assert!(e.contains("is a map, not a list"), "{e}");
        assert_eq!(
            coerce(InputType::List, "eu, us").unwrap(),
            serde_json::json!(["eu", "us"])
        );
        assert_eq!(
            coerce(InputType::List, "[1,2]").unwrap(),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            coerce(InputType::Map, "a=1,b=2").unwrap(),
            serde_json::json!({"a":"1","b":"2"})
        );
        assert!(coerce(InputType::Map, "a").is_err());
    }
}
