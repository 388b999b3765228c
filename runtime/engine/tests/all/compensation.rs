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
