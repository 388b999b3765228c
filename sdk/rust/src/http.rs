//! Outbound HTTP through the host's `http` interface: the only network a step has.
//!
//! The host checks every request (and every redirect hop) against the step's `grants.http`, caps
//! body sizes and time, and in plan mode records mutating requests instead of sending them (the
//! response then has [`Response::recorded`] set, status 202 and the body `{}`).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::HostApi;

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
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, crate::Error> {
        self.body = Some(serde_json::to_vec(value)?);
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        Ok(self)
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
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
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

    /// Fails with a retryable error on 5xx and 429, a fatal one on other non-2xx statuses.
    pub fn error_for_status(self) -> Result<Self, crate::Error> {
        if self.is_success() {
            return Ok(self);
        }
        let mut snippet = self.text();
        snippet.truncate(200);
        let msg = format!("HTTP {}: {snippet}", self.status);
        if self.status >= 500 || self.status == 429 {
            Err(crate::Error::retryable(msg))
        } else {
            Err(crate::Error::fatal(msg))
        }
    }
}

/// Why the host did not return a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL (or a redirect target) is outside the step's grants.
    Denied(String),
    /// The request took longer than its timeout.
    Timeout,
    /// The connection failed (DNS, refused, TLS).
    Connect(String),
    /// A body exceeded the grant's size limit (the limit, in bytes).
    TooLarge(u64),
    /// Anything else.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "denied: {m}"),
            HttpError::Timeout => write!(f, "timed out"),
            HttpError::Connect(m) => write!(f, "connection failed: {m}"),
            HttpError::TooLarge(limit) => write!(f, "body larger than the {limit}-byte limit"),
            HttpError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::Error {
    /// Timeouts and connection failures are retryable; a denial or a size limit is not.
    fn from(e: HttpError) -> Self {
        let msg = format!("http: {e}");
        match e {
            HttpError::Timeout | HttpError::Connect(_) | HttpError::Other(_) => {
                crate::Error::retryable(msg)
            }
            HttpError::Denied(_) | HttpError::TooLarge(_) => crate::Error::fatal(msg),
        }
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
        let resp = |status| Response {
            status,
            headers: vec![],
            body: b"nope".to_vec(),
            recorded: false,
        };
        assert!(resp(204).error_for_status().is_ok());
        assert_eq!(
            resp(503).error_for_status().unwrap_err().kind(),
            crate::ErrorKind::Retryable
        );
        assert_eq!(
            resp(404).error_for_status().unwrap_err().kind(),
            crate::ErrorKind::Fatal
        );
    }
}
