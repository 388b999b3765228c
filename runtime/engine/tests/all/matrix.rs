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

/// An `if:` that reads `matrix` is read per leg: a drained region's legs are skipped, the others
/// run, and the steps after see the step succeed. (Read once for the whole step, before the
/// legs existed, `matrix.region` was not there to read.)
#[tokio::test(start_paused = true)]
async fn an_if_that_reads_the_matrix_skips_only_the_legs_it_is_false_for() {
    let (r, exec) = go(
        r#"
name: drain
inputs:
  regions: {type: list, default: [eu, us, ap]}
  drain: {type: list, default: [us]}
steps:
  - id: push
    uses: test-ok
    if: ${{ !contains(inputs.drain, matrix.region) }}
    strategy:
      matrix:
        region: ${{ inputs.regions }}
    with: {region: "${{ matrix.region }}"}
  - id: dns
    uses: test-ok
    needs: push
    with: {eu: "${{ steps.push.outputs.eu.echo.region }}"}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(exec.runs_of("push[eu]").len(), 1);
    assert_eq!(exec.runs_of("push[ap]").len(), 1);
    assert!(exec.runs_of("push[us]").is_empty(), "a drained leg ran");
    let push = r.step("push").unwrap();
    assert_eq!(push.outcome, Outcome::Success);
    let outcome_of = |k: &str| push.legs.iter().find(|l| l.key == k).unwrap().outcome;
    assert_eq!(outcome_of("us"), Outcome::Skipped);
    assert_eq!(outcome_of("eu"), Outcome::Success);
    assert_eq!(r.step("dns").unwrap().outcome, Outcome::Success);
}

/// Every leg left out: the step is skipped, with why, and so are the steps that need it.
#[tokio::test(start_paused = true)]
async fn an_if_false_for_every_leg_skips_the_step() {
    let (r, exec) = go(
        r#"
name: drain-all
steps:
  - id: push
    uses: test-ok
    if: ${{ matrix.region == 'nowhere' }}
    strategy:
      matrix:
        region: [eu, us]
  - id: after
    uses: test-ok
    needs: push
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert!(exec.runs_of("push[eu]").is_empty() && exec.runs_of("push[us]").is_empty());
    let push = r.step("push").unwrap();
    assert_eq!(push.outcome, Outcome::Skipped);
    assert!(
        push.reason
            .as_deref()
            .is_some_and(|m| m.contains("false for every leg")),
        "{push:?}"
    );
    assert_eq!(r.step("after").unwrap().outcome, Outcome::Skipped);
}

/// A per-leg `if:` still waits for the step's needs: after a failure, no leg runs (unless a
/// status function says otherwise).
#[tokio::test(start_paused = true)]
async fn a_per_leg_if_does_not_run_legs_after_a_failure() {
    let (r, exec) = go(
        r#"
name: after-failure
steps:
  - id: first
    uses: test-fail
    with: {ms: 1}
  - id: push
    uses: test-ok
    needs: first
    if: ${{ matrix.region != 'us' }}
    strategy:
      matrix:
        region: [eu, us]
  - id: cleanup
    uses: test-ok
    needs: first
    if: ${{ always() && matrix.region == 'eu' }}
    strategy:
      matrix:
        region: [eu, us]
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    assert!(
        exec.runs_of("push[eu]").is_empty(),
        "ran after its need failed"
    );
    assert_eq!(r.step("push").unwrap().outcome, Outcome::Skipped);
    assert_eq!(exec.runs_of("cleanup[eu]").len(), 1);
    assert!(exec.runs_of("cleanup[us]").is_empty());
}
