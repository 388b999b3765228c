//! What a step sees of its invocation and its host.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::{HostApi, Level};
use crate::http::Http;
use crate::sql::Sql;

/// Apply for real, or plan (dry run: the host records mutations instead of performing them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Do the work.
    Apply,
    /// Dry run, enforced by the host.
    Plan,
}

/// Identity of this invocation of the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The workflow run.
    pub run_id: String,
    /// The step's `id` in the workflow (with the matrix suffix, if any).
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across every attempt and every resume of this step in this run: pass it to
    /// APIs that deduplicate requests.
    pub idempotency_key: String,
    /// Apply or plan.
    pub mode: Mode,
    /// The raw `with:` JSON (already deserialised into the step's input type).
    pub input: String,
}

impl Invocation {
    /// An invocation for unit tests: run `test-run`, step `test-step`, attempt 1, apply mode.
    pub fn for_test(input: &serde_json::Value) -> Self {
        Self {
            run_id: "test-run".into(),
            step_id: "test-step".into(),
            attempt: 1,
            idempotency_key: "test-run/test-step".into(),
            mode: Mode::Apply,
            input: input.to_string(),
        }
    }
}

/// The step's handle on its invocation and host. Cheap to pass by reference.
pub struct Ctx {
    invocation: Invocation,
    host: Arc<dyn HostApi>,
    /// Structured logging into the step's log (tagged with run, step and attempt by the host).
    pub log: Log,
}

impl Ctx {
    /// A context over any host; the export glue passes [`crate::host::WitHost`], unit tests pass a
    /// [`crate::testing::MockHost`].
    pub fn new(invocation: Invocation, host: Arc<dyn HostApi>) -> Self {
        Self {
            invocation,
            log: Log {
                host: Arc::clone(&host),
            },
            host,
        }
    }

    /// Run id, attempt, idempotency key, mode.
    pub fn invocation(&self) -> &Invocation {
        &self.invocation
    }

    /// True in plan mode: mutating HTTP requests and SQL writes are recorded, not performed.
    pub fn is_plan(&self) -> bool {
        self.invocation.mode == Mode::Plan
    }

    /// Outbound HTTP, limited to the step's `grants.http`.
    pub fn http(&self) -> Http<'_> {
        Http { host: &*self.host }
    }

    /// SQL on the named connection (from the workflow's `connections:`, granted in `grants.sql`).
    pub fn sql<'a>(&'a self, connection: &'a str) -> Sql<'a> {
        Sql {
            host: &*self.host,
            connection,
        }
    }

    /// A granted secret. The host masks its value in logs, outputs and errors.
    pub fn secret(&self, name: &str) -> Result<String, crate::Error> {
        self.host
            .secret(name)
            // The host's message names the secret and what to do.
            .map_err(crate::Error::fatal)
    }

    /// Per-run state shared between steps.
    pub fn kv(&self) -> Kv<'_> {
        Kv { host: &*self.host }
    }
}

/// Logging helpers; see [`Ctx::log`].
pub struct Log {
    host: Arc<dyn HostApi>,
}

impl Log {
    /// Logs `message` with key/value fields.
    pub fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.host.log(level, message, &fields);
    }
    /// Debug-level message.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message, &[]);
    }
    /// Info-level message.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message, &[]);
    }
    /// Warn-level message.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message, &[]);
    }
    /// Error-level message.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message, &[]);
    }
}

/// Per-run key/value state; see [`Ctx::kv`].
#[derive(Clone, Copy)]
pub struct Kv<'a> {
    host: &'a dyn HostApi,
}

impl Kv<'_> {
    /// Raw bytes under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.host.kv_get(key)
    }
    /// Stores raw bytes.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), crate::Error> {
        self.host
            .kv_set(key, value)
            .map_err(|e| crate::Error::fatal(format!("kv set `{key}`: {e}")))
    }
    /// The JSON value under `key`, deserialised.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, crate::Error> {
        self.get(key)
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(Into::into)
    }
    /// Stores `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), crate::Error> {
        self.set(key, &serde_json::to_vec(value)?)
    }
    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        self.host.kv_delete(key)
    }
    /// Keys starting with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.host.kv_list(prefix)
    }
}
