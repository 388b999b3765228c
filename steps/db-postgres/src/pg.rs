//! PostgreSQL helpers shared by the actions: quoting for utility statements (which take no bind
//! parameters), WAL positions, tolerant column access, and error classification that names the
//! connection and says what to check.

use std::fmt;

use meridian_sdk::sql::{Rows, SqlError, Value};
use meridian_sdk::{Ctx, Error};

/// Quotes an identifier exactly as written (case-sensitive): `a"b` → `"a""b"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal the way PostgreSQL's `quote_literal` does: quotes doubled, and an
/// `E''` string with doubled backslashes when there is a backslash, so the value is read back
/// verbatim whatever `standard_conforming_strings` says.
pub(crate) fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `schema.table` or `table` (already validated) as a quoted, possibly qualified name.
pub(crate) fn quote_qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(name),
    }
}

/// A WAL position (`pg_lsn`), comparable across the servers of one replication set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Lsn(pub(crate) u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` text form (two hex numbers of up to 32 bits).
    pub(crate) fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// Bytes from `other` up to `self`, 0 when `other` is ahead.
    pub(crate) fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The timeline of a WAL file name (its first 8 hex digits), e.g. `000000020000000000000003` → 2.
pub(crate) fn timeline_of_walfile(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// Typed, tolerant access to one row: the host may render a value as text where a type has no
/// direct mapping, so numbers and booleans are also parsed from text.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    rows: &'a Rows,
    index: usize,
}

impl<'a> Row<'a> {
    fn value(&self, column: &str) -> Option<&'a Value> {
        self.rows.get(self.index, column).filter(|v| !v.is_null())
    }

    pub(crate) fn text(&self, column: &str) -> Option<String> {
        match self.value(column)? {
            Value::Text(s) | Value::Json(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Null => None,
        }
    }

    pub(crate) fn int(&self, column: &str) -> Option<i64> {
        match self.value(column)? {
            Value::Int(i) => Some(*i),
            #[allow(clippy::cast_possible_truncation)]
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn uint(&self, column: &str) -> Option<u64> {
        self.int(column).map(|i| u64::try_from(i).unwrap_or(0))
    }

    pub(crate) fn float(&self, column: &str) -> Option<f64> {
        match self.value(column)? {
            Value::Text(s) => s.trim().parse().ok(),
            v => v.as_f64(),
        }
    }

    pub(crate) fn bool(&self, column: &str) -> Option<bool> {
        match self.value(column)? {
            Value::Bool(b) => Some(*b),
            Value::Text(s) => match s.trim() {
                "t" | "true" | "on" => Some(true),
                "f" | "false" | "off" => Some(false),
                _ => None,
            },
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    pub(crate) fn lsn(&self, column: &str) -> Option<Lsn> {
        Lsn::parse(&self.text(column)?)
    }
}

/// The rows of a result.
pub(crate) fn rows(rows: &Rows) -> impl Iterator<Item = Row<'_>> {
    (0..rows.len()).map(move |index| Row { rows, index })
}

/// The first row, or an error naming the statement's purpose.
pub(crate) fn first<'a>(rows: &'a Rows, conn: &str, what: &str) -> Result<Row<'a>, Error> {
    if rows.is_empty() {
        return Err(Error::fatal(format!(
            "{what} on `{conn}`: the query returned no row"
        )));
    }
    Ok(Row { rows, index: 0 })
}

/// Whether an error means "the server is not there" (down, unreachable, starting or shutting
/// down) rather than "the server refused".
pub(crate) fn is_unreachable(e: &SqlError) -> bool {
    match e {
        SqlError::Connect(_) | SqlError::Timeout => true,
        // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now.
        SqlError::Db { code, .. } => code.starts_with("08") || code.starts_with("57P"),
        SqlError::Denied(_) | SqlError::Unsupported(_) => false,
    }
}

/// The SQLSTATE of a server error.
pub(crate) fn sqlstate(e: &SqlError) -> Option<&str> {
    match e {
        SqlError::Db { code, .. } => Some(code),
        _ => None,
    }
}

/// Turns a failed statement into a step error that says what was being done, on which
/// connection, and what to check. Transient failures are retryable.
pub(crate) fn sql_error(conn: &str, what: &str, e: &SqlError) -> Error {
    match e {
        // The Meridian host's message already names the grant to add.
        SqlError::Denied(m) if m.contains("grants.sql") => Error::fatal(format!("{what}: {m}")),
        SqlError::Denied(m) => Error::fatal(format!(
            "{what}: connection `{conn}` is not granted to this step ({m}); add it to the step's `grants.sql`"
        )),
        SqlError::Connect(m) => Error::retryable(format!(
            "{what}: cannot connect to `{conn}`: {m}; check that the server is up and the DSN under `connections.{conn}`"
        )),
        SqlError::Timeout => {
            Error::retryable(format!("{what} on `{conn}`: the statement timed out"))
        }
        SqlError::Db { code, message } if code == "42501" => Error::fatal(format!(
            "{what} on `{conn}`: permission denied ({message}); the connection's role needs the privilege (see the step's docs)"
        )),
        SqlError::Db { .. } if e.is_transient() => {
            Error::retryable(format!("{what} on `{conn}`: {e}"))
        }
        SqlError::Db { .. } => Error::fatal(format!("{what} on `{conn}`: {e}")),
        SqlError::Unsupported(m) => Error::fatal(format!(
            "{what} on `{conn}`: the host cannot convert a value ({m}); this is a bug in db-postgres"
        )),
    }
}

/// One named connection, with statements that fail as step errors.
#[derive(Clone, Copy)]
pub(crate) struct Conn<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) name: &'a str,
}

impl<'a> Conn<'a> {
    pub(crate) fn new(ctx: &'a Ctx, name: &'a str) -> Self {
        Self { ctx, name }
    }

    /// Runs a read, returning the raw SQL error for callers that branch on it.
    pub(crate) fn try_query(&self, sql: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.ctx.sql(self.name).query(sql, params)
    }

    /// Runs a read; `what` names its purpose in errors.
    pub(crate) fn query(&self, what: &str, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.try_query(sql, params)
            .map_err(|e| sql_error(self.name, what, &e))
    }

    /// Runs a statement that changes something and records it in `changes` as `shown` (the
    /// statement with secrets redacted). In plan mode the host records it instead of running it;
    /// when the host instead runs it in a read-only transaction, PostgreSQL's refusal (SQLSTATE
    /// class 25) is the expected outcome and counts as planned.
    pub(crate) fn change(
        &self,
        changes: &mut Vec<String>,
        what: &str,
        sql: &str,
        shown: &str,
    ) -> Result<(), Error> {
        match self.ctx.sql(self.name).execute(sql, &[]) {
            Ok(_) => {}
            Err(SqlError::Db { code, .. }) if self.ctx.is_plan() && code.starts_with("25") => {}
            Err(e) => return Err(sql_error(self.name, what, &e)),
        }
        changes.push(format!("{}: {shown}", self.name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_postgres() {
        assert_eq!(quote_ident("sub"), "\"sub\"");
        assert_eq!(quote_ident("My\"Sub"), "\"My\"\"Sub\"");
        assert_eq!(
            quote_literal("host=a password=it's"),
            "'host=a password=it''s'"
        );
        assert_eq!(quote_literal(r"pa\ss'"), r"E'pa\\ss'''");
        assert_eq!(quote_qualified("public.Gw"), "\"public\".\"Gw\"");
        assert_eq!(quote_qualified("t"), "\"t\"");
    }

    #[test]
    fn lsn_round_trips_and_subtracts() {
        let a = Lsn::parse("0/1527490").unwrap();
        let b = Lsn::parse("1/0").unwrap();
        assert_eq!(a.to_string(), "0/1527490");
        assert_eq!(b.0, 1 << 32);
        assert_eq!(b.bytes_after(a), (1 << 32) - 0x152_7490);
        assert_eq!(a.bytes_after(b), 0);
        assert_eq!(
            Lsn::parse("16/B374D848").unwrap().to_string(),
            "16/B374D848"
        );
        for bad in ["", "0", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeline_from_walfile() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A"), Some(10));
        assert_eq!(timeline_of_walfile("short"), None);
    }

    #[test]
    fn rows_are_read_tolerantly() {
        let r = Rows {
            columns: vec!["n".into(), "b".into(), "f".into(), "l".into(), "z".into()],
            rows: vec![vec![
                Value::Text("42".into()),
                Value::Text("t".into()),
                Value::Int(3),
                Value::Text("0/10".into()),
                Value::Null,
            ]],
        };
        let row = rows(&r).next().unwrap();
        assert_eq!(row.int("n"), Some(42));
        assert_eq!(row.uint("n"), Some(42));
        assert_eq!(row.bool("b"), Some(true));
        assert_eq!(row.float("f"), Some(3.0));
        assert_eq!(row.lsn("l"), Some(Lsn(16)));
        assert_eq!(row.text("z"), None);
        assert_eq!(row.text("missing"), None);
    }

    #[test]
    fn errors_are_classified_with_hints() {
        let e = sql_error("eu", "reading status", &SqlError::Connect("refused".into()));
        assert_eq!(e.kind(), meridian_sdk::ErrorKind::Retryable);
        assert!(e.message().contains("connections.eu"), "{}", e.message());
        let e = sql_error("eu", "x", &SqlError::Denied("no".into()));
        assert_eq!(e.kind(), meridian_sdk::ErrorKind::Fatal);
        assert!(e.message().contains("grants.sql"));
        let db = |code: &str| SqlError::Db {
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(
            sql_error("eu", "x", &db("40001")).kind(),
            meridian_sdk::ErrorKind::Retryable
        );
        assert_eq!(
            sql_error("eu", "x", &db("42P01")).kind(),
            meridian_sdk::ErrorKind::Fatal
        );
        assert!(
            sql_error("eu", "x", &db("42501"))
                .message()
                .contains("permission denied")
        );
        assert!(is_unreachable(&db("57P03")));
        assert!(is_unreachable(&SqlError::Timeout));
        assert!(!is_unreachable(&db("42501")));
    }
}
