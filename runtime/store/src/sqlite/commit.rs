//! Writing events: each run's [`RunJournal`] holds its events until a commit point, and the
//! store's committer writes what every run handed over meanwhile in one transaction.
//!
//! # Group commit
//!
//! A commit point's rows join a queue. The first thread to find no commit running leads: it
//! takes everything queued and writes it in one transaction (one WAL fsync under
//! `synchronous=FULL`), then wakes the others; whoever still waits for its rows leads the next
//! round with what queued up during this one. Nobody sleeps to gather a batch, so a lone step
//! pays exactly one commit and no added latency, and runs (or legs emitted from several threads)
//! finishing while a commit is in flight share the next one. Legs that finish together in one run
//! arrive as one group already (the engine hands them over with `EventSink::emit_all`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use rusqlite::{OptionalExtension, params};

use meridian_protocol::event::Durable;

use super::SqliteStore;
use super::durable::Syncer;
use crate::StoreError;
use crate::pending::{CommitRows, EventRow, RowProjection, RunSink};

/// The queue of rows waiting for a commit, shared by every handle of one store.
#[derive(Debug)]
pub(super) struct Committer {
    queue: Mutex<Queue>,
    turn: Condvar,
    /// Transactions that committed events, for tests and benchmarks.
    commits: AtomicU64,
    /// Fsyncs the rounds of finished legs written without one.
    pub(super) syncer: Syncer,
}

impl Committer {
    pub(super) fn new(wal: std::path::PathBuf) -> Committer {
        Committer {
            queue: Mutex::default(),
            turn: Condvar::new(),
            commits: AtomicU64::new(0),
            syncer: Syncer::new(wal),
        }
    }
}

/// How a round is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Finished legs only: written without an fsync, flushed by the syncer behind the engine's
    /// back (see `durable`).
    Behind,
    /// Runs' ends (and progress): written without an fsync once the rounds before are durable
    /// (see the crate docs: a resume repairs an end a power cut lost).
    NoSync,
    /// Anything else (approvals, compensations, measurements): fsynced before it returns.
    Full,
}

/// A round's [`Durability`], from its commit points.
fn durability(round: &[(u64, Batch)]) -> Durability {
    let points = || {
        round
            .iter()
            .flat_map(|(_, b)| &b.rows)
            .filter(|r| r.commit_point)
    };
    let is_end = |r: &EventRow| matches!(r.projection, RowProjection::Finished { .. });
    let is_leg = |r: &EventRow| matches!(r.projection, RowProjection::Leg(_));
    if points().all(is_end) {
        // A batch of progress (held events written early, see `progress`) holds no commit
        // point at all.
        Durability::NoSync
    } else if points().all(is_leg) {
        Durability::Behind
    } else {
        Durability::Full
    }
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<(u64, Batch)>,
    next_ticket: u64,
    /// A thread is writing a round.
    leading: bool,
    /// Threads waiting for a round to end (a lone writer wakes nobody: no futex call).
    sleepers: usize,
    /// Outcome of each written ticket, until its owner takes it.
    results: HashMap<u64, Result<(), String>>,
}

#[derive(Debug)]
struct Batch {
    run_id: String,
    /// Written only while this owner holds the run's lease.
    fence: Option<String>,
    rows: Vec<EventRow>,
}

impl SqliteStore {
    /// Commits `rows` of `run_id`, possibly in one transaction with other runs' rows; returns
    /// when they are durable.
    pub(super) fn commit_rows(
        &self,
        run_id: &str,
        fence: Option<&str>,
        rows: Vec<EventRow>,
    ) -> Result<(), String> {
        let c = &self.committer;
        let lock = || c.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut q = lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((
            ticket,
            Batch {
                run_id: run_id.to_string(),
                fence: fence.map(str::to_string),
                rows,
            },
        ));
        loop {
            if let Some(result) = q.results.remove(&ticket) {
                return result;
            }
            if q.leading {
                q.sleepers += 1;
                q = c.turn.wait(q).unwrap_or_else(|p| p.into_inner());
                q.sleepers -= 1;
                continue;
            }
            q.leading = true;
            let round = std::mem::take(&mut q.waiting);
            drop(q);
            let result = self.write(&round).map_err(|e| e.to_string());
            q = lock();
            for (i, (t, _)) in round.iter().enumerate() {
                // The round's error, else this batch's refusal.
                let r = match &result {
                    Ok(refused) => refused[i].clone().map_or(Ok(()), Err),
                    Err(e) => Err(e.clone()),
                };
                q.results.insert(*t, r);
            }
            q.leading = false;
            if q.sleepers > 0 {
                c.turn.notify_all();
            }
        }
    }

    /// One transaction for a round of batches: each row into `events`, its projection into
    /// `legs` or `runs`, made durable as [`durability`] says.
    ///
    /// Returns, for each batch, why it was refused: a fenced batch whose owner lost the run's
    /// lease is not written (the round's other batches are).
    fn write(&self, round: &[(u64, Batch)]) -> Result<Vec<Option<String>>, StoreError> {
        let syncer = &self.committer.syncer;
        if let Some(why) = syncer.failed() {
            return Err(StoreError::Durability(why.to_string()));
        }
        let durability = durability(round);
        if durability == Durability::NoSync && round.iter().any(|(_, b)| has_end(b)) {
            // A run is never reported finished while its legs are not durable.
            syncer.wait_blocking().map_err(StoreError::Durability)?;
        }
        let mut conn = self.lock();
        let unsynced = durability != Durability::Full;
        if unsynced {
            conn.execute_batch("PRAGMA synchronous=NORMAL")
                .map_err(|e| self.err(e))?;
        }
        let written = (|| {
            // Fenced: the write lock first, so a takeover commits before the check or after
            // the write, never between the two.
            let fenced = round.iter().any(|(_, b)| b.fence.is_some());
            let tx = conn.transaction_with_behavior(if fenced {
                rusqlite::TransactionBehavior::Immediate
            } else {
                rusqlite::TransactionBehavior::Deferred
            })?;
            let mut refused = Vec::with_capacity(round.len());
            for (_, b) in round {
                let why = match &b.fence {
                    Some(owner) => lease_lost(&tx, &b.run_id, owner)?,
                    None => None,
                };
                if why.is_none() {
                    write_batch(&tx, b)?;
                }
                refused.push(why);
            }
            tx.commit()?;
            Ok(refused)
        })();
        if unsynced {
            // Everything else (run records, approvals, kv, claims) stays fsynced.
            conn.execute_batch("PRAGMA synchronous=FULL")
                .map_err(|e| self.err(e))?;
        }
        drop(conn);
        let refused = written.map_err(|e| self.err(e))?;
        match durability {
            Durability::Behind => syncer.written(),
            Durability::Full => syncer.covered(),
            Durability::NoSync => {}
        }
        self.committer.commits.fetch_add(1, Ordering::Relaxed);
        Ok(refused)
    }

    /// Transactions that committed events through this store (and its clones) so far.
    pub fn commits(&self) -> u64 {
        self.committer.commits.load(Ordering::Relaxed)
    }
}

/// Why `owner` may not write into `run_id` any more: another holds the run's lease, or none
/// does (the lease is released only once the run's end is written).
pub(super) fn lease_lost(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    owner: &str,
) -> rusqlite::Result<Option<String>> {
    let holder: Option<String> = tx
        .prepare_cached("SELECT owner FROM leases WHERE run_id = ?1")?
        .query_row(params![run_id], |r| r.get(0))
        .optional()?;
    Ok(match holder {
        Some(h) if h == owner => None,
        Some(h) => Some(crate::lease_lost_message(run_id, owner, Some(&h))),
        None => Some(crate::lease_lost_message(run_id, owner, None)),
    })
}

fn has_end(b: &Batch) -> bool {
    b.rows
        .iter()
        .any(|r| matches!(r.projection, RowProjection::Finished { .. }))
}

fn write_batch(tx: &rusqlite::Transaction<'_>, b: &Batch) -> rusqlite::Result<()> {
    let mut event = tx.prepare_cached(
        "INSERT INTO events (run_id, seq, at, kind, step, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in &b.rows {
        event.execute(params![b.run_id, r.seq, r.at_ms, r.kind, r.step, r.body])?;
        match &r.projection {
            RowProjection::Leg(l) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO legs (run_id, step, leg, outcome, attempts, duration_ms, output, plan, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    b.run_id,
                    l.step,
                    l.leg,
                    l.outcome,
                    l.attempts,
                    l.duration_ms,
                    l.output,
                    l.plan,
                    l.error,
                ])?;
            }
            RowProjection::Finished { status, message } => {
                tx.prepare_cached(
                    "UPDATE runs SET status=?2, message=?3, finished_at=?4, updated_at=?4 WHERE id=?1",
                )?
                .execute(params![b.run_id, status.as_str(), message, r.at_ms])?;
            }
            RowProjection::EventOnly => {}
        }
    }
    Ok(())
}

/// One run of the store, as the backend of its [`RunJournal`].
#[derive(Debug)]
pub struct SqliteRun {
    pub(super) store: SqliteStore,
    pub(super) run_id: String,
    pub(super) fence: Option<String>,
}

impl CommitRows for SqliteRun {
    fn commit_rows(&self, rows: Vec<EventRow>) -> Result<(), String> {
        self.store
            .commit_rows(&self.run_id, self.fence.as_deref(), rows)
    }

    fn durable(&self) -> Durable {
        self.store.committer.syncer.wait()
    }
}

/// The journal of one run, an [`EventSink`](meridian_protocol::EventSink): commit points are
/// durable when `emit` returns; other events wait in memory for the next one.
pub type RunJournal = RunSink<SqliteRun>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use meridian_protocol::{Event, EventSink, Outcome};

    use super::*;
    use crate::Journal;
    use crate::conformance::{ok_leg as leg, record};

    /// Waits (without a deadline: the test harness has one) until `cond` holds of the queue.
    fn until(store: &SqliteStore, cond: impl Fn(&Queue) -> bool) {
        while !cond(&store.committer.queue.lock().unwrap()) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn runs_that_finish_during_a_commit_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let ids = ["a", "b", "c", "d"];
        for id in ids {
            store.create_run(&record(id)).unwrap();
        }
        let sinks: Vec<Arc<RunJournal>> = ids
            .iter()
            .map(|id| Arc::new(store.journal(id).unwrap()))
            .collect();
        let emit = |i: usize| {
            let sink = sinks[i].clone();
            std::thread::spawn(move || sink.emit(&leg("s")).unwrap())
        };
        // Hold the connection: `a`'s commit is in flight (led, blocked on the file) while `b`,
        // `c` and `d` finish.
        let conn = store.lock();
        let first = emit(0);
        until(&store, |q| q.leading);
        let rest: Vec<_> = (1..4).map(emit).collect();
        until(&store, |q| q.waiting.len() == 3);
        drop(conn);
        first.join().unwrap();
        rest.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(
            store.commits(),
            2,
            "a alone, then b, c and d in one transaction"
        );
        for id in ids {
            assert_eq!(store.legs(id).unwrap().len(), 1, "{id}'s leg is durable");
        }
    }

    #[test]
    fn a_step_costs_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store.create_run(&record("r")).unwrap();
        let sink = store.journal_with("r", false).unwrap();
        for (i, step) in ["a", "b", "c"].into_iter().enumerate() {
            sink.emit(&Event::AttemptStarted {
                step: step.into(),
                leg: String::new(),
                attempt: 1,
                idempotency_key: format!("r/{step}"),
                input: serde_json::json!({}),
            })
            .unwrap();
            // The attempt's start, after the previous step's finish.
            assert_eq!(sink.held(), if i == 0 { 1 } else { 2 });
            sink.emit(&leg(step)).unwrap();
            sink.emit(&Event::StepFinished {
                step: step.into(),
                outcome: Outcome::Success,
                reason: None,
            })
            .unwrap();
        }
        assert_eq!(store.commits(), 3);
        // The last step's finish waits for the next commit point, which a reopened journal
        // does not see.
        assert_eq!(sink.held(), 1);
        let kinds: Vec<&str> = SqliteStore::open(store.path())
            .unwrap()
            .events("r")
            .unwrap()
            .iter()
            .map(|e| e.event.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "attempt-started",
                "leg-finished",
                "step-finished",
                "attempt-started",
                "leg-finished",
                "step-finished",
                "attempt-started",
                "leg-finished",
            ]
        );
    }

    /// A round holding only a run's end is written without an fsync (`synchronous=NORMAL`), and
    /// the connection is back to `FULL` for everything after it; the end reads back.
    #[test]
    fn a_runs_end_alone_is_written_without_fsync_and_full_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store.create_run(&record("r")).unwrap();
        let sink = store.sink("r").unwrap();
        sink.emit(&leg("a")).unwrap();
        sink.emit(&Event::RunFinished {
            status: meridian_protocol::RunStatus::Succeeded,
            duration: Duration::from_millis(3),
            message: "done".into(),
        })
        .unwrap();
        let sync: i64 = store
            .with(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(sync, 2, "FULL again after the run's end");
        let (_, summary) = SqliteStore::open(store.path()).unwrap().run("r").unwrap();
        assert_eq!(summary.status, meridian_protocol::RunStatus::Succeeded);
        assert_eq!(store.commits(), 2);
    }

    /// A step still running after `PROGRESS_AFTER` shows in the file another process reads,
    /// and its leg's commit continues the numbering after the rows written early.
    #[test]
    fn a_long_running_attempt_is_visible_to_another_reader_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store.create_run(&record("r")).unwrap();
        let sink = store.journal("r").unwrap();
        sink.emit(&Event::AttemptStarted {
            step: "long".into(),
            leg: String::new(),
            attempt: 1,
            idempotency_key: "r/long".into(),
            input: serde_json::json!({}),
        })
        .unwrap();
        let reader = SqliteStore::open(store.path()).unwrap();
        let kinds = |s: &SqliteStore| -> Vec<(i64, &'static str)> {
            let events = s.events("r").unwrap();
            events.iter().map(|e| (e.seq, e.event.kind())).collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while kinds(&reader).is_empty() {
            assert!(Instant::now() < deadline, "the attempt never showed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(kinds(&reader), [(1, "attempt-started")]);
        assert_eq!(sink.held(), 0);
        sink.emit(&Event::LegFinished {
            step: "long".into(),
            leg: String::new(),
            outcome: Outcome::Success,
            attempts: 1,
            duration: Duration::from_millis(150),
            output: serde_json::json!({}),
            plan: vec![],
            error: None,
        })
        .unwrap();
        assert_eq!(
            kinds(&reader),
            [(1, "attempt-started"), (2, "leg-finished")]
        );
        assert_eq!(reader.legs("r").unwrap().len(), 1);
    }
}
