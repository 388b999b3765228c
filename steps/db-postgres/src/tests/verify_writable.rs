//! `verify-writable`.

use super::*;

#[test]
fn verify_writable_upserts_with_the_idempotency_key() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t("off")],
        )),
        sql if sql.starts_with("CREATE TABLE IF NOT EXISTS \"meridian\".\"probe\"") => Ok(none()),
        sql if sql.starts_with("INSERT INTO \"meridian\".\"probe\"") => {
            assert_eq!(s.params, [t("test-run/test-step")]);
            Ok(none())
        }
        sql if sql.starts_with("SELECT id, at::text") => Ok(row(
            &["id", "at", "lsn"],
            vec![
                t("test-run/test-step"),
                t("2026-11-27 10:00:00+00"),
                t("0/3000500"),
            ],
        )),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "verify-writable", "connection": "us", "probe_table": "meridian.probe"}),
    )
    .unwrap();
    assert_eq!(out.writable, Some(true));
    assert_eq!(out.probe_id.as_deref(), Some("test-run/test-step"));
    assert_eq!(out.probe_at.as_deref(), Some("2026-11-27 10:00:00+00"));
}

#[test]
fn verify_writable_on_a_read_only_server_is_retryable_and_plan_mode_predicts() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        fence::SQL_PROBE => Ok(row(
            &["in_recovery", "read_only"],
            vec![Value::Bool(false), t("on")],
        )),
        sql if sql.starts_with("CREATE TABLE") => Err(SqlError::Db {
            code: "25006".into(),
            message: "cannot execute CREATE TABLE in a read-only transaction".into(),
        }),
        _ => unscripted(s),
    });
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "verify-writable", "connection": "eu"}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("refuses writes"), "{}", e.message());

    let out = run(
        &fake,
        Mode::Plan,
        serde_json::json!({"action": "verify-writable", "connection": "eu"}),
    )
    .unwrap();
    assert_eq!((out.planned, out.writable), (true, Some(false)));
    assert_eq!(out.changes.len(), 2);
}
