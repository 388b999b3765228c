//! The HTTP JSON API under `/api/v1` (described by `openapi.json`, served at
//! `/api/v1/openapi.json`), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Errors are `{"error": {"status": 404, "message": "…"}}` with the matching status code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use meridian_protocol::{Mode, RunStatus};
use meridian_runner::DrillVerdict;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::Server;
use crate::auth::{Identity, Role};

mod error;
mod runs;

pub(crate) use error::Answer;
pub use error::ApiError;
use error::{MAX_BODY, json_body, page_limit};
use runs::{
    cancel_run, decide, drill_json, list_runs, run_events, run_stream, show_run, start_run,
};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

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

pub(super) fn require(id: &Identity, role: Role) -> Answer<()> {
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
    let mut infos = s.catalog.read().unwrap().infos();
    // The schedules the server runs for each workflow: its file's own and the server config's
    // `[[schedule]]`s for it (the file's count left those out).
    let schedules = s.schedules.lock().unwrap();
    for info in &mut infos {
        if let Some(name) = &info.name {
            info.schedules = schedules
                .values()
                .filter(|x| &x.spec.workflow == name)
                .count();
        }
    }
    drop(schedules);
    Json(json!({ "workflows": infos }))
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
    let mut drills = s.catalog.read().unwrap().drill_workflows();
    drills.retain(|name, _| f.workflow.as_ref().is_none_or(|w| w == name));
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
        if !meridian_runner::history::is_drill_result(r.status) {
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
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Answer<Json<Json_>> {
    require(&id, Role::Operator)?;
    let why = match error::reason(&headers, &body)? {
        Some(r) => format!("paused by {}: {r}", id.name),
        None => format!("paused by {}", id.name),
    };
    Ok(Json(json!(s.set_paused(&sched, Some(why))?)))
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
    let started = s.trigger(&sched).await?;
    let info = s
        .schedule_infos()
        .into_iter()
        .find(|i| i.id == sched)
        .ok_or_else(|| ApiError::not_found(format!("no schedule `{sched}`")))?;
    // The schedule, and the run this trigger started: `null` when its overlap policy started
    // none (`last_result` says why). `last_run` alone could not tell a new run from the last.
    let mut body = json!(info);
    body["started_run"] = json!(started);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn metrics(State(s): State<Arc<Server>>) -> Answer<Response> {
    // Every run of the journal, counted by the store per state and mode (no page is read): a
    // server's readiness and drift checks are plan runs, told apart from applied ones (a lab
    // that was not ready counted as failed runs).
    let mut states: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for status in RunStatus::ALL {
        for mode in [Mode::Apply, Mode::Plan] {
            let page = s
                .runner
                .journal()
                .query_runs(&meridian_store::RunQuery {
                    status: Some(status),
                    mode: Some(mode),
                    limit: 0,
                    ..meridian_store::RunQuery::default()
                })
                .map_err(|e| ApiError::from_store(&e))?;
            if page.total > 0 {
                states.insert((status.as_str(), mode.as_str()), page.total as u64);
            }
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
