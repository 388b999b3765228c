//! Outbound HTTP through the host's `http` interface: the only network a step has.
//!
//! The host checks every request (and every redirect hop) against the step's `grants.http`, caps
//! body sizes and time, and in plan mode records mutating requests instead of sending them (the
//! response then has [`Response::recorded`] set, status 202 and the body `{}`).
//!
//! Step logic that should run without a host (unit tests, host-side tests against real local
//! services) takes a [`Transport`]: [`Http`] is the host's, a test passes its own. What a failure
//! means for a retry is decided here once: [`HttpError::is_retryable`] for transport failures,
//! [`is_retryable_status`] for statuses.

mod url;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::HostApi;

pub use url::{UrlParts, join_url, percent_encode, split_url};

/// An HTTP request. Build with [`Request::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Header name/value pairs, sent in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Per-request timeout; the host caps it with the grant's timeout.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the raw body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Serialises `value` as the JSON body and sets `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, crate::Error> {
        Ok(self.json_bytes(serde_json::to_vec(value)?))
    }

    /// [`Request::json`] of a JSON value, which always serialises.
    #[must_use]
    pub fn json_value(self, value: &serde_json::Value) -> Self {
        // Serialising a `Value` cannot fail: every map key is a string.
        self.json_bytes(serde_json::to_vec(value).unwrap_or_default())
    }

    fn json_bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        if self.header_value("content-type").is_none() {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The first header named `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the request changes state on the server (anything but GET/HEAD/OPTIONS). Plan mode
    /// records these instead of sending them.
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self.method.to_ascii_uppercase().as_str(),
            "GET" | "HEAD" | "OPTIONS"
        )
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// An HTTP response, body fully read (up to the grant's size limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// True when plan mode recorded the request instead of sending it.
    pub recorded: bool,
}

impl Response {
    /// A response with a status and a body, for fakes and tests.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            recorded: false,
        }
    }

    /// What the host answers to a mutating request in plan mode: 202, `x-meridian-plan:
    /// recorded`, the body `{}`.
    pub fn recorded() -> Self {
        Self {
            status: 202,
            headers: vec![("x-meridian-plan".into(), "recorded".into())],
            body: b"{}".to_vec(),
            recorded: true,
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Status in 200..=299.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            crate::Error::fatal(format!("response body is not the expected JSON: {e}"))
        })
    }

    /// At most `max` characters of the body (lossy UTF-8), `…` marking a cut, for messages.
    pub fn snippet(&self, max: usize) -> String {
        let text = self.text();
        let mut out: String = text.chars().take(max).collect();
        if text.chars().count() > max {
            out.push('…');
        }
        out
    }

    /// Why a server refused, for an error message: the first of `keys` that is a string at the
    /// top of a JSON body (APIs differ: `error_msg`, `message`, `error`, …), else a snippet of the
    /// body, else `(empty body)`.
    pub fn error_message(&self, keys: &[&str]) -> String {
        if let Ok(serde_json::Value::Object(v)) = serde_json::from_slice(&self.body)
            && let Some(m) = keys.iter().find_map(|k| v.get(*k)?.as_str())
        {
            return m.to_owned();
        }
        if self.body.is_empty() {
            "(empty body)".to_owned()
        } else {
            self.snippet(300)
        }
    }

    /// Fails unless 2xx: with a retryable error when [`is_retryable_status`], a fatal one
    /// otherwise.
    pub fn error_for_status(self) -> Result<Self, crate::Error> {
        if self.is_success() {
            return Ok(self);
        }
        let msg = format!("HTTP {}: {}", self.status, self.snippet(200));
        if is_retryable_status(self.status) {
            Err(crate::Error::retryable(msg))
        } else {
            Err(crate::Error::fatal(msg))
        }
    }
}

/// Whether a status says "try again later": 408, 429 and every 5xx. Any other non-2xx status is
/// an answer that a retry would only repeat.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why no response came back. Mirrors the `error` variant of the WIT `http` interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL (or a redirect target) is outside the step's grants.
    #[error("denied by the step's http grants: {0}")]
    Denied(String),
    /// The request took longer than its timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed (DNS, refused, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// A body exceeded the grant's size limit (the limit, in bytes).
    #[error(
        "body larger than the {0}-byte limit (`max-request` / `max-response` of the step's `grants.http`)"
    )]
    TooLarge(u64),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// Whether trying again may succeed: timeouts and connection (and unknown) failures may pass;
    /// a denied URL or a size limit will not, whatever the server does.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Timeout | HttpError::Connect(_) | HttpError::Other(_) => true,
            HttpError::Denied(_) | HttpError::TooLarge(_) => false,
        }
    }
}

impl From<HttpError> for crate::Error {
    /// Kind from [`HttpError::is_retryable`].
    fn from(e: HttpError) -> Self {
        let msg = format!("http: {e}");
        if e.is_retryable() {
            crate::Error::retryable(msg)
        } else {
            crate::Error::fatal(msg)
        }
    }
}

/// Sends one request and returns the complete response; blocking, one round trip. Non-2xx
/// statuses are responses, not errors: the caller reads their bodies to say what went wrong.
///
/// [`Http`] sends through the host; tests and host-side tools pass their own.
pub trait Transport {
    /// Sends `req`.
    fn send(&self, req: &Request) -> Result<Response, HttpError>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        (**self).send(req)
    }
}

impl Transport for Http<'_> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        Http::send(self, req)
    }
}

/// HTTP helpers bound to a step's context; see [`crate::Ctx::http`].
#[derive(Clone, Copy)]
pub struct Http<'a> {
    pub(crate) host: &'a dyn HostApi,
}

impl Http<'_> {
    /// Sends `req` as is.
    pub fn send(&self, req: &Request) -> Result<Response, HttpError> {
        self.host.http_send(req)
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Result<Response, HttpError> {
        self.send(&Request::new("GET", url))
    }

    /// `HEAD url`.
    pub fn head(&self, url: &str) -> Result<Response, HttpError> {
        self.send(&Request::new("HEAD", url))
    }

    /// `DELETE url`.
    pub fn delete(&self, url: &str) -> Result<Response, HttpError> {
        self.send(&Request::new("DELETE", url))
    }

    /// `POST url` with a JSON body.
    pub fn post_json<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
    ) -> Result<Response, crate::Error> {
        Ok(self.send(&Request::new("POST", url).json(body)?)?)
    }

    /// `PUT url` with a JSON body.
    pub fn put_json<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
    ) -> Result<Response, crate::Error> {
        Ok(self.send(&Request::new("PUT", url).json(body)?)?)
    }

    /// `PATCH url` with a JSON body.
    pub fn patch_json<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
    ) -> Result<Response, crate::Error> {
        Ok(self.send(&Request::new("PATCH", url).json(body)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_content_type_once() {
        let r =
            Request::new("POST", "http://x").header("Content-Type", "application/merge-patch+json");
        let r = r.json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.body.as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn error_for_status_kinds() {
        let resp = |status| Response::new(status, "nope");
        assert!(resp(204).error_for_status().is_ok());
        for status in [408, 429, 503] {
            assert_eq!(
                resp(status).error_for_status().unwrap_err().kind(),
                crate::ErrorKind::Retryable,
                "{status}"
            );
        }
        assert_eq!(
            resp(404).error_for_status().unwrap_err().kind(),
            crate::ErrorKind::Fatal
        );
        // Regression: the cut used to be a byte index and panicked inside a character.
        let long = Response::new(500, format!("a{}", "é".repeat(300)));
        let e = long.error_for_status().unwrap_err();
        assert!(e.message().ends_with("é…"), "{}", e.message());
    }

    #[test]
    fn transport_errors_are_classified() {
        assert!(HttpError::Timeout.is_retryable());
        assert!(HttpError::Connect("refused".into()).is_retryable());
        assert!(HttpError::Other("reset".into()).is_retryable());
        assert!(!HttpError::Denied("x".into()).is_retryable());
        assert!(!HttpError::TooLarge(10).is_retryable());
        let e: crate::Error = HttpError::Denied("http://x".into()).into();
        assert_eq!(e.kind(), crate::ErrorKind::Fatal);
        assert_eq!(
            e.message(),
            "http: denied by the step's http grants: http://x"
        );
    }

    #[test]
    fn error_messages_from_json_or_the_body() {
        let r = |body: &str| Response::new(400, body);
        let keys = ["error_msg", "message"];
        assert_eq!(
            r(r#"{"message":"Key not found","error_msg":"bad"}"#).error_message(&keys),
            "bad"
        );
        assert_eq!(r(r#"{"message":"gone"}"#).error_message(&keys), "gone");
        assert_eq!(
            r(r#"{"message":7}"#).error_message(&keys),
            r#"{"message":7}"#
        );
        assert_eq!(r("<html>").error_message(&keys), "<html>");
        assert_eq!(r("").error_message(&keys), "(empty body)");
        assert_eq!(
            r(&"x".repeat(301)).error_message(&keys).chars().count(),
            301
        );
    }

    #[test]
    fn requests_know_their_headers_and_whether_they_write() {
        let r = Request::new("get", "http://x/").header("X-Api-Key", "k");
        assert_eq!(r.header_value("x-api-key"), Some("k"));
        assert!(!r.is_mutating());
        assert!(Request::new("PATCH", "http://x/").is_mutating());
        assert_eq!(r.to_string(), "get http://x/");
        let j = Request::new("PUT", "http://x/").json_value(&serde_json::json!({"a": [1]}));
        assert_eq!(j.header_value("content-type"), Some("application/json"));
        assert_eq!(j.body.as_deref(), Some(&b"{\"a\":[1]}"[..]));
        let recorded = Response::recorded();
        assert!(recorded.recorded && recorded.status == 202);
        assert_eq!(recorded.header("x-meridian-plan"), Some("recorded"));
    }
}
