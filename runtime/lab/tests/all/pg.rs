//! Real PostgreSQL 15: primary + physical standby, replication, stop/start, promote, clean-up.

use std::time::Duration;

use meridian_lab::{LabError, PgCluster, StopMode, free_port};

use crate::support::{eventually, pid_alive, pids_mentioning, started};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn primary_and_standby_replicate_then_promote() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut primary) = started(
        "PostgreSQL",
        PgCluster::start_primary(&tmp.path().join("eu"), free_port()),
    ) else {
        return;
    };
    assert!(primary.is_running());
    assert!(!primary.is_in_recovery().unwrap());
    assert_eq!(
        primary.dsn("api7"),
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=api7",
            primary.port
        )
    );
    let settings = primary
        .psql("SELECT current_setting('wal_level') || ',' || current_setting('wal_log_hints') || ',' || current_setting('listen_addresses');")
        .unwrap();
    assert_eq!(settings, "logical,on,127.0.0.1");

    primary.psql("CREATE DATABASE api7;").unwrap();
    primary
        .psql_db(
            "api7",
            "CREATE TABLE cfg (id int primary key, v text); INSERT INTO cfg VALUES (1, 'one');",
        )
        .unwrap();

    let mut standby =
        PgCluster::start_standby(&primary, &tmp.path().join("us"), free_port(), "us_slot").unwrap();
    assert!(standby.is_in_recovery().unwrap());
    // The base backup carries the existing row; a new one arrives by streaming.
    assert_eq!(
        standby
            .psql_db("api7", "SELECT v FROM cfg WHERE id = 1;")
            .unwrap(),
        "one"
    );
    primary
        .psql_db("api7", "INSERT INTO cfg VALUES (2, 'two');")
        .unwrap();
    standby
        .wait_for("api7", "SELECT v FROM cfg WHERE id = 2;", "two", WAIT)
        .unwrap();
    let slot = primary
        .psql("SELECT slot_name || ',' || active FROM pg_replication_slots;")
        .unwrap();
    assert_eq!(slot, "us_slot,true");
    let write_on_standby = standby.psql_db("api7", "INSERT INTO cfg VALUES (3, 'x');");
    assert!(
        matches!(&write_on_standby, Err(LabError::Command { stderr, .. }) if stderr.contains("read-only")),
        "{write_on_standby:?}"
    );

    // Disaster: the primary crashes; the standby is promoted and takes writes.
    primary.stop(StopMode::Immediate);
    assert!(!primary.is_running());
    standby.promote().unwrap();
    assert!(!standby.is_in_recovery().unwrap());
    standby
        .psql_db("api7", "INSERT INTO cfg VALUES (3, 'three');")
        .unwrap();
    assert_eq!(
        standby
            .psql_db("api7", "SELECT count(*) FROM cfg;")
            .unwrap(),
        "3"
    );

    // The crashed former primary comes back as-is (crash recovery), still a primary with 2 rows.
    primary.start().unwrap();
    assert!(!primary.is_in_recovery().unwrap());
    assert_eq!(
        primary
            .psql_db("api7", "SELECT count(*) FROM cfg;")
            .unwrap(),
        "2"
    );
    standby.stop(StopMode::Fast);
    standby.start().unwrap();
    assert_eq!(
        standby
            .psql_db("api7", "SELECT count(*) FROM cfg;")
            .unwrap(),
        "3"
    );
}

#[test]
fn standby_rebuilt_from_new_primary_reuses_slot_name() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(primary) = started(
        "PostgreSQL",
        PgCluster::start_primary(&tmp.path().join("a"), free_port()),
    ) else {
        return;
    };
    primary
        .psql("CREATE TABLE t (x int); INSERT INTO t VALUES (7);")
        .unwrap();
    let dir = tmp.path().join("b");
    let port = free_port();
    let first = PgCluster::start_standby(&primary, &dir, port, "b_slot").unwrap();
    drop(first);
    // Same directory, same slot (now inactive): rebuilt from scratch without a slot conflict.
    let second = PgCluster::start_standby(&primary, &dir, port, "b_slot").unwrap();
    assert_eq!(second.psql("SELECT x FROM t;").unwrap(), "7");
    let bad = PgCluster::start_standby(&primary, &tmp.path().join("c"), free_port(), "Bad-Slot");
    assert!(matches!(bad, Err(LabError::Invalid(_))), "{bad:?}");
}

#[test]
fn drop_leaves_no_process_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gone");
    let Some(mut pg) = started("PostgreSQL", PgCluster::start_primary(&dir, free_port())) else {
        return;
    };
    let pid = pg.pid().unwrap();
    // Open a second backend through a slow query so there is more than the postmaster to clean.
    pg.psql("SELECT 1;").unwrap();
    let needle = pg.data_dir.to_string_lossy().into_owned();
    assert!(!pids_mentioning(&needle).is_empty());
    pg.kill();
    assert!(!pg.is_running());
    assert!(eventually(10, || !pid_alive(pid)));
    pg.start().unwrap();
    let pid2 = pg.pid().unwrap();
    drop(pg);
    assert!(!pid_alive(pid2));
    assert!(eventually(10, || pids_mentioning(&needle).is_empty()));
}

#[test]
fn a_port_in_use_fails_with_the_log_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(_first) = started(
        "PostgreSQL",
        PgCluster::start_primary(&tmp.path().join("one"), port),
    ) else {
        return;
    };
    let second = PgCluster::start_primary(&tmp.path().join("two"), port);
    match second {
        Err(LabError::Exited { tail, what, .. }) => {
            assert!(what.contains(&port.to_string()), "{what}");
            assert!(tail.contains("Address already in use"), "{tail}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}
