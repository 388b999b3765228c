//! The run routes: list, start, show, events (JSON and server-sent), cancel, approvals.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use meridian_protocol::{Mode, RunStatus};
use meridian_runner::{Decision, DrillVerdict};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::{Answer, ApiError, json_body, page_limit, require};
use crate::Server;
use crate::auth::{Identity, Role};
use crate::runs::StartRequest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunFilter {
    workflow: Option<String>,
    status: Option<String>,
    /// Unix ms: runs created at or after.
    since: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub(super) async fn list_runs(
    State(s): State<Arc<Server>>,
    Query(f): Query<RunFilter>,
) -> Answer<Json<Json_>> {
    let limit = page_limit(f.limit)?;
    let offset = f.offset.unwrap_or(0);
    let status = f
        .status
        .as_deref()
        .map(|w| w.parse::<RunStatus>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("status: {e}")))?;
    // One page from the store's index, not the history filtered here.
    let page = s
        .runner
        .journal()
        .query_runs(&meridian_store::RunQuery {
            workflow: f.workflow,
            status,
            mode: None,
            since_ms: f.since,
            offset,
            limit,
        })
        .map_err(|e| ApiError::from_store(&e))?;
    let next = (offset + page.runs.len() < page.total).then_some(offset + page.runs.len());
    Ok(Json(
        json!({"runs": page.runs, "total": page.total, "next_offset": next}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartBody {
    workflow: String,
    #[serde(default)]
    inputs: BTreeMap<String, Json_>,
    #[serde(default)]
    plan: bool,
}

pub(super) async fn start_run(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    body: Result<Json<StartBody>, axum::extract::rejection::JsonRejection>,
) -> Answer<Response> {
    require(&id, Role::Operator)?;
    let body = json_body(body)?;
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be text"))
        })
        .transpose()?;
    structured_for_text(&s, &body.workflow, &body.inputs)?;
    let inputs = body
        .inputs
        .into_iter()
        .map(|(k, v)| (k, meridian_runner::inputs::text(v)))
        .collect();
    let run_id = s
        .start_run(StartRequest {
            workflow: body.workflow,
            mode: if body.plan { Mode::Plan } else { Mode::Apply },
            inputs,
            trigger: format!("api:{}", id.name),
            schedule: None,
            idempotency_key: key.map(|k| format!("{}\u{0}{k}", id.name)),
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/runs/{run_id}"))],
        Json(json!({"id": run_id})),
    )
        .into_response())
}

/// A JSON object or list given for an input the workflow declares `string`: refused (it became
/// its JSON text, and the run went on with `{"a":1}` as, say, a region's name).
fn structured_for_text(s: &Server, workflow: &str, inputs: &BTreeMap<String, Json_>) -> Answer<()> {
    let catalog = s.catalog.read().unwrap();
    let Some(loaded) = catalog.get(workflow) else {
        return Ok(()); // said by the start, with the workflows there are
    };
    let wrong: Vec<String> = inputs
        .iter()
        .filter(|(_, v)| v.is_object() || v.is_array())
        .filter(|(k, _)| {
            loaded.workflow.inputs.get(k.as_str()).map(|d| d.ty)
                == Some(meridian_model::InputType::String)
        })
        .map(|(k, v)| {
            let what = if v.is_object() { "an object" } else { "a list" };
            format!("input `{k}` is a string; {what} was given (send it as a JSON string)")
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(wrong.join("; ")))
    }
}

pub(super) async fn show_run(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Answer<Json<Json_>> {
    let j = s.runner.journal();
    let (record, summary) = j.run(&id).map_err(|e| ApiError::from_store(&e))?;
    let legs = j.legs(&id).map_err(|e| ApiError::from_store(&e))?;
    let events = j.events(&id).map_err(|e| ApiError::from_store(&e))?;
    let waiting = crate::runs::waiting_gates(events.iter().map(|e| &e.event));
    let plan: Vec<_> = legs
        .iter()
        .flat_map(|l| {
            l.plan
                .iter()
                .map(move |c| json!({"step": l.step, "leg": l.leg, "change": c}))
        })
        .collect();
    let drill = s
        .catalog
        .read()
        .unwrap()
        .get(&summary.workflow)
        .and_then(|l| DrillVerdict::of_run(&l.workflow, &legs, &events));
    let active = s.active.lock().unwrap().contains_key(&id);
    // A drill's run has ended but its canaries still measure what clients lose (until they see
    // no failure for 3 s): its figures are not final yet. Its driver holds the run's lease until
    // they are, on this server or another of the journal.
    let ended = !matches!(
        summary.status,
        RunStatus::Running | RunStatus::AwaitingApproval
    );
    let measuring = drill.is_some()
        && ended
        && (active
            || s.runner
                .journal()
                .lease_holder(&id)
                .ok()
                .flatten()
                .is_some());
    Ok(Json(json!({
        "run": record,
        "summary": summary,
        "legs": legs,
        "plan": plan,
        "waiting_for_approval": waiting,
        "driven_here": active,
        "drill": drill.as_ref().map(drill_json),
        "measuring": measuring,
    })))
}

pub(super) fn drill_json(d: &DrillVerdict) -> Json_ {
    let figures: Vec<Json_> = d
        .figures
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "unit": f.unit, "achieved": f.achieved, "target": f.target,
                "verdict": f.verdict(), "note": f.note,
            })
        })
        .collect();
    let met = d.verdict == meridian_runner::Overall::Met;
    json!({"figures": figures, "met": met, "verdict": d.verdict})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct After {
    /// Only events after this sequence number.
    after: Option<i64>,
}

pub(super) async fn run_events(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    Query(a): Query<After>,
) -> Answer<Json<Json_>> {
    let journal = s.runner.journal();
    let events = journal.events(&id).map_err(|e| ApiError::from_store(&e))?;
    // A run without events may not exist: 404 as its other routes answer (it was `[]`).
    if events.is_empty() {
        journal.run(&id).map_err(|e| ApiError::from_store(&e))?;
    }
    let after = a.after.unwrap_or(0);
    let events: Vec<_> = events.into_iter().filter(|e| e.seq > after).collect();
    Ok(Json(json!({ "events": events })))
}

/// Server-sent events: the run's journaled events from the start (or after `Last-Event-ID`, or
/// the `after` sequence number),
/// then each new one as the journal receives it, read every 200 ms; the stream ends once the
/// run has ended and every event was sent. Read from the journal, so it shows the same thing
/// whichever server or runner drives the run.
pub(super) async fn run_stream(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    Query(a): Query<After>,
    headers: HeaderMap,
) -> Answer<Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>>> {
    s.runner
        .journal()
        .run(&id)
        .map_err(|e| ApiError::from_store(&e))?;
    // A reconnecting client's `Last-Event-ID` wins over the `after` it first asked with.
    let mut after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(a.after)
        .unwrap_or(0);
    let stream = async_stream(move |tx| async move {
        loop {
            let journal = s.runner.journal();
            let Ok((_, summary)) = journal.run(&id) else {
                return;
            };
            let ended =
                summary.status != RunStatus::Running && !s.active.lock().unwrap().contains_key(&id);
            let Ok(events) = journal.events(&id) else {
                return;
            };
            let from = after;
            for e in events.into_iter().filter(|e| e.seq > from) {
                after = e.seq;
                let ev = SseEvent::default()
                    .id(e.seq.to_string())
                    .event(e.event.kind())
                    .json_data(&e)
                    .unwrap_or_default();
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if ended {
                let mut end = SseEvent::default().event("end");
                // A browser reconnects by itself after the stream ends; a run waiting for an
                // approval may go on soon, so it is asked to come back within a second.
                if summary.status == RunStatus::AwaitingApproval {
                    end = end.retry(Duration::from_secs(1));
                }
                let _ = tx.send(Ok(end.data(summary.status.as_str()))).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task through a small channel (the task ends when the client goes).
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}

pub(super) async fn cancel_run(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path(run): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Answer<(StatusCode, Json<Json_>)> {
    require(&id, Role::Operator)?;
    let why = match super::error::reason(&headers, &body)? {
        Some(r) => format!("cancelled through the API by `{}`: {r}", id.name),
        None => format!("cancelled through the API by `{}`", id.name),
    };
    match s.cancel_run(&run, &why).await? {
        // Its end as journaled: `cancelled`, and what its compensation did.
        crate::cancel::Cancelled::Here { ended: true } => {
            let (_, summary) = s
                .runner
                .journal()
                .run(&run)
                .map_err(|e| ApiError::from_store(&e))?;
            Ok((
                StatusCode::OK,
                Json(json!({
                    "id": run,
                    "status": summary.status.as_str(),
                    "message": summary.message,
                })),
            ))
        }
        crate::cancel::Cancelled::Here { ended: false } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "id": run,
                "status": "cancelling",
                "message": "its steps in flight are cancelled and what completed is being compensated; the run ends cancelled when that is done",
            })),
        )),
        crate::cancel::Cancelled::Requested { driver } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "id": run,
                "status": "cancel-requested",
                "driver": driver,
                "message": "another server drives the run; it cancels the run when it next renews its lease",
            })),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    comment: String,
}

pub(super) async fn decide(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path((run, step)): Path<(String, String)>,
    body: Result<Json<DecideBody>, axum::extract::rejection::JsonRejection>,
) -> Answer<Response> {
    require(&id, Role::Approver)?;
    let body = json_body(body)?;
    let approve = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "decision `{other}`: use \"approve\" or \"reject\""
            )));
        }
    };
    if body.comment.chars().count() > 4096 {
        return Err(ApiError::bad_request("comment: at most 4,096 characters"));
    }
    s.decide(
        &run,
        Decision {
            step: step.clone(),
            approve,
            by: id.name.clone(),
            comment: body.comment,
        },
    )?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": run, "step": step, "decision": body.decision, "by": id.name})),
    )
        .into_response())
}
