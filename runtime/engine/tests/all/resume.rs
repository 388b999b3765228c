//! Resuming: legs finished in a prior run are reused, not run again.

use std::time::Duration;

use meridian_engine::{Outcome, RunStatus};
use serde_json::json;

use crate::harness::{go, opts};

#[tokio::test(start_paused = true)]
async fn prior_legs_are_not_run_again() {
    let mut o = opts();
    o.prior.insert(
        ("a".into(), String::new()),
        meridian_engine::PriorLeg {
            outcome: Outcome::Success,
            attempts: 1,
            output: json!({"echo": {"v": "from journal"}}),
            plan: vec![],
            duration: Duration::from_millis(5),
            error: None,
        },
    );
    let (r, exec) = go(
        r#"
name: resume
steps:
  - id: a
    uses: test-ok
    with: {v: fresh}
  - id: b
    uses: test-ok
    needs: a
    with: {got: "${{ steps.a.outputs.echo.v }}"}
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(exec.runs_of("a").is_empty());
    assert!(r.step("a").unwrap().legs[0].reused);
    assert_eq!(
        r.step("b").unwrap().legs[0].output,
        json!({"echo": {"got": "from journal"}})
    );
}
