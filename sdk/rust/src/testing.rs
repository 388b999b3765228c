//! A scripted host for unit-testing step logic on the build machine, without a component or a
//! Meridian host: queue answers, run the step, inspect what it asked for.
//!
//! ```
//! use meridian_sdk::testing::MockHost;
//! use meridian_sdk::http::Response;
//! let host = MockHost::new();
//! host.on_http("GET", "http://svc/health", Ok(Response { status: 200, headers: vec![], body: b"ok".to_vec(), recorded: false }));
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::host::{HostApi, Level};
use crate::http::{HttpError, Request, Response};
use crate::sql::{Rows, SqlError, Value};

/// One call the step made.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `http.send`.
    Http(Request),
    /// `sql.query` (connection, statement, params).
    Query(String, String, Vec<Value>),
    /// `sql.execute` (connection, statement, params).
    Execute(String, String, Vec<Value>),
}

#[derive(Default)]
struct State {
    http: BTreeMap<(String, String), Result<Response, HttpError>>,
    query: BTreeMap<String, Result<Rows, SqlError>>,
    execute: BTreeMap<String, Result<u64, SqlError>>,
    secrets: BTreeMap<String, String>,
    kv: BTreeMap<String, Vec<u8>>,
    logs: Vec<(Level, String)>,
    calls: Vec<Call>,
}

/// A [`HostApi`] with canned answers. Unscripted HTTP requests fail with `denied`, unscripted
/// statements with `denied`, so a test notices an unexpected call.
#[derive(Default)]
pub struct MockHost {
    state: Mutex<State>,
}

impl MockHost {
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the data is still fine for inspection.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers `method url` (exact match) with `answer`, every time.
    pub fn on_http(&self, method: &str, url: &str, answer: Result<Response, HttpError>) -> &Self {
        self.state()
            .http
            .insert((method.to_ascii_uppercase(), url.to_owned()), answer);
        self
    }
    /// Answers `sql.query` of exactly `statement`.
    pub fn on_query(&self, statement: &str, answer: Result<Rows, SqlError>) -> &Self {
        self.state().query.insert(statement.to_owned(), answer);
        self
    }
    /// Answers `sql.execute` of exactly `statement`.
    pub fn on_execute(&self, statement: &str, answer: Result<u64, SqlError>) -> &Self {
        self.state().execute.insert(statement.to_owned(), answer);
        self
    }
    /// Grants a secret.
    pub fn secret(&self, name: &str, value: &str) -> &Self {
        self.state()
            .secrets
            .insert(name.to_owned(), value.to_owned());
        self
    }
    /// Calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }
    /// Log lines so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state().logs.clone()
    }
}

impl HostApi for MockHost {
    fn log(&self, level: Level, message: &str, _fields: &[(String, String)]) {
        self.state().logs.push((level, message.to_owned()));
    }

    fn http_send(&self, req: &Request) -> Result<Response, HttpError> {
        let mut st = self.state();
        st.calls.push(Call::Http(req.clone()));
        st.http
            .get(&(req.method.to_ascii_uppercase(), req.url.clone()))
            .cloned()
            .unwrap_or_else(|| {
                Err(HttpError::Denied(format!(
                    "MockHost: no answer scripted for {} {}",
                    req.method, req.url
                )))
            })
    }

    fn sql_query(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<Rows, SqlError> {
        let mut st = self.state();
        st.calls.push(Call::Query(
            connection.to_owned(),
            statement.to_owned(),
            params.to_vec(),
        ));
        st.query.get(statement).cloned().unwrap_or_else(|| {
            Err(SqlError::Denied(format!(
                "MockHost: no answer scripted for query {statement}"
            )))
        })
    }

    fn sql_execute(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<u64, SqlError> {
        let mut st = self.state();
        st.calls.push(Call::Execute(
            connection.to_owned(),
            statement.to_owned(),
            params.to_vec(),
        ));
        st.execute.get(statement).cloned().unwrap_or_else(|| {
            Err(SqlError::Denied(format!(
                "MockHost: no answer scripted for execute {statement}"
            )))
        })
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        self.state()
            .secrets
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
