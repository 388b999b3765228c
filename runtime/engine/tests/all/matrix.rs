//! Matrix strategies: a leg per combination.

use meridian_engine::{Outcome, RunStatus};
use serde_json::json;

use crate::harness::{go, opts};

#[tokio::test(start_paused = true)]
async fn every_matrix_leg_output_is_kept() {
    let (r, exec) = go(
        r#"
name: matrix
inputs:
  regions: {type: list, default: [eu, us, ap]}
steps:
  - id: deploy
    uses: test-ok
    strategy:
      matrix:
        region: ${{ inputs.regions }}
    with: {endpoint: "https://${{ matrix.region }}.example"}
  - id: summary
    uses: test-ok
    needs: deploy
    with:
      eu: ${{ steps.deploy.outputs.eu.echo.endpoint }}
      us: ${{ steps.deploy.outputs['us'].echo.endpoint }}
      count: ${{ steps.deploy.legs[2].matrix.region }}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(exec.runs_of("deploy[eu]").len(), 1);
    assert_eq!(r.step("deploy").unwrap().legs.len(), 3);
    assert_eq!(
        r.step("summary").unwrap().legs[0].output,
        json!({"echo": {"eu": "https://eu.example", "us": "https://us.example", "count": "ap"}})
    );
}

#[tokio::test(start_paused = true)]
async fn matrix_fail_fast_cancels_sibling_legs() {
    let (r, _) = go(
        r#"
name: matrix
steps:
  - id: m
    uses: test-fail
    with: {ms: "${{ matrix.ms }}"}
    strategy:
      matrix:
        ms: [10, 60000]
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let legs = &r.step("m").unwrap().legs;
    assert_eq!(legs[0].outcome, Outcome::Failure);
    assert_eq!(legs[1].outcome, Outcome::Cancelled);
}

/// A run that keeps going (`RunOptions::keep_going`: the plans of `drift` and `ready`, which
/// read every region) cancels nothing when a leg fails: one region that cannot be read used to
/// cancel the others' reads, and the whole answer was unknown.
#[tokio::test(start_paused = true)]
async fn a_run_that_keeps_going_lets_every_leg_end_on_its_own() {
    let mut o = opts();
    o.keep_going = true;
    let (r, _) = go(
        r#"
name: read-every-region
steps:
  - id: m
    uses: test-fail
    with: {ms: "${{ matrix.ms }}"}
    strategy:
      matrix:
        ms: [10, 60000]
  - id: other
    uses: test-ok
    with: {ms: 30000}
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let legs = &r.step("m").unwrap().legs;
    assert_eq!(legs[0].outcome, Outcome::Failure);
    assert_eq!(legs[1].outcome, Outcome::Failure, "ran to its own end");
    assert_eq!(r.step("other").unwrap().legs[0].outcome, Outcome::Success);
}

/// A matrix with no legs fails its step, as in GitHub Actions: it used to succeed having done
/// nothing (a deployment to a region list that came out empty passed).
#[tokio::test(start_paused = true)]
async fn a_matrix_of_no_legs_fails_its_step() {
    let (r, exec) = go(
        r#"
name: matrix
inputs:
  regions: {type: list, default: []}
steps:
  - id: deploy
    uses: test-ok
    strategy:
      matrix:
        region: ${{ inputs.regions }}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let step = r.step("deploy").unwrap();
    assert_eq!(step.conclusion, Outcome::Failure);
    assert!(exec.calls().is_empty());
    assert!(r.message.contains("deploy"), "{}", r.message);
}

/// Why a step that ran no leg failed is journaled with its end (`step-finished`'s `reason`):
/// the journal had only "failure", and `runs show` nothing at all. Kept under
/// `continue-on-error`, the failure is in the run's own message (it said "all steps
/// succeeded").
#[tokio::test(start_paused = true)]
async fn why_a_matrix_gave_no_legs_is_journaled_and_a_tolerated_failure_said() {
    let rec = std::sync::Arc::new(crate::harness::Recorder::default());
    let mut o = opts();
    o.sink = Some(rec.clone());
    let (r, _) = go(
        r#"
name: matrix
inputs:
  regions: {type: list, default: []}
steps:
  - id: deploy
    uses: test-ok
    continue-on-error: true
    strategy:
      matrix:
        region: ${{ inputs.regions }}
  - id: after
    uses: test-ok
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        r.message,
        "1 step failed under continue-on-error (deploy); the others succeeded"
    );
    let ends = rec.of_kind("step-finished");
    let deploy = ends.iter().find(|e| e["step"] == "deploy").unwrap();
    assert_eq!(deploy["outcome"], "failure");
    assert!(
        deploy["reason"]
            .as_str()
            .is_some_and(|r| r.contains("strategy.matrix gives no legs")),
        "{deploy}"
    );
    let after = ends.iter().find(|e| e["step"] == "after").unwrap();
    assert!(after.get("reason").is_none(), "{after}");
}
