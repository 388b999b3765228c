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

mod fencing;
mod logical_setup;
mod promotion;
mod replication_status;
mod verify_writable;

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
