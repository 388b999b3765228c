//! Plain data crossing the sandbox boundary: what the engine asks for ([`Call`]) and what it gets
//! back ([`Outcome`], [`Report`], [`Manifest`]). Everything here is serde-serialisable so the
//! engine can journal it as is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use meridian_protocol::{Action, GrantRequest, LogLine, Mode, PlannedChange};

use crate::caps::Capabilities;

/// Identity and input of one invocation; mirrors the WIT `invocation` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The workflow run.
    pub run_id: String,
    /// The step id (with a matrix suffix, if any).
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across attempts and resumes of this step in this run.
    pub idempotency_key: String,
    /// Apply or plan.
    pub mode: Mode,
    /// The evaluated `with:` as JSON.
    pub input: serde_json::Value,
}

/// One invocation request: which export, with what input, under which grants and limits.
#[derive(Debug, Clone)]
pub struct Call {
    /// `run` or `compensate`.
    pub action: Action,
    /// Identity and input.
    pub invocation: Invocation,
    /// What the step may touch. Deny-by-default: [`Capabilities::default`] grants nothing.
    pub caps: Capabilities,
    /// Wall-clock limit for instantiation plus the call, host calls included.
    pub timeout: Duration,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_limit: u64,
    /// Cap on the output JSON text, in bytes.
    pub output_limit: u64,
    /// Cap on the host handles the guest holds at once (its resource table: open files and
    /// directories, streams, …).
    pub handle_limit: u32,
}

impl Call {
    /// Default timeout: one minute.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default memory cap: 128 MiB.
    pub const DEFAULT_MEMORY_LIMIT: u64 = 128 << 20;
    /// Default output cap: 1 MiB.
    pub const DEFAULT_OUTPUT_LIMIT: u64 = 1 << 20;
    /// Default handle cap: 256.
    pub const DEFAULT_HANDLE_LIMIT: u32 = 256;

    /// A `run` call with default limits and the given capabilities.
    pub fn run(invocation: Invocation, caps: Capabilities) -> Self {
        Self {
            action: Action::Run,
            invocation,
            caps,
            timeout: Self::DEFAULT_TIMEOUT,
            memory_limit: Self::DEFAULT_MEMORY_LIMIT,
            output_limit: Self::DEFAULT_OUTPUT_LIMIT,
            handle_limit: Self::DEFAULT_HANDLE_LIMIT,
        }
    }

    /// A `compensate` call with default limits.
    pub fn compensate(invocation: Invocation, caps: Capabilities) -> Self {
        Self {
            action: Action::Compensate,
            ..Self::run(invocation, caps)
        }
    }
}

/// What a successful invocation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The step's output (`null` for `compensate`).
    pub output: serde_json::Value,
    /// Changes recorded in plan mode (empty in apply mode).
    pub plan: Vec<PlannedChange>,
    /// Log lines, in order.
    pub logs: Vec<LogLine>,
}

/// Everything an invocation produced, success or not: failed steps have logs too.
#[derive(Debug)]
pub struct Report {
    /// The output, or why there is none.
    pub result: Result<serde_json::Value, crate::StepFailure>,
    /// Changes recorded in plan mode.
    pub plan: Vec<PlannedChange>,
    /// Log lines, in order (guest log, then stdout, then stderr, then host notes).
    pub logs: Vec<LogLine>,
    /// Wall time of instantiation plus the call.
    pub elapsed: Duration,
}

impl Report {
    /// The success/failure view used by most callers.
    pub fn into_outcome(self) -> Result<Outcome, crate::StepFailure> {
        let Report {
            result, plan, logs, ..
        } = self;
        result.map(|output| Outcome { output, plan, logs })
    }
}

/// What a step says about itself (`describe`), with the schemas parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Step name.
    pub name: String,
    /// Step version.
    pub version: String,
    /// Description for operators.
    pub description: String,
    /// JSON Schema of `with:`.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the outputs.
    pub output_schema: serde_json::Value,
    /// Capabilities it needs.
    pub needs: Vec<GrantRequest>,
    /// Meaningful in plan mode.
    pub supports_plan: bool,
    /// `compensate` undoes `run`.
    pub supports_compensate: bool,
}
