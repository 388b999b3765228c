//! What both journals share between an event's emission and its commit: the event flattened into
//! the columns they write ([`EventRow`]), and the run's events held in memory until the next
//! commit point ([`PendingEvents`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian_protocol::event::{Durable, Encoded, encode_all, pair};
use meridian_protocol::{Event, EventSink, RunStatus, SinkError};

use crate::{Projection, project};

/// Milliseconds since the epoch on this machine's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One event as the journals write it: its `events` columns and its projection.
#[derive(Clone, Debug)]
pub struct EventRow {
    pub seq: i64,
    /// When it was emitted (this machine's clock): an event held until the next commit point
    /// keeps the time it happened, not the time it was committed.
    pub at_ms: i64,
    /// The same moment on the monotonic clock, for a journal that stamps rows with its server's
    /// clock (PostgreSQL): it subtracts the event's age at commit time.
    pub emitted: Instant,
    pub kind: &'static str,
    /// [`meridian_protocol::Event::is_commit_point`] of the event.
    pub commit_point: bool,
    pub step: Option<String>,
    pub body: String,
    pub projection: RowProjection,
}

/// [`Projection`] with owned values, ready to bind as statement parameters.
#[derive(Clone, Debug)]
pub enum RowProjection {
    /// Nothing beyond the event itself.
    EventOnly,
    Leg(LegRow),
    Finished {
        status: RunStatus,
        message: String,
    },
}

/// A `legs` row.
#[derive(Clone, Debug)]
pub struct LegRow {
    pub step: String,
    pub leg: String,
    pub outcome: &'static str,
    pub attempts: u32,
    pub duration_ms: i64,
    pub output: String,
    pub plan: String,
    pub error: Option<String>,
}

impl EventRow {
    pub fn new(seq: i64, e: &Encoded<'_>) -> EventRow {
        let projection = match project(e.event) {
            Projection::Leg(l) => RowProjection::Leg(LegRow {
                outcome: l.outcome.as_str(),
                attempts: l.attempts,
                duration_ms: l.duration.as_millis().min(i64::MAX as u128) as i64,
                output: l.output.to_string(),
                plan: serde_json::to_string(&l.plan).unwrap_or_default(),
                error: l
                    .error
                    .as_ref()
                    .map(|e| serde_json::to_string(e).unwrap_or_default()),
                step: l.step,
                leg: l.leg,
            }),
            Projection::Finished { status, message } => RowProjection::Finished {
                status,
                message: message.to_string(),
            },
            Projection::EventOnly => RowProjection::EventOnly,
        };
        EventRow {
            seq,
            at_ms: now_ms(),
            emitted: Instant::now(),
            kind: e.event.kind(),
            commit_point: e.event.is_commit_point(),
            step: e.event.step().map(str::to_string),
            body: e.json.to_string(),
            projection,
        }
    }
}

/// A run's event sequence and the events emitted since its last commit point.
///
/// Events that are not commit points ([`meridian_protocol::Event::is_commit_point`]) wait here;
/// a commit point takes them and itself to the backend's commit in one group, so a sequential
/// step costs one commit. The lock is held across the commit: a run's rows reach the database in
/// sequence order even when leg tasks on other threads emit meanwhile.
#[derive(Debug)]
pub struct PendingEvents {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The sequence number of the last committed event.
    committed: i64,
    rows: Vec<EventRow>,
}

impl PendingEvents {
    /// Continues a run whose last journaled event has sequence number `last_seq`.
    pub fn new(last_seq: i64) -> PendingEvents {
        PendingEvents {
            state: Mutex::new(State {
                committed: last_seq,
                rows: Vec::new(),
            }),
        }
    }

    /// Numbers `events` after those already held; when any is a commit point, hands every held
    /// row to `commit` and returns once it committed. A failed commit loses the rows it carried
    /// (the engine stops the run on the error); numbering continues after the last committed row.
    pub fn emit(
        &self,
        events: &[Encoded<'_>],
        commit: impl FnOnce(Vec<EventRow>) -> Result<(), String>,
    ) -> Result<(), SinkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            let seq = st.committed + st.rows.len() as i64 + 1;
            st.rows.push(EventRow::new(seq, e));
        }
        if !events.iter().any(|e| e.event.is_commit_point()) {
            return Ok(());
        }
        let rows = std::mem::take(&mut st.rows);
        let last = rows.last().map_or(st.committed, |r| r.seq);
        commit(rows).map_err(SinkError)?;
        st.committed = last;
        Ok(())
    }

    /// Progress: when the oldest held event waited `age`, hands the held rows to `write` (a
    /// backend's write that need not be durable: they are history, see the crate docs) so a
    /// reader of the journal sees a long step's attempt while it runs. Returns when the held
    /// rows (if any remain) are due. A failed write keeps the rows for the next commit point.
    pub fn flush_held(
        &self,
        age: Duration,
        write: impl FnOnce(Vec<EventRow>) -> Result<(), String>,
    ) -> Option<Instant> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = st.rows.first()?.emitted + age;
        if due > Instant::now() {
            return Some(due);
        }
        let rows = std::mem::take(&mut st.rows);
        let last = rows.last().map_or(st.committed, |r| r.seq);
        match write(rows.clone()) {
            Ok(()) => st.committed = last,
            Err(_) => st.rows = rows,
        }
        None
    }

    /// How many events wait for the next commit point.
    pub fn held(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rows
            .len()
    }
}

/// Where a run's rows go at a commit point: one backend's durable commit.
pub trait CommitRows: Send + Sync {
    /// Writes `rows` (in sequence order) and returns once they are durable. Rows without a
    /// commit point among them are progress ([`crate::progress`]): a backend may write those
    /// without an fsync.
    fn commit_rows(&self, rows: Vec<EventRow>) -> Result<(), String>;

    /// [`EventSink::durable`] for this backend's commits: the default, for a backend whose
    /// commits are durable when `commit_rows` returns, is resolved already.
    fn durable(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The journal of one run, an [`EventSink`] over a backend's commit: commit points are durable,
/// with every event held before them, when `emit` returns (see the contract on [`EventSink`]);
/// other events wait in memory for the next one.
#[derive(Debug)]
pub struct RunSink<C> {
    backend: Arc<C>,
    pending: Arc<PendingEvents>,
}

impl<C: CommitRows> RunSink<C> {
    /// Continues a run whose last journaled event has sequence number `last_seq`. Held events
    /// wait for the next commit point however long it takes.
    pub fn new(backend: C, last_seq: i64) -> RunSink<C> {
        RunSink {
            backend: Arc::new(backend),
            pending: Arc::new(PendingEvents::new(last_seq)),
        }
    }

    /// The same, with held events written as progress once they have waited
    /// [`crate::progress::PROGRESS_AFTER`] (a long step's attempt shows while it runs).
    pub fn with_progress(backend: C, last_seq: i64) -> RunSink<C>
    where
        C: 'static,
    {
        let sink = Self::new(backend, last_seq);
        let backend: Arc<dyn CommitRows> = sink.backend.clone();
        crate::progress::watch(&sink.pending, &backend);
        sink
    }

    /// Events emitted since the last commit point, not durable yet.
    pub fn held(&self) -> usize {
        self.pending.held()
    }
}

impl<C: CommitRows> EventSink for RunSink<C> {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.emit_all(std::slice::from_ref(event))
    }

    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        let json = encode_all(events)?;
        self.emit_encoded(&pair(events, &json))
    }

    fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
        self.pending
            .emit(events, |rows| self.backend.commit_rows(rows))
    }

    fn durable(&self) -> Durable {
        self.backend.durable()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use meridian_protocol::event::{encode_all, pair};
    use meridian_protocol::{Event, Outcome};

    use super::*;

    fn started(step: &str) -> Event {
        Event::AttemptStarted {
            step: step.into(),
            leg: String::new(),
            attempt: 1,
            idempotency_key: format!("r/{step}"),
            input: serde_json::Value::Null,
        }
    }

    fn finished(step: &str) -> Event {
        Event::LegFinished {
            step: step.into(),
            leg: String::new(),
            outcome: Outcome::Success,
            attempts: 1,
            duration: Duration::from_millis(3),
            output: serde_json::json!({"v": 1}),
            plan: vec![],
            error: None,
        }
    }

    fn emit(p: &PendingEvents, events: &[Event], commits: &mut Vec<Vec<i64>>) {
        let json = encode_all(events).unwrap();
        p.emit(&pair(events, &json), |rows| {
            commits.push(rows.iter().map(|r| r.seq).collect());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn events_wait_for_the_next_commit_point_and_keep_their_numbers() {
        let p = PendingEvents::new(7);
        let mut commits = Vec::new();
        emit(&p, &[started("a")], &mut commits);
        assert!(
            commits.is_empty(),
            "an attempt's start is not committed alone"
        );
        assert_eq!(p.held(), 1);
        emit(&p, &[finished("a")], &mut commits);
        emit(&p, &[started("b"), started("c")], &mut commits);
        emit(&p, &[finished("b"), finished("c")], &mut commits);
        assert_eq!(commits, [vec![8, 9], vec![10, 11, 12, 13]]);
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn a_failed_commit_is_an_error_and_numbering_resumes_after_the_last_committed() {
        let p = PendingEvents::new(0);
        let events = [started("a"), finished("a")];
        let json = encode_all(&events).unwrap();
        let err = p
            .emit(&pair(&events, &json), |_| Err("disk full".into()))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        let mut commits = Vec::new();
        emit(&p, &[finished("a")], &mut commits);
        assert_eq!(commits, [vec![1]]);
    }

    #[test]
    fn rows_carry_the_projection_and_the_json_as_given() {
        let e = finished("deploy");
        let json = serde_json::to_string(&e).unwrap();
        let row = EventRow::new(
            3,
            &Encoded {
                event: &e,
                json: &json,
            },
        );
        assert_eq!(
            (row.seq, row.kind, row.body.as_str()),
            (3, "leg-finished", json.as_str())
        );
        match row.projection {
            RowProjection::Leg(l) => {
                assert_eq!(
                    (l.step.as_str(), l.outcome, l.duration_ms),
                    ("deploy", "success", 3)
                );
                assert_eq!(l.output, r#"{"v":1}"#);
            }
            other => panic!("expected a leg row, got {other:?}"),
        }
    }

    #[test]
    fn held_events_are_flushed_only_once_due_and_numbering_continues() {
        let p = PendingEvents::new(0);
        let mut commits = Vec::new();
        emit(&p, &[started("a")], &mut commits);
        let due = p.flush_held(Duration::from_secs(3600), |_| panic!("not due yet"));
        assert!(due.is_some_and(|d| d > Instant::now()));
        let mut flushed = Vec::new();
        assert_eq!(
            p.flush_held(Duration::ZERO, |rows| {
                flushed.extend(rows.iter().map(|r| r.seq));
                Ok(())
            }),
            None
        );
        assert_eq!(flushed, [1]);
        assert_eq!(p.held(), 0);
        // A failed progress write keeps the rows for the commit point.
        emit(&p, &[started("b")], &mut commits);
        assert_eq!(p.flush_held(Duration::ZERO, |_| Err("busy".into())), None);
        assert_eq!(p.held(), 1);
        emit(&p, &[finished("a")], &mut commits);
        assert_eq!(commits, [vec![2, 3]]);
        assert_eq!(
            p.flush_held(Duration::ZERO, |_| panic!("nothing held")),
            None
        );
    }
}
