//! The PostgreSQL journal: same semantics as the SQLite one, schema versioning and refusal.

use std::time::Duration;

use meridian_distributed::{
    DistError, PgJournal, PgQueue, QueueOptions, SCHEMA_VERSION, TaskKey, WorkerOptions, run_worker,
};
use meridian_engine::{Event, EventSink, Mode, Outcome, RunStatus, StepError};
use meridian_lab::StopMode;
use meridian_store::RunRecord;
use serde_json::json;

use crate::Pg;

fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: "wf".into(),
        workflow_path: "/tmp/wf.yaml".into(),
        workflow_sha256: "abc".into(),
        mode: "apply".into(),
        inputs: json!({"x": 1, "a": [1, 2]}),
        options: json!({"max_parallel": 4}),
    }
}

/// Plain `#[test]`: the journal needs no runtime of the caller's.
#[test]
fn events_and_legs_round_trip_across_reopen() {
    let Some(pg) = Pg::start() else { return };
    {
        let store = PgJournal::open(&pg.dsn()).unwrap();
        store.create_run(&record("r1")).unwrap();
        assert!(store.create_run(&record("r1")).is_err(), "duplicate run id");
        let j = store.journal("r1").unwrap();
        j.emit(&Event::RunStarted {
            run_id: "r1".into(),
            workflow: "wf".into(),
            mode: Mode::Apply,
            inputs: json!({}),
        })
        .unwrap();
        j.emit(&Event::LegFinished {
            step: "a".into(),
            leg: String::new(),
            outcome: Outcome::Success,
            attempts: 2,
            duration: Duration::from_millis(12),
            output: json!({"v": 1, "b": 2}),
            plan: vec![meridian_protocol::PlannedChange::Sql {
                connection: "db".into(),
                statement: "PUT /x".into(),
                params: vec![],
                reason: "r".into(),
            }],
            error: None,
        })
        .unwrap();
        j.emit(&Event::LegFinished {
            step: "b".into(),
            leg: "eu".into(),
            outcome: Outcome::Failure,
            attempts: 1,
            duration: Duration::from_millis(3),
            output: json!(null),
            plan: vec![],
            error: Some(StepError::Timeout(Duration::from_millis(1500))),
        })
        .unwrap();
        j.emit(&Event::ApprovalGranted {
            step: "gate".into(),
            by: "--approve".into(),
        })
        .unwrap();
    }
    let store = PgJournal::open(&pg.dsn()).unwrap();
    let legs = store.legs("r1").unwrap();
    let a = &legs[&("a".to_string(), String::new())];
    assert_eq!(
        (a.attempts, a.duration_ms, a.outcome.as_str()),
        (2, 12, "success")
    );
    assert_eq!(a.output, json!({"v": 1, "b": 2}));
    assert!(
        matches!(&a.plan[..], [meridian_protocol::PlannedChange::Sql { statement, .. }] if statement == "PUT /x")
    );
    let b = &legs[&("b".to_string(), "eu".to_string())];
    assert_eq!(b.error, Some(json!({"kind": "timeout", "message": 1500})));
    assert_eq!(store.approvals("r1").unwrap(), ["gate"]);
    let events = store.events("r1").unwrap();
    assert_eq!(events.len(), 4);
    // Bodies keep the engine's key order (stored as `json`, not `jsonb`).
    let keys: Vec<&String> = events[1].body.as_object().unwrap().keys().collect();
    assert_eq!(keys[..3], ["event", "step", "leg"]);
    assert_eq!(store.runs(10).unwrap()[0].status, "running");
    let (rec, _) = store.run("r1").unwrap();
    assert_eq!(rec, record("r1"));

    // A journal opened later continues the sequence.
    let j = store.journal("r1").unwrap();
    j.emit(&Event::RunFinished {
        status: RunStatus::Succeeded,
        duration: Duration::from_millis(1),
        message: "ok".into(),
    })
    .unwrap();
    let events = store.events("r1").unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let (_, summary) = store.run("r1").unwrap();
    assert_eq!(summary.status, "succeeded");
    assert_eq!(summary.message.as_deref(), Some("ok"));
    assert!(summary.finished_at_ms.unwrap() >= summary.created_at_ms);

    // Resume bookkeeping.
    store.reopen_run("r1").unwrap();
    let (_, summary) = store.run("r1").unwrap();
    assert_eq!(
        (summary.status.as_str(), summary.finished_at_ms),
        ("running", None)
    );
    store.forget_legs("r1", &["a".to_string()]).unwrap();
    assert_eq!(store.legs("r1").unwrap().len(), 1);

    // Listing: most recent first, limited; unknown runs are named.
    store.create_run(&record("r2")).unwrap();
    let runs = store.runs(10).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    assert_eq!(store.runs(1).unwrap().len(), 1);
    assert!(matches!(store.run("nope"), Err(DistError::NoSuchRun(_))));
    assert!(matches!(
        store.reopen_run("nope"),
        Err(DistError::NoSuchRun(_))
    ));
    // An event for a run that was never created is refused (as with SQLite's foreign keys).
    let orphan = store.journal("ghost").unwrap();
    assert!(
        orphan
            .emit(&Event::StepFinished {
                step: "a".into(),
                outcome: Outcome::Success
            })
            .is_err()
    );
}

#[test]
fn the_journal_survives_a_database_restart() {
    let Some(mut pg) = Pg::start() else { return };
    let store = PgJournal::open(&pg.dsn()).unwrap();
    store.create_run(&record("r1")).unwrap();
    let j = store.journal("r1").unwrap();
    let ev = |s: &str| Event::StepFinished {
        step: s.into(),
        outcome: Outcome::Success,
    };
    j.emit(&ev("a")).unwrap();
    pg.cluster.stop(StopMode::Fast);
    pg.cluster.start().unwrap();
    // The first write after the restart meets a dead connection and is retried on a new one.
    j.emit(&ev("b")).unwrap();
    let events = store.events("r1").unwrap();
    let steps: Vec<&str> = events
        .iter()
        .map(|e| e.body["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["a", "b"]);
}

/// Works when called from inside a current-thread runtime, where `block_in_place` would panic.
#[tokio::test]
async fn emit_works_inside_a_current_thread_runtime() {
    let Some(pg) = Pg::start() else { return };
    let store = PgJournal::open(&pg.dsn()).unwrap();
    store.create_run(&record("r1")).unwrap();
    let j = store.journal("r1").unwrap();
    for i in 0..20 {
        j.emit(&Event::StepFinished {
            step: format!("s{i}"),
            outcome: Outcome::Success,
        })
        .unwrap();
    }
    assert_eq!(store.events("r1").unwrap().len(), 20);
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let Some(pg) = Pg::start() else { return };
    let dsn = pg.dsn();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let dsn = dsn.clone();
            std::thread::spawn(move || PgJournal::open(&dsn).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(
        pg.sql("SELECT count(*), max(version) FROM meridian.migrations"),
        format!("{SCHEMA_VERSION}|{SCHEMA_VERSION}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_by_every_entry_point() {
    let Some(pg) = Pg::start() else { return };
    PgJournal::open(&pg.dsn()).unwrap();
    pg.sql("INSERT INTO meridian.migrations (version, description) VALUES (99, 'from the future')");
    let too_new = |e: &DistError| matches!(e, DistError::TooNew { found: 99, .. });
    let e = PgJournal::open(&pg.dsn()).unwrap_err();
    assert!(too_new(&e), "{e}");
    assert!(e.to_string().contains("upgrade meridian"), "{e}");
    let e = PgQueue::connect(&pg.dsn(), TaskKey::generate(), QueueOptions::default())
        .await
        .unwrap_err();
    assert!(too_new(&e), "{e}");
    let exec = meridian_distributed::testkit::FakeExec::new("w", None)
        .await
        .unwrap();
    let e = run_worker(
        &pg.dsn(),
        "w",
        std::sync::Arc::new(exec),
        TaskKey::generate(),
        WorkerOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(too_new(&e), "{e}");
}

#[test]
fn a_foreign_meridian_schema_is_refused_and_untouched() {
    let Some(pg) = Pg::start() else { return };
    pg.sql("CREATE SCHEMA meridian; CREATE TABLE meridian.payroll (x int); INSERT INTO meridian.payroll VALUES (7);");
    let e = PgJournal::open(&pg.dsn()).unwrap_err();
    assert!(matches!(e, DistError::Foreign { .. }), "{e}");
    assert_eq!(pg.sql("SELECT x FROM meridian.payroll"), "7");
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'meridian'"),
        "1"
    );
}

#[test]
fn connection_errors_do_not_print_the_password() {
    // Nothing listens on port 1.
    let e =
        PgJournal::open("host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=2")
            .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DistError::Connect { .. }), "{msg}");
    assert!(msg.contains("postgres://u@127.0.0.1:1/d"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
