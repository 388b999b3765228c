//! Physical streaming replication: status, fence, promote with a real RPO gap, write probe,
//! compensation, plan mode, and an unreachable old primary.

use std::sync::Arc;
use std::time::Duration;

use meridian_families::database::{ReplicationKind, Role};
use meridian_sdk::ErrorKind;
use serde_json::json;

use crate::cluster::{Cluster, free_port};
use crate::host::PgHost;
use crate::{act, compensate};

fn pair() -> (Cluster, Cluster) {
    let eu = Cluster::primary("eu");
    eu.sql("CREATE TABLE gw_config (id int PRIMARY KEY, v text); INSERT INTO gw_config VALUES (1, 'one');");
    let us = Cluster::standby(&eu, "us", "us_slot");
    us.wait_for(
        "SELECT count(*) FROM gw_config",
        "1",
        Duration::from_secs(30),
    );
    (eu, us)
}

fn host(eu: &Cluster, us: &Cluster) -> Arc<PgHost> {
    Arc::new(PgHost::new(&[("eu", eu.dsn()), ("us", us.dsn())]))
}

#[test]
fn failover_fence_promote_probe_and_unfence() {
    if !crate::cluster::available() {
        return;
    }
    let (eu, us) = pair();
    let h = host(&eu, &us);

    // Status of both sides while replication is healthy.
    let st = act(
        &h,
        "status-eu",
        json!({"action": "status", "connection": "eu", "min_replicas": 1}),
    )
    .unwrap();
    assert_eq!(st.role, Some(Role::Primary));
    assert_eq!(st.timeline, Some(1));
    let r = st
        .replicas
        .iter()
        .find(|r| r.slot.as_deref() == Some("us_slot"))
        .expect("the standby as a replica");
    assert_eq!(
        (r.kind, r.state.as_str()),
        (ReplicationKind::Physical, "streaming")
    );
    let slot = st
        .slots
        .iter()
        .find(|s| s.name == "us_slot")
        .expect("the standby's slot");
    assert!(slot.active, "{slot:?}");
    assert!(
        slot.lag_bytes.is_none() && slot.retained_bytes.is_some(),
        "an active physical slot reports retained WAL, its lag is the replica's: {slot:?}"
    );
    assert_eq!(st.healthy, Some(true), "{:?}", st.problems);
    eprintln!("primary status: {}", serde_json::to_string(&st).unwrap());

    let st = act(
        &h,
        "status-us",
        json!({"action": "status", "connection": "us", "primary": "eu", "max_lag_bytes": 0, "wait_timeout_ms": 20_000}),
    )
    .unwrap();
    assert_eq!(st.role, Some(Role::Standby));
    assert_eq!(st.lag_bytes, Some(0));
    assert_eq!(
        st.wal_receiver.as_ref().map(|w| w.status.as_str()),
        Some("streaming")
    );
    assert_eq!(st.healthy, Some(true), "{:?}", st.problems);

    // Cut the standby off (as a network partition would), then write on the primary: the
    // standby misses that WAL, which is the RPO the promotion must report.
    us.sql(&format!(
        "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={} user=postgres'",
        free_port()
    ));
    us.sql("SELECT pg_reload_conf()");
    us.wait_for(
        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        "0",
        Duration::from_secs(30),
    );
    eu.sql("INSERT INTO gw_config SELECT g, repeat('x', 100) FROM generate_series(2, 200) g");
    let st = act(
        &h,
        "status-us-2",
        json!({"action": "status", "connection": "us", "primary": "eu", "max_lag_bytes": 0}),
    );
    let e = st.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(
        e.message().contains("above max_lag_bytes 0"),
        "{}",
        e.message()
    );

    // Fence the old primary: new sessions are read-only, the probe is refused.
    let f = act(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();
    assert_eq!(
        (f.fenced, f.reachable, f.read_only),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(
        eu.value("SHOW default_transaction_read_only").as_deref(),
        Some("on")
    );
    let e = act(
        &h,
        "probe-eu",
        json!({"action": "verify-writable", "connection": "eu"}),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.message().contains("refuses writes"), "{}", e.message());
    // Fencing twice is harmless.
    let f = act(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();
    assert_eq!(f.fenced, Some(true));

    // Promote the standby; the old primary is reachable, so the RPO is measured.
    let args = json!({"action": "promote", "connection": "us", "primary": "eu", "wait_timeout_ms": 60_000});
    let p = act(&h, "promote", args.clone()).unwrap();
    eprintln!("promote output: {}", serde_json::to_string(&p).unwrap());
    assert_eq!(
        (p.promoted, p.already_primary, p.in_recovery),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(p.timeline, Some(2), "a promotion starts a new timeline");
    let rpo = p.rpo_bytes.expect("rpo measured");
    assert!(
        rpo > 10_000,
        "200 rows of 100 bytes were not replicated, rpo_bytes = {rpo}"
    );
    assert!(
        p.replayed_lsn.is_some() && p.old_primary_lsn.is_some() && p.lsn.is_some(),
        "{p:?}"
    );
    assert_eq!(us.value("SELECT pg_is_in_recovery()").as_deref(), Some("f"));
    assert_eq!(
        us.value("SELECT count(*) FROM gw_config").as_deref(),
        Some("1")
    );
    // A retry in the same run reports the same promotion; another run sees a primary.
    assert_eq!(act(&h, "promote", args.clone()).unwrap(), p);
    let fresh = host(&eu, &us);
    let again = act(&fresh, "promote", args).unwrap();
    assert_eq!(
        (again.promoted, again.already_primary),
        (Some(false), Some(true))
    );
    assert_eq!(again.timeline, Some(2));

    // The new primary takes writes; the probe row is keyed by the idempotency key.
    let w = act(
        &h,
        "probe-us",
        json!({"action": "verify-writable", "connection": "us"}),
    )
    .unwrap();
    assert_eq!(w.writable, Some(true));
    assert_eq!(w.probe_id.as_deref(), Some("test-run/probe-us"));
    let w2 = act(
        &h,
        "probe-us",
        json!({"action": "verify-writable", "connection": "us"}),
    )
    .unwrap();
    assert_eq!(w2.probe_id, w.probe_id);
    assert_eq!(
        us.value("SELECT count(*) FROM meridian_probe").as_deref(),
        Some("1")
    );
    let st = act(
        &h,
        "status-new",
        json!({"action": "status", "connection": "us"}),
    )
    .unwrap();
    assert_eq!((st.role, st.timeline), (Some(Role::Primary), Some(2)));

    // Told which standby the failover promotes, compensation does not unfence the old primary
    // beside the promoted one (two writable primaries): it fails saying so, eu stays fenced.
    let e = compensate(
        &h,
        "fence",
        json!({"action": "fence", "connection": "eu", "standby": "us"}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`eu` stays fenced: `us` was promoted"),
        "{e}"
    );
    assert_eq!(
        eu.value("SHOW default_transaction_read_only").as_deref(),
        Some("on")
    );

    // Without it (by hand, knowing what it does), compensation unfences the old primary.
    compensate(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();
    assert_eq!(
        eu.value("SHOW default_transaction_read_only").as_deref(),
        Some("off")
    );
    let w = act(
        &h,
        "probe-eu-2",
        json!({"action": "verify-writable", "connection": "eu"}),
    )
    .unwrap();
    assert_eq!(w.writable, Some(true));
}

#[test]
fn plan_mode_changes_nothing() {
    if !crate::cluster::available() {
        return;
    }
    let (eu, us) = pair();
    let h = Arc::new(PgHost::planning(&[("eu", eu.dsn()), ("us", us.dsn())]));

    let f = act(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();
    assert!(f.planned);
    assert_eq!(f.fenced, Some(false));
    assert!(
        f.changes[0].contains("ALTER SYSTEM SET default_transaction_read_only = on"),
        "{:?}",
        f.changes
    );
    assert_eq!(
        eu.value("SHOW default_transaction_read_only").as_deref(),
        Some("off")
    );
    assert_eq!(
        eu.value(
            "SELECT count(*) FROM pg_file_settings WHERE name = 'default_transaction_read_only'"
        )
        .as_deref(),
        Some("0"),
        "nothing was written to postgresql.auto.conf"
    );

    let p = act(
        &h,
        "promote",
        json!({"action": "promote", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert_eq!((p.planned, p.promoted), (true, Some(false)));
    assert!(
        p.rpo_bytes.is_some(),
        "predicted from the reachable old primary"
    );
    assert_eq!(us.value("SELECT pg_is_in_recovery()").as_deref(), Some("t"));

    let w = act(
        &h,
        "probe",
        json!({"action": "verify-writable", "connection": "eu"}),
    )
    .unwrap();
    assert_eq!((w.planned, w.writable), (true, Some(true)));
    assert_eq!(
        eu.value("SELECT to_regclass('meridian_probe') IS NULL")
            .as_deref(),
        Some("t")
    );
    assert!(
        !h.planned().is_empty(),
        "the host recorded the refused statements as planned"
    );
}

#[test]
fn fencing_a_dead_primary_succeeds_and_promote_reports_no_rpo() {
    if !crate::cluster::available() {
        return;
    }
    let (mut eu, us) = pair();
    let h = host(&eu, &us);
    eu.kill();
    let f = act(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();
    assert_eq!((f.fenced, f.reachable), (Some(false), Some(false)));
    // Nothing to undo for a server this run never reached.
    compensate(&h, "fence", json!({"action": "fence", "connection": "eu"})).unwrap();

    let st = act(
        &h,
        "status",
        json!({"action": "status", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert_eq!(st.healthy, Some(false));
    assert!(
        st.problems
            .iter()
            .any(|p| p.contains("primary `eu` is unreachable")),
        "{:?}",
        st.problems
    );

    let p = act(
        &h,
        "promote",
        json!({"action": "promote", "connection": "us", "primary": "eu"}),
    )
    .unwrap();
    assert_eq!(
        (p.promoted, p.rpo_bytes, p.timeline),
        (Some(true), None, Some(2))
    );
    let w = act(
        &h,
        "probe",
        json!({"action": "verify-writable", "connection": "us"}),
    )
    .unwrap();
    assert_eq!(w.writable, Some(true));
}

/// Lag is measured while a write load runs on the primary (a separate `psql` session inserting
/// ~1 MB per statement), and drains to zero once the load stops.
#[test]
fn lag_is_measured_under_a_running_write_load() {
    if !crate::cluster::available() {
        return;
    }
    let (eu, us) = pair();
    let h = host(&eu, &us);
    eu.sql("CREATE TABLE load (id bigserial PRIMARY KEY, v text)");
    let dsn = eu.dsn();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut statements = 0u32;
            // Bounded: at most 300 statements or until told to stop.
            while statements < 300 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ok = std::process::Command::new("psql")
                    .args([
                        dsn.as_str(),
                        "-qAtc",
                        "INSERT INTO load (v) SELECT repeat(md5(g::text), 32) FROM generate_series(1, 1000) g",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "the write load failed");
                statements += 1;
            }
            statements
        })
    };
    let mut samples = Vec::new();
    for i in 0..20 {
        let st = act(
            &h,
            &format!("status-under-load-{i}"),
            json!({"action": "status", "connection": "us", "primary": "eu"}),
        )
        .unwrap();
        assert_eq!(st.role, Some(Role::Standby));
        assert_eq!(
            st.wal_receiver.as_ref().map(|w| w.status.as_str()),
            Some("streaming"),
            "replication keeps streaming under load"
        );
        samples.push(
            st.lag_bytes
                .expect("lag in bytes is measured against the primary"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statements = writer.join().unwrap();
    assert!(statements > 0);
    eprintln!("lag samples under load (bytes): {samples:?} over {statements} statements");
    // Once the load stops the standby catches up: max_lag_bytes 0 is met within the wait.
    let st = act(
        &h,
        "status-after-load",
        json!({"action": "status", "connection": "us", "primary": "eu", "max_lag_bytes": 0, "wait_timeout_ms": 30_000}),
    )
    .unwrap();
    assert_eq!(st.lag_bytes, Some(0));
    assert_eq!(
        us.value("SELECT count(*) > 0 FROM load").as_deref(),
        Some("t")
    );
}
