//! The run journal: every event of every run, committed durably before the engine goes on, so a
//! killed runner can resume a run without redoing finished steps.
//!
//! The embedded store is one SQLite file in WAL mode with `synchronous=FULL`: one transaction, and
//! so one durable commit, per event. The schema is versioned (`PRAGMA user_version`) and the file
//! is marked as Meridian's (`PRAGMA application_id`), so a foreign or corrupted file is refused
//! with a clear error and never overwritten.

mod sqlite;

pub use sqlite::{RunJournal, SqliteStore};

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;

/// What a run was started with; enough to resume it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    /// Path of the workflow file (absolute).
    pub workflow_path: String,
    /// sha256 of the workflow file's text: resume refuses a changed file.
    pub workflow_sha256: String,
    pub mode: String,
    /// Typed inputs (masked).
    pub inputs: Json,
    /// CLI options to reuse on resume (max_parallel, approvals…).
    pub options: Json,
}

/// One line of `meridian runs list`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub mode: String,
    pub status: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub message: Option<String>,
}

/// One journaled event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub body: Json,
}

/// A finished leg as the journal has it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LegRecord {
    pub step: String,
    pub leg: String,
    pub outcome: String,
    pub attempts: u32,
    pub duration_ms: u64,
    pub output: Json,
    pub plan: Vec<meridian_protocol::PlannedChange>,
    pub error: Option<Json>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path} is not a Meridian state file ({detail}); move it away or pass another --state-dir — it will not be overwritten"
    )]
    Foreign { path: PathBuf, detail: String },
    #[error(
        "{path} is damaged ({detail}); keep it for inspection and start with another --state-dir"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path} has schema version {found}, newer than this meridian understands ({supported}); upgrade meridian"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("run `{0}` not found (see `meridian runs list`)")]
    NoSuchRun(String),
    #[error("state store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store: cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
