//! Workers as child processes (`meridian-test-worker`): SIGKILLed or cut off from the database
//! mid-task. Their tasks are taken over after the lease, runs end as uninterrupted ones would, and
//! no attempt ever runs on two workers at once.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meridian_distributed::testkit::now_us;
use meridian_distributed::{PgJournal, PgQueue, TaskKey};
use meridian_engine::{Executor, RunReport, RunStatus};
use serde_json::{Value as Json, json};

use crate::queue::{queue_opts, request, run_journaled};
use crate::{Pg, assert_no_overlap, executions, wait_until};

/// A worker process; killed and reaped when dropped.
struct ChildWorker {
    id: String,
    child: Child,
}

impl ChildWorker {
    fn spawn(dsn: &str, record_dsn: &str, id: &str, key: &TaskKey, max_concurrent: usize) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_meridian-test-worker"))
            .args(["--dsn", dsn, "--record-dsn", record_dsn, "--id", id])
            .args(["--key", &key.to_hex()])
            .args([
                "--lease-ms",
                "2000",
                "--heartbeat-ms",
                "400",
                "--poll-ms",
                "200",
            ])
            .args(["--max-concurrent", &max_concurrent.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start meridian-test-worker");
        ChildWorker {
            id: id.to_string(),
            child,
        }
    }

    /// SIGKILL, reap, and return the time by which it was surely dead.
    fn kill(&mut self) -> i64 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        now_us()
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything about a run that must not depend on whether a worker died during it.
fn shape(r: &RunReport) -> Json {
    json!({
        "status": r.status,
        "steps": r.steps.iter().map(|s| json!({
            "id": s.id,
            "outcome": s.outcome,
            "legs": s.legs.iter().map(|l| json!({
                "key": l.key, "outcome": l.outcome, "attempts": l.attempts, "output": l.output,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

const TAKEOVER: &str = r#"
name: takeover
steps:
  - id: a
    uses: test-ok
    with: {v: 1}
  - id: slow
    uses: test-sleep
    needs: a
    with: {ms: 1500, v: "${{ steps.a.outputs.echo.v }}"}
  - id: fan
    uses: test-sleep
    needs: a
    strategy:
      matrix:
        n: [1, 2]
    with: {ms: 200, n: "${{ matrix.n }}"}
  - id: b
    uses: test-ok
    needs: [slow, fan]
    with: {slept: "${{ steps.slow.outputs.slept }}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_workers_task_is_taken_over_and_the_run_ends_as_without_the_kill() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let dsn = pg.dsn();
    let mut workers: Vec<ChildWorker> = (1..=3)
        .map(|i| ChildWorker::spawn(&dsn, &dsn, &format!("w{i}"), &key, 1))
        .collect();
    let journal = PgJournal::open(&dsn).unwrap();
    let queue = PgQueue::connect(&dsn, key.clone(), queue_opts())
        .await
        .unwrap();

    let base = tokio::time::timeout(
        Duration::from_secs(60),
        run_journaled(TAKEOVER, "base", &journal, &queue, BTreeMap::new()),
    )
    .await
    .expect("baseline run ends");
    assert_eq!(base.status, RunStatus::Succeeded, "{base:#?}");

    let run = tokio::spawn({
        let (journal, queue) = (journal.clone(), queue.clone());
        async move { run_journaled(TAKEOVER, "killed", &journal, &queue, BTreeMap::new()).await }
    });
    let mut victim = String::new();
    wait_until(
        "the slow step to start",
        Duration::from_secs(30),
        || match executions(&pg)
            .into_iter()
            .find(|e| e.key == "killed/slow" && e.ended_us.is_none())
        {
            Some(e) => {
                victim = e.worker;
                true
            }
            None => false,
        },
    )
    .await;
    let w = workers.iter_mut().find(|w| w.id == victim).unwrap();
    let death = w.kill();
    let killed = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run ends")
        .unwrap();

    assert_eq!(shape(&killed), shape(&base));
    let slow: Vec<_> = executions(&pg)
        .into_iter()
        .filter(|e| e.key == "killed/slow")
        .collect();
    assert_eq!(slow.len(), 2, "{slow:?}");
    assert_eq!(
        (slow[0].worker.as_str(), slow[0].ended_us),
        (victim.as_str(), None)
    );
    assert_ne!(slow[1].worker, victim);
    assert!(slow[1].started_us > death, "taken over only after the kill");
    // Same attempt, same task row: the engine runs on as without the kill.
    assert_eq!(
        pg.sql("SELECT attempt, claims, lease_epoch FROM meridian.tasks WHERE idempotency_key = 'killed/slow'"),
        "1|2|2"
    );
    // The step's log says so, and where it ran (nothing said why the step took a lease longer).
    use meridian_store::Journal as _;
    let logged: String = journal
        .events("killed")
        .unwrap()
        .iter()
        .filter_map(|e| match &e.event {
            meridian_engine::Event::StepLog { step, lines, .. } if step == "slow" => Some(
                lines
                    .iter()
                    .map(|l| l.message.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        })
        .collect();
    assert!(
        logged.contains("taken over (claim 2 of this attempt)")
            && logged.contains(&format!("ran on worker `{}`", slow[1].worker)),
        "{logged}"
    );
    assert_no_overlap(&executions(&pg), &BTreeMap::from([(victim, death)]));
}

/// Many tasks, four workers, a worker SIGKILLed mid-task every few hundred milliseconds and
/// replaced: every task ends with its result, and no (idempotency key, attempt) ever ran on two
/// workers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attempt_ever_runs_on_two_workers_at_once() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let dsn = pg.dsn();
    let mut workers: Vec<ChildWorker> = (1..=4)
        .map(|i| ChildWorker::spawn(&dsn, &dsn, &format!("w{i}.0"), &key, 2))
        .collect();
    let queue = PgQueue::connect(&dsn, key.clone(), queue_opts())
        .await
        .unwrap();
    const TASKS: usize = 30;
    let pending: Vec<_> = (0..TASKS)
        .map(|i| {
            let q = queue.clone();
            let ms = 200 + (i * 37) % 400;
            tokio::spawn(async move {
                let out = q
                    .execute(request(
                        &format!("chaos/{i}"),
                        "test-sleep",
                        json!({"ms": ms}),
                    ))
                    .await;
                (ms, out)
            })
        })
        .collect();

    let mut deaths = BTreeMap::new();
    for round in 1..=6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let running: Vec<String> = executions(&pg)
            .into_iter()
            .filter(|e| e.ended_us.is_none() && !deaths.contains_key(&e.worker))
            .map(|e| e.worker)
            .collect();
        let Some(victim) = running.first() else {
            continue;
        };
        let slot = workers.iter().position(|w| &w.id == victim).unwrap();
        deaths.insert(victim.clone(), workers[slot].kill());
        let n = victim.split('.').next().unwrap().to_string();
        workers[slot] = ChildWorker::spawn(&dsn, &dsn, &format!("{n}.{round}"), &key, 2);
    }
    assert!(!deaths.is_empty(), "no worker was caught mid-task");

    for p in pending {
        let (ms, out) = tokio::time::timeout(Duration::from_secs(120), p)
            .await
            .expect("every task ends")
            .unwrap();
        assert_eq!(out.expect("every task succeeds").output["slept"], ms);
    }
    let execs = executions(&pg);
    assert_no_overlap(&execs, &deaths);
    let finished: std::collections::BTreeSet<&str> = execs
        .iter()
        .filter(|e| e.how.as_deref() == Some("finished"))
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(finished.len(), TASKS);
    let taken_over: usize = pg
        .sql("SELECT count(*) FROM meridian.tasks WHERE claims > 1")
        .parse()
        .unwrap();
    assert!(taken_over >= 1, "no takeover happened");
    assert_eq!(
        pg.sql(
            "SELECT count(*) FROM meridian.tasks WHERE state = 'done' AND result->'ok' IS NOT NULL"
        ),
        TASKS.to_string()
    );
}

/// A worker cut off from the database (its role may no longer log in, its connections are
/// terminated) stops its step before its lease can run out; another worker takes over only
/// afterwards. Once let back in, the worker reconnects and works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_stops_its_step_before_the_takeover() {
    let Some(pg) = Pg::start() else { return };
    let key = TaskKey::generate();
    let dsn = pg.dsn();
    pg.sql("CREATE ROLE p1 LOGIN SUPERUSER");
    let p1_dsn = format!(
        "host=127.0.0.1 port={} user=p1 dbname=meridian",
        pg.cluster.port
    );
    let _p1 = ChildWorker::spawn(&p1_dsn, &dsn, "p1", &key, 1);
    let queue = PgQueue::connect(&dsn, key.clone(), queue_opts())
        .await
        .unwrap();
    let pending = tokio::spawn({
        let q = queue.clone();
        async move {
            q.execute(request("r/part", "test-sleep", json!({"ms": 4000})))
                .await
        }
    });
    wait_until("p1 to start the task", Duration::from_secs(30), || {
        executions(&pg).iter().any(|e| e.worker == "p1")
    })
    .await;
    let mut w2 = ChildWorker::spawn(&dsn, &dsn, "w2", &key, 1);
    pg.sql("ALTER ROLE p1 NOLOGIN");
    pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'p1'");

    let out = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the task ends")
        .unwrap()
        .unwrap();
    assert_eq!(out.output["slept"], 4000);
    let execs: Vec<_> = executions(&pg)
        .into_iter()
        .filter(|e| e.key == "r/part")
        .collect();
    assert_eq!(execs.len(), 2, "{execs:?}");
    assert_no_overlap(&execs, &BTreeMap::new());
    assert_eq!(
        (execs[0].worker.as_str(), execs[0].how.as_deref()),
        ("p1", Some("stopped"))
    );
    assert_eq!(
        (execs[1].worker.as_str(), execs[1].how.as_deref()),
        ("w2", Some("finished"))
    );
    assert_eq!(
        pg.sql("SELECT claims, lease_owner FROM meridian.tasks WHERE idempotency_key = 'r/part'"),
        "2|w2"
    );

    // Let p1 back in; with w2 gone, only p1 can run the next task.
    w2.kill();
    pg.sql("ALTER ROLE p1 LOGIN");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        queue.execute(request("r/after", "test-ok", json!({"v": 2}))),
    )
    .await
    .expect("p1 reconnects and runs it")
    .unwrap();
    assert_eq!(out.output, json!({"echo": {"v": 2}}));
    assert!(
        executions(&pg)
            .iter()
            .any(|e| e.key == "r/after" && e.worker == "p1")
    );
}
