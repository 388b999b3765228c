//! The worker: claims queued step attempts under a lease and runs them with the real executor.
//!
//! # Leases and fencing
//!
//! A claim (`SELECT … FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each other)
//! sets `lease_owner`, `lease_until = now() + lease` and bumps `lease_epoch`. While the step runs,
//! heartbeats extend `lease_until`, each guarded by the claimed epoch. The result is written only
//! while the epoch is still the claimed one, so a worker whose lease was taken over can never
//! commit. A task whose lease ran out (its worker was killed, hung or cut off) is claimed again by
//! another worker: same idempotency key, same attempt.
//!
//! Fencing the commit is not enough to keep two workers from *running* the same attempt at once:
//! a worker cut off from the database keeps running its step while the lease expires and another
//! worker starts it. So each worker also fences itself: it stops a step when its own view of the
//! lease — measured from the moment it *sent* its last successful claim or heartbeat, which is no
//! later than the server's `now()` that set `lease_until` — is about to end, keeping a margin of a
//! tenth of the lease for clock-rate drift and for the step to stop. Hence the invariant the
//! integration tests check: no attempt ever runs on two workers at once, across kills and
//! partitions. (A process frozen by the OS past its lease — SIGSTOP, a VM pause — cannot stop
//! itself; steps that must be exactly-once should also pass their idempotency key on to what
//! they change.)

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use meridian_engine::{AttemptError, Executor, Masker, StepError, StepResult};
use meridian_protocol::{Level, LogLine, LogSource};
use serde_json::Value as Json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conn::{Link, LinkEvent, Prepared, Target};
use crate::queue::{CANCEL_CHANNEL, TASKS_CHANNEL};
use crate::wire::{decode_request, encode_result};
use crate::{DistError, TaskKey, schema};

const CLAIM: &str = "WITH c AS (
       SELECT id FROM meridian.tasks
        WHERE state <> 'done' AND key_id = $1 AND NOT cancel AND claims < $4
          AND (state = 'ready' OR lease_until < clock_timestamp())
        ORDER BY id
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
     UPDATE meridian.tasks t
        SET state = 'running', lease_owner = $3,
            lease_until = clock_timestamp() + $5::bigint * interval '1 millisecond',
            lease_epoch = t.lease_epoch + 1, claims = t.claims + 1,
            started_at = coalesce(t.started_at, clock_timestamp())
       FROM c WHERE t.id = c.id
     RETURNING t.id, t.lease_epoch, t.run_id, t.step_id, t.idempotency_key, t.attempt, t.uses,
               t.action, t.mode, t.request::text, t.sealed, t.claims";
const HEARTBEAT: &str = "UPDATE meridian.tasks
        SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
      WHERE id = $1 AND lease_epoch = $2 AND state = 'running'
     RETURNING cancel";
/// The fenced commit: only the holder of the current epoch writes, and the NOTIFY goes out with
/// the commit. It carries the result after the task id (`id:result`) when both fit in a
/// notification (PostgreSQL's limit is 8,000 bytes), so the waiting coordinator need not read
/// the row back; a larger result is announced by its id alone.
const FINISH: &str = "WITH u AS (
       UPDATE meridian.tasks SET state = 'done', result = $3::text::json,
              finished_at = clock_timestamp(), lease_until = NULL
        WHERE id = $1 AND lease_epoch = $2 AND state = 'running'
        RETURNING id)
     SELECT pg_notify('meridian_done',
              CASE WHEN octet_length($3::text) < 7900 THEN id::text || ':' || $3::text
                   ELSE id::text END) FROM u";
/// The coordinator cancelled: end the task as cancelled, unless a coordinator re-attached
/// meanwhile (cancel cleared), in which case it goes back to the queue.
const FINISH_CANCELLED: &str = "WITH u AS (
       UPDATE meridian.tasks
          SET state = CASE WHEN cancel THEN 'done' ELSE 'ready' END,
              result = CASE WHEN cancel THEN '{\"err\":{\"kind\":\"cancelled\"}}'::json END,
              finished_at = CASE WHEN cancel THEN clock_timestamp() END,
              lease_until = NULL
        WHERE id = $1 AND lease_epoch = $2 AND state = 'running'
        RETURNING id, state)
     SELECT pg_notify(CASE WHEN state = 'done' THEN 'meridian_done' ELSE 'meridian_tasks' END, id::text)
       FROM u";
/// Ends tasks nobody will finish: cancelled ones whose worker vanished, and ones taken over
/// `max_claims` times (a step that kills its worker must not take down the whole fleet in turn).
const REAP: &str = "WITH u AS (
       UPDATE meridian.tasks
          SET state = 'done', finished_at = clock_timestamp(), lease_until = NULL,
              result = CASE WHEN cancel THEN '{\"err\":{\"kind\":\"cancelled\"}}'::json
                       ELSE json_build_object('err', json_build_object('kind', 'fatal', 'message',
                            'the step was taken over ' || claims || ' times: every worker running it died or lost its lease (last: '
                            || coalesce(lease_owner, '?') || ')')) END
        WHERE state = 'running' AND lease_until < clock_timestamp() AND (cancel OR claims >= $1)
        RETURNING id)
     SELECT pg_notify('meridian_done', id::text) FROM u";

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// How long a claim holds a task without a heartbeat. A killed worker's tasks are taken over
    /// after at most this long. Default 30 s.
    pub lease: Duration,
    /// How often a running task's lease is extended; at most half the lease. Default 10 s.
    pub heartbeat: Duration,
    /// Tasks this worker runs at once (≥ 1). Default 4.
    pub max_concurrent: usize,
    /// How often to look for work without a notification: catches expired leases of dead workers
    /// and notifications lost while disconnected. Default 1 s.
    pub poll: Duration,
    /// A task claimed this many times without finishing is failed instead of claimed again.
    /// Default 5.
    pub max_claims: u32,
    /// Stops claiming when cancelled; `run_worker` returns once the running tasks have finished.
    pub shutdown: CancellationToken,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            max_concurrent: 4,
            poll: Duration::from_secs(1),
            max_claims: 5,
            shutdown: CancellationToken::new(),
        }
    }
}

impl WorkerOptions {
    fn validate(&self) -> Result<(), DistError> {
        let bad = |m: &str| Err(DistError::Config(m.to_string()));
        if self.max_concurrent == 0 {
            return bad("max_concurrent must be at least 1");
        }
        if self.heartbeat.is_zero() || self.poll.is_zero() {
            return bad("heartbeat and poll intervals must be > 0");
        }
        if self.heartbeat * 2 > self.lease {
            return bad(
                "the heartbeat must be at most half the lease, so one late heartbeat does not lose it",
            );
        }
        if self.max_claims == 0 {
            return bad("max_claims must be at least 1");
        }
        Ok(())
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis().min(i64::MAX as u128) as i64
    }

    /// A step is stopped this long before the worker's own view of its lease ends.
    fn margin(&self) -> Duration {
        self.lease / 10
    }
}

/// Wake-ups delivered by the worker's connection.
#[derive(Default)]
struct Signals {
    /// Something was queued (or the connection came back): look for work.
    work: Notify,
    /// Running tasks by id: a cancel notification makes the task heartbeat at once.
    running: Mutex<HashMap<i64, Arc<Notify>>>,
}

struct Worker {
    id: String,
    /// Printable database address.
    target: String,
    key: TaskKey,
    key_id: String,
    exec: Arc<dyn Executor>,
    opts: WorkerOptions,
    link: Link,
    prepared: Prepared,
    signals: Arc<Signals>,
}

/// A claimed task as read from its row.
struct Claimed {
    id: i64,
    epoch: i64,
    run_id: String,
    step_id: String,
    idempotency_key: String,
    attempt: i32,
    uses: String,
    action: String,
    mode: String,
    request: String,
    sealed: Vec<u8>,
    /// How many times the task was claimed, this claim included: more than 1 is a takeover.
    claims: i32,
}

/// Runs a worker until `opts.shutdown` is cancelled (then lets running tasks finish and returns
/// `Ok`). `worker_id` names this worker in `lease_owner` (use something like `host:pid`); fencing
/// does not depend on it being unique. `exec` is what really runs a step (the Wasm sandbox in
/// production). Only tasks sealed under `key` are claimed.
///
/// Errors only at start (bad DSN, unreachable database, newer or foreign schema, invalid
/// options); afterwards connection loss is logged and survived: running steps are stopped before
/// their lease could be taken over, and the worker reconnects with back-off.
///
/// Cost while idle: one claim statement per `poll` plus one connection; per task: one claim
/// commit, a heartbeat commit every `heartbeat`, one result commit.
pub async fn run_worker(
    pg_dsn: &str,
    worker_id: &str,
    exec: Arc<dyn Executor>,
    key: TaskKey,
    opts: WorkerOptions,
) -> Result<(), DistError> {
    opts.validate()?;
    let target = Target::parse(pg_dsn)?;
    schema::ensure(&target).await?;
    let signals = Arc::new(Signals::default());
    let s = signals.clone();
    let link = Link::open(
        &target,
        &[TASKS_CHANNEL, CANCEL_CHANNEL],
        Arc::new(move |ev| match ev {
            LinkEvent::Notification { channel, payload } if channel == CANCEL_CHANNEL => {
                if let Ok(id) = payload.parse::<i64>()
                    && let Some(n) = s.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id)
                {
                    n.notify_one();
                }
            }
            LinkEvent::Notification { .. } | LinkEvent::Reconnected => s.work.notify_one(),
        }),
    )
    .await?;
    let worker = Arc::new(Worker {
        id: worker_id.to_string(),
        target: target.name.clone(),
        key_id: key.fingerprint(),
        key,
        exec,
        opts,
        link,
        prepared: Prepared::default(),
        signals,
    });
    tracing::info!(
        worker = worker.id,
        key = worker.key_id,
        "worker started on {}",
        target.name
    );
    worker.main_loop().await;
    Ok(())
}

impl Worker {
    fn client(&self) -> Result<Arc<tokio_postgres::Client>, DistError> {
        self.link
            .client()
            .ok_or_else(|| DistError::Disconnected(self.target.clone()))
    }

    async fn main_loop(self: &Arc<Self>) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        let shutdown = self.opts.shutdown.clone();
        let mut last_reap: Option<Instant> = None;
        // Whether the queue may hold tasks for us: at start, after a notification or a poll
        // tick, and after a claim that filled every free slot. A claim that came back short
        // saw the queue empty; whatever is queued after it notifies, so a task finishing alone
        // does not send the worker to the queue again (one claim per task, not two).
        let mut claim_now = true;
        loop {
            while let Some(r) = tasks.try_join_next() {
                log_join(r);
            }
            if shutdown.is_cancelled() {
                break;
            }
            if last_reap.is_none_or(|t| t.elapsed() >= self.opts.poll) {
                last_reap = Some(Instant::now());
                if let Err(e) = self.reap().await {
                    tracing::debug!("reaping abandoned tasks: {e}");
                }
            }
            let free = self.opts.max_concurrent.saturating_sub(tasks.len());
            // While reconnecting, the link itself reports; the loop just waits.
            if claim_now && free > 0 && self.link.client().is_some() {
                let sent = Instant::now();
                match self.claim(free).await {
                    Ok(claimed) => {
                        let full = claimed.len() == free;
                        for t in claimed {
                            let me = self.clone();
                            tasks.spawn(async move { me.run_task(t, sent).await });
                        }
                        // More may be waiting; claim again as soon as there is room.
                        claim_now = full;
                        if full {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(worker = self.id, "claiming tasks: {e}"),
                }
            }
            tokio::select! {
                () = self.signals.work.notified() => claim_now = true,
                Some(r) = tasks.join_next(), if !tasks.is_empty() => log_join(r),
                () = tokio::time::sleep(self.opts.poll) => claim_now = true,
                () = shutdown.cancelled() => {}
            }
        }
        while let Some(r) = tasks.join_next().await {
            log_join(r);
        }
    }

    async fn claim(&self, n: usize) -> Result<Vec<Claimed>, DistError> {
        let c = self.client()?;
        let st = self
            .prepared
            .get(&c, CLAIM)
            .await
            .map_err(DistError::db("prepare the claim"))?;
        let rows = c
            .query(
                &st,
                &[
                    &self.key_id,
                    &(n as i64),
                    &self.id,
                    &(self.opts.max_claims.min(i32::MAX as u32) as i32),
                    &self.opts.lease_ms(),
                ],
            )
            .await
            .map_err(DistError::db("claim tasks"))?;
        Ok(rows
            .into_iter()
            .map(|r| Claimed {
                id: r.get(0),
                epoch: r.get(1),
                run_id: r.get(2),
                step_id: r.get(3),
                idempotency_key: r.get(4),
                attempt: r.get(5),
                uses: r.get(6),
                action: r.get(7),
                mode: r.get(8),
                request: r.get(9),
                sealed: r.get(10),
                claims: r.get(11),
            })
            .collect())
    }

    async fn reap(&self) -> Result<(), DistError> {
        let c = self.client()?;
        let st = self
            .prepared
            .get(&c, REAP)
            .await
            .map_err(DistError::db("prepare the reaper"))?;
        let max = self.opts.max_claims.min(i32::MAX as u32) as i32;
        let n = c
            .query(&st, &[&max])
            .await
            .map_err(DistError::db("reap abandoned tasks"))?
            .len();
        if n > 0 {
            tracing::warn!(worker = self.id, "ended {n} abandoned task(s)");
        }
        Ok(())
    }

    /// Puts in the attempt's log which worker ran it and, when it was claimed before, that it
    /// was taken over: a killed worker's step waited out its lease and ran again with nothing in
    /// `runs show` to say so (a drill's RTO grew by the lease, unexplained).
    fn say_where(&self, r: &mut Result<StepResult, AttemptError>, claims: i32) {
        let logs = match r {
            Ok(res) => &mut res.logs,
            Err(f) => &mut f.logs,
        };
        let line = |level, message: String| LogLine {
            level,
            source: LogSource::Host,
            message,
            fields: vec![("worker".into(), self.id.clone())],
        };
        let mut head = vec![line(Level::Info, format!("ran on worker `{}`", self.id))];
        if claims > 1 {
            head.push(line(
                Level::Warn,
                format!(
                    "taken over (claim {claims} of this attempt): the worker that had it stopped renewing its lease (killed, or cut off from PostgreSQL), and it ran again here once that lease expired, under the same idempotency key"
                ),
            ));
        }
        logs.splice(0..0, head);
    }

    /// Runs one claimed task to its fenced result. `claim_sent` is when the claim statement was
    /// sent: the lease cannot have started earlier.
    async fn run_task(self: Arc<Self>, t: Claimed, claim_sent: Instant) {
        let (id, epoch) = (t.id, t.epoch);
        let label = format!("{}#{}", t.idempotency_key, t.attempt);
        let request: Json = serde_json::from_str(&t.request).unwrap_or(Json::Null);
        let decoded = decode_request(
            &self.key,
            t.run_id,
            t.step_id,
            t.idempotency_key,
            t.attempt,
            &t.uses,
            &t.action,
            &t.mode,
            &request,
            &t.sealed,
        );
        let poke = Arc::new(Notify::new());
        self.signals
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, poke.clone());
        let (lease_tx, mut lease_rx) = watch::channel(Lease {
            valid_until: claim_sent + self.opts.lease,
            status: LeaseStatus::Held,
        });
        let heartbeat = AbortOnDrop(tokio::spawn(
            self.clone().heartbeat(id, epoch, poke, lease_tx),
        ));
        let margin = self.opts.margin();

        let outcome = match decoded {
            Err(e) => Outcome::Finish(Err(StepError::Fatal(format!(
                "worker {} cannot open the task: {e}",
                self.id
            ))
            .into())),
            Ok(req) => {
                let masker = Masker::new(req.mask.clone());
                let timeout = req.timeout;
                let fut = AssertUnwindSafe(tokio::time::timeout(timeout, self.exec.execute(req)))
                    .catch_unwind();
                let mut fut = std::pin::pin!(fut);
                let mut heartbeat_alive = true;
                let outcome = loop {
                    let lease = *lease_rx.borrow_and_update();
                    match lease.status {
                        LeaseStatus::Lost => break Outcome::Abandon("its lease was taken over"),
                        LeaseStatus::Cancelled => break Outcome::Cancelled,
                        LeaseStatus::Held => {}
                    }
                    tokio::select! {
                        r = &mut fut => break Outcome::Finish(match r {
                            Ok(Ok(r)) => r,
                            Ok(Err(_)) => Err(StepError::Timeout(timeout).into()),
                            Err(_) => Err(StepError::Fatal("the step executor panicked".into()).into()),
                        }),
                        () = tokio::time::sleep_until(lease.valid_until - margin) => {
                            break Outcome::Abandon("it could not renew its lease in time");
                        }
                        r = lease_rx.changed(), if heartbeat_alive => {
                            heartbeat_alive = r.is_ok();
                        }
                    }
                };
                // The step's future is pinned in this block, so it is dropped — the step stopped —
                // when the block ends, before anything below writes the task's end.
                match outcome {
                    Outcome::Finish(mut r) => {
                        self.say_where(&mut r, t.claims);
                        Outcome::Masked(encode_result(&r, &masker))
                    }
                    other => other,
                }
            }
        };
        match outcome {
            Outcome::Abandon(why) => {
                tracing::warn!(worker = self.id, "stopped {label}: {why}");
            }
            Outcome::Cancelled => {
                self.commit(id, epoch, FINISH_CANCELLED, None, &lease_rx, &label)
                    .await;
            }
            Outcome::Finish(r) => {
                let j = encode_result(&r, &Masker::default());
                self.commit(id, epoch, FINISH, Some(j.to_string()), &lease_rx, &label)
                    .await;
            }
            Outcome::Masked(j) => {
                self.commit(id, epoch, FINISH, Some(j.to_string()), &lease_rx, &label)
                    .await;
            }
        }
        drop(heartbeat);
        self.signals
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Writes the task's end, fenced by `epoch`. Retries connection trouble while the lease is
    /// still ours (heartbeats keep running meanwhile); after that another worker will redo it.
    async fn commit(
        &self,
        id: i64,
        epoch: i64,
        sql: &'static str,
        result: Option<String>,
        lease: &watch::Receiver<Lease>,
        label: &str,
    ) {
        loop {
            let l = *lease.borrow();
            if l.status == LeaseStatus::Lost || Instant::now() + self.opts.margin() >= l.valid_until
            {
                tracing::warn!(
                    worker = self.id,
                    "gave up writing the result of {label}: the lease ran out"
                );
                return;
            }
            let res = async {
                let c = self.client()?;
                let st = self
                    .prepared
                    .get(&c, sql)
                    .await
                    .map_err(DistError::db("prepare the result"))?;
                let rows = match &result {
                    Some(r) => c.query(&st, &[&id, &epoch, r]).await,
                    None => c.query(&st, &[&id, &epoch]).await,
                };
                rows.map_err(DistError::db("write a result"))
            }
            .await;
            match res {
                Ok(rows) if rows.is_empty() => {
                    tracing::warn!(
                        worker = self.id,
                        "result of {label} discarded: another worker holds the task now"
                    );
                    return;
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(worker = self.id, "writing the result of {label}: {e}");
                    tokio::time::sleep((self.opts.heartbeat / 4).max(Duration::from_millis(10)))
                        .await;
                }
            }
        }
    }

    /// Extends the lease every `heartbeat` (at once when poked by a cancel notification) and
    /// publishes the worker's view of it.
    async fn heartbeat(
        self: Arc<Self>,
        id: i64,
        epoch: i64,
        poke: Arc<Notify>,
        lease: watch::Sender<Lease>,
    ) {
        let mut wait = self.opts.heartbeat;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = poke.notified() => {}
            }
            let sent = Instant::now();
            let res = async {
                let c = self.client()?;
                let st = self
                    .prepared
                    .get(&c, HEARTBEAT)
                    .await
                    .map_err(DistError::db("prepare the heartbeat"))?;
                c.query_opt(&st, &[&id, &epoch, &self.opts.lease_ms()])
                    .await
                    .map_err(DistError::db("heartbeat"))
            }
            .await;
            match res {
                Ok(Some(row)) => {
                    let cancel: bool = row.get(0);
                    lease.send_modify(|l| {
                        l.valid_until = sent + self.opts.lease;
                        if cancel {
                            l.status = LeaseStatus::Cancelled;
                        }
                    });
                    wait = self.opts.heartbeat;
                }
                Ok(None) => {
                    lease.send_modify(|l| l.status = LeaseStatus::Lost);
                    return;
                }
                Err(e) => {
                    tracing::warn!(worker = self.id, "task {id}: {e}");
                    // Retry sooner than a full period: the lease is running out.
                    wait = (self.opts.heartbeat / 4).max(Duration::from_millis(10));
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseStatus {
    Held,
    /// Another worker took the task over (the epoch moved on).
    Lost,
    /// The coordinator stopped waiting.
    Cancelled,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    /// This worker's conservative view of when the lease ends.
    valid_until: Instant,
    status: LeaseStatus,
}

enum Outcome {
    Finish(Result<StepResult, AttemptError>),
    Masked(Json),
    Cancelled,
    Abandon(&'static str),
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn log_join(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!("a worker task panicked: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(WorkerOptions::default().validate().is_ok());
        let o = WorkerOptions {
            heartbeat: Duration::from_secs(20),
            ..Default::default()
        };
        assert!(matches!(o.validate(), Err(DistError::Config(_))));
        let o = WorkerOptions {
            max_concurrent: 0,
            ..Default::default()
        };
        assert!(o.validate().is_err());
        assert_eq!(WorkerOptions::default().margin(), Duration::from_secs(3));
    }
}
