//! The `http` capability: reqwest behind the allow-list, with size and time limits, manual
//! redirects (each hop re-checked) and plan-mode recording.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::HttpPolicy;
use super::allow::{allows, origin};
use crate::bindings::meridian::step::http::{Error as HttpError, Request, Response};
use meridian_protocol::PlannedChange;

/// Redirect hops followed before giving up.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// Status of the synthetic answer to a request recorded in plan mode.
pub(crate) const PLAN_STATUS: u16 = 202;
/// Bytes of a recorded body kept as text in the plan.
const SUMMARY_BYTES: usize = 512;
/// Largest recorded body kept as parsed JSON in the plan.
const PLAN_JSON_BYTES: usize = 64 << 10;

/// One invocation's HTTP grant.
pub(crate) struct HttpCap {
    pub(crate) policy: HttpPolicy,
    /// Shared client: connection pool across invocations; built with redirects and proxies off.
    pub(crate) client: reqwest::Client,
}

/// Builds the client every invocation shares. Costs a few milliseconds (TLS roots), so the
/// sandbox builds it on first use.
pub(crate) fn build_client() -> Result<reqwest::Client, String> {
    build_client_with(None)
}

/// The same client, resolving names through `dns` when given (see [`super::dns`]).
pub(crate) fn build_client_with(
    dns: Option<std::net::SocketAddr>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(server) = dns {
        // A step that resolves through a granted DNS server (the GSLB's) asks which region it
        // sends clients to: every request opens its own connection, after its own lookup. A
        // kept-alive connection carried the probes of a failover to the region DNS had moved
        // away from, and `http-probe`'s "four passes in a row" were one lookup's.
        builder = builder
            .dns_resolver(std::sync::Arc::new(super::dns::GrantedResolver { server }))
            .pool_max_idle_per_host(0);
    }
    builder
        // Redirects are followed by hand so that every hop is checked against the grants.
        .redirect(reqwest::redirect::Policy::none())
        // An HTTP_PROXY in the host's environment must not reroute guest traffic.
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

fn is_safe_method(m: &reqwest::Method) -> bool {
    *m == reqwest::Method::GET || *m == reqwest::Method::HEAD || *m == reqwest::Method::OPTIONS
}

impl HttpCap {
    /// Performs (or, in plan mode, records) `req`. Returns the response and, when recorded, the
    /// planned change (unmasked: the caller masks it).
    pub(crate) async fn send(
        &self,
        req: Request,
        plan: bool,
    ) -> Result<(Response, Option<PlannedChange>), HttpError> {
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::Other(format!("invalid HTTP method `{}`", req.method)))?;
        let url = Url::parse(&req.url)
            .map_err(|e| HttpError::Other(format!("invalid URL `{}`: {e}", req.url)))?;
        self.check(&url)?;
        let body = req.body.unwrap_or_default();
        if body.len() as u64 > self.policy.max_request_bytes {
            return Err(HttpError::TooLarge(self.policy.max_request_bytes));
        }
        let headers = build_headers(&req.headers)?;

        if plan && !is_safe_method(&method) {
            let change = record(&method, &url, &req.headers, &body);
            let resp = Response {
                status: PLAN_STATUS,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("x-meridian-plan".into(), "recorded".into()),
                ],
                body: b"{}".to_vec(),
                recorded: true,
            };
            return Ok((resp, Some(change)));
        }

        let timeout = req.timeout_ms.map_or(self.policy.timeout, |ms| {
            Duration::from_millis(ms.into()).min(self.policy.timeout)
        });
        let exchange = self.exchange(method, url, headers, body);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r.map(|resp| (resp, None)),
            Err(_) => Err(HttpError::Timeout),
        }
    }

    fn check(&self, url: &Url) -> Result<(), HttpError> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(HttpError::Denied(format!(
                "{url}: only http and https are supported"
            )));
        }
        if allows(&self.policy.allow, url) {
            Ok(())
        } else {
            Err(HttpError::Denied(format!(
                "{} is not granted to this step; add it to the step's grants.http",
                origin(url)
            )))
        }
    }

    async fn exchange(
        &self,
        mut method: reqwest::Method,
        mut url: Url,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let mut body = Some(body).filter(|b| !b.is_empty() || !is_safe_method(&method));
        for hop in 0..=MAX_REDIRECTS {
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let mut resp = rb.send().await.map_err(|e| map_reqwest(&e))?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = resp.headers().get(reqwest::header::LOCATION)
            {
                if hop == MAX_REDIRECTS {
                    return Err(HttpError::Other(format!(
                        "more than {MAX_REDIRECTS} redirects, last to {url}"
                    )));
                }
                let location = location
                    .to_str()
                    .map_err(|_| HttpError::Other("redirect with a non-ASCII Location".into()))?;
                let next = url.join(location).map_err(|e| {
                    HttpError::Other(format!("bad redirect Location `{location}`: {e}"))
                })?;
                if !allows(&self.policy.allow, &next) {
                    return Err(HttpError::Denied(format!(
                        "{url} redirected to {}, which is not granted to this step",
                        origin(&next)
                    )));
                }
                if next.host() != url.host()
                    || next.port_or_known_default() != url.port_or_known_default()
                {
                    // Credentials are for the origin they were written for.
                    headers.remove(reqwest::header::AUTHORIZATION);
                    headers.remove(reqwest::header::COOKIE);
                }
                // RFC 9110 15.4: 303 becomes GET; 301/302 after POST become GET in practice.
                if status == 303 && method != reqwest::Method::HEAD
                    || matches!(status, 301 | 302) && method == reqwest::Method::POST
                {
                    method = reqwest::Method::GET;
                    body = None;
                    headers.remove(reqwest::header::CONTENT_TYPE);
                }
                url = next;
                continue;
            }
            return self.read(&mut resp, status).await;
        }
        unreachable!("the loop returns on its last hop")
    }

    async fn read(&self, resp: &mut reqwest::Response, status: u16) -> Result<Response, HttpError> {
        let max = self.policy.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(HttpError::TooLarge(max));
        }
        let mut headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if self.policy.resolver.is_some()
            && let Some(addr) = resp.remote_addr()
        {
            // Which address the granted DNS server sent the step to.
            headers.push(("x-meridian-remote-addr".into(), addr.to_string()));
        }
        let mut body = Vec::new();
        // Streamed so that a lying or absent Content-Length cannot make the host buffer more than
        // the limit.
        while let Some(chunk) = resp.chunk().await.map_err(|e| map_reqwest(&e))? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(HttpError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
            recorded: false,
        })
    }
}

fn build_headers(pairs: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| HttpError::Other(format!("invalid header name `{k}`")))?;
        // The host computes these; a guest-supplied Host header could address another vhost
        // than the one the grant was checked for.
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let value = HeaderValue::from_str(v)
            .map_err(|_| HttpError::Other(format!("invalid value for header `{k}`")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn map_reqwest(e: &reqwest::Error) -> HttpError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect(msg)
    } else {
        HttpError::Other(msg)
    }
}

/// Whether a header's value should be hidden in plan records.
fn sensitive(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["key", "token", "secret", "password", "auth"]
        .iter()
        .any(|w| n.contains(w))
}

fn record(
    method: &reqwest::Method,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> PlannedChange {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if sensitive(k) {
                    meridian_protocol::mask::MASK.to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let body_json = if !body.is_empty() && body.len() <= PLAN_JSON_BYTES {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    PlannedChange::Http {
        method: method.as_str().to_owned(),
        url: url.as_str().to_owned(),
        headers,
        body_json,
        body_summary: summarize(body),
        body_bytes: body.len() as u64,
    }
}

fn summarize(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let head = &body[..body.len().min(SUMMARY_BYTES)];
    let text = match std::str::from_utf8(head) {
        Ok(s) => s,
        // Cut in the middle of a UTF-8 character: keep the complete ones.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Some(format!("<{} bytes of binary data>", body.len())),
    };
    if head.len() < body.len() {
        Some(format!("{text}… ({} bytes)", body.len()))
    } else {
        Some(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(b"{\"a\":1}").as_deref(), Some("{\"a\":1}"));
        let long = "é".repeat(400); // 800 bytes; byte 512 falls inside a character
        let s = summarize(long.as_bytes()).unwrap();
        assert!(s.starts_with("éé") && s.ends_with("… (800 bytes)"), "{s}");
        assert_eq!(
            summarize(&[0xff, 0xfe, 0]).as_deref(),
            Some("<3 bytes of binary data>")
        );
    }

    #[test]
    fn plan_record_hides_credentials() {
        let url = Url::parse("https://api.example.com/routes").unwrap();
        let headers = vec![
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("X-API-KEY".to_owned(), "k".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        let PlannedChange::Http {
            headers,
            body_json,
            body_bytes,
            ..
        } = record(&reqwest::Method::PUT, &url, &headers, br#"{"uri":"/x"}"#)
        else {
            panic!("not an http change")
        };
        assert_eq!(headers[0].1, "***");
        assert_eq!(headers[1].1, "***");
        assert_eq!(headers[2].1, "application/json");
        assert_eq!(body_json, Some(serde_json::json!({"uri": "/x"})));
        assert_eq!(body_bytes, 12);
    }
}
