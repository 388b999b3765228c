//! SQL through the host's `sql` interface (PostgreSQL). Steps name a connection from the
//! workflow's `connections:`; they never see a DSN.

use std::fmt;

use crate::host::HostApi;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int2`, `int4`, `int8`, `oid`.
    Int(i64),
    /// `float4`, `float8`.
    Float(f64),
    /// Text types, and every type the host renders as text (`numeric`, `pg_lsn`, timestamps, …).
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `json` / `jsonb`, as JSON text.
    Json(String),
}

impl Value {
    /// The integer, if this is an `Int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The float, also converting an `Int`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// The string, if this is `Text` or `Json`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }
    /// The boolean, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// The value as JSON (`Json` parsed, `Bytes` as an array of numbers).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => (*f).into(),
            Value::Text(s) => s.clone().into(),
            Value::Bytes(b) => b.clone().into(),
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A query result: column names and rows of values in column order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The value of column `column` in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)
    }
    /// Each row as a JSON object keyed by column name.
    pub fn to_json(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(r.iter().map(Value::to_json))
                    .collect()
            })
            .collect()
    }
}

/// Why a statement did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The connection is not granted to this step.
    Denied(String),
    /// PostgreSQL refused: SQLSTATE and message.
    Db {
        /// Five-character SQLSTATE, e.g. `42P01`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The statement exceeded its time.
    Timeout,
    /// Could not connect.
    Connect(String),
    /// A parameter or column type the host cannot convert; the message names the cast to add.
    Unsupported(String),
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Denied(m) => write!(f, "denied: {m}"),
            SqlError::Db { code, message } => write!(f, "{message} (SQLSTATE {code})"),
            SqlError::Timeout => write!(f, "timed out"),
            SqlError::Connect(m) => write!(f, "connection failed: {m}"),
            SqlError::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl std::error::Error for SqlError {}

impl SqlError {
    /// Whether retrying may help: connection problems, timeouts, and the SQLSTATE classes of
    /// transient server conditions (08 connection, 40 serialization/deadlock, 53 resources,
    /// 57P0x shutdown/recovery).
    pub fn is_transient(&self) -> bool {
        match self {
            SqlError::Timeout | SqlError::Connect(_) => true,
            SqlError::Db { code, .. } => {
                code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57P")
            }
            SqlError::Denied(_) | SqlError::Unsupported(_) => false,
        }
    }
}

impl From<SqlError> for crate::Error {
    fn from(e: SqlError) -> Self {
        let msg = format!("sql: {e}");
        if e.is_transient() {
            crate::Error::retryable(msg)
        } else {
            crate::Error::fatal(msg)
        }
    }
}

/// SQL helpers bound to one named connection; see [`crate::Ctx::sql`].
#[derive(Clone, Copy)]
pub struct Sql<'a> {
    pub(crate) host: &'a dyn HostApi,
    pub(crate) connection: &'a str,
}

impl Sql<'_> {
    /// Runs a statement that returns rows. `$1`, `$2`, … are bound to `params`.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.host.sql_query(self.connection, statement, params)
    }

    /// Runs a statement and returns the number of rows affected.
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, SqlError> {
        self.host.sql_execute(self.connection, statement, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_access_and_json() {
        let rows = Rows {
            columns: vec!["id".into(), "doc".into()],
            rows: vec![vec![Value::Int(7), Value::Json("{\"a\":true}".into())]],
        };
        assert_eq!(rows.get(0, "id").and_then(Value::as_i64), Some(7));
        assert_eq!(rows.get(0, "nope"), None);
        assert_eq!(rows.to_json()[0]["doc"]["a"], serde_json::Value::Bool(true));
    }

    #[test]
    fn transient_classification() {
        let db = |code: &str| SqlError::Db {
            code: code.into(),
            message: String::new(),
        };
        assert!(db("40001").is_transient());
        assert!(db("57P01").is_transient());
        assert!(!db("42P01").is_transient());
        assert!(!SqlError::Denied("x".into()).is_transient());
    }
}
