//! The SQLite journal: the conformance suite, and what only a file can do wrong.

use std::sync::Arc;

use meridian_store::{Journal, SqliteStore, StoreError, conformance};

#[test]
fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/meridian.db");
    conformance::run_all("sqlite", &|| {
        Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Journal>
    });
}

/// Regression: a corrupt JSON value in the journal was read back as `null` on resume.
#[test]
fn a_corrupt_value_is_an_error_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create_run(&conformance::record("r1")).unwrap();
    store
        .sink("r1")
        .unwrap()
        .emit(&meridian_protocol::Event::LegFinished {
            step: "a".into(),
            leg: String::new(),
            outcome: meridian_protocol::Outcome::Success,
            attempts: 1,
            duration: std::time::Duration::from_millis(1),
            output: serde_json::json!({"v": 1}),
            plan: vec![],
            error: None,
        })
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE legs SET output = '{\"v\": 1' WHERE run_id = 'r1'",
        [],
    )
    .unwrap();
    match store.legs("r1") {
        Err(StoreError::CorruptValue { run, what, .. }) => {
            assert_eq!(run, "r1");
            assert!(what.contains("output of a"), "{what}");
        }
        other => panic!("expected a corrupt-value error, got {other:?}"),
    }
    raw.execute("UPDATE runs SET options = 'not json' WHERE id = 'r1'", [])
        .unwrap();
    assert!(matches!(
        store.run("r1"),
        Err(StoreError::CorruptValue { .. })
    ));
    raw.execute(
        "UPDATE events SET body = '{\"event\": \"no-such\"}' WHERE run_id = 'r1'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.events("r1"),
        Err(StoreError::CorruptValue { .. })
    ));
    // `meridian runs check` finds each of them, and names the run.
    let problems = store.check().unwrap();
    assert_eq!(problems.len(), 3, "settings, event, output: {problems:?}");
    assert!(
        problems.iter().all(|p| p.contains("run `r1`")),
        "{problems:?}"
    );
}

fn finished_run(store: &SqliteStore, id: &str) {
    store.create_run(&conformance::record(id)).unwrap();
    store
        .sink(id)
        .unwrap()
        .emit(&meridian_protocol::Event::RunFinished {
            status: meridian_protocol::RunStatus::Succeeded,
            duration: std::time::Duration::from_millis(1),
            message: "ok".into(),
        })
        .unwrap();
}

#[test]
fn prune_deletes_only_runs_older_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let store = SqliteStore::open(&path).unwrap();
    finished_run(&store, "old");
    finished_run(&store, "new");
    let day = 24 * 3600 * 1000;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE runs SET finished_at = finished_at - ?1 WHERE id = 'old'",
            [2 * day],
        )
        .unwrap();
    let n = store
        .prune(std::time::Duration::from_millis(day as u64))
        .unwrap();
    assert_eq!(n, 1);
    let left: Vec<String> = store.runs(10).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, ["new"]);
    // Pruning also moves the WAL into the file (commands leave it in place at exit), so a copy
    // of the `.db` alone is whole afterwards.
    let wal = std::fs::metadata(dir.path().join("meridian.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was not checkpointed");
}

/// Opening checks only the header, so a file damaged past its first page opens; the full check
/// finds the damage, and reads report it as damage, not as a generic SQLite error.
#[test]
fn damage_past_the_header_is_found_by_the_full_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..200 {
            finished_run(&store, &format!("run-{i:03}"));
        }
    }
    // Everything into the main file first: the journal leaves its WAL in place at exit, and
    // pages still in the WAL would mask damage to the file's older copies of them.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 8 * 4096,
        "the test needs a file of several pages"
    );
    for b in &mut bytes[3 * 4096..6 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = SqliteStore::open(&path).expect("the header is intact");
    match store.check() {
        Ok(problems) => assert!(!problems.is_empty(), "damage went unnoticed"),
        Err(e) => assert!(matches!(e, StoreError::Corrupt { .. }), "{e}"),
    }
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

/// Regression: a `run` and a `runs list` opening a new state file at once both created the
/// tables, and one failed with "table runs already exists"; later, one of them read the header
/// before its busy timeout was set and failed with "database is locked" while the other turned
/// the new file to WAL. Every round opens a fresh file from eight places, each of which then
/// writes and reads.
#[test]
fn opening_a_new_file_from_several_places_at_once_migrates_it_once() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let path = dir.path().join(format!("state{round}/meridian.db"));
        let start = Arc::new(std::sync::Barrier::new(8));
        let opened: Vec<_> = (0..8)
            .map(|i| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let store = SqliteStore::open(&path).map_err(|e| format!("open: {e}"))?;
                    store
                        .create_run(&conformance::record(&format!("r{i}")))
                        .map_err(|e| format!("create_run: {e}"))?;
                    store.runs(10).map(|_| ()).map_err(|e| format!("runs: {e}"))
                })
            })
            .collect();
        for t in opened {
            t.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.runs(10).unwrap().len(), 8, "round {round}");
    }
}

fn key_claim(run_id: &str) -> meridian_store::KeyClaim {
    meridian_store::conformance::key_claim(run_id, "{}")
}

/// A claim whose run never reached the journal (its server died between the two) holds for
/// `ORPHAN_CLAIM`, then the next request takes the key: a retry is not answered with a run id
/// nobody can find for a day.
#[test]
fn a_key_claimed_for_a_run_that_never_came_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let store = SqliteStore::open(&path).unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(store.claim_key("k", &key_claim("gone"), day).unwrap(), None);
    assert_eq!(
        store.claim_key("r", &key_claim("recorded"), day).unwrap(),
        None
    );
    store.create_run(&conformance::record("recorded")).unwrap();
    let age = meridian_store::ORPHAN_CLAIM.as_millis() as i64 + 1_000;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE idempotency_keys SET claimed_at = claimed_at - ?1",
            [age],
        )
        .unwrap();
    assert_eq!(store.claim_key("k", &key_claim("next"), day).unwrap(), None);
    let held = store.claim_key("r", &key_claim("next"), day).unwrap();
    assert_eq!(held.map(|c| c.run_id).as_deref(), Some("recorded"));
}

/// A journal from before claims (schema 6): the keys its runs recorded are claimed when it is
/// migrated, newest run first, so a request retried across the upgrade finds its run.
#[test]
fn keys_recorded_by_runs_are_claimed_when_the_journal_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_run(&conformance::record("old")).unwrap();
        let mut plain = conformance::record("plain");
        plain.settings.idempotency_key = None;
        store.create_run(&plain).unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE cancel_requests; DROP TABLE idempotency_keys; PRAGMA user_version = 6;",
    )
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(&path).unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
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
}
