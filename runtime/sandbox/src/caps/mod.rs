//! Capabilities: what one invocation may touch. Everything is denied unless granted here.

pub(crate) mod allow;
pub(crate) mod dns;
pub(crate) mod http;
pub(crate) mod pg;
pub(crate) mod sql;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use meridian_protocol::{KvStore, MemoryKv, OriginPattern};
use std::time::Duration;

/// The grants of one invocation. [`Capabilities::default`] grants nothing: no network, no SQL,
/// no files, no secrets; kv is a fresh empty in-memory store.
#[derive(Clone)]
pub struct Capabilities {
    /// Outbound HTTP.
    pub http: HttpPolicy,
    /// SQL connections the step may use: connection name → DSN (already resolved; never shown
    /// to the guest).
    pub sql: BTreeMap<String, String>,
    /// Directories visible to the guest through WASI. Nothing else of the host filesystem is.
    pub fs: Vec<Preopen>,
    /// Secrets the step may read: name → value.
    pub secrets: BTreeMap<String, String>,
    /// Further values to mask wherever they would be printed (every secret of the run, also
    /// those not granted to this step). Granted secret values are masked anyway.
    pub mask: Vec<String>,
    /// Per-run state shared between steps; give every step of a run the same store.
    pub kv: Arc<dyn KvStore>,
    /// Tags for the step's log lines.
    pub log: LogContext,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            http: HttpPolicy::default(),
            sql: BTreeMap::new(),
            fs: Vec::new(),
            secrets: BTreeMap::new(),
            mask: Vec::new(),
            kv: Arc::new(MemoryKv::default()),
            log: LogContext::default(),
        }
    }
}

impl fmt::Debug for Capabilities {
    // DSNs and secret values stay out of debug output: only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("http", &self.http)
            .field("sql", &self.sql.keys().collect::<Vec<_>>())
            .field("fs", &self.fs)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("mask", &format_args!("[{} values]", self.mask.len()))
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// HTTP grant: which origins, how big, how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Allowed origins (see [`OriginPattern`] for the matching rules). Empty: no HTTP at all.
    pub allow: Vec<OriginPattern>,
    /// Largest request body, in bytes.
    pub max_request_bytes: u64,
    /// Largest response body, in bytes.
    pub max_response_bytes: u64,
    /// Upper bound for one request, redirects and body included.
    pub timeout: Duration,
    /// Resolve host names through this DNS server only (`grants.dns`), instead of the host's
    /// resolver: what a GSLB answers is what the step sees. Responses then carry the address
    /// actually connected to in an `x-meridian-remote-addr` header.
    pub resolver: Option<std::net::SocketAddr>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_request_bytes: 1 << 20,
            max_response_bytes: 10 << 20,
            timeout: Duration::from_secs(30),
            resolver: None,
        }
    }
}

impl HttpPolicy {
    /// A policy allowing `allow` with the default limits.
    pub fn allowing(allow: impl IntoIterator<Item = OriginPattern>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Directory on the host; must exist.
    pub host: PathBuf,
    /// Path the guest sees, e.g. `/data`.
    pub guest: String,
    /// Whether the guest may create and write files (always read-only in plan mode).
    pub writable: bool,
}

/// Tags attached to every log line and `tracing` event of the invocation, and the tap its
/// lines go to as they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogContext {
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// Every line of the invocation goes here as it is written; a finished invocation hands
    /// them over in its [`Report`](crate::Report) and leaves the tap empty. When the caller
    /// drops the invocation's future instead (a cancel, its own timeout), the lines written so
    /// far — stdout and stderr included — stay here.
    pub tap: meridian_protocol::LogTap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secret_values_and_dsns() {
        let mut caps = Capabilities::default();
        caps.secrets.insert("token".into(), "s3cr3t-value".into());
        caps.sql
            .insert("primary".into(), "postgres://u:hunter2@db/x".into());
        let dbg = format!("{caps:?}");
        assert!(dbg.contains("token") && dbg.contains("primary"));
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("hunter2"), "{dbg}");
    }
}
