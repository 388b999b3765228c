//! Where runs are journaled: the embedded SQLite file (default) or PostgreSQL (`--store
//! postgres://…`, where `meridian worker` processes execute the steps).

use std::path::Path;
use std::sync::Arc;

use meridian_distributed::PgJournal;
use meridian_store::{Journal, SqliteStore};

use crate::{Exit, exit};

/// Whether `--store` names PostgreSQL.
pub fn is_postgres(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// `spec` is `--store`: empty for SQLite in `state_dir`, or a `postgres://` URL.
pub fn open(spec: Option<&str>, state_dir: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    let internal = |e: &dyn std::fmt::Display| Exit {
        code: exit::INTERNAL,
        message: format!("error: {e}"),
    };
    match spec {
        Some(url) if is_postgres(url) => {
            Ok(Arc::new(PgJournal::open(url).map_err(|e| internal(&e))?))
        }
        Some(other) => Err(Exit::invalid(format!(
            "error: --store `{other}`: use a postgres://… URL, or leave it out for the embedded SQLite journal in --state-dir"
        ))),
        None => Ok(Arc::new(
            SqliteStore::open(&state_dir.join("meridian.db")).map_err(|e| internal(&e))?,
        )),
    }
}
