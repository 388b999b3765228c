//! Retries, backoff and timeouts.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{
    AttemptError, Executor, Outcome, RunStatus, StepError, StepRequest, StepResult, run,
};

use crate::harness::{Shared, TestExec, go, opts, outcome, workflow};

#[tokio::test(start_paused = true)]
async fn retries_follow_exponential_backoff() {
    let (r, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-flaky
    with: {succeed_on: 4}
    retry: {attempts: 5, backoff: exponential, initial: 1s, max: 3s, jitter: false}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let at: Vec<u64> = exec
        .runs_of("f")
        .iter()
        .map(|c| c.at.as_millis() as u64)
        .collect();
    // attempts at 0, +1s, +2s, +3s (capped at max)
    assert_eq!(at, [0, 1000, 3000, 6000]);
    assert_eq!(r.step("f").unwrap().legs[0].attempts, 4);
    // Every attempt carries the same idempotency key.
    let keys: std::collections::BTreeSet<String> =
        exec.runs_of("f").into_iter().map(|c| c.key).collect();
    assert_eq!(keys.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_below_the_computed_delay() {
    let (_, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-flaky
    with: {succeed_on: 3}
    retry: {attempts: 3, backoff: constant, initial: 2s}
"#,
        opts(),
    )
    .await;
    let at: Vec<Duration> = exec.runs_of("f").iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 3);
    assert!(at[1] <= Duration::from_secs(2) && at[2] - at[1] <= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_not_retried_by_default() {
    let (r, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-fail
    retry: {attempts: 5, initial: 10ms}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(exec.runs_of("f").len(), 1);
    assert_eq!(
        r.step("f").unwrap().legs[0].error,
        Some(StepError::Fatal("boom".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn step_timeout_fails_the_attempt_and_can_be_retried() {
    let (r, exec) = go(
        r#"
name: timeout
steps:
  - id: slow
    uses: test-sleep
    with: {ms: 10000}
    timeout: 100ms
    retry: {attempts: 2, initial: 10ms, on: [timeout]}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(exec.runs_of("slow").len(), 2);
    assert_eq!(
        r.step("slow").unwrap().legs[0].error,
        Some(StepError::Timeout(Duration::from_millis(100)))
    );
}

#[tokio::test(start_paused = true)]
async fn run_timeout_cancels_everything() {
    let (r, _) = go(
        r#"
name: timeout
timeout: 1s
steps:
  - id: slow
    uses: test-sleep
    with: {ms: 60000}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::TimedOut);
    assert_eq!(outcome(&r, "slow"), Outcome::Cancelled);
    assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
}

/// Regression: compiling a step's component on a cold cache counted against the step's
/// `timeout:`, so a first run could time out where later runs did not.
#[tokio::test(start_paused = true)]
async fn one_time_preparation_does_not_count_against_the_step_timeout() {
    struct SlowPrepare(Arc<TestExec>);
    impl Executor for SlowPrepare {
        fn execute(
            &self,
            req: StepRequest,
        ) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
            Shared(self.0.clone()).execute(req)
        }
        fn prepare(
            &self,
            _uses: &meridian_engine::ComponentRef,
        ) -> BoxFuture<'static, Result<(), StepError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            })
        }
    }
    let wf = workflow("name: t\nsteps:\n  - id: a\n    uses: test-ok\n    timeout: 100ms\n");
    let exec = Arc::new(TestExec::default());
    let r = run(wf, Arc::new(SlowPrepare(exec.clone())), opts())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(exec.runs_of("a").len(), 1);
}

/// An attempt the executor reports cancelled while the run cancelled nothing (a queue's task
/// cancelled by another coordinator) is a failed attempt, retried under the policy: it counted
/// as the run's own cancellation, and the run ended "succeeded" with the step never done.
#[tokio::test(start_paused = true)]
async fn a_cancellation_the_run_did_not_make_fails_the_attempt() {
    let (r, exec) = go(
        r#"
name: stolen
steps:
  - id: a
    uses: test-fail
    with: {kind: cancelled}
    retry: {attempts: 2, initial: 1s}
  - id: b
    uses: test-ok
    needs: a
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed, "{}", r.message);
    assert_eq!(exec.runs_of("a").len(), 2, "retried as a retryable failure");
    let leg = &r.step("a").unwrap().legs[0];
    assert_eq!(leg.outcome, meridian_engine::Outcome::Failure);
    assert!(
        leg.error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("cancelled outside this run")),
        "{leg:?}"
    );
    assert!(exec.runs_of("b").is_empty());
}
