//! Where runs are journaled: the embedded SQLite file (default) or PostgreSQL (`--store
//! postgres://…`, where `meridian worker` processes execute the steps).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use meridian_distributed::PgJournal;
use meridian_engine::EventSink;
use meridian_store::{EventRecord, LegRecord, RunRecord, RunSummary, SqliteStore};

use crate::{Exit, exit};

/// One of the two journals, with the calls the commands need.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgJournal),
}

fn fail(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: exit::INTERNAL,
        message: format!("error: {e}"),
    })
}

/// `NoSuchRun` is the user's mistake (exit 2); everything else is the store's (exit 5).
fn fail_lookup(e: impl std::fmt::Display) -> anyhow::Error {
    let message = format!("error: {e}");
    if message.contains("not found") {
        Exit::invalid(message)
    } else {
        fail(e)
    }
}

impl Store {
    /// `spec` is `--store`: empty for SQLite in `state_dir`, or a `postgres://` URL.
    pub fn open(spec: Option<&str>, state_dir: &Path) -> anyhow::Result<Store> {
        match spec {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(PgJournal::open(url).map_err(fail)?))
            }
            Some(other) => Err(Exit::invalid(format!(
                "error: --store `{other}`: use a postgres://… URL, or leave it out for the embedded SQLite journal in --state-dir"
            ))),
            None => Ok(Store::Sqlite(
                SqliteStore::open(&state_dir.join("meridian.db")).map_err(fail)?,
            )),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().display().to_string(),
            Store::Postgres(_) => "PostgreSQL".into(),
        }
    }

    pub fn create_run(&self, r: &RunRecord) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.create_run(r).map_err(fail),
            Store::Postgres(p) => p.create_run(r).map_err(fail),
        }
    }

    pub fn reopen_run(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.reopen_run(id).map_err(fail_lookup),
            Store::Postgres(p) => p.reopen_run(id).map_err(fail_lookup),
        }
    }

    pub fn forget_legs(&self, id: &str, steps: &[String]) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.forget_legs(id, steps).map_err(fail),
            Store::Postgres(p) => p.forget_legs(id, steps).map_err(fail),
        }
    }

    pub fn journal(&self, id: &str) -> anyhow::Result<Arc<dyn EventSink>> {
        Ok(match self {
            Store::Sqlite(s) => Arc::new(s.journal(id).map_err(fail)?),
            Store::Postgres(p) => Arc::new(p.journal(id).map_err(fail)?),
        })
    }

    pub fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunSummary>> {
        match self {
            Store::Sqlite(s) => s.runs(limit).map_err(fail),
            Store::Postgres(p) => p.runs(limit).map_err(fail),
        }
    }

    pub fn run(&self, id: &str) -> anyhow::Result<(RunRecord, RunSummary)> {
        match self {
            Store::Sqlite(s) => s.run(id).map_err(fail_lookup),
            Store::Postgres(p) => p.run(id).map_err(fail_lookup),
        }
    }

    pub fn events(&self, id: &str) -> anyhow::Result<Vec<EventRecord>> {
        match self {
            Store::Sqlite(s) => s.events(id).map_err(fail),
            Store::Postgres(p) => p.events(id).map_err(fail),
        }
    }

    pub fn legs(&self, id: &str) -> anyhow::Result<HashMap<(String, String), LegRecord>> {
        match self {
            Store::Sqlite(s) => s.legs(id).map_err(fail),
            Store::Postgres(p) => p.legs(id).map_err(fail),
        }
    }

    pub fn approvals(&self, id: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Store::Sqlite(s) => s.approvals(id).map_err(fail),
            Store::Postgres(p) => p.approvals(id).map_err(fail),
        }
    }
}
