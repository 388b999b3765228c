//! A fake step executor for this crate's tests, benchmarks and `meridian-test-worker`: plain Rust
//! steps that optionally record every execution's start and end in a table, so tests can check
//! from the outside which worker ran what, and when.
//!
//! Steps (`uses:`):
//! - `test-noop`: returns `{}` at once and records nothing (benchmarks).
//! - `test-ok`: returns `{"echo": <input>}`.
//! - `test-sleep`: sleeps `with.ms`, then returns `{"slept": ms, "echo": <input>}`.
//! - `test-fail`: fails with `with.kind` (`fatal` default, `retryable`, `invalid`).
//! - `test-flaky`: fails retryably until attempt `with.succeed_on` (default 2), then returns
//!   `{"attempt": n}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use meridian_engine::{AttemptError, Executor, StepError, StepRequest, StepResult};
use tokio_postgres::Client;

use crate::DistError;
use crate::conn::Target;

/// Creates the table [`FakeExec`] records into (in the public schema of the given database).
pub const RECORD_TABLE: &str = "CREATE TABLE IF NOT EXISTS test_exec (
    id bigserial PRIMARY KEY,
    worker text NOT NULL,
    idempotency_key text NOT NULL,
    attempt integer NOT NULL,
    started_us bigint NOT NULL,
    ended_us bigint,
    how text
)";

/// Microseconds since the epoch on this machine's clock.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The fake executor. Cheap to clone.
#[derive(Clone)]
pub struct FakeExec {
    worker: Arc<str>,
    record: Option<Arc<Client>>,
}

impl std::fmt::Debug for FakeExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeExec")
            .field("worker", &self.worker)
            .finish()
    }
}

impl FakeExec {
    /// `record_dsn`: where `test_exec` lives (it must exist, see [`RECORD_TABLE`]); `None` records
    /// nothing.
    pub async fn new(worker: &str, record_dsn: Option<&str>) -> Result<FakeExec, DistError> {
        let record = match record_dsn {
            Some(dsn) => Some(Arc::new(Target::parse(dsn)?.connect().await?)),
            None => None,
        };
        Ok(FakeExec {
            worker: worker.into(),
            record,
        })
    }
}

/// Records the end of an execution when dropped: also when the worker stops the step mid-way.
/// The time is taken at the drop; the row is written by a spawned task.
struct EndRecord {
    client: Arc<Client>,
    row: i64,
    armed: bool,
}

impl Drop for EndRecord {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, row, at) = (self.client.clone(), self.row, now_us());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client
                    .execute(
                        "UPDATE test_exec SET ended_us = $2, how = 'stopped' WHERE id = $1",
                        &[&row, &at],
                    )
                    .await;
            });
        }
    }
}

impl Executor for FakeExec {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        let me = self.clone();
        Box::pin(async move {
            let name = req.uses.builtin_name().unwrap_or("");
            if name == "test-noop" {
                return Ok(StepResult::default());
            }
            let mut end = None;
            if let Some(c) = &me.record {
                let row: i64 = c
                    .query_one(
                        "INSERT INTO test_exec (worker, idempotency_key, attempt, started_us)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                        &[
                            &&*me.worker,
                            &req.idempotency_key,
                            &(req.attempt as i32),
                            &now_us(),
                        ],
                    )
                    .await
                    .map_err(|e| StepError::Fatal(format!("recording the start: {e}")))?
                    .get(0);
                end = Some(EndRecord {
                    client: c.clone(),
                    row,
                    armed: true,
                });
            }
            let ms = meridian_engine::testkit::sleep_ms(&req);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let result = meridian_engine::testkit::respond(&req);
            if let Some(mut e) = end.take() {
                // Written before the result is returned, so it lands before the result commits.
                e.armed = false;
                e.client
                    .execute(
                        "UPDATE test_exec SET ended_us = $2, how = 'finished' WHERE id = $1",
                        &[&e.row, &now_us()],
                    )
                    .await
                    .map_err(|err| StepError::Fatal(format!("recording the end: {err}")))?;
            }
            result
        })
    }
}
