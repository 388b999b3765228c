//! The boundary between the engine and whatever runs a step (the Wasm sandbox in production, plain
//! Rust closures in the engine's own tests).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_model::{HttpLimits, Limits};
use serde::Serialize;
use serde_json::Value as Json;

/// Which export of the step to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Run,
    Compensate,
}

/// Apply does the work; plan asks the sandbox to record mutations instead of performing them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Apply,
    Plan,
}

/// Everything a step is allowed to reach, with names already resolved to values.
#[derive(Clone, Debug, Default)]
pub struct ResolvedGrants {
    /// `scheme://host[:port]` patterns, `*` wildcards allowed.
    pub http: Vec<String>,
    pub http_limits: HttpLimits,
    /// Connection name → DSN (templates evaluated, secrets substituted).
    pub sql: BTreeMap<String, String>,
    /// Preopens with absolute host paths.
    pub fs: Vec<FsPreopen>,
    /// Granted secret name → value.
    pub secrets: BTreeMap<String, String>,
    /// The DNS server host names resolve through (`grants.dns`), evaluated.
    pub dns: Option<std::net::SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsPreopen {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// One call of one step attempt.
#[derive(Clone, Debug)]
pub struct StepRequest {
    pub run_id: String,
    /// The step id, with the matrix leg in brackets for matrix steps: `deploy[eu]`.
    pub step_id: String,
    /// The component reference from `uses:` (or `compensate.uses`).
    pub uses: String,
    pub action: Action,
    pub mode: Mode,
    /// `with:` evaluated.
    pub input: Json,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The same for every attempt and every resume of this leg in this run.
    pub idempotency_key: String,
    pub grants: ResolvedGrants,
    pub limits: Limits,
    /// The step's attempt timeout; the executor should enforce it itself (the engine also does,
    /// with a grace period, as a backstop).
    pub timeout: Duration,
    /// Every secret value of the run, for masking whatever the step prints or returns.
    pub mask: Vec<String>,
}

/// What a successful attempt produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepResult {
    pub output: Json,
    /// Intended changes recorded in plan mode (HTTP requests not sent, SQL not run, …).
    pub plan: Vec<Json>,
    /// Log lines the step wrote (already masked).
    pub logs: Vec<String>,
}

/// Why an attempt failed. The engine's retry policy decides what happens next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum StepError {
    /// Transient; retried when the step's retry policy allows.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Permanent (includes traps, memory exhaustion, output too large).
    #[error("{0}")]
    Fatal(String),
    /// The step rejected its inputs.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The attempt ran past its timeout.
    #[error("timed out after {}", meridian_model::duration::format_duration(*.0))]
    Timeout(#[serde(with = "duration_ms")] Duration),
    /// The run was cancelled (fail-fast, run timeout, shutdown) while the attempt ran.
    #[error("cancelled")]
    Cancelled,
}

mod duration_ms {
    use std::time::Duration;
    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Runs steps. Implementations must be cheap to call concurrently.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, StepError>>;

    /// Called once per leg before its first attempt, outside the attempt's timeout: the place
    /// for one-time work such as compiling the step's component, so that a cold cache does not
    /// eat into a step's `timeout:`. The default does nothing.
    fn prepare(&self, uses: &str) -> BoxFuture<'static, Result<(), StepError>> {
        let _ = uses;
        Box::pin(async { Ok(()) })
    }
}
