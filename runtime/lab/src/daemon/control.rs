//! The control API's handlers: `GET /status`, `POST /regions/{name}/{action}`,
//! `POST /regions/{name}/faults/{fault}`, `POST /shutdown`.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::error::LabError;
use crate::faults::{DEFAULT_STALE_MS, Fault, MAX_STALE_MS};
use crate::state::LabStatus;

fn error_response(status: StatusCode, e: &LabError) -> Response {
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

pub(super) async fn get_status(State(app): State<AppState>) -> Response {
    let mut lab = app.lab.lock().await;
    match lab.publish().await {
        Ok(state) => Json(state).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct RebuildQuery {
    from: Option<String>,
}

pub(super) async fn region_action(
    State(app): State<AppState>,
    UrlPath((name, action)): UrlPath<(String, String)>,
    Query(q): Query<RebuildQuery>,
) -> Response {
    let mut lab = app.lab.lock().await;
    if lab.status != LabStatus::Ready {
        let e = LabError::State(format!("the lab is {:?}", lab.status));
        return error_response(StatusCode::CONFLICT, &e);
    }
    let Some(idx) = lab.region_index(&name) else {
        let e = LabError::Invalid(format!(
            "no region {name:?}; regions: {}",
            lab.cfg.regions.join(", ")
        ));
        return error_response(StatusCode::NOT_FOUND, &e);
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
    } else {
        lab.region_op(idx, &action).await
    };
    if let Err(e) = result {
        let status = match e {
            LabError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let _ = lab.publish().await;
        return error_response(status, &e);
    }
    match lab.publish().await {
        Ok(state) => Json(state).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
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
    if lab.status != LabStatus::Ready {
        let e = LabError::State(format!("the lab is {:?}", lab.status));
        return error_response(StatusCode::CONFLICT, &e);
    }
    let Some(idx) = lab.region_index(&name) else {
        let e = LabError::Invalid(format!(
            "no region {name:?}; regions: {}",
            lab.cfg.regions.join(", ")
        ));
        return error_response(StatusCode::NOT_FOUND, &e);
    };
    tracing::info!(region = %name, fault = fault.as_str(), "fault request");
    if let Err(e) = lab.inject(idx, fault, stale_ms).await {
        let status = match e {
            LabError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let _ = lab.publish().await;
        return error_response(status, &e);
    }
    match lab.publish().await {
        Ok(state) => Json(state).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub(super) async fn post_shutdown(State(app): State<AppState>) -> Response {
    app.shutdown.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "stopping" })),
    )
        .into_response()
}
