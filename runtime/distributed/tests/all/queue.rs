//! Workflows through the real engine with [`PgQueue`] as executor and in-process workers;
//! re-attachment after a coordinator crash; cancellation; key separation; fencing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meridian_distributed::{PgJournal, PgQueue, QueueOptions, TaskKey, WorkerOptions};
use meridian_engine::{
    Action, ComponentRef, Executor, Mode, ResolvedGrants, RunOptions, RunStatus, StepError,
    StepRequest,
};
use meridian_model::Limits;
use meridian_store::{Journal, RunRecord};
use serde_json::{Value as Json, json};

use crate::{InProc, Pg, executions, fast_opts, wait_until};

pub(crate) fn workflow(yaml: &str) -> Arc<meridian_model::Workflow> {
    match meridian_model::parse("test.yaml", yaml) {
        Ok(wf) => Arc::new(wf),
        Err(d) => panic!("test workflow invalid:\n{d}"),
    }
}

pub(crate) fn queue_opts() -> QueueOptions {
    QueueOptions {
        poll: Duration::from_millis(200),
    }
}

pub(crate) fn request(key: &str, uses: &str, input: Json) -> StepRequest {
    StepRequest {
        run_id: "r".into(),
        step_id: key.into(),
        uses: ComponentRef::builtin(uses),
        action: Action::Run,
        mode: Mode::Apply,
        input,
        attempt: 1,
        idempotency_key: key.into(),
        grants: ResolvedGrants::default(),
        limits: Limits::default(),
        timeout: Duration::from_secs(60),
        mask: vec![],
        log: Default::default(),
    }
}

/// A coordinator's journal and queue on `pg`, and in-process workers named `names`, all under
/// one new task key.
async fn coordinator_and_workers(pg: &Pg, names: &[&str]) -> (PgJournal, PgQueue, InProc) {
    let key = TaskKey::generate();
    let journal = PgJournal::open(&pg.dsn()).unwrap();
    let queue = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let workers = InProc::start(pg, names, &key, fast_opts()).await;
    (journal, queue, workers)
}

/// Runs `yaml` as run `run_id` through the engine, journaled in `journal`, with `queue`.
pub(crate) async fn run_journaled(
    yaml: &str,
    run_id: &str,
    journal: &PgJournal,
    queue: &PgQueue,
    secrets: BTreeMap<String, String>,
) -> meridian_engine::RunReport {
    let wf = workflow(yaml);
    journal
        .create_run(&RunRecord {
            id: run_id.into(),
            workflow: wf.name.clone(),
            workflow_path: "/tmp/test.yaml".into(),
            workflow_sha256: "0".into(),
            mode: meridian_protocol::Mode::Apply,
            inputs: json!({}),
            settings: Default::default(),
        })
        .unwrap();
    let mut opts = RunOptions::new(run_id);
    opts.inputs = meridian_engine::inputs::resolve(&wf, &BTreeMap::new()).expect("inputs");
    opts.secrets = secrets;
    opts.max_parallel = 8;
    opts.sink = Some(Arc::new(journal.journal(run_id).unwrap()));
    meridian_engine::run(wf, Arc::new(queue.clone()), opts)
        .await
        .expect("run starts")
}

const WORKFLOW: &str = r#"
name: distributed
secrets: [DB_PASSWORD]
steps:
  - id: a
    uses: test-ok
    with: {greeting: hello, pw: "${{ secrets.DB_PASSWORD }}"}
    grants:
      secrets: [DB_PASSWORD]
  - id: fan
    uses: test-sleep
    needs: a
    strategy:
      matrix:
        region: [eu, us, ap]
    with: {ms: 300, region: "${{ matrix.region }}", got: "${{ steps.a.outputs.echo.greeting }}"}
  - id: flaky
    uses: test-flaky
    needs: a
    with: {succeed_on: 2}
    retry: {attempts: 3, backoff: constant, initial: 50ms}
  - id: optional
    uses: test-fail
    continue-on-error: true
    with: {message: "cannot reach hunter2-db"}
  - id: last
    uses: test-ok
    needs: [fan, flaky]
    with: {eu: "${{ steps.fan.outputs.eu.echo.region }}", attempt: "${{ steps.flaky.outputs.attempt }}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_through_three_workers() {
    let Some(pg) = Pg::start() else { return };
    let (journal, queue, workers) = coordinator_and_workers(&pg, &["w1", "w2", "w3"]).await;
    let secrets = BTreeMap::from([("DB_PASSWORD".to_string(), "hunter2".to_string())]);
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        run_journaled(WORKFLOW, "run-1", &journal, &queue, secrets),
    )
    .await
    .expect("run ends");
    workers.stop().await;

    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(r.step("fan").unwrap().legs.len(), 3);
    assert_eq!(r.step("flaky").unwrap().legs[0].attempts, 2);
    assert_eq!(
        r.step("last").unwrap().legs[0].output,
        json!({"echo": {"eu": "eu", "attempt": 2}})
    );
    let a = &r.step("a").unwrap().legs[0].output;
    assert_eq!(a, &json!({"echo": {"greeting": "hello", "pw": "***"}}));

    // The journal has the run as the engine reported it.
    let (_, summary) = journal.run("run-1").unwrap();
    assert_eq!(summary.status, meridian_protocol::RunStatus::Succeeded);
    let legs = journal.legs("run-1").unwrap();
    assert_eq!(legs.len(), 7, "a, fan×3, flaky, optional, last");
    assert!(
        legs.iter()
            .any(|l| (l.step.as_str(), l.leg.as_str(), l.outcome)
                == ("fan", "us", meridian_protocol::Outcome::Success))
    );

    // Every attempt ran exactly once, and the work was spread (3 legs of 300 ms at once, one
    // task per worker at a time).
    let execs = executions(&pg);
    let mut per_attempt: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for e in &execs {
        *per_attempt.entry((e.key.clone(), e.attempt)).or_default() += 1;
        assert_eq!(e.how.as_deref(), Some("finished"), "{e:?}");
    }
    assert_eq!(per_attempt.len(), 8, "{per_attempt:?}");
    assert!(per_attempt.values().all(|n| *n == 1), "{per_attempt:?}");
    let workers: BTreeSet<&str> = execs.iter().map(|e| e.worker.as_str()).collect();
    assert!(workers.len() >= 2, "only {workers:?} worked");
    assert_eq!(
        pg.sql("SELECT count(*) FROM meridian.tasks WHERE state <> 'done'"),
        "0"
    );

    // No secret value reaches the tables in clear.
    let clear = pg.sql(
        "SELECT string_agg(concat_ws(' ', run_id, step_id, idempotency_key, uses, request::text, result::text), ' ')
           FROM meridian.tasks",
    );
    assert!(clear.contains("***"), "results are masked: {clear}");
    assert!(!clear.contains("hunter2"), "{clear}");
    assert_eq!(
        pg.sql("SELECT count(*) FROM meridian.tasks WHERE position(convert_to('hunter2', 'UTF8') in sealed) > 0"),
        "0"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM meridian.events WHERE body::text LIKE '%hunter2%'"),
        "0"
    );
}

/// A result travels with its announcement when it fits in a notification, and is read from its
/// row when it does not (PostgreSQL refuses notifications of 8,000 bytes or more): both reach
/// the run whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_results_both_arrive() {
    let Some(pg) = Pg::start() else { return };
    let (journal, queue, workers) = coordinator_and_workers(&pg, &["w1"]).await;
    let pad = "x".repeat(20_000);
    let yaml = format!(
        "name: sizes\nsteps:\n  - {{id: small, uses: test-ok, with: {{pad: ab}}}}\n  - {{id: large, uses: test-ok, with: {{pad: {pad}}}}}\n"
    );
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        run_journaled(&yaml, "run-sizes", &journal, &queue, BTreeMap::new()),
    )
    .await
    .expect("run ends");
    workers.stop().await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        r.step("small").unwrap().legs[0].output,
        json!({"echo": {"pad": "ab"}})
    );
    assert_eq!(
        r.step("large").unwrap().legs[0].output,
        json!({"echo": {"pad": pad}})
    );
}

/// A coordinator that dies (its futures vanish without running any drop code) leaves its task
/// queued; the resumed coordinator re-attaches to it instead of running the attempt again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_coordinator_reattaches_instead_of_duplicating() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let crashed = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let req = request("r/slow", "test-sleep", json!({"ms": 800}));
    let mut fut = crashed.execute(req.clone());
    // Poll once so the task is queued, then lose the future as a crash would.
    tokio::select! {
        biased;
        _ = &mut fut => panic!("no worker yet, it cannot finish"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    std::mem::forget(fut);
    assert_eq!(
        pg.sql("SELECT state FROM meridian.tasks WHERE idempotency_key = 'r/slow'"),
        "ready"
    );
    let workers = InProc::start(&pg, &["w1"], &key, fast_opts()).await;
    wait_until("the task to start", Duration::from_secs(20), || {
        pg.sql("SELECT state FROM meridian.tasks WHERE idempotency_key = 'r/slow'") == "running"
    })
    .await;

    // Resumed while it runs: waits for the same task.
    let resumed = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let out = resumed.execute(req.clone()).await.unwrap();
    assert_eq!(out.output["slept"], 800);
    // Resumed after it finished: the stored result, at once.
    let again = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap()
        .execute(req)
        .await
        .unwrap();
    assert_eq!(again, out);
    workers.stop().await;
    let runs: Vec<_> = executions(&pg)
        .into_iter()
        .filter(|e| e.key == "r/slow")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(pg.sql("SELECT count(*) FROM meridian.tasks"), "1");
}

/// An attempt the engine stops waiting for (fail-fast, timeout) is cancelled: unclaimed tasks
/// leave the queue, running ones are stopped by their worker; asking again re-arms the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_attempts_are_cancelled_and_rearmed_on_request() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let queue = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();

    // Unclaimed: no worker runs.
    let idle = request("r/idle", "test-ok", json!({}));
    let t = tokio::time::timeout(Duration::from_millis(300), queue.execute(idle.clone())).await;
    assert!(t.is_err());
    wait_until(
        "the unclaimed task to be cancelled",
        Duration::from_secs(10),
        || {
            pg.sql(
                "SELECT state, result::text FROM meridian.tasks WHERE idempotency_key = 'r/idle'",
            ) == r#"done|{"err":{"kind":"cancelled"}}"#
        },
    )
    .await;

    let workers = InProc::start(&pg, &["w1"], &key, fast_opts()).await;
    // Running: its worker is told at once and stops the step.
    let long = request("r/long", "test-sleep", json!({"ms": 20_000}));
    let t = tokio::time::timeout(Duration::from_millis(1500), queue.execute(long.clone())).await;
    assert!(t.is_err());
    wait_until(
        "the running task to be stopped",
        Duration::from_secs(10),
        || {
            pg.sql(
                "SELECT state, result::text FROM meridian.tasks WHERE idempotency_key = 'r/long'",
            ) == r#"done|{"err":{"kind":"cancelled"}}"#
        },
    )
    .await;
    let stopped: Vec<_> = executions(&pg)
        .into_iter()
        .filter(|e| e.key == "r/long")
        .collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].how.as_deref(), Some("stopped"));
    // Well before the 20 s the step would have slept.
    assert!(stopped[0].ended_us.unwrap() - stopped[0].started_us < 10_000_000);

    // Asked again (a resumed coordinator): both run now, same attempt.
    let out = queue.execute(idle).await.unwrap();
    assert_eq!(out.output, json!({"echo": {}}));
    let mut long = long;
    long.input = json!({"ms": 10});
    assert_eq!(queue.execute(long).await.unwrap().output["slept"], 10);
    workers.stop().await;
    assert_eq!(pg.sql("SELECT count(*) FROM meridian.tasks"), "2");
    let runs = executions(&pg);
    assert_eq!(runs.iter().filter(|e| e.key == "r/long").count(), 2);
    assert_eq!(runs.iter().filter(|e| e.key == "r/idle").count(), 1);
}

/// A run another coordinator took over (`Executor::abandon`): the attempts this process drops
/// for it leave their tasks to the new driver. Dropping them cancelled the task the new driver
/// had re-attached to, and its run ended with the step cancelled (then "succeeded").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_runs_dropped_attempts_leave_their_tasks() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let stale = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let req = request("r/kept", "test-ok", json!({}));
    let waiting = tokio::spawn({
        let (stale, req) = (stale.clone(), req.clone());
        async move { stale.execute(req).await }
    });
    wait_until("the task to be queued", Duration::from_secs(10), || {
        pg.sql("SELECT state FROM meridian.tasks WHERE idempotency_key = 'r/kept'") == "ready"
    })
    .await;
    // Its lease was lost: the run is abandoned, then the run's task dropped (`abort`).
    stale.abandon(&req.run_id);
    waiting.abort();
    let _ = waiting.await;
    stale.settle().await;
    assert_eq!(
        pg.sql("SELECT state, cancel FROM meridian.tasks WHERE idempotency_key = 'r/kept'"),
        "ready|f",
        "the abandoned attempt cancelled the task"
    );
    // The new driver re-attaches and gets the step's result from a worker.
    let driver = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let workers = InProc::start(&pg, &["w1"], &key, fast_opts()).await;
    let out = driver.execute(req).await.unwrap();
    assert_eq!(out.output, json!({"echo": {}}));
    workers.stop().await;
    assert_eq!(pg.sql("SELECT count(*) FROM meridian.tasks"), "1");
}

/// A worker with another task key leaves tasks to the workers that can open them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_only_claim_tasks_sealed_with_their_key() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let queue = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let stranger = InProc::start(&pg, &["stranger"], &TaskKey::generate(), fast_opts()).await;
    let pending = tokio::spawn({
        let queue = queue.clone();
        async move {
            queue
                .execute(request("r/k", "test-ok", json!({"v": 1})))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        pg.sql("SELECT state, claims FROM meridian.tasks WHERE idempotency_key = 'r/k'"),
        "ready|0"
    );
    let right = InProc::start(&pg, &["right"], &key, fast_opts()).await;
    let out = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("finishes")
        .unwrap()
        .unwrap();
    assert_eq!(out.output, json!({"echo": {"v": 1}}));
    stranger.stop().await;
    right.stop().await;
    let who: Vec<String> = executions(&pg).into_iter().map(|e| e.worker).collect();
    assert_eq!(who, ["right"]);
}

/// The result of a worker whose lease epoch moved on is never committed, and a heartbeat that
/// finds the epoch moved stops the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_over_cannot_commit() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let queue = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    // Heartbeats far apart, so the short step ends before the worker hears of the takeover.
    let opts = WorkerOptions {
        lease: Duration::from_secs(20),
        heartbeat: Duration::from_secs(10),
        ..fast_opts()
    };
    let workers = InProc::start(&pg, &["w1"], &key, opts).await;
    let _short = tokio::spawn({
        let q = queue.clone();
        async move {
            q.execute(request("r/short", "test-sleep", json!({"ms": 1500})))
                .await
        }
    });
    wait_until("the short task to start", Duration::from_secs(20), || {
        executions(&pg).iter().any(|e| e.key == "r/short")
    })
    .await;
    // Another claimant takes the task over (as after an expired lease).
    pg.sql("UPDATE meridian.tasks SET lease_epoch = lease_epoch + 1, lease_owner = 'intruder' WHERE idempotency_key = 'r/short'");
    wait_until("the short step to finish", Duration::from_secs(20), || {
        executions(&pg)
            .iter()
            .any(|e| e.key == "r/short" && e.ended_us.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pg.sql("SELECT state, lease_owner, result IS NULL FROM meridian.tasks WHERE idempotency_key = 'r/short'"),
        "running|intruder|t",
        "the fenced result must not land"
    );
    workers.stop().await;

    // A heartbeat that finds the epoch moved stops the step at once.
    let opts = WorkerOptions {
        lease: Duration::from_secs(4),
        heartbeat: Duration::from_millis(300),
        ..fast_opts()
    };
    let workers = InProc::start(&pg, &["w2"], &key, opts).await;
    let _long = tokio::spawn({
        let q = queue.clone();
        async move {
            q.execute(request("r/long", "test-sleep", json!({"ms": 30_000})))
                .await
        }
    });
    wait_until("the long task to start", Duration::from_secs(20), || {
        executions(&pg).iter().any(|e| e.key == "r/long")
    })
    .await;
    pg.sql("UPDATE meridian.tasks SET lease_epoch = lease_epoch + 1, lease_owner = 'intruder' WHERE idempotency_key = 'r/long'");
    wait_until(
        "the long step to be stopped",
        Duration::from_secs(10),
        || {
            executions(&pg)
                .iter()
                .any(|e| e.key == "r/long" && e.how.as_deref() == Some("stopped"))
        },
    )
    .await;
    assert_eq!(
        pg.sql("SELECT state, lease_owner FROM meridian.tasks WHERE idempotency_key = 'r/long'"),
        "running|intruder"
    );
    workers.stop().await;
}

/// A task whose workers keep dying is failed after `max_claims` takeovers instead of taking the
/// fleet down one worker at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_over_too_often_fails() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let queue = PgQueue::connect(&pg.dsn(), key.clone(), queue_opts())
        .await
        .unwrap();
    let pending = tokio::spawn({
        let q = queue.clone();
        async move { q.execute(request("r/poison", "test-ok", json!({}))).await }
    });
    wait_until("the task to be queued", Duration::from_secs(10), || {
        pg.sql("SELECT count(*) FROM meridian.tasks") == "1"
    })
    .await;
    // As if five workers had claimed it and died.
    pg.sql("UPDATE meridian.tasks SET state = 'running', claims = 5, lease_owner = 'w5', lease_until = now() - interval '1 second'");
    let workers = InProc::start(&pg, &["w6"], &key, fast_opts()).await;
    let err = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("ends")
        .unwrap()
        .unwrap_err();
    workers.stop().await;
    match err.error {
        StepError::Fatal(m) => assert!(m.contains("taken over 5 times") && m.contains("w5"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(executions(&pg).is_empty());
}
