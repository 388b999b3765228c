//! The control API's handlers: `GET /status`, `POST /regions/{name}/{action}` (start, stop,
//! kill, rebuild-standby, scale),
//! `POST /regions/{name}/faults/{fault}`, `POST /shutdown`.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, Lab};
use crate::error::LabError;
use crate::faults::{DEFAULT_STALE_MS, Fault, MAX_STALE_MS};
use crate::state::LabStatus;

fn error_response(status: StatusCode, e: &LabError) -> Response {
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

/// The index of region `name`, or why not: the lab is not ready (409) or has no such region
/// (404).
fn ready_region(lab: &Lab, name: &str) -> Result<usize, (StatusCode, LabError)> {
    if lab.status != LabStatus::Ready {
        let e = LabError::State(format!("the lab is {:?}", lab.status));
        return Err((StatusCode::CONFLICT, e));
    }
    lab.region_index(name).ok_or_else(|| {
        let e = LabError::Invalid(format!(
            "no region {name:?}; regions: {}",
            lab.cfg.regions.join(", ")
        ));
        (StatusCode::NOT_FOUND, e)
    })
}

/// The lab's state after an action, or the action's error (400 for a bad request); the state
/// is published either way.
async fn answer(lab: &mut Lab, result: Result<(), LabError>) -> Response {
    let published = lab.publish().await;
    match (result, published) {
        (Err(e), _) => {
            let status = match e {
                LabError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error_response(status, &e)
        }
        (Ok(()), Ok(state)) => Json(state).into_response(),
        (Ok(()), Err(e)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub(super) async fn get_status(State(app): State<AppState>) -> Response {
    let mut lab = app.lab.lock().await;
    match lab.publish().await {
        Ok(state) => Json(state).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct RegionQuery {
    /// rebuild-standby: the region to copy from.
    from: Option<String>,
    /// scale: the data-plane instances the region should run.
    instances: Option<u32>,
}

pub(super) async fn region_action(
    State(app): State<AppState>,
    UrlPath((name, action)): UrlPath<(String, String)>,
    Query(q): Query<RegionQuery>,
) -> Response {
    let mut lab = app.lab.lock().await;
    let idx = match ready_region(&lab, &name) {
        Ok(i) => i,
        Err((status, e)) => return error_response(status, &e),
    };
    tracing::info!(region = %name, %action, "region request");
    let result = if action == "rebuild-standby" {
        match q.from.as_deref().map(|f| (f, lab.region_index(f))) {
            Some((_, Some(from))) => lab.rebuild_standby(idx, from).await,
            Some((f, None)) => Err(LabError::Invalid(format!(
                "no region {f:?} to rebuild from"
            ))),
            None => Err(LabError::Invalid(
                "rebuild-standby needs ?from=<region of the new primary>".into(),
            )),
        }
    } else if action == "scale" {
        match q.instances {
            Some(n) => lab.regions[idx].gateway.data_planes.scale(n).await,
            None => Err(LabError::Invalid(
                "scale needs ?instances=<data-plane instances the region should run>".into(),
            )),
        }
    } else {
        lab.region_op(idx, &action).await
    };
    answer(&mut lab, result).await
}

#[derive(Deserialize)]
pub(super) struct FaultQuery {
    stale_ms: Option<u64>,
}

pub(super) async fn fault_action(
    State(app): State<AppState>,
    UrlPath((name, fault)): UrlPath<(String, String)>,
    Query(q): Query<FaultQuery>,
) -> Response {
    let fault = match fault.parse::<Fault>() {
        Ok(f) => f,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let stale_ms = q.stale_ms.unwrap_or(DEFAULT_STALE_MS);
    if stale_ms > MAX_STALE_MS {
        let e = LabError::Invalid(format!("stale_ms: at most {MAX_STALE_MS}"));
        return error_response(StatusCode::BAD_REQUEST, &e);
    }
    let mut lab = app.lab.lock().await;
    let idx = match ready_region(&lab, &name) {
        Ok(i) => i,
        Err((status, e)) => return error_response(status, &e),
    };
    tracing::info!(region = %name, fault = fault.as_str(), "fault request");
    let result = lab.inject(idx, fault, stale_ms).await;
    answer(&mut lab, result).await
}

pub(super) async fn post_shutdown(State(app): State<AppState>) -> Response {
    app.shutdown.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "stopping" })),
    )
        .into_response()
}
