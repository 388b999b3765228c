//! The step against a real PowerDNS, judged by real DNS answers.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, GslbOutput, PowerDnsRecords};
use meridian_families::{Env, MapSecrets, NoLog, StdClock, StepError, UreqTransport};
use serde_json::json;

use crate::harness::{HealthServer, Pdns};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STANDBY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const NAME: &str = "api.example.org";
const SETTLE: Duration = Duration::from_secs(20);

/// A port free on both 127.0.0.2 and 127.0.0.3.
fn health_port() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind((PRIMARY, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind((STANDBY, port)).is_ok() {
            return port;
        }
    }
    panic!("no common free port on 127.0.0.2/127.0.0.3");
}

fn input(pdns: &Pdns, health_port: u16, extra: serde_json::Value) -> GslbInput {
    let mut v = json!({
        "zone": "example.org",
        "record": NAME,
        "policy": "failover",
        "ttl": 1,
        "regions": [
            {"name": "primary", "endpoint": PRIMARY.to_string(),
             "health_check": {"type": "http", "port": health_port, "path": "/status/ready"}},
            {"name": "standby", "endpoint": STANDBY.to_string()}
        ],
        "provider": {"powerdns": {"endpoint": pdns.api}},
        "timeout_ms": 10000
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn env_run(
    key: &str,
    f: impl FnOnce(&Env<'_>) -> Result<Option<GslbOutput>, StepError>,
) -> Result<Option<GslbOutput>, StepError> {
    let http = UreqTransport::default();
    let secrets = MapSecrets::from_pairs([("PDNS_API_KEY", key)]);
    let env = Env {
        http: &http,
        secrets: &secrets,
        clock: &StdClock,
        log: &NoLog,
    };
    f(&env)
}

fn run(pdns: &Pdns, input: &GslbInput) -> Result<GslbOutput, StepError> {
    env_run(pdns.key, |env| gslb_powerdns::run(env, input).map(Some)).map(|o| o.unwrap())
}

fn expect_answer(pdns: &Pdns, want: Ipv4Addr, when: &str) {
    if let Err(seen) = pdns.wait_for_answer(NAME, want, SETTLE) {
        panic!(
            "{when}: DNS did not settle on {want} within {SETTLE:?}; answers seen: {seen:?}\npdns log:\n{}",
            pdns.log()
        );
    }
}

#[test]
fn lua_failover_is_answered_by_dns() {
    let Some(pdns) = Pdns::start() else { return };
    let port = health_port();
    let primary_up = HealthServer::start(PRIMARY, port);
    let _standby_up = HealthServer::start(STANDBY, port);

    // apply: creates the zone and the ifurlup record; DNS answers the primary.
    let out = run(&pdns, &input(&pdns, port, json!({}))).unwrap();
    assert_eq!(out.changes[0].kind, "zone");
    assert!(out.synced);
    expect_answer(&pdns, PRIMARY, "after apply");
    assert!(
        run(&pdns, &input(&pdns, port, json!({})))
            .unwrap()
            .changes
            .is_empty(),
        "apply is idempotent"
    );

    // failover to the standby while both are healthy: done only when DNS answers the standby.
    let fo = input(
        &pdns,
        port,
        json!({"action": "failover", "target_region": "standby"}),
    );
    let out = run(&pdns, &fo).unwrap();
    assert_eq!(out.active, ["standby"]);
    expect_answer(&pdns, STANDBY, "after failover");
    assert!(
        run(&pdns, &fo).unwrap().changes.is_empty(),
        "a retried failover changes nothing"
    );

    // compensation: back to the primary.
    let back = env_run(pdns.key, |env| {
        gslb_powerdns::compensate(env, &fo, out.undo.as_ref())
    })
    .unwrap()
    .unwrap();
    assert_eq!(back.active, ["primary"]);
    expect_answer(&pdns, PRIMARY, "after compensation");

    // PowerDNS fails over by itself when the primary's health endpoint dies.
    drop(primary_up);
    expect_answer(
        &pdns,
        STANDBY,
        "after the primary's health endpoint stopped",
    );
}

#[test]
fn plain_record_switching() {
    let Some(pdns) = Pdns::start() else { return };
    let mut i = input(&pdns, 1, json!({}));
    i.provider.powerdns.as_mut().unwrap().records = PowerDnsRecords::Plain;
    run(&pdns, &i).unwrap();
    assert_eq!(crate::dns::query_a(pdns.dns, NAME).unwrap(), [PRIMARY]);
    i.action = GslbAction::Failover;
    i.target_region = Some("standby".into());
    let out = run(&pdns, &i).unwrap();
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].op, ChangeOp::Update);
    // The API purges the packet cache: the very next query sees the switch.
    assert_eq!(crate::dns::query_a(pdns.dns, NAME).unwrap(), [STANDBY]);
}

#[test]
fn weighted_pickwrandom() {
    let Some(pdns) = Pdns::start() else { return };
    let mut w = input(
        &pdns,
        1,
        json!({"policy": "weighted", "regions": [
            {"name": "primary", "endpoint": PRIMARY.to_string(), "weight": 50},
            {"name": "standby", "endpoint": STANDBY.to_string(), "weight": 50}
        ]}),
    );
    run(&pdns, &w).unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        for ip in crate::dns::query_a(pdns.dns, NAME).unwrap() {
            *seen.entry(ip).or_insert(0) += 1;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "both regions answer at 50/50 over 60 queries: {seen:?}"
    );

    w.action = GslbAction::SetWeights;
    w.weights = Some(BTreeMap::from([("primary".to_owned(), 0)]));
    let out = run(&pdns, &w).unwrap();
    assert_eq!(out.active, ["standby"]);
    for _ in 0..20 {
        assert_eq!(crate::dns::query_a(pdns.dns, NAME).unwrap(), [STANDBY]);
    }
}

#[test]
fn errors_against_the_real_server() {
    let Some(pdns) = Pdns::start() else { return };
    let e = run(&pdns, &input(&pdns, 1, json!({"action": "status"}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("does not exist")),
        "{e:?}"
    );
    let i = input(&pdns, 1, json!({}));
    let e = env_run("wrong-key", |env| gslb_powerdns::run(env, &i).map(Some)).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("PDNS_API_KEY")),
        "{e:?}"
    );
    let mut wrong_server = input(&pdns, 1, json!({}));
    wrong_server.provider.powerdns.as_mut().unwrap().server_id = "nope".into();
    let e = run(&pdns, &wrong_server).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("server_id")),
        "{e:?}"
    );
}
