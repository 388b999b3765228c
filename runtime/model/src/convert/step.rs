//! One entry of `steps:` and its smaller keys (`uses`, `if`, `retry`, `limits`, `compensate`,
//! `approval`); `strategy` and `grants` have their own modules.

use std::time::Duration;

use indexmap::IndexMap;

use super::grants::grants;
use super::strategy::strategy;
use super::{Cx, head, is_ident, of};
use crate::diag::suggest;
use crate::duration::format_duration;
use crate::expr::Expr;
use crate::span::Spanned;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};
use meridian_protocol::ComponentRefError;

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

pub(super) fn step(cx: &mut Cx<'_>, node: &Node, index: usize, wf: &Workflow) -> Option<Step> {
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
        Some(n) => cx.string(n, "`uses`"),
        None => None,
    };
    let component = uses.as_ref().and_then(|u| component(cx, u));
    let mut s = Step {
        span: node.span,
        id: id.unwrap_or_else(|| Spanned::new(head(node.span), String::new())),
        name: None,
        uses: uses.unwrap_or_else(|| Spanned::new(head(node.span), String::new())),
        component,
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

/// `uses:` is a path, a built-in name, or either pinned with `@sha256:<64 hex>`; a relative path
/// is resolved against the workflow file's directory, here and only here.
fn component(cx: &mut Cx<'_>, uses: &Spanned<String>) -> Option<ComponentRef> {
    match ComponentRef::parse(&uses.value, &cx.base) {
        Ok(c) if c.is_unpinned_oci() => {
            cx.warn(
                uses.span,
                format!(
                    "`uses: {}` names a tag without a digest: what runs can change under the same workflow",
                    uses.value.trim()
                ),
                Some(
                    "pin it as `…:TAG@sha256:<manifest digest>` (`meridian step push` and `meridian step pull` print it); `run` and `plan` refuse it unless --allow-unpinned".into(),
                ),
            );
            Some(c)
        }
        Ok(c) => Some(c),
        Err(ComponentRefError::Empty) => {
            cx.error(
                uses.span,
                "`uses` is empty",
                Some("name a step component: `hello`, `./steps/x.wasm`".into()),
            );
            None
        }
        Err(e @ ComponentRefError::Oci(..)) => {
            cx.error(
                uses.span,
                e.to_string(),
                Some("e.g. `uses: oci://registry.example.com/acme/notify-webhook:1.0@sha256:<64 hex digits>`".into()),
            );
            None
        }
        Err(e @ ComponentRefError::Digest(_)) => {
            cx.error(
                uses.span,
                format!("invalid digest in `uses: {}`: {e}", uses.value.trim()),
                Some("pin a component as `name@sha256:<64 hex digits>`".into()),
            );
            None
        }
    }
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

fn limits(cx: &mut Cx<'_>, n: &Node, label: &str) -> Limits {
    let mut l = Limits::default();
    let what = format!("in `limits` {}", of(label));
    if let Some(f) = cx.fields(n, &["memory", "output", "handles"], &what) {
        if let Some(h) = f.get("handles")
            && let Some(v) = cx.uint(h, "`limits.handles`", 1)
        {
            match u32::try_from(v) {
                Ok(v) if v <= Limits::MAX_HANDLES => l.handles = v,
                _ => cx.error(
                    h.span,
                    format!(
                        "`limits.handles` is above the most a step may hold ({})",
                        Limits::MAX_HANDLES
                    ),
                    Some("a step holding that many files at once is better split".into()),
                ),
            }
        }
        // Caught here, at file:line:col; it passed `validate` and failed the step at run time.
        let mut capped = |n: &Node, what: &str, max: u64, why: &str| -> Option<u64> {
            let v = cx.size(n, what)?;
            if v > max {
                cx.error(
                    n.span,
                    format!(
                        "{what} is above the most a step may have ({} MiB)",
                        max >> 20
                    ),
                    Some(why.into()),
                );
                return None;
            }
            Some(v)
        };
        if let Some(m) = f.get("memory") {
            l.memory = capped(
                m,
                "`limits.memory`",
                Limits::MAX_MEMORY,
                "the sandbox gives a step at most this much linear memory",
            )
            .unwrap_or(l.memory);
        }
        if let Some(o) = f.get("output") {
            l.output = capped(
                o,
                "`limits.output`",
                Limits::MAX_OUTPUT,
                "an output is journaled and shown: put bulk data in files or kv",
            )
            .unwrap_or(l.output);
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
            let Some(uses) = cx.string(u, "`compensate.uses`") else {
                return Compensate::None;
            };
            let Some(component) = component(cx, &uses) else {
                return Compensate::None;
            };
            let with = f
                .get("with")
                .map(|w| cx.value_map(w, "`compensate.with`"))
                .unwrap_or_default();
            Compensate::Step {
                span: n.span,
                uses,
                component,
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
