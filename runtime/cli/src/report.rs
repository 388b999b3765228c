//! A run as a self-contained HTML page: summary, drill measurements, and a timeline of every
//! attempt (`meridian runs show RUN --html FILE`). Built from the journal alone, so it can be
//! produced for any past run; secrets were masked before they were journaled.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use meridian_protocol::{Event, display_id};
use meridian_store::{EventRecord, RunRecord, RunSummary};
use serde_json::Value as Json;

/// HTML-escaped, with what a step wrote that could act on a terminal (someone may `cat` the
/// page) escaped too.
fn esc(s: &str) -> String {
    meridian_protocol::text::for_terminal(s, "")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One bar of the timeline.
struct Bar {
    label: String,
    start: i64,
    end: Option<i64>,
    outcome: String,
    note: String,
}

pub fn html(record: &RunRecord, summary: &RunSummary, events: &[EventRecord]) -> String {
    let t0 = events
        .first()
        .map(|e| e.at_ms)
        .unwrap_or(summary.created_at_ms);
    let t_end = events.last().map(|e| e.at_ms).unwrap_or(t0).max(t0 + 1);
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut bars: Vec<Bar> = Vec::new();
    let mut measures: BTreeMap<&'static str, f64> = BTreeMap::new();
    for e in events {
        match &e.event {
            Event::AttemptStarted {
                step, leg, attempt, ..
            } => {
                let id = display_id(step, leg);
                open.insert(id.clone(), bars.len());
                bars.push(Bar {
                    label: format!("{id} #{attempt}"),
                    start: e.at_ms,
                    end: None,
                    outcome: "running".into(),
                    note: String::new(),
                });
            }
            Event::AttemptFailed {
                step, leg, error, ..
            } => {
                if let Some(&i) = open.get(&display_id(step, leg)) {
                    bars[i].end = Some(e.at_ms);
                    bars[i].outcome = "failure".into();
                    bars[i].note = error.to_string();
                }
            }
            Event::LegFinished {
                step,
                leg,
                outcome,
                output,
                ..
            } => {
                if let Some(&i) = open.get(&display_id(step, leg))
                    && bars[i].end.is_none()
                {
                    bars[i].end = Some(e.at_ms);
                    bars[i].outcome = outcome.as_str().into();
                }
                for key in ["rto_ms", "rpo_ms", "rpo_bytes"] {
                    if let Some(v) = output.get(key).and_then(Json::as_f64) {
                        measures.insert(key, v);
                    }
                }
            }
            Event::StepSkipped { step, reason } => bars.push(Bar {
                label: step.clone(),
                start: e.at_ms,
                end: Some(e.at_ms),
                outcome: "skipped".into(),
                note: reason.clone(),
            }),
            _ => {}
        }
    }
    let span = (t_end - t0) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{padding:2px 10px;text-align:left}} .bar{{height:14px;border-radius:3px;position:absolute}}
.row{{position:relative;height:18px;background:#f3f3f3;width:700px}} .success{{background:#2e9d50}}
.failure{{background:#d33}} .cancelled{{background:#e9a800}} .skipped{{background:#bbb}} .running{{background:#49c}}
</style></head><body><h1>{title}</h1>
<table><tr><th>run</th><td>{id}</td></tr><tr><th>workflow</th><td>{path}</td></tr>
<tr><th>mode</th><td>{mode}</td></tr><tr><th>status</th><td>{status}</td></tr>
<tr><th>message</th><td>{message}</td></tr><tr><th>duration</th><td>{dur} ms</td></tr>
<tr><th>inputs</th><td><code>{inputs}</code></td></tr></table>"#,
        title = esc(&record.workflow),
        id = esc(&record.id),
        path = esc(&record.workflow_path),
        mode = esc(record.mode.as_str()),
        status = esc(summary.status.as_str()),
        message = esc(summary.message.as_deref().unwrap_or("")),
        dur = t_end - t0,
        inputs = esc(&record.inputs.to_string()),
    );
    if !measures.is_empty() {
        out.push_str("<h2>Drill</h2><table><tr><th>measure</th><th>achieved</th></tr>");
        for (k, v) in &measures {
            let _ = write!(out, "<tr><td>{k}</td><td>{v:.0}</td></tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Timeline</h2><table>");
    for bar in &bars {
        let end = bar.end.unwrap_or(t_end);
        let left = (bar.start - t0) as f64 / span * 100.0;
        let width = (((end - bar.start) as f64 / span) * 100.0).max(0.4);
        let _ = write!(
            out,
            r#"<tr><td>{label}</td><td><div class="row"><div class="bar {cls}" style="left:{left:.2}%;width:{width:.2}%" title="{note}"></div></div></td><td>{ms} ms</td><td>{outcome}</td></tr>"#,
            label = esc(&bar.label),
            cls = esc(&bar.outcome),
            note = esc(&bar.note),
            ms = end - bar.start,
            outcome = esc(&bar.outcome),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
