//! SQLite implementation of the journal: opening and migrating the file and reading it here,
//! writing events in `commit`, the kv state in `kv`.

mod cancels;
mod commit;
mod durable;
mod keys;
mod kv;
mod maintain;
mod schema;

pub use commit::{RunJournal, SqliteRun};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_protocol::{EventSink, KvStore};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::pending::now_ms;
use crate::{
    EventRecord, Journal, KeyClaim, LegRecord, RawSummary, RunPage, RunQuery, RunRecord,
    RunSummary, ScheduleState, StoreError, decode, decode_word,
};
use commit::Committer;
use kv::SqliteKv;

use schema::{APPLICATION_ID, KEYS_VERSION, MIGRATIONS, SCHEMA_VERSION};

/// The embedded journal. Cheap to clone; one connection behind a mutex (SQLite serializes
/// writers anyway, and the number of durable commits is the cost that matters: see `commit`).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    committer: Arc<Committer>,
    path: PathBuf,
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn sync_dir(db: &Path) -> Result<(), StoreError> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// How long a connection waits for another process's lock (a run writing while `runs list`
/// reads, two processes creating the file) before reporting "database is locked".
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl SqliteStore {
    /// Opens (or creates) the state file. A file that is not SQLite, not Meridian's, or from a
    /// newer schema is refused and left untouched. Only the header is read: damage past it is
    /// found by [`Journal::check`], or reported as [`StoreError::Corrupt`] when met.
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
        let wal = wal_path(path);
        let had_wal = wal.exists();
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(sql)?;
        // Before anything reads the file: another process may be turning a new file to WAL
        // (an exclusive lock) or writing, and without a busy timeout the first read fails at
        // once with "database is locked".
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Only what the file's first page tells, so opening costs the same with 10 runs or a
        // million journaled steps: the full check is `SqliteStore::check` (`meridian runs
        // check`), and damage found later is reported as `StoreError::Corrupt` by every call.
        // Reading the header is the first thing that fails on a non-SQLite file.
        // One statement, so one snapshot: read apart, the header and the table count could
        // straddle another process's creation of the file and call a new Meridian file foreign.
        let (app_id, version, tables): (i64, i64, i64) = conn
            .query_row(
                "SELECT application_id, user_version, (SELECT count(*) FROM sqlite_master)
                 FROM pragma_application_id, pragma_user_version",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| match &e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    StoreError::Foreign {
                        path: path.to_path_buf(),
                        detail: e.to_string(),
                    }
                }
                _ => sql(e),
            })?;
        // An empty SQLite file (no tables yet) may become ours; anything else is not.
        if existed && app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
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
        // Per connection, once. WAL is a property of the file, set when the file is created
        // (see `migrate`).
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(sql)?;
        // No checkpoint when the last connection closes: it cost every `meridian` command three
        // fsyncs at exit, and the next one a fresh WAL file (and a directory fsync). The WAL is
        // fsynced at every commit either way; it is checkpointed as it grows (every 1,000
        // pages, SQLite's default) inside some later commit.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(sql)?;
        let store = SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            committer: Arc::new(Committer::new(wal.clone())),
            path: path.to_path_buf(),
        };
        if version < SCHEMA_VERSION {
            store.migrate()?;
        }
        // SQLite is built without its own directory fsyncs (`.cargo/config.toml`), so the
        // directory entries of a new database or WAL are made durable here, once, before any
        // commit that counts on them.
        if !existed || (!had_wal && wal.exists()) {
            sync_dir(path)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        // Without a check on open, damage shows up here, on the first page that reads wrong.
        if let rusqlite::Error::SqliteFailure(f, _) = &source
            && matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            )
        {
            return StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("{source}; `meridian runs check` checks the whole file"),
            };
        }
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

    /// Brings the schema to [`SCHEMA_VERSION`] in one transaction that holds the write lock from
    /// its start, reading the version again under it: two processes opening a new file at once
    /// (a `run` and a `runs list`) must not both create the tables.
    ///
    /// Switching a new file to WAL needs an exclusive lock, and SQLite answers a lock upgrade
    /// that would deadlock (another connection holds a shared lock and waits for ours) with
    /// "database is locked" at once, without the busy handler. So the whole step is retried,
    /// with a short pause, until the busy timeout has passed.
    fn migrate(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            match self.try_migrate() {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                other => return other.map_err(|e| self.err(e)),
            }
        }
    }

    fn try_migrate(&self) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        // Outside the transaction (SQLite cannot change it inside one); persistent in the file.
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let from: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if from >= SCHEMA_VERSION {
            return Ok(());
        }
        for sql in MIGRATIONS.iter().skip(from.max(0) as usize) {
            tx.execute_batch(sql)?;
        }
        if from > 0 && from < KEYS_VERSION {
            keys::carry_over(&tx)?;
        }
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
        tx.commit()
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
    /// Held events are written as progress once they waited 100 ms (see [`crate::progress`]).
    pub fn journal(&self, run_id: &str) -> Result<RunJournal, StoreError> {
        self.journal_with(run_id, true)
    }

    /// `progress: false`: held events wait for their commit point however long it takes.
    pub(super) fn journal_with(
        &self,
        run_id: &str,
        progress: bool,
    ) -> Result<RunJournal, StoreError> {
        self.journal_fenced(run_id, progress, None)
    }

    /// With `fence`: every commit is refused unless `fence` holds the run's lease.
    pub(super) fn journal_fenced(
        &self,
        run_id: &str,
        progress: bool,
        fence: Option<&str>,
    ) -> Result<RunJournal, StoreError> {
        let seq: i64 = self.with(|c| {
            c.prepare_cached("SELECT coalesce(max(seq), 0) FROM events WHERE run_id=?1")?
                .query_row(params![run_id], |r| r.get(0))
        })?;
        let backend = SqliteRun {
            store: self.clone(),
            run_id: run_id.to_string(),
            fence: fence.map(str::to_string),
        };
        Ok(if progress {
            RunJournal::with_progress(backend, seq)
        } else {
            RunJournal::new(backend, seq)
        })
    }

    /// Runs `f` on the connection; a SQLite error becomes a [`StoreError`] naming the file.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.lock()).map_err(|e| self.err(e))
    }

    /// `f`'s commits without an fsync (`synchronous=NORMAL`: in the WAL, so a killed process
    /// loses nothing, and made durable by the next fsynced commit). For leases: a lease says a
    /// live process drives a run, and everything that shares a SQLite file dies with the
    /// machine, so a power cut that loses a lease loses its holder too. A lease then costs a
    /// `meridian run` no fsync.
    fn unsynced<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(|e| self.err(e))?;
        let out = f(&mut conn);
        // Everything else stays fsynced, whatever `f` did.
        conn.execute_batch("PRAGMA synchronous=FULL")
            .map_err(|e| self.err(e))?;
        out.map_err(|e| self.err(e))
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
            let tx = c.unchecked_transaction()?;
            // Resuming a cancelled run asks for it to go on: a cancellation asked before it
            // ended goes. (A run still `running` is being taken over: a request stands.)
            tx.execute(
                "DELETE FROM cancel_requests WHERE run_id = ?1
                   AND EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status <> 'running')",
                params![id],
            )?;
            let n = tx.execute(
                "UPDATE runs SET status='running', finished_at=NULL, updated_at=?2 WHERE id=?1",
                params![id, now_ms()],
            )?;
            tx.commit()?;
            Ok(n)
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

    fn fenced_sink(&self, run_id: &str, owner: &str) -> Result<Arc<dyn EventSink>, StoreError> {
        Ok(Arc::new(self.journal_fenced(run_id, true, Some(owner))?))
    }

    fn kv(&self, run_id: &str) -> Arc<dyn KvStore> {
        Arc::new(SqliteKv::new(self, run_id, None))
    }

    fn fenced_kv(&self, run_id: &str, owner: &str) -> Arc<dyn KvStore> {
        Arc::new(SqliteKv::new(self, run_id, Some(owner)))
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let rows: Vec<RawSummary> = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, workflow, mode, status, created_at, finished_at, message FROM runs
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], read_summary)?;
            rows.collect()
        })?;
        rows.into_iter().map(RawSummary::decode).collect()
    }

    fn query_runs(&self, q: &RunQuery) -> Result<RunPage, StoreError> {
        const WHERE: &str = "WHERE (?1 IS NULL OR workflow = ?1) AND (?2 IS NULL OR status = ?2)
             AND (?3 IS NULL OR mode = ?3) AND (?4 IS NULL OR created_at >= ?4)";
        let (workflow, status, mode) = (
            q.workflow.clone(),
            q.status.map(|s| s.as_str()),
            q.mode.map(|m| m.as_str()),
        );
        let clamp = |n: usize| n.min(i64::MAX as usize) as i64;
        let (rows, total): (Vec<RawSummary>, i64) = self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, workflow, mode, status, created_at, finished_at, message FROM runs
                 {WHERE} ORDER BY created_at DESC, rowid DESC LIMIT ?5 OFFSET ?6"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        workflow,
                        status,
                        mode,
                        q.since_ms,
                        clamp(q.limit),
                        clamp(q.offset)
                    ],
                    read_summary,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total = c
                .prepare_cached(&format!("SELECT count(*) FROM runs {WHERE}"))?
                .query_row(params![workflow, status, mode, q.since_ms], |r| r.get(0))?;
            Ok((rows, total))
        })?;
        Ok(RunPage {
            runs: rows
                .into_iter()
                .map(RawSummary::decode)
                .collect::<Result<_, _>>()?,
            total: total.max(0) as usize,
        })
    }

    fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError> {
        let row = self.with(|c| {
            c.prepare_cached(
                "SELECT id, workflow, mode, status, created_at, finished_at, message,
                        workflow_path, workflow_sha256, inputs, options
                 FROM runs WHERE id=?1",
            )?
            .query_row(params![id], |r| {
                Ok((
                    read_summary(r)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .optional()
        })?;
        let Some((summary, workflow_path, workflow_sha256, inputs, options)) = row else {
            return Err(StoreError::NoSuchRun(id.to_string()));
        };
        let summary = summary.decode()?;
        let record = RunRecord {
            id: summary.id.clone(),
            workflow: summary.workflow.clone(),
            workflow_path,
            workflow_sha256,
            mode: summary.mode,
            inputs: decode(id, "inputs", &inputs)?,
            settings: decode(id, "run settings", &options)?,
        };
        Ok((record, summary))
    }

    fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<(i64, i64, String)> = self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, at, body FROM events WHERE run_id=?1 ORDER BY seq")?;
            let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(seq, at_ms, body)| {
                Ok(EventRecord {
                    seq,
                    at_ms,
                    event: decode(id, &format!("event {seq}"), &body)?,
                })
            })
            .collect()
    }

    fn legs(&self, id: &str) -> Result<Vec<LegRecord>, StoreError> {
        type Row = (
            String,
            String,
            String,
            u32,
            i64,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT step, leg, outcome, attempts, duration_ms, output, plan, error FROM legs
                 WHERE run_id=?1 ORDER BY step, leg",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(
                |(step, leg, outcome, attempts, duration_ms, output, plan, error)| {
                    let what = |field: &str| {
                        format!("{field} of {}", meridian_protocol::display_id(&step, &leg))
                    };
                    Ok(LegRecord {
                        outcome: decode_word(id, &what("outcome"), &outcome)?,
                        attempts,
                        duration: std::time::Duration::from_millis(duration_ms.max(0) as u64),
                        output: decode(id, &what("output"), &output)?,
                        plan: decode(id, &what("plan"), &plan)?,
                        error: error.map(|e| decode(id, &what("error"), &e)).transpose()?,
                        step,
                        leg,
                    })
                },
            )
            .collect()
    }

    fn claim_tick(&self, schedule: &str, tick_ms: i64, by: &str) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO ticks (schedule, tick, claimed_by, claimed_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![schedule, tick_ms, by, now_ms()])
        })?;
        Ok(n == 1)
    }

    fn claim_key(
        &self,
        key: &str,
        claim: &KeyClaim,
        ttl: Duration,
    ) -> Result<Option<KeyClaim>, StoreError> {
        self.claim_key_row(key, claim, ttl)
    }

    fn release_key(&self, key: &str, run_id: &str) -> Result<(), StoreError> {
        self.release_key_row(key, run_id)
    }

    fn request_cancel(&self, id: &str, why: &str) -> Result<(), StoreError> {
        self.request_cancel_row(id, why)
    }

    fn cancel_requests(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        self.cancel_request_rows(ids)
    }

    fn lease_run(&self, id: &str, by: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.renew_runs(&[id.to_string()], by, ttl)?.is_empty())
    }

    fn renew_runs(
        &self,
        ids: &[String],
        by: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let until = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        self.unsynced(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut lost = Vec::new();
            {
                let mut lease = tx.prepare_cached(
                    "INSERT INTO leases (run_id, owner, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE leases.owner = excluded.owner OR leases.expires_at < ?4",
                )?;
                for id in ids {
                    if lease.execute(params![id, by, until, now])? != 1 {
                        lost.push(id.clone());
                    }
                }
            }
            tx.commit()?;
            Ok(lost)
        })
    }

    fn schedules(&self) -> Result<Vec<ScheduleState>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT schedule, paused, failures FROM schedules ORDER BY schedule")?
                .query_map([], |r| {
                    Ok(ScheduleState {
                        schedule: r.get(0)?,
                        paused: r.get(1)?,
                        failures: r.get::<_, i64>(2)?.clamp(0, i64::from(u32::MAX)) as u32,
                    })
                })?
                .collect()
        })
    }

    fn save_schedule(&self, state: &ScheduleState) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO schedules (schedule, paused, failures, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (schedule) DO UPDATE SET paused = excluded.paused,
                   failures = excluded.failures, updated_at = excluded.updated_at",
            )?
            .execute(params![state.schedule, state.paused, state.failures, now_ms()])
        })?;
        Ok(())
    }

    fn lease_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT owner FROM leases WHERE run_id = ?1 AND expires_at >= ?2")?
                .query_row(params![id, now_ms()], |r| r.get(0))
                .optional()
        })
    }

    fn orphaned_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows: Vec<RawSummary> = self.with(|c| {
            c.prepare_cached(
                "SELECT r.id, r.workflow, r.mode, r.status, r.created_at, r.finished_at, r.message
                   FROM runs r LEFT JOIN leases l ON l.run_id = r.id
                  WHERE r.status = 'running' AND json_extract(r.options, '$.trigger') IS NOT NULL
                    AND (l.run_id IS NULL OR l.expires_at < ?1)
                  ORDER BY r.created_at, r.rowid LIMIT ?2",
            )?
            .query_map(params![now_ms(), limit], read_summary)?
            .collect()
        })?;
        rows.into_iter().map(RawSummary::decode).collect()
    }

    fn release_run(&self, id: &str, by: &str) -> Result<(), StoreError> {
        self.unsynced(|c| {
            c.prepare_cached("DELETE FROM leases WHERE run_id = ?1 AND owner = ?2")?
                .execute(params![id, by])
        })?;
        Ok(())
    }

    fn claim_ticks(&self, ticks: &[(String, i64)], by: &str) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut won = Vec::with_capacity(ticks.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO ticks (schedule, tick, claimed_by, claimed_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| self.err(e))?;
            let at = now_ms();
            for (schedule, tick) in ticks {
                let n = stmt
                    .execute(params![schedule, tick, by, at])
                    .map_err(|e| self.err(e))?;
                won.push(n == 1);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(won)
    }

    fn approvals(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT step, coalesce(json_extract(body, '$.by'), '') FROM events
                 WHERE run_id=?1 AND kind='approval-granted' ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn prune(&self, older_than: std::time::Duration) -> Result<usize, StoreError> {
        self.prune_runs(older_than)
    }

    fn check(&self) -> Result<Vec<String>, StoreError> {
        self.check_file()
    }
}

/// A `runs` row, its words still text.
fn read_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSummary> {
    Ok(RawSummary {
        id: r.get(0)?,
        workflow: r.get(1)?,
        mode: r.get(2)?,
        status: r.get(3)?,
        created_at_ms: r.get(4)?,
        finished_at_ms: r.get(5)?,
        message: r.get(6)?,
    })
}
