//! What a run returns: a report per step and per leg, and the compensations made.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use crate::event::{Outcome, RunStatus};
use crate::executor::{Mode, StepError};
use meridian_protocol::PlannedChange;

/// One leg (the only one for a step without a matrix).
#[derive(Clone, Debug, Serialize)]
pub struct LegReport {
    /// `""` without a matrix, else the leg's matrix values joined by `,`.
    pub key: String,
    pub matrix: Json,
    pub outcome: Outcome,
    pub attempts: u32,
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    pub output: Json,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Taken from the journal of an earlier invocation instead of being run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

impl LegReport {
    /// A leg its step's `if:` left out: it did not run and has no output.
    pub(super) fn skipped(key: String, matrix: Json) -> Self {
        LegReport {
            key,
            matrix,
            outcome: Outcome::Skipped,
            attempts: 0,
            duration: Duration::ZERO,
            output: Json::Null,
            plan: vec![],
            error: None,
            reused: false,
        }
    }

    /// A leg that ended without output: cancelled when `error` is `Cancelled`, else failed.
    pub(super) fn ended(
        key: String,
        matrix: Json,
        attempts: u32,
        duration: Duration,
        error: StepError,
    ) -> Self {
        LegReport {
            key,
            matrix,
            outcome: if error == StepError::Cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Failure
            },
            attempts,
            duration,
            output: Json::Null,
            plan: vec![],
            error: Some(error),
            reused: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub outcome: Outcome,
    /// `success` also for a failed step with `continue-on-error`.
    pub conclusion: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub legs: Vec<LegReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompensationReport {
    pub step: String,
    pub leg: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub mode: Mode,
    pub status: RunStatus,
    pub message: String,
    /// From the run's first start to its end: for a resumed run, the time it stood still
    /// between (at a gate, or killed) included.
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// A resumed run: how long this resume took.
    #[serde(
        rename = "resumed_ms",
        serialize_with = "ser_opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub resumed: Option<Duration>,
    /// In file order; steps that never became ready are absent.
    pub steps: Vec<StepReport>,
    pub compensations: Vec<CompensationReport>,
}

impl RunReport {
    pub fn step(&self, id: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.id == id)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[allow(clippy::ref_option)] // serde's `serialize_with` hands over a reference to the field
fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}
