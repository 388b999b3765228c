//! The console's pages: each reads this server's state and journal and hands plain data to
//! `meridian-console`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use meridian_console as console;
use meridian_protocol::{Mode, RunStatus};
use meridian_runner::DrillVerdict;
use meridian_store::RunSummary;
use serde::Deserialize;

use super::{Who, who};
use crate::Server;
use crate::api::ApiError;

/// Runs read for the lists (the API reads as many).
const HISTORY: usize = 10_000;
/// Runs per page of the runs page.
const PAGE: usize = 50;
/// Drills per workflow on the drills page.
const DRILLS: usize = 50;

macro_rules! caller {
    ($s:expr, $headers:expr, $here:expr) => {
        match who(&$s, &$headers, $here) {
            Ok(w) => w,
            Err(r) => return *r,
        }
    };
}

fn store(e: &meridian_store::StoreError) -> ApiError {
    ApiError::from_store(e)
}

fn ms(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn drill_of(
    s: &Server,
    wf: &meridian_model::Workflow,
    run: &str,
) -> Result<Option<DrillVerdict>, ApiError> {
    let j = s.runner.journal();
    let legs = j.legs(run).map_err(|e| store(&e))?;
    // The events hold the host's canary figures and the approval wait: read them only when
    // the drill has canaries or a step has a gate (the wait was left out of such a drill's
    // figures here, and only here).
    let needs_events = wf.drill.as_ref().is_some_and(|d| d.canary.is_some())
        || wf.steps.iter().any(|st| st.approval.is_some());
    let events = if needs_events {
        j.events(run).map_err(|e| store(&e))?
    } else {
        Vec::new()
    };
    Ok(DrillVerdict::of_run(wf, &legs, &events))
}

fn overview_rows(s: &Server) -> Result<Vec<console::WorkflowRow>, ApiError> {
    let runs = s.runner.journal().runs(HISTORY).map_err(|e| store(&e))?;
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    for i in s.schedule_infos() {
        if let Some(t) = ms(i.next_fire) {
            let e = next.entry(i.workflow).or_insert(t);
            *e = (*e).min(t);
        }
    }
    let ready: BTreeMap<String, crate::readiness::LastReadiness> = s
        .readiness_infos()
        .into_iter()
        .map(|r| (r.workflow.clone(), r))
        .collect();
    let drift: BTreeMap<String, crate::drift::LastDrift> = s
        .drift_infos()
        .into_iter()
        .map(|d| (d.workflow.clone(), d))
        .collect();
    let git: BTreeMap<String, crate::git::GitInfo> = s
        .git_infos()
        .into_iter()
        .map(|g| (g.workflow.clone(), g))
        .collect();
    let catalog = s.catalog.read().unwrap();
    let mut rows = Vec::new();
    for info in catalog.infos() {
        let name = info.name.clone();
        let mine = |r: &&RunSummary| name.as_deref() == Some(r.workflow.as_str());
        let last_run = runs.iter().find(mine).cloned();
        let last_plan = runs
            .iter()
            .filter(mine)
            .find(|r| r.mode == Mode::Plan)
            .cloned();
        let mut last_drill = None;
        if let Some(l) = name.as_deref().and_then(|n| catalog.get(n))
            && l.workflow.drill.is_some()
            && let Some(r) = runs.iter().filter(mine).find(|r| {
                r.mode == Mode::Apply && meridian_runner::history::is_drill_result(r.status)
            })
            && let Some(v) = drill_of(s, &l.workflow, &r.id)?
        {
            last_drill = Some((r.clone(), v));
        }
        rows.push(console::WorkflowRow {
            next_fire_ms: name.as_ref().and_then(|n| next.get(n).copied()),
            file: info.file,
            description: info.description,
            error: info.error,
            last_run,
            readiness: name
                .as_ref()
                .and_then(|n| ready.get(n))
                .map(|r| console::ReadyRow {
                    ready: r.ready,
                    checked_at_ms: r.checked_at_ms,
                    problems: r.problems.clone(),
                }),
            drift: name
                .as_ref()
                .and_then(|n| drift.get(n))
                .map(|d| console::DriftRow {
                    state: d.state.to_string(),
                    checked_at_ms: d.checked_at_ms,
                    summary: d.summary(),
                    commit: d.drift.as_ref().and_then(|x| x.commit.clone()),
                }),
            git: name
                .as_ref()
                .and_then(|n| git.get(n))
                .map(|g| console::GitRow {
                    repo: g.repo.clone(),
                    branch: g.branch.clone(),
                    commit: g.commit.clone(),
                    error: g.error.clone(),
                }),
            name,
            last_drill,
            last_plan,
        });
    }
    Ok(rows)
}

pub(super) async fn overview(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let who = caller!(s, headers, "/");
    match overview_rows(&s) {
        Ok(rows) => who.page(
            &s,
            StatusCode::OK,
            console::overview_page(&rows, &who.viewer(&s)),
        ),
        Err(e) => who.error(&s, &e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct RunsParams {
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    page: usize,
}

pub(super) async fn runs(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    params: Result<Query<RunsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // Back here after signing in, filters and page included.
    let here = uri.path_and_query().map_or("/runs", |pq| pq.as_str());
    let who = caller!(s, headers, here);
    // A filter or page that does not parse gets the console's error page, not axum's text.
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => {
            return who.error(
                &s,
                &ApiError::bad_request(format!("{e}; see the filters above the list")),
            );
        }
    };
    let since = if p.since.trim().is_empty() {
        None
    } else {
        match console::day_start_ms(&p.since) {
            Some(t) => Some(t),
            None => {
                return who.error(
                    &s,
                    &ApiError::bad_request(format!(
                        "since: `{}` is not a day (YYYY-MM-DD)",
                        p.since
                    )),
                );
            }
        }
    };
    // As the API: an unknown state word or a page no list reaches is the caller's mistake
    // (an unknown state showed "No runs match"; a huge page wrapped around).
    let status = (!p.status.is_empty()).then(|| p.status.parse::<RunStatus>());
    if let Some(Err(_)) = status {
        return who.error(
            &s,
            &ApiError::bad_request(format!(
                "state `{}` is not a run state (one of: running, succeeded, failed, cancelled, awaiting-approval, timed-out)",
                p.status
            )),
        );
    }
    if p.page > 1_000_000 {
        return who.error(
            &s,
            &ApiError::bad_request(format!("page {} is past any list of runs", p.page)),
        );
    }
    let (page, total): (Vec<RunSummary>, usize) = match status {
        Some(Err(_)) => (Vec::new(), 0),
        Some(Ok(_)) | None => {
            let q = meridian_store::RunQuery {
                workflow: (!p.workflow.is_empty()).then(|| p.workflow.clone()),
                status: status.and_then(Result::ok),
                mode: None,
                since_ms: since,
                offset: p.page * PAGE,
                limit: PAGE,
            };
            match s.runner.journal().query_runs(&q) {
                Ok(page) => (page.runs, page.total),
                Err(e) => return who.error(&s, &store(&e)),
            }
        }
    };
    let mut workflows: Vec<String> = s
        .catalog
        .read()
        .unwrap()
        .workflows()
        .map(|l| l.workflow.name.clone())
        .collect();
    workflows.sort();
    let q = console::RunsQuery {
        workflow: p.workflow,
        status: p.status,
        since: p.since,
        page: p.page,
    };
    who.page(
        &s,
        StatusCode::OK,
        console::runs_page(&page, total, PAGE, &q, &workflows, &who.viewer(&s)),
    )
}

/// Renders one run (the whole page, or its live part).
fn render_run(s: &Server, who: &Who, id: &str, whole: bool) -> Result<String, ApiError> {
    let j = s.runner.journal();
    let (record, summary) = j.run(id).map_err(|e| store(&e))?;
    let events = j.events(id).map_err(|e| store(&e))?;
    let wf = s
        .catalog
        .read()
        .unwrap()
        .get(&summary.workflow)
        .map(|l| l.workflow.clone());
    let steps: Vec<String> = wf
        .iter()
        .flat_map(|w| w.steps.iter().map(|st| st.id.value.clone()))
        .collect();
    // Of the events read above: all of them (canaries, the approval wait).
    let drill = match &wf {
        Some(w) => {
            let legs = j.legs(id).map_err(|e| store(&e))?;
            DrillVerdict::of_run(w, &legs, &events)
        }
        None => None,
    };
    let note = wf.is_none().then_some(
        "The workflow is not in service now, so its drill targets (if any) are unknown.",
    );
    let data = console::RunData {
        record: &record,
        summary: &summary,
        events: &events,
        steps: &steps,
        drill: drill.as_ref(),
        drill_note: note,
        now_ms: meridian_store::pending::now_ms(),
        live: s.active.lock().unwrap().contains_key(id),
    };
    let viewer = who.viewer(s);
    let shell = console::Shell::Served(&viewer);
    Ok(if whole {
        console::run_page(&data, shell)
    } else {
        console::run_live(&data, shell)
    })
}

pub(super) async fn run(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = caller!(s, headers, &format!("/runs/{id}"));
    match render_run(&s, &who, &id, true) {
        Ok(body) => who.page(&s, StatusCode::OK, body),
        Err(e) => who.error(&s, &e),
    }
}

pub(super) async fn run_live(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = caller!(s, headers, &format!("/runs/{id}"));
    match render_run(&s, &who, &id, false) {
        Ok(body) => who.page(&s, StatusCode::OK, body),
        Err(e) => who.error(&s, &e),
    }
}

fn drill_history(s: &Server) -> Result<Vec<console::DrillHistory>, ApiError> {
    let drills = s.catalog.read().unwrap().drill_workflows();
    let mut hist: BTreeMap<String, Vec<console::DrillRun>> =
        drills.keys().map(|k| (k.clone(), Vec::new())).collect();
    for r in s.runner.journal().runs(HISTORY).map_err(|e| store(&e))? {
        let Some(wf) = drills.get(&r.workflow) else {
            continue;
        };
        if r.mode != Mode::Apply || !meridian_runner::history::is_drill_result(r.status) {
            continue;
        }
        let list = hist
            .get_mut(&r.workflow)
            .expect("every drill workflow has a list");
        if list.len() >= DRILLS {
            continue;
        }
        let verdict = drill_of(s, wf, &r.id)?;
        list.push(console::DrillRun {
            summary: r,
            verdict,
        });
    }
    Ok(hist
        .into_iter()
        .map(|(workflow, runs)| console::DrillHistory { workflow, runs })
        .collect())
}

pub(super) async fn drills(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let who = caller!(s, headers, "/drills");
    match drill_history(&s) {
        Ok(h) => who.page(
            &s,
            StatusCode::OK,
            console::drills_page(&h, &who.viewer(&s)),
        ),
        Err(e) => who.error(&s, &e),
    }
}

pub(super) async fn schedules(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let who = caller!(s, headers, "/schedules");
    let rows: Vec<console::ScheduleRow> = s
        .schedule_infos()
        .into_iter()
        .map(|i| console::ScheduleRow {
            id: i.id,
            workflow: i.workflow,
            cron: i.cron,
            timezone: i.timezone,
            next_fire_ms: ms(i.next_fire),
            last_fire_ms: ms(i.last_fire),
            last_run: i.last_run,
            last_result: i.last_result,
            last_state: i.last_state,
            consecutive_failures: i.consecutive_failures,
            paused: i.paused,
            error: i.error,
            running: i.running,
        })
        .collect();
    who.page(
        &s,
        StatusCode::OK,
        console::schedules_page(&rows, &who.viewer(&s)),
    )
}
