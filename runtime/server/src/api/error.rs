//! The API's error answer (`{"error": {"status", "message"}}`) and the request checks every
//! handler shares: JSON bodies and page sizes.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_store::StoreError;
use serde_json::json;

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

pub(crate) type Answer<T> = Result<T, ApiError>;

/// Largest request body: 1 MiB, as the CLI's `--inputs-file` (inputs that large belong in the
/// server's inputs file for the workflow).
pub(super) const MAX_BODY: usize = 1 << 20;

/// A JSON body, or why not: a body over [`MAX_BODY`] is 413 and says the limit (it was a 400
/// "Failed to buffer the request body").
pub(super) fn json_body<T>(
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
pub(super) fn page_limit(limit: Option<usize>) -> Answer<usize> {
    match limit {
        Some(0) => Err(ApiError::bad_request(
            "limit: give 1 to 500 (the page size), or leave it out for 50",
        )),
        l => Ok(l.unwrap_or(50).min(500)),
    }
}

/// What an operator may say of a pause or a cancel: `{"reason": "..."}`, or no body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

/// Most characters of a reason.
const MAX_REASON: usize = 500;

/// The reason an optional JSON body gives (`{"reason": "maintenance until Monday"}`), or none
/// for an empty body. Shown wherever the pause or the cancel is: one line of printable text.
pub(super) fn reason(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON: send `Content-Type: application/json` and {\"reason\": \"...\"}, or no body",
        ));
    }
    let b: ReasonBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body must be {{\"reason\": \"...\"}}: {e}"))
    })?;
    let reason = b.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason: empty; give one, or send no body",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason: at most {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "reason: one line of text, without control characters",
        ));
    }
    Ok(Some(reason.to_string()))
}
