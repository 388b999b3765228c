//! The harness: workflows of test steps run by an in-process executor, events recorded.
//!
//! Test steps (`uses:`):
//! - `test-ok`: returns `{"echo": <input>}`.
//! - `test-sleep`: sleeps `with.ms` (tokio time), then returns `{"slept": ms, "echo": with}`.
//! - `test-fail`: fails with `with.kind` (`fatal` default, `retryable`, `invalid`) after `with.ms`.
//! - `test-flaky`: fails retryably until attempt `with.succeed_on`, then returns `{"attempt": n}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{
    Action, AttemptError, Event, EventSink, Executor, Outcome, RunOptions, RunReport, SinkError,
    StepRequest, StepResult, run,
};
use serde_json::Value as Json;

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) step: String,
    pub(crate) action: Action,
    pub(crate) at: Duration,
    pub(crate) key: String,
    /// The request's http grants, as their canonical text.
    pub(crate) http: Vec<String>,
}

#[derive(Default)]
pub(crate) struct TestExec {
    calls: Mutex<Vec<Call>>,
    active: AtomicUsize,
    pub(crate) max_active: AtomicUsize,
    start: Mutex<Option<tokio::time::Instant>>,
}

impl TestExec {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub(crate) fn runs_of(&self, step: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.step == step && c.action == Action::Run)
            .collect()
    }
}

pub(crate) struct Shared(pub(crate) Arc<TestExec>);

impl Executor for Shared {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        let me = self.0.clone();
        Box::pin(async move {
            let now = tokio::time::Instant::now();
            let at = {
                let mut s = me.start.lock().unwrap();
                now - *s.get_or_insert(now)
            };
            me.calls.lock().unwrap().push(Call {
                step: req.step_id.clone(),
                action: req.action,
                at,
                key: req.idempotency_key.clone(),
                http: req.grants.http.iter().map(ToString::to_string).collect(),
            });
            let n = me.active.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_active.fetch_max(n, Ordering::SeqCst);
            struct Dec<'a>(&'a AtomicUsize);
            impl Drop for Dec<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _dec = Dec(&me.active);
            // `with.tap`: a line written to the attempt's tap as it starts, as the sandbox
            // writes a step's lines while it runs.
            if let Some(line) = req.input.get("tap").and_then(Json::as_str) {
                req.log.push(meridian_protocol::LogLine {
                    level: meridian_protocol::Level::Info,
                    source: meridian_protocol::LogSource::Guest,
                    message: line.to_string(),
                    fields: Vec::new(),
                });
            }
            let ms = req.input.get("ms").and_then(Json::as_u64).unwrap_or(0);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            meridian_engine::testkit::respond(&req)
        })
    }
}

#[derive(Default)]
pub(crate) struct Recorder(pub(crate) Mutex<Vec<Json>>);
impl Recorder {
    /// The recorded events of one kind (`leg-finished`, …), in order.
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<Json> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }
}
impl EventSink for Recorder {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_value(event).unwrap());
        Ok(())
    }
}

pub(crate) fn workflow(yaml: &str) -> Arc<meridian_model::Workflow> {
    match meridian_model::parse("test.yaml", yaml) {
        Ok(wf) => Arc::new(wf),
        Err(d) => panic!("test workflow invalid:\n{d}"),
    }
}

pub(crate) async fn go(yaml: &str, mut opts: RunOptions) -> (RunReport, Arc<TestExec>) {
    let exec = Arc::new(TestExec::default());
    let wf = workflow(yaml);
    opts.inputs = meridian_engine::inputs::resolve(&wf, &BTreeMap::new()).expect("inputs");
    let report = run(wf, Arc::new(Shared(exec.clone())), opts)
        .await
        .expect("run starts");
    (report, exec)
}

pub(crate) fn opts() -> RunOptions {
    RunOptions::new("run-1")
}

pub(crate) fn outcome(r: &RunReport, step: &str) -> Outcome {
    r.step(step)
        .unwrap_or_else(|| panic!("no report for {step}: {r:#?}"))
        .outcome
}
