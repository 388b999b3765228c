//! `verify-writable`: prove the server accepts writes by upserting a probe row and reading it
//! back.
//!
//! The table (`meridian_probe` by default) is `(id text primary key, at timestamptz)`, created if
//! missing; the row's id is the invocation's idempotency key, so retries and resumes rewrite one
//! row. A refusal because the server is read-only (in recovery or fenced; SQLSTATE 25006) is
//! retryable: right after a promotion the server may need a moment. In plan mode nothing is
//! written and `writable` is the prediction from `pg_is_in_recovery()` and
//! `default_transaction_read_only`.
//!
//! With logical replication FOR ALL TABLES, create the probe table on the subscribers too, or
//! probe only a server no subscriber replicates from: a published table missing on a subscriber
//! stops its apply worker.

use meridian_families::database::{DatabaseAction, DatabaseInput, DatabaseOutput, Role};
use meridian_sdk::sql::{SqlError, Value};
use meridian_sdk::{Ctx, Error};

use crate::VENDOR;
use crate::fence::SQL_PROBE;
use crate::pg::{Conn, first, quote_qualified, sql_error};

/// Runs `verify-writable`.
pub(crate) fn run(ctx: &Ctx, input: &DatabaseInput) -> Result<DatabaseOutput, Error> {
    let conn = Conn::new(ctx, &input.connection);
    let table = quote_qualified(&input.probe_table);
    let id = ctx.invocation().idempotency_key.clone();
    let mut out = DatabaseOutput::new(VENDOR, DatabaseAction::VerifyWritable, &input.connection);
    out.planned = ctx.is_plan();
    out.probe_id = Some(id.clone());

    let state = conn.query("reading the server state", SQL_PROBE, &[])?;
    let state = first(&state, conn.name, "reading the server state")?;
    let in_recovery = state.bool("in_recovery").unwrap_or(false);
    let read_only = state.bool("read_only").unwrap_or(false);
    out.in_recovery = Some(in_recovery);
    out.read_only = Some(read_only);
    out.role = Some(if in_recovery {
        Role::Standby
    } else {
        Role::Primary
    });

    let create = format!(
        "CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, at timestamptz NOT NULL)"
    );
    let upsert = format!(
        "INSERT INTO {table} (id, at) VALUES ($1::text, now()) ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at"
    );
    if ctx.is_plan() {
        conn.change(
            &mut out.changes,
            "creating the probe table",
            &create,
            &create,
        )?;
        out.changes.push(format!("{}: {upsert}", conn.name));
        out.writable = Some(!in_recovery && !read_only);
        return Ok(out);
    }

    write(conn, "creating the probe table", &create, &[])?;
    write(
        conn,
        "writing the probe row",
        &upsert,
        &[Value::from(id.as_str())],
    )?;
    out.changes.push(format!("{}: {upsert}", conn.name));
    let read = format!(
        "SELECT id, at::text AS at, pg_current_wal_lsn()::text AS lsn FROM {table} WHERE id = $1::text"
    );
    let back = conn.query(
        "reading the probe row back",
        &read,
        &[Value::from(id.as_str())],
    )?;
    let row = first(&back, conn.name, "reading the probe row back").map_err(|_| {
        Error::fatal(format!(
            "the probe row written to `{}` on `{}` is not there when read back",
            input.probe_table, conn.name
        ))
    })?;
    out.probe_at = row.text("at");
    out.lsn = row.text("lsn");
    out.writable = Some(true);
    Ok(out)
}

fn write(conn: Conn<'_>, what: &str, sql: &str, params: &[Value]) -> Result<(), Error> {
    match conn.ctx.sql(conn.name).execute(sql, params) {
        Ok(_) => Ok(()),
        Err(SqlError::Db { code, message }) if code == "25006" => Err(Error::retryable(format!(
            "{what} on `{}`: the server refuses writes ({message}): it is a standby in recovery or fenced (default_transaction_read_only = on); promote it or unfence it",
            conn.name
        ))),
        Err(e) => Err(sql_error(conn.name, what, &e)),
    }
}
