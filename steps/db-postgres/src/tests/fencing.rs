//! `fence` and its compensation.

use super::*;

#[test]
fn fence_of_an_unreachable_server_succeeds_without_fencing() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Err(SqlError::Connect("connection refused".into())),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "fence", "connection": "eu"}),
    )
    .unwrap();
    assert_eq!((out.fenced, out.reachable), (Some(false), Some(false)));
    assert!(fake.executed().is_empty());
}

#[test]
fn fence_then_compensate() {
    let read_only = Arc::new(Shared::new(false));
    let pending = Arc::new(Shared::new(false));
    let (ro, pend) = (Arc::clone(&read_only), Arc::clone(&pending));
    let fake = Fake::new(move |s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t(if ro.get() { "on" } else { "off" })],
        )),
        fence::SQL_FENCE => {
            pend.set(true);
            Ok(none())
        }
        fence::SQL_UNFENCE => {
            pend.set(false);
            Ok(none())
        }
        fence::SQL_RELOAD => {
            ro.set(pend.get());
            Ok(row(&["reloaded"], vec![Value::Bool(true)]))
        }
        fence::SQL_SETTING => Ok(row(
            &["read_only"],
            vec![t(if ro.get() { "on" } else { "off" })],
        )),
        fence::SQL_TERMINATE => Ok(row(&["terminated"], vec![Value::Int(3)])),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "fence", "connection": "eu"}),
    )
    .unwrap();
    assert_eq!(
        (out.fenced, out.reachable, out.terminated_backends),
        (Some(true), Some(true), Some(3))
    );
    assert_eq!(out.read_only, Some(true));
    assert_eq!(
        out.changes,
        [
            "eu: ALTER SYSTEM SET default_transaction_read_only = on",
            "eu: SELECT pg_reload_conf()",
            "eu: terminated 3 client backend(s)"
        ]
    );
    assert!(fake.host.kv().contains_key("db-postgres/fenced/eu"));

    let input = input(serde_json::json!({"action": "fence", "connection": "eu"}));
    crate::undo(&ctx(&fake, Mode::Apply), &input, &FakeClock::at(0)).unwrap();
    assert!(!read_only.get());
    assert_eq!(fake.executed().last().unwrap().1, fence::SQL_UNFENCE);
    assert!(fake.host.kv().is_empty());
}

#[test]
fn compensate_of_an_unreachable_server_fails_only_when_this_run_fenced_it() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Err(SqlError::Connect("refused".into())),
        _ => unscripted(s),
    });
    let input = input(serde_json::json!({"action": "fence", "connection": "eu"}));
    crate::undo(&ctx(&fake, Mode::Apply), &input, &FakeClock::at(0)).unwrap();
    ctx(&fake, Mode::Apply)
        .kv()
        .set("db-postgres/fenced/eu", br#"{"fenced":true}"#)
        .unwrap();
    let e = crate::undo(&ctx(&fake, Mode::Apply), &input, &FakeClock::at(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("unfence"), "{}", e.message());
}

#[test]
fn fence_in_plan_mode_neither_reloads_nor_terminates() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t("off")],
        )),
        // A host that runs `execute` in a read-only transaction: ALTER SYSTEM cannot run there.
        fence::SQL_FENCE => Err(db_err("25001")),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Plan,
        serde_json::json!({"action": "fence", "connection": "eu"}),
    )
    .unwrap();
    assert!(out.planned);
    assert_eq!(out.fenced, Some(false));
    assert_eq!(out.changes.len(), 3, "{:?}", out.changes);
    assert_eq!(fake.statements(), [fence::SQL_PROBE, fence::SQL_FENCE]);
    assert!(fake.host.kv().is_empty());
}

#[test]
fn fence_reports_a_setting_that_does_not_take_and_missing_privileges() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t("off")],
        )),
        fence::SQL_FENCE => Ok(none()),
        fence::SQL_RELOAD => Ok(row(&["reloaded"], vec![Value::Bool(true)])),
        fence::SQL_SETTING => Ok(row(&["read_only"], vec![t("off")])),
        _ => unscripted(s),
    });
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "fence", "connection": "eu"}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("still reports"), "{}", e.message());
    // The partial fence is remembered for compensation.
    assert!(fake.host.kv().contains_key("db-postgres/fenced/eu"));

    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t("off")],
        )),
        fence::SQL_FENCE => Err(db_err("42501")),
        _ => unscripted(s),
    });
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "fence", "connection": "eu"}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(
        e.message().contains("GRANT ALTER SYSTEM ON PARAMETER"),
        "{}",
        e.message()
    );
}
