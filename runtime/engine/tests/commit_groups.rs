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

/// What the gate test saw, in order: events, `durable()` asked and resolved, executions.
type Log = Arc<Mutex<Vec<String>>>;

/// A journal whose leg groups become durable 10 ms after they are written.
struct Behind(Log);
impl EventSink for Behind {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(label(event));
        Ok(())
    }
    fn durable(&self) -> meridian_protocol::event::Durable {
        self.0.lock().unwrap().push("durable?".into());
        let log = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            log.lock().unwrap().push("durable".into());
            Ok(())
        })
    }
}

/// Logs each start.
struct Logged(Log);
impl Executor for Logged {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        self.0
            .lock()
            .unwrap()
            .push(format!("execute {}", req.step_id));
        Box::pin(async { Ok(StepResult::default()) })
    }
}

/// A leg that can act (here: granted HTTP) starts only once the results before it are durable;
/// one that only computes starts at once, while the journal flushes. Plan mode acts on nothing.
#[tokio::test(start_paused = true)]
async fn a_leg_that_can_act_waits_for_what_it_reads_to_be_durable() {
    let yaml = "name: w\nsteps:\n  - {id: a, uses: x}\n  - {id: b, uses: x, needs: a, grants: {http: [\"http://127.0.0.1:9\"]}}\n  - {id: c, uses: x, needs: b}\n";
    let wf = Arc::new(meridian_model::parse("t.yaml", yaml).expect("valid workflow"));
    for mode in [meridian_engine::Mode::Apply, meridian_engine::Mode::Plan] {
        let log = Log::default();
        let mut opts = RunOptions::new("r");
        opts.mode = mode;
        opts.sink = Some(Arc::new(Behind(log.clone())));
        let report = run(wf.clone(), Arc::new(Logged(log.clone())), opts)
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
        let log = log.lock().unwrap().clone();
        let at = |s: &str| {
            log.iter()
                .position(|l| l == s)
                .unwrap_or_else(|| panic!("no `{s}` in {log:?}"))
        };
        let between = |from: &str, to: &str| log[at(from)..at(to)].to_vec();
        // `a` and `c` are not held back.
        assert!(
            !between("run-started", "execute a").contains(&"durable?".to_string()),
            "{log:?}"
        );
        assert!(
            !between("leg-finished b", "execute c").contains(&"durable?".to_string()),
            "{log:?}"
        );
        let b = between("leg-finished a", "execute b");
        if mode == meridian_engine::Mode::Apply {
            let asked = b.iter().position(|l| l == "durable?");
            let synced = b.iter().position(|l| l == "durable");
            assert!(asked.is_some() && synced > asked, "{log:?}");
        } else {
            assert!(!b.contains(&"durable?".to_string()), "{log:?}");
        }
    }
}
