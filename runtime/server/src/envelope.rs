//! Every error of the API in its one shape, `{"error": {"status", "message"}}`, also those the
//! router and axum's extractors answer by themselves: an unknown route (404), a method the
//! route does not take (405), a query string or body that does not parse (400, 413, 415).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// Rewrites an API error answered as text (or with no body) into the JSON envelope, keeping its
/// status and headers (`Allow` of a 405).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        match status {
            // axum adds the route's `Allow` header outside this layer.
            StatusCode::METHOD_NOT_ALLOWED => {
                "this route does not take that method (its `Allow` header lists those it takes)"
                    .to_string()
            }
            s => s.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    } else {
        text
    };
    let mut out = ApiError::new(status, message).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

/// A path no route serves: under `/api/` the API's 404, elsewhere a plain one.
pub(crate) async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no route {} {path}; the routes are listed in /api/v1/openapi.json",
                req.method()
            ),
        )
        .into_response()
    } else {
        // The console's own error page (it was a plain-text "not found").
        let page = meridian_console::error_page(
            404,
            &format!(
                "There is no page at {path}. The console's pages: Overview, Runs, Drills, Schedules."
            ),
            None,
        );
        crate::console::html(StatusCode::NOT_FOUND, page)
    }
}
