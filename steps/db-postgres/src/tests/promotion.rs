//! `promote`: RPO, retries, plan mode, privileges.

use super::*;

fn standby_fake(
    promote_answer: Result<bool, SqlError>,
    promotes: bool,
) -> (Fake, Arc<Shared<bool>>) {
    let recovering = Arc::new(Shared::new(true));
    let rec = Arc::clone(&recovering);
    let fake = Fake::new(move |s| match (s.conn.as_str(), s.sql.as_str()) {
        ("us", promote::SQL_RECOVERY) => Ok(row(&["in_recovery"], vec![Value::Bool(rec.get())])),
        // Replication cut: nothing to wait for.
        ("us", promote::SQL_STREAMING) => Ok(row(&["streaming"], vec![Value::Int(0)])),
        ("us", promote::SQL_STANDBY_LSNS) => Ok(row(
            &["receive_lsn", "replay_lsn"],
            vec![t("0/3000230"), t("0/3000200")],
        )),
        ("eu", status::SQL_REMOTE_LSN) => Ok(row(
            &["in_recovery", "lsn"],
            vec![Value::Bool(false), t("0/3000300")],
        )),
        ("us", sql) if sql == promote::sql_promote(30) => {
            if promotes {
                rec.set(false);
            }
            promote_answer
                .clone()
                .map(|b| row(&["promoted"], vec![Value::Bool(b)]))
        }
        ("us", promote::SQL_AFTER) => Ok(row(
            &["lsn", "walfile", "replayed_lsn"],
            vec![
                t("0/3000400"),
                t("000000020000000000000003"),
                t("0/3000230"),
            ],
        )),
        _ => unscripted(s),
    });
    (fake, recovering)
}

#[test]
fn promote_measures_rpo_and_a_retry_reports_the_same_promotion() {
    let (fake, _) = standby_fake(Ok(true), true);
    let args = serde_json::json!({"action": "promote", "connection": "us", "primary": "eu", "wait_timeout_ms": 30_000});
    let out = run(&fake, Mode::Apply, args.clone()).unwrap();
    assert_eq!(
        (out.promoted, out.already_primary),
        (Some(true), Some(false))
    );
    assert_eq!(out.role, Some(Role::Primary));
    assert_eq!(out.lsn.as_deref(), Some("0/3000400"));
    assert_eq!(out.timeline, Some(2));
    assert_eq!(out.replayed_lsn.as_deref(), Some("0/3000230"));
    assert_eq!(out.old_primary_lsn.as_deref(), Some("0/3000300"));
    assert_eq!(out.rpo_bytes, Some(0x300 - 0x230));
    assert_eq!(out.promoted_at_ms, Some(1_000));

    let again = run(&fake, Mode::Apply, args).unwrap();
    assert_eq!(again, out);
    assert_eq!(
        fake.statements()
            .iter()
            .filter(|s| s.starts_with("SELECT pg_promote("))
            .count(),
        1
    );
}

#[test]
fn promote_of_a_primary_is_a_no_op_that_disables_its_subscription() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        promote::SQL_RECOVERY => Ok(row(&["in_recovery"], vec![Value::Bool(false)])),
        promote::SQL_READ_ONLY => Ok(row(&["read_only"], vec![Value::Bool(false)])),
        promote::SQL_AFTER => Ok(row(
            &["lsn", "walfile", "replayed_lsn"],
            vec![t("0/5000000"), t("000000010000000000000005"), Value::Null],
        )),
        promote::SQL_ENABLED_SUBSCRIPTION => {
            assert_eq!(s.params, [t("api7_sub")]);
            Ok(row(&["enabled"], vec![Value::Bool(true)]))
        }
        "ALTER SUBSCRIPTION \"api7_sub\" DISABLE" => Ok(none()),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "subscription": "api7_sub"}),
    )
    .unwrap();
    assert_eq!(
        (out.promoted, out.already_primary, out.subscription_disabled),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(
        (out.timeline, out.lsn.as_deref()),
        (Some(1), Some("0/5000000"))
    );
    assert_eq!(
        fake.executed(),
        [(
            "us".to_owned(),
            "ALTER SUBSCRIPTION \"api7_sub\" DISABLE".to_owned()
        )]
    );
}

#[test]
fn promote_refuses_while_too_far_behind() {
    let (fake, _) = standby_fake(Ok(true), true);
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "primary": "eu", "max_lag_bytes": 100}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("208 bytes behind"), "{}", e.message());
    assert!(
        !fake
            .statements()
            .iter()
            .any(|s| s.starts_with("SELECT pg_promote("))
    );
}

#[test]
fn promote_in_plan_mode_only_predicts() {
    let (fake, recovering) = standby_fake(Ok(true), true);
    let out = run(
        &fake,
        Mode::Plan,
        serde_json::json!({"action": "promote", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert!(out.planned);
    assert_eq!(out.promoted, Some(false));
    assert_eq!(out.rpo_bytes, Some(208));
    assert_eq!(
        out.changes,
        ["us: SELECT pg_promote(wait => true, wait_seconds => 60)"]
    );
    assert!(recovering.get());
    assert!(
        !fake
            .statements()
            .iter()
            .any(|s| s.starts_with("SELECT pg_promote("))
    );
}

#[test]
fn promote_that_does_not_finish_is_retryable_and_a_statement_timeout_keeps_waiting() {
    let (fake, _) = standby_fake(Ok(false), false);
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "wait_timeout_ms": 30_000}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("still in recovery"), "{}", e.message());

    // The host's statement timeout interrupts pg_promote's own wait; the promotion completes.
    let (fake, _) = standby_fake(Err(SqlError::Timeout), true);
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "wait_timeout_ms": 30_000}),
    )
    .unwrap();
    assert_eq!(out.promoted, Some(true));
    assert_eq!(out.rpo_bytes, None, "no old primary given");
}

#[test]
fn promote_without_privilege_is_fatal() {
    let (fake, _) = standby_fake(Err(db_err("42501")), false);
    let e = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "wait_timeout_ms": 30_000}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(
        e.message().contains("GRANT EXECUTE ON FUNCTION pg_promote"),
        "{}",
        e.message()
    );
}

#[test]
fn promote_waits_for_a_streaming_standby_to_catch_up_and_loses_nothing() {
    let polls = Arc::new(Shared::new(0_i64));
    let p = Arc::clone(&polls);
    let rec = Arc::new(Shared::new(true));
    let r = Arc::clone(&rec);
    let fake = Fake::new(move |s| match (s.conn.as_str(), s.sql.as_str()) {
        ("us", promote::SQL_RECOVERY) => Ok(row(&["in_recovery"], vec![Value::Bool(r.get())])),
        ("us", promote::SQL_STREAMING) => Ok(row(&["streaming"], vec![Value::Int(1)])),
        // The received position reaches the old primary's on the third read.
        ("us", promote::SQL_STANDBY_LSNS) => {
            p.set(p.get() + 1);
            let lsn = if p.get() >= 3 {
                "0/3000300"
            } else {
                "0/3000230"
            };
            Ok(row(
                &["receive_lsn", "replay_lsn"],
                vec![t(lsn), t("0/3000200")],
            ))
        }
        ("eu", status::SQL_REMOTE_LSN) => Ok(row(
            &["in_recovery", "lsn"],
            vec![Value::Bool(false), t("0/3000300")],
        )),
        ("us", sql) if sql.starts_with("SELECT pg_promote(") => {
            r.set(false);
            Ok(row(&["promoted"], vec![Value::Bool(true)]))
        }
        ("us", promote::SQL_AFTER) => Ok(row(
            &["lsn", "walfile", "replayed_lsn"],
            vec![
                t("0/3000400"),
                t("000000020000000000000003"),
                t("0/3000300"),
            ],
        )),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert_eq!(out.caught_up, Some(true));
    assert_eq!(out.rpo_bytes, Some(0));
    assert!(polls.get() >= 3, "polled {} times", polls.get());
}

#[test]
fn a_promotion_whose_attempt_died_reports_the_rpo_it_measured_not_already_primary() {
    // The first attempt promotes, then fails before recording its result (as when the runner
    // is killed right after pg_promote).
    let (fake, _) = standby_fake(Err(SqlError::Connect("connection reset".into())), true);
    let args = serde_json::json!({"action": "promote", "connection": "us", "primary": "eu", "wait_timeout_ms": 30_000});
    assert!(run(&fake, Mode::Apply, args.clone()).is_err());
    let again = run(&fake, Mode::Apply, args).unwrap();
    assert_eq!(again.already_primary, Some(false));
    assert_eq!(again.promoted, Some(true));
    assert_eq!(again.resumed, Some(true));
    assert_eq!(again.caught_up, Some(false));
    assert_eq!(again.rpo_bytes, Some(0x300 - 0x230));
}

/// A primary fenced read-only is an old primary: "promoting" it is refused, not reported as
/// already done (a drill from a broken start moved clients to a server refusing writes).
#[test]
fn promote_of_a_fenced_primary_is_refused() {
    let fake = Fake::new(|s| match s.sql.as_str() {
        promote::SQL_RECOVERY => Ok(row(&["in_recovery"], vec![Value::Bool(false)])),
        promote::SQL_READ_ONLY => Ok(row(&["read_only"], vec![Value::Bool(true)])),
        _ => unscripted(s),
    });
    let err = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "promote", "connection": "us"}),
    )
    .unwrap_err();
    assert!(err.message().contains("fenced read-only"), "{err:?}");
    assert!(fake.executed().is_empty());
}
