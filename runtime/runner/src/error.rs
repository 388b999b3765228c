//! What can stop the runner before or around a run (a run that fails is a report, not an error).

use meridian_store::StoreError;

/// Why the runner could not start, resume or finish a run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Bad input from the user: an invalid workflow, a missing secret, an unknown step, a
    /// changed workflow file. The message says what to fix.
    #[error("{0}")]
    Invalid(String),
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
            RunnerError::Invalid(_) | RunnerError::Diagnostics(_) => true,
            RunnerError::Store(e) => e.is_not_found(),
            RunnerError::Host(_) => false,
        }
    }
}
