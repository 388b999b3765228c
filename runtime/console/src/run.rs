//! The run page: what happened in words, the drill's figures against its targets, the
//! approval gates, a timeline of every attempt, and each step's outputs, errors and plan.

use maud::{Markup, html};
use meridian_protocol::{Mode, RunStatus};
use meridian_runner::DrillVerdict;
use meridian_store::{EventRecord, RunRecord, RunSummary};

use crate::fmt::{clean, dur, figure, plain_error, wall};
use crate::layout::{Shell, badge, page};
use crate::timeline::{Lane, Story};

/// What the run page is made from (all of it read from the journal, secrets already masked).
pub struct RunData<'a> {
    pub record: &'a RunRecord,
    pub summary: &'a RunSummary,
    pub events: &'a [EventRecord],
    /// The workflow's step ids in file order (lanes for the steps that have not started);
    /// empty when the workflow is not at hand.
    pub steps: &'a [String],
    /// The drill's figures when the workflow has a `drill:` block — also for a run that
    /// failed, whose figures then say what was not measured.
    pub drill: Option<&'a DrillVerdict>,
    /// Why there is no drill section when there might be one (the workflow file is gone).
    pub drill_note: Option<&'a str>,
    /// Unix ms now: the end of the bars of attempts still going.
    pub now_ms: i64,
    /// A server is driving the run now (its page follows the run live).
    pub live: bool,
}

/// At most this much of one leg's output is shown (the rest: `meridian runs show --json`).
const OUTPUT_SHOWN: usize = 8 * 1024;

/// The whole run page.
pub fn run_page(d: &RunData<'_>, shell: Shell<'_>) -> String {
    let title = format!("{} — run {}", clean(&d.record.workflow), d.record.id);
    let story = Story::read(d.events, d.steps, d.now_ms);
    let live = matches!(shell, Shell::Served(_))
        && (d.live
            || matches!(
                d.summary.status,
                RunStatus::Running | RunStatus::AwaitingApproval
            ));
    let body = html! {
        h1 { "Run " code { (d.record.id) } " of " (clean(&d.record.workflow)) }
        @if let Shell::Served(_) = shell {
            p #live-status .muted role="status" aria-live="polite" {}
        }
        div #live data-run=(d.record.id) data-live=(if live { "1" } else { "0" })
            data-seq=(story.last_seq) {
            (live_part(d, &story, shell))
        }
    };
    page(&title, shell, "/runs", &body)
}

/// The part of the run page that a live page fetches again when the run moves on.
pub fn run_live(d: &RunData<'_>, shell: Shell<'_>) -> String {
    let story = Story::read(d.events, d.steps, d.now_ms);
    live_part(d, &story, shell).into_string()
}

fn live_part(d: &RunData<'_>, story: &Story<'_>, shell: Shell<'_>) -> Markup {
    let status = d.summary.status.as_str();
    html! {
        span hidden data-seq=(story.last_seq) {}
        p class={"say " (status)} { (headline(d, story)) }
        dl.facts {
            dt { "State" } dd { (badge(status)) }
            dt { "Workflow" } dd {
                @if let Shell::Served(_) = shell {
                    a href={"/runs?workflow=" (urlenc(&d.record.workflow))} { (clean(&d.record.workflow)) }
                } @else { (clean(&d.record.workflow)) }
                " " span.muted { (clean(&d.record.workflow_path)) }
            }
            dt { "Mode" } dd { (d.record.mode.as_str())
                @if d.record.mode == Mode::Plan { " (nothing was changed; the plan lists what would be)" } }
            @if let Some(t) = &d.record.settings.trigger { dt { "Started by" } dd { (clean(t)) } }
            dt { "Started" } dd { time datetime=(crate::fmt::iso(story.t0)) { (wall(story.t0)) } }
            @if let Some(end) = d.summary.finished_at_ms {
                dt { "Ended" } dd { time datetime=(crate::fmt::iso(end)) { (wall(end)) }
                    " — took " (dur(end - d.summary.created_at_ms)) }
            }
            dt { "Inputs" } dd { code { (clean(&d.record.inputs.to_string())) } }
        }
        @if let Some(v) = d.drill { (drill_section(v, story, d.summary.status)) }
        @else if let Some(note) = d.drill_note { h2 { "Drill" } p.muted { (note) } }
        (gates(story, d, shell))
        (crate::bars::timeline(story))
        (details(story, d.now_ms))
    }
}

/// What happened, in one or two sentences.
fn headline(d: &RunData<'_>, story: &Story<'_>) -> String {
    let msg = clean(d.summary.message.as_deref().unwrap_or("")).into_owned();
    let failed: Vec<String> = story
        .lanes
        .iter()
        .filter(|l| l.state() == "failure")
        .map(Lane::id)
        .collect();
    match d.summary.status {
        RunStatus::Succeeded if failed.is_empty() => "The run succeeded: every step finished.".into(),
        RunStatus::Succeeded => format!(
            "The run succeeded, but {} failed (allowed by continue-on-error).",
            failed.join(", ")
        ),
        RunStatus::AwaitingApproval => {
            let steps: Vec<&str> = story.waiting().map(|g| g.step).collect();
            format!(
                "Waiting for an approval before {}. Nothing runs until an approver answers.",
                if steps.is_empty() { "a step".to_string() } else { steps.join(", ") }
            )
        }
        RunStatus::Running if d.live => "Running now.".into(),
        RunStatus::Running => "Started and not finished: this run is going on elsewhere, or its runner was stopped (a server resumes the runs it started; `meridian resume RUN` resumes the others).".into(),
        // The engine's message starts with the word the sentence already says.
        RunStatus::Failed => format!(
            "The run failed: {}",
            msg.strip_prefix("failed: ").unwrap_or(msg.as_ref())
        ),
        RunStatus::TimedOut => format!("The run ran out of its time budget. {msg}"),
        RunStatus::Cancelled => format!("The run was cancelled. {msg}"),
    }
}

/// The overall drill verdict: `met`, `missed`, or `incomplete` (a target not measured). Read
/// from the verdict's own overall field when it has one, else from its figures.
pub fn overall(v: &DrillVerdict) -> String {
    let json = serde_json::to_value(v).unwrap_or_default();
    for key in ["overall", "verdict"] {
        if let Some(s) = json.get(key).and_then(|o| o.as_str()) {
            return s.to_string();
        }
    }
    let words: Vec<String> = v
        .figures
        .iter()
        .map(|f| verdict_word(&f.verdict()))
        .collect();
    if words.iter().any(|w| w == "missed") {
        "missed".into()
    } else if words.iter().any(|w| w == "not-measured") {
        "incomplete".into()
    } else {
        "met".into()
    }
}

/// A figure's verdict as written in JSON (`met`, `missed`, `not-measured`, `no-target`, …).
pub(crate) fn verdict_word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn drill_section(v: &DrillVerdict, story: &Story<'_>, status: RunStatus) -> Markup {
    // A run still going (or waiting at a gate) has no verdict yet: its figures so far.
    let going = matches!(status, RunStatus::Running | RunStatus::AwaitingApproval);
    let all = if going {
        "running".to_string()
    } else {
        overall(v)
    };
    html! {
        section aria-labelledby="drill-h" {
            h2 #drill-h { "Drill: " (badge(&all)) }
            @if going {
                p.muted { "The run has not ended: the figures so far (the canaries report when it ends)." }
            } @else if all == "incomplete" {
                p.muted { "A target was not measured: the drill cannot claim it met it (a failed drill shows what it got to)." }
            }
            div.scroll { table {
                thead { tr { th scope="col" { "Figure" } th scope="col" { "Achieved" } th scope="col" { "Target" } th scope="col" { "Verdict" } } }
                tbody {
                    @for f in &v.figures {
                        tr {
                            th scope="row" { (f.name) }
                            td {
                                @if let Some(a) = f.achieved { (figure(a, f.unit)) } @else { span.muted { "not measured" } }
                                @if let Some(n) = &f.note { br; span.muted { (n) } }
                            }
                            td { @if let Some(t) = f.target { (figure(t, f.unit)) } @else { span.muted { "none" } } }
                            td { (badge(&verdict_word(&f.verdict()))) }
                        }
                    }
                }
            } }
            @if let (Some(f), Some(r)) = (story.fault_at, story.recovered_at) {
                p { "Fault at " (wall(f)) ", service back at " (wall(r)) ": the RTO window, " (dur(r - f)) ", is shaded on the timeline." }
            } @else if let Some(f) = story.fault_at {
                p { "Fault at " (wall(f)) "; no recovery was measured." }
            }
        }
    }
}

fn gates(story: &Story<'_>, d: &RunData<'_>, shell: Shell<'_>) -> Markup {
    if story.gates.is_empty() {
        return html! {};
    }
    let viewer = shell.viewer();
    let waiting_run = d.summary.status == RunStatus::AwaitingApproval && !d.live;
    html! {
        section aria-labelledby="gates-h" {
            h2 #gates-h { "Approvals" }
            @for g in &story.gates {
                div.gate id={"gate-" (g.step)} {
                    strong { (clean(g.step)) }
                    @if !g.message.is_empty() { " — " (clean(g.message)) }
                    div.muted { "asked at " (wall(g.asked_at)) }
                    @match &g.answer {
                        Some(a) => div {
                            (badge(if a.approved { "approved" } else { "rejected" }))
                            " by " strong { (clean(a.by)) } " at " (wall(a.at))
                            @if !a.comment.is_empty() { ": “" (clean(a.comment)) "”" }
                        },
                        None => {
                            @match viewer {
                                Some(v) if v.may_approve && waiting_run => {
                                    form.decide method="post" action={"/runs/" (urlenc(&d.record.id)) "/approvals/" (urlenc(g.step))} {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        label { "Comment (journaled with your name)" br;
                                            textarea name="comment" maxlength="4096" {} }
                                        div.actions {
                                            button.approve type="submit" name="decision" value="approve" { "Approve" }
                                            button.reject type="submit" name="decision" value="reject" { "Reject" }
                                        }
                                    }
                                }
                                Some(v) if !v.may_approve => p.muted { "Waiting for an approver: your token has no approver role." },
                                _ => p.muted { "Waiting for an answer." },
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The steps that have something to show besides their lane: outputs, errors, retries, plan
/// changes, compensations, a skip reason.
fn details(story: &Story<'_>, now: i64) -> Markup {
    html! {
        section #steps aria-labelledby="steps-h" {
            h2 #steps-h { "Steps" }
            p.muted { "Outputs as journaled, secrets masked." }
            @for l in &story.lanes {
                @if worth_details(l) && !rich(l) {
                    @if let Some(f) = &l.finished {
                        details { summary { (clean(&l.id())) } pre { (text(&shown(f.output))) } }
                    }
                } @else if worth_details(l) {
                    details id={"step-" (l.id())} open[l.state() == "failure"] {
                        summary {
                            code { (clean(&l.id())) } " — " (badge(l.state()))
                            @if let Some(f) = &l.finished { " " (f.attempts) " attempt" @if f.attempts != 1 { "s" } }
                            @if let Some(t) = l.took(now) { ", " (dur(t)) }
                        }
                        @if let Some(r) = l.skipped { p { "Skipped: " (clean(r)) } }
                        @if let Some(e) = l.finished.as_ref().and_then(|f| f.error) { p.error { (plain_error(e)) } }
                        @if l.attempts.len() > 1 || l.attempts.iter().any(|a| a.error.is_some()) {
                            ol {
                                @for a in &l.attempts {
                                    li { "Attempt " (a.n) ", started " (crate::fmt::clock(a.start, true)) " UTC: " (a.state)
                                        @if let Some(end) = a.end { " after " (dur(end - a.start)) }
                                        @if let Some(e) = a.error { " — " (plain_error(e)) } }
                                }
                            }
                        }
                        @for (n, at, lines, undo) in &l.logs {
                            details.log {
                                summary { "Log of " @if *undo { "compensation " } "attempt " (n) " (" (lines.len()) " line" @if lines.len() != 1 { "s" } ", journaled " (crate::fmt::clock(*at, true)) " UTC)" }
                                pre { @for line in lines.iter() { (clean(&line.to_string())) "\n" } }
                            }
                        }
                        @for u in &l.undo {
                            p { "Compensation (" (format!("{:?}", u.action).to_lowercase()) ") at " (wall(u.at)) ": " (u.outcome.as_str())
                                @if let Some(e) = u.error { " — " (plain_error(e)) } }
                        }
                        @if let Some(f) = &l.finished {
                            @if !f.plan.is_empty() { (crate::diff::plan(f.plan)) }
                            (crate::diff::adc(f.output))
                            @if !is_empty_json(f.output) { pre { (text(&shown(f.output))) } }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn worth_details(l: &Lane<'_>) -> bool {
    !l.logs.is_empty()
        || l.skipped.is_some()
        || !l.undo.is_empty()
        || l.attempts.len() > 1
        || l.attempts.iter().any(|a| a.error.is_some())
        || l.finished
            .as_ref()
            .is_some_and(|f| f.error.is_some() || !f.plan.is_empty() || !is_empty_json(f.output))
}

/// Whether a lane has more to show than a successful output (the short form).
pub(crate) fn rich(l: &Lane<'_>) -> bool {
    !l.logs.is_empty()
        || l.state() != "success"
        || !l.undo.is_empty()
        || l.attempts.len() > 1
        || l.attempts.iter().any(|a| a.error.is_some())
        || l.finished.as_ref().is_some_and(|f| {
            !f.plan.is_empty() || f.output.get("events").is_some_and(|e| e.is_array())
        })
}

fn is_empty_json(v: &serde_json::Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|o| o.is_empty())
}

/// A leg's output, pretty when small, cut at [`OUTPUT_SHOWN`].
fn shown(v: &serde_json::Value) -> String {
    let compact = serde_json::to_string(v).unwrap_or_default();
    let mut s = if compact.len() <= 100 {
        compact
    } else {
        serde_json::to_string_pretty(v).unwrap_or_default()
    };
    if s.len() > OUTPUT_SHOWN {
        let mut cut = OUTPUT_SHOWN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n… (cut here; `meridian runs show RUN --json` has all of it)");
    }
    s
}

/// Text for an element's content: `&`, `<` and `>` escaped (quotes need no escaping there,
/// and a step's JSON is full of them), after [`clean`].
fn text(s: &str) -> maud::PreEscaped<String> {
    maud::PreEscaped(
        clean(s)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// A path segment or query value, percent-encoded.
pub(crate) fn urlenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
