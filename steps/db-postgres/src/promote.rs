//! `promote`: turn the standby into the primary (domain.md §6.2) and measure the RPO.
//!
//! 1. A server not in recovery is already a primary: `{promoted: false, already_primary: true}`
//!    (or, when this run promoted it on an earlier attempt, that attempt's result). If
//!    `subscription` is given and the server is a logical subscriber, the subscription is
//!    disabled so the old publisher cannot overwrite the new primary.
//! 2. Before promoting, the old primary's WAL position is read when `primary` is given and
//!    reachable (fence it first so it stops moving); with `max_lag_bytes` the promotion is
//!    refused (retryable) while the standby is further behind than that.
//! 3. `SELECT pg_promote(wait => true, wait_seconds => N)`, then `pg_is_in_recovery()` is polled
//!    until false, bounded by `wait_timeout_ms`.
//! 4. Output: the new primary's LSN and timeline, the last replayed LSN, and
//!    `rpo_bytes = old primary LSN - replayed LSN` (WAL the new primary never received).
//!
//! Privileges: superuser or `GRANT EXECUTE ON FUNCTION pg_promote` to the connection's role.

use meridian_families::Clock;
use meridian_families::database::{
    DEFAULT_PROMOTE_WAIT_MS, DatabaseAction, DatabaseInput, DatabaseOutput, Role,
};
use meridian_sdk::sql::{SqlError, Value};
use meridian_sdk::{Ctx, Error};

use crate::VENDOR;
use crate::pg::{
    Conn, Lsn, first, is_unreachable, quote_ident, rows, sql_error, sqlstate, timeline_of_walfile,
};
use crate::status::SQL_REMOTE_LSN;

pub(crate) const SQL_RECOVERY: &str = "SELECT pg_is_in_recovery() AS in_recovery";
pub(crate) const SQL_READ_ONLY: &str =
    "SELECT current_setting('default_transaction_read_only')::bool AS read_only";
pub(crate) const SQL_STANDBY_LSNS: &str = "SELECT pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn";
/// `pg_promote` with its wait; the number is inlined because a bind parameter's type would have
/// to match `integer` exactly, and hosts bind integers as `bigint`.
pub(crate) fn sql_promote(wait_s: u64) -> String {
    format!("SELECT pg_promote(wait => true, wait_seconds => {wait_s}) AS promoted")
}
pub(crate) const SQL_AFTER: &str = "SELECT pg_current_wal_lsn()::text AS lsn, \
     pg_walfile_name(pg_current_wal_lsn()) AS walfile, pg_last_wal_replay_lsn()::text AS replayed_lsn";
pub(crate) const SQL_ENABLED_SUBSCRIPTION: &str = "SELECT subenabled AS enabled FROM pg_subscription \
     WHERE subname = $1::text AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";

const POLL_MS: u64 = 250;

fn kv_key(connection: &str) -> String {
    format!("db-postgres/promoted/{connection}")
}

/// Written just before `pg_promote`: what the attempt measured, so an attempt after a kill
/// between the promotion and its result still reports the RPO instead of "already primary".
fn pending_key(connection: &str) -> String {
    format!("db-postgres/promoting/{connection}")
}

/// Default `catch_up_ms`.
const DEFAULT_CATCH_UP_MS: u64 = 5_000;
pub(crate) const SQL_STREAMING: &str =
    "SELECT count(*) AS streaming FROM pg_stat_wal_receiver WHERE status = 'streaming'";

/// Runs `promote`.
pub(crate) fn run(
    ctx: &Ctx,
    input: &DatabaseInput,
    clock: &dyn Clock,
) -> Result<DatabaseOutput, Error> {
    let conn = Conn::new(ctx, &input.connection);
    let mut out = DatabaseOutput::new(VENDOR, DatabaseAction::Promote, &input.connection);
    out.planned = ctx.is_plan();
    let wait_ms = input.wait_timeout_ms.unwrap_or(DEFAULT_PROMOTE_WAIT_MS);

    if !in_recovery(conn, "checking whether the server is a standby")? {
        if let Some(previous) = ctx.kv().get_json::<DatabaseOutput>(&kv_key(conn.name))? {
            ctx.log.info(&format!(
                "`{}` was promoted by an earlier attempt of this run",
                conn.name
            ));
            return Ok(previous);
        }
        if let Some(mut pending) = ctx
            .kv()
            .get_json::<DatabaseOutput>(&pending_key(conn.name))?
        {
            ctx.log.warn(&format!(
                "`{}` was promoted by an earlier attempt of this run that did not finish; reporting the RPO it measured before pg_promote",
                conn.name
            ));
            pending.promoted = Some(true);
            pending.already_primary = Some(false);
            pending.in_recovery = Some(false);
            pending.role = Some(Role::Primary);
            pending.resumed = Some(true);
            current_position(conn, &mut pending)?;
            ctx.kv().set_json(&kv_key(conn.name), &pending)?;
            return Ok(pending);
        }
        // A primary fenced read-only is an old primary, not a promoted standby: calling it
        // promoted moved clients to a server that refuses their writes.
        let fenced = conn.query("checking whether the server is fenced", SQL_READ_ONLY, &[])?;
        if first(&fenced, conn.name, "checking whether the server is fenced")?
            .bool("read_only")
            .unwrap_or(false)
        {
            return Err(Error::fatal(format!(
                "`{}` is a primary fenced read-only (default_transaction_read_only), not a standby to promote: it is an old primary; promote the region's standby, or unfence this one (`action: unfence`) if it is to take writes again",
                conn.name
            )));
        }
        out.promoted = Some(false);
        out.already_primary = Some(true);
        out.in_recovery = Some(false);
        out.role = Some(Role::Primary);
        current_position(conn, &mut out)?;
        if let Some(sub) = &input.subscription {
            out.subscription_disabled = Some(disable_subscription(conn, sub, &mut out.changes)?);
        }
        return Ok(out);
    }

    let old_primary = input
        .primary
        .as_deref()
        .and_then(|p| old_primary_lsn(ctx, p));
    out.old_primary_lsn = old_primary.map(|l| l.to_string());
    let catch_up = if ctx.is_plan() {
        0
    } else {
        input.catch_up_ms.unwrap_or(DEFAULT_CATCH_UP_MS)
    };
    // pg_promote replays everything received before it promotes, so the received position is
    // what the new primary will have.
    let received = match old_primary {
        Some(old) if catch_up > 0 => wait_caught_up(conn, old, catch_up, clock)?,
        _ => received_lsn(conn)?,
    };
    out.caught_up = old_primary.map(|old| received.is_some_and(|r| r >= old));
    if let (Some(max), Some(old), Some(have)) = (input.max_lag_bytes, old_primary, received) {
        let gap = old.bytes_after(have);
        if gap > max {
            return Err(Error::retryable(format!(
                "standby `{}` is {gap} bytes behind the old primary `{}` (max_lag_bytes {max}); wait for it to catch up, fence the old primary so it stops moving, or raise max_lag_bytes",
                conn.name,
                input.primary.as_deref().unwrap_or_default()
            )));
        }
    }

    let wait_s = wait_ms.div_ceil(1000).clamp(1, i32::MAX as u64);
    if ctx.is_plan() {
        // pg_promote would act even in a read-only transaction: only report the intent.
        out.changes.push(format!(
            "{}: SELECT pg_promote(wait => true, wait_seconds => {wait_s})",
            conn.name
        ));
        out.promoted = Some(false);
        out.in_recovery = Some(true);
        out.role = Some(Role::Standby);
        out.replayed_lsn = received.map(|l| l.to_string());
        out.rpo_bytes = old_primary.zip(received).map(|(o, r)| o.bytes_after(r));
        return Ok(out);
    }

    // What this attempt measured, kept in case the runner dies between pg_promote and the end.
    out.replayed_lsn = received.map(|l| l.to_string());
    out.rpo_bytes = old_primary.zip(received).map(|(o, r)| o.bytes_after(r));
    ctx.kv().set_json(&pending_key(conn.name), &out)?;

    let deadline = clock.now_unix_ms().saturating_add(wait_ms);
    match conn.try_query(&sql_promote(wait_s), &[]) {
        Ok(_) => {}
        // 55000: "recovery is not in progress": promoted meanwhile (another attempt, an operator).
        Err(e) if sqlstate(&e) == Some("55000") => {}
        // The host's statement timeout cut the wait short; the promotion goes on regardless.
        Err(SqlError::Timeout) => {}
        Err(e) if sqlstate(&e) == Some("57014") => {}
        Err(e) if sqlstate(&e) == Some("42501") => {
            return Err(Error::fatal(format!(
                "promoting `{}`: permission denied ({e}); the connection's role needs superuser or GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer)",
                conn.name
            )));
        }
        Err(e) => return Err(sql_error(conn.name, "promoting the standby", &e)),
    }
    out.changes.push(format!(
        "{}: SELECT pg_promote(wait => true, wait_seconds => {wait_s})",
        conn.name
    ));
    while in_recovery(conn, "checking the promotion")? {
        if clock.now_unix_ms() >= deadline {
            return Err(Error::retryable(format!(
                "`{}` is still in recovery {} ms after pg_promote(); check the standby's log (promotion waits for the remaining WAL to replay)",
                conn.name, wait_ms
            )));
        }
        clock.sleep_ms(POLL_MS);
    }
    out.promoted_at_ms = Some(clock.now_unix_ms());
    out.promoted = Some(true);
    out.already_primary = Some(false);
    out.in_recovery = Some(false);
    out.role = Some(Role::Primary);
    let replayed = current_position(conn, &mut out)?.or(received);
    out.replayed_lsn = replayed.map(|l| l.to_string());
    out.rpo_bytes = old_primary.zip(replayed).map(|(o, r)| o.bytes_after(r));
    ctx.log.info(&format!(
        "promoted `{}` at {}; rpo_bytes {}",
        conn.name,
        out.lsn.as_deref().unwrap_or("?"),
        out.rpo_bytes.map_or_else(
            || "unknown (old primary not reachable)".to_owned(),
            |b| b.to_string()
        )
    ));
    // A retry after a lost reply must report this promotion, not "already primary".
    ctx.kv().set_json(&kv_key(conn.name), &out)?;
    Ok(out)
}

/// The standby's received (or replayed, if later) WAL position.
fn received_lsn(conn: Conn<'_>) -> Result<Option<Lsn>, Error> {
    let what = "reading the standby's WAL positions";
    let r = conn.query(what, SQL_STANDBY_LSNS, &[])?;
    let r = first(&r, conn.name, what)?;
    Ok(r.lsn("receive_lsn").max(r.lsn("replay_lsn")))
}

/// Waits, up to `limit_ms`, until the standby has received `target` (the old primary's
/// position); returns the received position. Gives up at once when the standby does not stream.
fn wait_caught_up(
    conn: Conn<'_>,
    target: Lsn,
    limit_ms: u64,
    clock: &dyn Clock,
) -> Result<Option<Lsn>, Error> {
    let deadline = clock.now_unix_ms().saturating_add(limit_ms);
    loop {
        let received = received_lsn(conn)?;
        if received.is_some_and(|r| r >= target) {
            return Ok(received);
        }
        let what = "checking the standby's WAL receiver";
        let r = conn.query(what, SQL_STREAMING, &[])?;
        let streaming = first(&r, conn.name, what)?.int("streaming").unwrap_or(0) > 0;
        if !streaming || clock.now_unix_ms() >= deadline {
            conn.ctx.log.warn(&format!(
                "`{}` has not received all of the old primary's WAL ({}); promoting anyway: {}",
                conn.name,
                match received {
                    Some(r) => format!("{} bytes behind", target.bytes_after(r)),
                    None => "position unknown".to_owned(),
                },
                if streaming {
                    "catch_up_ms passed"
                } else {
                    "its WAL receiver is not streaming"
                }
            ));
            return Ok(received);
        }
        clock.sleep_ms(50);
    }
}

fn in_recovery(conn: Conn<'_>, what: &str) -> Result<bool, Error> {
    let r = conn.query(what, SQL_RECOVERY, &[])?;
    Ok(first(&r, conn.name, what)?
        .bool("in_recovery")
        .unwrap_or(false))
}

/// Fills `lsn` and `timeline` of a primary; returns the last replayed LSN (kept by PostgreSQL
/// after a promotion; NULL on a server that never was a standby).
fn current_position(conn: Conn<'_>, out: &mut DatabaseOutput) -> Result<Option<Lsn>, Error> {
    let r = conn.query("reading the new primary's WAL position", SQL_AFTER, &[])?;
    let r = first(&r, conn.name, "reading the new primary's WAL position")?;
    out.lsn = r.text("lsn");
    out.timeline = r.text("walfile").as_deref().and_then(timeline_of_walfile);
    Ok(r.lsn("replayed_lsn"))
}

/// The old primary's current WAL position, or `None` (logged) when it is unreachable, in
/// recovery, or refuses.
fn old_primary_lsn(ctx: &Ctx, name: &str) -> Option<Lsn> {
    match Conn::new(ctx, name).try_query(SQL_REMOTE_LSN, &[]) {
        Ok(r) => {
            let row = rows(&r).next()?;
            if row.bool("in_recovery") == Some(true) {
                ctx.log.warn(&format!(
                    "old primary `{name}` is in recovery; RPO not measured"
                ));
                return None;
            }
            row.lsn("lsn")
        }
        Err(e) => {
            let why = if is_unreachable(&e) {
                "unreachable"
            } else {
                "not readable"
            };
            ctx.log.warn(&format!(
                "old primary `{name}` is {why} ({e}); RPO not measured"
            ));
            None
        }
    }
}

/// Disables subscription `sub` when it exists and is enabled; returns whether it is disabled now.
fn disable_subscription(
    conn: Conn<'_>,
    sub: &str,
    changes: &mut Vec<String>,
) -> Result<bool, Error> {
    let r = conn.query(
        "looking up the subscription",
        SQL_ENABLED_SUBSCRIPTION,
        &[Value::from(sub)],
    )?;
    match rows(&r).next().and_then(|row| row.bool("enabled")) {
        None => {
            conn.ctx.log.info(&format!(
                "`{}` has no subscription `{sub}`; nothing to disable",
                conn.name
            ));
            Ok(false)
        }
        Some(false) => Ok(true),
        Some(true) => {
            let sql = format!("ALTER SUBSCRIPTION {} DISABLE", quote_ident(sub));
            conn.change(changes, "disabling the subscription", &sql, &sql)?;
            Ok(true)
        }
    }
}
