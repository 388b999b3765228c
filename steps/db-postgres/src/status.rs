//! `status`: role, WAL position, replicas, slots, subscriptions, lag and health (domain.md §6).
//!
//! What `lag_bytes` measures depends on the role:
//! - primary: the largest of each replica's `pg_current_wal_lsn() - replay_lsn`, each logical
//!   slot's distance to its `confirmed_flush_lsn` and each inactive physical slot's distance to
//!   its `restart_lsn`: bytes a consumer has not applied yet;
//! - standby: the primary's current LSN minus the standby's replay LSN when `primary` is given
//!   and reachable; otherwise only what it received but has not replayed yet;
//! - subscriber: the publisher's current LSN minus the subscription's `latest_end_lsn` when
//!   `primary` names the publisher.
//!
//! `lag_seconds` is the largest `replay_lag` on a primary; on a standby it is the replay delay
//! (`now() - pg_last_xact_replay_timestamp()`) but 0 when nothing is left to replay, because
//! that delay keeps growing while the primary is idle.
//!
//! With `max_lag_bytes`, a lag above it is a retryable error (lag is transient, so a `retry:`
//! policy turns the step into "wait until caught up"); an unknown lag (a primary without
//! replicas, positions not reported yet) does not fail the check, but `min_replicas` can.
//!
//! Cost: 3–5 short catalog queries on the target, one on `primary` when given.

use meridian_families::Clock;
use meridian_families::database::{
    DatabaseAction, DatabaseInput, DatabaseOutput, ReplicaInfo, ReplicationKind, Role, SlotInfo,
    SubscriptionInfo, WalReceiverInfo,
};
use meridian_sdk::{Ctx, Error};

use crate::VENDOR;
use crate::pg::{Conn, Lsn, first, is_unreachable, rows, sql_error, timeline_of_walfile};

pub(crate) const SQL_SERVER: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     current_setting('default_transaction_read_only') AS read_only, \
     current_setting('server_version_num')::int AS version_num";

pub(crate) const SQL_PRIMARY_LSN: &str =
    "SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS walfile";

pub(crate) const SQL_REPLICAS: &str = "SELECT r.application_name::text AS name, host(r.client_addr) AS client_addr, \
     r.state::text AS state, r.sync_state::text AS sync_state, s.slot_name::text AS slot, s.slot_type::text AS slot_type, \
     r.sent_lsn::text AS sent_lsn, r.replay_lsn::text AS replay_lsn, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), COALESCE(r.replay_lsn, r.flush_lsn, r.write_lsn, r.sent_lsn))::bigint AS lag_bytes, \
     EXTRACT(EPOCH FROM r.write_lag)::float8 AS write_lag, EXTRACT(EPOCH FROM r.flush_lag)::float8 AS flush_lag, \
     EXTRACT(EPOCH FROM r.replay_lag)::float8 AS replay_lag \
     FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid \
     ORDER BY r.application_name, r.pid";

pub(crate) const SQL_SLOTS: &str = "SELECT slot_name::text AS name, slot_type::text AS slot_type, active, \
     COALESCE(confirmed_flush_lsn, restart_lsn)::text AS lsn, \
     CASE WHEN slot_type = 'logical' THEN pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) \
          WHEN NOT active THEN pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END::bigint AS lag_bytes, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes, \
     wal_status::text AS wal_status \
     FROM pg_replication_slots ORDER BY slot_name";

pub(crate) const SQL_STANDBY: &str = "SELECT pg_last_wal_receive_lsn()::text AS receive_lsn, \
     pg_last_wal_replay_lsn()::text AS replay_lsn, \
     EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_delay";

pub(crate) const SQL_WAL_RECEIVER: &str = "SELECT status::text AS status, sender_host::text AS sender_host, \
     sender_port::int AS sender_port, slot_name::text AS slot, flushed_lsn::text AS flushed_lsn \
     FROM pg_stat_wal_receiver";

pub(crate) const SQL_SUBSCRIPTIONS: &str = "SELECT s.subname::text AS name, s.subenabled AS enabled, \
     st.pid IS NOT NULL AS worker_running, st.received_lsn::text AS received_lsn, \
     st.latest_end_lsn::text AS latest_end_lsn, \
     EXTRACT(EPOCH FROM now() - st.last_msg_receipt_time)::float8 AS last_msg_age, \
     (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')::bigint AS not_ready \
     FROM pg_subscription s LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL \
     WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     ORDER BY s.subname";

/// PostgreSQL 15 added per-subscription error counters.
pub(crate) const SQL_SUBSCRIPTION_STATS: &str = "SELECT subname::text AS name, apply_error_count::bigint AS apply_errors FROM pg_stat_subscription_stats";

/// The current WAL position of a primary/publisher; used from standbys and subscribers to
/// measure lag across servers. In recovery the server has no write position, hence NULL.
pub(crate) const SQL_REMOTE_LSN: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn";

/// Polls between lag checks when `wait_timeout_ms` is set.
const POLL_MS: u64 = 500;

/// Runs `status`; with `max_lag_bytes` and `wait_timeout_ms` it polls until the lag is within
/// bounds. A lag above `max_lag_bytes` is a retryable error: lag is transient, so a `retry:`
/// policy turns the step into "wait until caught up".
pub(crate) fn run(
    ctx: &Ctx,
    input: &DatabaseInput,
    clock: &dyn Clock,
) -> Result<DatabaseOutput, Error> {
    let deadline = clock
        .now_unix_ms()
        .saturating_add(input.wait_timeout_ms.unwrap_or(0));
    loop {
        let out = measure(ctx, input)?;
        if let (Some(want), Some(role)) = (input.expect_role, out.role)
            && want != role
        {
            return Err(Error::fatal(format!(
                "`{}` is a {}, not a {} (expect_role){}",
                input.connection,
                role_word(role),
                role_word(want),
                match (role, out.read_only) {
                    (Role::Primary, Some(true)) => {
                        ": a primary fenced read-only, an old primary — rebuild it as a standby first"
                    }
                    _ => "",
                }
            )));
        }
        let lagging = matches!(
            (input.max_lag_bytes, out.lag_bytes),
            (Some(max), Some(lag)) if lag > max
        );
        if !lagging {
            // In a plan the problems are reported, not failed on: a readiness check judges
            // them itself (its `replication` rule), where they say more than a failed plan.
            if input.require_healthy && !ctx.is_plan() && !out.problems.is_empty() {
                return Err(Error::retryable(format!(
                    "`{}` is not healthy (require_healthy): {}",
                    input.connection,
                    out.problems.join("; ")
                )));
            }
            return Ok(out);
        }
        let (Some(max), Some(lag)) = (input.max_lag_bytes, out.lag_bytes) else {
            return Ok(out);
        };
        if ctx.is_plan() || clock.now_unix_ms() >= deadline {
            let others: Vec<&str> = out
                .problems
                .iter()
                .map(String::as_str)
                .filter(|p| !p.starts_with("lag "))
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!("; also: {}", others.join("; "))
            };
            return Err(Error::retryable(format!(
                "replication lag on `{}` is {lag} bytes, above max_lag_bytes {max}{also}",
                input.connection
            )));
        }
        clock.sleep_ms(POLL_MS);
    }
}

fn role_word(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Standby => "standby",
    }
}

/// One measurement, without the wait.
pub(crate) fn measure(ctx: &Ctx, input: &DatabaseInput) -> Result<DatabaseOutput, Error> {
    let conn = Conn::new(ctx, &input.connection);
    let mut out = DatabaseOutput::new(VENDOR, DatabaseAction::Status, &input.connection);
    out.planned = ctx.is_plan();
    let server = conn.query("reading the server state", SQL_SERVER, &[])?;
    let server = first(&server, conn.name, "reading the server state")?;
    let in_recovery = server.bool("in_recovery").unwrap_or(false);
    let version = server.int("version_num").unwrap_or(0);
    out.in_recovery = Some(in_recovery);
    out.read_only = server.bool("read_only");
    let upstream = input
        .primary
        .as_deref()
        .map(|p| remote_lsn(ctx, p, &mut out.problems));
    let upstream = upstream.flatten();
    if in_recovery {
        standby(conn, upstream, &mut out)?;
    } else {
        primary(conn, input.min_replicas, &mut out)?;
        subscriptions(conn, version, upstream, &mut out)?;
    }
    out.lag_bytes = out
        .lag_bytes
        .into_iter()
        .chain(out.replicas.iter().filter_map(|r| r.lag_bytes))
        .chain(out.slots.iter().filter_map(|s| s.lag_bytes))
        .chain(out.subscriptions.iter().filter_map(|s| s.lag_bytes))
        .max();
    if let (Some(max), Some(lag)) = (input.max_lag_bytes, out.lag_bytes)
        && lag > max
    {
        out.problems
            .push(format!("lag {lag} bytes is above max_lag_bytes {max}"));
    }
    out.healthy = Some(out.problems.is_empty());
    Ok(out)
}

fn primary(conn: Conn<'_>, min_replicas: u32, out: &mut DatabaseOutput) -> Result<(), Error> {
    out.role = Some(Role::Primary);
    let lsn = conn.query("reading the WAL position", SQL_PRIMARY_LSN, &[])?;
    let lsn = first(&lsn, conn.name, "reading the WAL position")?;
    out.lsn = lsn.text("lsn");
    out.timeline = lsn.text("walfile").as_deref().and_then(timeline_of_walfile);

    let replicas = conn.query("reading pg_stat_replication", SQL_REPLICAS, &[])?;
    for r in rows(&replicas) {
        out.replicas.push(ReplicaInfo {
            name: r.text("name").unwrap_or_default(),
            kind: kind(r.text("slot_type").as_deref()),
            client_addr: r.text("client_addr"),
            state: r.text("state").unwrap_or_default(),
            sync_state: r.text("sync_state").unwrap_or_default(),
            slot: r.text("slot"),
            sent_lsn: r.text("sent_lsn"),
            replay_lsn: r.text("replay_lsn"),
            lag_bytes: r.uint("lag_bytes"),
            write_lag_seconds: r.float("write_lag"),
            flush_lag_seconds: r.float("flush_lag"),
            replay_lag_seconds: r.float("replay_lag"),
        });
    }
    for r in &out.replicas {
        if r.state != "streaming" {
            out.problems.push(format!(
                "replica `{}` is in state `{}`, not streaming",
                r.name, r.state
            ));
        }
    }
    let streaming = out
        .replicas
        .iter()
        .filter(|r| r.state == "streaming")
        .count();
    if streaming < min_replicas as usize {
        out.problems.push(format!(
            "{streaming} streaming replica(s), fewer than min_replicas {min_replicas}; check the standbys and their primary_conninfo"
        ));
    }

    let slots = conn.query("reading pg_replication_slots", SQL_SLOTS, &[])?;
    for s in rows(&slots) {
        out.slots.push(SlotInfo {
            name: s.text("name").unwrap_or_default(),
            kind: kind(s.text("slot_type").as_deref()),
            active: s.bool("active").unwrap_or(false),
            lsn: s.text("lsn"),
            lag_bytes: s.uint("lag_bytes"),
            retained_bytes: s.uint("retained_bytes"),
            wal_status: s.text("wal_status"),
        });
    }
    for s in &out.slots {
        if s.wal_status.as_deref() == Some("lost") {
            out.problems.push(format!(
                "slot `{}` lost WAL it needed: its consumer must be rebuilt (pg_basebackup / re-create the subscription)",
                s.name
            ));
        } else if !s.active {
            out.problems.push(format!(
                "slot `{}` is inactive and retains WAL ({} bytes); reconnect its consumer or drop it",
                s.name,
                s.retained_bytes.unwrap_or(0)
            ));
        }
    }
    out.lag_seconds = out
        .replicas
        .iter()
        .filter_map(|r| r.replay_lag_seconds)
        .reduce(f64::max);
    if out.lag_seconds.is_none()
        && !out.replicas.is_empty()
        && out.replicas.iter().all(|r| r.lag_bytes == Some(0))
    {
        out.lag_seconds = Some(0.0);
    }
    Ok(())
}

fn standby(
    conn: Conn<'_>,
    primary_lsn: Option<Lsn>,
    out: &mut DatabaseOutput,
) -> Result<(), Error> {
    out.role = Some(Role::Standby);
    let st = conn.query("reading the standby's WAL positions", SQL_STANDBY, &[])?;
    let st = first(&st, conn.name, "reading the standby's WAL positions")?;
    let receive = st.lsn("receive_lsn");
    let replay = st.lsn("replay_lsn");
    out.receive_lsn = st.text("receive_lsn");
    out.lsn = st.text("replay_lsn");
    out.replay_delay_seconds = st.float("replay_delay");

    let receiver = conn.query("reading pg_stat_wal_receiver", SQL_WAL_RECEIVER, &[])?;
    out.wal_receiver = rows(&receiver).next().map(|r| WalReceiverInfo {
        status: r.text("status").unwrap_or_default(),
        sender_host: r.text("sender_host"),
        sender_port: r.int("sender_port").and_then(|p| u16::try_from(p).ok()),
        slot: r.text("slot"),
        flushed_lsn: r.text("flushed_lsn"),
    });
    match &out.wal_receiver {
        None => out.problems.push(
            "not streaming: no WAL receiver runs (check primary_conninfo, the primary, and the standby's log)".to_owned(),
        ),
        Some(w) if w.status != "streaming" => {
            out.problems.push(format!("WAL receiver is `{}`, not streaming", w.status));
        }
        Some(_) => {}
    }

    let pending = match (receive, replay) {
        (Some(rc), Some(rp)) => Some(rc.bytes_after(rp)),
        _ => None,
    };
    out.lag_bytes = match (primary_lsn, replay) {
        (Some(p), Some(rp)) => Some(p.bytes_after(rp)),
        _ => pending,
    };
    out.lag_seconds = if out.lag_bytes == Some(0) {
        Some(0.0)
    } else {
        out.replay_delay_seconds
    };
    Ok(())
}

fn subscriptions(
    conn: Conn<'_>,
    version: i64,
    publisher_lsn: Option<Lsn>,
    out: &mut DatabaseOutput,
) -> Result<(), Error> {
    let subs = conn.query("reading pg_subscription", SQL_SUBSCRIPTIONS, &[])?;
    if subs.is_empty() {
        return Ok(());
    }
    let errors = if version >= 150_000 {
        conn.query(
            "reading pg_stat_subscription_stats",
            SQL_SUBSCRIPTION_STATS,
            &[],
        )?
    } else {
        Default::default()
    };
    for s in rows(&subs) {
        let name = s.text("name").unwrap_or_default();
        let latest = s.lsn("latest_end_lsn");
        out.subscriptions.push(SubscriptionInfo {
            enabled: s.bool("enabled").unwrap_or(false),
            worker_running: s.bool("worker_running").unwrap_or(false),
            received_lsn: s.text("received_lsn"),
            latest_end_lsn: s.text("latest_end_lsn"),
            last_msg_age_seconds: s.float("last_msg_age"),
            tables_not_ready: s.uint("not_ready").unwrap_or(0),
            apply_error_count: rows(&errors)
                .find(|e| e.text("name").as_deref() == Some(&name))
                .and_then(|e| e.uint("apply_errors")),
            lag_bytes: publisher_lsn.zip(latest).map(|(p, l)| p.bytes_after(l)),
            name,
        });
    }
    for s in &out.subscriptions {
        if !s.enabled {
            out.problems
                .push(format!("subscription `{}` is disabled", s.name));
        } else if !s.worker_running {
            out.problems.push(format!(
                "subscription `{}`: its apply worker is not running (check the subscriber's log for apply conflicts or an unreachable publisher)",
                s.name
            ));
        }
        if s.tables_not_ready > 0 {
            out.problems.push(format!(
                "subscription `{}`: {} table(s) still copying or syncing",
                s.name, s.tables_not_ready
            ));
        }
    }
    Ok(())
}

/// The current LSN of the primary/publisher `conn`, or `None` with a problem noted when it
/// cannot be had: unreachable, in recovery itself, or not granted.
fn remote_lsn(ctx: &Ctx, name: &str, problems: &mut Vec<String>) -> Option<Lsn> {
    match Conn::new(ctx, name).try_query(SQL_REMOTE_LSN, &[]) {
        Ok(r) => {
            let row = rows(&r).next()?;
            if row.bool("in_recovery") == Some(true) {
                problems.push(format!(
                    "primary `{name}` is itself in recovery; lag was measured locally only"
                ));
                return None;
            }
            row.lsn("lsn")
        }
        Err(e) if is_unreachable(&e) => {
            problems.push(format!(
                "primary `{name}` is unreachable ({e}); lag was measured locally only"
            ));
            None
        }
        Err(e) => {
            problems.push(
                sql_error(name, "reading the primary's WAL position", &e)
                    .message()
                    .to_owned(),
            );
            None
        }
    }
}

fn kind(slot_type: Option<&str>) -> ReplicationKind {
    match slot_type {
        Some("physical") => ReplicationKind::Physical,
        Some("logical") => ReplicationKind::Logical,
        _ => ReplicationKind::Unknown,
    }
}
