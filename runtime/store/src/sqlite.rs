//! SQLite implementation of the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_engine::{Event, EventSink, SinkError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value as Json;

use crate::{EventRecord, LegRecord, RunRecord, RunSummary, StoreError};

/// `MRDN` — marks the file as ours.
const APPLICATION_ID: i64 = 0x4D52_444E;
/// Bump with a new entry in `MIGRATIONS`.
const SCHEMA_VERSION: i64 = 1;

/// Migrations, index i takes the schema from version i to i + 1.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
                    run.mode,
                    run.inputs.to_string(),
                    run.options.to_string(),
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks a run as being resumed (status back to `running`).
    pub fn reopen_run(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .lock()
            .execute(
                "UPDATE runs SET status='running', finished_at=NULL, updated_at=?2 WHERE id=?1",
                params![id, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    /// Forgets the finished legs of `steps` (for `meridian retry RUN --from STEP`).
    pub fn forget_legs(&self, id: &str, steps: &[String]) -> Result<(), StoreError> {
        let conn = self.lock();
        for s in steps {
            conn.execute(
                "DELETE FROM legs WHERE run_id=?1 AND step=?2",
                params![id, s],
            )
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// An event sink that journals into this store under `run_id`.
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

    /// Most recent runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, workflow, mode, status, created_at, finished_at, message FROM runs
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(RunSummary {
                    id: r.get(0)?,
                    workflow: r.get(1)?,
                    mode: r.get(2)?,
                    status: r.get(3)?,
                    created_at_ms: r.get(4)?,
                    finished_at_ms: r.get(5)?,
                    message: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The run's record and summary.
    pub fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, workflow, workflow_path, workflow_sha256, mode, inputs, options, status, created_at, finished_at, message
             FROM runs WHERE id=?1",
            params![id],
            |r| {
                let inputs: String = r.get(5)?;
                let options: String = r.get(6)?;
                Ok((
                    RunRecord {
                        id: r.get(0)?,
                        workflow: r.get(1)?,
                        workflow_path: r.get(2)?,
                        workflow_sha256: r.get(3)?,
                        mode: r.get(4)?,
                        inputs: serde_json::from_str(&inputs).unwrap_or(Json::Null),
                        options: serde_json::from_str(&options).unwrap_or(Json::Null),
                    },
                    RunSummary {
                        id: r.get(0)?,
                        workflow: r.get(1)?,
                        mode: r.get(4)?,
                        status: r.get(7)?,
                        created_at_ms: r.get(8)?,
                        finished_at_ms: r.get(9)?,
                        message: r.get(10)?,
                    },
                ))
            },
        )
        .optional()
        .map_err(|e| self.err(e))?
        .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))
    }

    /// Every event of a run, in order.
    pub fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT seq, at, body FROM events WHERE run_id=?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id], |r| {
                let body: String = r.get(2)?;
                Ok(EventRecord {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    body: serde_json::from_str(&body).unwrap_or(Json::Null),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Finished legs of a run, keyed by (step, leg).
    pub fn legs(&self, id: &str) -> Result<HashMap<(String, String), LegRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT step, leg, outcome, attempts, duration_ms, output, plan, error FROM legs WHERE run_id=?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id], |r| {
                let output: String = r.get(5)?;
                let plan: String = r.get(6)?;
                let error: Option<String> = r.get(7)?;
                Ok(LegRecord {
                    step: r.get(0)?,
                    leg: r.get(1)?,
                    outcome: r.get(2)?,
                    attempts: r.get(3)?,
                    duration_ms: r.get::<_, i64>(4)? as u64,
                    output: serde_json::from_str(&output).unwrap_or(Json::Null),
                    plan: serde_json::from_str(&plan).unwrap_or_default(),
                    error: error.and_then(|e| serde_json::from_str(&e).ok()),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let l = row.map_err(|e| self.err(e))?;
            out.insert((l.step.clone(), l.leg.clone()), l);
        }
        Ok(out)
    }

    /// Steps approved in earlier invocations of the run.
    pub fn approvals(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT step FROM events WHERE run_id=?1 AND kind='approval-granted'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn append(&self, run_id: &str, seq: i64, event: &Event) -> Result<(), StoreError> {
        let body = serde_json::to_value(event).unwrap_or(Json::Null);
        let kind = body
            .get("event")
            .and_then(Json::as_str)
            .unwrap_or("unknown")
            .to_string();
        let step = body.get("step").and_then(Json::as_str).map(str::to_string);
        let now = now_ms();
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO events (run_id, seq, at, kind, step, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_id, seq, now, kind, step, body.to_string()],
        )
        .map_err(|e| self.err(e))?;
        match event {
            Event::LegFinished {
                step,
                leg,
                outcome,
                attempts,
                duration,
                output,
                plan,
                error,
            } => {
                tx.execute(
                    "INSERT OR REPLACE INTO legs (run_id, step, leg, outcome, attempts, duration_ms, output, plan, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        run_id,
                        step,
                        leg,
                        outcome.as_str(),
                        attempts,
                        duration.as_millis() as i64,
                        output.to_string(),
                        serde_json::to_string(plan).unwrap_or_default(),
                        error.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()),
                    ],
                )
                .map_err(|e| self.err(e))?;
            }
            Event::RunFinished {
                status, message, ..
            } => {
                tx.execute(
                    "UPDATE runs SET status=?2, message=?3, finished_at=?4, updated_at=?4 WHERE id=?1",
                    params![run_id, status.as_str(), message, now],
                )
                .map_err(|e| self.err(e))?;
            }
            _ => {
                tx.execute(
                    "UPDATE runs SET updated_at=?2 WHERE id=?1",
                    params![run_id, now],
                )
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
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
