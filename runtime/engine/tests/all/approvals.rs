//! Approval gates: by flag, by prompt, or stopping to await one.

use std::sync::Arc;

use futures::future::BoxFuture;
use meridian_engine::{Approver, Outcome, RunStatus};

use crate::harness::{go, opts, outcome};

struct Answer(bool);
impl Approver for Answer {
    fn ask(&self, _step: &str, _message: &str) -> BoxFuture<'static, bool> {
        let a = self.0;
        Box::pin(async move { a })
    }
}

const GATED: &str = r#"
name: gate
steps:
  - id: prepare
    uses: test-ok
  - id: promote
    uses: test-ok
    needs: prepare
    approval: {message: "promote the standby?"}
  - id: independent
    uses: test-ok
"#;

#[tokio::test(start_paused = true)]
async fn approval_without_approver_stops_cleanly() {
    let (r, exec) = go(GATED, opts()).await;
    assert_eq!(r.status, RunStatus::AwaitingApproval);
    assert_eq!(r.message, "waiting for approval of promote");
    assert!(exec.runs_of("promote").is_empty());
    assert_eq!(outcome(&r, "independent"), Outcome::Success);
}

/// A plan does not stop at a gate (it changes nothing): it plans what lies beyond, nobody is
/// asked, and the journal says a run waits there. It used to end `awaiting-approval`, its plan
/// cut short at the first gate unless `--approve` was given.
#[tokio::test(start_paused = true)]
async fn a_plan_passes_gates_and_says_a_run_waits_there() {
    let rec = Arc::new(crate::harness::Recorder::default());
    let mut o = opts();
    o.mode = meridian_engine::Mode::Plan;
    o.sink = Some(rec.clone());
    // Not asked in a plan, even with somebody there to answer.
    o.approver = Some(Arc::new(Answer(false)));
    let (r, exec) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{}", r.message);
    assert_eq!(exec.runs_of("promote").len(), 1);
    let granted = rec.of_kind("approval-granted");
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0]["step"], "promote");
    assert_eq!(granted[0]["by"], meridian_engine::PLAN_PASSES_GATES);
    // A refusal given up front still holds in a plan.
    let mut o = opts();
    o.mode = meridian_engine::Mode::Plan;
    o.rejections
        .insert("promote".into(), ("bob".into(), "no".into()));
    let (r, exec) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(exec.runs_of("promote").is_empty());
}

#[tokio::test(start_paused = true)]
async fn approval_by_flag_or_prompt() {
    let mut o = opts();
    o.approvals.insert("promote".into(), "--approve".into());
    let (r, _) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Succeeded);

    let mut o = opts();
    o.approver = Some(Arc::new(Answer(true)));
    let (r, _) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Succeeded);

    let mut o = opts();
    o.approver = Some(Arc::new(Answer(false)));
    let (r, exec) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(exec.runs_of("promote").is_empty());
}

/// A refusal given up front (the server's reject): the step fails without running, and the
/// journal says who refused and why.
#[tokio::test(start_paused = true)]
async fn a_rejected_gate_fails_its_step_and_names_who() {
    let mut o = opts();
    o.rejections.insert(
        "promote".into(),
        ("alice".into(), "not during the sale".into()),
    );
    let (r, exec) = go(GATED, o).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(exec.runs_of("promote").is_empty());
    let step = r.steps.iter().find(|s| s.id == "promote").unwrap();
    assert_eq!(
        step.reason.as_deref(),
        Some("approval rejected by alice: not during the sale")
    );
}
