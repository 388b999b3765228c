//! The boundary between the engine and whatever runs a step (the Wasm sandbox in production, plain
//! Rust closures in the engine's own tests).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_model::{HttpLimits, Limits};
pub use meridian_protocol::{Action, Mode, StepError};
use meridian_protocol::{ComponentRef, LogLine, LogTap, OriginPattern, PlannedChange};
use serde_json::Value as Json;

/// Everything a step is allowed to reach, with names already resolved to values.
#[derive(Clone, Debug, Default)]
pub struct ResolvedGrants {
    /// The origins the step may reach: connections and expressions already resolved.
    pub http: Vec<OriginPattern>,
    pub http_limits: HttpLimits,
    /// Connection name → DSN (templates evaluated, secrets substituted).
    pub sql: BTreeMap<String, String>,
    /// Preopens with absolute host paths.
    pub fs: Vec<FsPreopen>,
    /// Granted secret name → value.
    pub secrets: BTreeMap<String, String>,
    /// The DNS server host names resolve through (`grants.dns`), evaluated.
    pub dns: Option<std::net::SocketAddr>,
    /// Shared kv namespaces (`grants.kv`); every other key is the step's own.
    pub kv: Vec<String>,
}

impl ResolvedGrants {
    /// Whether a step holding these grants can change something outside the run: send a
    /// request, run SQL, write a file (in apply mode; plan mode records instead). A step that
    /// cannot only computes, and may start before the results it reads are durable (see
    /// `EventSink::durable`).
    pub fn can_act(&self) -> bool {
        !self.http.is_empty() || !self.sql.is_empty() || self.fs.iter().any(|f| f.writable)
    }
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
    /// The component from `uses:` (or `compensate.uses`); a path is absolute.
    pub uses: ComponentRef,
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
    /// Where the attempt's log lines may go as they are written (the engine gives each attempt
    /// its own): the lines an attempt wrote before the engine dropped it (a cancel, the
    /// engine's timeout) are taken from here. An executor that returns every line in its
    /// result may ignore it.
    pub log: LogTap,
}

/// What a successful attempt produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepResult {
    pub output: Json,
    /// Intended changes recorded in plan mode (HTTP requests not sent, SQL not run, …).
    pub plan: Vec<PlannedChange>,
    /// Log lines the step wrote (already masked).
    pub logs: Vec<LogLine>,
}

/// What a failed attempt produced: why it failed, and what it logged until then (already masked)
/// — for a failed step, its logs are what an operator reads first.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptError {
    pub error: StepError,
    pub logs: Vec<LogLine>,
}

impl From<StepError> for AttemptError {
    fn from(error: StepError) -> Self {
        AttemptError {
            error,
            logs: Vec::new(),
        }
    }
}

/// Runs steps. Implementations must be cheap to call concurrently.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>>;

    /// Called once per leg before its first attempt, outside the attempt's timeout: the place
    /// for one-time work such as compiling the step's component, so that a cold cache does not
    /// eat into a step's `timeout:`. The default does nothing.
    fn prepare(&self, uses: &ComponentRef) -> BoxFuture<'static, Result<(), StepError>> {
        let _ = uses;
        Box::pin(async { Ok(()) })
    }

    /// Called when a run ends: finishes what the executor still owes for attempts the engine
    /// gave up on (timed out, cancelled) — a queue's cancellation of their tasks — before the
    /// run is reported ended and the process may exit. The default does nothing.
    fn settle(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// Run `run_id` stops here, interrupted (Ctrl-C, SIGTERM): the executor cancels whatever it
    /// still runs or holds queued for it, so nothing of it goes on after the process has said
    /// it stopped — a queue's tasks included, running or not yet claimed. A resume runs the
    /// interrupted attempts again, under the same keys. Bounded in time; the default does
    /// nothing (an in-process executor's attempts end with the process).
    fn stop_run(&self, run_id: &str) -> BoxFuture<'static, ()> {
        let _ = run_id;
        Box::pin(async {})
    }

    /// Run `run_id` is driven by another coordinator now (it took the run's lease over): the
    /// attempts this process drops for it from now on must leave their work to that
    /// coordinator — a queue must not cancel tasks the other one re-attached to. The default
    /// does nothing (an in-process executor shares nothing).
    fn abandon(&self, run_id: &str) {
        let _ = run_id;
    }
}
