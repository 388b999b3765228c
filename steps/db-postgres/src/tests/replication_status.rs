//! `status`: roles, lag, waiting for the lag to drop.

use super::*;

fn primary_answers(s: &Sent, replica_lag: i64) -> Result<Rows, SqlError> {
    match s.sql.as_str() {
        status::SQL_SERVER => Ok(row(
            &["in_recovery", "read_only", "version_num"],
            vec![Value::Bool(false), t("off"), Value::Int(150_018)],
        )),
        status::SQL_PRIMARY_LSN => Ok(row(
            &["lsn", "walfile"],
            vec![t("0/3000400"), t("000000010000000000000003")],
        )),
        status::SQL_REPLICAS => Ok(Rows {
            columns: [
                "name",
                "client_addr",
                "state",
                "sync_state",
                "slot",
                "slot_type",
                "sent_lsn",
                "replay_lsn",
                "lag_bytes",
                "write_lag",
                "flush_lag",
                "replay_lag",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    t("walreceiver"),
                    t("127.0.0.1"),
                    t("streaming"),
                    t("async"),
                    t("us_slot"),
                    t("physical"),
                    t("0/3000400"),
                    t("0/3000400"),
                    Value::Int(replica_lag),
                    Value::Float(0.001),
                    Value::Null,
                    Value::Float(0.25),
                ],
                vec![
                    t("api7_sub"),
                    Value::Null,
                    t("catchup"),
                    t("async"),
                    t("api7_sub"),
                    t("logical"),
                    t("0/3000000"),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            ],
        }),
        status::SQL_SLOTS => Ok(Rows {
            columns: [
                "name",
                "slot_type",
                "active",
                "lsn",
                "lag_bytes",
                "retained_bytes",
                "wal_status",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    t("old_slot"),
                    t("logical"),
                    Value::Bool(false),
                    t("0/2000000"),
                    Value::Int(0x100_0400),
                    Value::Int(0x100_0400),
                    t("extended"),
                ],
                vec![
                    t("us_slot"),
                    t("physical"),
                    Value::Bool(true),
                    t("0/3000000"),
                    Value::Null,
                    Value::Int(0x400),
                    t("reserved"),
                ],
            ],
        }),
        status::SQL_SUBSCRIPTIONS => Ok(none()),
        _ => unscripted(s),
    }
}

#[test]
fn status_of_a_primary_lists_replicas_slots_and_problems() {
    let fake = Fake::new(|s| primary_answers(s, 0));
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "eu", "min_replicas": 2}),
    )
    .unwrap();
    assert_eq!(out.role, Some(Role::Primary));
    assert_eq!(
        (out.lsn.as_deref(), out.timeline),
        (Some("0/3000400"), Some(1))
    );
    assert_eq!(out.replicas.len(), 2);
    assert_eq!(out.replicas[0].kind, ReplicationKind::Physical);
    assert_eq!(out.replicas[1].kind, ReplicationKind::Logical);
    assert_eq!(
        out.lag_bytes,
        Some(0x100_0400),
        "the inactive slot's unconfirmed WAL is the largest lag"
    );
    assert_eq!(
        (out.slots[1].lag_bytes, out.slots[1].retained_bytes),
        (None, Some(0x400)),
        "an active physical slot's lag is its replica's"
    );
    assert_eq!(out.lag_seconds, Some(0.25));
    assert_eq!(out.healthy, Some(false));
    let problems = out.problems.join("\n");
    assert!(
        problems.contains("`api7_sub` is in state `catchup`"),
        "{problems}"
    );
    assert!(problems.contains("fewer than min_replicas 2"), "{problems}");
    assert!(
        problems.contains("slot `old_slot` is inactive and retains WAL (16778240 bytes)"),
        "{problems}"
    );
}

#[test]
fn status_of_a_standby_measures_lag_against_the_primary() {
    let fake = Fake::new(|s| match (s.conn.as_str(), s.sql.as_str()) {
        ("us", status::SQL_SERVER) => Ok(row(
            &["in_recovery", "read_only", "version_num"],
            vec![Value::Bool(true), t("off"), Value::Int(150_018)],
        )),
        ("us", status::SQL_STANDBY) => Ok(row(
            &["receive_lsn", "replay_lsn", "replay_delay"],
            vec![t("0/3000230"), t("0/3000230"), Value::Float(42.5)],
        )),
        ("us", status::SQL_WAL_RECEIVER) => Ok(row(
            &[
                "status",
                "sender_host",
                "sender_port",
                "slot",
                "flushed_lsn",
            ],
            vec![
                t("streaming"),
                t("127.0.0.1"),
                Value::Int(55432),
                t("us_slot"),
                t("0/3000230"),
            ],
        )),
        ("eu", status::SQL_REMOTE_LSN) => Ok(row(
            &["in_recovery", "lsn"],
            vec![Value::Bool(false), t("0/3000330")],
        )),
        _ => unscripted(s),
    });
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert_eq!(out.role, Some(Role::Standby));
    assert_eq!(out.lag_bytes, Some(0x100));
    assert_eq!(out.lag_seconds, Some(42.5));
    assert_eq!(
        out.wal_receiver.as_ref().map(|w| w.sender_port),
        Some(Some(55432))
    );
    assert_eq!(out.healthy, Some(true));

    // Without the primary only the local replay backlog is known; caught up means 0 s.
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "us"}),
    )
    .unwrap();
    assert_eq!((out.lag_bytes, out.lag_seconds), (Some(0), Some(0.0)));
}

#[test]
fn status_waits_for_the_lag_to_drop_and_fails_retryable_when_it_does_not() {
    let calls = Arc::new(Shared::new(0_i64));
    let c = Arc::clone(&calls);
    let fake = Fake::new(move |s| {
        if s.sql == status::SQL_REPLICAS {
            c.set(c.get() + 1);
        }
        let lag = if c.get() >= 3 { 10 } else { 5_000 };
        match s.sql.as_str() {
            status::SQL_SLOTS => Ok(none()),
            _ => primary_answers(s, lag),
        }
    });
    let args = serde_json::json!({"action": "status", "connection": "eu", "max_lag_bytes": 100, "wait_timeout_ms": 10_000});
    let out = run(&fake, Mode::Apply, args).unwrap();
    assert_eq!(out.lag_bytes, Some(10));
    assert_eq!(calls.get(), 3);

    calls.set(-1_000);
    let args = serde_json::json!({"action": "status", "connection": "eu", "max_lag_bytes": 100, "wait_timeout_ms": 1_000});
    let e = run(&fake, Mode::Apply, args).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(
        e.message().contains("5000 bytes, above max_lag_bytes 100"),
        "{}",
        e.message()
    );
}

/// `expect_role` refuses a server of the other role (a check before a failover that what it
/// promotes is a standby), and `require_healthy` fails on any problem, not only on lag: a
/// drill from a broken start passed its check on a fenced old primary and on a standby whose
/// stream was cut, then broke the only copy of the data.
#[test]
fn status_can_require_a_role_and_health() {
    let fake = Fake::new(|s| primary_answers(s, 0));
    let err = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "eu", "expect_role": "standby"}),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal, "{err:?}");
    assert!(
        err.message().contains("is a primary, not a standby"),
        "{err:?}"
    );
    let err = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "eu", "min_replicas": 2, "require_healthy": true}),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err:?}");
    assert!(
        err.message().contains("fewer than min_replicas 2"),
        "{err:?}"
    );
    // A plan reports the problems (`meridian ready` judges them) and still checks the role.
    let planned = run(
        &fake,
        Mode::Plan,
        serde_json::json!({"action": "status", "connection": "eu", "min_replicas": 2, "require_healthy": true}),
    )
    .unwrap();
    assert_eq!(planned.healthy, Some(false));
    let role =
        serde_json::json!({"action": "status", "connection": "eu", "expect_role": "standby"});
    assert!(run(&fake, Mode::Plan, role).is_err());
    // Without them, the same server's status succeeds and reports its problems.
    let out = run(
        &fake,
        Mode::Apply,
        serde_json::json!({"action": "status", "connection": "eu", "expect_role": "primary"}),
    )
    .unwrap();
    assert_eq!(out.healthy, Some(false));
}
