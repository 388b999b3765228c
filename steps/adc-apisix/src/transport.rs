//! The one seam to the network: a blocking HTTP [`Transport`].
//!
//! Inside the component it is the SDK's `http` interface (the host enforces the step's grants
//! and, in plan mode, records mutating requests and answers them itself, setting
//! [`HttpResponse::recorded`]); in host tests it is an in-memory fake Admin API. The sync logic
//! sees nothing else, so everything but the component glue is tested on the host.

/// An HTTP request, mirroring the WIT `http.request` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: Option<u32>,
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response, body fully read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True when plan mode recorded the request instead of sending it.
    pub recorded: bool,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no response came back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The URL is outside the step's `grants.http`.
    #[error("denied by the step's http grant: {0}")]
    Denied(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("body larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("{0}")]
    Other(String),
}

/// Sends one request and waits for the whole response.
pub trait Transport {
    fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError>;
}
