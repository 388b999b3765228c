//! The SQLite journal: events land durably, runs can be listed and resumed, foreign files refused.

use std::time::Duration;

use meridian_engine::{Event, EventSink, Mode, Outcome, RunStatus};
use meridian_store::{RunRecord, SqliteStore, StoreError};
use serde_json::json;

fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: "wf".into(),
        workflow_path: "/tmp/wf.yaml".into(),
        workflow_sha256: "abc".into(),
        mode: "apply".into(),
        inputs: json!({"x": 1}),
        options: json!({"max_parallel": 4}),
    }
}

#[test]
fn events_and_legs_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/meridian.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_run(&record("r1")).unwrap();
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
            output: json!({"v": 1}),
            plan: vec![],
            error: None,
        })
        .unwrap();
        j.emit(&Event::ApprovalGranted {
            step: "gate".into(),
            by: "--approve".into(),
        })
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let legs = store.legs("r1").unwrap();
    let a = &legs[&("a".to_string(), String::new())];
    assert_eq!((a.attempts, a.output.clone()), (2, json!({"v": 1})));
    assert_eq!(store.approvals("r1").unwrap(), ["gate"]);
    assert_eq!(store.events("r1").unwrap().len(), 3);
    assert_eq!(store.runs(10).unwrap()[0].status, "running");
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
        [1, 2, 3, 4]
    );
    assert_eq!(store.run("r1").unwrap().1.status, "succeeded");
}

#[test]
fn foreign_and_garbage_files_are_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not a database, it is a shopping list\n".repeat(100),
    )
    .unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let err = SqliteStore::open(&garbage).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("will not be overwritten"));
    assert_eq!(std::fs::read(&garbage).unwrap(), before);

    let foreign = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = SqliteStore::open(&foreign).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
}

#[test]
fn unknown_run_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let err = store.run("nope").unwrap_err();
    assert!(err.to_string().contains("meridian runs list"));
}
