//! Why a step attempt failed, in the kinds the engine's retry policy acts on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why an attempt failed. The engine's retry policy decides what happens next.
///
/// As JSON (events, the API, webhooks): `{"kind": KIND, "message": TEXT}`, a timeout with
/// `timeout_ms` beside its text, `cancelled` with no message. (Journals written before kept a
/// timeout's milliseconds as its `message`; they still read.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
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
    Timeout(Duration),
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

/// [`StepError`] as written.
#[derive(Serialize, Deserialize)]
struct Wire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

impl From<StepError> for Wire {
    fn from(e: StepError) -> Wire {
        let kind = e.kind().to_string();
        let timeout_ms = match &e {
            StepError::Timeout(d) => Some(d.as_millis().min(u128::from(u64::MAX)) as u64),
            _ => None,
        };
        let message = match e {
            StepError::Retryable(m) | StepError::Fatal(m) | StepError::InvalidInput(m) => Some(m),
            StepError::Timeout(_) => Some(e.to_string()),
            StepError::Cancelled => None,
        };
        Wire {
            kind,
            message: message.map(serde_json::Value::String),
            timeout_ms,
        }
    }
}

impl TryFrom<Wire> for StepError {
    type Error = String;

    fn try_from(w: Wire) -> Result<StepError, String> {
        let text = || match &w.message {
            Some(serde_json::Value::String(m)) => Ok(m.clone()),
            other => Err(format!(
                "a `{}` error needs a text `message`, found {other:?}",
                w.kind
            )),
        };
        Ok(match w.kind.as_str() {
            "retryable" => StepError::Retryable(text()?),
            "fatal" => StepError::Fatal(text()?),
            "invalid-input" => StepError::InvalidInput(text()?),
            "timeout" => {
                let ms = w
                    .timeout_ms
                    .or_else(|| w.message.as_ref().and_then(serde_json::Value::as_u64))
                    .ok_or("a `timeout` error needs `timeout_ms`")?;
                StepError::Timeout(Duration::from_millis(ms))
            }
            "cancelled" => StepError::Cancelled,
            other => return Err(format!("unknown error kind `{other}`")),
        })
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

    /// Every kind's `message` is text (a timeout's was its milliseconds, a number where readers
    /// of events and webhooks expect a sentence); a journal written before still reads.
    #[test]
    fn a_timeout_says_why_in_text_and_old_journals_read() {
        let j = serde_json::to_value(StepError::Timeout(Duration::from_millis(1500))).unwrap();
        assert_eq!(j["timeout_ms"], 1500);
        assert!(
            j["message"]
                .as_str()
                .unwrap()
                .starts_with("timed out after 1s500ms")
        );
        assert_eq!(
            serde_json::to_value(StepError::Cancelled).unwrap(),
            serde_json::json!({"kind": "cancelled"})
        );
        let old: StepError =
            serde_json::from_value(serde_json::json!({"kind": "timeout", "message": 1500}))
                .unwrap();
        assert_eq!(old, StepError::Timeout(Duration::from_millis(1500)));
        let bad = serde_json::from_value::<StepError>(serde_json::json!({"kind": "fatal"}));
        assert!(bad.unwrap_err().to_string().contains("text `message`"));
    }
}
