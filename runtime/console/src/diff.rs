//! What a step would change (plan mode's records) and what a config sync changed (an ADC
//! step's `events`), rendered as a diff.

use maud::{Markup, html};
use meridian_protocol::PlannedChange;
use serde_json::Value as Json;

use crate::fmt::clean;

/// Lines of JSON, each prefixed.
fn json_lines(prefix: &str, v: &Json) -> Vec<String> {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("{prefix}{l}"))
        .collect()
}

/// Plan mode's recorded changes.
pub(crate) fn plan(changes: &[PlannedChange]) -> Markup {
    html! {
        h3.muted { "Intended changes (plan)" }
        pre.diff {
            @for c in changes {
                @match c {
                    PlannedChange::Http { method, url, body_json, body_summary, body_bytes, .. } => {
                        span.chg { "~ " (clean(method)) " " (clean(url)) " (" (body_bytes) " bytes)" } "\n"
                        @if let Some(j) = body_json {
                            @for l in json_lines("+   ", j) { span.add { (clean(&l)) } "\n" }
                        } @else if let Some(s) = body_summary {
                            span.add { "+   " (clean(s)) } "\n"
                        }
                    }
                    PlannedChange::Sql { connection, statement, reason, .. } => {
                        span.chg { "~ SQL on " (clean(connection)) " (" (clean(reason)) ")" } "\n"
                        @for l in statement.lines() { span.add { "+   " (clean(l)) } "\n" }
                    }
                }
            }
        }
    }
}

/// An ADC sync's `events` (`{type: create|update|delete, resource_type, name, id, diff:
/// [{path, old, new}]}`), when the output has them.
pub(crate) fn adc(output: &Json) -> Markup {
    let Some(events) = output.get("events").and_then(Json::as_array) else {
        return html! {};
    };
    let events: Vec<&Json> = events
        .iter()
        .filter(|e| {
            matches!(
                e.get("type").and_then(Json::as_str),
                Some("create" | "update" | "delete")
            )
        })
        .collect();
    if events.is_empty() {
        return html! {};
    }
    let s = |e: &Json, k: &str| e.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    html! {
        h3.muted { "Gateway configuration changes" }
        pre.diff {
            @for e in &events {
                @let kind = s(e, "type");
                @let (sign, class) = match kind.as_str() { "create" => ("+", "add"), "delete" => ("-", "del"), _ => ("~", "chg") };
                span class=(class) { (sign) " " (kind) " " (clean(&s(e, "resource_type"))) " " (clean(&s(e, "name"))) " (" (clean(&s(e, "id"))) ")" } "\n"
                @for c in e.get("diff").and_then(Json::as_array).into_iter().flatten() {
                    @let path = s(c, "path");
                    @if let Some(old) = c.get("old") { span.del { "-     " (clean(&path)) ": " (clean(&old.to_string())) } "\n" }
                    @if let Some(new) = c.get("new") { span.add { "+     " (clean(&path)) ": " (clean(&new.to_string())) } "\n" }
                }
            }
        }
    }
}
