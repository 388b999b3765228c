//! The one error type of this crate.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, probing or stopping lab components.
///
/// Each variant names the component or command it is about, and carries enough context (log tail,
/// install command, path) that the message alone tells an operator what to do next.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A required executable is not installed; `install` is the command that installs it.
    #[error("{name} not found: run `{install}`")]
    MissingBinary {
        /// The executable that was looked for (e.g. `pdns_server`).
        name: String,
        /// The shell command that installs it on Debian 12.
        install: String,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or program.
        context: String,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// A helper command (initdb, pg_basebackup, psql, …) ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, shortened to the program and its arguments.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard error (trimmed), which usually says why.
        stderr: String,
    },

    /// A started process exited before it became ready.
    #[error("{what} exited during start-up ({status}); log {log}:\n{tail}")]
    Exited {
        /// The component (e.g. `postgres on port 5432`).
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log file.
        tail: String,
    },

    /// A started process did not become ready within the bounded wait.
    #[error("{what} not ready after {waited:?}; log {log}:\n{tail}")]
    NotReady {
        /// The component.
        what: String,
        /// How long was waited.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log file.
        tail: String,
    },

    /// A service account cannot reach a directory it needs (the lab runs PostgreSQL and PowerDNS as
    /// their own users when started as root).
    #[error("user {user} cannot reach {path}: {hint}")]
    Permission {
        /// The service user (e.g. `postgres`).
        user: String,
        /// The directory it cannot traverse.
        path: PathBuf,
        /// How to fix it.
        hint: String,
    },

    /// A DNS exchange failed (timeout, malformed answer, or an error rcode).
    #[error("DNS query {name} type {rtype} to {server}: {message}")]
    Dns {
        /// The server asked.
        server: std::net::SocketAddr,
        /// The name queried.
        name: String,
        /// The query type (1 = A, 28 = AAAA, …).
        rtype: u16,
        /// What went wrong.
        message: String,
    },

    /// An HTTP exchange with a lab component (PowerDNS API, moto, the lab control API) failed.
    #[error("HTTP {url}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong (status and body, or the transport error).
        message: String,
    },

    /// The lab's state file or configuration is missing or malformed, or the daemon is not running.
    #[error("lab state: {0}")]
    State(String),

    /// An invalid argument (e.g. an unknown region name, or an empty region list).
    #[error("invalid lab request: {0}")]
    Invalid(String),
}

impl LabError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}
