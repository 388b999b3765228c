//! A step's inputs: evaluated before it runs, secrets masked wherever they show.

use std::collections::BTreeMap;
use std::sync::Arc;

use meridian_engine::{RunStatus, StepError};

use crate::harness::{Recorder, go, opts};

#[tokio::test(start_paused = true)]
async fn secrets_are_masked_in_events_and_reports() {
    let sink = Arc::new(Recorder::default());
    let mut o = opts();
    o.secrets = BTreeMap::from([("TOKEN".to_string(), "s3cr3t-value".to_string())]);
    o.sink = Some(sink.clone());
    let (r, _) = go(
        r#"
name: secret
secrets: [TOKEN]
steps:
  - id: leak
    uses: test-ok
    with: {header: "Bearer ${{ secrets.TOKEN }}"}
    grants: {secrets: [TOKEN]}
  - id: fail
    uses: test-fail
    needs: leak
    with: {message: "bad token s3cr3t-value"}
"#,
        o,
    )
    .await;
    let all = serde_json::to_string(&*sink.0.lock().unwrap()).unwrap()
        + &serde_json::to_string(&r).unwrap();
    assert!(!all.contains("s3cr3t-value"), "{all}");
    assert!(all.contains("Bearer ***"));
    assert!(all.contains("bad token ***"));
}

#[tokio::test(start_paused = true)]
async fn invalid_input_values_fail_the_leg_without_running_it() {
    let (r, exec) = go(
        r#"
name: bad
steps:
  - id: a
    uses: test-ok
    with: {v: "${{ fromJSON('{not json') }}"}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(exec.calls().is_empty());
    assert!(matches!(
        r.step("a").unwrap().legs[0].error,
        Some(StepError::InvalidInput(_))
    ));
}
