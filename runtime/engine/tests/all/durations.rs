//! Leg durations: a leg's own work, not its time queued.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meridian_engine::RunStatus;

use crate::harness::{Recorder, go, opts};

/// Each `leg-finished` event's (leg key, duration in ms), in the order the legs finished.
fn leg_durations(sink: &Recorder) -> Vec<(String, u64)> {
    sink.of_kind("leg-finished")
        .iter()
        .map(|e| {
            let key = e["leg"].as_str().unwrap().to_string();
            (key, e["duration"].as_u64().unwrap())
        })
        .collect()
}

/// Regression: a leg's duration ran from when it was spawned, so a leg queued behind
/// `max-parallel` showed its wait as run time (1 s of work after 2 s of queueing read 3 s) in
/// the terminal and JSON, while the HTML timeline (built from attempt events) showed 1 s.
#[tokio::test(start_paused = true)]
async fn leg_durations_exclude_time_queued_behind_max_parallel() {
    let sink = Arc::new(Recorder::default());
    let mut o = opts();
    o.sink = Some(sink.clone());
    let (r, exec) = go(
        r#"
name: queued
steps:
  - id: m
    uses: test-sleep
    with: {ms: 1000}
    strategy:
      max-parallel: 1
      matrix:
        region: [eu, us, ap]
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    // The legs did queue: one at a time, a second apart.
    assert_eq!(exec.max_active.load(Ordering::SeqCst), 1);
    let starts: Vec<u64> = exec
        .calls()
        .iter()
        .map(|c| c.at.as_millis() as u64)
        .collect();
    assert_eq!(starts, [0, 1000, 2000]);
    let legs = &r.step("m").unwrap().legs;
    let reported: Vec<(&str, Duration)> =
        legs.iter().map(|l| (l.key.as_str(), l.duration)).collect();
    let one = Duration::from_secs(1);
    assert_eq!(reported, [("eu", one), ("us", one), ("ap", one)]);
    assert_eq!(
        leg_durations(&sink),
        [
            ("eu".into(), 1000),
            ("us".into(), 1000),
            ("ap".into(), 1000)
        ]
    );
}

/// The run-wide parallelism queues legs too; a leg's waits between its own retries are part of
/// its work and count.
#[tokio::test(start_paused = true)]
async fn leg_durations_count_retry_waits_but_not_the_run_wide_queue() {
    let sink = Arc::new(Recorder::default());
    let mut o = opts();
    o.sink = Some(sink.clone());
    o.max_parallel = 1;
    let (r, exec) = go(
        r#"
name: queued
steps:
  - id: a
    uses: test-flaky
    with: {ms: 1000, succeed_on: 2}
    retry: {attempts: 2, backoff: constant, initial: 500ms, jitter: false}
  - id: b
    uses: test-flaky
    with: {ms: 1000, succeed_on: 2}
    retry: {attempts: 2, backoff: constant, initial: 500ms, jitter: false}
"#,
        o,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    // Attempt, 500 ms wait, attempt: 2.5 s per leg, and `b` queued behind `a` for all of it.
    let starts: Vec<u64> = exec
        .calls()
        .iter()
        .map(|c| c.at.as_millis() as u64)
        .collect();
    assert_eq!(starts, [0, 1500, 2500, 4000]);
    let d = Duration::from_millis(2500);
    assert_eq!(r.step("a").unwrap().legs[0].duration, d);
    assert_eq!(r.step("b").unwrap().legs[0].duration, d);
    assert_eq!(
        leg_durations(&sink),
        [(String::new(), 2500), (String::new(), 2500)]
    );
}
