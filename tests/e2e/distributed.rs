//! `--store postgres://…`: the journal in PostgreSQL, steps executed by `meridian worker`
//! processes; a worker killed mid-step is replaced by another after its lease.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

pub(crate) struct Workers(pub(crate) Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL store for the tests of one scratch dir.
pub(crate) struct Store {
    pub(crate) pg: meridian_lab::PgCluster,
    pub(crate) url: String,
    key: String,
}

impl Store {
    /// `meridian …` in `s` against this store, with its task key.
    pub(crate) fn cmd(&self, s: &Scratch) -> std::process::Command {
        let mut c = s.cmd();
        c.env("MERIDIAN_STORE", &self.url)
            .env("MERIDIAN_TASK_KEY", &self.key);
        c
    }
}

/// A PostgreSQL cluster under `s/pg`; `None` when PostgreSQL is missing and
/// `MERIDIAN_ALLOW_SKIP` is set.
pub(crate) fn postgres(s: &Scratch) -> Option<meridian_lab::PgCluster> {
    match meridian_lab::PgCluster::start_primary(&s.path().join("pg"), meridian_lab::free_port()) {
        Ok(pg) => Some(pg),
        Err(e) if std::env::var_os("MERIDIAN_ALLOW_SKIP").is_some() => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A PostgreSQL store for `s` (its cluster lives under `s`) with a fresh task key; `None` when
/// PostgreSQL is missing and `MERIDIAN_ALLOW_SKIP` is set.
pub(crate) fn store(s: &Scratch) -> Option<Store> {
    let pg = postgres(s)?;
    pg.psql("CREATE DATABASE meridian;").unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/meridian", pg.port);
    let key = String::from_utf8(s.run(&["worker", "--new-key"]).stdout).unwrap();
    Some(Store {
        pg,
        url,
        key: key.trim().to_string(),
    })
}

#[test]
fn workers_run_the_steps_and_survive_a_killed_worker() {
    let s = Scratch::new();
    let Some(db) = store(&s) else {
        return;
    };
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    let mut wf = String::from("name: fan\nsteps:\n");
    for i in 0..6 {
        wf.push_str(&format!(
            "  - id: s{i}\n    uses: ./sleeper.wasm\n    with: {{ms: 400}}\n"
        ));
    }
    s.write("wf.yaml", &wf);

    let spawn = |id: &str| {
        db.cmd(&s)
            .args(["worker", "--id", id, "--max-concurrent", "2"])
            .args(["--lease", "3s", "--heartbeat", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut workers = Workers(vec![spawn("w1"), spawn("w2"), spawn("w3")]);
    let started = std::time::Instant::now();

    let run = db
        .cmd(&s)
        .args(["--json", "run", "wf.yaml", "--max-parallel", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill one worker while steps are running: the steps it had claimed are taken over by the
    // others once its lease (3 s here, 30 s by default) expires, and the run still succeeds.
    std::thread::sleep(Duration::from_millis(200));
    let _ = workers.0[0].kill();
    let out = run.wait_with_output().unwrap();
    let (stdout, _) = expect_code(&out, 0);
    let report: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["steps"].as_array().unwrap().len(), 6);
    // Taken over on the short lease, not the default one (a generous bound, not a figure).
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );

    // The run is in the PostgreSQL journal.
    let (out, _) = expect_code(&db.cmd(&s).args(["runs", "list"]).output().unwrap(), 0);
    assert!(out.contains(report["run_id"].as_str().unwrap()), "{out}");
}

/// Regression: the queue carried `uses:` as written, so a worker resolved `./x.wasm` against its
/// own working directory instead of the workflow file's.
#[test]
fn a_worker_in_another_directory_runs_a_relative_uses() {
    let s = Scratch::new();
    let Some(db) = store(&s) else {
        return;
    };
    std::fs::create_dir_all(s.path().join("flows")).unwrap();
    std::fs::create_dir_all(s.path().join("elsewhere")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join("flows/sleeper.wasm"),
    )
    .unwrap();
    s.write(
        "flows/wf.yaml",
        "name: rel\nsteps:\n  - id: s\n    uses: ./sleeper.wasm\n    with: {ms: 1}\n",
    );
    let worker = db
        .cmd(&s)
        .current_dir(s.path().join("elsewhere"))
        .args(["worker", "--id", "w1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Workers(vec![worker]);
    let out = db
        .cmd(&s)
        .args(["--json", "run", "flows/wf.yaml"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 0);
    let report: Json = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
}

#[test]
fn a_worker_needs_a_postgres_store() {
    let s = Scratch::new();
    let (_, err) = expect_code(&s.run(&["worker"]), 2);
    assert!(err.contains("--store postgres://"), "{err}");
}

/// Regression (kv lived in one process's memory): a step's kv state is in the PostgreSQL
/// journal, so the compensation that another worker runs after a resume sees what the step
/// saved on the first one.
#[test]
fn compensation_on_another_worker_after_resume_sees_the_kv_state() {
    let s = Scratch::new();
    let Some(db) = store(&s) else {
        return;
    };
    s.kitchen_sink();
    std::fs::create_dir_all(s.path().join("rec")).unwrap();
    s.write("undo.yaml", crate::regressions::UNDO_WORKFLOW);
    let spawn = |id: &str| {
        db.cmd(&s)
            .args(["worker", "--id", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let coordinator = |args: &[&str]| {
        db.cmd(&s)
            .env("MERIDIAN_SECRET_TOKEN", "t0k")
            .args(args)
            .output()
            .unwrap()
    };
    let mut workers = Workers(vec![spawn("w1")]);
    let (out, _) = expect_code(&coordinator(&["--json", "run", "undo.yaml"]), 3);
    let run_id = serde_json::from_str::<Json>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The worker that ran `change` is gone; another one takes the rest of the run.
    let _ = workers.0[0].kill();
    let _ = workers.0[0].wait();
    workers.0.push(spawn("w2"));
    let (out, _) = expect_code(
        &coordinator(&["--json", "resume", &run_id, "--approve", "gate"]),
        1,
    );
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["compensations"][0]["outcome"], "success", "{report}");
    let seen = std::fs::read_to_string(s.path().join("rec/undo.log")).unwrap();
    assert_eq!(seen, "\"eu was primary\"\n");
}

#[test]
fn worker_lease_and_heartbeat_are_checked() {
    let s = Scratch::new();
    for (args, needle) in [
        (&["--lease", "500ms"][..], "--lease must be at least 1s"),
        (
            &["--lease", "4s", "--heartbeat", "3s"][..],
            "at most half of --lease",
        ),
        (&["--lease", "soon"][..], "--lease soon"),
    ] {
        let out = s
            .cmd()
            .args(["--store", "postgres://127.0.0.1:1/none", "worker"])
            .args(args)
            .output()
            .unwrap();
        let (_, err) = expect_code(&out, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Two regressions of the queue:
/// - an attempt that timed out while no worker had claimed its task left the task queued when
///   the run ended (its cancellation was still on its way when the process exited): the next
///   worker ran the step of a run that had already failed;
/// - `retry --from STEP` kept the leg's idempotency key, and the queue re-attached to the
///   finished task and handed back its old result: a failed step could never be retried.
#[test]
fn an_abandoned_task_is_cancelled_and_a_retried_step_runs_again() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let Some(db) = store(&s) else {
        return;
    };
    // Nothing listens on `port` until the responder below starts.
    let port = meridian_lab::free_port();
    s.write(
        "probe.yaml",
        &format!(
            "name: probe\nsteps:\n  - id: probe\n    uses: http-probe\n    timeout: 2s\n    with: {{url: \"http://127.0.0.1:{port}/\", timeout_ms: 500}}\n    grants: {{http: [\"http://127.0.0.1:{port}\"]}}\n"
        ),
    );
    let tasks = || {
        db.pg
            .psql_db(
                "meridian",
                "SELECT id || ':' || state || ':' || cancel FROM meridian.tasks WHERE step_id = 'probe' ORDER BY id;",
            )
            .unwrap()
    };

    // No worker: the attempt times out, and its task is cancelled before the run says it ended.
    let (out, _) = expect_code(
        &db.cmd(&s)
            .args(["--json", "run", "probe.yaml"])
            .output()
            .unwrap(),
        1,
    );
    let run_id = serde_json::from_str::<Json>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let abandoned = tasks();
    // Cancelled: a task no worker claimed ends `done` with its cancel flag (it was left
    // `ready` and not cancelled before).
    assert!(
        abandoned.ends_with(":true"),
        "the task is not cancelled: {abandoned}"
    );

    // A worker now: the run fails for real (connection refused).
    let worker = db
        .cmd(&s)
        .args(["worker", "--id", "w1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Workers(vec![worker]);
    let retry = |code: i32| -> Json {
        let out = db
            .cmd(&s)
            .args(["--json", "retry", &run_id, "--from", "probe"])
            .output()
            .unwrap();
        serde_json::from_str(&expect_code(&out, code).0).unwrap()
    };
    let report = retry(1);
    assert_eq!(report["status"], "failed", "{report}");
    let failed = tasks();

    // Something answers now: a retry runs the step again (a new task) and succeeds.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let responder = std::thread::spawn(move || {
        // One probe, waited for at most 30 s (a retry that runs nothing never connects).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let report = retry(0);
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(
        report["steps"][0]["legs"][0]["output"]["status"], 200,
        "{report}"
    );
    responder.join().unwrap();
    let now = tasks();
    assert_ne!(now, failed, "the retry re-attached to the finished task");
    assert!(now.ends_with(":done:false"), "{now}");
}

/// Ctrl-C stops what the run gave to workers: a task still queued ends cancelled (a worker
/// started later ran it), and one a worker runs is stopped (the worker finished it after the
/// process had said it stopped). A resume runs the step again.
#[test]
fn an_interrupted_run_cancels_its_queued_and_running_tasks() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let s = Scratch::new();
    let Some(db) = store(&s) else {
        return;
    };
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    s.write(
        "wf.yaml",
        "name: long\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 60000}, timeout: 2m}\n",
    );
    let task = || {
        db.pg
            .psql_db(
                "meridian",
                "SELECT state || ':' || cancel || ':' || coalesce(result->'err'->>'kind', '') FROM meridian.tasks ORDER BY id DESC LIMIT 1;",
            )
            // Before the run's coordinator created the schema: no task yet.
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let until = |what: &str, cond: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let t = task();
            if cond(&t) {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the task is `{t}`"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let interrupt = |run: Child| {
        kill(Pid::from_raw(run.id() as i32), Signal::SIGINT).unwrap();
        let out = run.wait_with_output().unwrap();
        let (_, err) = expect_code(&out, 130);
        assert!(err.contains("meridian resume"), "{err}");
    };
    let start = || {
        db.cmd(&s)
            .args(["run", "wf.yaml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Queued, no worker yet: cancelled where it stands.
    let run = start();
    until("queued", &|t| t.starts_with("ready:"));
    interrupt(run);
    assert_eq!(task(), "done:true:cancelled");

    // Running on a worker: the worker is told and stops it (it would sleep a minute).
    let worker = db
        .cmd(&s)
        .args(["worker", "--id", "w1", "--lease", "3s", "--heartbeat", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Workers(vec![worker]);
    let run = start();
    until("claimed", &|t| t.starts_with("running:"));
    interrupt(run);
    until("stopped", &|t| t == "done:true:cancelled");
}
