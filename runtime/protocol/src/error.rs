//! Why a step attempt failed, in the kinds the engine's retry policy acts on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why an attempt failed. The engine's retry policy decides what happens next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
    #[error(
        "timed out after {} (the step's `timeout:`; raise it if the step needs longer)",
        crate::duration::format_duration(*.0)
    )]
    Timeout(#[serde(with = "crate::duration::ms")] Duration),
    /// The run was cancelled (fail-fast, run timeout, shutdown) while the attempt ran.
    #[error("cancelled")]
    Cancelled,
}

impl StepError {
    /// The kind as journaled: `retryable`, `fatal`, `invalid-input`, `timeout`, `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Retryable(_) => "retryable",
            StepError::Fatal(_) => "fatal",
            StepError::InvalidInput(_) => "invalid-input",
            StepError::Timeout(_) => "timeout",
            StepError::Cancelled => "cancelled",
        }
    }

    /// The same error with its text passed through `f` (masking, sanitising).
    pub fn map_text(self, f: impl FnOnce(String) -> String) -> StepError {
        match self {
            StepError::Retryable(m) => StepError::Retryable(f(m)),
            StepError::Fatal(m) => StepError::Fatal(f(m)),
            StepError::InvalidInput(m) => StepError::InvalidInput(f(m)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        for e in [
            StepError::Retryable("r".into()),
            StepError::Fatal("f".into()),
            StepError::InvalidInput("i".into()),
            StepError::Timeout(Duration::from_millis(1500)),
            StepError::Cancelled,
        ] {
            let j = serde_json::to_value(&e).unwrap();
            assert_eq!(j["kind"], e.kind());
            assert_eq!(serde_json::from_value::<StepError>(j).unwrap(), e);
        }
        assert_eq!(
            StepError::Timeout(Duration::from_millis(1500)).to_string(),
            "timed out after 1s500ms (the step's `timeout:`; raise it if the step needs longer)"
        );
    }
}
