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

/// A resumed leg goes on from the attempts begun before the runner stopped, and the failed ones
/// count against its retries: with `attempts: 3`, attempt 1 failed and attempt 2 was cut off by
/// the runner's death (it did not fail, and does not count), so attempt 2 runs again, then 3
/// and 4. A resumed leg started again at attempt 1 with its whole budget, whatever it had spent.
#[tokio::test(start_paused = true)]
async fn a_resumed_leg_numbers_on_and_spends_what_is_left_of_its_retries() {
    let earlier = meridian_engine::EarlierAttempts { last: 2, failed: 1 };
    let workflow = |uses: &str| {
        format!(
            "name: resume\nsteps:\n  - id: f\n    uses: {uses}\n    with: {{kind: retryable, succeed_on: 4}}\n    retry: {{attempts: 3, initial: 10ms}}\n"
        )
    };
    let mut o = opts();
    o.earlier.insert(("f".into(), String::new()), earlier);
    let (r, exec) = go(&workflow("test-flaky"), o).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(exec.runs_of("f").len(), 3);
    let leg = &r.step("f").unwrap().legs[0];
    assert_eq!((leg.attempts, &leg.output), (4, &json!({"attempt": 4})));

    let mut o = opts();
    o.earlier.insert(("f".into(), String::new()), earlier);
    let (r, exec) = go(&workflow("test-fail"), o).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        exec.runs_of("f").len(),
        3,
        "attempts 2, 3 and 4, then no more"
    );
    assert_eq!(r.step("f").unwrap().legs[0].attempts, 4);
}

#[test]
fn an_interrupted_attempt_goes_on_under_its_number() {
    use meridian_engine::EarlierAttempts;
    let next = |last, failed| EarlierAttempts { last, failed }.next();
    assert_eq!(next(0, 0), 1, "nothing before");
    assert_eq!(next(1, 0), 1, "attempt 1 was cut off: it goes on");
    assert_eq!(next(1, 1), 2, "attempt 1 failed");
    assert_eq!(next(3, 2), 3);
}

/// A resumed run's duration counts from its first start, as the run list counts it (the hour it
/// stood at its gate included), and the report says how long the resume itself took; a fresh
/// run has no resume part.
#[tokio::test]
async fn a_resumed_run_counts_its_duration_from_its_first_start() {
    let yaml = "name: resume\nsteps:\n  - id: a\n    uses: test-ok\n  - id: b\n    uses: test-ok\n    needs: a\n";
    let mut o = opts();
    o.started_at_ms -= 3_600_000;
    o.prior.insert(
        ("a".into(), String::new()),
        meridian_engine::PriorLeg {
            outcome: Outcome::Success,
            attempts: 1,
            output: json!({}),
            plan: vec![],
            duration: Duration::from_millis(5),
            error: None,
        },
    );
    let (r, _) = go(yaml, o).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(r.duration >= Duration::from_secs(3600), "{:?}", r.duration);
    let this = r.resumed.expect("a resume says how long it took");
    assert!(this < Duration::from_secs(60), "{this:?}");
    assert!(
        serde_json::to_value(&r).unwrap()["resumed_ms"].is_u64(),
        "--json carries it"
    );

    let mut o = opts();
    o.started_at_ms -= 3_600_000;
    let (r, _) = go(yaml, o).await;
    assert_eq!(r.resumed, None);
    assert!(r.duration < Duration::from_secs(60), "{:?}", r.duration);
    assert!(
        serde_json::to_value(&r)
            .unwrap()
            .get("resumed_ms")
            .is_none()
    );
}
