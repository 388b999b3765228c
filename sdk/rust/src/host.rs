//! The seam between step logic and the host: [`HostApi`] is implemented by [`WitHost`] (the real
//! imports, inside a component) and by [`crate::testing::MockHost`] (unit tests on the host
//! target, where the WIT imports cannot be called).

use crate::bindings::meridian::step as wit;
use crate::http::{HttpError, Request, Response};
use crate::sql::{Rows, SqlError, Value};

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd, the step goes on.
    Warn,
    /// Something failed.
    Error,
}

/// Everything a step can ask of its host. Each call is synchronous from the step's point of view.
pub trait HostApi {
    /// Emits a log line.
    fn log(&self, level: Level, message: &str, fields: &[(String, String)]);
    /// Sends an HTTP request.
    fn http_send(&self, req: &Request) -> Result<Response, HttpError>;
    /// Runs a row-returning statement on a named connection.
    fn sql_query(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<Rows, SqlError>;
    /// Runs a statement on a named connection, returning rows affected.
    fn sql_execute(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<u64, SqlError>;
    /// Reads a granted secret.
    fn secret(&self, name: &str) -> Result<String, String>;
    /// Reads per-run state.
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes per-run state.
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Deletes per-run state; returns whether the key existed.
    fn kv_delete(&self, key: &str) -> bool;
    /// Lists per-run state keys with a prefix, sorted.
    fn kv_list(&self, prefix: &str) -> Vec<String>;
}

/// The real host, through the component's WIT imports. Only callable inside a component
/// (on other targets the generated imports panic with `unreachable`).
#[derive(Debug, Default, Clone, Copy)]
pub struct WitHost;

impl HostApi for WitHost {
    fn log(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let level = match level {
            Level::Trace => wit::log::Level::Trace,
            Level::Debug => wit::log::Level::Debug,
            Level::Info => wit::log::Level::Info,
            Level::Warn => wit::log::Level::Warn,
            Level::Error => wit::log::Level::Error,
        };
        wit::log::log(level, message, fields);
    }

    fn http_send(&self, req: &Request) -> Result<Response, HttpError> {
        let wreq = wit::http::Request {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            timeout_ms: req
                .timeout
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        match wit::http::send(&wreq) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
                recorded: r.recorded,
            }),
            Err(e) => Err(match e {
                wit::http::Error::Denied(m) => HttpError::Denied(m),
                wit::http::Error::Timeout => HttpError::Timeout,
                wit::http::Error::Connect(m) => HttpError::Connect(m),
                wit::http::Error::TooLarge(n) => HttpError::TooLarge(n),
                wit::http::Error::Other(m) => HttpError::Other(m),
            }),
        }
    }

    fn sql_query(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<Rows, SqlError> {
        let params: Vec<_> = params.iter().map(to_wit_value).collect();
        let rows = wit::sql::query(connection, statement, &params).map_err(from_wit_sql_error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(from_wit_value).collect())
                .collect(),
        })
    }

    fn sql_execute(
        &self,
        connection: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<u64, SqlError> {
        let params: Vec<_> = params.iter().map(to_wit_value).collect();
        wit::sql::execute(connection, statement, &params).map_err(from_wit_sql_error)
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        wit::secrets::get(name)
    }

    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        wit::kv::get(key)
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        wit::kv::set(key, value)
    }

    fn kv_delete(&self, key: &str) -> bool {
        wit::kv::delete(key)
    }

    fn kv_list(&self, prefix: &str) -> Vec<String> {
        wit::kv::keys(prefix)
    }
}

fn to_wit_value(v: &Value) -> wit::sql::Value {
    match v {
        Value::Null => wit::sql::Value::Null,
        Value::Bool(b) => wit::sql::Value::Boolean(*b),
        Value::Int(i) => wit::sql::Value::Int(*i),
        Value::Float(f) => wit::sql::Value::Float(*f),
        Value::Text(s) => wit::sql::Value::Text(s.clone()),
        Value::Bytes(b) => wit::sql::Value::Bytes(b.clone()),
        Value::Json(s) => wit::sql::Value::Json(s.clone()),
    }
}

fn from_wit_value(v: wit::sql::Value) -> Value {
    match v {
        wit::sql::Value::Null => Value::Null,
        wit::sql::Value::Boolean(b) => Value::Bool(b),
        wit::sql::Value::Int(i) => Value::Int(i),
        wit::sql::Value::Float(f) => Value::Float(f),
        wit::sql::Value::Text(s) => Value::Text(s),
        wit::sql::Value::Bytes(b) => Value::Bytes(b),
        wit::sql::Value::Json(s) => Value::Json(s),
    }
}

fn from_wit_sql_error(e: wit::sql::Error) -> SqlError {
    match e {
        wit::sql::Error::Denied(m) => SqlError::Denied(m),
        wit::sql::Error::Db((code, message)) => SqlError::Db { code, message },
        wit::sql::Error::Timeout => SqlError::Timeout,
        wit::sql::Error::Connect(m) => SqlError::Connect(m),
        wit::sql::Error::Unsupported(m) => SqlError::Unsupported(m),
    }
}
