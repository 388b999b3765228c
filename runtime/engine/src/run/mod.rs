//! The scheduler: runs a workflow's DAG with bounded parallelism, conditions, matrices, retries,
//! timeouts, fail-fast cancellation, approvals and compensation.
//!
//! The private modules follow the run's seams: `runner` drives the DAG and finishes steps, `start`
//! starts one step (its condition, approval and matrix legs), `leg` runs one leg's attempts,
//! `context` builds what expressions see, `grants` resolves a step's grants, `compensation` undoes
//! completed legs after a failure, and `report` holds what a run returns.

mod compensation;
mod context;
mod grants;
mod leg;
mod report;
mod runner;
mod start;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_model::Workflow;
use serde_json::{Map, Value as Json};

use crate::event::{EventSink, Outcome};
use crate::executor::{Executor, Mode};
use meridian_protocol::PlannedChange;
pub use meridian_protocol::display_id;
pub use report::{CompensationReport, LegReport, RunReport, StepReport};
use runner::Runner;
pub use runner::base_context;

/// Default attempt timeout of a step without `timeout:`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// Who passed a gate in plan mode (the `by` of its `approval-granted` event): a plan does not
/// stop at a gate, a run waits there.
pub const PLAN_PASSES_GATES: &str = "plan mode: a run waits here for approval";

/// Asks a human whether a gated step may run (an interactive prompt on a terminal).
pub trait Approver: Send + Sync {
    fn ask(&self, step: &str, message: &str) -> BoxFuture<'static, bool>;
}

/// A leg finished in an earlier invocation of the same run (from the journal): it is not run again.
#[derive(Clone, Debug)]
pub struct PriorLeg {
    pub outcome: Outcome,
    pub attempts: u32,
    pub output: Json,
    pub plan: Vec<PlannedChange>,
    pub duration: Duration,
    /// Why it failed, for a failure kept under `continue-on-error`.
    pub error: Option<crate::StepError>,
}

/// The attempts of a leg that had not finished, begun in earlier invocations of the same run
/// (from the journal): the leg's attempts go on from them, and its failed ones count against
/// its retries (an attempt the runner died in did not fail, and does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EarlierAttempts {
    /// The highest attempt number begun.
    pub last: u32,
    /// How many of them failed.
    pub failed: u32,
}

impl EarlierAttempts {
    /// The number the leg's next attempt takes: an attempt the runner died in goes on under
    /// its own number (a queue re-attaches to it; in process it runs again, with the same
    /// idempotency key), after a failed one comes the next.
    pub fn next(&self) -> u32 {
        if self.failed < self.last {
            self.last
        } else {
            self.last + 1
        }
    }
}

/// Stops a run from outside (an operator's cancel): no step starts any more, the legs in flight
/// are cancelled (their attempts dropped, as at a timeout; what an attempt logged until then is
/// journaled, from its [`LogTap`](meridian_protocol::LogTap)), what completed is compensated,
/// and the run ends `cancelled` saying why. Cancelled before the run starts (a run
/// waiting at a gate, resumed to be cancelled), the steps that finished before are replayed
/// from the journal, so they are compensated too, and nothing else runs.
#[derive(Clone, Debug, Default)]
pub struct RunCancel {
    token: tokio_util::sync::CancellationToken,
    why: Arc<std::sync::Mutex<Option<String>>>,
}

impl RunCancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run; the first reason given is the run's message.
    pub fn cancel(&self, why: &str) {
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| why.to_string());
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    pub(crate) async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    pub(crate) fn why(&self) -> String {
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "cancelled".to_string())
    }
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    pub run_id: String,
    pub mode: Mode,
    /// Inputs already typed (see [`crate::inputs::resolve`]).
    pub inputs: Map<String, Json>,
    /// Every secret the workflow declares, name → value.
    pub secrets: BTreeMap<String, String>,
    /// Legs running at once, across the whole run (≥ 1).
    pub max_parallel: usize,
    /// Steps approved up front, step → who approved (`--approve STEP`, an API token's name):
    /// journaled in the step's `approval-granted` event.
    pub approvals: BTreeMap<String, String>,
    /// Steps whose approval was refused, step → (who, comment): each fails without running,
    /// after an `approval-rejected` event.
    pub rejections: BTreeMap<String, (String, String)>,
    pub approver: Option<Arc<dyn Approver>>,
    pub sink: Option<Arc<dyn EventSink>>,
    /// Legs already finished, keyed by (step id, leg key).
    pub prior: HashMap<(String, String), PriorLeg>,
    /// Attempts begun earlier of legs that had not finished, keyed by (step id, leg key).
    pub earlier: HashMap<(String, String), EarlierAttempts>,
    /// A resume of a run that stopped at an approval gate: a step that failed in it stays
    /// failed (its failed legs stand, whatever its `if:` says now; its other unfinished legs
    /// end cancelled) and the run starts failed. Approving the gate carries the run on into its
    /// failure path (`if: always()` / `failure()` steps, then compensation); it does not retry
    /// what failed (`retry --from` does). Otherwise a failed leg runs again on resume.
    pub keep_failures: bool,
    /// A failed leg cancels nothing (not even its matrix's other legs, whatever `fail-fast`
    /// says): every leg in flight ends on its own. For plans that read every region (drift, readiness), where one
    /// region that cannot be read must not hide the others' answers.
    pub keep_going: bool,
    /// Overrides the workflow's `timeout:`.
    pub run_timeout: Option<Duration>,
    /// When the run was first started, Unix ms (`run.started_at_ms`; kept across resumes).
    pub started_at_ms: u64,
    /// See [`RunCancel`].
    pub cancel: RunCancel,
}

impl RunOptions {
    pub fn new(run_id: impl Into<String>) -> Self {
        RunOptions {
            run_id: run_id.into(),
            mode: Mode::Apply,
            inputs: Map::new(),
            secrets: BTreeMap::new(),
            max_parallel: 4,
            approvals: BTreeMap::new(),
            rejections: BTreeMap::new(),
            approver: None,
            sink: None,
            prior: HashMap::new(),
            earlier: HashMap::new(),
            keep_failures: false,
            keep_going: false,
            run_timeout: None,
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            cancel: RunCancel::default(),
        }
    }
}

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Sink(#[from] crate::event::SinkError),
    #[error("vars.{name}: {message}")]
    Var { name: String, message: String },
}

/// Runs `wf` to the end and reports. Errors only when the run cannot start or its event sink fails.
pub async fn run(
    wf: Arc<Workflow>,
    exec: Arc<dyn Executor>,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    Runner::new(wf, exec, opts)?.run().await
}
