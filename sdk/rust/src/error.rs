//! The error a step returns; the engine acts on its kind (retry, fail, report bad input).

use std::fmt;

/// How the engine should treat a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient (a timeout, a refused connection, a 503): the engine may retry under the step's
    /// retry policy.
    Retryable,
    /// Permanent: never retried.
    Fatal,
    /// The step's `with:` inputs are wrong; reported to the operator like a validation error.
    InvalidInput,
}

/// A step failure as a value. Build one with [`Error::retryable`], [`Error::fatal`] or
/// [`Error::invalid_input`]; `?` converts the SDK's HTTP, SQL and JSON errors with a sensible kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A transient failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// A permanent failure.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }

    /// The inputs are wrong; say which one and how to fix it.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidInput,
            message: message.into(),
        }
    }

    /// How the engine treats this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what was being done, keeping the kind.
    #[must_use]
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Fatal => "fatal",
            ErrorKind::InvalidInput => "invalid input",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::fatal(format!("JSON: {e}"))
    }
}

impl From<Error> for crate::bindings::meridian::step::types::StepError {
    fn from(e: Error) -> Self {
        use crate::bindings::meridian::step::types::StepError;
        match e.kind {
            ErrorKind::Retryable => StepError::Retryable(e.message),
            ErrorKind::Fatal => StepError::Fatal(e.message),
            ErrorKind::InvalidInput => StepError::InvalidInput(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_prefixes() {
        let e = Error::retryable("503 from upstream").context("GET /status");
        assert_eq!(e.kind(), ErrorKind::Retryable);
        assert_eq!(e.message(), "GET /status: 503 from upstream");
        assert_eq!(e.to_string(), "retryable: GET /status: 503 from upstream");
    }
}
