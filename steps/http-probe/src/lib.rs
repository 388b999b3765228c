//! `http-probe`: sends one request (GET by default) and checks the status. A mismatch is
//! retryable, so `retry:` on the step turns the probe into "wait until healthy". With
//! `consecutive: N` it passes only after N passing probes in a row, `interval_ms` apart, and
//! `at_ms` is when the first of them passed: a recovery that holds, not one lucky answer (a
//! DNS answer flapping back to the dead region made a drill's RTO seconds too short).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meridian_sdk::http::Request;
use meridian_sdk::{Ctx, Error, GrantKind, JsonSchema, Level, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs of `http-probe`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// URL to probe; must be covered by the step's `grants.http`.
    pub url: String,
    /// `GET` (default) or `HEAD`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Expected status codes; any of them passes.
    #[serde(default = "default_expect")]
    pub expect_status: Vec<u16>,
    /// Substring the body must contain, if set.
    #[serde(default)]
    pub expect_body_contains: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout in milliseconds (capped by the grant).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// How many body bytes to return in `body_snippet`.
    #[serde(default = "default_snippet")]
    pub snippet_bytes: usize,
    /// Passing probes needed in a row (each a fresh request and DNS lookup); any failing one
    /// fails the attempt (retryable). Default 1.
    #[serde(default = "default_consecutive")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive: u32,
    /// Milliseconds between the probes of `consecutive`.
    #[serde(default = "default_interval_ms")]
    #[schemars(range(max = 60000))]
    pub interval_ms: u32,
}

fn default_consecutive() -> u32 {
    1
}
fn default_interval_ms() -> u32 {
    250
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_expect() -> Vec<u16> {
    vec![200]
}
fn default_timeout_ms() -> u32 {
    5_000
}
fn default_snippet() -> usize {
    256
}

/// Outputs of `http-probe`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// Status received.
    pub status: u16,
    /// Time from sending to the full body, in milliseconds.
    pub latency_ms: u64,
    /// The first `snippet_bytes` of the body (lossy UTF-8).
    pub body_snippet: String,
    /// The address connected to, when the step resolves through a granted DNS server
    /// (`grants.dns`): which region the GSLB sent the probe to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// When the probe succeeded (with `consecutive`, the first of the passing run), Unix
    /// milliseconds (for measuring recovery times).
    pub at_ms: u64,
}

/// The step.
pub struct HttpProbe;

impl Step for HttpProbe {
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("http-probe", env!("CARGO_PKG_VERSION"))
            .description(
                "Sends one GET/HEAD request and checks the status (and optionally the body).",
            )
            .needs(GrantKind::Http, "the origin (scheme://host:port) of `url`")
    }

    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let method = input.method.to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            return Err(Error::invalid_input(format!(
                "with.method: `{}` is not GET or HEAD",
                input.method
            )));
        }
        if input.expect_status.is_empty() {
            return Err(Error::invalid_input(
                "with.expect_status: list at least one status",
            ));
        }
        let mut req = Request::new(method, &input.url)
            .timeout(Duration::from_millis(input.timeout_ms.into()));
        for (k, v) in &input.headers {
            req = req.header(k, v);
        }
        let mut first_at = None;
        for n in 1..=input.consecutive.max(1) {
            let out = probe(ctx, &input, &req).map_err(|e| {
                if n > 1 {
                    Error::retryable(format!(
                        "{} (probe {n} of {} in a row: it passed, then failed)",
                        e.message(),
                        input.consecutive
                    ))
                } else {
                    e
                }
            })?;
            let first = *first_at.get_or_insert(out.at_ms);
            if n == input.consecutive.max(1) {
                return Ok(Output {
                    at_ms: first,
                    ..out
                });
            }
            std::thread::sleep(Duration::from_millis(input.interval_ms.into()));
        }
        unreachable!("the loop returns at its last probe")
    }
}

/// One request and its checks.
fn probe(ctx: &Ctx, input: &Input, req: &Request) -> Result<Output, Error> {
    let started = Instant::now();
    let resp = ctx
        .http()
        .send(req)
        .map_err(|e| Error::from(e).context(format!("probing {}", input.url)))?;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let body = resp.text();
    let snippet: String = body.chars().take(input.snippet_bytes).collect();
    let status = resp.status;
    ctx.log.log(
        Level::Info,
        "probe",
        &[
            ("url", &input.url),
            ("status", &status.to_string()),
            ("latency_ms", &latency_ms.to_string()),
        ],
    );
    if !input.expect_status.contains(&status) {
        return Err(Error::retryable(format!(
            "{} answered {status}, expected one of {:?}: {snippet}",
            input.url, input.expect_status
        )));
    }
    if let Some(needle) = &input.expect_body_contains
        && !body.contains(needle.as_str())
    {
        return Err(Error::retryable(format!(
            "{} body does not contain `{needle}`: {snippet}",
            input.url
        )));
    }
    let remote_addr = resp
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-meridian-remote-addr"))
        .map(|(_, v)| v.clone());
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Ok(Output {
        status,
        latency_ms,
        body_snippet: snippet,
        remote_addr,
        at_ms,
    })
}

meridian_sdk::export_step!(HttpProbe);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_sdk::http::Response;
    use meridian_sdk::testing::MockHost;
    use meridian_sdk::{ErrorKind, Invocation, run_with};

    use super::HttpProbe;

    /// A host whose only URL is `url` (GET), answered with `status` and `body`.
    fn answering(url: &'static str, status: u16, body: &'static str) -> Arc<MockHost> {
        Arc::new(MockHost::new().http(move |req| {
            assert_eq!((req.method.as_str(), req.url.as_str()), ("GET", url));
            Ok(Response::new(status, body))
        }))
    }

    #[test]
    fn passes_on_expected_status() {
        let host = answering("http://gw/status/ready", 200, "ready");
        let inv = Invocation::for_test(
            &serde_json::json!({"url": "http://gw/status/ready", "snippet_bytes": 3}),
        );
        let out: serde_json::Value =
            serde_json::from_str(&run_with::<HttpProbe>(inv, host).unwrap()).unwrap();
        assert_eq!(out["status"], 200);
        assert_eq!(out["body_snippet"], "rea");
    }

    #[test]
    fn mismatch_is_retryable_and_bad_method_is_invalid() {
        let host = answering("http://gw/", 503, "down");
        let inv = Invocation::for_test(&serde_json::json!({"url": "http://gw/"}));
        assert_eq!(
            run_with::<HttpProbe>(inv, host.clone()).unwrap_err().kind(),
            ErrorKind::Retryable
        );
        let inv = Invocation::for_test(&serde_json::json!({"url": "http://gw/", "method": "POST"}));
        assert_eq!(
            run_with::<HttpProbe>(inv, host).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    /// `consecutive`: a probe that passes and then fails fails the attempt (a recovery that
    /// did not hold); N passing probes in a row pass, `at_ms` the first of them.
    #[test]
    fn consecutive_probes_must_all_pass() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let host = Arc::new(MockHost::new().http(move |_| {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Response::new(if n == 2 { 503 } else { 200 }, "ok"))
        }));
        let inv = Invocation::for_test(
            &serde_json::json!({"url": "http://gw/x", "consecutive": 3, "interval_ms": 1}),
        );
        let e = run_with::<HttpProbe>(inv.clone(), host.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Retryable);
        assert!(
            e.message().contains("probe 2 of 3 in a row"),
            "{}",
            e.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Calls 3, 4, 5 all pass.
        let out = run_with::<HttpProbe>(inv, host).unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["status"], 200);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}
