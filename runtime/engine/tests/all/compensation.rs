//! Compensation of completed steps when a run fails.

use meridian_engine::{Action, Outcome, RunStatus};

use crate::harness::{go, opts};

#[tokio::test(start_paused = true)]
async fn completed_steps_are_compensated_in_reverse_order() {
    let (r, exec) = go(
        r#"
name: comp
steps:
  - id: a
    uses: test-ok
    compensate: true
  - id: b
    uses: test-ok
    needs: a
    compensate:
      uses: test-ok
      with: {undo: "${{ steps.b.outputs.echo.n }}"}
    with: {n: 7}
  - id: c
    uses: test-ok
    needs: b
  - id: d
    uses: test-fail
    needs: c
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let comp: Vec<(String, Action)> = exec
        .calls()
        .into_iter()
        .filter(|c| c.step.ends_with(":compensate") || c.action == Action::Compensate)
        .map(|c| (c.step, c.action))
        .collect();
    assert_eq!(
        comp,
        [
            ("b:compensate".to_string(), Action::Run),
            ("a".to_string(), Action::Compensate)
        ]
    );
    assert_eq!(r.compensations.len(), 2);
    assert!(
        r.compensations
            .iter()
            .all(|c| c.outcome == Outcome::Success)
    );
}

/// A compensation that fails is said in the run's message: the run failed, and the world was
/// not put back (the message used to name the failed step only).
#[tokio::test(start_paused = true)]
async fn a_failed_compensation_is_in_the_runs_message() {
    let (r, _) = go(
        r#"
name: comp
steps:
  - id: a
    uses: test-ok
    compensate:
      uses: test-fail
  - id: boom
    uses: test-fail
    needs: a
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.compensations[0].outcome, Outcome::Failure);
    assert_eq!(r.message, "failed: boom; compensation failed: a");
}

/// A compensation is retried as the step's attempts are (`retry:`): it used to be tried once,
/// whatever the step said.
#[tokio::test(start_paused = true)]
async fn a_compensation_is_retried_as_its_step_is() {
    let (r, exec) = go(
        r#"
name: comp
steps:
  - id: a
    uses: test-ok
    retry: {attempts: 3, initial: 1s}
    compensate:
      uses: test-fail
      with: {kind: retryable}
  - id: b
    uses: test-ok
    compensate:
      uses: test-fail
  - id: boom
    uses: test-fail
    needs: [a, b]
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(exec.runs_of("a:compensate").len(), 3, "three attempts");
    assert_eq!(exec.runs_of("b:compensate").len(), 1, "no retry: once");
    assert!(
        r.compensations
            .iter()
            .all(|c| c.outcome == Outcome::Failure)
    );
}

/// What a compensation logs is journaled, masked, marked as the compensation's, one event per
/// attempt (it used to be dropped: an operator saw "compensation failed" and nothing more).
#[tokio::test(start_paused = true)]
async fn a_compensations_logs_are_journaled_per_attempt() {
    let rec = std::sync::Arc::new(crate::harness::Recorder::default());
    let mut o = opts();
    o.sink = Some(rec.clone());
    o.secrets.insert("TOKEN".into(), "hunter22".into());
    let (r, _) = go(
        r#"
name: comp
steps:
  - id: a
    uses: test-ok
    with: {log: "ran"}
    retry: {attempts: 2, initial: 1s}
    compensate:
      uses: test-fail
      with: {kind: retryable, log: "undo refused by hunter22"}
  - id: boom
    uses: test-fail
    needs: a
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let logs = rec.of_kind("step-log");
    let shown: Vec<(String, u64, bool, String)> = logs
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_string(),
                e["attempt"].as_u64().unwrap(),
                e["compensation"].as_bool().unwrap_or(false),
                e["lines"][0]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("a".to_string(), 1, false, "ran".to_string()),
            ("a".to_string(), 1, true, "undo refused by ***".to_string()),
            ("a".to_string(), 2, true, "undo refused by ***".to_string()),
        ]
    );
    // A run attempt's log says nothing of compensation (old journals read the same).
    assert!(logs[0].get("compensation").is_none(), "{}", logs[0]);
}
