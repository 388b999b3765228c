//! `with:` values against the JSON Schema subset described in the module documentation.

use serde_json::Value as Json;

use super::Checker;
use crate::diag::did_you_mean;
use crate::span::Span;
use crate::workflow::*;

/// Deepest schema/value nesting followed, and most `$ref` hops per value.
const MAX_DEPTH: usize = 64;
const MAX_REF_HOPS: usize = 32;

/// The type of a `with:` value as far as it is known before the run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Static {
    Null,
    Bool,
    Integer,
    Number,
    /// A string whose text is known.
    Str,
    /// A string with `${{ }}` inside text: a string, content unknown.
    MixedStr,
    Array,
    Object,
    /// `${{ expr }}` alone: its type comes from the expression, if it is known at all (see
    /// `Checker::expression`).
    Unknown,
}

impl Static {
    fn of(v: &ValueNode) -> Static {
        match &v.kind {
            ValueKind::Null => Static::Null,
            ValueKind::Bool(_) => Static::Bool,
            ValueKind::Number(n) => {
                if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                    Static::Integer
                } else {
                    Static::Number
                }
            }
            ValueKind::String(t) if t.is_literal() => Static::Str,
            ValueKind::String(t) if t.is_single_expr() => Static::Unknown,
            ValueKind::String(_) => Static::MixedStr,
            ValueKind::List(_) => Static::Array,
            ValueKind::Map(_) => Static::Object,
        }
    }

    fn matches(self, ty: &str) -> bool {
        matches!(
            (self, ty),
            (Static::Unknown, _)
                | (Static::Null, "null")
                | (Static::Bool, "boolean")
                | (Static::Integer, "integer" | "number")
                | (Static::Number, "number")
                | (Static::Str | Static::MixedStr, "string")
                | (Static::Array, "array")
                | (Static::Object, "object")
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Static::Null => "null",
            Static::Bool => "a boolean",
            Static::Integer => "an integer",
            Static::Number => "a number",
            Static::Str | Static::MixedStr => "a string",
            Static::Array => "a list",
            Static::Object => "a mapping",
            Static::Unknown => "an expression",
        }
    }
}

/// A JSON Schema type as a message says it (`an integer`, `a list`).
pub(super) fn type_name(t: &str) -> &str {
    match t {
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "array" => "a list",
        "object" => "a mapping",
        "null" => "null",
        other => other,
    }
}

/// The types a schema's `type` allows: one name or a list (empty: any).
pub(super) fn declared_types(t: &Json) -> Vec<&str> {
    match t {
        Json::String(s) => vec![s.as_str()],
        Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Resolves a local `$ref` (`#/definitions/x`, `#/$defs/x`, `#`) against the root schema.
pub(super) fn resolve<'s>(root: &'s Json, mut schema: &'s Json) -> &'s Json {
    for _ in 0..MAX_REF_HOPS {
        let Some(r) = schema.get("$ref").and_then(Json::as_str) else {
            return schema;
        };
        let Some(ptr) = r.strip_prefix('#') else {
            return &Json::Bool(true);
        };
        match root.pointer(ptr) {
            Some(s) => schema = s,
            None => return &Json::Bool(true),
        }
    }
    &Json::Bool(true)
}

impl Checker<'_> {
    /// The span of `key` in `key: value` given the value's span (keys of `with:` keep no span).
    fn key_span(&self, key: &str, value: Span) -> Span {
        let text = self.map.text();
        let from = value.offset.saturating_sub(4096);
        let mut from = from;
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let before = &text[from..value.offset.min(text.len())];
        if let Some(p) = before.rfind(key) {
            let after = before[p + key.len()..].trim_start_matches(['"', '\'']);
            if after.trim_start().starts_with(':') {
                return self.map.span(from + p, from + p + key.len());
            }
        }
        value
    }

    /// `with:` of one step against its input schema.
    pub(super) fn with(
        &mut self,
        schema: &Json,
        with: &indexmap::IndexMap<String, ValueNode>,
        uses_span: Span,
        step: &str,
        uses: &str,
    ) {
        let ctx = Ctx {
            root: schema,
            step,
            uses,
        };
        let s = resolve(schema, schema);
        self.object(&ctx, s, with, uses_span, "with", 0);
    }

    fn object(
        &mut self,
        ctx: &Ctx<'_>,
        schema: &Json,
        entries: &indexmap::IndexMap<String, ValueNode>,
        missing_at: Span,
        path: &str,
        depth: usize,
    ) {
        let props = schema.get("properties").and_then(Json::as_object);
        if let Some(req) = schema.get("required").and_then(Json::as_array) {
            for r in req.iter().filter_map(Json::as_str) {
                if !entries.contains_key(r) {
                    let desc = props
                        .and_then(|p| p.get(r))
                        .and_then(|p| p.get("description"))
                        .and_then(Json::as_str)
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    self.err(
                        missing_at,
                        format!(
                            "missing required input `{path}.{r}` for step `{}` (`uses: {}`)",
                            ctx.step, ctx.uses
                        ),
                        Some(format!("add `{r}:` under `{path}`{desc}")),
                    );
                }
            }
        }
        let additional = schema.get("additionalProperties");
        let open = schema.get("patternProperties").is_some();
        for (k, v) in entries {
            let child = format!("{path}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.value(ctx, ps, v, &child, depth + 1),
                None => match additional {
                    Some(Json::Bool(false)) if !open => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let hint = did_you_mean(k, known.iter().copied())
                            .map(|c| format!("did you mean `{c}`?"))
                            .or_else(|| {
                                Some(if known.is_empty() {
                                    format!("`{}` takes no inputs here", ctx.uses)
                                } else {
                                    format!("known inputs: {}", known.join(", "))
                                })
                            });
                        let span = self.key_span(k, v.span);
                        self.err(
                            span,
                            format!(
                                "unknown input `{child}` for step `{}` (`uses: {}`)",
                                ctx.step, ctx.uses
                            ),
                            hint,
                        );
                    }
                    Some(s @ Json::Object(_)) => self.value(ctx, s, v, &child, depth + 1),
                    _ => {}
                },
            }
        }
    }

    /// Errors `v` would get against `schema`, without reporting them (for `anyOf`).
    fn trial(
        &self,
        ctx: &Ctx<'_>,
        schema: &Json,
        v: &ValueNode,
        path: &str,
        depth: usize,
    ) -> usize {
        let mut sub = Checker {
            file: self.file,
            map: self.map,
            types: self.types,
            diags: Vec::new(),
        };
        sub.value(ctx, schema, v, path, depth);
        sub.diags.len()
    }

    fn value(&mut self, ctx: &Ctx<'_>, schema: &Json, v: &ValueNode, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let schema = resolve(ctx.root, schema);
        let st = Static::of(v);
        if schema == &Json::Bool(false) {
            self.err(v.span, format!("`{path}` is not allowed"), None);
            return;
        }
        if st == Static::Unknown {
            self.expression(schema, v, path);
            return;
        }
        let Some(obj) = schema.as_object() else {
            return;
        };
        if let Some(list) = obj.get("allOf").and_then(Json::as_array) {
            for s in list {
                self.value(ctx, s, v, path, depth + 1);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key).and_then(Json::as_array)
                && !list.is_empty()
                && list
                    .iter()
                    .all(|s| self.trial(ctx, s, v, path, depth + 1) > 0)
            {
                self.err(
                    v.span,
                    format!(
                        "`{path}` matches none of the allowed forms for step `{}`",
                        ctx.step
                    ),
                    None,
                );
                return;
            }
        }
        if let Some(t) = obj.get("type") {
            let types = declared_types(t);
            if !types.is_empty() && !types.iter().any(|t| st.matches(t)) {
                let want = types
                    .iter()
                    .map(|t| type_name(t))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let hint = match (&v.kind, types.as_slice()) {
                    (ValueKind::String(t), ["integer" | "number"])
                        if t.raw().trim().parse::<f64>().is_ok() =>
                    {
                        Some("remove the quotes to make it a number".to_owned())
                    }
                    (ValueKind::String(t), ["boolean"])
                        if matches!(t.raw().trim(), "true" | "false") =>
                    {
                        Some("remove the quotes to make it a boolean".to_owned())
                    }
                    (ValueKind::Number(_) | ValueKind::Bool(_), ["string"]) => {
                        Some("quote it to make it a string".to_owned())
                    }
                    _ => None,
                };
                self.err(
                    v.span,
                    format!("`{path}` must be {want}, found {}", st.describe()),
                    hint,
                );
                return;
            }
        }
        let literal = v.is_literal();
        if literal {
            let json = v.to_json();
            if let Some(list) = obj.get("enum").and_then(Json::as_array)
                && !list.contains(&json)
            {
                let shown: Vec<String> = list.iter().map(show).collect();
                let hint = json
                    .as_str()
                    .and_then(|s| did_you_mean(s, list.iter().filter_map(Json::as_str)))
                    .map(|c| format!("did you mean `{c}`?"));
                self.err(
                    v.span,
                    format!(
                        "`{path}` must be one of {}, found {}",
                        shown.join(", "),
                        show(&json)
                    ),
                    hint,
                );
            }
            if let Some(c) = obj.get("const")
                && c != &json
            {
                self.err(
                    v.span,
                    format!("`{path}` must be {}, found {}", show(c), show(&json)),
                    None,
                );
            }
        }
        match &v.kind {
            ValueKind::Number(n) => {
                let Some(f) = n.as_f64() else { return };
                let bound = |k: &str| obj.get(k).and_then(Json::as_f64);
                let mut fail = |cond: bool, what: String| {
                    if cond {
                        self.err(v.span, format!("`{path}` must be {what}, found {n}"), None);
                    }
                };
                if let Some(m) = bound("minimum") {
                    fail(f < m, format!("at least {}", num(m)));
                }
                if let Some(m) = bound("maximum") {
                    fail(f > m, format!("at most {}", num(m)));
                }
                if let Some(m) = bound("exclusiveMinimum") {
                    fail(f <= m, format!("greater than {}", num(m)));
                }
                if let Some(m) = bound("exclusiveMaximum") {
                    fail(f >= m, format!("less than {}", num(m)));
                }
            }
            ValueKind::String(t) if t.is_literal() => {
                let len = t.raw().chars().count() as u64;
                if let Some(m) = obj.get("minLength").and_then(Json::as_u64)
                    && len < m
                {
                    self.err(
                        v.span,
                        format!("`{path}` must be at least {m} characters long"),
                        None,
                    );
                }
                if let Some(m) = obj.get("maxLength").and_then(Json::as_u64)
                    && len > m
                {
                    self.err(
                        v.span,
                        format!("`{path}` must be at most {m} characters long"),
                        None,
                    );
                }
            }
            ValueKind::List(items) => {
                let n = items.len() as u64;
                if let Some(m) = obj.get("minItems").and_then(Json::as_u64)
                    && n < m
                {
                    self.err(
                        v.span,
                        format!("`{path}` must have at least {m} items, found {n}"),
                        None,
                    );
                }
                if let Some(m) = obj.get("maxItems").and_then(Json::as_u64)
                    && n > m
                {
                    self.err(
                        v.span,
                        format!("`{path}` must have at most {m} items, found {n}"),
                        None,
                    );
                }
                if let Some(is @ Json::Object(_)) = obj.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.value(ctx, is, item, &format!("{path}[{i}]"), depth + 1);
                    }
                }
            }
            ValueKind::Map(entries) => {
                self.object(ctx, schema, entries, v.span, path, depth + 1);
            }
            _ => {}
        }
    }
}

struct Ctx<'a> {
    root: &'a Json,
    step: &'a str,
    uses: &'a str,
}

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}
