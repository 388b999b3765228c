//! The run journal: every event of every run, so a killed runner can resume a run without
//! redoing finished steps.
//!
//! [`Journal`] is the one interface the runner, the CLI and the server use; it has two backends
//! that pass the same conformance suite ([`conformance`], feature `conformance`):
//! - [`SqliteStore`], the embedded default: one SQLite file in WAL mode with `synchronous=FULL`.
//!   The schema is versioned (`PRAGMA user_version`) and the file is marked as Meridian's
//!   (`PRAGMA application_id`), so a foreign or newer file is refused with a clear error and
//!   never overwritten. Opening reads only that header, so start-up does not grow with history;
//!   [`Journal::check`] is the full check, and damage met later is a [`StoreError::Corrupt`].
//! - the PostgreSQL journal of `meridian-distributed`, for several coordinators and workers.
//!
//! Both store typed values ([`RunRecord`], [`LegRecord`], [`Event`]) and read them back typed: a
//! value that no longer parses is a [`StoreError::CorruptValue`], never a silent `null`. Both
//! derive the `legs` table and the run's status from the event stream with one projection,
//! [`project`], in the same transaction as the event. Both hold the run's durable kv state
//! ([`Journal::kv`]), written one small transaction per `set`, so compensation after a resume (or
//! on another worker) sees what the step saved before it was interrupted.
//!
//! # What is durable, and why that is enough
//!
//! A durable commit (an fsync) is the cost of a journaled step, so a journal commits only at
//! *commit points* ([`Event::is_commit_point`]): leg-finished, approval-granted,
//! approval-required, compensation and run-finished. Every other event (run-started,
//! attempt-started, attempt-failed, step-finished, step-skipped) waits in memory
//! ([`pending::PendingEvents`]) and is written in the same transaction as the next commit point.
//! A sequential step therefore costs one commit, and legs that finish together share one: the
//! engine hands them over as one group, and the SQLite store's committer writes whatever runs
//! handed over while its previous commit was in flight in one transaction (group commit, with no
//! waiting to gather a batch).
//!
//! A round of finished legs is not fsynced before the engine hears back: the SQLite store
//! writes it to the WAL (so a killed process loses nothing) and its syncer thread fsyncs the WAL
//! behind the engine's back, while the next legs start; rounds written during one fsync share
//! the next. A leg that can act on the world (granted HTTP, SQL or a writable directory), and a
//! compensation, first waits for [`EventSink::durable`]: no step acts on a result that a power
//! cut could still take back. A leg that only computes runs ahead, and after a power cut reruns
//! with the legs whose rounds were lost (the WAL keeps a prefix of its commits, never a hole).
//! The argument in full is in `sqlite/durable.rs`.
//!
//! Resume keeps its guarantees because of what it reads:
//! - **finished steps never run again**: a leg counts as finished only through its leg-finished
//!   record, and that is a commit point, written before the engine lets its dependents start
//!   and durable before any of them acts;
//! - **an interrupted step runs again with the same idempotency key**: the key is derived from
//!   (run, step, leg), not from anything journaled, so an attempt needs no durable "started"
//!   record — Temporal does not persist an activity's start either. An attempt whose start was
//!   lost with the process is simply an interrupted attempt, run again under the same key (the
//!   step's own idempotency covers whatever it had already done);
//! - **outputs equal an uninterrupted run's**: outputs come from the leg-finished records, and
//!   skips and step outcomes are recomputed from them and the workflow's conditions;
//! - approvals given and compensations done are commit points, and so is the run's end, so an
//!   approval is never asked twice, an undo never repeated, and a finished run never reopens.
//!
//! What a kill loses is history only: the attempt-started and attempt-failed events of legs that
//! had not finished, and step-finished/skipped events after the last commit point. Events held
//! longer than 100 ms (a step that takes a while) are written early ([`progress`]; the SQLite
//! store without an fsync), so `runs show` from another process sees a running step's attempt
//! while it runs; steps that finish sooner pay nothing for it.
//!
//! A kill is not a power cut. The SQLite store writes a round that holds nothing but runs' ends
//! (run-finished and the events waiting with it) under `synchronous=NORMAL`, once the legs
//! before it are durable: written to the WAL before `emit` returns, so a killed process loses
//! nothing, but not fsynced. A power cut right after can lose that end: the run then reads as interrupted with every leg finished, and a
//! resume (or a server's takeover) records its end without running any step again. A one-step
//! run thus pays two fsyncs (its record, its step) instead of three.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod pending;
pub mod progress;
mod sqlite;

pub use sqlite::{RunJournal, SqliteRun, SqliteStore};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::duration::{ms, opt_ms};
use meridian_protocol::{
    Event, EventSink, KvStore, Mode, Outcome, PlannedChange, RunStatus, StepError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What a fenced sink's refused commit says (the same words from every journal).
pub fn lease_lost_message(run_id: &str, owner: &str, holder: Option<&str>) -> String {
    match holder {
        Some(h) => format!(
            "run {run_id}: `{owner}` lost the run's lease to `{h}`, which drives it now; nothing of this write was kept"
        ),
        None => format!(
            "run {run_id}: `{owner}` no longer holds the run's lease; nothing of this write was kept"
        ),
    }
}

/// A run journal: what runs exist, what happened in each, and each run's kv state.
pub trait Journal: Send + Sync {
    /// Where the journal lives, for messages (`/path/meridian.db`, `PostgreSQL db@host`).
    fn describe(&self) -> String;
    /// Records a new run (status `running`). Errors when the id exists.
    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError>;
    /// Marks a run as being resumed (status back to `running`).
    fn reopen_run(&self, id: &str) -> Result<(), StoreError>;
    /// Forgets the finished legs of `steps` (for `retry RUN --from STEP`).
    fn forget_legs(&self, id: &str, steps: &[String]) -> Result<(), StoreError>;
    /// An event sink that journals into this store under `run_id`, continuing its sequence: a
    /// commit point is durable, with every event before it, when `emit` returns (see
    /// [`EventSink`]).
    fn sink(&self, run_id: &str) -> Result<Arc<dyn EventSink>, StoreError>;
    /// [`Journal::sink`] for the holder of the run's lease ([`Journal::lease_run`]): every
    /// commit first checks, in its own transaction, that `owner` still holds the lease, and is
    /// refused (nothing of it written) when another server took the run over. A server that
    /// stalled past its lease thus cannot write into a run beside the one that took it over,
    /// whichever of the two writes first. Journals without leases ignore `owner`.
    fn fenced_sink(&self, run_id: &str, owner: &str) -> Result<Arc<dyn EventSink>, StoreError> {
        let _ = owner;
        self.sink(run_id)
    }
    /// The run's durable key-value state.
    fn kv(&self, run_id: &str) -> Arc<dyn KvStore>;
    /// [`Journal::kv`] for the holder of the run's lease: each write (`set`, `delete`) checks in
    /// its own transaction that `owner` still holds the lease, as [`Journal::fenced_sink`]'s
    /// commits do, so a stalled server's step cannot overwrite what the step's new attempt on
    /// the server that took the run over saved. Reads are not fenced. Journals without leases
    /// ignore `owner`.
    fn fenced_kv(&self, run_id: &str, owner: &str) -> Arc<dyn KvStore> {
        let _ = owner;
        self.kv(run_id)
    }
    /// Most recent runs first.
    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError>;
    /// The runs matching `q`, most recent first: `q.limit` of them after the first `q.offset`,
    /// and how many match in all. The stores answer it with one indexed query (a listing reads
    /// one page, not the history); this default filters [`Journal::runs`].
    fn query_runs(&self, q: &RunQuery) -> Result<RunPage, StoreError> {
        let matching: Vec<RunSummary> = self
            .runs(usize::MAX)?
            .into_iter()
            .filter(|r| q.matches(r))
            .collect();
        Ok(RunPage {
            total: matching.len(),
            runs: matching.into_iter().skip(q.offset).take(q.limit).collect(),
        })
    }
    /// The run's record and summary.
    fn run(&self, id: &str) -> Result<(RunRecord, RunSummary), StoreError>;
    /// Every event of a run, in order.
    fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError>;
    /// Finished legs of a run, ordered by (step, leg).
    fn legs(&self, id: &str) -> Result<Vec<LegRecord>, StoreError>;
    /// Claims one tick of a schedule for `by` (a server's name): `true` for exactly one caller
    /// per (schedule, tick) among every process sharing this journal, so servers that share it
    /// fire each tick once without a leader. Claims older than a week are dropped by `prune`.
    fn claim_tick(&self, schedule: &str, tick_ms: i64, by: &str) -> Result<bool, StoreError>;
    /// [`Journal::claim_tick`] for several (schedule, tick) at once, in order: a scheduler
    /// that finds many ticks due claims them with one durable commit where the backend can.
    fn claim_ticks(&self, ticks: &[(String, i64)], by: &str) -> Result<Vec<bool>, StoreError> {
        ticks
            .iter()
            .map(|(s, t)| self.claim_tick(s, *t, by))
            .collect()
    }
    /// Claims an `Idempotency-Key` for the run `claim.run_id` is about to start: `None` when this
    /// call took the key, else the claim that holds it. Exactly one caller wins among every
    /// process sharing this journal, so two servers given one new key at the same instant start
    /// one run. A claim older than `ttl`, or older than [`ORPHAN_CLAIM`] whose run was never
    /// recorded (its server died in between, or the run was pruned), is replaced. Released with
    /// [`Journal::release_key`] when the run cannot start; dropped by `prune` after a day.
    fn claim_key(
        &self,
        key: &str,
        claim: &KeyClaim,
        ttl: Duration,
    ) -> Result<Option<KeyClaim>, StoreError>;
    /// Gives a key back that `run_id` claimed and never used (its run could not start).
    fn release_key(&self, key: &str, run_id: &str) -> Result<(), StoreError>;
    /// Asks whoever drives run `id` to cancel it, saying why (who asked): a server that does
    /// not drive a run cannot stop it, the one that holds its lease can. The driver finds the
    /// request when it renews its leases ([`Journal::cancel_requests`]); a server taking an
    /// interrupted run over finds it before resuming. Durable; the first request stands, and
    /// it is kept until the run is pruned.
    fn request_cancel(&self, id: &str, why: &str) -> Result<(), StoreError>;
    /// Of `ids`, the runs whose cancellation was requested, with why; in one query.
    fn cancel_requests(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError>;
    /// Takes or renews the lease on driving run `id` for `by` (a server's name) for `ttl`:
    /// `true` when no one holds it, its holder let it expire, or `by` holds it already. Servers
    /// sharing a journal drive each run from one place, and take over the runs of a server
    /// that stopped renewing. A journal one process owns has nothing to share: always `true`.
    fn lease_run(&self, id: &str, by: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _ = (id, by, ttl);
        Ok(true)
    }
    /// [`Journal::lease_run`] for every run `by` drives, in one commit (one round trip): returns
    /// the ids whose lease another server holds now (`by` stalled longer than a lease).
    fn renew_runs(
        &self,
        ids: &[String],
        by: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let mut lost = Vec::new();
        for id in ids {
            if !self.lease_run(id, by, ttl)? {
                lost.push(id.clone());
            }
        }
        Ok(lost)
    }
    /// The runs a server may take over: status `running`, started by a server (a trigger), and
    /// no lease that has not expired; oldest first, at most `limit`. One query in the stores
    /// that keep leases (a takeover pass costs one read, not one per running run).
    fn orphaned_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let running = self.query_runs(&RunQuery {
            status: Some(RunStatus::Running),
            limit,
            ..RunQuery::default()
        })?;
        let mut orphaned = Vec::new();
        for s in running.runs.into_iter().rev() {
            if self.run(&s.id)?.0.settings.trigger.is_some() {
                orphaned.push(s);
            }
        }
        Ok(orphaned)
    }
    /// Who holds a lease on run `id` that has not expired, if anyone: so a refused
    /// [`Journal::lease_run`] can say who drives the run, and a process that knows the holder
    /// died (a killed `meridian run` on this machine) can free it with [`Journal::release_run`]
    /// instead of waiting for it to expire.
    fn lease_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        let _ = id;
        Ok(None)
    }
    /// Every schedule's saved state ([`Journal::save_schedule`]), by schedule id.
    fn schedules(&self) -> Result<Vec<ScheduleState>, StoreError> {
        Ok(Vec::new())
    }
    /// Saves a schedule's state durably: a pause holds across a server's restart and for
    /// every server sharing this journal.
    fn save_schedule(&self, state: &ScheduleState) -> Result<(), StoreError> {
        let _ = state;
        Ok(())
    }
    /// Gives up `by`'s lease on run `id` (the run ended, or waits for an approval).
    fn release_run(&self, id: &str, by: &str) -> Result<(), StoreError> {
        let _ = (id, by);
        Ok(())
    }
    /// Steps approved in earlier invocations of the run with who approved each, in the order
    /// they were approved.
    fn approvals(&self, id: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes the runs that finished at least `older_than` ago, with their events, legs and kv
    /// state, in one transaction; never a run that is running (or was interrupted: it may be
    /// resumed) or awaits an approval. Returns how many runs it deleted.
    fn prune(&self, older_than: Duration) -> Result<usize, StoreError>;
    /// Checks the whole journal, however long that takes (opening a journal checks only what
    /// is cheap): the backend's own consistency, then that every stored value reads back as its
    /// type. Returns the problems found, one line each; none when the journal is sound.
    fn check(&self) -> Result<Vec<String>, StoreError> {
        check_values(self)
    }
}

/// Which runs a listing wants (every filter optional), and which page of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunQuery {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub mode: Option<Mode>,
    /// Runs created at or after this (Unix ms).
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

impl RunQuery {
    /// Whether `r` passes the filters (not the paging).
    pub fn matches(&self, r: &RunSummary) -> bool {
        self.workflow.as_ref().is_none_or(|w| *w == r.workflow)
            && self.status.is_none_or(|s| s == r.status)
            && self.mode.is_none_or(|m| m == r.mode)
            && self.since_ms.is_none_or(|t| r.created_at_ms >= t)
    }
}

/// Every run matching `q`, most recent first, read from the store a page (`q.limit` runs) at a
/// time: a caller that stops early reads no further page.
pub fn query_all(
    journal: &dyn Journal,
    q: RunQuery,
) -> impl Iterator<Item = Result<RunSummary, StoreError>> + '_ {
    let mut q = RunQuery {
        limit: q.limit.max(1),
        ..q
    };
    let mut page = std::collections::VecDeque::new();
    let mut done = false;
    std::iter::from_fn(move || {
        if page.is_empty() && !done {
            match journal.query_runs(&q) {
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
                Ok(p) => {
                    done = p.runs.len() < q.limit;
                    q.offset += p.runs.len();
                    page.extend(p.runs);
                }
            }
        }
        page.pop_front().map(Ok)
    })
}

/// One page of a listing, and how many runs match the query in all.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    pub total: usize,
}

/// Reads every run, event and leg back typed: a value that does not (edited by hand, a damaged
/// file) is a problem, named with its run. Errors only when the journal cannot be read at all.
pub fn check_values<J: Journal + ?Sized>(journal: &J) -> Result<Vec<String>, StoreError> {
    fn note(problems: &mut Vec<String>, r: Result<(), StoreError>) -> Result<(), StoreError> {
        match r {
            Err(e @ StoreError::CorruptValue { .. }) => {
                problems.push(e.to_string());
                Ok(())
            }
            other => other,
        }
    }
    let mut problems = Vec::new();
    let runs = match journal.runs(usize::MAX) {
        Ok(r) => r,
        Err(e) => {
            note(&mut problems, Err(e))?;
            return Ok(problems);
        }
    };
    for r in &runs {
        note(&mut problems, journal.run(&r.id).map(drop))?;
        note(&mut problems, journal.events(&r.id).map(drop))?;
        note(&mut problems, journal.legs(&r.id).map(drop))?;
    }
    Ok(problems)
}

/// What a run was started with; enough to resume it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    /// Path of the workflow file (absolute).
    pub workflow_path: String,
    /// sha256 of the workflow file's text: resume refuses a changed file.
    pub workflow_sha256: String,
    pub mode: Mode,
    /// Typed inputs (masked).
    pub inputs: Json,
    /// How the run was started, reused on resume.
    pub settings: RunSettings,
}

/// The options a run was started with, which `resume` and `retry` keep.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSettings {
    /// `--max-parallel`, when given.
    #[serde(default)]
    pub max_parallel: Option<usize>,
    /// Steps approved on the command line when the run started.
    #[serde(default)]
    pub approve: Vec<String>,
    /// The run's time budget (`--timeout`), applied to each invocation (start, every resume).
    #[serde(default, rename = "timeout_ms", with = "opt_ms")]
    pub timeout: Option<Duration>,
    /// The inputs as given (masked), re-typed on resume so a changed default cannot slip in.
    #[serde(default)]
    pub raw_inputs: BTreeMap<String, String>,
    /// What started the run when not a person at a terminal: `api`, `schedule:WORKFLOW#N`. A
    /// server resumes the interrupted runs it started; never a CLI's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The `Idempotency-Key` of the request that started the run (a server's), so a retried
    /// request finds the run after a restart too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The secrets file the run was started with (its path, absolute; never what it holds), so
    /// the command printed to resume a waiting run names it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_file: Option<String>,
    /// What pinned each component when the run started (`uses` as written → `sha256:…` of the
    /// component's bytes, or `oci://…@sha256:…` of the manifest a tag named then): what ran,
    /// and what a resume must run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, String>,
}

/// How long a key's claim may point at a run that is not in the journal before another request
/// may take the key: a run's record follows its claim within milliseconds, so an older claim
/// without one belongs to a server that died in between, or to a pruned run.
pub const ORPHAN_CLAIM: Duration = Duration::from_secs(30);

/// An `Idempotency-Key`'s claim ([`Journal::claim_key`]): the run it started and what the
/// request asked for (opaque to the journal; the server compares a retry's request with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyClaim {
    pub run_id: String,
    pub request: String,
    /// When the claim was made (the journal's clock, milliseconds since the epoch); ignored
    /// when claiming.
    pub claimed_at_ms: i64,
}

/// What a server keeps of a schedule across restarts (and shares with the servers of its
/// journal): why it does not fire, and its runs that failed in a row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The schedule's id (`WORKFLOW#N`, `WORKFLOW@config#N`).
    pub schedule: String,
    /// Why it is paused (a person paused it, or its runs kept failing); `None` fires.
    pub paused: Option<String>,
    /// Consecutive runs that failed or timed out.
    pub failures: u32,
}

/// One line of `meridian runs list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub mode: Mode,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub message: Option<String>,
}

/// A `runs` row as a backend reads it, before its words (mode, status) are parsed.
#[derive(Clone, Debug)]
pub struct RawSummary {
    pub id: String,
    pub workflow: String,
    pub mode: String,
    pub status: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub message: Option<String>,
}

impl RawSummary {
    /// Parses the words; one that does not parse is a [`StoreError::CorruptValue`].
    pub fn decode(self) -> Result<RunSummary, StoreError> {
        let status: RunStatus = decode_word(&self.id, "status", &self.status)?;
        Ok(RunSummary {
            mode: decode_word(&self.id, "mode", &self.mode)?,
            id: self.id,
            workflow: self.workflow,
            created_at_ms: self.created_at_ms,
            // A run waiting at a gate has not ended: its stop there is journaled like an end
            // (`run-finished`), and the console said "Ended … took 7 ms" of a waiting run.
            finished_at_ms: self
                .finished_at_ms
                .filter(|_| status != RunStatus::AwaitingApproval),
            status,
            message: self.message,
        })
    }
}

/// One journaled event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub event: Event,
}

/// A finished leg as the journal has it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LegRecord {
    pub step: String,
    pub leg: String,
    pub outcome: Outcome,
    pub attempts: u32,
    #[serde(rename = "duration_ms", with = "ms")]
    pub duration: Duration,
    pub output: Json,
    pub plan: Vec<PlannedChange>,
    pub error: Option<StepError>,
}

/// What an event changes besides the event log itself: the one projection both journals apply,
/// in the same transaction as the event.
#[derive(Debug, PartialEq)]
pub enum Projection<'a> {
    /// Insert or replace the leg's row.
    Leg(LegRecord),
    /// The run ended: status and message.
    Finished { status: RunStatus, message: &'a str },
    /// Nothing beyond the event itself. (A run's `updated_at` moves with its status, not
    /// with every event: a row rewritten at every commit costs a page per commit.)
    EventOnly,
}

/// The projection of one event.
pub fn project(event: &Event) -> Projection<'_> {
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
        } => Projection::Leg(LegRecord {
            step: step.clone(),
            leg: leg.clone(),
            outcome: *outcome,
            attempts: *attempts,
            duration: *duration,
            output: output.clone(),
            plan: plan.clone(),
            error: error.clone(),
        }),
        Event::RunFinished {
            status, message, ..
        } => Projection::Finished {
            status: *status,
            message,
        },
        _ => Projection::EventOnly,
    }
}

/// Reads a journaled JSON value back into its type; what does not parse is named, not nulled.
pub fn decode<T: serde::de::DeserializeOwned>(
    run: &str,
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::CorruptValue {
        run: run.to_string(),
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// Parses a journaled enum word (`mode`, `status`, `outcome`).
pub fn decode_word<T: std::str::FromStr<Err = String>>(
    run: &str,
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    text.parse().map_err(|detail| StoreError::CorruptValue {
        run: run.to_string(),
        what: what.to_string(),
        detail,
    })
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
    /// The journal has no run with this id: the caller's mistake, not the store's.
    #[error("run `{0}` not found (see `meridian runs list`)")]
    NoSuchRun(String),
    /// A stored value does not read back as its type (edited by hand, or a damaged file).
    #[error(
        "run `{run}`: the journaled {what} does not read back ({detail}); the journal was changed outside meridian — keep it for inspection"
    )]
    CorruptValue {
        run: String,
        what: String,
        detail: String,
    },
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
    /// An fsync of the journal failed: nothing written since the last durable point is known
    /// to be on disk, so the store takes no more writes (see `sqlite::durable`).
    #[error(
        "state store: {0}; nothing more is written — check the disk, then `meridian resume` the run"
    )]
    Durability(String),
    /// Another backend (PostgreSQL) failed; the text names the server and the operation.
    #[error("{0}")]
    Backend(String),
    /// The store cannot be reached now (its connection is down or does not answer): worth
    /// trying again later, unlike [`StoreError::Backend`].
    #[error("{0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the error is the caller's (an unknown run id) rather than the store's.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NoSuchRun(_))
    }

    /// Whether the store could not be reached (a retry later may succeed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
