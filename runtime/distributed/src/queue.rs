//! [`PgQueue`]: the coordinator's side of the step queue, an [`Executor`] that hands each step
//! attempt to whichever worker claims it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{AttemptError, Executor, StepError, StepRequest, StepResult};
use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::conn::{Link, LinkEvent, Prepared, Target};
use crate::wire::{decode_result, encode_request};
use crate::{DistError, TaskKey, schema};

/// Channel a worker NOTIFYs with a task id when it wrote the task's result.
pub const DONE_CHANNEL: &str = "meridian_done";
/// Channel a coordinator NOTIFYs when it queued a task (payload: the task id).
pub const TASKS_CHANNEL: &str = "meridian_tasks";
/// Channel a coordinator NOTIFYs with a task id when it stopped waiting for a running task.
pub const CANCEL_CHANNEL: &str = "meridian_cancel";

/// A task is re-armed (run again, same attempt) when a coordinator asks for it after the previous
/// coordinator gave up on it: the earlier `cancelled` result was never anybody's answer.
macro_rules! rearm {
    () => {
        "(t.state = 'ready' OR (t.state = 'done' AND t.cancel AND t.result->'err'->>'kind' = 'cancelled'))"
    };
}

const SUBMIT: &str = concat!(
    "WITH ins AS (
       INSERT INTO meridian.tasks AS t
              (run_id, step_id, idempotency_key, attempt, uses, action, mode, request, sealed, key_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, $9, $10)
       ON CONFLICT (idempotency_key, attempt) DO UPDATE SET
              cancel = false,
              state = CASE WHEN ",
    rearm!(),
    " THEN 'ready' ELSE t.state END,
              result = CASE WHEN ",
    rearm!(),
    " THEN NULL ELSE t.result END,
              finished_at = CASE WHEN ",
    rearm!(),
    " THEN NULL ELSE t.finished_at END,
              request = CASE WHEN ",
    rearm!(),
    " THEN EXCLUDED.request ELSE t.request END,
              sealed = CASE WHEN ",
    rearm!(),
    " THEN EXCLUDED.sealed ELSE t.sealed END,
              key_id = CASE WHEN ",
    rearm!(),
    " THEN EXCLUDED.key_id ELSE t.key_id END
       RETURNING id, state, result)
     SELECT id, state, result::text,
            CASE WHEN state = 'ready' THEN pg_notify('meridian_tasks', id::text) END
       FROM ins"
);
const POLL: &str = "SELECT state, result::text FROM meridian.tasks WHERE id = $1";
/// The coordinator stopped waiting: a task nobody claimed yet ends now as cancelled; a running one
/// is flagged, and its worker is told to stop.
const CANCEL: &str = "WITH u AS (
       UPDATE meridian.tasks SET cancel = true,
              state = CASE WHEN state = 'ready' THEN 'done' ELSE state END,
              result = CASE WHEN state = 'ready' THEN '{\"err\":{\"kind\":\"cancelled\"}}'::json ELSE result END,
              finished_at = CASE WHEN state = 'ready' THEN clock_timestamp() ELSE finished_at END
        WHERE id = $1 AND state <> 'done'
        RETURNING id, state)
     SELECT pg_notify('meridian_cancel', id::text) FROM u WHERE state = 'running'";

/// [`CANCEL`] for every open task of a run (an interrupted coordinator's): queued ones end
/// cancelled at once, running ones are told through `meridian_cancel`.
const CANCEL_RUN: &str = "WITH u AS (
       UPDATE meridian.tasks SET cancel = true,
              state = CASE WHEN state = 'ready' THEN 'done' ELSE state END,
              result = CASE WHEN state = 'ready' THEN '{\"err\":{\"kind\":\"cancelled\"}}'::json ELSE result END,
              finished_at = CASE WHEN state = 'ready' THEN clock_timestamp() ELSE finished_at END
        WHERE run_id = $1 AND state <> 'done'
        RETURNING id, state),
     n AS (SELECT pg_notify('meridian_cancel', id::text) FROM u WHERE state = 'running')
     SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)";

/// Tuning of a [`PgQueue`].
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How often a waiting attempt looks at its task row even without a notification (covers
    /// notifications lost while the connection was down). Default 1 s.
    pub poll: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            poll: Duration::from_secs(1),
        }
    }
}

/// The engine's [`Executor`] backed by the `meridian.tasks` table: `execute` queues the attempt
/// (`NOTIFY meridian_tasks`) and waits for a worker's result (`LISTEN meridian_done`, with a
/// polling fallback).
///
/// A task is unique per (idempotency key, attempt): executing the same attempt again — a resumed
/// coordinator after a crash — re-attaches to the existing task, returning its result if a worker
/// already finished it, instead of running the step twice. When an `execute` future is dropped
/// before its result arrived (fail-fast, the engine's timeout, shutdown), the task is cancelled:
/// removed from the queue if unclaimed, else its worker is told to stop.
///
/// The input, grants and mask list travel sealed under the [`TaskKey`]; see [`crate::key`].
///
/// Cost per attempt: one statement to queue (a commit) and the workers' claim and result commits;
/// the result arrives inside its announcement when it fits (else, or when the announcement came
/// before anyone waited or was lost, one statement reads it). One shared connection per
/// `PgQueue`, on which concurrent attempts are pipelined. Cheap to clone.
#[derive(Clone)]
pub struct PgQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue")
            .field("target", &self.inner.target)
            .field("key", &self.inner.key)
            .finish()
    }
}

struct Inner {
    target: Target,
    link: Link,
    prepared: Prepared,
    key: TaskKey,
    waiters: Arc<Waiters>,
    poll: Duration,
    /// Cancellations of tasks whose attempt was dropped, still on their way to the database:
    /// [`Executor::settle`] waits for them (a process that exits first would leave the task
    /// queued, and a worker would run it later for a run that already ended).
    cancels: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Runs another coordinator drives now ([`Executor::abandon`]): their dropped attempts leave
    /// their tasks alone.
    abandoned: Mutex<std::collections::HashSet<String>>,
}

/// Attempts waiting for their task's result, by task id, and the ids whose result was announced
/// before anyone waited for them (a worker can finish a task between the statement that queued it
/// and the attempt registering): so an attempt reads its task's row once, when it is done, instead
/// of once more right after queueing it.
#[derive(Default)]
struct Waiters(Mutex<WaitState>);

#[derive(Default)]
struct WaitState {
    waiting: HashMap<i64, Vec<Arc<Notify>>>,
    /// Results the announcement carried, for tasks someone waits for (until they stop waiting).
    carried: HashMap<i64, String>,
    /// Announced with nobody waiting, oldest first; at most [`EARLY_KEPT`] (an id that falls out
    /// is read at the next poll tick instead).
    early: VecDeque<i64>,
}

const EARLY_KEPT: usize = 4096;

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The returned `Notify` has a permit already when the result was announced before.
    fn register(&self, id: i64) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        let mut st = self.lock();
        if let Some(i) = st.early.iter().position(|&e| e == id) {
            st.early.remove(i);
            n.notify_one();
        }
        st.waiting.entry(id).or_default().push(n.clone());
        n
    }

    fn unregister(&self, id: i64, n: &Arc<Notify>) {
        let mut st = self.lock();
        if let Some(v) = st.waiting.get_mut(&id) {
            v.retain(|x| !Arc::ptr_eq(x, n));
            if v.is_empty() {
                st.waiting.remove(&id);
                st.carried.remove(&id);
            }
        }
    }

    /// The result task `id`'s announcement carried, if it did.
    fn carried(&self, id: i64) -> Option<String> {
        self.lock().carried.get(&id).cloned()
    }

    /// A worker announced task `id`'s result (`result`: the result itself, when the
    /// announcement carried it). Only a result someone waits for is kept: an early announcement
    /// keeps the id, and its attempt reads the row.
    fn wake(&self, id: i64, result: Option<&str>) {
        let mut st = self.lock();
        match st.waiting.get(&id) {
            Some(v) => {
                v.iter().for_each(|n| n.notify_one());
                if let Some(r) = result {
                    st.carried.insert(id, r.to_string());
                }
            }
            None => {
                if st.early.len() == EARLY_KEPT {
                    st.early.pop_front();
                }
                st.early.push_back(id);
            }
        }
    }

    /// After a reconnection: notifications may have been lost, every waiter looks.
    fn wake_all(&self) {
        for v in self.lock().waiting.values() {
            v.iter().for_each(|n| n.notify_one());
        }
    }
}

impl PgQueue {
    /// Connects (creating or migrating the schema if needed) and starts listening for results.
    /// Must be called inside a tokio runtime, which then drives the queue's connection.
    pub async fn connect(
        dsn: &str,
        key: TaskKey,
        opts: QueueOptions,
    ) -> Result<PgQueue, DistError> {
        if opts.poll.is_zero() {
            return Err(DistError::Config(
                "the queue's poll interval must be > 0".into(),
            ));
        }
        let target = Target::parse(dsn)?;
        schema::ensure(&target).await?;
        let waiters = Arc::new(Waiters::default());
        let w = waiters.clone();
        let link = Link::open(
            &target,
            &[DONE_CHANNEL],
            Arc::new(move |ev| match ev {
                LinkEvent::Notification { payload, .. } => {
                    // `id` or `id:result` (see the worker's `FINISH`).
                    let (id, result) = match payload.split_once(':') {
                        Some((id, result)) => (id, Some(result)),
                        None => (payload, None),
                    };
                    if let Ok(id) = id.parse() {
                        w.wake(id, result);
                    }
                }
                LinkEvent::Reconnected => w.wake_all(),
            }),
        )
        .await?;
        Ok(PgQueue {
            inner: Arc::new(Inner {
                target,
                link,
                prepared: Prepared::default(),
                key,
                waiters,
                poll: opts.poll,
                cancels: Mutex::default(),
                abandoned: Mutex::default(),
            }),
        })
    }
}

impl Executor for PgQueue {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.execute(req).await })
    }

    /// Waits (at most [`SETTLE`]) for the cancellations of dropped attempts to reach the
    /// database.
    fn abandon(&self, run_id: &str) {
        self.inner
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id.to_string());
    }

    fn stop_run(&self, run_id: &str) -> BoxFuture<'static, ()> {
        let (inner, run) = (self.inner.clone(), run_id.to_string());
        Box::pin(async move {
            match tokio::time::timeout(SETTLE, inner.cancel_run(&run)).await {
                Ok(Ok(n)) => tracing::debug!("run {run}: {n} open tasks cancelled"),
                Ok(Err(e)) => tracing::warn!(
                    "run {run}: could not cancel its open tasks ({e}); a worker may still run them"
                ),
                Err(_) => tracing::warn!(
                    "run {run}: cancelling its open tasks took longer than {SETTLE:?}; a worker may still run them"
                ),
            }
        })
    }

    fn settle(&self) -> BoxFuture<'static, ()> {
        let pending: Vec<_> =
            std::mem::take(&mut *self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner()));
        Box::pin(async move {
            let all = futures::future::join_all(pending);
            if tokio::time::timeout(SETTLE, all).await.is_err() {
                tracing::warn!(
                    "cancelling abandoned tasks took longer than {SETTLE:?}; a worker may still run them"
                );
            }
        })
    }
}

/// How long a task may wait unclaimed before its attempt says so.
const UNCLAIMED: Duration = Duration::from_secs(10);

/// How long a run's end waits for its abandoned tasks to be cancelled.
const SETTLE: Duration = Duration::from_secs(5);

/// Cancels the task when the waiting attempt is dropped before its result arrived — unless its
/// run was abandoned to another coordinator.
struct CancelOnDrop {
    inner: Arc<Inner>,
    id: i64,
    run: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let abandoned = self
            .inner
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.run);
        if abandoned {
            return;
        }
        let (inner, id) = (self.inner.clone(), self.id);
        // Without a runtime (it is shutting down) the task stays queued; a resumed coordinator
        // re-attaches to it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let task = inner.clone();
            let handle = rt.spawn(async move {
                if let Err(e) = task.cancel(id).await {
                    tracing::warn!("could not cancel task {id}: {e}");
                }
            });
            let mut cancels = inner.cancels.lock().unwrap_or_else(|p| p.into_inner());
            cancels.retain(|h| !h.is_finished());
            cancels.push(handle);
        }
    }
}

impl Inner {
    fn client(&self) -> Result<Arc<tokio_postgres::Client>, String> {
        self.link
            .client()
            .ok_or_else(|| format!("not connected to {}", self.target.name))
    }

    async fn execute(self: Arc<Self>, req: StepRequest) -> Result<StepResult, AttemptError> {
        // Driving the run again (it was taken back): its attempts are this process's again.
        self.abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.run_id);
        let row = encode_request(&req, &self.key).map_err(StepError::Fatal)?;
        let request = row.request.to_string();
        // Queue (or re-attach). Connection trouble is retried; the engine's attempt timeout
        // bounds the whole wait.
        let (id, done) = loop {
            let res = async {
                let c = self.client()?;
                let st = self
                    .prepared
                    .get(&c, SUBMIT)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = c
                    .query_one(
                        &st,
                        &[
                            &row.run_id,
                            &row.step_id,
                            &row.idempotency_key,
                            &row.attempt,
                            &row.uses,
                            &row.action,
                            &row.mode,
                            &request,
                            &row.sealed,
                            &row.key_id,
                        ],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let state: &str = r.get(1);
                let result: Option<&str> = r.get(2);
                Ok::<_, String>((r.get::<_, i64>(0), done_result(state, result)))
            }
            .await;
            match res {
                Ok(v) => break v,
                Err(e) => {
                    tracing::warn!("queueing {}#{}: {e}", req.idempotency_key, req.attempt);
                    tokio::time::sleep(self.poll).await;
                }
            }
        };
        if let Some(r) = done {
            return r;
        }
        let notify = self.waiters.register(id);
        let mut guard = CancelOnDrop {
            inner: self.clone(),
            id,
            run: req.run_id.clone(),
            armed: true,
        };
        let queued_at = std::time::Instant::now();
        let mut warned = false;
        let result = loop {
            // The row is read when the result is announced (or was, before registering) and at
            // each poll tick, which covers announcements lost while the connection was down.
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            // Carried by the announcement: the row says the same (the worker's `FINISH` writes it
            // and announces it in one statement), without a round trip to read it.
            if let Some(r) = self.waiters.carried(id)
                && let Some(r) = done_result("done", Some(&r))
            {
                break r;
            }
            match self.poll_once(id).await {
                Ok((_, Some(r))) => break r,
                // Nobody claimed it for a while: said once, since the step's timeout would
                // otherwise be the first sign (no worker runs, or none holds this task key).
                Ok((state, None))
                    if state == "ready" && !warned && queued_at.elapsed() >= UNCLAIMED =>
                {
                    warned = true;
                    tracing::warn!(
                        "step {} has waited {}s for a worker to claim it (task {id}): is a `meridian worker` running against {}, with the same MERIDIAN_TASK_KEY?",
                        req.step_id,
                        UNCLAIMED.as_secs(),
                        self.target.name
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("waiting for task {id}: {e}"),
            }
        };
        guard.armed = false;
        self.waiters.unregister(id, &notify);
        result
    }

    /// The task's state, and its result once it is done.
    async fn poll_once(
        &self,
        id: i64,
    ) -> Result<(String, Option<Result<StepResult, AttemptError>>), String> {
        let c = self.client()?;
        let st = self
            .prepared
            .get(&c, POLL)
            .await
            .map_err(|e| e.to_string())?;
        let r = c.query_opt(&st, &[&id]).await.map_err(|e| e.to_string())?;
        match r {
            Some(r) => Ok((r.get::<_, String>(0), done_result(r.get(0), r.get(1)))),
            None => Ok((
                "gone".into(),
                Some(Err(StepError::Fatal(format!(
                    "task {id} disappeared from meridian.tasks"
                ))
                .into())),
            )),
        }
    }

    /// Cancels every open task of `run`; how many there were.
    async fn cancel_run(&self, run: &str) -> Result<usize, String> {
        let c = self.client()?;
        let st = self
            .prepared
            .get(&c, CANCEL_RUN)
            .await
            .map_err(|e| e.to_string())?;
        let row = c.query_one(&st, &[&run]).await.map_err(|e| e.to_string())?;
        Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn cancel(&self, id: i64) -> Result<(), String> {
        let c = self.client()?;
        let st = self
            .prepared
            .get(&c, CANCEL)
            .await
            .map_err(|e| e.to_string())?;
        c.query(&st, &[&id]).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn done_result(state: &str, result: Option<&str>) -> Option<Result<StepResult, AttemptError>> {
    if state != "done" {
        return None;
    }
    let j: Json = result
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Json::Null);
    Some(decode_result(&j))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A result announced between queueing and registering is not lost: the waiter registers
    /// with a permit and reads its row at once instead of after a poll tick.
    #[tokio::test]
    async fn a_result_announced_before_the_waiter_registers_wakes_it() {
        let w = Waiters::default();
        w.wake(7, Some("{}"));
        let n = w.register(7);
        tokio::time::timeout(Duration::from_secs(5), n.notified())
            .await
            .expect("the early announcement is a permit");
        assert_eq!(w.carried(7), None, "an early result is read from the row");
        w.unregister(7, &n);
        // Taken once: a second waiter of the same id waits for a new announcement.
        let again = w.register(7);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), again.notified())
                .await
                .is_err()
        );
        w.wake(7, Some(r#"{"ok":1}"#));
        tokio::time::timeout(Duration::from_secs(5), again.notified())
            .await
            .expect("woken while registered");
        assert_eq!(w.carried(7).as_deref(), Some(r#"{"ok":1}"#));
        w.unregister(7, &again);
        assert_eq!(w.carried(7), None, "dropped with its last waiter");
    }

    #[test]
    fn announcements_nobody_waits_for_are_bounded() {
        let w = Waiters::default();
        for id in 0..(EARLY_KEPT as i64 + 10) {
            w.wake(id, Some("{}"));
        }
        let st = w.lock();
        assert_eq!(st.early.len(), EARLY_KEPT);
        assert_eq!(st.early.front(), Some(&10), "the oldest fall out first");
        assert!(st.carried.is_empty(), "no result kept for nobody");
    }
}
