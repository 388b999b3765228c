//! The run journal on PostgreSQL: the same tables, semantics and read API as the embedded SQLite
//! journal (`meridian_store::SqliteStore`), so the CLI can hold either.
//!
//! # The sync/async bridge, and what it costs
//!
//! [`EventSink::emit`] is synchronous and must be durable before it returns, while the driver is
//! async. Every [`PgJournal`] owns one dedicated OS thread running a current-thread tokio runtime
//! and one PostgreSQL connection; calls are sent to it over a channel and the caller blocks on a
//! reply channel. Chosen over `block_in_place` + `Handle::block_on` because it works from any
//! context — a current-thread runtime (where `block_in_place` panics), a multi-thread one, or no
//! runtime at all — and because it keeps the engine's tasks on their worker threads.
//!
//! Cost per call: two thread hand-offs (a few µs) plus one network round trip and one commit, using
//! statements prepared once per connection; the calling thread is blocked meanwhile, as with
//! SQLite's fsync. Events are written as the SQLite journal writes them (see `meridian_store`'s
//! docs): those that are not commit points wait in memory and go with the next commit point, a
//! whole group in one statement (`append`), so a sequential step costs one round trip and one
//! commit, and legs that finish together share them. All journal calls of one
//! `PgJournal` (and its clones) are serialized on that one connection, which also keeps each run's
//! events in order. The thread ends when the last clone is dropped.
//!
//! A call that fails because the connection dropped (server restart, failover of the journal
//! database) is retried once on a new connection; an append retried after an ambiguous commit
//! accepts the rows already there when each is byte-identical.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use meridian_protocol::{EventSink, KvStore};
use meridian_store::{
    EventRecord, Journal, KeyClaim, LegRecord, RawSummary, RunPage, RunQuery, RunRecord,
    RunSummary, StoreError, decode, decode_word,
};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

use crate::DistError;
use crate::conn::Target;
use crate::schema;

/// The server's clock in milliseconds since the epoch (transaction start time).
macro_rules! now_ms {
    () => {
        "(extract(epoch from now()) * 1000)::bigint"
    };
}

/// The `allowed` CTE of a fenced write: true without a fence (`$owner` NULL), else whether
/// `$owner` holds run `$1`'s lease, whose row it locks `FOR SHARE` so that a takeover commits
/// either before the check or after the write.
macro_rules! fence_cte {
    ($owner:literal) => {
        concat!(
            "allowed AS (SELECT ", $owner, "::text IS NULL OR EXISTS (SELECT 1 FROM meridian.leases WHERE run_id = $1::text AND owner = ",
            $owner,
            "::text FOR SHARE) AS ok)"
        )
    };
}

mod append;
mod cancels;
pub(crate) mod keys;
mod kv;
mod lease;

pub use append::{PgRun, PgRunJournal};
use kv::PgKv;

const CREATE_RUN: &str = concat!(
    "INSERT INTO meridian.runs (id, workflow, workflow_path, workflow_sha256, mode, status, inputs, options, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'running', $6::text::json, $7::text::json, ",
    now_ms!(),
    ", ",
    now_ms!(),
    ")"
);
/// Also drops a cancellation asked of the run before it ended: resuming a cancelled run asks
/// for it to go on. (A run still `running` is being taken over: a request stands.)
const REOPEN_RUN: &str = concat!(
    "WITH gone AS (DELETE FROM meridian.cancel_requests c USING meridian.runs r
                    WHERE c.run_id = $1 AND r.id = $1 AND r.status <> 'running')
     UPDATE meridian.runs SET status = 'running', finished_at = NULL, updated_at = ",
    now_ms!(),
    " WHERE id = $1"
);
const FORGET_LEGS: &str = "DELETE FROM meridian.legs WHERE run_id = $1 AND step = ANY($2)";
/// The queue's finished tasks of those steps (`step` or `step[leg]`): a retried leg keeps its
/// idempotency key, and `SUBMIT` would re-attach to the finished task and hand back its old
/// result instead of running the step again.
const FORGET_TASKS: &str = "DELETE FROM meridian.tasks
     WHERE run_id = $1 AND state <> 'running' AND split_part(step_id, '[', 1) = ANY($2)";
const MAX_SEQ: &str = "SELECT coalesce(max(seq), 0) FROM meridian.events WHERE run_id = $1";
const RUNS: &str = "SELECT id, workflow, mode, status, created_at, finished_at, message
     FROM meridian.runs ORDER BY created_at DESC, seq DESC LIMIT $1";
/// The filters of [`Journal::query_runs`]: workflow, status, mode, created at or after.
macro_rules! runs_where {
    () => {
        "WHERE ($1::text IS NULL OR workflow = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR mode = $3) AND ($4::bigint IS NULL OR created_at >= $4)"
    };
}
const RUNS_PAGE: &str = concat!(
    "SELECT id, workflow, mode, status, created_at, finished_at, message FROM meridian.runs ",
    runs_where!(),
    " ORDER BY created_at DESC, seq DESC LIMIT $5 OFFSET $6"
);
const RUNS_COUNT: &str = concat!("SELECT count(*) FROM meridian.runs ", runs_where!());
const RUN: &str = "SELECT id, workflow, mode, status, created_at, finished_at, message,
            workflow_path, workflow_sha256, inputs::text, options::text
     FROM meridian.runs WHERE id = $1";
const EVENTS: &str =
    "SELECT seq, at, body::text FROM meridian.events WHERE run_id = $1 ORDER BY seq";
const LEGS: &str =
    "SELECT step, leg, outcome, attempts, duration_ms, output::text, plan::text, error::text
     FROM meridian.legs WHERE run_id = $1 ORDER BY step COLLATE \"C\", leg COLLATE \"C\"";
const APPROVALS: &str = "SELECT step, coalesce(body->>'by', '') FROM meridian.events WHERE run_id = $1 AND kind = 'approval-granted' ORDER BY seq";
/// Ended runs (not running or interrupted, not waiting for an approval) that finished at least
/// $1 ms ago by the server's clock, with everything they own, tasks included (their sealed
/// inputs are of no use once the run ended). One statement, so one transaction: the foreign keys
/// are checked at its end, after the rows that refer to a run went with it.
const PRUNE: &str = concat!(
    "WITH doomed AS (
       SELECT id FROM meridian.runs
        WHERE finished_at IS NOT NULL AND finished_at <= ",
    now_ms!(),
    " - $1
          AND status NOT IN ('running', 'awaiting-approval')
        FOR UPDATE),
     ev AS (DELETE FROM meridian.events WHERE run_id IN (SELECT id FROM doomed)),
     lg AS (DELETE FROM meridian.legs WHERE run_id IN (SELECT id FROM doomed)),
     kv AS (DELETE FROM meridian.kv WHERE run_id IN (SELECT id FROM doomed)),
     tk AS (DELETE FROM meridian.tasks WHERE run_id IN (SELECT id FROM doomed)),
     le AS (DELETE FROM meridian.leases WHERE run_id IN (SELECT id FROM doomed)),
     cr AS (DELETE FROM meridian.cancel_requests WHERE run_id IN (SELECT id FROM doomed)),
     ti AS (DELETE FROM meridian.ticks WHERE claimed_at < ",
    now_ms!(),
    " - 604800000),
     ik AS (DELETE FROM meridian.idempotency_keys WHERE claimed_at < ",
    now_ms!(),
    " - 86400000),
     rn AS (DELETE FROM meridian.runs WHERE id IN (SELECT id FROM doomed) RETURNING 1)
     SELECT count(*) FROM rn"
);
/// What runs on the bridge thread: the connection (re-made after it drops) and the statements
/// prepared on it.
struct Session {
    target: Target,
    client: Option<Client>,
    prepared: HashMap<&'static str, Statement>,
}

impl Session {
    /// Why a fenced write of `owner` into `run_id` was refused: who holds the run's lease now.
    async fn lease_lost(&mut self, run_id: &str, owner: &str) -> DistError {
        const HOLDER: &str = "SELECT owner FROM meridian.leases WHERE run_id = $1";
        let holder = match self.stmt(HOLDER).await {
            Ok((c, st)) => c.query_opt(&st, &[&run_id]).await,
            Err(e) => return e,
        };
        match holder {
            Ok(h) => DistError::LeaseLost(meridian_store::lease_lost_message(
                run_id,
                owner,
                h.map(|r| r.get::<_, String>(0)).as_deref(),
            )),
            Err(e) => DistError::db("read the run's lease")(e),
        }
    }

    async fn client(&mut self) -> Result<&Client, DistError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.prepared.clear();
            self.client = None;
            let mut c = self.target.connect().await?;
            schema::ensure_on(&mut c, &self.target).await?;
            self.client = Some(c);
        }
        match &self.client {
            Some(c) => Ok(c),
            None => Err(DistError::Disconnected(self.target.name.clone())),
        }
    }

    async fn stmt(&mut self, sql: &'static str) -> Result<(&Client, Statement), DistError> {
        self.client().await?;
        let Some(client) = self.client.as_ref() else {
            return Err(DistError::Disconnected(self.target.name.clone()));
        };
        let stmt = match self.prepared.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = client
                    .prepare(sql)
                    .await
                    .map_err(DistError::db("prepare a journal statement"))?;
                self.prepared.insert(sql, s.clone());
                s
            }
        };
        Ok((client, stmt))
    }

    fn reset(&mut self) {
        self.client = None;
        self.prepared.clear();
    }
}

type Job = Box<dyn for<'a> FnOnce(&'a mut Session) -> BoxFuture<'a, ()> + Send>;

/// The journal on PostgreSQL. Cheap to clone (clones share the connection thread).
#[derive(Clone)]
pub struct PgJournal {
    tx: mpsc::UnboundedSender<Job>,
    target: Arc<str>,
}

impl std::fmt::Debug for PgJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal")
            .field("target", &self.target)
            .finish()
    }
}

impl PgJournal {
    /// Connects, creates or migrates the `meridian` schema, and starts the connection thread.
    /// Refuses a database whose Meridian schema is newer, or whose `meridian` schema is not
    /// Meridian's. Blocks the calling thread for the connection and the schema check.
    pub fn open(dsn: &str) -> Result<PgJournal, DistError> {
        let target = Target::parse(dsn)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let name: Arc<str> = target.name.clone().into();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DistError::Bridge(format!("cannot build its runtime: {e}")))?;
        std::thread::Builder::new()
            .name("meridian-journal".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut session = Session {
                        target,
                        client: None,
                        prepared: HashMap::new(),
                    };
                    while let Some(job) = rx.recv().await {
                        job(&mut session).await;
                    }
                });
            })
            .map_err(|e| DistError::Bridge(format!("cannot start its thread: {e}")))?;
        let journal = PgJournal { tx, target: name };
        journal.call(false, |s, _| {
            Box::pin(async move {
                s.client().await?;
                Ok(())
            })
        })?;
        Ok(journal)
    }

    /// Runs `f` on the connection thread and waits for its result. With `retry`, a failure of the
    /// connection is retried once on a new one (`f` is told it is the retry).
    fn call<T, F>(&self, retry: bool, f: F) -> Result<T, DistError>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a mut Session, bool) -> BoxFuture<'a, Result<T, DistError>>
            + Send
            + 'static,
    {
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |s: &mut Session| {
            Box::pin(async move {
                let mut r = f(&mut *s, false).await;
                if let Err(e) = &r
                    && e.is_connection()
                {
                    s.reset();
                    if retry {
                        tracing::warn!("journal: {e}; retrying on a new connection");
                        r = f(&mut *s, true).await;
                    }
                }
                let _ = reply_tx.send(r);
            })
        });
        let gone = || DistError::Bridge(format!("journal of {}", self.target));
        self.tx.send(job).map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())?
    }

    /// Records a new run (status `running`). Errors when the id exists.
    fn create(&self, run: &RunRecord) -> Result<(), DistError> {
        let run = run.clone();
        // Not retried: after an ambiguous commit the retry would meet its own row.
        self.call(false, move |s, _| {
            let run = run.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(CREATE_RUN).await?;
                c.execute(
                    &st,
                    &[
                        &run.id,
                        &run.workflow,
                        &run.workflow_path,
                        &run.workflow_sha256,
                        &run.mode.as_str(),
                        &run.inputs.to_string(),
                        &serde_json::to_string(&run.settings).unwrap_or_default(),
                    ],
                )
                .await
                .map_err(DistError::db("create a run"))?;
                Ok(())
            })
        })
    }

    /// Marks a run as being resumed (status back to `running`).
    fn reopen(&self, id: &str) -> Result<(), DistError> {
        let key = id.to_string();
        let n = self.call(true, move |s, _| {
            let id = key.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(REOPEN_RUN).await?;
                c.execute(&st, &[&id])
                    .await
                    .map_err(DistError::db("reopen a run"))
            })
        })?;
        if n == 0 {
            return Err(DistError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    /// Forgets the finished legs of `steps`, and their tasks in the queue (for `meridian retry
    /// RUN --from STEP`: they run again).
    fn forget(&self, id: &str, steps: &[String]) -> Result<(), DistError> {
        let id = id.to_string();
        let steps = steps.to_vec();
        self.call(true, move |s, _| {
            let (id, steps) = (id.clone(), steps.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(FORGET_LEGS).await?;
                c.execute(&st, &[&id, &steps])
                    .await
                    .map_err(DistError::db("forget legs"))?;
                let (c, st) = s.stmt(FORGET_TASKS).await?;
                c.execute(&st, &[&id, &steps])
                    .await
                    .map_err(DistError::db("forget the queue's tasks of retried steps"))?;
                Ok(())
            })
        })
    }

    /// Most recent runs first.
    fn runs_raw(&self, limit: usize) -> Result<Vec<RawSummary>, DistError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.call(true, move |s, _| {
            Box::pin(async move {
                let (c, st) = s.stmt(RUNS).await?;
                let rows = c
                    .query(&st, &[&limit])
                    .await
                    .map_err(DistError::db("list runs"))?;
                Ok(rows.iter().map(read_summary).collect())
            })
        })
    }

    /// One page of the runs matching `q`, and how many match.
    fn query_raw(&self, q: &RunQuery) -> Result<(Vec<RawSummary>, i64), DistError> {
        let workflow = q.workflow.clone();
        let status = q.status.map(|s| s.as_str().to_string());
        let mode = q.mode.map(|m| m.as_str().to_string());
        let since = q.since_ms;
        let limit = q.limit.min(i64::MAX as usize) as i64;
        let offset = q.offset.min(i64::MAX as usize) as i64;
        self.call(true, move |s, _| {
            let (workflow, status, mode) = (workflow.clone(), status.clone(), mode.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(RUNS_PAGE).await?;
                let rows = c
                    .query(&st, &[&workflow, &status, &mode, &since, &limit, &offset])
                    .await
                    .map_err(DistError::db("list runs"))?;
                let (c, st) = s.stmt(RUNS_COUNT).await?;
                let total: i64 = c
                    .query_one(&st, &[&workflow, &status, &mode, &since])
                    .await
                    .map_err(DistError::db("count runs"))?
                    .get(0);
                Ok((rows.iter().map(read_summary).collect(), total))
            })
        })
    }

    /// The run's row, its typed parts still text.
    fn run_raw(&self, id: &str) -> Result<Option<RawRun>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(RUN).await?;
                let row = c
                    .query_opt(&st, &[&id])
                    .await
                    .map_err(DistError::db("read a run"))?;
                Ok(row.map(|r| RawRun {
                    summary: read_summary(&r),
                    workflow_path: r.get(7),
                    workflow_sha256: r.get(8),
                    inputs: r.get(9),
                    settings: r.get(10),
                }))
            })
        })
    }

    fn events_raw(&self, id: &str) -> Result<Vec<(i64, i64, String)>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(EVENTS).await?;
                let rows = c
                    .query(&st, &[&id])
                    .await
                    .map_err(DistError::db("read events"))?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect())
            })
        })
    }

    fn legs_raw(&self, id: &str) -> Result<Vec<RawLeg>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(LEGS).await?;
                let rows = c
                    .query(&st, &[&id])
                    .await
                    .map_err(DistError::db("read legs"))?;
                Ok(rows
                    .iter()
                    .map(|r| RawLeg {
                        step: r.get(0),
                        leg: r.get(1),
                        outcome: r.get(2),
                        attempts: r.get::<_, i32>(3).max(0) as u32,
                        duration_ms: r.get::<_, i64>(4).max(0) as u64,
                        output: r.get(5),
                        plan: r.get(6),
                        error: r.get(7),
                    })
                    .collect())
            })
        })
    }

    /// Deletes the runs that ended at least `older_than_ms` ago; how many.
    fn prune_runs(&self, older_than_ms: i64) -> Result<usize, DistError> {
        self.call(true, move |s, _| {
            Box::pin(async move {
                let (c, st) = s.stmt(PRUNE).await?;
                let row = c
                    .query_one(&st, &[&older_than_ms])
                    .await
                    .map_err(DistError::db("prune runs"))?;
                Ok(row.get::<_, i64>(0).max(0) as usize)
            })
        })
    }

    /// Steps approved in earlier invocations of the run.
    fn approvals_raw(&self, id: &str) -> Result<Vec<(String, String)>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(APPROVALS).await?;
                let rows = c
                    .query(&st, &[&id])
                    .await
                    .map_err(DistError::db("read approvals"))?;
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                        ))
                    })
                    .collect())
            })
        })
    }
}

/// A `runs` row, its words still text.
fn read_summary(r: &tokio_postgres::Row) -> RawSummary {
    RawSummary {
        id: r.get(0),
        workflow: r.get(1),
        mode: r.get(2),
        status: r.get(3),
        created_at_ms: r.get(4),
        finished_at_ms: r.get(5),
        message: r.get(6),
    }
}

struct RawRun {
    summary: RawSummary,
    workflow_path: String,
    workflow_sha256: String,
    inputs: String,
    settings: String,
}

struct RawLeg {
    step: String,
    leg: String,
    outcome: String,
    attempts: u32,
    duration_ms: u64,
    output: String,
    plan: String,
    error: Option<String>,
}

fn store_err(e: DistError) -> StoreError {
    match e {
        DistError::NoSuchRun(id) => StoreError::NoSuchRun(id),
        e if e.is_connection() => StoreError::Unavailable(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

impl Journal for PgJournal {
    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.target)
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.create(run).map_err(store_err)
    }

    fn reopen_run(&self, id: &str) -> Result<(), StoreError> {
        self.reopen(id).map_err(store_err)
    }

    fn forget_legs(&self, id: &str, steps: &[String]) -> Result<(), StoreError> {
        self.forget(id, steps).map_err(store_err)
    }

    fn sink(&self, run_id: &str) -> Result<Arc<dyn EventSink>, StoreError> {
        Ok(Arc::new(self.journal(run_id).map_err(store_err)?))
    }

    fn fenced_sink(&self, run_id: &str, owner: &str) -> Result<Arc<dyn EventSink>, StoreError> {
        Ok(Arc::new(
            self.journal_fenced(run_id, Some(owner))
                .map_err(store_err)?,
        ))
    }

    fn kv(&self, run_id: &str) -> Arc<dyn KvStore> {
        Arc::new(PgKv::new(self, run_id, None))
    }

    fn fenced_kv(&self, run_id: &str, owner: &str) -> Arc<dyn KvStore> {
        Arc::new(PgKv::new(self, run_id, Some(owner)))
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        self.runs_raw(limit)
            .map_err(store_err)?
            .into_iter()
            .map(RawSummary::decode)
            .collect()
    }

    fn query_runs(&self, q: &RunQuery) -> Result<RunPage, StoreError> {
        let (rows, total) = self.query_raw(q).map_err(store_err)?;
        Ok(RunPage {
            runs: rows
                .into_iter()
                .map(RawSummary::decode)
                .collect::<Result<_, _>>()?,
            total: total.max(0) as usize,
        })
    }

    fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError> {
        let raw = self
            .run_raw(id)
            .map_err(store_err)?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        let summary = raw.summary.decode()?;
        let record = RunRecord {
            id: summary.id.clone(),
            workflow: summary.workflow.clone(),
            workflow_path: raw.workflow_path,
            workflow_sha256: raw.workflow_sha256,
            mode: summary.mode,
            inputs: decode(id, "inputs", &raw.inputs)?,
            settings: decode(id, "run settings", &raw.settings)?,
        };
        Ok((record, summary))
    }

    fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.events_raw(id)
            .map_err(store_err)?
            .into_iter()
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
        self.legs_raw(id)
            .map_err(store_err)?
            .into_iter()
            .map(|l| {
                let what = |field: &str| {
                    format!(
                        "{field} of {}",
                        meridian_protocol::display_id(&l.step, &l.leg)
                    )
                };
                Ok(LegRecord {
                    outcome: decode_word(id, &what("outcome"), &l.outcome)?,
                    attempts: l.attempts,
                    duration: std::time::Duration::from_millis(l.duration_ms),
                    output: decode(id, &what("output"), &l.output)?,
                    plan: decode(id, &what("plan"), &l.plan)?,
                    error: l
                        .error
                        .as_deref()
                        .map(|e| decode(id, &what("error"), e))
                        .transpose()?,
                    step: l.step,
                    leg: l.leg,
                })
            })
            .collect()
    }

    fn claim_tick(&self, schedule: &str, tick_ms: i64, by: &str) -> Result<bool, StoreError> {
        self.claim_tick_raw(schedule, tick_ms, by)
            .map_err(store_err)
    }

    fn lease_run(&self, id: &str, by: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        self.lease_raw(id, by, ms).map_err(store_err)
    }

    fn renew_runs(
        &self,
        ids: &[String],
        by: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        self.renew_raw(ids, by, ms).map_err(store_err)
    }

    fn orphaned_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.orphaned_raw(limit)
            .map_err(store_err)?
            .into_iter()
            .map(RawSummary::decode)
            .collect()
    }

    fn schedules(&self) -> Result<Vec<meridian_store::ScheduleState>, StoreError> {
        self.schedules_raw().map_err(store_err)
    }

    fn save_schedule(&self, state: &meridian_store::ScheduleState) -> Result<(), StoreError> {
        self.save_schedule_raw(state).map_err(store_err)
    }

    fn lease_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.lease_holder_raw(id).map_err(store_err)
    }

    fn claim_key(
        &self,
        key: &str,
        claim: &KeyClaim,
        ttl: std::time::Duration,
    ) -> Result<Option<KeyClaim>, StoreError> {
        self.claim_key_raw(key, claim, ttl).map_err(store_err)
    }

    fn release_key(&self, key: &str, run_id: &str) -> Result<(), StoreError> {
        self.release_key_raw(key, run_id).map_err(store_err)
    }

    fn request_cancel(&self, id: &str, why: &str) -> Result<(), StoreError> {
        self.request_cancel_raw(id, why).map_err(store_err)
    }

    fn cancel_requests(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.cancel_requests_raw(ids).map_err(store_err)
    }

    fn release_run(&self, id: &str, by: &str) -> Result<(), StoreError> {
        self.release_raw(id, by).map_err(store_err)
    }

    fn approvals(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.approvals_raw(id).map_err(store_err)
    }

    fn prune(&self, older_than: std::time::Duration) -> Result<usize, StoreError> {
        let ms = older_than.as_millis().min(i64::MAX as u128) as i64;
        self.prune_runs(ms).map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that cannot be reached is "unavailable" (the API answers 503, as `/readyz`),
    /// not a failure of the store (500).
    #[test]
    fn connection_failures_are_unavailable_the_rest_backend_errors() {
        let down = store_err(DistError::Disconnected("postgres://m@db:5432/s".into()));
        assert!(down.is_unavailable(), "{down}");
        let stalled = store_err(DistError::Stalled {
            target: "postgres://m@db:5432/s".into(),
            after: std::time::Duration::from_secs(10),
        });
        assert!(stalled.is_unavailable(), "{stalled}");
        let other = store_err(DistError::Config("bad".into()));
        assert!(!other.is_unavailable() && !other.is_not_found(), "{other}");
        assert!(store_err(DistError::NoSuchRun("r".into())).is_not_found());
    }
}
