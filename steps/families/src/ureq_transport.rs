//! A blocking [`Transport`] over `ureq`, for host-side end-to-end tests of step logic against
//! real local services (moto, pdns_server, the emulators). Plain HTTP only: the tests talk to
//! loopback addresses.

use std::time::Duration;

use meridian_sdk::http::{HttpError, Request, Response, Transport};

/// `ureq` agent with statuses returned as responses and a per-request timeout.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// An agent whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .build()
            .into();
        Self { agent }
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl Transport for UreqTransport {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(req.body.clone().unwrap_or_default())
            .map_err(|e| HttpError::Other(e.to_string()))?;
        let response = self.agent.run(request).map_err(|e| match e {
            ureq::Error::Timeout(_) => HttpError::Timeout,
            ureq::Error::Io(io) => HttpError::Connect(io.to_string()),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                HttpError::Connect(e.to_string())
            }
            other => HttpError::Other(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| HttpError::Other(format!("reading the body: {e}")))?;
        Ok(Response {
            status,
            headers,
            body,
            recorded: false,
        })
    }
}
