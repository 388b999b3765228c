//! Reading typed values out of YAML nodes: mappings with a fixed set of keys, strings, booleans,
//! whole numbers, durations, sizes, templates and free-form values. Each reader reports what is
//! wrong at the node and returns `None` (or an empty value) so conversion can go on.

use std::time::Duration;

use indexmap::IndexMap;

use super::{Cx, head};
use crate::diag::suggest;
use crate::duration::{parse_duration, parse_size};
use crate::expr::Template;
use crate::span::{Span, Spanned};
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

/// The entries of a mapping whose keys were checked, looked up by name.
pub(super) struct Fields<'n> {
    span: Span,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, _, v)| *v)
    }
    pub(super) fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, k, _)| k.span)
    }
}

impl Cx<'_> {
    pub(super) fn wrong_type(&mut self, node: &Node, expected: &str, what: &str) {
        self.error(
            node.span,
            format!("expected {expected} for {what}, found {}", node.describe()),
            None,
        );
    }

    /// Checks `node` is a mapping with only `allowed` keys (each key a scalar), reporting unknown
    /// keys with a suggestion. `what` names the place for messages ("in step `deploy`").
    pub(super) fn fields<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&str],
        what: &str,
    ) -> Option<Fields<'n>> {
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
    pub(super) fn key(&mut self, k: &Node) -> Option<String> {
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

    pub(super) fn require<'n>(
        &mut self,
        f: &Fields<'n>,
        key: &str,
        what: &str,
    ) -> Option<&'n Node> {
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

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match node.as_str() {
            Some(s) => Some(Spanned::new(node.span, s.to_owned())),
            None => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    /// Any scalar as text (for names and descriptions, where `name: 2024` is fine).
    pub(super) fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.scalar_text() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    pub(super) fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
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

    pub(super) fn uint(&mut self, node: &Node, what: &str, min: u64) -> Option<u64> {
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
    pub(super) fn duration(&mut self, node: &Node, what: &str, positive: bool) -> Option<Duration> {
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

    pub(super) fn size(&mut self, node: &Node, what: &str) -> Option<u64> {
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
    pub(super) fn string_list(
        &mut self,
        node: &Node,
        what: &str,
        single: bool,
    ) -> Vec<Spanned<String>> {
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
    pub(super) fn template(&mut self, node: &Node, what: &str) -> Option<Template> {
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

    pub(super) fn template_text(&mut self, span: Span, raw: &str) -> Template {
        match Template::parse(raw) {
            Ok(t) => t,
            Err(e) => {
                self.expr_error(span, raw, &e);
                Template::literal(raw)
            }
        }
    }

    /// Any YAML value, strings parsed as templates.
    pub(super) fn value(&mut self, node: &Node) -> ValueNode {
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
    pub(super) fn value_map(&mut self, node: &Node, what: &str) -> IndexMap<String, ValueNode> {
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
