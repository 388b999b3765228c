//! What happens during a run, as a stream of events. The live terminal view, `--json` output and
//! the durable journals are all consumers of this one stream, and a journaled event reads back
//! as the same typed [`Event`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::duration::{ms, opt_ms};
use crate::{Action, Mode, PlannedChange, StepError};

/// How a step (or one matrix leg of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "skipped" => Outcome::Skipped,
            "cancelled" => Outcome::Cancelled,
            other => return Err(format!("unknown outcome `{other}`")),
        })
    }
}

/// How a run ended (or that it is still going).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Started and not finished: in progress, or interrupted (a killed runner) and resumable.
    Running,
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
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::TimedOut => "timed-out",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has ended (every status but `running`).
    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "awaiting-approval" => RunStatus::AwaitingApproval,
            "timed-out" => RunStatus::TimedOut,
            "cancelled" => RunStatus::Cancelled,
            other => return Err(format!("unknown run status `{other}`")),
        })
    }
}

/// One thing that happened. Strings that could hold secrets are masked before an event is emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ms")]
        retry_in: Option<Duration>,
    },
    LegFinished {
        step: String,
        leg: String,
        outcome: Outcome,
        attempts: u32,
        /// From the first attempt's start to the end of the last one: time queued behind
        /// `max-parallel` or the run's parallelism is not included, nor is preparing the step.
        /// Waits between retries are: they are part of the leg's own work (the live view counts
        /// them too). A leg that ended before its first attempt (cancelled while queued, or its
        /// step failed to prepare) took zero.
        #[serde(with = "ms")]
        duration: Duration,
        output: Json,
        plan: Vec<PlannedChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    RunFinished {
        status: RunStatus,
        #[serde(with = "ms")]
        duration: Duration,
        message: String,
    },
}

impl Event {
    /// The event's name as serialised (`leg-finished`, …): the journals' `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run-started",
            Event::StepSkipped { .. } => "step-skipped",
            Event::ApprovalGranted { .. } => "approval-granted",
            Event::ApprovalRequired { .. } => "approval-required",
            Event::AttemptStarted { .. } => "attempt-started",
            Event::AttemptFailed { .. } => "attempt-failed",
            Event::LegFinished { .. } => "leg-finished",
            Event::StepFinished { .. } => "step-finished",
            Event::Compensation { .. } => "compensation",
            Event::RunFinished { .. } => "run-finished",
        }
    }

    /// The step the event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::RunStarted { .. } | Event::RunFinished { .. } => None,
            Event::StepSkipped { step, .. }
            | Event::ApprovalGranted { step, .. }
            | Event::ApprovalRequired { step, .. }
            | Event::AttemptStarted { step, .. }
            | Event::AttemptFailed { step, .. }
            | Event::LegFinished { step, .. }
            | Event::StepFinished { step, .. }
            | Event::Compensation { step, .. } => Some(step),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_and_names_its_kind() {
        let events = vec![
            Event::RunStarted {
                run_id: "r".into(),
                workflow: "w".into(),
                mode: Mode::Plan,
                inputs: serde_json::json!({"a": 1}),
            },
            Event::AttemptFailed {
                step: "s".into(),
                leg: "eu".into(),
                attempt: 2,
                error: StepError::Timeout(Duration::from_millis(20)),
                retry_in: Some(Duration::from_millis(7)),
            },
            Event::LegFinished {
                step: "s".into(),
                leg: String::new(),
                outcome: Outcome::Failure,
                attempts: 3,
                duration: Duration::from_millis(12),
                output: Json::Null,
                plan: vec![PlannedChange::Sql {
                    connection: "db".into(),
                    statement: "DELETE FROM t".into(),
                    params: vec![],
                    reason: "writes".into(),
                }],
                error: Some(StepError::Fatal("boom".into())),
            },
            Event::RunFinished {
                status: RunStatus::AwaitingApproval,
                duration: Duration::from_millis(5),
                message: "m".into(),
            },
        ];
        for e in events {
            let j = serde_json::to_value(&e).unwrap();
            assert_eq!(j["event"], e.kind());
            assert_eq!(j.get("step").and_then(Json::as_str), e.step());
            assert_eq!(serde_json::from_value::<Event>(j).unwrap(), e);
        }
    }

    #[test]
    fn statuses_parse_back() {
        for s in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::AwaitingApproval,
            RunStatus::TimedOut,
            RunStatus::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert!("done".parse::<RunStatus>().is_err());
    }
}
