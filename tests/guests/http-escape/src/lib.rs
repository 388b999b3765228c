//! Sends GET to each URL in `with.urls` and reports the outcome, so tests can check that
//! non-granted hosts, redirects out of the grant and IP literals are denied. Also tries a raw
//! TCP connection through WASI sockets, which must fail.
use meridian_sdk::http::HttpError;
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// URLs to GET.
    pub urls: Vec<String>,
    /// `host:port` to try with a raw socket.
    #[serde(default)]
    pub raw_socket: Option<String>,
}

/// One request's outcome.
#[derive(Serialize, JsonSchema)]
pub struct Outcome {
    /// The URL.
    pub url: String,
    /// `ok <status>`, `denied`, `timeout`, `connect`, `too-large`, `other`.
    pub result: String,
    /// Detail: the body or the error message.
    pub detail: String,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// Per URL.
    pub outcomes: Vec<Outcome>,
    /// The raw-socket attempt's error (or `connected`).
    pub raw_socket: Option<String>,
}

/// HTTP escape attempts.
pub struct HttpEscape;

impl Step for HttpEscape {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("http-escape", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let outcomes = input
            .urls
            .into_iter()
            .map(|url| {
                let (result, detail) = match ctx.http().get(&url) {
                    Ok(r) => (format!("ok {}", r.status), r.text()),
                    Err(HttpError::Denied(m)) => ("denied".to_owned(), m),
                    Err(HttpError::Timeout) => ("timeout".to_owned(), String::new()),
                    Err(HttpError::Connect(m)) => ("connect".to_owned(), m),
                    Err(HttpError::TooLarge(n)) => ("too-large".to_owned(), n.to_string()),
                    Err(HttpError::Other(m)) => ("other".to_owned(), m),
                };
                Outcome {
                    url,
                    result,
                    detail,
                }
            })
            .collect();
        let raw_socket =
            input
                .raw_socket
                .map(|addr| match std::net::TcpStream::connect(addr.as_str()) {
                    Ok(_) => "connected".to_owned(),
                    Err(e) => e.to_string(),
                });
        Ok(Output {
            outcomes,
            raw_socket,
        })
    }
}

meridian_sdk::export_step!(HttpEscape);
