//! `--server URL`: the CLI against a `meridian serve` over its HTTP API, so an operator lists,
//! shows, approves and triggers from a laptop. The token comes from `MERIDIAN_TOKEN`.
//!
//! Reading goes through [`RemoteJournal`], a read-only [`Journal`] over the API, so `runs list`
//! and `runs show` print a served run exactly as they print a local one.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::KvStore;
use meridian_protocol::kv::MemoryKv;
use meridian_store::{EventRecord, Journal, LegRecord, RunRecord, RunSummary, StoreError};
use serde_json::{Value as Json, json};

use crate::{Exit, exit};

/// The environment variable holding the bearer token for `--server`.
pub const TOKEN_ENV: &str = "MERIDIAN_TOKEN";

/// A server's API, called synchronously (the CLI's commands are short and sequential).
#[derive(Clone)]
pub struct Remote {
    base: String,
    token: Option<String>,
}

impl Remote {
    pub fn new(url: &str) -> anyhow::Result<Remote> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Exit::invalid(format!(
                "error: --server `{url}`: give the server's base URL, e.g. http://127.0.0.1:8080"
            )));
        }
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        })
    }

    /// One request; the server's error message on a non-2xx answer.
    pub fn call(&self, method: &str, path: &str, body: Option<Json>) -> Result<Json, String> {
        let url = format!("{}{path}", self.base);
        let token = self.token.clone();
        let method: reqwest::Method = method.parse().map_err(|_| "bad method".to_string())?;
        // On a thread of its own with its own runtime: the CLI's runtime is single-threaded
        // and its thread is the caller's.
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async move {
                        let client = reqwest::Client::builder()
                            .timeout(Duration::from_secs(30))
                            .build()
                            .map_err(|e| e.to_string())?;
                        let mut req = client.request(method, &url);
                        if let Some(t) = token {
                            req = req.bearer_auth(t);
                        }
                        if let Some(b) = body {
                            req = req.json(&b);
                        }
                        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                        let status = resp.status();
                        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
                        let json: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
                        if status.is_success() {
                            return Ok(json);
                        }
                        let msg = json["error"]["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| json.to_string());
                        let hint = match status.as_u16() {
                            401 => format!(" (set {TOKEN_ENV} to a token the server knows)"),
                            _ => String::new(),
                        };
                        Err(format!("{url}: {status}: {msg}{hint}"))
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("the request thread panicked".into()))
        })
    }
}

/// A read-only journal over a server's API.
pub struct RemoteJournal(pub Remote);

fn backend(e: String) -> StoreError {
    StoreError::Backend(e)
}

fn not_here(what: &str) -> StoreError {
    StoreError::Backend(format!(
        "{what} is not available through --server; run it on the server's machine"
    ))
}

fn field<T: serde::de::DeserializeOwned>(v: &Json, key: &str) -> Result<T, StoreError> {
    serde_json::from_value(v[key].clone())
        .map_err(|e| backend(format!("the server's answer has no readable `{key}`: {e}")))
}

impl RemoteJournal {
    fn get(&self, path: &str, run: Option<&str>) -> Result<Json, StoreError> {
        self.0.call("GET", path, None).map_err(|e| match run {
            Some(id) if e.contains(" 404 ") => StoreError::NoSuchRun(id.to_string()),
            _ => backend(e),
        })
    }
}

impl Journal for RemoteJournal {
    fn describe(&self) -> String {
        format!("the server at {}", self.0.base)
    }
    fn create_run(&self, _: &RunRecord) -> Result<(), StoreError> {
        Err(not_here("starting a run this way"))
    }
    fn reopen_run(&self, _: &str) -> Result<(), StoreError> {
        Err(not_here("resuming"))
    }
    fn forget_legs(&self, _: &str, _: &[String]) -> Result<(), StoreError> {
        Err(not_here("retrying"))
    }
    fn sink(&self, _: &str) -> Result<Arc<dyn meridian_protocol::EventSink>, StoreError> {
        Err(not_here("running steps"))
    }
    fn kv(&self, _: &str) -> Arc<dyn KvStore> {
        Arc::new(MemoryKv::default())
    }
    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let v = self.get(&format!("/api/v1/runs?limit={}", limit.min(500)), None)?;
        field(&v, "runs")
    }
    fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError> {
        let v = self.get(&format!("/api/v1/runs/{id}"), Some(id))?;
        Ok((field(&v, "run")?, field(&v, "summary")?))
    }
    fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let v = self.get(&format!("/api/v1/runs/{id}/events"), Some(id))?;
        field(&v, "events")
    }
    fn legs(&self, id: &str) -> Result<Vec<LegRecord>, StoreError> {
        let v = self.get(&format!("/api/v1/runs/{id}"), Some(id))?;
        field(&v, "legs")
    }
    fn approvals(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .events(id)?
            .into_iter()
            .filter_map(|e| match e.event {
                meridian_protocol::Event::ApprovalGranted { step, by } => Some((step, by)),
                _ => None,
            })
            .collect())
    }
    fn claim_tick(&self, _: &str, _: i64, _: &str) -> Result<bool, StoreError> {
        Err(not_here("firing schedules"))
    }
    fn claim_key(
        &self,
        _: &str,
        _: &meridian_store::KeyClaim,
        _: Duration,
    ) -> Result<Option<meridian_store::KeyClaim>, StoreError> {
        Err(not_here("claiming idempotency keys"))
    }
    fn release_key(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(not_here("claiming idempotency keys"))
    }
    fn request_cancel(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(not_here("cancelling runs"))
    }
    fn cancel_requests(&self, _: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        Err(not_here("cancelling runs"))
    }
    fn prune(&self, _: Duration) -> Result<usize, StoreError> {
        Err(not_here("pruning"))
    }
}

/// `meridian approve RUN STEP [--reject] [--comment TEXT] --server URL`.
pub fn approve(
    server: Option<&str>,
    run: &str,
    step: &str,
    reject: bool,
    comment: Option<String>,
) -> anyhow::Result<u8> {
    let local = if reject { "--reject" } else { "--approve" };
    let remote = need_server(
        server,
        &format!("for a run on this machine: `meridian resume {run} {local} {step}`"),
    )?;
    let decision = if reject { "reject" } else { "approve" };
    let v = remote
        .call(
            "POST",
            &format!("/api/v1/runs/{run}/approvals/{step}"),
            Some(json!({"decision": decision, "comment": comment.unwrap_or_default()})),
        )
        .map_err(fail)?;
    crate::out::outln!(
        "{} step `{step}` of run {run} as {}; the run resumes on the server",
        if reject { "rejected" } else { "approved" },
        v["by"].as_str().unwrap_or("?")
    )?;
    Ok(exit::OK)
}

/// `meridian cancel RUN --server URL [--reason TEXT]`: the API's cancel, which answers with the
/// run's end (or `cancelling` when its compensation takes longer).
pub fn cancel(server: Option<&str>, run: &str, reason: Option<String>) -> anyhow::Result<u8> {
    let remote = need_server(
        server,
        &format!(
            "a run on this machine stops with Ctrl-C (or SIGTERM) where it is driven; one waiting at a gate: `meridian resume {run} --reject STEP`"
        ),
    )?;
    let body = reason.map(|r| json!({ "reason": r }));
    let v = remote
        .call("POST", &format!("/api/v1/runs/{run}/cancel"), body)
        .map_err(fail)?;
    let status = v["status"].as_str().unwrap_or("?");
    let message =
        meridian_protocol::text::for_terminal(v["message"].as_str().unwrap_or_default(), "  ")
            .into_owned();
    match status {
        "cancelling" | "cancel-requested" => {
            crate::out::outln!("cancelling run {run}: {message}")?;
        }
        _ => crate::out::outln!("run {run} {status}: {message}")?,
    }
    Ok(exit::OK)
}

/// `meridian trigger SCHEDULE --server URL`.
pub fn trigger(server: Option<&str>, schedule: &str) -> anyhow::Result<u8> {
    let remote = need_server(server, "schedules fire only under `meridian serve`")?;
    let path = format!("/api/v1/schedules/{}/trigger", schedule.replace('#', "%23"));
    let v = remote.call("POST", &path, None).map_err(fail)?;
    match v["started_run"].as_str() {
        Some(run) => {
            crate::out::outln!("fired schedule {schedule}: started run {run}")?;
            Ok(exit::OK)
        }
        // Skipped or queued under its overlap policy: said, not "fired".
        None => {
            crate::out::outln!(
                "schedule {schedule} started no run: {}",
                crate::commands::safe(v["last_result"].as_str().unwrap_or("-"))
            )?;
            Ok(exit::FAILED)
        }
    }
}

fn need_server(server: Option<&str>, hint: &str) -> anyhow::Result<Remote> {
    match server {
        Some(url) => Remote::new(url),
        None => Err(Exit::invalid(format!(
            "error: this talks to a server: give --server URL (or MERIDIAN_SERVER); {hint}"
        ))),
    }
}

// Taken by value: used as `map_err(fail)` over `Result<_, String>`.
#[allow(clippy::needless_pass_by_value)]
fn fail(msg: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: exit::FAILED,
        message: format!("error: {msg}"),
    })
}
