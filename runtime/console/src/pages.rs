//! The overview, runs, drills, schedules, login and error pages.

use maud::{Markup, html};
use meridian_runner::DrillVerdict;
use meridian_store::RunSummary;

use crate::chart::{Point, trend};
use crate::fmt::{clean, dur, figure, wall};
use crate::layout::{Shell, Viewer, badge, page};
use crate::run::{overall, urlenc, verdict_word};

/// One workflow on the overview.
pub struct WorkflowRow {
    /// `None` for a file that does not validate.
    pub name: Option<String>,
    pub file: String,
    pub description: Option<String>,
    /// Why the file is not in service (diagnostics, file:line:col).
    pub error: Option<String>,
    pub last_run: Option<RunSummary>,
    /// The next scheduled fire (Unix ms) over the workflow's schedules.
    pub next_fire_ms: Option<i64>,
    /// The last finished drill run with its figures (drill workflows).
    pub last_drill: Option<(RunSummary, DrillVerdict)>,
    /// The last plan run: what the overview shows when no readiness check runs.
    pub last_plan: Option<RunSummary>,
    /// The server's last readiness check (`ready-every`), when it runs one.
    pub readiness: Option<ReadyRow>,
    /// The server's last drift check (`drift-every`), when it runs one.
    pub drift: Option<DriftRow>,
    /// The branch the workflow follows (`on.git`), when it has one.
    pub git: Option<GitRow>,
}

/// A drift answer: `in-sync`, `drift` or `unknown`, when, and what differs.
pub struct DriftRow {
    pub state: String,
    pub checked_at_ms: i64,
    pub summary: String,
    /// The commit compared with (`on.git` workflows).
    pub commit: Option<String>,
}

/// The branch an `on.git` workflow follows, and the last commit seen on it.
pub struct GitRow {
    pub repo: String,
    pub branch: String,
    pub commit: Option<String>,
    pub error: Option<String>,
}

fn short_id(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// A readiness answer: ready or not, when, and the failed rules.
pub struct ReadyRow {
    pub ready: bool,
    pub checked_at_ms: i64,
    pub problems: Vec<String>,
}

fn run_link(r: &RunSummary) -> Markup {
    html! { a href={"/runs/" (urlenc(&r.id))} { (badge(r.status.as_str())) } " " span.muted { (wall(r.created_at_ms)) } }
}

fn figures_line(v: &DrillVerdict) -> Markup {
    html! {
        @for f in &v.figures {
            span { (f.name) " "
                @if let Some(a) = f.achieved { (figure(a, f.unit)) } @else { "—" }
                @if let Some(t) = f.target { " / " (figure(t, f.unit)) }
                " " (badge(&verdict_word(&f.verdict()))) }
            br;
        }
    }
}

/// The overview: every workflow, its last run, next fire, last drill and readiness.
pub fn overview_page(rows: &[WorkflowRow], viewer: &Viewer) -> String {
    let body = html! {
        h1 { "Overview" }
        p.muted { (rows.len()) " workflow file(s). Drill figures are achieved / target." }
        div.scroll { table.rows {
            thead { tr {
                th scope="col" { "Workflow" } th scope="col" { "Last run" } th scope="col" { "Next scheduled" }
                th scope="col" { "Last drill" } th scope="col" { "Readiness (last plan)" } th scope="col" { "Drift" }
            } }
            tbody {
                @for w in rows {
                    tr {
                        td data-h="Workflow" {
                            @if let Some(n) = &w.name {
                                a href={"/runs?workflow=" (urlenc(n))} { strong { (clean(n)) } }
                                @if let Some(d) = &w.description { br; span.muted { (clean(d)) } }
                            } @else { strong { (clean(&w.file)) } }
                            @if let Some(g) = &w.git {
                                br; span.muted { "git: " (clean(&g.repo)) " " (clean(&g.branch))
                                    @if let Some(c) = &g.commit { " @ " code { (short_id(c)) } } }
                                @if let Some(e) = &g.error { br; span.error { (clean(e)) } }
                            }
                            @if let Some(e) = &w.error {
                                details { summary.error { "does not validate" @if w.name.is_some() { " (the previous version stays in service)" } } pre { (clean(e)) } }
                            }
                        }
                        td data-h="Last run" { @if let Some(r) = &w.last_run { (run_link(r)) } @else { span.muted { "none yet" } } }
                        td data-h="Next scheduled" { @if let Some(t) = w.next_fire_ms { (wall(t)) } @else { span.muted { "—" } } }
                        td data-h="Last drill" {
                            @if let Some((r, v)) = &w.last_drill {
                                a href={"/runs/" (urlenc(&r.id))} { (badge(&overall(v))) } br; (figures_line(v))
                            } @else { span.muted { "—" } }
                        }
                        td data-h="Readiness" {
                            @if let Some(r) = &w.readiness {
                                (badge(if r.ready { "ready" } else { "not-ready" })) " " span.muted { (wall(r.checked_at_ms)) }
                                @for p in &r.problems { br; span { (p) } }
                            } @else if let Some(r) = &w.last_plan { "last plan: " (run_link(r)) } @else { span.muted { "no readiness check or plan run yet" } }
                        }
                        td data-h="Drift" {
                            @if let Some(d) = &w.drift {
                                (badge(&d.state)) " " span.muted { (wall(d.checked_at_ms)) }
                                @if let Some(c) = &d.commit { br; span.muted { "against " code { (short_id(c)) } } }
                                br; span { (clean(&d.summary)) }
                            } @else { span.muted { "—" } }
                        }
                    }
                }
            }
        } }
    };
    page("Overview", Shell::Served(viewer), "/", &body)
}

/// The runs page's filters and page.
#[derive(Clone, Debug, Default)]
pub struct RunsQuery {
    pub workflow: String,
    pub status: String,
    /// `YYYY-MM-DD`: runs created that day or later (UTC).
    pub since: String,
    /// 0-based.
    pub page: usize,
}

impl RunsQuery {
    fn href(&self, page: usize) -> String {
        format!(
            "/runs?workflow={}&status={}&since={}&page={page}",
            urlenc(&self.workflow),
            urlenc(&self.status),
            urlenc(&self.since)
        )
    }
}

const STATES: &[&str] = &[
    "running",
    "succeeded",
    "failed",
    "awaiting-approval",
    "timed-out",
    "cancelled",
];

/// Runs, newest first, filtered and paged; `runs` is the page, `total` counts every match.
pub fn runs_page(
    runs: &[RunSummary],
    total: usize,
    page_size: usize,
    q: &RunsQuery,
    workflows: &[String],
    viewer: &Viewer,
) -> String {
    let first = q.page.saturating_mul(page_size);
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" aria-label="Filter runs" {
            label { "Workflow" select name="workflow" {
                option value="" { "any" }
                @for w in workflows { option value=(w) selected[*w == q.workflow] { (clean(w)) } }
            } }
            label { "State" select name="status" {
                option value="" { "any" }
                @for s in STATES { option value=(s) selected[*s == q.status] { (s) } }
            } }
            label { "Since (UTC day)" input type="date" name="since" value=(q.since); }
            button type="submit" { "Filter" }
        }
        p.muted role="status" {
            @if total == 0 { "No runs match." }
            @else if runs.is_empty() { "No runs on this page: " (total) " in all." }
            @else { "Runs " (first + 1) "–" (first + runs.len()) " of " (total) "." }
        }
        div.scroll { table.rows {
            thead { tr { th scope="col" { "Run" } th scope="col" { "Workflow" } th scope="col" { "State" } th scope="col" { "Mode" }
                th scope="col" { "Started" } th scope="col" { "Took" } th scope="col" { "Message" } } }
            tbody {
                @for r in runs {
                    tr {
                        td data-h="Run" { a href={"/runs/" (urlenc(&r.id))} { code { (r.id) } } }
                        td data-h="Workflow" { (clean(&r.workflow)) }
                        td data-h="State" { (badge(r.status.as_str())) }
                        td data-h="Mode" { (r.mode.as_str()) }
                        td data-h="Started" { (wall(r.created_at_ms)) }
                        td data-h="Took" { @if let Some(f) = r.finished_at_ms { (dur(f - r.created_at_ms)) } @else { "—" } }
                        td data-h="Message" { (clean(&short(r.message.as_deref().unwrap_or(""), 160))) }
                    }
                }
            }
        } }
        nav.pager aria-label="Pages" {
            @if q.page > 0 { a href=(q.href(q.page - 1)) rel="prev" { "← Newer" } }
            @if first + runs.len() < total { a href=(q.href(q.page + 1)) rel="next" { "Older →" } }
        }
    };
    page("Runs", Shell::Served(viewer), "/runs", &body)
}

fn short(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        one.chars().take(max).collect::<String>() + "…"
    }
}

/// One drill run.
pub struct DrillRun {
    pub summary: RunSummary,
    pub verdict: Option<DrillVerdict>,
}

/// A drill workflow's history, newest first.
pub struct DrillHistory {
    pub workflow: String,
    pub runs: Vec<DrillRun>,
}

/// Drill history per workflow: a trend chart per figure, the pass rate, each drill's report.
pub fn drills_page(hist: &[DrillHistory], viewer: &Viewer) -> String {
    let body = html! {
        h1 { "Drills" }
        @if hist.is_empty() { p.muted { "No workflow has a " code { "drill:" } " block." } }
        @for (hi, h) in hist.iter().enumerate() {
            @let passed = h.runs.iter().filter(|r| r.verdict.as_ref().is_some_and(|v| overall(v) == "met")).count();
            section aria-labelledby={"dw-" (hi)} {
                h2 id={"dw-" (hi)} { (clean(&h.workflow)) }
                @if h.runs.is_empty() { p.muted { "No finished drill yet." } } @else {
                    p { "Pass rate: " strong { (passed) " of " (h.runs.len()) } " drills met every target ("
                        (format!("{:.0}", passed as f64 * 100.0 / h.runs.len() as f64)) " %)." }
                    @for (fi, (name, unit)) in figure_names(&h.runs).iter().enumerate() {
                        h3 { (name) }
                        (trend(&format!("c{hi}-{fi}"), name, unit, &points(&h.runs, name)))
                    }
                    div.scroll { table.rows {
                        thead { tr { th scope="col" { "Drill" } th scope="col" { "Run state" } th scope="col" { "Figures (achieved / target)" } th scope="col" { "Verdict" } } }
                        tbody {
                            @for r in &h.runs {
                                tr {
                                    td data-h="Drill" { a href={"/runs/" (urlenc(&r.summary.id))} { (wall(r.summary.created_at_ms)) } }
                                    td data-h="Run state" { (badge(r.summary.status.as_str())) }
                                    td data-h="Figures" { @if let Some(v) = &r.verdict { (figures_line(v)) } }
                                    td data-h="Verdict" { @if let Some(v) = &r.verdict { (badge(&overall(v))) } }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    page("Drills", Shell::Served(viewer), "/drills", &body)
}

/// Every figure name over the runs, in the order first met, with its unit.
fn figure_names(runs: &[DrillRun]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for v in runs.iter().filter_map(|r| r.verdict.as_ref()) {
        for f in &v.figures {
            let name = f.name.to_string();
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, f.unit.to_string()));
            }
        }
    }
    out
}

/// One figure's points, oldest first.
fn points(runs: &[DrillRun], name: &str) -> Vec<Point> {
    runs.iter()
        .rev()
        .filter_map(|r| {
            let f = r
                .verdict
                .as_ref()?
                .figures
                .iter()
                .find(|f| f.name == name)?;
            Some(Point {
                at_ms: r.summary.created_at_ms,
                run: r.summary.id.clone(),
                achieved: f.achieved,
                target: f.target,
                verdict: verdict_word(&f.verdict()),
            })
        })
        .collect()
}

/// A schedule on the schedules page.
pub struct ScheduleRow {
    pub id: String,
    pub workflow: String,
    pub cron: String,
    pub timezone: String,
    pub next_fire_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    /// `last_result` as one word: a run state, `skipped` or `not-fired`.
    pub last_state: Option<&'static str>,
    pub consecutive_failures: u32,
    /// Why it is paused.
    pub paused: Option<String>,
    /// Why it cannot be armed.
    pub error: Option<String>,
    pub running: Vec<String>,
}

/// Schedules; operators get pause / resume / trigger.
pub fn schedules_page(rows: &[ScheduleRow], viewer: &Viewer) -> String {
    let action = |id: &str, what: &str, label: &str| {
        html! {
            form.inline method="post" action={"/schedules/" (urlenc(id)) "/" (what)} {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button type="submit" aria-label={(label) " " (id)} { (label) }
            }
        }
    };
    let body = html! {
        h1 { "Schedules" }
        @if !viewer.may_operate { p.muted { "Pausing, resuming and triggering need the operator role." } }
        div.scroll { table.rows {
            thead { tr { th scope="col" { "Schedule" } th scope="col" { "When" } th scope="col" { "Next fire" } th scope="col" { "Last fire" }
                th scope="col" { "Last result" } th scope="col" { "State" } @if viewer.may_operate { th scope="col" { "Actions" } } } }
            tbody {
                @for s in rows {
                    tr {
                        td data-h="Schedule" { code { (clean(&s.id)) } br; span.muted { (clean(&s.workflow)) } }
                        td data-h="When" { code { (clean(&s.cron)) } " " span.muted { (clean(&s.timezone)) } }
                        td data-h="Next fire" { @if let Some(t) = s.next_fire_ms { (wall(t)) } @else { "—" } }
                        td data-h="Last fire" { @if let Some(t) = s.last_fire_ms { (wall(t)) } @else { "—" } }
                        td data-h="Last result" {
                            @if let Some(r) = &s.last_run {
                                a href={"/runs/" (urlenc(r))} { (badge(s.last_state.unwrap_or("running"))) }
                                @if let Some(text) = &s.last_result { " " span.muted { (clean(text)) } }
                            }
                            @else { "—" }
                            @if s.consecutive_failures > 0 { br; span.error { (s.consecutive_failures) " failure(s) in a row" } }
                        }
                        td data-h="State" {
                            @if let Some(why) = &s.paused { (badge("paused")) " " (clean(why)) }
                            @else if let Some(e) = &s.error { span.error { (clean(e)) } }
                            @else { "active" }
                            @for r in &s.running { br; a href={"/runs/" (urlenc(r))} { "running " code { (r) } } }
                        }
                        @if viewer.may_operate {
                            td data-h="Actions" {
                                @if s.paused.is_some() { (action(&s.id, "resume", "Resume")) } @else { (action(&s.id, "pause", "Pause")) }
                                " " (action(&s.id, "trigger", "Trigger now"))
                            }
                        }
                    }
                }
            }
        } }
    };
    page("Schedules", Shell::Served(viewer), "/schedules", &body)
}

/// The login page: a token in, an HttpOnly session cookie out.
pub fn login_page(error: Option<&str>, next: &str) -> String {
    let body = html! {
        div.login {
            h1 { "Sign in to Meridian" }
            p.muted { "Paste an API token (the same tokens as the HTTP API). It is checked once; the browser keeps a session cookie, not the token." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    page("Sign in", Shell::Anonymous, "", &body)
}

/// An error as a page.
pub fn error_page(status: u16, message: &str, viewer: Option<&Viewer>) -> String {
    let body = html! {
        h1 { "Error " (status) }
        p.error { (clean(message)) }
        p { a href="/" { "Back to the overview" } }
    };
    match viewer {
        Some(v) => page("Error", Shell::Served(v), "", &body),
        None => page("Error", Shell::Anonymous, "", &body),
    }
}
