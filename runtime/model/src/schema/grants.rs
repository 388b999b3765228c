//! The grants a component says it needs against those the workflow gives the step.
//!
//! A need the grants leave out is an error: the step would fail on the call it was not allowed,
//! possibly after earlier steps changed production. A workflow that knows the step does not use
//! a need with its input says so with `grants.optional: [KIND, …]`.
//!
//! A need's detail is either exact — a URL, a connection name, an absolute guest path, a secret
//! name — or prose about the step's input ("the admin key named by `token_secret`"): a step's
//! `describe` is fixed, so a need that depends on its input can only say where it comes from.
//! The inputs prose names in backticks are read from the step's `with:`, or the input schema's
//! `default` when `with:` leaves them out:
//! - a literal string is checked exactly, as if the component had named it;
//! - an expression or a non-string value (a list of URLs) asks for some grant of the kind;
//! - when every input named is absent and has no default (or an empty one), the need does not
//!   apply to this step (`db-postgres` needs a secret only when `publisher_dsn_secret` is given);
//! - prose naming no input asks for some grant of the kind.

use std::collections::HashSet;

use meridian_protocol::origin::Url;
use meridian_protocol::{GrantKind, GrantRequest, OriginPattern};
use serde_json::Value as Json;

use super::Checker;
use super::value::resolve;
use crate::convert::is_secret_name;
use crate::diag::Diagnostic;
use crate::workflow::*;

/// What a need asks of the step's grants once its input is known.
enum Target {
    /// This secret, connection, URL or guest path.
    Exact(String),
    /// Some grant of the need's kind: what it is depends on a value known only at run time.
    Any,
}

impl Checker<'_> {
    /// Errors for capabilities a step needs but was not granted (unless the workflow marks the
    /// kind optional), and warnings for `optional` kinds the component does not need.
    pub(super) fn grants(
        &mut self,
        wf: &Workflow,
        s: &Step,
        input: &Json,
        needed: &[GrantRequest],
    ) {
        let optional: HashSet<GrantKind> = s.grants.optional.iter().map(|o| o.value).collect();
        for need in needed {
            // A step cannot know the DNS server a workflow routes it through.
            if need.kind == GrantKind::Dns || optional.contains(&need.kind) {
                continue;
            }
            for target in targets(s, input, &need.detail) {
                let Some(fix) = gap(wf, s, need.kind, &target) else {
                    continue;
                };
                let what = match (&target, need.detail.contains(char::is_whitespace)) {
                    (Target::Exact(v), true) => {
                        format!("{} access to `{v}` ({})", need.kind, need.detail)
                    }
                    (Target::Exact(v), false) => format!("{} access to `{v}`", need.kind),
                    // Prose is quoted as prose; it may hold backticks of its own.
                    (Target::Any, _) => format!("{} access ({})", need.kind, need.detail),
                };
                let d = Diagnostic::error(
                    self.file,
                    s.uses.span,
                    format!(
                        "step `{}` (`uses: {}`) needs {what}, which its grants do not allow",
                        s.id.value, s.uses.value
                    ),
                );
                let hint = format!(
                    "{fix}; or, if the step does not use it with this input, {}",
                    add(s, "optional", optional_key(need.kind))
                );
                self.push(d, Some(hint));
            }
        }
        for o in &s.grants.optional {
            if !needed.iter().any(|n| n.kind == o.value) {
                let d = Diagnostic::warning(
                    self.file,
                    o.span,
                    format!(
                        "`grants.optional` lists `{}`, but `{}` declares no {} need",
                        optional_key(o.value),
                        s.uses.value,
                        o.value
                    ),
                );
                self.push(d, Some("remove it from the list".into()));
            }
        }
    }
}

/// The key of a kind in `grants:` (and in `grants.optional`).
fn optional_key(kind: GrantKind) -> &'static str {
    match kind {
        GrantKind::Secret => "secrets",
        other => other.as_str(),
    }
}

/// What `detail` asks of this step: one target per input it names that the step gives (or
/// defaults), nothing when it names inputs the step leaves out.
fn targets(s: &Step, input: &Json, detail: &str) -> Vec<Target> {
    if !detail.contains(char::is_whitespace) {
        return vec![Target::Exact(detail.to_owned())];
    }
    let named: Vec<&str> = detail
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
        .collect();
    if named.is_empty() {
        return vec![Target::Any];
    }
    named
        .into_iter()
        .filter_map(|path| match given(&s.with, path) {
            Some(v) => Some(match &v.kind {
                ValueKind::String(t) if t.is_literal() => Target::Exact(t.raw().to_owned()),
                _ => Target::Any,
            }),
            // An empty default (no files, no URL) names nothing to reach.
            None => match default_at(input, path)? {
                Json::Null => None,
                Json::String(d) if d.is_empty() => None,
                Json::Array(a) if a.is_empty() => None,
                Json::Object(o) if o.is_empty() => None,
                Json::String(d) => Some(Target::Exact(d.clone())),
                _ => Some(Target::Any),
            },
        })
        .collect()
}

/// The value at a dotted input path in `with:` (`provider.route53.endpoint`).
fn given<'w>(with: &'w indexmap::IndexMap<String, ValueNode>, path: &str) -> Option<&'w ValueNode> {
    let mut parts = path.split('.');
    let mut at = with.get(parts.next()?)?;
    for p in parts {
        match &at.kind {
            ValueKind::Map(m) => at = m.get(p)?,
            _ => return None,
        }
    }
    Some(at)
}

/// The schema's `default` for a dotted input path: the property's own `default` (a default on a
/// parent object is not looked into).
fn default_at<'s>(root: &'s Json, path: &str) -> Option<&'s Json> {
    let mut schema = resolve(root, root);
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let prop = property(root, schema, p)?;
        if parts.peek().is_none() {
            return prop.get("default");
        }
        schema = prop;
    }
    None
}

/// The schema of property `name` of `schema`, looking through `$ref`s and `allOf`/`anyOf`/`oneOf`.
fn property<'s>(root: &'s Json, schema: &'s Json, name: &str) -> Option<&'s Json> {
    let schema = resolve(root, schema);
    if let Some(p) = schema.get("properties").and_then(|ps| ps.get(name)) {
        return Some(resolve(root, p));
    }
    ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Json::as_array))
        .flatten()
        .find_map(|branch| property(root, branch, name))
}

/// Where `value` goes in the step's grants, as YAML to write.
fn add(s: &Step, key: &str, value: &str) -> String {
    match &s.grants.written {
        None => format!(
            "add `grants: {{{key}: [{value}]}}` to step `{}`",
            s.id.value
        ),
        Some(keys) => match keys
            .iter()
            .find(|k| *k == key || k.strip_suffix(".allow") == Some(key))
        {
            Some(k) => format!("add `{value}` to the step's `grants.{k}` list"),
            None => format!("add `{key}: [{value}]` under the step's `grants:`"),
        },
    }
}

/// The fix when the step's grants leave `target` out, `None` when they cover it.
fn gap(wf: &Workflow, s: &Step, kind: GrantKind, target: &Target) -> Option<String> {
    let g = &s.grants;
    match (kind, target) {
        (GrantKind::Http, Target::Exact(url)) => match exact_url(url) {
            Some((origin, url)) => {
                let granted = g.http.iter().any(|h| {
                    h.value
                        .origin_before_run(wf)
                        .is_none_or(|p| p.matches(&url))
                });
                // The canonical form of a pattern needs no YAML escaping inside double quotes.
                (!granted).then(|| add(s, "http", &format!("\"{origin}\"")))
            }
            None => gap(wf, s, kind, &Target::Any),
        },
        (GrantKind::Http, Target::Any) => g.http.is_empty().then(|| {
            format!(
                "{} with the origin it calls, or an expression giving its URL (`\"${{{{ inputs.url }}}}\"`)",
                add(s, "http", "\"https://api.example.com\"")
            )
        }),
        (GrantKind::Sql, Target::Exact(name)) if wf.connections.contains_key(name) => {
            (!g.sql.iter().any(|c| &c.value == name)).then(|| add(s, "sql", name))
        }
        (GrantKind::Sql, _) => g.sql.is_empty().then(|| {
            let known: Vec<&str> = wf
                .connections
                .iter()
                .filter(|(_, c)| matches!(c.kind, ConnectionKind::Postgres(_)))
                .map(|(n, _)| n.as_str())
                .collect();
            match known.first() {
                Some(first) => format!(
                    "{} (the workflow's PostgreSQL connections: {})",
                    add(s, "sql", first),
                    known.join(", ")
                ),
                None => format!(
                    "declare a connection (`connections: {{db: {{postgres: \"host=… dbname=…\"}}}}`) and {}",
                    add(s, "sql", "db")
                ),
            }
        }),
        (GrantKind::Fs, Target::Exact(path)) if path.starts_with('/') => {
            (!g.fs.iter().any(|f| path_within(path, &f.guest)))
                .then(|| add(s, "fs", &format!("{{path: .{path}, guest: {path}}}")))
        }
        (GrantKind::Fs, _) => g
            .fs
            .is_empty()
            .then(|| add(s, "fs", "{path: ./data, guest: /data}")),
        (GrantKind::Secret, Target::Exact(name)) if is_secret_name(name) => {
            (!g.secrets.iter().any(|x| &x.value == name)).then(|| {
                let declare = if wf.secrets.iter().any(|d| &d.value == name) {
                    String::new()
                } else {
                    format!("add `{name}` to the top-level `secrets:` list and ")
                };
                format!("{declare}{}", add(s, "secrets", name))
            })
        }
        (GrantKind::Secret, _) => g.secrets.is_empty().then(|| {
            let declared: Vec<&str> = wf.secrets.iter().map(|d| d.value.as_str()).collect();
            match declared.first() {
                Some(first) => format!(
                    "{} with the secret it reads (declared: {})",
                    add(s, "secrets", first),
                    declared.join(", ")
                ),
                None => format!(
                    "declare the secret it reads under the top-level `secrets:` and {}",
                    add(s, "secrets", "NAME")
                ),
            }
        }),
        (GrantKind::Dns, _) => None,
    }
}

/// `detail` as a URL and its origin, when it is one.
fn exact_url(detail: &str) -> Option<(OriginPattern, Url)> {
    let url = Url::parse(detail).ok()?;
    Some((OriginPattern::of_url(&url).ok()?, url))
}

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}
