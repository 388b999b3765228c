//! Scheduling: `needs:` order and outputs, `if:` and skips, fail-fast, parallelism.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meridian_engine::{Outcome, RunStatus};
use serde_json::json;

use crate::harness::{Recorder, go, opts, outcome};

#[tokio::test(start_paused = true)]
async fn dependencies_order_and_outputs_flow() {
    let (r, exec) = go(
        r#"
name: flow
inputs:
  who: {type: string, default: world}
steps:
  - id: a
    uses: test-ok
    with: {greeting: "hello ${{ inputs.who }}"}
  - id: b
    uses: test-ok
    needs: a
    with:
      got: ${{ steps.a.outputs.echo.greeting }}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let order: Vec<String> = exec.calls().into_iter().map(|c| c.step).collect();
    assert_eq!(order, ["a", "b"]);
    assert_eq!(
        r.step("b").unwrap().legs[0].output,
        json!({"echo": {"got": "hello world"}})
    );
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_bounded() {
    let mut steps = String::from("name: par\nsteps:\n");
    for i in 0..6 {
        steps.push_str(&format!(
            "  - id: s{i}\n    uses: test-sleep\n    with: {{ms: 50}}\n"
        ));
    }
    let mut o = opts();
    o.max_parallel = 2;
    let (r, exec) = go(&steps, o).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(exec.max_active.load(Ordering::SeqCst), 2);
    assert_eq!(exec.calls().len(), 6);
}

#[tokio::test(start_paused = true)]
/// A failure starts nothing more but `always()`/`failure()` steps; the steps already running
/// end on their own. They used to be cancelled: a promotion or DNS change in flight was cut off
/// halfway by an unrelated failure, and, not having completed, was not compensated either.
async fn a_failure_lets_running_steps_finish_and_skips_the_rest() {
    let started = tokio::time::Instant::now();
    let (r, exec) = go(
        r#"
name: failfast
steps:
  - id: bad
    uses: test-fail
    with: {ms: 10}
  - id: long
    uses: test-sleep
    with: {ms: 60000}
  - id: after
    uses: test-ok
    needs: [long]
  - id: cleanup
    uses: test-ok
    needs: [bad]
    if: always()
  - id: on-failure
    uses: test-ok
    needs: [long]
    if: failure()
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(outcome(&r, "long"), Outcome::Success);
    assert_eq!(outcome(&r, "after"), Outcome::Skipped);
    assert_eq!(outcome(&r, "cleanup"), Outcome::Success);
    assert_eq!(outcome(&r, "on-failure"), Outcome::Success);
    assert!(exec.runs_of("after").is_empty());
    // The run waited for `long` (paused time: the minute passes at once).
    assert!(started.elapsed() >= Duration::from_secs(60));
    assert_eq!(r.message, "failed: bad");
}

#[tokio::test(start_paused = true)]
async fn continue_on_error_lets_the_run_succeed() {
    let (r, _) = go(
        r#"
name: coe
steps:
  - id: optional
    uses: test-fail
    continue-on-error: true
  - id: next
    uses: test-ok
    needs: optional
    with: {saw: "${{ steps.optional.outcome }}"}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(outcome(&r, "optional"), Outcome::Failure);
    assert_eq!(
        r.step("next").unwrap().legs[0].output,
        json!({"echo": {"saw": "failure"}})
    );
}

#[tokio::test(start_paused = true)]
async fn conditions_skip_steps() {
    let (r, exec) = go(
        r#"
name: cond
inputs:
  enabled: {type: bool, default: false}
steps:
  - id: maybe
    uses: test-ok
    if: inputs.enabled
  - id: dependent
    uses: test-ok
    needs: maybe
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(outcome(&r, "maybe"), Outcome::Skipped);
    assert_eq!(outcome(&r, "dependent"), Outcome::Skipped);
    assert!(exec.calls().is_empty());
    // Not "all steps succeeded" when none ran.
    assert_eq!(
        r.message,
        "every step that ran succeeded; 2 skipped: maybe, dependent"
    );
}

/// Steps become ready in passes over file order: one made ready while a pass starts steps starts
/// in that pass if it comes later in the file, else in the next pass. The order is observable:
/// here, in the order of the skips.
#[tokio::test(start_paused = true)]
async fn ready_steps_start_in_passes_over_file_order() {
    let sink = Arc::new(Recorder::default());
    let mut o = opts();
    o.sink = Some(sink.clone());
    let (r, _) = go(
        r#"
name: order
inputs:
  enabled: {type: bool, default: false}
steps:
  - id: late
    uses: test-ok
    needs: gate
  - id: root
    uses: test-ok
  - id: gate
    uses: test-ok
    needs: root
    if: inputs.enabled
  - id: tail
    uses: test-ok
    needs: gate
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let skipped: Vec<String> = sink
        .of_kind("step-skipped")
        .iter()
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(skipped, ["gate", "tail", "late"]);
}

/// Steps ready at once start in file order, so a step whose `if:` fails as it starts fails the
/// run for the ready steps after it (skipped) but not for those before it (started, then
/// cancelled).
#[tokio::test(start_paused = true)]
async fn a_step_failing_as_it_starts_skips_the_ready_steps_after_it() {
    let (r, exec) = go(
        r#"
name: order
steps:
  - id: a
    uses: test-ok
  - id: before
    uses: test-sleep
    needs: a
    with: {ms: 1000}
  - id: broken
    uses: test-ok
    needs: a
    if: fromJSON('{not json')
  - id: after
    uses: test-ok
    needs: a
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(outcome(&r, "before"), Outcome::Success);
    assert_eq!(outcome(&r, "broken"), Outcome::Failure);
    assert_eq!(outcome(&r, "after"), Outcome::Skipped);
    assert!(exec.runs_of("after").is_empty());
}

/// A step needing several others (one of them twice over a diamond) starts once, after the last.
#[tokio::test(start_paused = true)]
async fn a_step_starts_once_after_all_it_needs() {
    let (r, exec) = go(
        r#"
name: diamond
steps:
  - id: join
    uses: test-ok
    needs: [left, right, root]
  - id: root
    uses: test-ok
  - id: left
    uses: test-sleep
    needs: root
    with: {ms: 300}
  - id: right
    uses: test-sleep
    needs: root
    with: {ms: 100}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let join = exec.runs_of("join");
    assert_eq!(join.len(), 1);
    assert_eq!(join[0].at, Duration::from_millis(300));
}
