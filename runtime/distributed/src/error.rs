//! The one error type of this crate.

/// Why a distributed-store operation failed. DSNs are never printed whole: only host, port, user
/// and database appear in messages (a DSN may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {}", db_detail(source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed; `op` names what Meridian was doing.
    #[error("PostgreSQL ({op}): {}", db_detail(source))]
    Db {
        op: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds a Meridian schema written by a newer Meridian.
    #[error(
        "the `meridian` schema of {target} has version {found}, newer than this meridian understands ({supported}); upgrade meridian"
    )]
    TooNew {
        target: String,
        found: i32,
        supported: i32,
    },
    /// A schema named `meridian` exists but was not created by Meridian.
    #[error(
        "{target} has a schema named `meridian` that Meridian did not create ({detail}); use another database — it will not be touched"
    )]
    Foreign { target: String, detail: String },
    /// Something accepted the TCP connection and never completed PostgreSQL's start-up.
    #[error(
        "PostgreSQL at {target} accepted the connection but did not finish its start-up within {after:?}: is that address a PostgreSQL server, and is it answering? (`connect_timeout` in the DSN sets the wait)"
    )]
    Stalled {
        target: String,
        after: std::time::Duration,
    },
    #[error("run `{0}` not found (see `meridian runs list`)")]
    NoSuchRun(String),
    /// The task key is missing or malformed, or a sealed payload does not open with it.
    #[error("task key: {0}")]
    Key(String),
    /// Options that cannot work together (for example a heartbeat no shorter than the lease).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The shared connection is down and being re-made; retry later.
    #[error("not connected to PostgreSQL at {0} (reconnecting)")]
    Disconnected(String),
    /// The journal's connection thread is gone (it panicked or could not start).
    #[error("the journal's connection thread stopped: {0}")]
    Bridge(String),
    /// A fenced write whose owner lost the run's lease (see `Journal::fenced_sink`).
    #[error("{0}")]
    LeaseLost(String),
    /// A claim that kept changing hands while it was made; the request may be retried.
    #[error("{0}; try again")]
    Contended(String),
}

/// The server's message and SQLSTATE when there is one (tokio-postgres displays only "db error").
use meridian_pgtls::error_text as db_detail;

impl DistError {
    /// Wraps a statement error with what was being done.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DistError {
        move |source| DistError::Db { op, source }
    }

    /// True when the failure was the connection (worth reconnecting and retrying), not the
    /// statement.
    pub fn is_connection(&self) -> bool {
        match self {
            DistError::Connect { .. } | DistError::Disconnected(_) | DistError::Stalled { .. } => {
                true
            }
            DistError::Db { source, .. } => is_connection_error(source),
            _ => false,
        }
    }
}

/// A closed socket, an I/O error, or a server-side `08xxx` (connection exception) / `57xxx`
/// (operator intervention: terminated backend, shutdown, recovery) state.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08") || c.starts_with("57");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}
