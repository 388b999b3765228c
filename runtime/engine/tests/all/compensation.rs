//! Compensation of completed steps when a run fails.

use std::sync::Arc;

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

/// An operator's cancel while a step runs: the step is cancelled, nothing after it starts,
/// what completed is compensated (a cancel used to stop the run where it stood, a fenced
/// primary left fenced), and the run ends `cancelled` with the operator's reason.
#[tokio::test(start_paused = true)]
async fn a_cancelled_run_compensates_what_completed() {
    let o = opts();
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        cancel.cancel("cancelled through the API by `ops`");
    });
    let (r, exec) = go(
        r#"
name: cancel
steps:
  - id: fence
    uses: test-ok
    compensate: true
  - id: promote
    uses: test-sleep
    needs: fence
    with: {ms: 60000}
  - id: switch
    uses: test-ok
    needs: promote
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:#?}");
    assert_eq!(r.message, "cancelled through the API by `ops`");
    assert_eq!(crate::harness::outcome(&r, "promote"), Outcome::Cancelled);
    assert!(
        !exec.calls().iter().any(|c| c.step == "switch"),
        "nothing starts after a cancel"
    );
    let undone: Vec<(String, Action)> = exec
        .calls()
        .into_iter()
        .filter(|c| c.action == Action::Compensate)
        .map(|c| (c.step, c.action))
        .collect();
    assert_eq!(undone, [("fence".to_string(), Action::Compensate)]);
}

/// What an attempt wrote before the engine dropped it — its run cancelled, or the engine's own
/// timeout — is journaled as any attempt's lines are (a cancelled attempt's lines were lost).
#[tokio::test(start_paused = true)]
async fn a_dropped_attempt_keeps_its_lines() {
    let mut o = opts();
    let events = Arc::new(crate::harness::Recorder::default());
    o.sink = Some(events.clone());
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        cancel.cancel("cancelled through the API by `ops`");
    });
    let (r, _) = go(
        r#"
name: dropped
steps:
  - id: slow
    uses: test-sleep
    timeout: 1s
    with: {ms: 60000, tap: "waiting for the standby to catch up"}
  - id: promote
    uses: test-sleep
    needs: slow
    if: always()
    with: {ms: 60000, tap: "promoting us"}
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:#?}");
    let lines: Vec<(String, String)> = events
        .of_kind("step-log")
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_string(),
                e["lines"][0]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "slow".to_string(),
                "waiting for the standby to catch up".to_string()
            ),
            ("promote".to_string(), "promoting us".to_string()),
        ],
        "the timed-out attempt's line, then the cancelled one's"
    );
}

/// Cancelled before it goes on (a run waiting at a gate, resumed to be cancelled): the steps
/// that finished before are compensated from the journal, and nothing runs — not the gated
/// step, not a cleanup step whose `if:` would run it after a failure.
#[tokio::test(start_paused = true)]
async fn a_run_cancelled_at_its_gate_compensates_and_runs_nothing() {
    let mut o = opts();
    o.prior.insert(
        ("fence".into(), String::new()),
        meridian_engine::PriorLeg {
            outcome: Outcome::Success,
            attempts: 1,
            output: serde_json::json!({}),
            plan: vec![],
            duration: std::time::Duration::from_millis(5),
            error: None,
        },
    );
    o.cancel.cancel("cancelled through the API by `ops`");
    let (r, exec) = go(
        r#"
name: gated
steps:
  - id: fence
    uses: test-ok
    compensate: true
  - id: promote
    uses: test-ok
    needs: fence
    approval: {message: "promote?"}
  - id: cleanup
    uses: test-ok
    needs: promote
    if: always()
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:#?}");
    let calls: Vec<(String, Action)> = exec
        .calls()
        .into_iter()
        .map(|c| (c.step, c.action))
        .collect();
    assert_eq!(calls, [("fence".to_string(), Action::Compensate)]);
    assert_eq!(crate::harness::outcome(&r, "promote"), Outcome::Skipped);
    assert_eq!(crate::harness::outcome(&r, "cleanup"), Outcome::Skipped);
}
