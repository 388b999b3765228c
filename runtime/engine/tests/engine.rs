//! Engine semantics, exercised through workflows of test steps run by an in-process executor.
//!
//! Test steps (`uses:`):
//! - `test-ok`: returns `{"echo": <input>}`.
//! - `test-sleep`: sleeps `with.ms` (tokio time), then returns `{"slept": ms}`.
//! - `test-fail`: fails with `with.kind` (`fatal` default, `retryable`, `invalid`) after `with.ms`.
//! - `test-flaky`: fails retryably until attempt `with.succeed_on`, then returns `{"attempt": n}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{
    Action, Approver, ComponentRef, Event, EventSink, Executor, Outcome, RunOptions, RunReport,
    RunStatus, SinkError, StepError, StepRequest, StepResult, run,
};
use serde_json::{Value as Json, json};

#[derive(Clone, Debug)]
struct Call {
    step: String,
    action: Action,
    at: Duration,
    key: String,
    /// The request's http grants, as their canonical text.
    http: Vec<String>,
}

#[derive(Default)]
struct TestExec {
    calls: Mutex<Vec<Call>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    start: Mutex<Option<tokio::time::Instant>>,
}

impl TestExec {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn runs_of(&self, step: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.step == step && c.action == Action::Run)
            .collect()
    }
}

struct Shared(Arc<TestExec>);

impl Executor for Shared {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, StepError>> {
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
            let ms = req.input.get("ms").and_then(Json::as_u64).unwrap_or(0);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let ok = |output: Json| {
                Ok(StepResult {
                    output,
                    ..Default::default()
                })
            };
            match req.uses.builtin_name().unwrap_or("") {
                "test-ok" => ok(json!({"echo": req.input})),
                "test-sleep" => ok(json!({"slept": ms})),
                "test-fail" => {
                    let msg = req
                        .input
                        .get("message")
                        .and_then(Json::as_str)
                        .unwrap_or("boom")
                        .to_string();
                    Err(match req.input.get("kind").and_then(Json::as_str) {
                        Some("retryable") => StepError::Retryable(msg),
                        Some("invalid") => StepError::InvalidInput(msg),
                        _ => StepError::Fatal(msg),
                    })
                }
                "test-flaky" => {
                    let on = req
                        .input
                        .get("succeed_on")
                        .and_then(Json::as_u64)
                        .unwrap_or(2) as u32;
                    if req.attempt >= on {
                        ok(json!({"attempt": req.attempt}))
                    } else {
                        Err(StepError::Retryable(format!("not yet ({})", req.attempt)))
                    }
                }
                _ => Err(StepError::Fatal(format!("unknown test step {}", req.uses))),
            }
        })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Json>>);
impl EventSink for Recorder {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_value(event).unwrap());
        Ok(())
    }
}

struct Answer(bool);
impl Approver for Answer {
    fn ask(&self, _step: &str, _message: &str) -> BoxFuture<'static, bool> {
        let a = self.0;
        Box::pin(async move { a })
    }
}

fn workflow(yaml: &str) -> Arc<meridian_model::Workflow> {
    match meridian_model::parse("test.yaml", yaml) {
        Ok(wf) => Arc::new(wf),
        Err(d) => panic!("test workflow invalid:\n{d}"),
    }
}

async fn go(yaml: &str, mut opts: RunOptions) -> (RunReport, Arc<TestExec>) {
    let exec = Arc::new(TestExec::default());
    let wf = workflow(yaml);
    opts.inputs = meridian_engine::inputs::resolve(&wf, &BTreeMap::new()).expect("inputs");
    let report = run(wf, Arc::new(Shared(exec.clone())), opts)
        .await
        .expect("run starts");
    (report, exec)
}

fn opts() -> RunOptions {
    RunOptions::new("run-1")
}

fn outcome(r: &RunReport, step: &str) -> Outcome {
    r.step(step)
        .unwrap_or_else(|| panic!("no report for {step}: {r:#?}"))
        .outcome
}

#[tokio::test(start_paused = true)]
async fn dependencies_order_and_outputs_flow() {
    let (r, exec) = go(
        r#"
name: flow
inputs:
  who: {type: string, default: world}
steps:
  - id: a
    uses: test-ok
    with: {greeting: "hello ${{ inputs.who }}"}
  - id: b
    uses: test-ok
    needs: a
    with:
      got: ${{ steps.a.outputs.echo.greeting }}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let order: Vec<String> = exec.calls().into_iter().map(|c| c.step).collect();
    assert_eq!(order, ["a", "b"]);
    assert_eq!(
        r.step("b").unwrap().legs[0].output,
        json!({"echo": {"got": "hello world"}})
    );
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_bounded() {
    let mut steps = String::from("name: par\nsteps:\n");
    for i in 0..6 {
        steps.push_str(&format!(
            "  - id: s{i}\n    uses: test-sleep\n    with: {{ms: 50}}\n"
        ));
    }
    let mut o = opts();
    o.max_parallel = 2;
    let (r, exec) = go(&steps, o).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(exec.max_active.load(Ordering::SeqCst), 2);
    assert_eq!(exec.calls().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn retries_follow_exponential_backoff() {
    let (r, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-flaky
    with: {succeed_on: 4}
    retry: {attempts: 5, backoff: exponential, initial: 1s, max: 3s, jitter: false}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let at: Vec<u64> = exec
        .runs_of("f")
        .iter()
        .map(|c| c.at.as_millis() as u64)
        .collect();
    // attempts at 0, +1s, +2s, +3s (capped at max)
    assert_eq!(at, [0, 1000, 3000, 6000]);
    assert_eq!(r.step("f").unwrap().legs[0].attempts, 4);
    // Every attempt carries the same idempotency key.
    let keys: std::collections::BTreeSet<String> =
        exec.runs_of("f").into_iter().map(|c| c.key).collect();
    assert_eq!(keys.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_below_the_computed_delay() {
    let (_, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-flaky
    with: {succeed_on: 3}
    retry: {attempts: 3, backoff: constant, initial: 2s}
"#,
        opts(),
    )
    .await;
    let at: Vec<Duration> = exec.runs_of("f").iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 3);
    assert!(at[1] <= Duration::from_secs(2) && at[2] - at[1] <= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_not_retried_by_default() {
    let (r, exec) = go(
        r#"
name: retry
steps:
  - id: f
    uses: test-fail
    retry: {attempts: 5, initial: 10ms}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(exec.runs_of("f").len(), 1);
    assert_eq!(
        r.step("f").unwrap().legs[0].error,
        Some(StepError::Fatal("boom".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn step_timeout_fails_the_attempt_and_can_be_retried() {
    let (r, exec) = go(
        r#"
name: timeout
steps:
  - id: slow
    uses: test-sleep
    with: {ms: 10000}
    timeout: 100ms
    retry: {attempts: 2, initial: 10ms, on: [timeout]}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(exec.runs_of("slow").len(), 2);
    assert_eq!(
        r.step("slow").unwrap().legs[0].error,
        Some(StepError::Timeout(Duration::from_millis(100)))
    );
}

#[tokio::test(start_paused = true)]
async fn run_timeout_cancels_everything() {
    let (r, _) = go(
        r#"
name: timeout
timeout: 1s
steps:
  - id: slow
    uses: test-sleep
    with: {ms: 60000}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::TimedOut);
    assert_eq!(outcome(&r, "slow"), Outcome::Cancelled);
    assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
}

#[tokio::test(start_paused = true)]
async fn a_failure_cancels_in_flight_steps_and_skips_the_rest() {
    let started = tokio::time::Instant::now();
    let (r, exec) = go(
        r#"
name: failfast
steps:
  - id: bad
    uses: test-fail
    with: {ms: 10}
  - id: long
    uses: test-sleep
    with: {ms: 60000}
  - id: after
    uses: test-ok
    needs: [long]
  - id: cleanup
    uses: test-ok
    needs: [bad]
    if: always()
  - id: on-failure
    uses: test-ok
    needs: [long]
    if: failure()
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(outcome(&r, "long"), Outcome::Cancelled);
    assert_eq!(outcome(&r, "after"), Outcome::Skipped);
    assert_eq!(outcome(&r, "cleanup"), Outcome::Success);
    assert_eq!(outcome(&r, "on-failure"), Outcome::Success);
    assert!(exec.runs_of("after").is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn continue_on_error_lets_the_run_succeed() {
    let (r, _) = go(
        r#"
name: coe
steps:
  - id: optional
    uses: test-fail
    continue-on-error: true
  - id: next
    uses: test-ok
    needs: optional
    with: {saw: "${{ steps.optional.outcome }}"}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(outcome(&r, "optional"), Outcome::Failure);
    assert_eq!(
        r.step("next").unwrap().legs[0].output,
        json!({"echo": {"saw": "failure"}})
    );
}

#[tokio::test(start_paused = true)]
async fn completed_steps_are_compensated_in_reverse_order() {
    let (r, exec) = go(
        r#"
name: comp
steps:
  - id: a
    uses: test-ok
    compensate: true
  - id: b
    uses: test-ok
    needs: a
    compensate:
      uses: test-ok
      with: {undo: "${{ steps.b.outputs.echo.n }}"}
    with: {n: 7}
  - id: c
    uses: test-ok
    needs: b
  - id: d
    uses: test-fail
    needs: c
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let comp: Vec<(String, Action)> = exec
        .calls()
        .into_iter()
        .filter(|c| c.step.ends_with(":compensate") || c.action == Action::Compensate)
        .map(|c| (c.step, c.action))
        .collect();
    assert_eq!(
        comp,
        [
            ("b:compensate".to_string(), Action::Run),
            ("a".to_string(), Action::Compensate)
        ]
    );
    assert_eq!(r.compensations.len(), 2);
    assert!(
        r.compensations
            .iter()
            .all(|c| c.outcome == Outcome::Success)
    );
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
    assert!(r.message.contains("--approve promote"), "{}", r.message);
    assert!(exec.runs_of("promote").is_empty());
    assert_eq!(outcome(&r, "independent"), Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn approval_by_flag_or_prompt() {
    let mut o = opts();
    o.approvals.insert("promote".into());
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

#[tokio::test(start_paused = true)]
async fn conditions_skip_steps() {
    let (r, exec) = go(
        r#"
name: cond
inputs:
  enabled: {type: bool, default: false}
steps:
  - id: maybe
    uses: test-ok
    if: inputs.enabled
  - id: dependent
    uses: test-ok
    needs: maybe
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(outcome(&r, "maybe"), Outcome::Skipped);
    assert_eq!(outcome(&r, "dependent"), Outcome::Skipped);
    assert!(exec.calls().is_empty());
}

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

/// Regression: compiling a step's component on a cold cache counted against the step's
/// `timeout:`, so a first run could time out where later runs did not.
#[tokio::test(start_paused = true)]
async fn one_time_preparation_does_not_count_against_the_step_timeout() {
    struct SlowPrepare(Arc<TestExec>);
    impl Executor for SlowPrepare {
        fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, StepError>> {
            Shared(self.0.clone()).execute(req)
        }
        fn prepare(&self, _uses: &ComponentRef) -> BoxFuture<'static, Result<(), StepError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            })
        }
    }
    let wf = workflow("name: t\nsteps:\n  - id: a\n    uses: test-ok\n    timeout: 100ms\n");
    let exec = Arc::new(TestExec::default());
    let r = run(wf, Arc::new(SlowPrepare(exec.clone())), opts())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(exec.runs_of("a").len(), 1);
}

/// Every form of `grants.http` reaches the executor as an origin pattern: connections and
/// expressions resolved, a URL cut to its origin; an expression giving no origin fails the leg
/// before it runs.
#[tokio::test(start_paused = true)]
async fn http_grants_reach_the_executor_as_origin_patterns() {
    let (r, exec) = go(
        r#"
name: grants
inputs:
  ip: {default: 127.0.0.3}
  admin: {default: "http://127.0.0.1:9180/apisix/admin"}
connections:
  api: {url: "https://API.example.com:8443/v1"}
steps:
  - id: a
    uses: test-ok
    grants:
      http: ["https://*.example.com", api, "http://${{ inputs.ip }}:*", "${{ inputs.admin }}"]
  - id: bad
    uses: test-ok
    continue-on-error: true
    grants: {http: ["${{ inputs.ip }}"]}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        exec.runs_of("a")[0].http,
        [
            "https://*.example.com",
            "https://api.example.com:8443",
            "http://127.0.0.3:*",
            "http://127.0.0.1:9180"
        ]
    );
    assert!(exec.runs_of("bad").is_empty());
    let err = r.step("bad").unwrap().legs[0].error.clone();
    assert!(
        matches!(&err, Some(StepError::InvalidInput(m)) if m.contains("gave `127.0.0.3`")),
        "{err:?}"
    );
}
