//! Writing events: a run's events wait in memory until a commit point, then go to the server in
//! one statement (so one round trip and one commit) with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use meridian_store::pending::{CommitRows, EventRow, RowProjection, RunSink};
use tokio_postgres::error::SqlState;

use super::{PgJournal, Session};
use crate::DistError;

/// A group of events in one statement: the events from arrays (`unnest`), the legs they
/// finished (upserted) and, with a run-finished event, the run's end (its status, message,
/// `finished_at` and `updated_at`: the run's row is rewritten when its status changes, not at
/// every commit). Times
/// are the server's clock at the transaction's start minus each event's age, so an event held
/// in memory keeps the moment it happened and every machine still agrees on the clock.
///
/// With a fence (`$17`, the owner of a fenced sink), nothing is written unless that owner holds
/// the run's lease, whose row the statement locks (`FOR SHARE`) so that a takeover commits
/// either before the check or after the write. The statement returns whether it wrote.
const APPEND: &str = concat!(
    "WITH ",
    fence_cte!("$17"),
    ",
     ev AS (
       INSERT INTO meridian.events (run_id, seq, at, kind, step, body)
       SELECT $1, u.seq, ",
    now_ms!(),
    " - u.age, u.kind, u.step, u.body::json
         FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
              AS u(seq, age, kind, step, body)
        WHERE (SELECT ok FROM allowed)
       RETURNING at),
     lg AS (
       INSERT INTO meridian.legs (run_id, step, leg, outcome, attempts, duration_ms, output, plan, error)
       SELECT $1, l.step, l.leg, l.outcome, l.attempts, l.duration_ms, l.output::json, l.plan::json, l.error::json
         FROM unnest($7::text[], $8::text[], $9::text[], $10::int[], $11::bigint[], $12::text[], $13::text[], $14::text[])
              AS l(step, leg, outcome, attempts, duration_ms, output, plan, error)
        WHERE (SELECT ok FROM allowed)
       ON CONFLICT (run_id, step, leg) DO UPDATE SET outcome = EXCLUDED.outcome,
         attempts = EXCLUDED.attempts, duration_ms = EXCLUDED.duration_ms,
         output = EXCLUDED.output, plan = EXCLUDED.plan, error = EXCLUDED.error),
     fin AS (
       UPDATE meridian.runs SET status = $15::text, message = $16::text,
              finished_at = last.at, updated_at = last.at
         FROM (SELECT max(at) AS at FROM ev) AS last
        WHERE id = $1 AND $15::text IS NOT NULL AND (SELECT ok FROM allowed))
     SELECT ok FROM allowed"
);
const BODIES: &str =
    "SELECT seq, body::text FROM meridian.events WHERE run_id = $1 AND seq = ANY($2)";

/// A group of rows as the statement's parameters.
struct Batch {
    run_id: String,
    /// Written only while this owner holds the run's lease.
    fence: Option<String>,
    seq: Vec<i64>,
    /// Milliseconds since each event was emitted, when the batch was sent.
    age: Vec<i64>,
    kind: Vec<&'static str>,
    step: Vec<Option<String>>,
    body: Vec<String>,
    legs: Legs,
    finished: Option<(&'static str, String)>,
}

#[derive(Default)]
struct Legs {
    step: Vec<String>,
    leg: Vec<String>,
    outcome: Vec<&'static str>,
    attempts: Vec<i32>,
    duration_ms: Vec<i64>,
    output: Vec<String>,
    plan: Vec<String>,
    error: Vec<Option<String>>,
}

impl Batch {
    fn new(run_id: &str, fence: Option<&str>, rows: Vec<EventRow>) -> Batch {
        let now = Instant::now();
        let mut b = Batch {
            run_id: run_id.to_string(),
            fence: fence.map(str::to_string),
            seq: Vec::with_capacity(rows.len()),
            age: Vec::with_capacity(rows.len()),
            kind: Vec::with_capacity(rows.len()),
            step: Vec::with_capacity(rows.len()),
            body: Vec::with_capacity(rows.len()),
            legs: Legs::default(),
            finished: None,
        };
        // One upsert per leg: a statement may not update the same row twice, and the last
        // record of a leg is the one that stands (as with one statement per event).
        let mut legs: HashMap<(String, String), usize> = HashMap::new();
        for r in rows {
            b.seq.push(r.seq);
            b.age.push(
                now.duration_since(r.emitted)
                    .as_millis()
                    .min(i64::MAX as u128) as i64,
            );
            b.kind.push(r.kind);
            b.step.push(r.step);
            b.body.push(r.body);
            match r.projection {
                RowProjection::Leg(l) => {
                    let at = *legs
                        .entry((l.step.clone(), l.leg.clone()))
                        .or_insert(b.legs.step.len());
                    let attempts = l.attempts.min(i32::MAX as u32) as i32;
                    if at == b.legs.step.len() {
                        b.legs.step.push(l.step);
                        b.legs.leg.push(l.leg);
                        b.legs.outcome.push(l.outcome);
                        b.legs.attempts.push(attempts);
                        b.legs.duration_ms.push(l.duration_ms);
                        b.legs.output.push(l.output);
                        b.legs.plan.push(l.plan);
                        b.legs.error.push(l.error);
                    } else {
                        b.legs.outcome[at] = l.outcome;
                        b.legs.attempts[at] = attempts;
                        b.legs.duration_ms[at] = l.duration_ms;
                        b.legs.output[at] = l.output;
                        b.legs.plan[at] = l.plan;
                        b.legs.error[at] = l.error;
                    }
                }
                RowProjection::Finished { status, message } => {
                    b.finished = Some((status.as_str(), message));
                }
                RowProjection::EventOnly => {}
            }
        }
        b
    }

    async fn write(&self, s: &mut Session, retry: bool) -> Result<(), DistError> {
        let (c, st) = s.stmt(APPEND).await?;
        let (status, message) = match &self.finished {
            Some((s, m)) => (Some(*s), Some(m.as_str())),
            None => (None, None),
        };
        let l = &self.legs;
        let res = c
            .query_one(
                &st,
                &[
                    &self.run_id,
                    &self.seq,
                    &self.age,
                    &self.kind,
                    &self.step,
                    &self.body,
                    &l.step,
                    &l.leg,
                    &l.outcome,
                    &l.attempts,
                    &l.duration_ms,
                    &l.output,
                    &l.plan,
                    &l.error,
                    &status,
                    &message,
                    &self.fence,
                ],
            )
            .await;
        match res.map(|row| row.get::<_, bool>(0)) {
            Ok(false) => Err(s
                .lease_lost(&self.run_id, self.fence.as_deref().unwrap_or_default())
                .await),
            Ok(true) => Ok(()),
            Err(e) if retry && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // The first try may have committed before its connection dropped: accept the
                // rows already there when every one is byte-identical.
                let (c, st) = s.stmt(BODIES).await?;
                let rows = c
                    .query(&st, &[&self.run_id, &self.seq])
                    .await
                    .map_err(DistError::db("check a retried append"))?;
                let there: HashMap<i64, String> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                let same = self
                    .seq
                    .iter()
                    .zip(&self.body)
                    .all(|(seq, body)| there.get(seq) == Some(body));
                if same {
                    Ok(())
                } else {
                    Err(DistError::Db {
                        op: "append events",
                        source: e,
                    })
                }
            }
            Err(source) => Err(DistError::Db {
                op: "append events",
                source,
            }),
        }
    }
}

impl PgJournal {
    /// An event sink that journals into this database under `run_id`, continuing its sequence.
    pub fn journal(&self, run_id: &str) -> Result<PgRunJournal, DistError> {
        self.journal_fenced(run_id, None)
    }

    /// With `fence`: every commit is refused unless `fence` holds the run's lease.
    pub fn journal_fenced(
        &self,
        run_id: &str,
        fence: Option<&str>,
    ) -> Result<PgRunJournal, DistError> {
        let id = run_id.to_string();
        let seq = self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(super::MAX_SEQ).await?;
                let row = c
                    .query_one(&st, &[&id])
                    .await
                    .map_err(DistError::db("read the event sequence"))?;
                Ok(row.get::<_, i64>(0))
            })
        })?;
        Ok(PgRunJournal::with_progress(
            PgRun {
                journal: self.clone(),
                run_id: run_id.to_string(),
                fence: fence.map(str::to_string),
            },
            seq,
        ))
    }

    /// Writes `rows` of `run_id` in one statement; retried once on a new connection.
    fn append(
        &self,
        run_id: &str,
        fence: Option<&str>,
        rows: Vec<EventRow>,
    ) -> Result<(), DistError> {
        let batch = Arc::new(Batch::new(run_id, fence, rows));
        self.call(true, move |s, retry| {
            let batch = batch.clone();
            Box::pin(async move { batch.write(s, retry).await })
        })
    }
}

/// One run of the journal, as the backend of its [`PgRunJournal`].
#[derive(Debug)]
pub struct PgRun {
    pub(super) journal: PgJournal,
    pub(super) run_id: String,
    pub(super) fence: Option<String>,
}

impl CommitRows for PgRun {
    fn commit_rows(&self, rows: Vec<EventRow>) -> Result<(), String> {
        self.journal
            .append(&self.run_id, self.fence.as_deref(), rows)
            .map_err(|e| e.to_string())
    }
}

/// The journal of one run, an [`EventSink`](meridian_protocol::EventSink): commit points are
/// durable when `emit` returns, each written with the events held before it in one statement on
/// the journal's connection thread.
pub type PgRunJournal = RunSink<PgRun>;
