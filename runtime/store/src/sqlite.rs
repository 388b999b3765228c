//! SQLite implementation of the journal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_protocol::kv::{KvError, check_write};
use meridian_protocol::{Event, EventSink, KvStore, SinkError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{
    EventRecord, Journal, LegRecord, LegRow, Projection, RunRecord, RunRow, RunSummary, StoreError,
    SummaryRow, decode_event, project,
};

/// `MRDN` — marks the file as ours.
const APPLICATION_ID: i64 = 0x4D52_444E;
/// Bump with a new entry in `MIGRATIONS`.
const SCHEMA_VERSION: i64 = 2;

/// Migrations, index i takes the schema from version i to i + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_path TEXT NOT NULL,
    workflow_sha256 TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    message TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX runs_created ON runs(created_at);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE legs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step TEXT NOT NULL,
    leg TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    output TEXT NOT NULL,
    plan TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, step, leg)
);
"#,
    r#"
CREATE TABLE kv (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (run_id, key)
);
"#,
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The embedded journal. Cheap to clone; one connection behind a mutex (SQLite serializes
/// writers anyway, and one durable commit per event is the cost that matters).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or creates) the state file. A file that is not SQLite, not Meridian's, damaged, or
    /// from a newer schema is refused and left untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let existed = path.exists()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false);
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(sql)?;
        // Reading the header is the first thing that fails on a non-SQLite file.
        let app_id: i64 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) => {
                return Err(StoreError::Foreign {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                });
            }
        };
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if existed {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| StoreError::Foreign {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
                return Err(StoreError::Foreign {
                    path: path.to_path_buf(),
                    detail: format!("SQLite application_id is {app_id:#x}, not Meridian's"),
                });
            }
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            let check: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            if check != "ok" {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: check,
                });
            }
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(sql)?;
        let store = SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        };
        store.migrate(version)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: every write is one
        // transaction that either committed or rolled back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self, from: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let tx = conn.transaction().map_err(|e| self.err(e))?;
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                i + 1
            ))
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records a new run (status `running`).
    pub fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let now = now_ms();
        self.lock()
            .execute(
                "INSERT INTO runs (id, workflow, workflow_path, workflow_sha256, mode, status, inputs, options, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?8)",
                params![
                    run.id,
                    run.workflow,
                    run.workflow_path,
                    run.workflow_sha256,
                    run.mode.as_str(),
                    run.inputs.to_string(),
                    serde_json::to_string(&run.settings).unwrap_or_default(),
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The journal of one run as a concrete type (the trait hands out `Arc<dyn EventSink>`).
    pub fn journal(&self, run_id: &str) -> Result<RunJournal, StoreError> {
        let seq: i64 = self
            .lock()
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM events WHERE run_id=?1",
                params![run_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(RunJournal {
            store: self.clone(),
            run_id: run_id.to_string(),
            seq: Mutex::new(seq),
        })
    }

    fn append(&self, run_id: &str, seq: i64, event: &Event) -> Result<(), StoreError> {
        let body = serde_json::to_string(event).unwrap_or_default();
        let now = now_ms();
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO events (run_id, seq, at, kind, step, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_id, seq, now, event.kind(), event.step(), body],
        )
        .map_err(|e| self.err(e))?;
        match project(event) {
            Projection::Leg(l) => {
                tx.execute(
                    "INSERT OR REPLACE INTO legs (run_id, step, leg, outcome, attempts, duration_ms, output, plan, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        run_id,
                        l.step,
                        l.leg,
                        l.outcome.as_str(),
                        l.attempts,
                        l.duration.as_millis() as i64,
                        l.output.to_string(),
                        serde_json::to_string(&l.plan).unwrap_or_default(),
                        l.error.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()),
                    ],
                )
                .map_err(|e| self.err(e))?;
                tx.execute(
                    "UPDATE runs SET updated_at=?2 WHERE id=?1",
                    params![run_id, now],
                )
                .map_err(|e| self.err(e))?;
            }
            Projection::Finished { status, message } => {
                tx.execute(
                    "UPDATE runs SET status=?2, message=?3, finished_at=?4, updated_at=?4 WHERE id=?1",
                    params![run_id, status.as_str(), message, now],
                )
                .map_err(|e| self.err(e))?;
            }
            Projection::Touch => {
                tx.execute(
                    "UPDATE runs SET updated_at=?2 WHERE id=?1",
                    params![run_id, now],
                )
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Runs `f` on the connection; a SQLite error becomes a [`StoreError`] naming the file.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.lock()).map_err(|e| self.err(e))
    }
}

impl Journal for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        SqliteStore::create_run(self, run)
    }

    fn reopen_run(&self, id: &str) -> Result<(), StoreError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE runs SET status='running', finished_at=NULL, updated_at=?2 WHERE id=?1",
                params![id, now_ms()],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    fn forget_legs(&self, id: &str, steps: &[String]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for s in steps {
            tx.execute(
                "DELETE FROM legs WHERE run_id=?1 AND step=?2",
                params![id, s],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn sink(&self, run_id: &str) -> Result<Arc<dyn EventSink>, StoreError> {
        Ok(Arc::new(self.journal(run_id)?))
    }

    fn kv(&self, run_id: &str) -> Arc<dyn KvStore> {
        Arc::new(SqliteKv {
            store: self.clone(),
            run_id: run_id.to_string(),
        })
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let rows: Vec<SummaryRow> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, workflow, mode, status, created_at, finished_at, message FROM runs
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], summary_row)?;
            rows.collect()
        })?;
        rows.into_iter().map(SummaryRow::decode).collect()
    }

    fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT id, workflow, mode, status, created_at, finished_at, message,
                        workflow_path, workflow_sha256, inputs, options
                 FROM runs WHERE id=?1",
                params![id],
                |r| {
                    Ok(RunRow {
                        summary: summary_row(r)?,
                        workflow_path: r.get(7)?,
                        workflow_sha256: r.get(8)?,
                        inputs: r.get(9)?,
                        settings: r.get(10)?,
                    })
                },
            )
            .optional()
        })?;
        row.ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?
            .decode()
    }

    fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<(i64, i64, String)> = self.with(|c| {
            let mut stmt =
                c.prepare("SELECT seq, at, body FROM events WHERE run_id=?1 ORDER BY seq")?;
            let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(seq, at_ms, body)| decode_event(id, seq, at_ms, &body))
            .collect()
    }

    fn legs(&self, id: &str) -> Result<Vec<LegRecord>, StoreError> {
        let rows: Vec<LegRow> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT step, leg, outcome, attempts, duration_ms, output, plan, error FROM legs
                 WHERE run_id=?1 ORDER BY step, leg",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok(LegRow {
                    step: r.get(0)?,
                    leg: r.get(1)?,
                    outcome: r.get(2)?,
                    attempts: r.get(3)?,
                    duration_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    output: r.get(5)?,
                    plan: r.get(6)?,
                    error: r.get(7)?,
                })
            })?;
            rows.collect()
        })?;
        rows.into_iter().map(|l| l.decode(id)).collect()
    }

    fn approvals(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT step FROM events WHERE run_id=?1 AND kind='approval-granted' ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id], |r| r.get(0))?;
            rows.collect()
        })
    }
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SummaryRow> {
    Ok(SummaryRow {
        id: r.get(0)?,
        workflow: r.get(1)?,
        mode: r.get(2)?,
        status: r.get(3)?,
        created_at_ms: r.get(4)?,
        finished_at_ms: r.get(5)?,
        message: r.get(6)?,
    })
}

/// The journal of one run: an [`EventSink`] whose every `emit` is one durable commit.
pub struct RunJournal {
    store: SqliteStore,
    run_id: String,
    seq: Mutex<i64>,
}

impl EventSink for RunJournal {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        self.store
            .append(&self.run_id, *seq, event)
            .map_err(|e| SinkError(e.to_string()))
    }
}

/// One run's kv state in the `kv` table: every write is its own durable transaction, so a value
/// a step saved before it was killed is there for its compensation after a resume.
struct SqliteKv {
    store: SqliteStore,
    run_id: String,
}

impl SqliteKv {
    fn fail(&self, e: rusqlite::Error) -> KvError {
        KvError::Store(self.store.err(e).to_string())
    }
}

impl KvStore for SqliteKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.store
            .lock()
            .query_row(
                "SELECT value FROM kv WHERE run_id=?1 AND key=?2",
                params![self.run_id, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut conn = self.store.lock();
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        let (total, replaced): (i64, i64) = tx
            .query_row(
                "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),
                        coalesce(sum(CASE WHEN key=?2 THEN length(CAST(key AS BLOB)) + length(value) END), 0)
                 FROM kv WHERE run_id=?1",
                params![self.run_id, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.fail(e))?;
        check_write(key, &value, total as usize, replaced as usize)?;
        tx.execute(
            "INSERT OR REPLACE INTO kv (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![self.run_id, key, value],
        )
        .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))
    }

    fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.store
            .lock()
            .execute(
                "DELETE FROM kv WHERE run_id=?1 AND key=?2",
                params![self.run_id, key],
            )
            .map(|n| n > 0)
            .map_err(|e| self.fail(e))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let conn = self.store.lock();
        let mut stmt = conn
            .prepare("SELECT key FROM kv WHERE run_id=?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![self.run_id, prefix], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }
}
