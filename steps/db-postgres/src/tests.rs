//! Unit tests of the action logic against a scripted host: each test answers the statements the
//! action sends (matched on the statement constants), with state where an action changes the
//! server. The SQL itself is checked against real PostgreSQL by `tests/pg`.

use std::sync::{Arc, Mutex};

use meridian_families::FakeClock;
use meridian_families::database::{DatabaseInput, DatabaseOutput, ReplicationKind, Role};
use meridian_sdk::sql::{Rows, SqlError, Value};
use meridian_sdk::testing::{Call, MockHost};
use meridian_sdk::{Ctx, ErrorKind, Invocation, Mode};

use crate::{fence, logical, promote, status};

/// One statement the step sent.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    execute: bool,
    conn: String,
    sql: String,
    params: Vec<Value>,
}

impl Sent {
    fn new(execute: bool, conn: &str, sql: &str, params: &[Value]) -> Self {
        Self {
            execute,
            conn: conn.to_owned(),
            sql: sql.to_owned(),
            params: params.to_vec(),
        }
    }
}

/// A host whose SQL answers, to `query` and `execute` alike, come from one closure (an
/// `execute` affects one row); it grants the secret `PUB_DSN`.
struct Fake {
    host: Arc<MockHost>,
}

impl Fake {
    fn new(handler: impl Fn(&Sent) -> Result<Rows, SqlError> + Send + Sync + 'static) -> Self {
        let query = Arc::new(handler);
        let execute = Arc::clone(&query);
        let host = MockHost::new()
            .sql(move |conn, sql, params| query(&Sent::new(false, conn, sql, params)))
            .sql_execute(move |conn, sql, params| {
                execute(&Sent::new(true, conn, sql, params)).map(|_| 1)
            })
            .secret("PUB_DSN", "host=10.0.0.1 password=s3cret");
        Self {
            host: Arc::new(host),
        }
    }

    /// Every statement sent so far, in order.
    fn sent(&self) -> Vec<Sent> {
        self.host
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Query(conn, sql, params) => Some(Sent::new(false, &conn, &sql, &params)),
                Call::Execute(conn, sql, params) => Some(Sent::new(true, &conn, &sql, &params)),
                Call::Http(_) => None,
            })
            .collect()
    }

    fn statements(&self) -> Vec<String> {
        self.sent().into_iter().map(|s| s.sql).collect()
    }

    fn executed(&self) -> Vec<(String, String)> {
        self.sent()
            .into_iter()
            .filter(|s| s.execute)
            .map(|s| (s.conn, s.sql))
            .collect()
    }
}

/// A `Cell` that the host's answers (which must be `Send + Sync`) share with the test.
#[derive(Default)]
struct Shared<T>(Mutex<T>);

impl<T: Clone> Shared<T> {
    fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }
    fn get(&self) -> T {
        self.0.lock().unwrap().clone()
    }
    fn set(&self, value: T) {
        *self.0.lock().unwrap() = value;
    }
    fn replace(&self, value: T) -> T {
        std::mem::replace(&mut *self.0.lock().unwrap(), value)
    }
}

fn ctx(fake: &Fake, mode: Mode) -> Ctx {
    let mut inv = Invocation::for_test(&serde_json::json!({}));
    inv.mode = mode;
    Ctx::new(inv, fake.host.clone())
}

fn input(json: serde_json::Value) -> DatabaseInput {
    let input: DatabaseInput = serde_json::from_value(json).unwrap();
    input.validate().unwrap();
    input
}

fn run(
    fake: &Fake,
    mode: Mode,
    json: serde_json::Value,
) -> Result<DatabaseOutput, meridian_sdk::Error> {
    crate::execute(&ctx(fake, mode), &input(json), &FakeClock::at(1_000))
}

fn row(cols: &[&str], vals: Vec<Value>) -> Rows {
    Rows {
        columns: cols.iter().map(|c| (*c).to_owned()).collect(),
        rows: vec![vals],
    }
}

fn none() -> Rows {
    Rows::default()
}

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn unscripted(s: &Sent) -> Result<Rows, SqlError> {
    Err(SqlError::Denied(format!(
        "unscripted on {}: {}",
        s.conn, s.sql
    )))
}

fn db_err(code: &str) -> SqlError {
    SqlError::Db {
        code: code.into(),
        message: format!("error {code}"),
    }
}

// ---------------------------------------------------------------------------------------- fence

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

// -------------------------------------------------------------------------------------- promote

fn standby_fake(
    promote_answer: Result<bool, SqlError>,
    promotes: bool,
) -> (Fake, Arc<Shared<bool>>) {
    let recovering = Arc::new(Shared::new(true));
    let rec = Arc::clone(&recovering);
    let fake = Fake::new(move |s| match (s.conn.as_str(), s.sql.as_str()) {
        ("us", promote::SQL_RECOVERY) => Ok(row(&["in_recovery"], vec![Value::Bool(rec.get())])),
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

// --------------------------------------------------------------------------------------- status

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

// -------------------------------------------------------------------------------- setup-logical

#[derive(Default)]
struct LogicalState {
    publication: Shared<bool>,
    all_tables: Shared<bool>,
    subscription: Shared<bool>,
    enabled: Shared<bool>,
    stale_slot: Shared<bool>,
    wal_level: Shared<String>,
    missing_on_subscriber: Shared<Vec<String>>,
}

fn logical_fake(st: Arc<LogicalState>) -> Fake {
    st.wal_level.replace("logical".into());
    Fake::new(move |s| match (s.conn.as_str(), s.sql.as_str()) {
        ("eu", logical::SQL_PUBLISHER) => Ok(row(
            &["wal_level", "in_recovery"],
            vec![t(&st.wal_level.get()), Value::Bool(false)],
        )),
        ("eu", logical::SQL_PUBLICATION) => Ok(if st.publication.get() {
            row(&["all_tables"], vec![Value::Bool(st.all_tables.get())])
        } else {
            none()
        }),
        ("eu", logical::SQL_PUBLICATION_TABLES | logical::SQL_ALL_TABLES) => Ok(Rows {
            columns: vec!["qname".into()],
            rows: vec![vec![t("public.gw_config")], vec![t("public.routes")]],
        }),
        ("eu", logical::SQL_RESOLVE_TABLE) => match &s.params[0] {
            Value::Text(q) if q == "\"gw_config\"" => {
                Ok(row(&["qname"], vec![t("public.gw_config")]))
            }
            _ => Ok(none()),
        },
        ("eu", "CREATE PUBLICATION \"api7_pub\" FOR ALL TABLES") => {
            st.publication.set(true);
            st.all_tables.set(true);
            Ok(none())
        }
        ("eu", "ALTER PUBLICATION \"api7_pub\" SET TABLE public.gw_config") => Ok(none()),
        ("eu", logical::SQL_SLOT) => Ok(if st.stale_slot.get() {
            row(&["active"], vec![Value::Bool(false)])
        } else {
            none()
        }),
        ("us", logical::SQL_SUBSCRIBER) => Ok(row(&["in_recovery"], vec![Value::Bool(false)])),
        ("us", logical::SQL_MISSING_TABLES) => {
            assert_eq!(s.params[1], t("\n"));
            Ok(Rows {
                columns: vec!["qname".into()],
                rows: st
                    .missing_on_subscriber
                    .get()
                    .iter()
                    .map(|m| vec![t(m)])
                    .collect(),
            })
        }
        ("us", logical::SQL_SUBSCRIPTION) => Ok(if st.subscription.get() {
            row(
                &["enabled", "has_publication"],
                vec![Value::Bool(st.enabled.get()), Value::Bool(true)],
            )
        } else {
            none()
        }),
        ("us", sql)
            if sql.starts_with(
                "CREATE SUBSCRIPTION \"api7_sub\" CONNECTION 'host=10.0.0.1 password=s3cret'",
            ) =>
        {
            st.subscription.set(true);
            st.enabled.set(true);
            Ok(none())
        }
        ("us", "ALTER SUBSCRIPTION \"api7_sub\" ENABLE") => {
            st.enabled.set(true);
            Ok(none())
        }
        ("us", "ALTER SUBSCRIPTION \"api7_sub\" REFRESH PUBLICATION") => Ok(none()),
        _ => unscripted(s),
    })
}

fn logical_args() -> serde_json::Value {
    serde_json::json!({"action": "setup-logical", "connection": "eu", "standby": "us", "publication": "api7_pub",
                       "subscription": "api7_sub", "publisher_dsn_secret": "PUB_DSN"})
}

#[test]
fn setup_logical_creates_then_refreshes_and_never_shows_the_dsn() {
    let st = Arc::new(LogicalState::default());
    let fake = logical_fake(Arc::clone(&st));
    let out = run(&fake, Mode::Apply, logical_args()).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(true), Some(true))
    );
    assert_eq!(out.tables, ["public.gw_config", "public.routes"]);
    assert_eq!(out.changes.len(), 2);
    assert!(
        out.changes[1].contains("CONNECTION '***'"),
        "{}",
        out.changes[1]
    );
    assert!(!serde_json::to_string(&out).unwrap().contains("s3cret"));
    let checked = fake
        .sent()
        .iter()
        .find(|s| s.sql == logical::SQL_MISSING_TABLES)
        .map(|s| s.params[0].clone());
    assert_eq!(
        checked,
        Some(t("public.gw_config\npublic.routes")),
        "the subscriber is checked for every published table"
    );

    // Second run: nothing to create; the subscription is refreshed. A disabled one is enabled.
    st.enabled.set(false);
    let out = run(&fake, Mode::Apply, logical_args()).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(false), Some(false))
    );
    assert_eq!(out.subscription_refreshed, Some(true));
    assert_eq!(
        out.changes,
        [
            "us: ALTER SUBSCRIPTION \"api7_sub\" ENABLE",
            "us: ALTER SUBSCRIPTION \"api7_sub\" REFRESH PUBLICATION"
        ]
    );
}

#[test]
fn setup_logical_explains_what_blocks_it() {
    type Setup = fn(&LogicalState);
    let cases: [(&str, Setup, serde_json::Value); 6] = [
        (
            "wal_level = replica",
            |st| drop(st.wal_level.replace("replica".into())),
            logical_args(),
        ),
        (
            "lacks published table(s) public.routes",
            |st| st.missing_on_subscriber.set(vec!["public.routes".into()]),
            logical_args(),
        ),
        (
            "already has a replication slot `api7_sub`",
            |st| st.stale_slot.set(true),
            logical_args(),
        ),
        ("publisher_dsn_for_subscriber: needed", |_| {}, {
            let mut a = logical_args();
            a.as_object_mut().unwrap().remove("publisher_dsn_secret");
            a
        }),
        (
            "exists FOR ALL TABLES, but `tables` lists",
            |st| {
                st.publication.set(true);
                st.all_tables.set(true)
            },
            {
                let mut a = logical_args();
                a["tables"] = serde_json::json!(["gw_config"]);
                a
            },
        ),
        ("table `nope` does not exist on the publisher", |_| {}, {
            let mut a = logical_args();
            a["tables"] = serde_json::json!(["nope"]);
            a
        }),
    ];
    for (needle, setup, args) in cases {
        let st = Arc::new(LogicalState::default());
        let fake = logical_fake(Arc::clone(&st));
        setup(&st);
        let e = run(&fake, Mode::Apply, args).unwrap_err();
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
        assert!(
            fake.executed().is_empty(),
            "{needle}: nothing may change before every check passed"
        );
    }
}

#[test]
fn setup_logical_aligns_a_table_list() {
    let st = Arc::new(LogicalState::default());
    st.publication.set(true);
    let fake = logical_fake(Arc::clone(&st));
    let mut args = logical_args();
    args["tables"] = serde_json::json!(["gw_config"]);
    st.subscription.set(true);
    st.enabled.set(true);
    let out = run(&fake, Mode::Apply, args).unwrap();
    assert_eq!(
        out.changes[0],
        "eu: ALTER PUBLICATION \"api7_pub\" SET TABLE public.gw_config"
    );
}

// ------------------------------------------------------------------------------ verify-writable

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

// ------------------------------------------------------------------------------------- contract

#[test]
fn manifest_and_schemas() {
    let m = meridian_sdk::export::describe::<crate::DbPostgres>();
    assert_eq!(m.name, "db-postgres");
    assert!(m.supports_plan && m.supports_compensate);
    assert!(
        m.needs
            .iter()
            .any(|n| n.kind == meridian_sdk::GrantKind::Sql)
    );
    assert!(
        m.input_schema.contains("verify-writable"),
        "{}",
        m.input_schema
    );
    assert!(m.output_schema.contains("rpo_bytes"));
}

#[test]
fn invalid_input_is_reported_before_any_statement() {
    let fake = Fake::new(unscripted);
    // Deserialised without `from_json`'s validation, as the SDK's export glue does.
    let input: DatabaseInput = serde_json::from_value(
        serde_json::json!({"action": "status", "connection": "eu", "tables": []}),
    )
    .unwrap();
    let e = crate::execute(&ctx(&fake, Mode::Apply), &input, &FakeClock::at(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(fake.statements().is_empty());
    assert!(fake.host.logs().is_empty());
}
