//! The `{success, errors, messages, result}` envelope every answer is wrapped in, and the errors
//! Cloudflare sends in it.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::json::json_response;

/// An error to send in the envelope.
#[derive(Debug)]
pub(super) struct CfError {
    pub(super) status: StatusCode,
    pub(super) code: u32,
    pub(super) message: String,
}

impl CfError {
    pub(super) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        CfError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid(reason: impl std::fmt::Display) -> Self {
        CfError::new(
            StatusCode::BAD_REQUEST,
            1002,
            format!("{reason}: validation failed"),
        )
    }

    pub(super) fn not_found(what: &str) -> Self {
        CfError::new(StatusCode::NOT_FOUND, 1001, format!("{what} not found"))
    }

    pub(super) fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({
                "success": false,
                "errors": [{"code": self.code, "message": self.message}],
                "messages": [],
                "result": null,
            }),
        )
    }
}

pub(super) type CfResult = Result<Response, CfError>;

pub(super) fn success(result: &Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

pub(super) fn success_list(items: &[Value]) -> Response {
    let n = items.len();
    json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "errors": [],
            "messages": [],
            "result": items,
            "result_info": {"page": 1, "per_page": n.max(20), "count": n, "total_count": n, "total_pages": 1},
        }),
    )
}

pub(super) fn bad_identifier(path: &str) -> CfError {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    CfError::new(
        StatusCode::NOT_FOUND,
        7003,
        format!("Could not route to {path}, perhaps your object identifier is invalid?"),
    )
}

pub(super) fn method_not_allowed() -> CfError {
    CfError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        7001,
        "Method not allowed for this endpoint",
    )
}

pub(super) fn parse_body(body: &Bytes) -> Result<Map<String, Value>, CfError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CfError::invalid("request body must be a JSON object")),
        Err(e) => Err(CfError::invalid(format!(
            "malformed JSON in request body ({e})"
        ))),
    }
}

pub(super) fn finish(r: CfResult) -> Response {
    r.unwrap_or_else(CfError::into_response)
}
