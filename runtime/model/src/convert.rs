//! From the spanned YAML tree to the typed [`Workflow`], reporting every problem of shape: wrong
//! node types, unknown/missing/duplicate keys, bad durations, sizes, cron lines, grants and
//! expression syntax. Cross-references between parts (needs, cycles, `${{ }}` references) are
//! checked afterwards in [`crate::check`].
//!
//! Conversion never stops at the first problem: a bad part is reported and left out (or given its
//! default) so the rest of the file is still checked.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, suggest};
use crate::duration::{format_duration, parse_duration, parse_size};
use crate::expr::{Expr, ExprError, Template};
use crate::source::SourceMap;
use crate::span::{Span, Spanned};
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

/// Most steps a workflow may have (keeps the static checks, which are up to quadratic in the
/// number of steps for pathological graphs, fast).
pub(crate) const MAX_STEPS: usize = 10_000;

/// Collects diagnostics while converting or checking one file.
pub(crate) struct Cx<'a> {
    pub(crate) file: &'a str,
    pub(crate) map: &'a SourceMap<'a>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(file: &'a str, map: &'a SourceMap<'a>) -> Self {
        Cx {
            file,
            map,
            diags: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::error(self.file, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    pub(crate) fn warn(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::warning(self.file, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    /// The span of `offset..offset+len` of `raw`, the value of the scalar written at `region`.
    pub(crate) fn locate(&self, region: Span, raw: &str, offset: usize, len: usize) -> Span {
        locate(self.map, region, raw, offset, len)
    }

    /// Reports an expression syntax error inside the scalar at `region` whose value is `raw`.
    pub(crate) fn expr_error(&mut self, region: Span, raw: &str, e: &ExprError) {
        let span = self.locate(region, raw, e.offset, 1);
        self.error(
            span,
            format!("invalid expression: {}", e.message),
            e.hint.clone(),
        );
    }
}

/// Where `raw[offset..offset + len]` was written, given the span of the whole scalar. Scalars may
/// be quoted, escaped or folded, so the value's text is not always the source's: each
/// interpolation is found by counting `${{` in both, and the position inside it is trusted only
/// when the source matches the value up to that point. Falls back to the scalar's start.
pub(crate) fn locate(
    map: &SourceMap<'_>,
    region: Span,
    raw: &str,
    offset: usize,
    len: usize,
) -> Span {
    let text = map.text();
    let Some(region_text) = text.get(region.offset..region.offset + region.len) else {
        return region;
    };
    let offset = floor(raw, offset.min(raw.len()));
    let end = floor(raw, (offset + len).min(raw.len()));
    let head_end = floor(raw, (offset + 3).min(raw.len()));
    let found = if let Some(s) = raw[..head_end].rfind("${{").filter(|s| *s <= offset) {
        let k = raw[..s].matches("${{").count();
        region_text.match_indices("${{").nth(k).map(|(r, _)| {
            if region_text[r..].starts_with(&raw[s..offset]) {
                r + (offset - s)
            } else {
                r
            }
        })
    } else if !raw.is_empty() {
        region_text.find(raw).map(|p| p + offset)
    } else {
        None
    };
    match found {
        Some(at) => {
            let l = if region_text[at..].starts_with(&raw[offset..end]) {
                end - offset
            } else {
                0
            };
            map.span(region.offset + at, region.offset + at + l)
        }
        None => Span { len: 0, ..region },
    }
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: step ids, input, var, connection and matrix names.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// `[A-Za-z_][A-Za-z0-9_]*`: secret names (they often become environment variable names).
fn is_secret_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// The entries of a mapping whose keys were checked, looked up by name.
struct Fields<'n> {
    span: Span,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, _, v)| *v)
    }
    fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, k, _)| k.span)
    }
}

/// "step `a`" from "in step `a`", as "of step `a`" for nested places.
fn of(label: &str) -> String {
    format!("of {}", label.strip_prefix("in ").unwrap_or(label))
}

/// The span to point at for "missing key" problems: the first line of the mapping.
fn head(span: Span) -> Span {
    Span { len: 0, ..span }
}

impl Cx<'_> {
    fn wrong_type(&mut self, node: &Node, expected: &str, what: &str) {
        self.error(
            node.span,
            format!("expected {expected} for {what}, found {}", node.describe()),
            None,
        );
    }

    /// Checks `node` is a mapping with only `allowed` keys (each key a scalar), reporting unknown
    /// keys with a suggestion. `what` names the place for messages ("in step `deploy`").
    fn fields<'n>(&mut self, node: &'n Node, allowed: &[&str], what: &str) -> Option<Fields<'n>> {
        let Some(entries) = node.as_map() else {
            if what == "at top level" {
                self.error(
                    node.span,
                    format!(
                        "a workflow file must be a mapping (`name:`, `steps:` …), found {}",
                        node.describe()
                    ),
                    None,
                );
            } else {
                let place = what.strip_prefix("in ").unwrap_or(what);
                self.wrong_type(node, "a mapping", place);
            }
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(name) = self.key(k) else { continue };
            let name: &'n str = match &k.kind {
                NodeKind::Scalar(Scalar::Str(s, _)) => s.as_str(),
                _ => {
                    // Non-string scalar keys (`1:`, `true:`) are never valid workflow keys.
                    self.error(k.span, format!("unknown key `{name}` {what}"), None);
                    continue;
                }
            };
            if !allowed.contains(&name) {
                self.error(
                    k.span,
                    format!("unknown key `{name}` {what}"),
                    suggest(name, allowed.iter().copied())
                        .or_else(|| Some(format!("allowed keys: {}", allowed.join(", ")))),
                );
                continue;
            }
            out.push((name, k, v));
        }
        Some(Fields {
            span: node.span,
            entries: out,
        })
    }

    /// A mapping key as text; collections and null as keys are reported.
    fn key(&mut self, k: &Node) -> Option<String> {
        let t = k.scalar_text();
        if t.is_none() {
            self.error(
                k.span,
                format!("a key must be a plain name, found {}", k.describe()),
                None,
            );
        }
        t
    }

    fn require<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let v = f.get(key);
        if v.is_none() {
            self.error(
                head(f.span),
                format!("missing required key `{key}` {what}"),
                None,
            );
        }
        v
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match node.as_str() {
            Some(s) => Some(Spanned::new(node.span, s.to_owned())),
            None => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    /// Any scalar as text (for names and descriptions, where `name: 2024` is fine).
    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.scalar_text() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            NodeKind::Scalar(Scalar::Bool(b)) => Some(b),
            _ => {
                let hint = node
                    .as_str()
                    .filter(|s| {
                        matches!(s.to_ascii_lowercase().as_str(), "yes" | "no" | "on" | "off")
                    })
                    .map(|_| "write `true` or `false`".to_owned());
                self.error(
                    node.span,
                    format!(
                        "expected `true` or `false` for {what}, found {}",
                        node.describe()
                    ),
                    hint,
                );
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, what: &str, min: u64) -> Option<u64> {
        let n = match &node.kind {
            NodeKind::Scalar(Scalar::Number(n)) => n.as_u64(),
            _ => None,
        };
        match n {
            Some(n) if n >= min => Some(n),
            Some(n) => {
                self.error(
                    node.span,
                    format!("{what} must be at least {min}, found {n}"),
                    None,
                );
                None
            }
            None => {
                self.wrong_type(node, "a whole number", what);
                None
            }
        }
    }

    /// A duration: a string like `30s`/`1h30m`, or a number of seconds. Zero is refused when
    /// `positive`.
    fn duration(&mut self, node: &Node, what: &str, positive: bool) -> Option<Duration> {
        let d = match &node.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) => match parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.error(
                        node.span,
                        format!("invalid duration for {what}: {e}"),
                        Some("write a duration like `30s`, `5m`, `1h30m` or `250ms`".into()),
                    );
                    return None;
                }
            },
            NodeKind::Scalar(Scalar::Number(n)) => match n.as_f64() {
                Some(f) if (0.0..1e12).contains(&f) => Duration::from_secs_f64(f),
                _ => {
                    self.error(
                        node.span,
                        format!("invalid duration for {what}: `{n}`"),
                        Some("write a duration like `30s`, `5m`, `1h30m` or `250ms`".into()),
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(node, "a duration", what);
                return None;
            }
        };
        if positive && d.is_zero() {
            self.error(node.span, format!("{what} must be greater than 0"), None);
            return None;
        }
        Some(d)
    }

    fn size(&mut self, node: &Node, what: &str) -> Option<u64> {
        let v = match &node.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) => parse_size(s),
            NodeKind::Scalar(Scalar::Number(n)) => {
                n.as_u64().ok_or_else(|| format!("invalid size `{n}`"))
            }
            _ => {
                self.wrong_type(node, "a size", what);
                return None;
            }
        };
        match v {
            Ok(0) => {
                self.error(node.span, format!("{what} must be greater than 0"), None);
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    node.span,
                    format!("invalid size for {what}: {e}"),
                    Some("write a size like `64MiB`, `512KiB` or a number of bytes".into()),
                );
                None
            }
        }
    }

    /// A list of strings; with `single`, one string alone is accepted as a list of one.
    fn string_list(&mut self, node: &Node, what: &str, single: bool) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) if single => {
                vec![Spanned::new(node.span, s.clone())]
            }
            NodeKind::Scalar(Scalar::Null) => Vec::new(),
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, &format!("an entry of {what}")))
                .collect(),
            _ => {
                self.wrong_type(
                    node,
                    if single {
                        "a name or a list of names"
                    } else {
                        "a list"
                    },
                    what,
                );
                Vec::new()
            }
        }
    }

    /// A template from a string scalar (syntax errors reported, the text kept literally).
    fn template(&mut self, node: &Node, what: &str) -> Option<Template> {
        let raw = match &node.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) => s.clone(),
            NodeKind::Scalar(Scalar::Number(_) | Scalar::Bool(_)) => node.scalar_text()?,
            _ => {
                self.wrong_type(node, "a string", what);
                return None;
            }
        };
        Some(self.template_text(node.span, &raw))
    }

    fn template_text(&mut self, span: Span, raw: &str) -> Template {
        match Template::parse(raw) {
            Ok(t) => t,
            Err(e) => {
                self.expr_error(span, raw, &e);
                Template::literal(raw)
            }
        }
    }

    /// Any YAML value, strings parsed as templates.
    fn value(&mut self, node: &Node) -> ValueNode {
        let kind = match &node.kind {
            NodeKind::Scalar(Scalar::Null) => ValueKind::Null,
            NodeKind::Scalar(Scalar::Bool(b)) => ValueKind::Bool(*b),
            NodeKind::Scalar(Scalar::Number(n)) => ValueKind::Number(n.clone()),
            NodeKind::Scalar(Scalar::Str(s, _)) => {
                ValueKind::String(self.template_text(node.span, s))
            }
            NodeKind::Seq(items) => ValueKind::List(items.iter().map(|i| self.value(i)).collect()),
            NodeKind::Map(entries) => {
                let mut m = IndexMap::with_capacity(entries.len());
                for (k, v) in entries {
                    if let Some(key) = self.key(k)
                        && !m.contains_key(&key)
                    {
                        let v = self.value(v);
                        m.insert(key, v);
                    }
                }
                ValueKind::Map(m)
            }
        };
        ValueNode {
            span: node.span,
            kind,
        }
    }

    /// A mapping of names to values (`with:`, `vars:`).
    fn value_map(&mut self, node: &Node, what: &str) -> IndexMap<String, ValueNode> {
        if node.is_null() {
            return IndexMap::new();
        }
        match self.value(node).kind {
            ValueKind::Map(m) => m,
            _ => {
                self.wrong_type(node, "a mapping", what);
                IndexMap::new()
            }
        }
    }

    /// Reports every key that appears twice in any mapping of the document.
    pub(crate) fn duplicate_keys(&mut self, node: &Node) {
        match &node.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => items.iter().for_each(|i| self.duplicate_keys(i)),
            NodeKind::Map(entries) => {
                let mut seen: std::collections::HashMap<String, Span> = Default::default();
                for (k, v) in entries {
                    if let Some(t) = k.scalar_text() {
                        if let Some(first) = seen.get(&t) {
                            let hint = format!(
                                "`{t}` is first given at line {}; remove one of them",
                                first.line
                            );
                            self.error(k.span, format!("duplicate key `{t}`"), Some(hint));
                        } else {
                            seen.insert(t, k.span);
                        }
                    }
                    self.duplicate_keys(v);
                }
            }
        }
    }
}

const TOP_KEYS: [&str; 11] = [
    "name",
    "description",
    "inputs",
    "vars",
    "connections",
    "secrets",
    "on",
    "drill",
    "timeout",
    "max-parallel",
    "steps",
];

const STEP_KEYS: [&str; 14] = [
    "id",
    "name",
    "uses",
    "with",
    "needs",
    "if",
    "strategy",
    "retry",
    "timeout",
    "continue-on-error",
    "grants",
    "limits",
    "compensate",
    "approval",
];

/// Converts the document root (None for an empty file).
pub(crate) fn workflow(cx: &mut Cx<'_>, root: Option<&Node>) -> Workflow {
    let mut wf = Workflow {
        file: cx.file.to_owned(),
        name: String::new(),
        description: None,
        inputs: IndexMap::new(),
        vars: IndexMap::new(),
        connections: IndexMap::new(),
        secrets: Vec::new(),
        on: None,
        drill: None,
        timeout: None,
        max_parallel: None,
        steps: Vec::new(),
        source: SourceText(cx.map.text().into()),
    };
    let Some(root) = root else {
        cx.error(
            cx.map.span(0, 0),
            "the workflow file is empty",
            Some("a workflow needs at least `name:` and `steps:`".into()),
        );
        return wf;
    };
    cx.duplicate_keys(root);
    let Some(top) = cx.fields(root, &TOP_KEYS, "at top level") else {
        return wf;
    };
    if let Some(n) = cx.require(&top, "name", "at top level") {
        wf.name = cx.text(n, "`name`").unwrap_or_default();
    }
    if let Some(n) = top.get("description") {
        wf.description = cx.text(n, "`description`");
    }
    if let Some(n) = top.get("inputs") {
        wf.inputs = inputs(cx, n);
    }
    if let Some(n) = top.get("vars") {
        for (k, v) in cx.value_map(n, "`vars`") {
            if !is_ident(&k) {
                cx.error(
                    v.span,
                    format!("invalid var name `{k}`"),
                    Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
                );
            }
            wf.vars.insert(k, v);
        }
    }
    if let Some(n) = top.get("connections") {
        wf.connections = connections(cx, n);
    }
    if let Some(n) = top.get("secrets") {
        let list = cx.string_list(n, "`secrets`", false);
        for s in list {
            if !is_secret_name(&s.value) {
                cx.error(
                    s.span,
                    format!("invalid secret name `{}`", s.value),
                    Some("use letters, digits and `_`, starting with a letter or `_`".into()),
                );
            } else if let Some(first) = wf.secrets.iter().find(|x| x.value == s.value) {
                let hint = format!("first declared at line {}", first.span.line);
                cx.error(
                    s.span,
                    format!("secret `{}` is declared twice", s.value),
                    Some(hint),
                );
            } else {
                wf.secrets.push(s);
            }
        }
    }
    if let Some(n) = top.get("on") {
        wf.on = triggers(cx, n);
    }
    if let Some(n) = top.get("drill") {
        wf.drill = drill(cx, n);
    }
    if let Some(n) = top.get("timeout") {
        wf.timeout = cx.duration(n, "`timeout`", true);
    }
    if let Some(n) = top.get("max-parallel") {
        wf.max_parallel = cx.uint(n, "`max-parallel`", 1).map(|v| v as usize);
    }
    if let Some(n) = cx.require(&top, "steps", "at top level") {
        match &n.kind {
            NodeKind::Seq(items) if items.is_empty() => {
                cx.error(
                    n.span,
                    "`steps` is empty",
                    Some("a workflow needs at least one step".into()),
                );
            }
            NodeKind::Seq(items) if items.len() > MAX_STEPS => {
                cx.error(n.span, format!("more than {MAX_STEPS} steps"), None);
            }
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = step(cx, item, i, &wf) {
                        wf.steps.push(s);
                    }
                }
            }
            NodeKind::Scalar(Scalar::Null) => {
                cx.error(
                    n.span,
                    "`steps` is empty",
                    Some("a workflow needs at least one step".into()),
                );
            }
            _ => cx.wrong_type(n, "a list of steps", "`steps`"),
        }
    }
    wf
}

const INPUT_TYPES: [&str; 6] = ["string", "number", "bool", "duration", "list", "map"];

fn inputs(cx: &mut Cx<'_>, node: &Node) -> IndexMap<String, InputDef> {
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
                                "int" | "integer" | "float" => {
                                    Some("did you mean `number`?".to_owned())
                                }
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
        InputType::Bool => "bool",
        InputType::Duration => "duration",
        InputType::List => "list",
        InputType::Map => "map",
    };
    let mismatch = |cx: &mut Cx<'_>, hint: Option<String>| {
        cx.error(
            d.span,
            format!("{what} must be a {type_name}, found {}", d.describe()),
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

fn connections(cx: &mut Cx<'_>, node: &Node) -> IndexMap<String, Connection> {
    let mut out = IndexMap::new();
    if node.is_null() {
        return out;
    }
    let Some(entries) = node.as_map() else {
        cx.wrong_type(node, "a mapping of connection names", "`connections`");
        return out;
    };
    for (k, v) in entries {
        let Some(name) = cx.key(k) else { continue };
        if !is_ident(&name) {
            cx.error(
                k.span,
                format!("invalid connection name `{name}`"),
                Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
            );
        }
        let what = format!("in connection `{name}`");
        let Some(f) = cx.fields(v, &["postgres", "url"], &what) else {
            continue;
        };
        let kind = match (f.get("postgres"), f.get("url")) {
            (Some(p), None) => cx
                .template(p, &format!("`postgres` of connection `{name}`"))
                .map(ConnectionKind::Postgres),
            (None, Some(u)) => {
                let t = cx.template(u, &format!("`url` of connection `{name}`"));
                if let Some(t) = &t
                    && t.is_literal()
                    && !(t.raw().starts_with("http://") || t.raw().starts_with("https://"))
                {
                    cx.error(
                        u.span,
                        format!("connection `{name}`: `{}` is not an http(s) URL", t.raw()),
                        Some("write it like `http://127.0.0.1:9180`".into()),
                    );
                }
                t.map(ConnectionKind::Http)
            }
            (Some(_), Some(_)) => {
                cx.error(
                    k.span,
                    format!("connection `{name}` has both `postgres` and `url`"),
                    Some("a connection is either a PostgreSQL DSN or an HTTP URL".into()),
                );
                None
            }
            (None, None) => {
                cx.error(
                    k.span,
                    format!("connection `{name}` needs `postgres: <DSN>` or `url: <URL>`"),
                    None,
                );
                None
            }
        };
        if let Some(kind) = kind
            && !out.contains_key(&name)
        {
            out.insert(name, Connection { span: v.span, kind });
        }
    }
    out
}

fn triggers(cx: &mut Cx<'_>, node: &Node) -> Option<Triggers> {
    let f = cx.fields(node, &["schedule"], "in `on`")?;
    let mut t = Triggers::default();
    let Some(s) = f.get("schedule") else {
        return Some(t);
    };
    let NodeKind::Seq(items) = &s.kind else {
        cx.wrong_type(s, "a list of `- cron: …` entries", "`on.schedule`");
        return Some(t);
    };
    for item in items {
        let Some(e) = cx.fields(item, &["cron", "overlap"], "in a schedule") else {
            continue;
        };
        let Some(c) = cx.require(&e, "cron", "in a schedule") else {
            continue;
        };
        let Some(cron) = cx.string(c, "`cron`") else {
            continue;
        };
        if !check_cron(cx, &cron) {
            continue;
        }
        let mut overlap = OverlapPolicy::Skip;
        if let Some(o) = e.get("overlap") {
            match o.as_str() {
                Some("skip") => overlap = OverlapPolicy::Skip,
                Some("queue") => overlap = OverlapPolicy::Queue,
                Some("allow") => overlap = OverlapPolicy::Allow,
                other => {
                    let hint = other
                        .and_then(|s| suggest(s, ["skip", "queue", "allow"]))
                        .or_else(|| Some("use `skip`, `queue` or `allow`".into()));
                    cx.error(
                        o.span,
                        format!(
                            "invalid `overlap`: {}",
                            other.map_or_else(|| o.describe().to_owned(), |s| format!("`{s}`"))
                        ),
                        hint,
                    );
                }
            }
        }
        t.schedule.push(Schedule {
            span: item.span,
            cron: cron.value,
            overlap,
        });
    }
    Some(t)
}

/// Validates a 5- or 6-field cron line (or an `@hourly`-style nickname) with croner.
fn check_cron(cx: &mut Cx<'_>, cron: &Spanned<String>) -> bool {
    let text = cron.value.trim();
    let fields = text.split_whitespace().count();
    if !(text.starts_with('@') || fields == 5 || fields == 6) {
        cx.error(
            cron.span,
            format!("invalid cron `{text}`: it has {fields} fields"),
            Some("use 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first".into()),
        );
        return false;
    }
    match text.parse::<croner::Cron>() {
        Ok(_) => true,
        Err(e) => {
            cx.error(
                cron.span,
                format!("invalid cron `{text}`: {e}"),
                Some("for example `*/5 * * * *` runs every five minutes".into()),
            );
            false
        }
    }
}

fn drill(cx: &mut Cx<'_>, node: &Node) -> Option<Drill> {
    let f = cx.fields(node, &["rto", "rpo", "rpo-bytes"], "in `drill`")?;
    let mut d = Drill {
        span: node.span,
        ..Drill::default()
    };
    if let Some(n) = f.get("rto") {
        d.rto = cx.duration(n, "`drill.rto`", true);
    }
    if let Some(n) = f.get("rpo") {
        d.rpo = cx.duration(n, "`drill.rpo`", false);
    }
    if let Some(n) = f.get("rpo-bytes") {
        d.rpo_bytes = match &n.kind {
            NodeKind::Scalar(Scalar::Number(v)) if v.as_u64() == Some(0) => Some(0),
            _ => cx.size(n, "`drill.rpo-bytes`"),
        };
    }
    Some(d)
}

fn step(cx: &mut Cx<'_>, node: &Node, index: usize, wf: &Workflow) -> Option<Step> {
    // Name the step in messages by its id when it has a usable one.
    let id_node = node.as_map().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.as_str() == Some("id"))
            .map(|(_, v)| v)
    });
    let label = match id_node.and_then(Node::as_str) {
        Some(id) => format!("in step `{id}`"),
        None => format!("in step #{}", index + 1),
    };
    let f = cx.fields(node, &STEP_KEYS, &label)?;
    let id = match cx.require(&f, "id", &label) {
        Some(n) => cx.string(n, "the step `id`"),
        None => None,
    };
    if let Some(id) = &id
        && !is_ident(&id.value)
    {
        cx.error(
            id.span,
            format!("invalid step id `{}`", id.value),
            Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
        );
    }
    let uses = match cx.require(&f, "uses", &label) {
        Some(n) => cx.string(n, "`uses`").filter(|u| check_uses(cx, u)),
        None => None,
    };
    let mut s = Step {
        span: node.span,
        id: id.unwrap_or_else(|| Spanned::new(head(node.span), String::new())),
        name: None,
        uses: uses.unwrap_or_else(|| Spanned::new(head(node.span), String::new())),
        with: IndexMap::new(),
        needs: Vec::new(),
        condition: None,
        matrix: None,
        retry: None,
        timeout: None,
        continue_on_error: false,
        grants: Grants::default(),
        limits: Limits::default(),
        compensate: Compensate::None,
        approval: None,
    };
    if let Some(n) = f.get("name") {
        s.name = cx.text(n, "the step `name`");
    }
    if let Some(n) = f.get("with") {
        s.with = cx.value_map(n, &format!("`with` {label}"));
    }
    if let Some(n) = f.get("needs") {
        s.needs = cx.string_list(n, "`needs`", true);
    }
    if let Some(n) = f.get("if") {
        s.condition = condition(cx, n);
    }
    if let Some(n) = f.get("strategy") {
        s.matrix = strategy(cx, n, &label);
    }
    if let Some(n) = f.get("retry") {
        s.retry = retry(cx, n, &label);
    }
    if let Some(n) = f.get("timeout") {
        s.timeout = cx.duration(n, "`timeout`", true);
    }
    if let Some(n) = f.get("continue-on-error") {
        s.continue_on_error = cx.bool(n, "`continue-on-error`").unwrap_or(false);
    }
    if let Some(n) = f.get("grants") {
        s.grants = grants(cx, n, &label, wf);
    }
    if let Some(n) = f.get("limits") {
        s.limits = limits(cx, n, &label);
    }
    if let Some(n) = f.get("compensate") {
        s.compensate = compensate(cx, n, &label);
    }
    if let Some(n) = f.get("approval") {
        s.approval = approval(cx, n, &label);
    }
    // A step without an id cannot be referred to; keep it out so later checks do not trip on it.
    (!s.id.value.is_empty()).then_some(s)
}

/// `uses:` is a path, a built-in name, or either pinned with `@sha256:<64 hex>`.
fn check_uses(cx: &mut Cx<'_>, uses: &Spanned<String>) -> bool {
    let u = uses.value.trim();
    if u.is_empty() {
        cx.error(
            uses.span,
            "`uses` is empty",
            Some("name a step component: `hello`, `./steps/x.wasm`".into()),
        );
        return false;
    }
    // A digest pin is `@…` in the last path component; an `@` inside a directory name is not one.
    if let Some((_, digest)) = u.rsplit_once('@').filter(|(_, d)| !d.contains('/')) {
        let ok = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            cx.error(
                uses.span,
                format!("invalid digest in `uses: {u}`"),
                Some("pin a component as `name@sha256:<64 hex digits>`".into()),
            );
            return false;
        }
    }
    true
}

fn condition(cx: &mut Cx<'_>, n: &Node) -> Option<Spanned<Expr>> {
    let raw = match &n.kind {
        NodeKind::Scalar(Scalar::Str(s, _)) => s.clone(),
        NodeKind::Scalar(Scalar::Bool(_) | Scalar::Number(_)) => n.scalar_text()?,
        _ => {
            cx.wrong_type(n, "an expression", "`if`");
            return None;
        }
    };
    let trimmed = raw.trim();
    if trimmed.contains("${{")
        && !(trimmed.starts_with("${{")
            && trimmed.ends_with("}}")
            && trimmed.matches("${{").count() == 1)
    {
        let at = raw.find("${{").unwrap_or(0);
        let span = cx.locate(n.span, &raw, at, 3);
        cx.error(
            span,
            "`if` mixes `${{ }}` with other text, which would make it an always-true string",
            Some("write the whole condition as one expression, with or without `${{ }}`".into()),
        );
        return None;
    }
    match Expr::parse(&raw) {
        Ok(e) => Some(Spanned::new(n.span, e)),
        Err(e) => {
            cx.expr_error(n.span, &raw, &e);
            None
        }
    }
}

fn strategy(cx: &mut Cx<'_>, n: &Node, label: &str) -> Option<Matrix> {
    let what = format!("in `strategy` {}", of(label));
    let f = cx.fields(n, &["matrix", "max-parallel", "fail-fast"], &what)?;
    let m = cx.require(&f, "matrix", &what)?;
    let mut matrix = Matrix {
        span: m.span,
        axes: IndexMap::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        max_parallel: None,
        fail_fast: true,
    };
    if let Some(v) = f.get("max-parallel") {
        matrix.max_parallel = cx.uint(v, "`strategy.max-parallel`", 1).map(|v| v as usize);
    }
    if let Some(v) = f.get("fail-fast") {
        matrix.fail_fast = cx.bool(v, "`strategy.fail-fast`").unwrap_or(true);
    }
    let Some(entries) = m.as_map() else {
        cx.wrong_type(m, "a mapping of axes", "`strategy.matrix`");
        return None;
    };
    let mut exclude_nodes = Vec::new();
    let mut axis_keys = 0;
    for (k, v) in entries {
        let Some(name) = cx.key(k) else { continue };
        match name.as_str() {
            "include" => matrix.include = combos(cx, v, "include"),
            "exclude" => {
                exclude_nodes.push(v);
                matrix.exclude = combos(cx, v, "exclude");
            }
            _ => {
                axis_keys += 1;
                if !is_ident(&name) {
                    cx.error(
                        k.span,
                        format!("invalid matrix axis name `{name}`"),
                        Some(
                            "use letters, digits, `_` and `-`, starting with a letter or `_`"
                                .into(),
                        ),
                    );
                    continue;
                }
                if let Some(axis) = axis(cx, v, &name) {
                    matrix.axes.entry(name).or_insert(axis);
                }
            }
        }
    }
    // Exclusions name axes; a typo would silently exclude nothing.
    for v in exclude_nodes {
        if let NodeKind::Seq(items) = &v.kind {
            for item in items {
                for (k, _) in item.as_map().unwrap_or(&[]) {
                    if let Some(key) = k.as_str()
                        && !matrix.axes.contains_key(key)
                    {
                        cx.error(
                            k.span,
                            format!("`exclude` names `{key}`, which is not a matrix axis"),
                            suggest(key, matrix.axes.keys().map(String::as_str)),
                        );
                    }
                }
            }
        }
    }
    if matrix.axes.is_empty() && matrix.include.is_empty() {
        if axis_keys > 0 {
            return None; // every axis was reported already
        }
        cx.error(
            m.span,
            "the matrix has no axes",
            Some("add an axis like `region: [eu, us]`".into()),
        );
        return None;
    }
    if matrix.static_legs().is_some_and(|legs| legs.is_empty()) {
        cx.error(
            m.span,
            "the matrix has no legs: `exclude` removes every combination",
            None,
        );
    }
    Some(matrix)
}

fn axis(cx: &mut Cx<'_>, v: &Node, name: &str) -> Option<MatrixAxis> {
    match &v.kind {
        NodeKind::Seq(items) if items.is_empty() => {
            cx.error(v.span, format!("matrix axis `{name}` has no values"), None);
            None
        }
        NodeKind::Seq(items) => {
            let mut values = Vec::with_capacity(items.len());
            for i in items {
                if i.as_str().is_some_and(|s| s.contains("${{")) {
                    cx.error(
                        i.span,
                        format!(
                            "expressions inside the list of matrix axis `{name}` are not evaluated"
                        ),
                        Some(format!(
                            "compute the whole axis instead: `{name}: ${{{{ … }}}}`"
                        )),
                    );
                    return None;
                }
                values.push(cx.value(i).to_json());
            }
            Some(MatrixAxis::Values(values))
        }
        NodeKind::Scalar(Scalar::Str(s, _)) => {
            let t = cx.template_text(v.span, s);
            if t.is_single_expr() {
                Some(MatrixAxis::Expr(Spanned::new(v.span, t)))
            } else if t.is_literal() {
                cx.error(
                    v.span,
                    format!(
                        "matrix axis `{name}` must be a list of values or a `${{{{ }}}}` expression"
                    ),
                    Some(format!("write `{name}: [{s}]` for a single value")),
                );
                None
            } else {
                cx.error(
                    v.span,
                    format!("matrix axis `{name}` must be exactly one `${{{{ }}}}` expression giving a list"),
                    None,
                );
                None
            }
        }
        _ => {
            cx.wrong_type(v, "a list of values", &format!("matrix axis `{name}`"));
            None
        }
    }
}

fn combos(cx: &mut Cx<'_>, v: &Node, what: &str) -> Vec<IndexMap<String, Json>> {
    let NodeKind::Seq(items) = &v.kind else {
        cx.wrong_type(v, "a list of mappings", &format!("`{what}`"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in items {
        match i.as_map() {
            Some([]) => cx.error(i.span, format!("empty entry in `{what}`"), None),
            Some(entries) => {
                let mut m = IndexMap::new();
                for (k, val) in entries {
                    if let Some(key) = cx.key(k) {
                        m.insert(key, cx.value(val).to_json());
                    }
                }
                out.push(m);
            }
            None => cx.wrong_type(i, "a mapping", &format!("an entry of `{what}`")),
        }
    }
    out
}

const RETRY_ON: [&str; 3] = ["retryable", "timeout", "fatal"];

fn retry(cx: &mut Cx<'_>, n: &Node, label: &str) -> Option<RetryPolicy> {
    let mut p = RetryPolicy {
        attempts: 3,
        backoff: Backoff::Exponential,
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        jitter: true,
        on: vec![RetryOn::Retryable, RetryOn::Timeout],
    };
    let attempts = |cx: &mut Cx<'_>, a: &Node| -> Option<u32> {
        match &a.kind {
            NodeKind::Scalar(Scalar::Number(v)) if v.as_i64().is_some_and(|x| x < 1) => {
                cx.error(
                    a.span,
                    format!("retry attempts must be at least 1, found {v}"),
                    Some("attempts count the first try too: `attempts: 1` means no retry".into()),
                );
                None
            }
            _ => cx
                .uint(a, "`retry.attempts`", 1)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        }
    };
    if let NodeKind::Scalar(Scalar::Number(_)) = n.kind {
        p.attempts = attempts(cx, n)?;
        return Some(p);
    }
    // Keep checking the other fields after a bad one; the policy is only used if all are fine.
    let errors_before = cx.diags.len();
    let what = format!("in `retry` {}", of(label));
    let f = cx.fields(
        n,
        &["attempts", "backoff", "initial", "max", "jitter", "on"],
        &what,
    )?;
    if let Some(a) = f.get("attempts") {
        p.attempts = attempts(cx, a).unwrap_or(p.attempts);
    }
    if let Some(b) = f.get("backoff") {
        match b.as_str() {
            Some("constant") => p.backoff = Backoff::Constant,
            Some("exponential") => p.backoff = Backoff::Exponential,
            other => {
                let hint = other
                    .and_then(|s| suggest(s, ["constant", "exponential"]))
                    .or_else(|| Some("use `constant` or `exponential`".into()));
                cx.error(
                    b.span,
                    format!(
                        "invalid `backoff`: {}",
                        other.map_or_else(|| b.describe().to_owned(), |s| format!("`{s}`"))
                    ),
                    hint,
                );
            }
        }
    }
    if let Some(d) = f.get("initial") {
        p.initial = cx
            .duration(d, "`retry.initial`", false)
            .unwrap_or(p.initial);
    }
    if let Some(d) = f.get("max") {
        p.max = cx.duration(d, "`retry.max`", false).unwrap_or(p.max);
    }
    if p.initial > p.max {
        let span = f
            .key_span("initial")
            .or(f.key_span("max"))
            .unwrap_or(n.span);
        cx.error(
            span,
            format!(
                "retry `initial` ({}) is larger than `max` ({})",
                format_duration(p.initial),
                format_duration(p.max)
            ),
            None,
        );
    }
    if let Some(j) = f.get("jitter") {
        p.jitter = cx.bool(j, "`retry.jitter`").unwrap_or(true);
    }
    if let Some(o) = f.get("on") {
        p.on = Vec::new();
        for s in cx.string_list(o, "`retry.on`", true) {
            let v = match s.value.as_str() {
                "retryable" => RetryOn::Retryable,
                "timeout" => RetryOn::Timeout,
                "fatal" => RetryOn::Fatal,
                other => {
                    let hint = suggest(other, RETRY_ON)
                        .or_else(|| Some("use `retryable`, `timeout` or `fatal`".into()));
                    cx.error(s.span, format!("unknown retry condition `{other}`"), hint);
                    continue;
                }
            };
            if !p.on.contains(&v) {
                p.on.push(v);
            }
        }
    }
    (cx.diags.len() == errors_before).then_some(p)
}

fn grants(cx: &mut Cx<'_>, n: &Node, label: &str, wf: &Workflow) -> Grants {
    let mut g = Grants::default();
    let what = format!("in `grants` {}", of(label));
    let Some(f) = cx.fields(n, &["http", "sql", "fs", "secrets", "dns"], &what) else {
        return g;
    };
    if let Some(d) = f.get("dns")
        && let Some(text) = cx.string(d, "`grants.dns`")
    {
        match Template::parse(&text.value) {
            Ok(t) => g.dns = Some(Spanned::new(text.span, t)),
            Err(e) => cx.error(
                text.span,
                format!("`grants.dns`: {e}"),
                Some(
                    "write the DNS server as `IP:PORT`, e.g. `127.0.0.1:5353` or `${{ inputs.dns_server }}`"
                        .into(),
                ),
            ),
        }
    }
    if let Some(h) = f.get("http") {
        let list = match &h.kind {
            NodeKind::Map(_) => {
                let hw = format!("in `grants.http` {}", of(label));
                match cx.fields(h, &["allow", "max-request", "max-response", "timeout"], &hw) {
                    Some(hf) => {
                        if let Some(v) = hf.get("max-request") {
                            g.http_limits.max_request_bytes = cx
                                .size(v, "`max-request`")
                                .unwrap_or(g.http_limits.max_request_bytes);
                        }
                        if let Some(v) = hf.get("max-response") {
                            g.http_limits.max_response_bytes = cx
                                .size(v, "`max-response`")
                                .unwrap_or(g.http_limits.max_response_bytes);
                        }
                        if let Some(v) = hf.get("timeout") {
                            g.http_limits.timeout = cx
                                .duration(v, "`grants.http.timeout`", true)
                                .unwrap_or(g.http_limits.timeout);
                        }
                        match cx.require(&hf, "allow", &hw) {
                            Some(a) => cx.string_list(a, "`grants.http.allow`", false),
                            None => Vec::new(),
                        }
                    }
                    None => Vec::new(),
                }
            }
            _ => cx.string_list(h, "`grants.http`", false),
        };
        for p in list {
            if http_grant(cx, &p, wf) {
                g.http.push(p);
            }
        }
    }
    if let Some(s) = f.get("sql") {
        for c in cx.string_list(s, "`grants.sql`", false) {
            match wf.connections.get(&c.value).map(|x| &x.kind) {
                Some(ConnectionKind::Postgres(_)) => g.sql.push(c),
                Some(ConnectionKind::Http(_)) => cx.error(
                    c.span,
                    format!(
                        "sql grant names connection `{}`, which is an HTTP `url`, not PostgreSQL",
                        c.value
                    ),
                    Some("grant it under `http` instead".into()),
                ),
                None => {
                    let hint = suggest(&c.value, wf.connections.keys().map(String::as_str)).or_else(|| {
                        Some(format!(
                            "declare it under `connections:` as `{}: {{postgres: \"host=… dbname=…\"}}`",
                            c.value
                        ))
                    });
                    cx.error(
                        c.span,
                        format!("sql grant names unknown connection `{}`", c.value),
                        hint,
                    );
                }
            }
        }
    }
    if let Some(fs) = f.get("fs") {
        match &fs.kind {
            NodeKind::Seq(items) => {
                for i in items {
                    if let Some(grant) = fs_grant(cx, i) {
                        g.fs.push(grant);
                    }
                }
            }
            _ => cx.wrong_type(fs, "a list of paths", "`grants.fs`"),
        }
    }
    if let Some(s) = f.get("secrets") {
        for name in cx.string_list(s, "`grants.secrets`", false) {
            if wf.secrets.iter().any(|d| d.value == name.value) {
                g.secrets.push(name);
            } else {
                let hint = suggest(&name.value, wf.secrets.iter().map(|s| s.value.as_str()))
                    .map(|h| format!("{h} (or declare it under the top-level `secrets:`)"))
                    .or_else(|| {
                        Some(format!(
                            "add `{}` to the top-level `secrets:` list",
                            name.value
                        ))
                    });
                cx.error(
                    name.span,
                    format!("secret `{}` is granted but not declared", name.value),
                    hint,
                );
            }
        }
    }
    g
}

/// An http grant is an origin pattern `scheme://host[:port]` (`*` in host labels and port) or the
/// name of a `url:` connection.
fn http_grant(cx: &mut Cx<'_>, p: &Spanned<String>, wf: &Workflow) -> bool {
    let v = p.value.as_str();
    // `${{ inputs.admin_url }}`: evaluated when the step runs; the URL's origin is granted.
    if v.contains("${{") {
        return match Template::parse(v) {
            Ok(_) => true,
            Err(e) => {
                cx.error(p.span, format!("http grant `{v}`: {e}"), None);
                false
            }
        };
    }
    let Some((scheme, rest)) = v.split_once("://") else {
        return match wf.connections.get(v).map(|c| &c.kind) {
            Some(ConnectionKind::Http(_)) => true,
            Some(ConnectionKind::Postgres(_)) => {
                cx.error(
                    p.span,
                    format!("http grant names connection `{v}`, which is PostgreSQL"),
                    Some("grant it under `sql` instead".into()),
                );
                false
            }
            None => {
                let hint = suggest(v, wf.connections.keys().map(String::as_str)).or_else(|| {
                    Some("write an origin like `https://api.example.com` or `http://127.0.0.1:*`, or name a `url:` connection".into())
                });
                cx.error(
                    p.span,
                    format!("http grant `{v}` is neither a URL pattern nor an HTTP connection"),
                    hint,
                );
                false
            }
        };
    };
    let bad = |cx: &mut Cx<'_>, why: &str| {
        cx.error(
            p.span,
            format!("invalid http grant `{v}`: {why}"),
            Some("write `scheme://host[:port]`, with `*` for any host label or port".into()),
        );
        false
    };
    if !matches!(scheme, "http" | "https" | "*") {
        return bad(cx, "the scheme must be `http`, `https` or `*`");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return bad(cx, "paths are not supported; grant the origin");
    }
    if authority.contains('@') {
        return bad(cx, "user names are not supported");
    }
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        match h.split_once(']') {
            Some((ip6, after)) => {
                if ip6.parse::<std::net::Ipv6Addr>().is_err() {
                    return bad(cx, "invalid IPv6 address");
                }
                (None, after.strip_prefix(':'))
            }
            None => return bad(cx, "unclosed `[`"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) => (Some(h), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return bad(cx, "the host is empty");
        }
        let labels_ok = host.split('.').all(|l| {
            l == "*" || (!l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
        if !labels_ok {
            return bad(
                cx,
                "the host may contain letters, digits, `-`, `.` and `*` labels",
            );
        }
    }
    if let Some(port) = port
        && port != "*"
        && port.parse::<u16>().map_or(true, |n| n == 0)
    {
        return bad(cx, "the port must be a number from 1 to 65535 or `*`");
    }
    true
}

fn fs_grant(cx: &mut Cx<'_>, n: &Node) -> Option<FsGrant> {
    let (host, guest, writable) = match &n.kind {
        NodeKind::Scalar(Scalar::Str(s, _)) => (s.clone(), None, false),
        NodeKind::Map(_) => {
            let f = cx.fields(n, &["path", "guest", "mode"], "in an `fs` grant")?;
            let path = cx.require(&f, "path", "in an `fs` grant")?;
            let path = cx.string(path, "`path`")?.value;
            let guest = match f.get("guest") {
                Some(g) => Some(cx.string(g, "`guest`")?),
                None => None,
            };
            let writable = match f.get("mode") {
                None => false,
                Some(m) => match m.as_str() {
                    Some("ro") => false,
                    Some("rw") => true,
                    other => {
                        let hint = other
                            .and_then(|s| suggest(s, ["ro", "rw"]))
                            .or_else(|| Some("use `ro` (read-only) or `rw` (read-write)".into()));
                        cx.error(
                            m.span,
                            format!(
                                "invalid fs `mode`: {}",
                                other.map_or_else(|| m.describe().to_owned(), |s| format!("`{s}`"))
                            ),
                            hint,
                        );
                        return None;
                    }
                },
            };
            (path, guest, writable)
        }
        _ => {
            cx.wrong_type(n, "a path or `{path, guest, mode}`", "an `fs` grant");
            return None;
        }
    };
    if host.trim().is_empty() {
        cx.error(n.span, "empty path in an `fs` grant", None);
        return None;
    }
    let guest = match guest {
        Some(g) if !g.value.starts_with('/') => {
            cx.error(
                g.span,
                format!("`guest` path `{}` must be absolute", g.value),
                Some(format!("write `/{}`", g.value)),
            );
            return None;
        }
        Some(g) => g.value,
        None if host.starts_with('/') => host.clone(),
        None => {
            let rel = host.trim_start_matches("./").trim_end_matches('/');
            format!("/{rel}")
        }
    };
    Some(FsGrant {
        span: n.span,
        host,
        guest,
        writable,
    })
}

fn limits(cx: &mut Cx<'_>, n: &Node, label: &str) -> Limits {
    let mut l = Limits::default();
    let what = format!("in `limits` {}", of(label));
    if let Some(f) = cx.fields(n, &["memory", "output"], &what) {
        if let Some(m) = f.get("memory") {
            l.memory = cx.size(m, "`limits.memory`").unwrap_or(l.memory);
        }
        if let Some(o) = f.get("output") {
            l.output = cx.size(o, "`limits.output`").unwrap_or(l.output);
        }
    }
    l
}

fn compensate(cx: &mut Cx<'_>, n: &Node, label: &str) -> Compensate {
    match &n.kind {
        NodeKind::Scalar(Scalar::Bool(true)) => Compensate::Export,
        NodeKind::Scalar(Scalar::Bool(false) | Scalar::Null) => Compensate::None,
        NodeKind::Map(_) => {
            let what = format!("in `compensate` {}", of(label));
            let Some(f) = cx.fields(n, &["uses", "with"], &what) else {
                return Compensate::None;
            };
            let Some(u) = cx.require(&f, "uses", &what) else {
                return Compensate::None;
            };
            let Some(uses) = cx
                .string(u, "`compensate.uses`")
                .filter(|u| check_uses(cx, u))
            else {
                return Compensate::None;
            };
            let with = f
                .get("with")
                .map(|w| cx.value_map(w, "`compensate.with`"))
                .unwrap_or_default();
            Compensate::Step {
                span: n.span,
                uses,
                with,
            }
        }
        _ => {
            cx.wrong_type(n, "`true`, `false` or `{uses, with}`", "`compensate`");
            Compensate::None
        }
    }
}

fn approval(cx: &mut Cx<'_>, n: &Node, label: &str) -> Option<Approval> {
    match &n.kind {
        NodeKind::Scalar(Scalar::Bool(true)) => Some(Approval {
            span: n.span,
            message: None,
            timeout: None,
        }),
        NodeKind::Scalar(Scalar::Bool(false) | Scalar::Null) => None,
        NodeKind::Map(_) => {
            let what = format!("in `approval` {}", of(label));
            let f = cx.fields(n, &["message", "timeout"], &what)?;
            Some(Approval {
                span: n.span,
                message: f
                    .get("message")
                    .and_then(|m| cx.template(m, "`approval.message`")),
                timeout: f
                    .get("timeout")
                    .and_then(|t| cx.duration(t, "`approval.timeout`", true)),
            })
        }
        _ => {
            cx.wrong_type(n, "`true` or `{message, timeout}`", "`approval`");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{EvalContext, RunStatus};
    use serde_json::json;

    fn wf(yaml: &str) -> Workflow {
        crate::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(yaml: &str) -> Vec<String> {
        let (_, d) = crate::analyze("t.yaml", yaml);
        d.iter()
            .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
            .collect()
    }

    #[test]
    fn typed_fields() {
        let w = wf(r#"
name: typed
description: d
inputs:
  n: {type: number, default: 2}
  d: {type: duration, default: 90}
  must: {type: string, required: true}
  plain:
vars: {a: "${{ inputs.n }}", b: [1, "x${{ vars.a }}"]}
connections:
  db: {postgres: "host=x"}
  web: {url: "http://127.0.0.1:9180"}
secrets: [S1, S2]
on: {schedule: [{cron: "@hourly"}]}
drill: {rto: 1m, rpo: 0s, rpo-bytes: 0}
timeout: 1h
max-parallel: 3
steps:
  - id: a
    uses: hello
    retry: {attempts: 4, backoff: constant, initial: 2s, max: 2s, jitter: false, on: fatal}
    timeout: 250ms
    continue-on-error: true
    grants:
      http: {allow: [web, "https://*.x.com:8443"], max-request: 1KiB, max-response: 2MB, timeout: 5s}
      sql: [db]
      fs: [data/, {path: /abs, mode: rw}, {path: rel, guest: /g}]
      secrets: [S2]
    limits: {memory: 32MiB, output: 100}
    compensate: {uses: undo, with: {k: v}}
    approval: true
  - id: b
    uses: hello
    needs: a
    if: false
    strategy: {matrix: {r: [eu, us]}, max-parallel: 1, fail-fast: false}
    approval: {message: "ok ${{ matrix.r }}?", timeout: 10m}
"#.replace("required: true}", "required: true, default: x}").as_str());
        assert_eq!(w.name, "typed");
        assert_eq!(w.inputs["n"].default, Some(json!(2)));
        assert_eq!(w.inputs["d"].default, Some(json!("90")));
        assert!(!w.inputs["must"].required);
        assert_eq!(w.inputs["plain"].ty, InputType::String);
        assert_eq!(w.vars.len(), 2);
        assert!(matches!(
            w.connections["db"].kind,
            ConnectionKind::Postgres(_)
        ));
        assert_eq!(w.secrets.len(), 2);
        assert_eq!(
            w.on.as_ref().unwrap().schedule[0].overlap,
            OverlapPolicy::Skip
        );
        let d = w.drill.as_ref().unwrap();
        assert_eq!(
            (d.rto, d.rpo, d.rpo_bytes),
            (Some(Duration::from_secs(60)), Some(Duration::ZERO), Some(0))
        );
        assert_eq!(w.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(w.max_parallel, Some(3));
        let a = &w.steps[0];
        assert_eq!(
            a.retry,
            Some(RetryPolicy {
                attempts: 4,
                backoff: Backoff::Constant,
                initial: Duration::from_secs(2),
                max: Duration::from_secs(2),
                jitter: false,
                on: vec![RetryOn::Fatal],
            })
        );
        assert_eq!(a.timeout, Some(Duration::from_millis(250)));
        assert!(a.continue_on_error);
        let http: Vec<&str> = a.grants.http.iter().map(|h| h.value.as_str()).collect();
        assert_eq!(http, ["web", "https://*.x.com:8443"]);
        assert_eq!(
            a.grants.http_limits,
            HttpLimits {
                max_request_bytes: 1024,
                max_response_bytes: 2_000_000,
                timeout: Duration::from_secs(5)
            }
        );
        assert_eq!(a.grants.sql[0].value, "db");
        let fs: Vec<(&str, &str, bool)> = a
            .grants
            .fs
            .iter()
            .map(|f| (f.host.as_str(), f.guest.as_str(), f.writable))
            .collect();
        assert_eq!(
            fs,
            [
                ("data/", "/data", false),
                ("/abs", "/abs", true),
                ("rel", "/g", false)
            ]
        );
        assert_eq!(a.grants.secrets[0].value, "S2");
        assert_eq!(
            a.limits,
            Limits {
                memory: 32 << 20,
                output: 100
            }
        );
        assert!(
            matches!(&a.compensate, Compensate::Step { uses, with, .. } if uses.value == "undo" && with.contains_key("k"))
        );
        assert!(
            a.approval
                .as_ref()
                .is_some_and(|p| p.message.is_none() && p.timeout.is_none())
        );
        let b = &w.steps[1];
        assert_eq!(b.needs[0].value, "a");
        assert_eq!(b.condition.as_ref().unwrap().value.source(), "false");
        let m = b.matrix.as_ref().unwrap();
        assert_eq!((m.max_parallel, m.fail_fast), (Some(1), false));
        assert_eq!(
            b.approval.as_ref().unwrap().timeout,
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn defaults() {
        let w = wf("name: d\nsteps:\n  - id: a\n    uses: hello\n    retry: 2\n");
        let a = &w.steps[0];
        let r = a.retry.as_ref().unwrap();
        assert_eq!(r.attempts, 2);
        assert_eq!(r.backoff, Backoff::Exponential);
        assert!(r.jitter);
        assert_eq!(r.on, [RetryOn::Retryable, RetryOn::Timeout]);
        assert_eq!(a.limits, Limits::default());
        assert_eq!(a.grants.http_limits, HttpLimits::default());
        assert!(matches!(a.compensate, Compensate::None));
        assert!(a.approval.is_none() && a.condition.is_none() && a.matrix.is_none());
    }

    #[test]
    fn with_values_evaluate() {
        let w = wf(
            "name: v\ninputs: {n: {type: number, default: 1}}\nsteps:\n  - id: a\n    uses: hello\n    with:\n      n: ${{ inputs.n }}\n      s: \"n=${{ inputs.n }}\"\n      l: [1, true, null, \"${{ inputs.n }}\"]\n      m: {k: v}\n",
        );
        let ctx = EvalContext {
            data: json!({"inputs": {"n": 5}}),
            status: RunStatus::default(),
        };
        let with: serde_json::Map<String, Json> = w.steps[0]
            .with
            .iter()
            .map(|(k, v)| (k.clone(), v.eval(&ctx).unwrap()))
            .collect();
        assert_eq!(
            Json::Object(with),
            json!({"n": 5, "s": "n=5", "l": [1, true, null, 5], "m": {"k": "v"}})
        );
        assert_eq!(w.steps[0].with["s"].to_json(), json!("n=${{ inputs.n }}"));
        assert!(!w.steps[0].with["l"].is_literal());
        assert!(w.steps[0].with["m"].is_literal());
    }

    #[test]
    fn matrix_legs_match_the_engine_rule() {
        let w = wf(
            "name: m\nsteps:\n  - id: a\n    uses: hello\n    strategy:\n      matrix:\n        r: [eu, us]\n        n: [1, 2]\n        exclude: [{r: us, n: 2}]\n        include: [{r: ap, n: 1, extra: true}, {r: eu, n: 1}]\n",
        );
        let m = w.steps[0].matrix.as_ref().unwrap();
        let keys: Vec<String> = m
            .static_legs()
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, ["eu,1", "eu,2", "us,1", "ap,1,true"]);
        assert_eq!(m.keys(), ["r", "n", "extra"]);
    }

    #[test]
    fn expressions_in_block_and_quoted_scalars_are_located() {
        // Literal block: the error is on the second content line.
        let e = errors(
            "name: x\nsteps:\n  - id: a\n    uses: hello\n    with:\n      script: |\n        first ${{ inputs.a }}\n        then ${{ inptus.b }}\n",
        );
        assert!(
            e.contains(&"8:18: invalid expression: unknown context `inptus`".to_owned()),
            "{e:?}"
        );
        // Double-quoted with an escape before the expression: still found by counting `${{`.
        let e = errors(
            "name: x\nsteps:\n  - id: a\n    uses: hello\n    with:\n      s: \"a\\tb ${{ inputz }}\"\n",
        );
        assert!(
            e.contains(&"6:20: invalid expression: unknown context `inputz`".to_owned()),
            "{e:?}"
        );
        // Single-quoted `if:` without braces.
        let e = errors("name: x\nsteps:\n  - id: a\n    uses: hello\n    if: 'inputs.x =='\n");
        assert!(
            e.iter().any(|m| m.starts_with("5:21: invalid expression")),
            "{e:?}"
        );
    }

    #[test]
    fn every_problem_is_collected() {
        let e = errors(
            "name: x\ntimeout: nope\nmax-parallel: 0\nsteps:\n  - id: a\n    uses: hello\n    timeout: 0\n    limits: {memory: lots}\n  - id: a\n    uses: hello\n    nedds: [b]\n",
        );
        assert_eq!(e.len(), 6, "{e:?}");
    }

    #[test]
    fn locate_falls_back_to_the_scalar() {
        let text = "k: \"\\u0041${{ x }}\"";
        let map = SourceMap::new(text);
        let region = map.span(3, text.len());
        // The value `A${{ x }}`: the escape shifts everything by 5 bytes, `${{` is still found.
        let s = locate(&map, region, "A${{ x }}", 5, 1);
        assert_eq!(&text[s.offset..s.offset + 1], "x");
        // Text the source does not contain verbatim points at the scalar.
        let s = locate(&map, region, "A", 0, 1);
        assert_eq!(s.offset, region.offset);
    }

    #[test]
    fn uses_forms() {
        let ok = "name: u\nsteps:\n  - {id: a, uses: ./steps/a@v2/x.wasm}\n  - {id: b, uses: \"hello@sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"}\n";
        assert!(crate::parse("t", ok).is_ok());
        let e =
            errors("name: u\nsteps:\n  - {id: a, uses: hello@latest}\n  - {id: b, uses: \" \"}\n");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn identifiers() {
        assert!(is_ident("deploy-eu_1"));
        assert!(is_ident("_x"));
        assert!(!is_ident("1a"));
        assert!(!is_ident("a b"));
        assert!(!is_ident(""));
        assert!(is_secret_name("PG_PASSWORD"));
        assert!(!is_secret_name("PG-PASSWORD"));
    }
}
