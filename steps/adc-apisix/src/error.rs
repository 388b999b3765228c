//! What can go wrong in a sync, and how the engine should treat it ([`ErrorKind`]).

use meridian_sdk::http::HttpError;

use crate::load::{ConfigErrors, ReadError};

/// How the engine treats a failure (maps onto the WIT `step-error` variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient: a retry of the whole step is safe, because a sync is idempotent (it diffs
    /// again and sends only what is still missing).
    Retryable,
    Fatal,
    InvalidInput,
}

/// A failed sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("invalid ADC configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("admin key rejected by {url}: check grants/secrets (HTTP 401)")]
    Unauthorized { url: String },
    #[error(
        "{method} {url} was forbidden (HTTP 403): the admin key may be read-only (role viewer) or this address is not in allow_admin"
    )]
    Forbidden { method: String, url: String },
    #[error("{method} {url} failed with HTTP {status}: {message}")]
    Rejected {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url} failed with HTTP {status} (the server may recover; retry): {message}")]
    Server {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url}: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("unexpected response from {url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "{done} of {total} changes were applied before a failure (a retry continues from there): {source}"
    )]
    Partial {
        done: usize,
        total: usize,
        #[source]
        source: Box<SyncError>,
    },
}

impl SyncError {
    /// How the engine should treat this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SyncError::InvalidInput(_) | SyncError::Config(_) | SyncError::Read(_) => {
                ErrorKind::InvalidInput
            }
            SyncError::Server { .. } => ErrorKind::Retryable,
            SyncError::Transport { source, .. } if source.is_retryable() => ErrorKind::Retryable,
            SyncError::Transport { .. } => ErrorKind::Fatal,
            SyncError::Partial { source, .. } => source.kind(),
            SyncError::Unauthorized { .. }
            | SyncError::Forbidden { .. }
            | SyncError::Rejected { .. }
            | SyncError::Protocol { .. }
            | SyncError::Unsupported(_) => ErrorKind::Fatal,
        }
    }
}
