//! What can stop the runner before or around a run (a run that fails is a report, not an error).

use meridian_store::StoreError;

/// Why the runner could not start, resume or finish a run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Bad input from the user: an invalid workflow, a missing secret, an unknown step, a
    /// changed workflow file. The message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Several problems with what the user gave (inputs, secrets), each a sentence: a terminal
    /// shows an `error:` line for each, the API one message ([`RunnerError::one_line`]).
    #[error("{}", .0.join("\nerror: "))]
    Problems(Vec<String>),
    /// The workflow file has errors: rustc-style diagnostics, each naming file:line:col.
    #[error("{0}")]
    Diagnostics(String),
    /// The journal failed (or the run does not exist: [`StoreError::is_not_found`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine or the sandbox could not run at all (a journal write failed mid-run, the Wasm
    /// engine could not start).
    #[error("{0}")]
    Host(String),
}

impl RunnerError {
    /// Whether the caller got something wrong (exit 2) rather than the host (exit 5).
    pub fn is_usage(&self) -> bool {
        match self {
            RunnerError::Invalid(_) | RunnerError::Problems(_) | RunnerError::Diagnostics(_) => {
                true
            }
            RunnerError::Store(e) => e.is_not_found(),
            RunnerError::Host(_) => false,
        }
    }

    /// The error as one line: several problems joined with `; ` (an API message, a log line).
    pub fn one_line(&self) -> String {
        match self {
            RunnerError::Problems(p) => p.join("; "),
            other => other.to_string(),
        }
    }
}
