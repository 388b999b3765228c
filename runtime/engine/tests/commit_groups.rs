//! How the engine hands events to a journal: legs that finish together go as one group (one
//! durable commit), a lone leg is never held back waiting for company, and a step's dependents
//! start only after its leg-finished event was handed over.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{
    AttemptError, Event, EventSink, Executor, RunOptions, RunStatus, SinkError, StepRequest,
    StepResult, run,
};
use serde_json::Value as Json;

/// Returns at once, or after `with.ms` of (paused) tokio time.
struct Exec;
impl Executor for Exec {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        Box::pin(async move {
            let ms = req.input.get("ms").and_then(Json::as_u64).unwrap_or(0);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(StepResult::default())
        })
    }
}

/// The kinds of events of each call, one entry per `emit` or `emit_all`.
#[derive(Default)]
struct Calls(Mutex<Vec<Vec<String>>>);
impl Calls {
    fn groups(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap().clone()
    }
    /// The calls that carried leg-finished events, as the steps they finished.
    fn leg_groups(&self) -> Vec<Vec<String>> {
        self.groups()
            .into_iter()
            .filter(|g| g.iter().any(|k| k.starts_with("leg-finished")))
            .map(|g| {
                g.into_iter()
                    .filter_map(|k| k.strip_prefix("leg-finished ").map(str::to_string))
                    .collect()
            })
            .collect()
    }
}
fn label(e: &Event) -> String {
    match e.step() {
        Some(s) => format!("{} {s}", e.kind()),
        None => e.kind().to_string(),
    }
}
impl EventSink for Calls {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(vec![label(event)]);
        Ok(())
    }
    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap()
            .push(events.iter().map(label).collect());
        Ok(())
    }
}

async fn go(yaml: &str) -> Arc<Calls> {
    let wf = Arc::new(meridian_model::parse("t.yaml", yaml).expect("valid workflow"));
    let calls = Arc::new(Calls::default());
    let mut opts = RunOptions::new("r");
    opts.inputs = meridian_engine::inputs::resolve(&wf, &BTreeMap::new()).unwrap();
    opts.max_parallel = 4;
    opts.sink = Some(calls.clone());
    let report = run(wf, Arc::new(Exec), opts).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    calls
}

#[tokio::test(start_paused = true)]
async fn legs_that_finish_together_are_one_group() {
    let calls = go("name: w\nsteps:\n  - {id: a, uses: x}\n  - {id: b, uses: x}\n  - {id: c, uses: x}\n  - {id: d, uses: x}\n").await;
    assert_eq!(calls.leg_groups(), [vec!["a", "b", "c", "d"]]);
}

#[tokio::test(start_paused = true)]
async fn a_matrix_step_finishing_together_is_one_group() {
    let calls = go(
        "name: w\nsteps:\n  - id: m\n    uses: x\n    strategy:\n      matrix:\n        region: [eu, us, ap]\n",
    )
    .await;
    assert_eq!(calls.leg_groups(), [vec!["m", "m", "m"]]);
}

#[tokio::test(start_paused = true)]
async fn a_lone_leg_is_not_held_back_for_a_slower_one() {
    let calls = go(
        "name: w\nsteps:\n  - {id: fast, uses: x}\n  - {id: slow, uses: x, with: {ms: 50}}\n  - {id: next, uses: x, needs: fast}\n",
    )
    .await;
    // `next` ran while `slow` slept: `fast` was handed over alone, and so was `next`.
    assert_eq!(
        calls.leg_groups(),
        [vec!["fast"], vec!["next"], vec!["slow"]]
    );
}

#[tokio::test(start_paused = true)]
async fn dependents_start_after_the_leg_finished_was_handed_over() {
    let calls = go("name: w\nsteps:\n  - {id: a, uses: x}\n  - {id: b, uses: x, needs: a}\n").await;
    let flat: Vec<String> = calls.groups().into_iter().flatten().collect();
    let at = |label: &str| flat.iter().position(|l| l == label).unwrap();
    assert!(at("leg-finished a") < at("attempt-started b"), "{flat:?}");
    assert_eq!(flat.first().map(String::as_str), Some("run-started"));
    assert_eq!(flat.last().map(String::as_str), Some("run-finished"));
}
