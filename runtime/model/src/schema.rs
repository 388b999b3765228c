//! Checks a workflow against what its step components declare (`describe()` in the WIT
//! contract): each step's `with:` against the JSON Schema of its input, references to
//! `steps.<id>.outputs.<name>` against the output schema, and the grants a step needs against
//! the grants the workflow gives it (a warning: the step may still work for the inputs given).
//!
//! Supported JSON Schema subset: `type` (one or a list), `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `items`, `minItems`,
//! `maxItems`, `properties`, `required`, `additionalProperties` (bool or schema), `allOf`,
//! `anyOf`, `oneOf` (as "any"), and local `$ref`s (`#/…`). Unknown keywords are ignored.
//!
//! A value written as one `${{ expr }}` cannot be typed before the run and is skipped; a string
//! that mixes text and expressions is known to be a string, so it is type-checked as one.
//!
//! Cost: one lookup per distinct `uses:`, then linear in the size of the `with:` values times the
//! schema's branching (`anyOf` re-checks a value once per branch).

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::check::sites;
use crate::convert::locate;
use crate::diag::{Diagnostic, did_you_mean};
use crate::source::SourceMap;
use crate::span::Span;
use crate::workflow::*;

/// What a step component declares about itself (from its `describe()` manifest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepSchema {
    /// JSON Schema of the step's input (its `with:`).
    pub input: Json,
    /// JSON Schema of the step's output object.
    pub output: Json,
    /// Capabilities the step needs: (kind `http`|`sql`|`fs`|`secrets`, detail), e.g.
    /// `("http", "https://route53.amazonaws.com")`, `("secrets", "AWS_SECRET_ACCESS_KEY")`,
    /// `("fs", "/data")`.
    pub grants_needed: Vec<(String, String)>,
}

/// Deepest schema/value nesting followed, and most `$ref` hops per value.
const MAX_DEPTH: usize = 64;
const MAX_REF_HOPS: usize = 32;

/// Checks every step against its component's schema; `lookup` maps a `uses:` string to the
/// component's schema (`None`: unknown, skipped). Returns errors and warnings, sorted by position.
pub fn check_steps(wf: &Workflow, lookup: &dyn Fn(&str) -> Option<StepSchema>) -> Vec<Diagnostic> {
    let map = SourceMap::new(&wf.source);
    // `lookup` may be costly (compiling a component to ask it); ask once per distinct `uses:`.
    let mut cache: HashMap<String, Option<StepSchema>> = HashMap::new();
    let mut get = |uses: &str| -> Option<StepSchema> {
        cache
            .entry(uses.to_owned())
            .or_insert_with(|| lookup(uses))
            .clone()
    };
    let mut out = Checker {
        file: &wf.file,
        map: &map,
        diags: Vec::new(),
    };
    let mut by_step: Vec<Option<StepSchema>> = Vec::with_capacity(wf.steps.len());
    for s in &wf.steps {
        let schema = if s.uses.value.is_empty() {
            None
        } else {
            get(&s.uses.value)
        };
        if let Some(sc) = &schema {
            out.with(&sc.input, &s.with, s.uses.span, &s.id.value, &s.uses.value);
            out.grants(wf, s, &sc.grants_needed);
        }
        if let Compensate::Step { uses, with, .. } = &s.compensate
            && let Some(sc) = get(&uses.value)
        {
            out.with(&sc.input, with, uses.span, &s.id.value, &uses.value);
        }
        by_step.push(schema);
    }
    // Output names used by expressions.
    for site in sites(wf) {
        for r in &site.refs {
            if r.path.len() < 4 || r.path[0] != "steps" || r.path[2] != "outputs" {
                continue;
            }
            let Some(ti) = wf.steps.iter().position(|s| s.id.value == r.path[1]) else {
                continue;
            };
            let target = &wf.steps[ti];
            let name_at = if target.matrix.is_some() { 4 } else { 3 };
            let Some(name) = r.path.get(name_at) else {
                continue;
            };
            let Some(sc) = &by_step[ti] else { continue };
            let Some(props) = closed_properties(&sc.output) else {
                continue;
            };
            if !props.contains(&name.as_str()) {
                let span = locate(&map, site.span, site.raw, r.offset, r.len);
                let hint = did_you_mean(name, props.iter().copied())
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| {
                        Some(if props.is_empty() {
                            format!("`{}` declares no outputs", target.uses.value)
                        } else {
                            format!("its outputs: {}", props.join(", "))
                        })
                    });
                out.push(
                    Diagnostic::error(
                        &wf.file,
                        span,
                        format!(
                            "step `{}` (`uses: {}`) has no output `{name}`",
                            target.id.value, target.uses.value
                        ),
                    ),
                    hint,
                );
            }
        }
    }
    let mut d = crate::diag::Diagnostics::from(out.diags);
    d.sort();
    d.into_vec()
}

/// The property names of an output schema that lists them and does not allow others.
fn closed_properties(schema: &Json) -> Option<Vec<&str>> {
    let props = schema.get("properties")?.as_object()?;
    match schema.get("additionalProperties") {
        Some(Json::Bool(true) | Json::Object(_)) => None,
        _ => Some(props.keys().map(String::as_str).collect()),
    }
}

struct Checker<'a> {
    file: &'a str,
    map: &'a SourceMap<'a>,
    diags: Vec<Diagnostic>,
}

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
    /// `${{ expr }}` alone: unknown until run time.
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

fn type_name(t: &str) -> &str {
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

/// Resolves a local `$ref` (`#/definitions/x`, `#/$defs/x`, `#`) against the root schema.
fn resolve<'s>(root: &'s Json, mut schema: &'s Json) -> &'s Json {
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
    fn push(&mut self, d: Diagnostic, hint: Option<String>) {
        let mut d = d;
        d.hint = hint;
        d.source_line = self.map.line(d.span.line).map(str::to_owned);
        self.diags.push(d);
    }

    fn err(&mut self, span: Span, msg: String, hint: Option<String>) {
        self.push(Diagnostic::error(self.file, span, msg), hint);
    }

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
    fn with(
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
            let types: Vec<&str> = match t {
                Json::String(s) => vec![s.as_str()],
                Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                _ => Vec::new(),
            };
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

    /// Warnings for capabilities a step needs but was not granted.
    fn grants(&mut self, wf: &Workflow, s: &Step, needed: &[(String, String)]) {
        for (kind, detail) in needed {
            let (missing, fix) = match kind.as_str() {
                "http" => {
                    // A detail that is prose ("the probed URL") can only ask for some grant.
                    let granted = if detail.contains("://") && !detail.contains(char::is_whitespace)
                    {
                        s.grants
                            .http
                            .iter()
                            .any(|p| http_allows(wf, &p.value, detail))
                    } else {
                        !s.grants.http.is_empty()
                    };
                    let origin = origin(detail).unwrap_or_else(|| detail.clone());
                    (!granted, format!("add `grants: {{http: [\"{origin}\"]}}`"))
                }
                "sql" => (
                    s.grants.sql.is_empty()
                        || (!detail.is_empty()
                            && wf.connections.contains_key(detail)
                            && !s.grants.sql.iter().any(|c| &c.value == detail)),
                    "grant a connection: `grants: {sql: [<connection>]}`".to_owned(),
                ),
                "fs" => {
                    let granted = if detail.starts_with('/') {
                        s.grants.fs.iter().any(|f| path_within(detail, &f.guest))
                    } else {
                        !s.grants.fs.is_empty()
                    };
                    (!granted, "add `grants: {fs: [<directory>]}`".to_owned())
                }
                "secrets" => (
                    !s.grants.secrets.iter().any(|g| &g.value == detail),
                    format!(
                        "add `grants: {{secrets: [{detail}]}}` (and declare it under `secrets:`)"
                    ),
                ),
                _ => (false, String::new()),
            };
            if missing {
                let d = Diagnostic::warning(
                    self.file,
                    s.uses.span,
                    format!(
                        "step `{}` (`uses: {}`) needs {kind} access to `{detail}`, which its grants do not allow",
                        s.id.value, s.uses.value
                    ),
                );
                self.push(d, Some(fix));
            }
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

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

/// `scheme://host:port` of a URL (port made explicit), lower-cased.
fn origin(url: &str) -> Option<String> {
    let (scheme, host, port) = split_url(url)?;
    Some(format!("{scheme}://{host}:{port}"))
}

/// (scheme, host, port) of an http(s) URL; the port defaults by scheme.
fn split_url(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (ip, after) = h.split_once(']')?;
        (format!("[{ip}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// Whether the http grant `pattern` (an origin pattern, or the name of a `url:` connection)
/// allows `url`. A connection whose URL is an expression is assumed to allow it.
pub fn http_allows(wf: &Workflow, pattern: &str, url: &str) -> bool {
    if !pattern.contains("://") {
        return match wf.connections.get(pattern).map(|c| &c.kind) {
            Some(ConnectionKind::Http(t)) if t.is_literal() => {
                origin(t.raw()).is_some_and(|o| http_pattern_matches(&o, url))
            }
            Some(ConnectionKind::Http(_)) => true,
            _ => false,
        };
    }
    http_pattern_matches(pattern, url)
}

/// Matches `url` against `scheme://host[:port]` with `*` for the scheme, any single host label
/// or the port. A pattern without a port allows only the scheme's default port.
pub fn http_pattern_matches(pattern: &str, url: &str) -> bool {
    let Some((scheme, host, port)) = split_url(url) else {
        return false;
    };
    let Some((ps, rest)) = pattern.split_once("://") else {
        return false;
    };
    let ps = ps.to_ascii_lowercase();
    if ps != "*" && ps != scheme {
        return false;
    }
    let rest = rest.trim_end_matches('/').to_ascii_lowercase();
    let (ph, pp) = if rest.starts_with('[') {
        match rest.split_once(']') {
            Some((h, after)) => (format!("{h}]"), after.strip_prefix(':').map(str::to_owned)),
            None => return false,
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (rest.clone(), None),
        }
    };
    let port_ok = match pp.as_deref() {
        Some("*") => true,
        Some(p) => p.parse::<u16>().ok() == Some(port),
        None => port == if scheme == "https" { 443 } else { 80 },
    };
    if !port_ok {
        return false;
    }
    let pl: Vec<&str> = ph.split('.').collect();
    let hl: Vec<&str> = host.split('.').collect();
    pl.len() == hl.len() && pl.iter().zip(&hl).all(|(p, h)| *p == "*" || p == h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(yaml: &str) -> Workflow {
        crate::parse("w.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn route53() -> StepSchema {
        StepSchema {
            input: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["zone", "record"],
                "properties": {
                    "zone": {"type": "string", "description": "hosted zone id"},
                    "record": {"type": "string", "minLength": 1},
                    "ttl": {"type": "integer", "minimum": 1, "maximum": 86400},
                    "mode": {"enum": ["failover", "weighted"]},
                    "dry": {"type": "boolean"},
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/target"}},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "$defs": {"target": {"type": "object", "required": ["region"], "additionalProperties": false,
                                       "properties": {"region": {"type": "string"}, "weight": {"type": "number"}}}}
            }),
            output: json!({"type": "object", "properties": {"change_id": {"type": "string"}, "status": {}}}),
            grants_needed: vec![
                ("http".into(), "https://route53.amazonaws.com".into()),
                ("secrets".into(), "AWS_KEY".into()),
            ],
        }
    }

    fn lookup(uses: &str) -> Option<StepSchema> {
        match uses {
            "gslb-route53" => Some(route53()),
            "hello" => Some(StepSchema {
                input: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                output: json!({"type": "object", "properties": {"greeting": {"type": "string"}}, "additionalProperties": false}),
                grants_needed: vec![],
            }),
            _ => None,
        }
    }

    fn messages(d: &[Diagnostic]) -> Vec<String> {
        d.iter()
            .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
            .collect()
    }

    const HEAD: &str =
        "name: t\ninputs:\n  ttl: {type: number, default: 60}\nsecrets: [AWS_KEY]\nsteps:\n";

    #[test]
    fn a_good_step_passes() {
        let w = wf(&format!(
            "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zone: Z1\n      record: api.example.com\n      ttl: ${{{{ inputs.ttl }}}}\n      mode: failover\n      targets: [{{region: eu, weight: 1.5}}]\n      tags: {{a: b}}\n    grants:\n      http: [\"https://*.amazonaws.com\"]\n      secrets: [AWS_KEY]\n"
        ));
        let d = check_steps(&w, &lookup);
        assert!(d.is_empty(), "{:?}", messages(&d));
    }

    #[test]
    fn problems_in_with_are_reported_where_they_are() {
        let w = wf(&format!(
            "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zoen: Z1\n      ttl: \"30\"\n      mode: failovr\n      dry: yes\n      targets: [{{weight: x}}]\n      tags: {{a: 1}}\n      record: \"\"\n"
        ));
        let d = check_steps(&w, &lookup);
        let m = messages(&d);
        let expect = [
            "7:11: missing required input `with.zone` for step `dns` (`uses: gslb-route53`)",
            "9:7: unknown input `with.zoen` for step `dns` (`uses: gslb-route53`)",
            "10:12: `with.ttl` must be an integer, found a string",
            "11:13: `with.mode` must be one of `failover`, `weighted`, found `failovr`",
            "12:12: `with.dry` must be a boolean, found a string",
            "13:17: missing required input `with.targets[0].region` for step `dns` (`uses: gslb-route53`)",
            "13:26: `with.targets[0].weight` must be a number, found a string",
            "14:17: `with.tags.a` must be a string, found an integer",
            "15:15: `with.record` must be at least 1 characters long",
        ];
        for e in expect {
            assert!(m.iter().any(|x| x == e), "missing {e:?} in {m:#?}");
        }
        let zoen = d.iter().find(|d| d.message.contains("zoen")).unwrap();
        assert_eq!(zoen.hint.as_deref(), Some("did you mean `zone`?"));
        assert_eq!(zoen.source_line.as_deref(), Some("      zoen: Z1"));
        let ttl = d.iter().find(|d| d.message.contains("with.ttl")).unwrap();
        assert_eq!(
            ttl.hint.as_deref(),
            Some("remove the quotes to make it a number")
        );
        // Missing grants are warnings.
        let w: Vec<&Diagnostic> = d.iter().filter(|d| !d.is_error()).collect();
        assert_eq!(w.len(), 2, "{:?}", messages(&d));
        assert!(w.iter().any(|d| {
            d.message
                .contains("needs http access to `https://route53.amazonaws.com`")
        }));
        assert!(
            w.iter()
                .any(|d| d.message.contains("needs secrets access to `AWS_KEY`"))
        );
    }

    #[test]
    fn numbers_and_mixed_templates() {
        let w = wf(&format!(
            "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zone: Z1\n      record: r\n      ttl: 0\n      mode: \"x-${{{{ inputs.ttl }}}}\"\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n"
        ));
        let m = messages(&check_steps(&w, &lookup));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].contains("`with.ttl` must be at least 1, found 0"),
            "{m:?}"
        );
        // A mixed template is a string: checked against a number type.
        let w = wf(&format!(
            "{HEAD}  - id: dns\n    uses: gslb-route53\n    with: {{zone: Z1, record: r, ttl: \"n${{{{ inputs.ttl }}}}\"}}\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n"
        ));
        let m = messages(&check_steps(&w, &lookup));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("`with.ttl` must be an integer, found a string"));
    }

    #[test]
    fn output_references_are_checked() {
        let w = wf(&format!(
            "{HEAD}  - id: a\n    uses: hello\n  - id: b\n    uses: hello\n    needs: a\n    with:\n      name: ${{{{ steps.a.outputs.greting }}}} ${{{{ steps.a.outputs.greeting }}}}\n"
        ));
        let d = check_steps(&w, &lookup);
        let m = messages(&d);
        assert_eq!(
            m,
            vec!["12:17: step `a` (`uses: hello`) has no output `greting`"]
        );
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `greeting`?"));
        // gslb-route53's output schema is open-ended? No: no additionalProperties means closed here.
        let w = wf(&format!(
            "{HEAD}  - id: m\n    uses: hello\n    strategy: {{matrix: {{r: [eu, us]}}}}\n  - id: b\n    uses: hello\n    needs: m\n    if: steps.m.outputs.eu.nope == 'x' || steps.m.outputs.us.greeting\n"
        ));
        let m = messages(&check_steps(&w, &lookup));
        assert_eq!(
            m,
            vec!["12:9: step `m` (`uses: hello`) has no output `nope`"]
        );
    }

    #[test]
    fn compensate_with_is_checked_too() {
        let w = wf(&format!(
            "{HEAD}  - id: a\n    uses: gslb-route53\n    with: {{zone: Z, record: r}}\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n    compensate:\n      uses: hello\n      with: {{name: 5}}\n"
        ));
        let m = messages(&check_steps(&w, &lookup));
        assert_eq!(
            m,
            vec!["12:20: `with.name` must be a string, found an integer"]
        );
    }

    #[test]
    fn any_of_const_and_false_schemas() {
        let lookup = |_: &str| {
            Some(StepSchema {
                input: json!({
                    "type": "object",
                    "properties": {
                        "target": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                        "version": {"const": 2},
                        "legacy": false,
                        "n": {"type": ["integer", "null"], "exclusiveMaximum": 10}
                    }
                }),
                ..StepSchema::default()
            })
        };
        let ok = wf(
            "name: t\nsteps:\n  - id: a\n    uses: x\n    with: {target: [a, b], version: 2, n: null, extra: 1}\n",
        );
        assert!(check_steps(&ok, &lookup).is_empty());
        let bad = wf(
            "name: t\nsteps:\n  - id: a\n    uses: x\n    with: {target: 5, version: 3, legacy: 1, n: 10}\n",
        );
        let m = messages(&check_steps(&bad, &lookup));
        assert_eq!(
            m,
            [
                "5:20: `with.target` matches none of the allowed forms for step `a`",
                "5:32: `with.version` must be `2`, found `3`",
                "5:43: `with.legacy` is not allowed",
                "5:49: `with.n` must be less than 10, found 10",
            ]
        );
    }

    #[test]
    fn http_patterns() {
        assert!(http_pattern_matches(
            "https://route53.amazonaws.com",
            "https://route53.amazonaws.com/2013-04-01/x"
        ));
        assert!(http_pattern_matches(
            "https://*.amazonaws.com",
            "https://route53.amazonaws.com"
        ));
        assert!(!http_pattern_matches(
            "https://*.amazonaws.com",
            "https://a.b.amazonaws.com"
        ));
        assert!(!http_pattern_matches("https://x.com", "http://x.com"));
        assert!(http_pattern_matches("*://x.com", "http://x.com"));
        assert!(http_pattern_matches(
            "http://127.0.0.1:*",
            "http://127.0.0.1:9180/apisix"
        ));
        assert!(!http_pattern_matches(
            "http://127.0.0.1",
            "http://127.0.0.1:9180"
        ));
        assert!(http_pattern_matches(
            "http://127.0.0.1:9180/",
            "http://127.0.0.1:9180"
        ));
        assert!(http_pattern_matches("http://[::1]:80", "http://[::1]/"));
        assert!(!http_pattern_matches("http://x.com", "ftp://x.com"));
    }

    #[test]
    fn http_grants_by_connection_name() {
        let w = wf(
            "name: t\nconnections:\n  admin: {url: \"http://127.0.0.1:9180\"}\n  dyn: {url: \"${{ inputs.u }}\"}\ninputs: {u: {type: string, default: 'http://x'}}\nsteps:\n  - {id: a, uses: x, grants: {http: [admin, dyn]}}\n",
        );
        assert!(http_allows(
            &w,
            "admin",
            "http://127.0.0.1:9180/apisix/admin/routes"
        ));
        assert!(!http_allows(&w, "admin", "http://127.0.0.1:9181/"));
        assert!(http_allows(&w, "dyn", "http://anything"));
        assert!(!http_allows(&w, "nope", "http://anything"));
    }
}
