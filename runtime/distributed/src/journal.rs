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
//! Cost per call: two thread hand-offs (a few µs) plus one network round trip and one commit (each
//! event is one single-statement transaction, using statements prepared once per connection); the
//! calling thread is blocked meanwhile, as with SQLite's fsync. All journal calls of one
//! `PgJournal` (and its clones) are serialized on that one connection, which also keeps each run's
//! events in order. The thread ends when the last clone is dropped.
//!
//! A call that fails because the connection dropped (server restart, failover of the journal
//! database) is retried once on a new connection; an append retried after an ambiguous commit
//! accepts the row already there when it is byte-identical.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use meridian_engine::{Event, EventSink, SinkError};
use meridian_store::{EventRecord, LegRecord, RunRecord, RunSummary};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
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

const CREATE_RUN: &str = concat!(
    "INSERT INTO meridian.runs (id, workflow, workflow_path, workflow_sha256, mode, status, inputs, options, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, ",
    now_ms!(),
    ", ",
    now_ms!(),
    ")"
);
const REOPEN_RUN: &str = concat!(
    "UPDATE meridian.runs SET status = 'running', finished_at = NULL, updated_at = ",
    now_ms!(),
    " WHERE id = $1"
);
const FORGET_LEGS: &str = "DELETE FROM meridian.legs WHERE run_id = $1 AND step = ANY($2)";
const MAX_SEQ: &str = "SELECT coalesce(max(seq), 0) FROM meridian.events WHERE run_id = $1";
const RUNS: &str = "SELECT id, workflow, mode, status, created_at, finished_at, message
     FROM meridian.runs ORDER BY created_at DESC, seq DESC LIMIT $1";
const RUN: &str = "SELECT id, workflow, workflow_path, workflow_sha256, mode, inputs, options, status, created_at, finished_at, message
     FROM meridian.runs WHERE id = $1";
const EVENTS: &str =
    "SELECT seq, at, body::text FROM meridian.events WHERE run_id = $1 ORDER BY seq";
const LEGS: &str =
    "SELECT step, leg, outcome, attempts, duration_ms, output::text, plan::text, error::text
     FROM meridian.legs WHERE run_id = $1";
const APPROVALS: &str =
    "SELECT step FROM meridian.events WHERE run_id = $1 AND kind = 'approval-granted' ORDER BY seq";
const EVENT_BODY: &str = "SELECT body::text FROM meridian.events WHERE run_id = $1 AND seq = $2";

// One statement per event, so one round trip and one commit: data-modifying CTEs all run.
const APPEND: &str = concat!(
    "WITH ev AS (INSERT INTO meridian.events (run_id, seq, at, kind, step, body)
                 VALUES ($1, $2, ",
    now_ms!(),
    ", $3, $4, $5::text::json) RETURNING at)
     UPDATE meridian.runs SET updated_at = ev.at FROM ev WHERE id = $1"
);
const APPEND_LEG: &str = concat!(
    "WITH ev AS (INSERT INTO meridian.events (run_id, seq, at, kind, step, body)
                 VALUES ($1, $2, ",
    now_ms!(),
    ", $3, $4, $5::text::json) RETURNING at),
          lg AS (INSERT INTO meridian.legs (run_id, step, leg, outcome, attempts, duration_ms, output, plan, error)
                 VALUES ($1, $4, $6, $7, $8, $9, $10::text::json, $11::text::json, $12::text::json)
                 ON CONFLICT (run_id, step, leg) DO UPDATE SET outcome = EXCLUDED.outcome,
                   attempts = EXCLUDED.attempts, duration_ms = EXCLUDED.duration_ms,
                   output = EXCLUDED.output, plan = EXCLUDED.plan, error = EXCLUDED.error)
     UPDATE meridian.runs SET updated_at = ev.at FROM ev WHERE id = $1"
);
const APPEND_FINISH: &str = concat!(
    "WITH ev AS (INSERT INTO meridian.events (run_id, seq, at, kind, step, body)
                 VALUES ($1, $2, ",
    now_ms!(),
    ", $3, $4, $5::text::json) RETURNING at)
     UPDATE meridian.runs SET status = $6, message = $7, finished_at = ev.at, updated_at = ev.at
       FROM ev WHERE id = $1"
);

/// What runs on the bridge thread: the connection (re-made after it drops) and the statements
/// prepared on it.
struct Session {
    target: Target,
    client: Option<Client>,
    prepared: HashMap<&'static str, Statement>,
}

impl Session {
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
    pub fn create_run(&self, run: &RunRecord) -> Result<(), DistError> {
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
                        &run.mode,
                        &run.inputs,
                        &run.options,
                    ],
                )
                .await
                .map_err(DistError::db("create a run"))?;
                Ok(())
            })
        })
    }

    /// Marks a run as being resumed (status back to `running`).
    pub fn reopen_run(&self, id: &str) -> Result<(), DistError> {
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

    /// Forgets the finished legs of `steps` (for `meridian retry RUN --from STEP`).
    pub fn forget_legs(&self, id: &str, steps: &[String]) -> Result<(), DistError> {
        let id = id.to_string();
        let steps = steps.to_vec();
        self.call(true, move |s, _| {
            let (id, steps) = (id.clone(), steps.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(FORGET_LEGS).await?;
                c.execute(&st, &[&id, &steps])
                    .await
                    .map_err(DistError::db("forget legs"))?;
                Ok(())
            })
        })
    }

    /// An event sink that journals into this database under `run_id`, continuing its sequence.
    pub fn journal(&self, run_id: &str) -> Result<PgRunJournal, DistError> {
        let id = run_id.to_string();
        let seq = self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(MAX_SEQ).await?;
                let row = c
                    .query_one(&st, &[&id])
                    .await
                    .map_err(DistError::db("read the event sequence"))?;
                Ok(row.get::<_, i64>(0))
            })
        })?;
        Ok(PgRunJournal {
            journal: self.clone(),
            run_id: run_id.to_string(),
            seq: Mutex::new(seq),
        })
    }

    /// Most recent runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, DistError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.call(true, move |s, _| {
            Box::pin(async move {
                let (c, st) = s.stmt(RUNS).await?;
                let rows = c
                    .query(&st, &[&limit])
                    .await
                    .map_err(DistError::db("list runs"))?;
                Ok(rows
                    .iter()
                    .map(|r| RunSummary {
                        id: r.get(0),
                        workflow: r.get(1),
                        mode: r.get(2),
                        status: r.get(3),
                        created_at_ms: r.get(4),
                        finished_at_ms: r.get(5),
                        message: r.get(6),
                    })
                    .collect())
            })
        })
    }

    /// The run's record and summary.
    pub fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), DistError> {
        let key = id.to_string();
        let found = self.call(true, move |s, _| {
            let id = key.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(RUN).await?;
                let row = c
                    .query_opt(&st, &[&id])
                    .await
                    .map_err(DistError::db("read a run"))?;
                Ok(row.map(|r| {
                    (
                        RunRecord {
                            id: r.get(0),
                            workflow: r.get(1),
                            workflow_path: r.get(2),
                            workflow_sha256: r.get(3),
                            mode: r.get(4),
                            inputs: r.get(5),
                            options: r.get(6),
                        },
                        RunSummary {
                            id: r.get(0),
                            workflow: r.get(1),
                            mode: r.get(4),
                            status: r.get(7),
                            created_at_ms: r.get(8),
                            finished_at_ms: r.get(9),
                            message: r.get(10),
                        },
                    )
                }))
            })
        })?;
        found.ok_or_else(|| DistError::NoSuchRun(id.to_string()))
    }

    /// Every event of a run, in order.
    pub fn events(&self, id: &str) -> Result<Vec<EventRecord>, DistError> {
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
                    .map(|r| EventRecord {
                        seq: r.get(0),
                        at_ms: r.get(1),
                        body: parse_json(r.get(2)),
                    })
                    .collect())
            })
        })
    }

    /// Finished legs of a run, keyed by (step, leg).
    pub fn legs(&self, id: &str) -> Result<HashMap<(String, String), LegRecord>, DistError> {
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
                    .map(|r| {
                        let l = LegRecord {
                            step: r.get(0),
                            leg: r.get(1),
                            outcome: r.get(2),
                            attempts: r.get::<_, i32>(3).max(0) as u32,
                            duration_ms: r.get::<_, i64>(4).max(0) as u64,
                            output: parse_json(r.get(5)),
                            plan: serde_json::from_str(r.get(6)).unwrap_or_default(),
                            error: r
                                .get::<_, Option<&str>>(7)
                                .and_then(|e| serde_json::from_str(e).ok()),
                        };
                        ((l.step.clone(), l.leg.clone()), l)
                    })
                    .collect())
            })
        })
    }

    /// Steps approved in earlier invocations of the run.
    pub fn approvals(&self, id: &str) -> Result<Vec<String>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(APPROVALS).await?;
                let rows = c
                    .query(&st, &[&id])
                    .await
                    .map_err(DistError::db("read approvals"))?;
                Ok(rows.iter().filter_map(|r| r.get(0)).collect())
            })
        })
    }

    fn append(&self, run_id: &str, seq: i64, event: &Event) -> Result<(), DistError> {
        let row = AppendRow::new(run_id, seq, event);
        self.call(true, move |s, retry| {
            let row = row.clone();
            Box::pin(async move { row.write(s, retry).await })
        })
    }
}

/// One event, flattened for the append statements.
#[derive(Clone)]
struct AppendRow {
    run_id: String,
    seq: i64,
    kind: String,
    step: Option<String>,
    body: String,
    extra: Extra,
}

#[derive(Clone)]
enum Extra {
    None,
    Leg {
        leg: String,
        outcome: String,
        attempts: i32,
        duration_ms: i64,
        output: String,
        plan: String,
        error: Option<String>,
    },
    Finish {
        status: String,
        message: String,
    },
}

impl AppendRow {
    fn new(run_id: &str, seq: i64, event: &Event) -> AppendRow {
        let body = serde_json::to_value(event).unwrap_or(Json::Null);
        let kind = body
            .get("event")
            .and_then(Json::as_str)
            .unwrap_or("unknown")
            .to_string();
        let step = body.get("step").and_then(Json::as_str).map(str::to_string);
        let extra = match event {
            Event::LegFinished {
                leg,
                outcome,
                attempts,
                duration,
                output,
                plan,
                error,
                ..
            } => Extra::Leg {
                leg: leg.clone(),
                outcome: outcome.as_str().to_string(),
                attempts: (*attempts).min(i32::MAX as u32) as i32,
                duration_ms: duration.as_millis().min(i64::MAX as u128) as i64,
                output: output.to_string(),
                plan: serde_json::to_string(plan).unwrap_or_default(),
                error: error
                    .as_ref()
                    .map(|e| serde_json::to_string(e).unwrap_or_default()),
            },
            Event::RunFinished {
                status, message, ..
            } => Extra::Finish {
                status: status.as_str().to_string(),
                message: message.clone(),
            },
            _ => Extra::None,
        };
        AppendRow {
            run_id: run_id.to_string(),
            seq,
            kind,
            step,
            body: body.to_string(),
            extra,
        }
    }

    async fn write(&self, s: &mut Session, retry: bool) -> Result<(), DistError> {
        let res = match &self.extra {
            Extra::None => {
                let (c, st) = s.stmt(APPEND).await?;
                c.execute(
                    &st,
                    &[&self.run_id, &self.seq, &self.kind, &self.step, &self.body],
                )
                .await
            }
            Extra::Leg {
                leg,
                outcome,
                attempts,
                duration_ms,
                output,
                plan,
                error,
            } => {
                let (c, st) = s.stmt(APPEND_LEG).await?;
                c.execute(
                    &st,
                    &[
                        &self.run_id,
                        &self.seq,
                        &self.kind,
                        &self.step,
                        &self.body,
                        leg,
                        outcome,
                        attempts,
                        duration_ms,
                        output,
                        plan,
                        error,
                    ],
                )
                .await
            }
            Extra::Finish { status, message } => {
                let (c, st) = s.stmt(APPEND_FINISH).await?;
                c.execute(
                    &st,
                    &[
                        &self.run_id,
                        &self.seq,
                        &self.kind,
                        &self.step,
                        &self.body,
                        status,
                        message,
                    ],
                )
                .await
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) if retry && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // The first try may have committed before its connection dropped.
                let (c, st) = s.stmt(EVENT_BODY).await?;
                let row = c
                    .query_opt(&st, &[&self.run_id, &self.seq])
                    .await
                    .map_err(DistError::db("check a retried event"))?;
                match row.map(|r| r.get::<_, String>(0)) {
                    Some(existing) if existing == self.body => Ok(()),
                    _ => Err(DistError::Db {
                        op: "append an event",
                        source: e,
                    }),
                }
            }
            Err(source) => Err(DistError::Db {
                op: "append an event",
                source,
            }),
        }
    }
}

fn parse_json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or(Json::Null)
}

/// The journal of one run: an [`EventSink`] whose every `emit` is one durable commit on the
/// journal's connection thread.
pub struct PgRunJournal {
    journal: PgJournal,
    run_id: String,
    seq: Mutex<i64>,
}

impl std::fmt::Debug for PgRunJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRunJournal")
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl EventSink for PgRunJournal {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        // Held across the write: the sequence number and the row go together, in order.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        self.journal
            .append(&self.run_id, *seq + 1, event)
            .map_err(|e| SinkError(e.to_string()))?;
        *seq += 1;
        Ok(())
    }
}
