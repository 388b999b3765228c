//! Logical replication between two primaries: setup (and re-run), rows flowing, status on both
//! sides, adding a table, clear refusals, plan mode, and promoting the subscriber.

use std::sync::Arc;
use std::time::Duration;

use meridian_families::database::ReplicationKind;
use meridian_sdk::ErrorKind;
use serde_json::json;

use crate::act;
use crate::cluster::Cluster;
use crate::host::PgHost;

const SCHEMA: &str = "CREATE TABLE gw_config (id int PRIMARY KEY, v text); CREATE TABLE routes (id int PRIMARY KEY, uri text);";

fn setup_args(eu: &Cluster, tables: serde_json::Value) -> serde_json::Value {
    let mut args = json!({"action": "setup-logical", "connection": "eu", "standby": "us", "publication": "api7_pub",
                          "subscription": "api7_sub", "publisher_dsn_for_subscriber": eu.dsn()});
    if !tables.is_null() {
        args["tables"] = tables;
    }
    args
}

#[test]
fn setup_status_extend_and_promote_the_subscriber() {
    if !crate::cluster::available() {
        return;
    }
    let eu = Cluster::primary("pub");
    let us = Cluster::primary("sub");
    eu.sql(SCHEMA);
    eu.sql("INSERT INTO gw_config VALUES (1, 'one'); INSERT INTO routes VALUES (1, '/a');");
    us.sql(SCHEMA);
    let h = Arc::new(PgHost::new(&[("eu", eu.dsn()), ("us", us.dsn())]));

    let out = act(&h, "setup", setup_args(&eu, json!(["gw_config"]))).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(true), Some(true))
    );
    assert_eq!(out.tables, ["public.gw_config"]);
    assert!(
        !serde_json::to_string(&out).unwrap().contains(&eu.dsn()),
        "the DSN must not be output"
    );
    us.wait_for(
        "SELECT v FROM gw_config WHERE id = 1",
        "one",
        Duration::from_secs(30),
    );
    eu.sql("INSERT INTO gw_config VALUES (2, 'two')");
    us.wait_for(
        "SELECT v FROM gw_config WHERE id = 2",
        "two",
        Duration::from_secs(30),
    );
    assert_eq!(
        us.value("SELECT count(*) FROM routes").as_deref(),
        Some("0"),
        "routes is not published yet"
    );

    // Re-running converges without creating anything.
    let out = act(&h, "setup", setup_args(&eu, json!(["gw_config"]))).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(false), Some(false))
    );
    assert_eq!(out.subscription_refreshed, Some(true));
    assert_eq!(
        out.changes,
        ["us: ALTER SUBSCRIPTION \"api7_sub\" REFRESH PUBLICATION"]
    );

    // Both sides report the logical replication.
    let st = act(
        &h,
        "status-pub",
        json!({"action": "status", "connection": "eu"}),
    )
    .unwrap();
    assert!(
        st.replicas
            .iter()
            .any(|r| r.name == "api7_sub" && r.kind == ReplicationKind::Logical),
        "{:?}",
        st.replicas
    );
    assert!(
        st.slots
            .iter()
            .any(|s| s.name == "api7_sub" && s.kind == ReplicationKind::Logical && s.active)
    );
    us.wait_for(
        "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        "0",
        Duration::from_secs(30),
    );
    let st = act(
        &h,
        "status-sub",
        json!({"action": "status", "connection": "us", "primary": "eu", "max_lag_bytes": 0, "wait_timeout_ms": 20_000}),
    )
    .unwrap();
    let sub = st
        .subscriptions
        .iter()
        .find(|s| s.name == "api7_sub")
        .expect("the subscription");
    assert!(sub.enabled && sub.worker_running, "{sub:?}");
    assert_eq!((sub.tables_not_ready, sub.lag_bytes), (0, Some(0)));
    assert_eq!(st.healthy, Some(true), "{:?}", st.problems);

    // Publishing one more table: the list is aligned and the subscription refreshed.
    let out = act(
        &h,
        "setup-2",
        setup_args(&eu, json!(["gw_config", "public.routes"])),
    )
    .unwrap();
    assert_eq!(out.tables, ["public.gw_config", "public.routes"]);
    assert_eq!(
        out.changes[0],
        "eu: ALTER PUBLICATION \"api7_pub\" SET TABLE public.gw_config, public.routes"
    );
    us.wait_for(
        "SELECT uri FROM routes WHERE id = 1",
        "/a",
        Duration::from_secs(30),
    );

    // Refusals name the problem and change nothing.
    let e = act(&h, "setup-3", setup_args(&eu, json!(["gw_config", "nope"]))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(
        e.message()
            .contains("table `nope` does not exist on the publisher"),
        "{}",
        e.message()
    );
    eu.sql("CREATE TABLE only_pub (id int PRIMARY KEY)");
    let e = act(
        &h,
        "setup-4",
        setup_args(&eu, json!(["gw_config", "routes", "only_pub"])),
    )
    .unwrap_err();
    assert!(
        e.message()
            .contains("lacks published table(s) public.only_pub"),
        "{}",
        e.message()
    );
    let e = act(&h, "setup-5", setup_args(&eu, json!(null))).unwrap_err();
    assert!(
        e.message().contains("exists with a table list"),
        "{}",
        e.message()
    );

    // Plan mode for a second pair of names creates nothing.
    let plan = Arc::new(PgHost::planning(&[("eu", eu.dsn()), ("us", us.dsn())]));
    let mut args = setup_args(&eu, json!(["gw_config"]));
    args["publication"] = "pub2".into();
    args["subscription"] = "sub2".into();
    let out = act(&plan, "setup-plan", args).unwrap();
    assert!(out.planned);
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(true), Some(true))
    );
    assert_eq!(out.changes.len(), 2, "{:?}", out.changes);
    assert_eq!(
        eu.value("SELECT count(*) FROM pg_publication WHERE pubname = 'pub2'")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        us.value("SELECT count(*) FROM pg_subscription WHERE subname = 'sub2'")
            .as_deref(),
        Some("0")
    );

    // Failing over to the subscriber: it already is a primary; its subscription is disabled so
    // the old publisher cannot overwrite it.
    let p = act(
        &h,
        "promote",
        json!({"action": "promote", "connection": "us", "subscription": "api7_sub"}),
    )
    .unwrap();
    assert_eq!(
        (p.promoted, p.already_primary, p.subscription_disabled),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(
        us.value("SELECT subenabled FROM pg_subscription WHERE subname = 'api7_sub'")
            .as_deref(),
        Some("f")
    );
    let st = act(
        &h,
        "status-after",
        json!({"action": "status", "connection": "us"}),
    )
    .unwrap();
    assert!(
        st.problems
            .iter()
            .any(|p| p.contains("`api7_sub` is disabled")),
        "{:?}",
        st.problems
    );
    // Setting up again re-enables it (failback).
    act(
        &h,
        "setup-6",
        setup_args(&eu, json!(["gw_config", "routes"])),
    )
    .unwrap();
    assert_eq!(
        us.value("SELECT subenabled FROM pg_subscription WHERE subname = 'api7_sub'")
            .as_deref(),
        Some("t")
    );
}
