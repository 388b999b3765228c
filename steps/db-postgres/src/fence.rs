//! `fence`: make the old primary refuse writes, if it is still there.
//!
//! `ALTER SYSTEM SET default_transaction_read_only = on`, `pg_reload_conf()`, then
//! `pg_terminate_backend` for every client backend but ours, so sessions reconnect into
//! read-only transactions (walsenders and background workers are left alone). This fences
//! well-behaved clients such as the API7 control plane; a client that explicitly starts a
//! read-write transaction can still write, so for a hard fence also stop the server or cut it off
//! at the network. An unreachable server is a success with `reachable: false`: the region is
//! down, which is the situation a failover is for.
//!
//! Compensation (`compensate`) runs `ALTER SYSTEM RESET default_transaction_read_only` and
//! reloads. Privileges: superuser, or on PostgreSQL 15 `GRANT ALTER SYSTEM ON PARAMETER
//! default_transaction_read_only` plus EXECUTE on `pg_reload_conf` and membership in
//! `pg_signal_backend`.
//!
//! Cost: 4 statements plus up to 5 s of polling until our own session sees the setting.

use meridian_families::Clock;
use meridian_families::database::{DatabaseAction, DatabaseInput, DatabaseOutput};
use meridian_sdk::{Ctx, Error};
use serde::{Deserialize, Serialize};

use crate::VENDOR;
use crate::pg::{Conn, first, is_unreachable, sql_error, sqlstate};

pub(crate) const SQL_PROBE: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     current_setting('default_transaction_read_only') AS read_only";
pub(crate) const SQL_FENCE: &str = "ALTER SYSTEM SET default_transaction_read_only = on";
pub(crate) const SQL_UNFENCE: &str = "ALTER SYSTEM RESET default_transaction_read_only";
pub(crate) const SQL_RELOAD: &str = "SELECT pg_reload_conf() AS reloaded";
pub(crate) const SQL_SETTING: &str =
    "SELECT current_setting('default_transaction_read_only') AS read_only";
pub(crate) const SQL_TERMINATE: &str = "SELECT count(*)::bigint AS terminated FROM ( \
     SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) t WHERE ok";

/// The reload is asynchronous: the postmaster signals every backend, ours included.
const SETTLE_MS: u64 = 5_000;
const SETTLE_POLL_MS: u64 = 50;

/// What `run` remembers for `compensate` in the run's state, keyed by connection.
#[derive(Debug, Serialize, Deserialize)]
struct Fenced {
    fenced: bool,
}

fn kv_key(connection: &str) -> String {
    format!("db-postgres/fenced/{connection}")
}

/// Runs `fence`.
pub(crate) fn run(
    ctx: &Ctx,
    input: &DatabaseInput,
    clock: &dyn Clock,
) -> Result<DatabaseOutput, Error> {
    let conn = Conn::new(ctx, &input.connection);
    let mut out = DatabaseOutput::new(VENDOR, DatabaseAction::Fence, &input.connection);
    out.planned = ctx.is_plan();
    let probe = match conn.try_query(SQL_PROBE, &[]) {
        Ok(rows) => rows,
        Err(e) if is_unreachable(&e) => {
            ctx.log.warn(&format!(
                "old primary `{}` is unreachable ({e}); nothing to fence",
                conn.name
            ));
            out.fenced = Some(false);
            out.reachable = Some(false);
            return Ok(out);
        }
        Err(e) => return Err(sql_error(conn.name, "reaching the server to fence", &e)),
    };
    let probe = first(&probe, conn.name, "reaching the server to fence")?;
    out.reachable = Some(true);
    out.in_recovery = probe.bool("in_recovery");

    conn.change(
        &mut out.changes,
        "setting default_transaction_read_only",
        SQL_FENCE,
        SQL_FENCE,
    )
    .map_err(|e| privilege_hint(e, "ALTER SYSTEM"))?;
    if ctx.is_plan() {
        // pg_reload_conf and pg_terminate_backend would act even in a read-only transaction.
        out.changes
            .push(format!("{}: SELECT pg_reload_conf()", conn.name));
        out.changes.push(format!(
            "{}: terminate client backends (pg_terminate_backend)",
            conn.name
        ));
        out.fenced = Some(false);
        out.read_only = probe.bool("read_only");
        return Ok(out);
    }
    // From here on a partial fence must be undone by compensation even if a later call fails.
    ctx.kv()
        .set_json(&kv_key(conn.name), &Fenced { fenced: true })?;
    conn.query("reloading the configuration", SQL_RELOAD, &[])
        .map_err(|e| privilege_hint(e, "pg_reload_conf()"))?;
    out.changes
        .push(format!("{}: SELECT pg_reload_conf()", conn.name));
    let read_only = wait_for_setting(conn, clock, true)?;
    out.read_only = Some(read_only);
    if !read_only {
        return Err(Error::retryable(format!(
            "`{}` still reports default_transaction_read_only = off {} s after the reload; check its log for configuration errors",
            conn.name,
            SETTLE_MS / 1000
        )));
    }
    match conn.try_query(SQL_TERMINATE, &[]) {
        Ok(rows) => {
            let n = crate::pg::rows(&rows)
                .next()
                .and_then(|r| r.uint("terminated"))
                .unwrap_or(0);
            out.terminated_backends = Some(n);
            out.changes
                .push(format!("{}: terminated {n} client backend(s)", conn.name));
        }
        // Without pg_signal_backend (or against a superuser's session) termination is refused;
        // the fence still holds for every new transaction, so warn instead of failing.
        Err(e) if sqlstate(&e) == Some("42501") => {
            ctx.log.warn(&format!(
                "could not terminate all client sessions on `{}` ({e}); sessions already open keep their current transaction",
                conn.name
            ));
        }
        Err(e) => return Err(sql_error(conn.name, "terminating client sessions", &e)),
    }
    out.fenced = Some(true);
    Ok(out)
}

/// Undoes `fence`: resets the setting and reloads. An unreachable server is only an error when
/// this run fenced it (the reset must not be skipped); otherwise there is nothing to undo.
///
/// With `standby` (the server a failover promotes after the fence): not undone once that
/// standby is a primary. A run that failed after its promotion (a DNS change, a config push)
/// used to unfence the old primary beside the promoted one: two writable primaries, writes
/// accepted on both (the same ids given twice). It fails instead, saying why — the run's
/// message then names the compensation that failed — and the old primary stays fenced.
pub(crate) fn compensate(ctx: &Ctx, input: &DatabaseInput, clock: &dyn Clock) -> Result<(), Error> {
    if let Some(standby) = input.standby.as_deref() {
        let other = Conn::new(ctx, standby);
        match other.try_query(SQL_PROBE, &[]) {
            Ok(rows)
                if crate::pg::rows(&rows)
                    .next()
                    .and_then(|r| r.bool("in_recovery"))
                    == Some(false) =>
            {
                return Err(Error::fatal(format!(
                    "`{}` stays fenced: `{standby}` was promoted since, and unfencing would make two writable primaries; rebuild `{}` as a standby of `{standby}` (or fence `{standby}` and unfence `{}` by hand)",
                    input.connection, input.connection, input.connection
                )));
            }
            Ok(_) => {}
            Err(e) => ctx.log.warn(&format!(
                "cannot tell whether `{standby}` was promoted ({e}); unfencing `{}` as asked",
                input.connection
            )),
        }
    }
    let conn = Conn::new(ctx, &input.connection);
    let key = kv_key(conn.name);
    let fenced_by_us = ctx.kv().get_json::<Fenced>(&key)?.is_some_and(|f| f.fenced);
    match conn.try_query(SQL_PROBE, &[]) {
        Ok(_) => {}
        Err(e) if is_unreachable(&e) && !fenced_by_us => {
            ctx.log.info(&format!(
                "`{}` is unreachable and was not fenced by this run; nothing to undo",
                conn.name
            ));
            return Ok(());
        }
        Err(e) => {
            return Err(sql_error(
                conn.name,
                "reaching the fenced server to unfence it",
                &e,
            ));
        }
    }
    let mut changes = Vec::new();
    conn.change(
        &mut changes,
        "resetting default_transaction_read_only",
        SQL_UNFENCE,
        SQL_UNFENCE,
    )
    .map_err(|e| privilege_hint(e, "ALTER SYSTEM"))?;
    if ctx.is_plan() {
        return Ok(());
    }
    conn.query("reloading the configuration", SQL_RELOAD, &[])
        .map_err(|e| privilege_hint(e, "pg_reload_conf()"))?;
    let read_only = wait_for_setting(conn, clock, false)?;
    if read_only {
        ctx.log.warn(&format!(
            "`{}` still defaults to read-only after the reset: postgresql.conf itself sets default_transaction_read_only",
            conn.name
        ));
    }
    ctx.kv().delete(&key);
    ctx.log.info(&format!("unfenced `{}`", conn.name));
    Ok(())
}

/// Polls our own session's view of the setting until it equals `want` or `SETTLE_MS` passes;
/// returns the last value seen.
fn wait_for_setting(conn: Conn<'_>, clock: &dyn Clock, want: bool) -> Result<bool, Error> {
    let deadline = clock.now_unix_ms().saturating_add(SETTLE_MS);
    loop {
        let r = conn.query("reading default_transaction_read_only", SQL_SETTING, &[])?;
        let on = first(&r, conn.name, "reading default_transaction_read_only")?
            .bool("read_only")
            .unwrap_or(false);
        if on == want || clock.now_unix_ms() >= deadline {
            return Ok(on);
        }
        clock.sleep_ms(SETTLE_POLL_MS);
    }
}

fn privilege_hint(e: Error, what: &str) -> Error {
    if e.message().contains("permission denied") {
        Error::fatal(format!(
            "{}; {what} needs superuser, or on PostgreSQL 15: GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only and EXECUTE ON FUNCTION pg_reload_conf() to the connection's role",
            e.message()
        ))
    } else {
        e
    }
}
