//! A host for unit-testing step logic on the build machine, without a component or a Meridian
//! host: answer each capability with a closure, run the step, inspect what it asked for.
//!
//! ```
//! use std::sync::Arc;
//! use meridian_sdk::http::Response;
//! use meridian_sdk::testing::MockHost;
//! let host = Arc::new(
//!     MockHost::new()
//!         .http(|req| match req.url.as_str() {
//!             "http://svc/health" => Ok(Response::new(200, "ok")),
//!             _ => Ok(Response::new(404, "")),
//!         })
//!         .secret("TOKEN", "t-1"),
//! );
//! ```
//!
//! A capability the test did not answer (`http` without [`MockHost::http`], `sql.query` without
//! [`MockHost::sql`], `sql.execute` without [`MockHost::sql_execute`]) panics with the call, so an
//! unexpected call fails the test where it happens. An unknown secret is the host's ordinary
//! "not granted" answer; `kv` and `log` are kept in memory for inspection (log lines also go to
//! stderr).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::host::{HostApi, Level};
use crate::http::{HttpError, Request, Response};
use crate::sql::{Rows, SqlError, Value};

/// One call the step made.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `http.send` (also when plan mode recorded it).
    Http(Request),
    /// `sql.query` (connection, statement, params).
    Query(String, String, Vec<Value>),
    /// `sql.execute` (connection, statement, params).
    Execute(String, String, Vec<Value>),
}

type HttpFn = Box<dyn Fn(&Request) -> Result<Response, HttpError> + Send + Sync>;
type QueryFn = Box<dyn Fn(&str, &str, &[Value]) -> Result<Rows, SqlError> + Send + Sync>;
type ExecuteFn = Box<dyn Fn(&str, &str, &[Value]) -> Result<u64, SqlError> + Send + Sync>;

#[derive(Default)]
struct State {
    kv: BTreeMap<String, Vec<u8>>,
    logs: Vec<(Level, String)>,
    calls: Vec<Call>,
    planned: Vec<Request>,
}

/// A [`HostApi`] whose capabilities are closures. Build it with the chained setters, then share
/// it as `Arc<MockHost>` with [`crate::run_with`] / [`crate::Ctx::new`] and the test.
#[derive(Default)]
pub struct MockHost {
    http: Option<HttpFn>,
    query: Option<QueryFn>,
    execute: Option<ExecuteFn>,
    secrets: BTreeMap<String, String>,
    plan: bool,
    state: Mutex<State>,
}

impl fmt::Debug for MockHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockHost")
            .field("http", &self.http.is_some())
            .field("sql", &self.query.is_some())
            .field("sql_execute", &self.execute.is_some())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl MockHost {
    /// A host that answers nothing yet: no secrets, an empty kv store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `http.send`.
    #[must_use]
    pub fn http(
        mut self,
        answer: impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static,
    ) -> Self {
        self.http = Some(Box::new(answer));
        self
    }

    /// Answers `sql.query` with `(connection, statement, params)`.
    #[must_use]
    pub fn sql(
        mut self,
        answer: impl Fn(&str, &str, &[Value]) -> Result<Rows, SqlError> + Send + Sync + 'static,
    ) -> Self {
        self.query = Some(Box::new(answer));
        self
    }

    /// Answers `sql.execute` with `(connection, statement, params)`: the rows affected.
    #[must_use]
    pub fn sql_execute(
        mut self,
        answer: impl Fn(&str, &str, &[Value]) -> Result<u64, SqlError> + Send + Sync + 'static,
    ) -> Self {
        self.execute = Some(Box::new(answer));
        self
    }

    /// Grants a secret.
    #[must_use]
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Behaves like the sandbox in plan mode for HTTP: a mutating request does not reach the
    /// `http` answer but is kept ([`MockHost::planned`]) and answered with
    /// [`Response::recorded`]. (SQL has no such stand-in: plan mode there is PostgreSQL's
    /// read-only transaction.)
    #[must_use]
    pub fn plan(mut self) -> Self {
        self.plan = true;
        self
    }

    /// Calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The HTTP requests made so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Http(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The mutating HTTP requests [`MockHost::plan`] recorded instead of answering.
    pub fn planned(&self) -> Vec<Request> {
        self.state().planned.clone()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state().logs.clone()
    }

    /// The kv store as it is now.
    pub fn kv(&self) -> BTreeMap<String, Vec<u8>> {
        self.state().kv.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the data is still fine for inspection.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unanswered(call: &str, setter: &str) -> ! {
        panic!("MockHost: the step called {call}, which this test does not answer (set {setter})")
    }
}

impl HostApi for MockHost {
    fn log(&self, level: Level, message: &str, _fields: &[(String, String)]) {
        // The test harness shows stderr for a failing test: the step's story comes with it.
        eprintln!("[step {level:?}] {message}");
        self.state().logs.push((level, message.to_owned()));
    }

    fn http_send(&self, req: &Request) -> Result<Response, HttpError> {
        {
            let mut st = self.state();
            st.calls.push(Call::Http(req.clone()));
            if self.plan && req.is_mutating() {
                st.planned.push(req.clone());
                return Ok(Response::recorded());
            }
        }
        // The lock is released: the answer may take its time or inspect the host.
        match &self.http {
            Some(answer) => answer(req),
            None => Self::unanswered(&format!("http {req}"), ".http(..)"),
        }
    }

    fn sql_query(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<Rows, SqlError> {
        self.state().calls.push(Call::Query(
            connection.to_owned(),
            statement.to_owned(),
            params.to_vec(),
        ));
        match &self.query {
            Some(answer) => answer(connection, statement, params),
            None => Self::unanswered(
                &format!("sql.query on `{connection}`: {statement}"),
                ".sql(..)",
            ),
        }
    }

    fn sql_execute(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<u64, SqlError> {
        self.state().calls.push(Call::Execute(
            connection.to_owned(),
            statement.to_owned(),
            params.to_vec(),
        ));
        match &self.execute {
            Some(answer) => answer(connection, statement, params),
            None => Self::unanswered(
                &format!("sql.execute on `{connection}`: {statement}"),
                ".sql_execute(..)",
            ),
        }
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| format!("secret `{name}` is not granted"))
    }

    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state().kv.get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.state().kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> bool {
        self.state().kv.remove(key).is_some()
    }

    fn kv_list(&self, prefix: &str) -> Vec<String> {
        self.state()
            .kv
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Ctx, Invocation};

    fn ctx(host: &Arc<MockHost>) -> Ctx {
        Ctx::new(
            Invocation::for_test(&serde_json::json!({})),
            Arc::clone(host) as Arc<dyn HostApi>,
        )
    }

    #[test]
    fn closures_answer_and_calls_are_kept() {
        let host = Arc::new(
            MockHost::new()
                .http(|req| Ok(Response::new(200, req.url.clone())))
                .sql(|conn, stmt, _| {
                    Ok(Rows {
                        columns: vec![conn.to_owned()],
                        rows: vec![vec![Value::Text(stmt.to_owned())]],
                    })
                })
                .sql_execute(|_, _, params| Ok(params.len() as u64))
                .secret("TOKEN", "t"),
        );
        let ctx = ctx(&host);
        assert_eq!(ctx.http().get("http://a/").unwrap().text(), "http://a/");
        let rows = ctx.sql("eu").query("SELECT 1", &[]).unwrap();
        assert_eq!(rows.get(0, "eu"), Some(&Value::Text("SELECT 1".into())));
        assert_eq!(
            ctx.sql("eu")
                .execute("DELETE", &[Value::Int(1), Value::Null])
                .unwrap(),
            2
        );
        assert_eq!(ctx.secret("TOKEN").unwrap(), "t");
        assert!(
            ctx.secret("OTHER")
                .unwrap_err()
                .message()
                .contains("not granted")
        );
        ctx.kv().set("k", b"v").unwrap();
        assert_eq!(host.kv()["k"], b"v");
        assert_eq!(host.calls().len(), 3);
        assert_eq!(host.requests()[0].url, "http://a/");
    }

    #[test]
    fn plan_records_writes_and_passes_reads() {
        let host = Arc::new(
            MockHost::new()
                .http(|_| Ok(Response::new(200, "read")))
                .plan(),
        );
        let ctx = ctx(&host);
        assert_eq!(ctx.http().get("http://a/").unwrap().text(), "read");
        let put = ctx.http().put_json("http://a/x", &1).unwrap();
        assert!(put.recorded);
        assert_eq!(host.planned().len(), 1);
        assert_eq!(host.planned()[0].method, "PUT");
    }

    #[test]
    #[should_panic(
        expected = "the step called http GET http://a/, which this test does not answer"
    )]
    fn an_unanswered_capability_panics_naming_the_call() {
        let host = Arc::new(MockHost::new());
        let _ = ctx(&host).http().get("http://a/");
    }

    #[test]
    #[should_panic(expected = "sql.execute on `eu`: DROP TABLE t")]
    fn unanswered_sql_names_connection_and_statement() {
        let host = Arc::new(MockHost::new().sql(|_, _, _| Ok(Rows::default())));
        let _ = ctx(&host).sql("eu").execute("DROP TABLE t", &[]);
    }
}
