//! The HTTP JSON API under `/api/v1` (described by `openapi.json`, served at
//! `/api/v1/openapi.json`), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Errors are `{"error": {"status": 404, "message": "…"}}` with the matching status code.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use meridian_protocol::{Mode, RunStatus};
use meridian_runner::{Decision, DrillVerdict};
use meridian_store::StoreError;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::Server;
use crate::auth::{Identity, Role};
use crate::runs::StartRequest;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: (method, path as written in the OpenAPI document). The router is built from
/// the same handlers; a test checks the document lists exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/workflows"),
    ("get", "/api/v1/runs"),
    ("post", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("get", "/api/v1/runs/{id}/events"),
    ("get", "/api/v1/runs/{id}/stream"),
    ("post", "/api/v1/runs/{id}/cancel"),
    ("post", "/api/v1/runs/{id}/approvals/{step}"),
    ("get", "/api/v1/drills"),
    ("get", "/api/v1/readiness"),
    ("get", "/api/v1/drift"),
    ("get", "/api/v1/git"),
    ("get", "/api/v1/schedules"),
    ("post", "/api/v1/schedules/{id}/pause"),
    ("post", "/api/v1/schedules/{id}/resume"),
    ("post", "/api/v1/schedules/{id}/trigger"),
    ("post", "/hooks/git/{workflow}"),
];

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn unavailable(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, m)
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }
    pub fn from_store(e: &StoreError) -> ApiError {
        if e.is_not_found() {
            Self::not_found(e.to_string())
        } else if e.is_unavailable() {
            // As `/readyz` says: the journal is down, try again (it was a 500).
            Self::unavailable(format!("the journal cannot be reached: {e}"))
        } else {
            Self::internal(e.to_string())
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"status": self.status.as_u16(), "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"meridian\""),
            );
        }
        r
    }
}

type Answer<T> = Result<T, ApiError>;

/// Largest request body: 1 MiB, as the CLI's `--inputs-file` (inputs that large belong in the
/// server's inputs file for the workflow).
const MAX_BODY: usize = 1 << 20;

/// A JSON body, or why not: a body over [`MAX_BODY`] is 413 and says the limit (it was a 400
/// "Failed to buffer the request body").
fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the limit of {} MiB; give large inputs in the server's inputs file for the workflow",
                MAX_BODY >> 20
            ),
        )),
        // No `Content-Type: application/json`: 415, as HTTP says, naming the header to send.
        Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) => {
            Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON: send `Content-Type: application/json`",
            ))
        }
        Err(e) => Err(ApiError::bad_request(e.body_text())),
    }
}

/// A page size from `?limit=`: 50 when not given, at most 500; zero is refused (it answered
/// one run).
fn page_limit(limit: Option<usize>) -> Answer<usize> {
    match limit {
        Some(0) => Err(ApiError::bad_request(
            "limit: give 1 to 500 (the page size), or leave it out for 50",
        )),
        l => Ok(l.unwrap_or(50).min(500)),
    }
}

pub fn router(server: Arc<Server>) -> Router {
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/workflows", get(workflows))
        .route("/api/v1/runs", get(list_runs).post(start_run))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/events", get(run_events))
        .route("/api/v1/runs/{id}/stream", get(run_stream))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/approvals/{step}", post(decide))
        .route("/api/v1/drills", get(drills))
        .route("/api/v1/readiness", get(readiness))
        .route("/api/v1/drift", get(drift))
        .route("/api/v1/git", get(git))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/schedules/{id}/pause", post(pause))
        .route("/api/v1/schedules/{id}/resume", post(resume))
        .route("/api/v1/schedules/{id}/trigger", post(trigger))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(server.clone(), authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(crate::envelope::json_errors));
    let pages = Router::new()
        .merge(api)
        .merge(crate::console::router())
        .layer(middleware::from_fn_with_state(
            server.clone(),
            loopback_only,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(pages)
        // Signed by the git host (HMAC), and never a browser's.
        .merge(crate::git::router())
        .fallback(crate::envelope::not_found)
        .with_state(server)
}

/// Without a tokens file, the API and the console answer this machine's callers only (see
/// [`crate::auth::local_caller`]).
async fn loopback_only(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    if server.tokens.is_none()
        && let Err(why) = crate::auth::local_caller(req.headers())
    {
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(req).await
}

/// Every API route needs a token when the server has a tokens file; without one the server
/// listens on loopback only and every caller is `local` with every role.
async fn authenticate(State(server): State<Arc<Server>>, mut req: Request, next: Next) -> Response {
    let identity = match &server.tokens {
        None => Identity {
            name: "local".into(),
            roles: vec![Role::Operator, Role::Approver],
        },
        Some(tokens) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` too.
                .and_then(|v| v.split_once(' '))
                .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token));
            let session = match given {
                None => server.sessions.find(req.headers()),
                Some(_) => None,
            };
            if let Some((_, session)) = session {
                // A console page's own requests: a state-changing one must carry the
                // session's CSRF token, so another site's page cannot send it.
                let safe = matches!(req.method().as_str(), "GET" | "HEAD");
                let csrf = req
                    .headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !safe && !crate::console::session::same(csrf, &session.csrf) {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "a request with the console's session cookie must carry its X-CSRF-Token",
                    )
                    .into_response();
                }
                req.extensions_mut().insert(session.identity);
                return next.run(req).await;
            }
            match given.and_then(|t| tokens.identify(t.trim())) {
                Some(id) => id,
                None => {
                    let msg = match given {
                        None => "this API needs `Authorization: Bearer TOKEN`",
                        Some(_) => "unknown token",
                    };
                    return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
                }
            }
        }
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}

fn require(id: &Identity, role: Role) -> Answer<()> {
    if id.may(role) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` lacks the `{}` role this needs",
                id.name,
                role.as_str()
            ),
        ))
    }
}

async fn readyz(State(s): State<Arc<Server>>) -> Response {
    if s.draining() {
        return ApiError::unavailable("shutting down").into_response();
    }
    match s.runner.journal().runs(1) {
        Ok(_) => "ready\n".into_response(),
        Err(e) => {
            ApiError::unavailable(format!("the journal does not answer: {e}")).into_response()
        }
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn workflows(State(s): State<Arc<Server>>) -> Json<Json_> {
    let infos = s.catalog.read().unwrap().infos();
    Json(json!({ "workflows": infos }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFilter {
    workflow: Option<String>,
    status: Option<String>,
    /// Unix ms: runs created at or after.
    since: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_runs(
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
struct StartBody {
    workflow: String,
    #[serde(default)]
    inputs: BTreeMap<String, Json_>,
    #[serde(default)]
    plan: bool,
}

async fn start_run(
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

async fn show_run(State(s): State<Arc<Server>>, Path(id): Path<String>) -> Answer<Json<Json_>> {
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
    Ok(Json(json!({
        "run": record,
        "summary": summary,
        "legs": legs,
        "plan": plan,
        "waiting_for_approval": waiting,
        "driven_here": active,
        "drill": drill.as_ref().map(drill_json),
    })))
}

fn drill_json(d: &DrillVerdict) -> Json_ {
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
struct After {
    /// Only events after this sequence number.
    after: Option<i64>,
}

async fn run_events(
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
async fn run_stream(
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

async fn cancel_run(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path(run): Path<String>,
) -> Answer<(StatusCode, Json<Json_>)> {
    require(&id, Role::Operator)?;
    let why = format!("cancelled through the API by `{}`", id.name);
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
struct DecideBody {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    comment: String,
}

async fn decide(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillFilter {
    workflow: Option<String>,
    limit: Option<usize>,
}

/// Drill history: the runs of workflows with a `drill:` block, newest first, each with its
/// figures against the targets.
async fn drills(State(s): State<Arc<Server>>, Query(f): Query<DrillFilter>) -> Answer<Json<Json_>> {
    let limit = page_limit(f.limit)?;
    let drills: BTreeMap<String, Arc<meridian_model::Workflow>> = s
        .catalog
        .read()
        .unwrap()
        .workflows()
        .filter(|l| l.workflow.drill.is_some())
        .filter(|l| f.workflow.as_ref().is_none_or(|w| *w == l.workflow.name))
        .map(|l| (l.workflow.name.clone(), l.workflow.clone()))
        .collect();
    let j = s.runner.journal();
    let mut out = Vec::new();
    // Applied runs (of the workflow asked for), a page at a time from the store's index.
    let q = meridian_store::RunQuery {
        workflow: f.workflow.clone(),
        mode: Some(Mode::Apply),
        limit: 200,
        ..meridian_store::RunQuery::default()
    };
    for r in meridian_store::query_all(&**j, q) {
        if out.len() >= limit {
            break;
        }
        let r = r.map_err(|e| ApiError::from_store(&e))?;
        let Some(wf) = drills.get(&r.workflow) else {
            continue;
        };
        if r.status == RunStatus::Running {
            continue;
        }
        let legs = j.legs(&r.id).map_err(|e| ApiError::from_store(&e))?;
        let events = j.events(&r.id).map_err(|e| ApiError::from_store(&e))?;
        let verdict = DrillVerdict::of_run(wf, &legs, &events);
        out.push(json!({
            "run": r.id, "workflow": r.workflow, "status": r.status,
            "created_at_ms": r.created_at_ms, "finished_at_ms": r.finished_at_ms,
            "drill": verdict.as_ref().map(drill_json),
        }));
    }
    Ok(Json(json!({ "drills": out })))
}

async fn drift(State(s): State<Arc<Server>>) -> Json<Json_> {
    Json(json!({ "drift": s.drift_infos() }))
}

async fn git(State(s): State<Arc<Server>>) -> Json<Json_> {
    Json(json!({ "git": s.git_infos() }))
}

async fn readiness(State(s): State<Arc<Server>>) -> Json<Json_> {
    Json(json!({ "readiness": s.readiness_infos() }))
}

async fn schedules(State(s): State<Arc<Server>>) -> Json<Json_> {
    Json(json!({ "schedules": s.schedule_infos() }))
}

async fn pause(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path(sched): Path<String>,
) -> Answer<Json<Json_>> {
    require(&id, Role::Operator)?;
    Ok(Json(json!(s.set_paused(&sched, Some(&id.name))?)))
}

async fn resume(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path(sched): Path<String>,
) -> Answer<Json<Json_>> {
    require(&id, Role::Operator)?;
    Ok(Json(json!(s.set_paused(&sched, None)?)))
}

async fn trigger(
    State(s): State<Arc<Server>>,
    Extension(id): Extension<Identity>,
    Path(sched): Path<String>,
) -> Answer<Response> {
    require(&id, Role::Operator)?;
    s.trigger(&sched).await?;
    let info = s
        .schedule_infos()
        .into_iter()
        .find(|i| i.id == sched)
        .ok_or_else(|| ApiError::not_found(format!("no schedule `{sched}`")))?;
    Ok((StatusCode::ACCEPTED, Json(json!(info))).into_response())
}

async fn metrics(State(s): State<Arc<Server>>) -> Answer<Response> {
    // Every run of the journal, counted by the store per state (no page is read).
    let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
    for status in RunStatus::ALL {
        let page = s
            .runner
            .journal()
            .query_runs(&meridian_store::RunQuery {
                status: Some(status),
                limit: 0,
                ..meridian_store::RunQuery::default()
            })
            .map_err(|e| ApiError::from_store(&e))?;
        if page.total > 0 {
            states.insert(status.as_str(), page.total as u64);
        }
    }
    let active = s.active.lock().unwrap().len();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&states, active),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document lists every route the router serves, and nothing else.
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let doc: Json_ = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
