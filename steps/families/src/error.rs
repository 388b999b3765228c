//! Errors the engine can act on, shared by every step family.

use meridian_sdk::http::{HttpError, is_retryable_status};

/// How a step failed. Mirrors the WIT `step-error` variant: the engine retries `Retryable` under
/// the step's retry policy, never retries `Fatal`, and reports `InvalidInput` like a validation
/// error of the workflow file. Messages name what failed and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Transient (throttling, 5xx, timeout, a change still propagating): safe to retry because
    /// every step in the families is idempotent.
    #[error("{0}")]
    Retryable(String),
    /// Permanent (bad credentials, missing zone, a request the provider rejects).
    #[error("{0}")]
    Fatal(String),
    /// The `with:` input is wrong.
    #[error("{0}")]
    InvalidInput(String),
}

impl StepError {
    /// A retryable error.
    pub fn retryable(msg: impl Into<String>) -> Self {
        Self::Retryable(msg.into())
    }

    /// A fatal error.
    pub fn fatal(msg: impl Into<String>) -> Self {
        Self::Fatal(msg.into())
    }

    /// An invalid-input error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    /// Whether the engine may retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Fatal(m) | Self::InvalidInput(m) => m,
        }
    }

    /// Classifies a transport failure of `what` (e.g. "Route 53 ListResourceRecordSets") by
    /// [`HttpError::is_retryable`]; a denied URL says which grant to add.
    pub fn transport(what: &str, url: &str, err: HttpError) -> Self {
        let message = match &err {
            HttpError::Denied(detail) if detail.contains("grants") => {
                format!("{what}: {url} is not allowed: {detail}")
            }
            HttpError::Denied(detail) => format!(
                "{what}: {url} is not allowed by this step's grants ({detail}); add its scheme://host:port to `grants.http`"
            ),
            HttpError::Timeout => format!("{what}: {url} timed out"),
            HttpError::Connect(detail) => {
                format!("{what}: cannot connect to {url}: {detail}; check the provider endpoint")
            }
            HttpError::TooLarge(limit) => format!(
                "{what}: a body to or from {url} exceeds the {limit}-byte limit of the step's http grant"
            ),
            HttpError::Other(detail) => format!("{what}: {url}: {detail}"),
        };
        if err.is_retryable() {
            Self::Retryable(message)
        } else {
            Self::Fatal(message)
        }
    }

    /// Classifies an HTTP status that no vendor-specific code explained: 401/403 fatal (with a
    /// hint about credentials), [`is_retryable_status`] retryable, other statuses fatal.
    pub fn from_status(what: &str, status: u16, detail: &str, credentials_hint: &str) -> Self {
        match status {
            401 | 403 => Self::Fatal(format!(
                "{what}: HTTP {status} — the credentials were refused: {detail}; check {credentials_hint}"
            )),
            s if is_retryable_status(s) => {
                Self::Retryable(format!("{what}: HTTP {status} (transient): {detail}"))
            }
            _ => Self::Fatal(format!("{what}: HTTP {status}: {detail}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_classified() {
        assert!(StepError::transport("x", "http://a", HttpError::Timeout).is_retryable());
        assert!(
            StepError::transport("x", "http://a", HttpError::Connect("refused".into()))
                .is_retryable()
        );
        let denied = StepError::transport("x", "http://a", HttpError::Denied("not listed".into()));
        assert!(matches!(&denied, StepError::Fatal(m) if m.contains("grants.http")));
        assert!(!StepError::transport("x", "http://a", HttpError::TooLarge(10)).is_retryable());
        // The sandbox's own denial already says which grant to add: no second hint.
        let host_says = HttpError::Denied("not granted; add it to the step's grants.http".into());
        let m = StepError::transport("x", "http://a", host_says)
            .message()
            .to_owned();
        assert_eq!(m.matches("grants").count(), 1, "{m}");
    }

    #[test]
    fn statuses_are_classified() {
        let e = StepError::from_status("op", 403, "nope", "secret TOKEN");
        assert!(matches!(&e, StepError::Fatal(m) if m.contains("secret TOKEN")));
        assert!(StepError::from_status("op", 429, "", "").is_retryable());
        assert!(StepError::from_status("op", 503, "", "").is_retryable());
        assert!(!StepError::from_status("op", 400, "", "").is_retryable());
        assert_eq!(StepError::fatal("m").message(), "m");
    }
}
