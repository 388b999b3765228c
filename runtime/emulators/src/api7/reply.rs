//! The response shapes the control plane shares: `{"error_msg"}` errors, [`Fail`] for errors
//! carried through `Result`s, `{value}` and `{list, total}` bodies, and JSON body parsing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::json::json_response;

pub(super) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, &json!({"error_msg": msg.into()}))
}

/// An error reply carried through `Result`s (small, unlike a whole `Response`).
#[derive(Debug)]
pub(super) struct Fail {
    pub(super) status: StatusCode,
    pub(super) msg: String,
}

impl Fail {
    pub(super) fn bad(msg: impl Into<String>) -> Self {
        Fail {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.status, self.msg)
    }
}

pub(super) fn value(v: &Value) -> Response {
    json_response(StatusCode::OK, &json!({"value": v}))
}

pub(super) fn list(items: &[Value]) -> Response {
    let total = items.len();
    json_response(StatusCode::OK, &json!({"list": items, "total": total}))
}

pub(super) fn parse_json(body: &[u8]) -> Result<Value, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail::bad(format!("invalid request body: {e}")))
}
