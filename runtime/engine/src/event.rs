//! What happens during a run, as a stream of events. The live terminal view, `--json` output and
//! the durable journal are all consumers of this one stream.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use crate::executor::{Action, Mode, StepError};

/// How a step (or one matrix leg of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Skipped,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Stopped before a step that needs approval; nothing hangs. Resume with `--approve STEP`.
    AwaitingApproval,
    TimedOut,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::TimedOut => "timed-out",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// One thing that happened. Strings that could hold secrets are masked before an event is emitted.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        workflow: String,
        mode: Mode,
        inputs: Json,
    },
    /// A step's condition was false, or a dependency did not succeed.
    StepSkipped {
        step: String,
        reason: String,
    },
    ApprovalGranted {
        step: String,
        by: String,
    },
    ApprovalRequired {
        step: String,
        message: String,
    },
    AttemptStarted {
        step: String,
        leg: String,
        attempt: u32,
        idempotency_key: String,
        input: Json,
    },
    AttemptFailed {
        step: String,
        leg: String,
        attempt: u32,
        error: StepError,
        #[serde(skip_serializing_if = "Option::is_none", with = "opt_ms")]
        retry_in: Option<Duration>,
    },
    LegFinished {
        step: String,
        leg: String,
        outcome: Outcome,
        attempts: u32,
        #[serde(with = "ms")]
        duration: Duration,
        output: Json,
        plan: Vec<Json>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    StepFinished {
        step: String,
        outcome: Outcome,
    },
    Compensation {
        step: String,
        leg: String,
        action: Action,
        outcome: Outcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    RunFinished {
        status: RunStatus,
        #[serde(with = "ms")]
        duration: Duration,
        message: String,
    },
}

mod ms {
    use std::time::Duration;
    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod opt_ms {
    use std::time::Duration;
    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }
}

/// Receives every event, in order, before the engine goes on. A durable journal commits here, so a
/// step's dependents never start before its result is on disk.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event) -> Result<(), SinkError>;
}

/// A sink failed (e.g. the journal's disk is full). The run stops: carrying on unjournaled would
/// break the promise that a killed runner can resume.
#[derive(Debug, thiserror::Error)]
#[error("event sink failed: {0}")]
pub struct SinkError(pub String);

/// Fans one event out to several sinks.
impl<T: EventSink + ?Sized> EventSink for Vec<std::sync::Arc<T>> {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        for s in self {
            s.emit(event)?;
        }
        Ok(())
    }
}
