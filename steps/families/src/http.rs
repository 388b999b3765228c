//! The HTTP seam between step logic and whatever carries the bytes.
//!
//! Step logic speaks [`Transport`]; inside a component the transport is the host's `http`
//! interface (granted, size-capped, recorded in plan mode), in host tests it is an in-memory fake
//! or [`crate::UreqTransport`] against a real local service. Keeping the seam this thin is what
//! lets the vendor logic be unit-tested on the host without wasmtime.

use std::fmt;

/// One HTTP request as the step builds it. Headers are sent in order; the transport adds
/// `host` and `content-length` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, …
    pub method: String,
    /// Absolute `http://` or `https://` URL, already percent-encoded.
    pub url: String,
    /// Header name/value pairs.
    pub headers: Vec<(String, String)>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Per-request timeout in milliseconds; the host caps it with the grant's timeout.
    pub timeout_ms: Option<u32>,
}

impl HttpRequest {
    /// A request without headers or body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Serialises `value` as a JSON body with `content-type: application/json`.
    #[must_use]
    pub fn json(self, value: &serde_json::Value) -> Self {
        // Serialising a `Value` cannot fail: every key is a string.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(bytes)
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

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// True when plan mode recorded the request instead of sending it (the host then answers
    /// 202 with the body `{}`): the step must not expect server-made ids or state from it.
    pub recorded: bool,
}

impl HttpResponse {
    /// A response with a status and a body, for fakes and tests.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            recorded: false,
        }
    }

    /// The synthetic answer of a request recorded in plan mode.
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

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// At most `max` characters of the body, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        let text = self.text();
        let mut out: String = text.chars().take(max).collect();
        if text.chars().count() > max {
            out.push('…');
        }
        out
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why no response came back. Mirrors the `error` variant of the WIT `http` interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The URL (or a redirect) is outside the step's `grants.http`.
    #[error("denied by the step's http grants: {0}")]
    Denied(String),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be made.
    #[error("connection failed: {0}")]
    Connect(String),
    /// A body exceeded the grant's size limit (bytes).
    #[error("body larger than the {0}-byte limit")]
    TooLarge(u64),
    /// Anything else the transport reports.
    #[error("{0}")]
    Other(String),
}

/// Sends one request and returns the complete response. Non-2xx statuses are responses, not
/// errors: the vendor code reads their bodies to say what went wrong.
pub trait Transport {
    /// Sends `req`. Costs one round trip; blocking.
    fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(req)
    }
}

/// Percent-encodes every byte of `s` except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) and the bytes in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Joins `base` (no trailing slash needed) and `path` (leading slash optional) with one `/`;
/// an empty `path` gives `base` without a trailing slash.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    }
}

/// A URL split into the parts the signers and error messages need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `http` or `https`, lower-case as written.
    pub scheme: &'a str,
    /// `host[:port]` exactly as written.
    pub authority: &'a str,
    /// Host without the port (brackets kept for IPv6 literals).
    pub host: &'a str,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path, `/` when empty.
    pub path: &'a str,
    /// Query without the `?`, empty when absent.
    pub query: &'a str,
}

/// Splits an absolute `scheme://authority/path?query` URL. Returns `None` for anything else
/// (relative URLs, user-info, fragments are not used by the steps).
pub fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || rest.contains('#') {
        return None;
    }
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let after = &rest[auth_end..];
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, q),
        None => (after, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    let (host, port) = split_host_port(authority)?;
    Some(UrlParts {
        scheme,
        authority,
        host,
        port,
        path,
        query,
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(end) = authority.strip_prefix('[').and_then(|r| r.find(']')) {
        // [v6]:port — `end` indexes into the string after '['.
        let host = &authority[..end + 2];
        let rest = &authority[end + 2..];
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

impl fmt::Display for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_url_parts() {
        let u = split_url("https://route53.amazonaws.com/2013-04-01/x?a=1&b=2").unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.host, u.port, u.path, u.query),
            (
                "https",
                "route53.amazonaws.com",
                "route53.amazonaws.com",
                None,
                "/2013-04-01/x",
                "a=1&b=2"
            )
        );
        let u = split_url("http://127.0.0.1:5055").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.query),
            ("127.0.0.1", Some(5055), "/", "")
        );
        let u = split_url("http://[::1]:8081/api?x").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.query),
            ("[::1]", Some(8081), "/api", "x")
        );
        assert!(split_url("/relative").is_none());
        assert!(split_url("http://user@host/").is_none());
        assert!(split_url("http://host:notaport/").is_none());
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(
            percent_encode("eu west/1~a-b_c.d", b""),
            "eu%20west%2F1~a-b_c.d"
        );
        assert_eq!(percent_encode("/a b/", b"/"), "/a%20b/");
        assert_eq!(percent_encode("é", b""), "%C3%A9");
    }

    #[test]
    fn mutating_methods() {
        assert!(!HttpRequest::new("get", "http://x/").is_mutating());
        assert!(HttpRequest::new("PATCH", "http://x/").is_mutating());
        assert_eq!(join_url("http://a/b/", "/c"), "http://a/b/c");
        assert_eq!(join_url("http://a/b/", ""), "http://a/b");
    }
}
