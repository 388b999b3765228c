//! The PostgreSQL journal: same semantics as the SQLite one, schema versioning and refusal.

use std::sync::Arc;

use meridian_distributed::{
    DistError, PgJournal, PgQueue, QueueOptions, SCHEMA_VERSION, TaskKey, WorkerOptions, run_worker,
};
use meridian_lab::StopMode;
use meridian_protocol::{Event, Outcome};
use meridian_store::Journal;

use crate::Pg;

use meridian_store::conformance::record;

/// A commit point: written (with whatever the sink held) before `emit` returns.
fn approved(step: &str) -> Event {
    Event::ApprovalGranted {
        step: step.into(),
        by: "test".into(),
    }
}

/// The journal conformance suite, the same one the SQLite journal passes. Plain `#[test]`: the
/// journal needs no runtime of the caller's.
#[test]
fn conformance_suite() {
    let Some(pg) = Pg::start() else { return };
    let dsn = pg.dsn();
    meridian_store::conformance::run_all("pg", &|| {
        Arc::new(PgJournal::open(&dsn).unwrap()) as Arc<dyn Journal>
    });
    // Events for a run that was never created are refused (as with SQLite's foreign keys), at
    // the commit point that writes them.
    let store = PgJournal::open(&dsn).unwrap();
    let orphan = store.sink("ghost").unwrap();
    orphan
        .emit(&Event::StepFinished {
            step: "a".into(),
            outcome: Outcome::Success,
            reason: None,
        })
        .unwrap();
    assert!(orphan.emit(&approved("a")).is_err());
}

#[test]
fn the_journal_survives_a_database_restart() {
    let Some(mut pg) = Pg::start() else { return };
    let store = PgJournal::open(&pg.dsn()).unwrap();
    store.create_run(&record("r1")).unwrap();
    let j = store.sink("r1").unwrap();
    j.emit(&approved("a")).unwrap();
    pg.cluster.stop(StopMode::Fast);
    pg.cluster.start().unwrap();
    // The first write after the restart meets a dead connection and is retried on a new one.
    j.emit(&approved("b")).unwrap();
    let events = store.events("r1").unwrap();
    let steps: Vec<&str> = events.iter().filter_map(|e| e.event.step()).collect();
    assert_eq!(steps, ["a", "b"]);
}

/// Works when called from inside a current-thread runtime, where `block_in_place` would panic.
#[tokio::test]
async fn emit_works_inside_a_current_thread_runtime() {
    let Some(pg) = Pg::start() else { return };
    let store = PgJournal::open(&pg.dsn()).unwrap();
    store.create_run(&record("r1")).unwrap();
    let j = store.sink("r1").unwrap();
    for i in 0..20 {
        j.emit(&approved(&format!("s{i}"))).unwrap();
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

fn key_claim(run_id: &str) -> meridian_store::KeyClaim {
    meridian_store::conformance::key_claim(run_id, "{}")
}

/// A journal from before claims (schema 6): the keys its runs recorded are claimed when it is
/// migrated; a claim whose run never reached the journal is given up after `ORPHAN_CLAIM`.
#[test]
fn keys_carry_over_the_migration_and_an_orphaned_claim_is_given_up() {
    let Some(pg) = Pg::start() else { return };
    let day = std::time::Duration::from_secs(24 * 3600);
    PgJournal::open(&pg.dsn())
        .unwrap()
        .create_run(&record("old"))
        .unwrap();
    pg.sql(
        "DROP TABLE meridian.cancel_requests; DROP TABLE meridian.idempotency_keys;
         DELETE FROM meridian.migrations WHERE version >= 7",
    );
    let store = PgJournal::open(&pg.dsn()).unwrap();
    let held = store
        .claim_key("alice\u{0}deploy-42", &key_claim("new"), day)
        .unwrap()
        .expect("the old run's key is claimed");
    assert_eq!(held.run_id, "old");
    let request: serde_json::Value = serde_json::from_str(&held.request).unwrap();
    assert_eq!(
        request,
        serde_json::json!({"workflow": "wf", "mode": "plan"})
    );

    assert_eq!(store.claim_key("k", &key_claim("gone"), day).unwrap(), None);
    let held = store.claim_key("k", &key_claim("next"), day).unwrap();
    assert_eq!(held.map(|c| c.run_id).as_deref(), Some("gone"));
    let age = meridian_store::ORPHAN_CLAIM.as_millis() + 1_000;
    pg.sql(&format!(
        "UPDATE meridian.idempotency_keys SET claimed_at = claimed_at - {age}"
    ));
    assert_eq!(store.claim_key("k", &key_claim("next"), day).unwrap(), None);
    // The recorded run's claim is as old, and holds.
    let held = store
        .claim_key("alice\u{0}deploy-42", &key_claim("new"), day)
        .unwrap();
    assert_eq!(held.map(|c| c.run_id).as_deref(), Some("old"));
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

/// `prune` goes by the server's clock: a run that ended two days ago goes, one that just ended
/// stays, and the old run's queue rows go with it.
#[test]
fn prune_deletes_only_runs_older_than_asked() {
    let Some(pg) = Pg::start() else { return };
    let store = PgJournal::open(&pg.dsn()).unwrap();
    for id in ["old", "new"] {
        store.create_run(&record(id)).unwrap();
        store
            .sink(id)
            .unwrap()
            .emit(&Event::RunFinished {
                status: meridian_protocol::RunStatus::Succeeded,
                duration: std::time::Duration::from_millis(1),
                message: "ok".into(),
            })
            .unwrap();
    }
    pg.cluster
        .psql_db(
            "meridian",
            "UPDATE meridian.runs SET finished_at = finished_at - 2 * 86400000 WHERE id = 'old';
             INSERT INTO meridian.tasks (run_id, step_id, idempotency_key, attempt, uses, action, mode, request, sealed, key_id, state)
             VALUES ('old', 'a', 'old/a', 1, 'x', 'run', 'apply', '{}', '\\x00', 'k', 'done');",
        )
        .unwrap();
    let n = store
        .prune(std::time::Duration::from_secs(24 * 3600))
        .unwrap();
    assert_eq!(n, 1);
    let left: Vec<String> = store.runs(10).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, ["new"]);
    let tasks = pg
        .cluster
        .psql_db(
            "meridian",
            "SELECT count(*) FROM meridian.tasks WHERE run_id = 'old'",
        )
        .unwrap();
    assert_eq!(tasks.trim(), "0", "{tasks}");
}
