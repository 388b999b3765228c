//! Unit tests against an in-memory PowerDNS API (zones with rrsets, REPLACE/DELETE patches,
//! 201/204/404/409/401 like the real server), plus the LUA content builders and parsers.

use std::cell::RefCell;
use std::collections::BTreeMap;

use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, GslbOutput, Health};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Env, FakeClock, MapSecrets, NoLog, StepError};
use meridian_sdk::http::{HttpError, Request, Response, Transport};
use serde_json::{Value, json};

#[derive(Default)]
struct FakePdns {
    zones: BTreeMap<String, Vec<Value>>,
    patches: u32,
    /// Endpoints whose health URL answers 200 (probe_health).
    up: Vec<String>,
}

impl FakePdns {
    fn handle(&mut self, req: &Request) -> Response {
        if let Some(rest) = req.url.strip_prefix("http://")
            && !rest.starts_with("pdns.test")
        {
            // A health probe to a region endpoint.
            let host = rest.split(':').next().unwrap();
            assert_eq!(req.header_value("host"), Some("api.example.org"));
            return Response::new(
                if self.up.iter().any(|u| u == host) {
                    200
                } else {
                    503
                },
                "",
            );
        }
        if req.header_value("x-api-key") != Some("k") {
            return Response::new(401, "Unauthorized");
        }
        let path = req
            .url
            .strip_prefix("http://pdns.test/api/v1/servers/localhost")
            .unwrap();
        let body: Value = req
            .body
            .as_ref()
            .map(|b| serde_json::from_slice(b).unwrap())
            .unwrap_or(Value::Null);
        match (req.method.as_str(), path) {
            ("GET", "" | "/") => {
                Response::new(200, r#"{"daemon_type":"authoritative","version":"4.7.3"}"#)
            }
            ("POST", "/zones") => {
                let name = body["name"].as_str().unwrap().to_owned();
                if self.zones.contains_key(&name) {
                    return Response::new(409, "Conflict");
                }
                self.zones.insert(name.clone(), vec![json!({"name": name, "type": "SOA", "ttl": 3600, "records": [{"content": "x", "disabled": false}]})]);
                Response::new(201, json!({"name": name}).to_string())
            }
            ("GET", p) => match self.zones.get(p.trim_start_matches("/zones/")) {
                Some(rrsets) => Response::new(200, json!({"rrsets": rrsets}).to_string()),
                None => Response::new(404, "Not Found"),
            },
            ("PATCH", p) => {
                let Some(rrsets) = self.zones.get_mut(p.trim_start_matches("/zones/")) else {
                    return Response::new(404, "Not Found");
                };
                for rr in body["rrsets"].as_array().unwrap() {
                    if rr["records"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|r| r["content"].as_str().unwrap().contains("\"\""))
                    }) {
                        return Response::new(422, r#"{"error": "Parsing record content failed"}"#);
                    }
                    rrsets.retain(|x| !(x["name"] == rr["name"] && x["type"] == rr["type"]));
                    if rr["changetype"] == "REPLACE" {
                        rrsets.push(json!({"name": rr["name"], "type": rr["type"], "ttl": rr["ttl"], "records": rr["records"]}));
                    }
                }
                self.patches += 1;
                Response::new(204, "")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn contents(&self, t: &str) -> Vec<String> {
        self.zones["example.org."]
            .iter()
            .filter(|r| r["name"] == "api.example.org." && r["type"] == t)
            .flat_map(|r| {
                r["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["content"].as_str().unwrap().to_owned())
            })
            .collect()
    }
}

struct Harness {
    pdns: RefCell<FakePdns>,
    secrets: MapSecrets,
    clock: FakeClock,
}

impl Harness {
    fn new() -> Self {
        Self {
            pdns: RefCell::new(FakePdns::default()),
            secrets: MapSecrets::from_pairs([("PDNS_API_KEY", "k")]),
            clock: FakeClock::at(0),
        }
    }
    fn transport(&self) -> FakeTransport<'_> {
        FakeTransport::new(|req| Ok(self.pdns.borrow_mut().handle(req)))
    }
    fn run_with(&self, http: &dyn Transport, input: &GslbInput) -> Result<GslbOutput, StepError> {
        let env = Env {
            http,
            secrets: &self.secrets,
            clock: &self.clock,
            log: &NoLog,
        };
        crate::run(&env, input)
    }
    fn run(&self, input: &GslbInput) -> Result<GslbOutput, StepError> {
        self.run_with(&self.transport(), input)
    }
}

fn input(extra: Value) -> GslbInput {
    let mut v = json!({
        "zone": "example.org",
        "record": "api.example.org",
        "policy": "failover",
        "ttl": 5,
        "regions": [
            {"name": "primary", "endpoint": "127.0.0.2", "health_check": {"type": "http", "port": 18080, "path": "/status/ready"}},
            {"name": "standby", "endpoint": "127.0.0.3"}
        ],
        "provider": {"powerdns": {"endpoint": "http://pdns.test"}}
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

const FAILOVER_PRIMARY: &str =
    "A \"ifurlup('http://api.example.org:18080/status/ready', {{'127.0.0.2'}, {'127.0.0.3'}})\"";
const FAILOVER_STANDBY: &str =
    "A \"ifurlup('http://api.example.org:18080/status/ready', {{'127.0.0.3'}, {'127.0.0.2'}})\"";

#[test]
fn apply_creates_the_zone_and_an_ordered_ifurlup_record_once() {
    let h = Harness::new();
    let out = h.run(&input(json!({}))).unwrap();
    assert_eq!(
        out.changes
            .iter()
            .map(|c| (c.kind.as_str(), c.op))
            .collect::<Vec<_>>(),
        [("zone", ChangeOp::Create), ("record", ChangeOp::Create)]
    );
    assert_eq!(h.pdns.borrow().contents("LUA"), [FAILOVER_PRIMARY]);
    assert_eq!(out.active, ["primary"]);
    assert!(out.synced);
    let again = h.run(&input(json!({}))).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(h.pdns.borrow().patches, 1);
}

#[test]
fn failover_reorders_the_sets_and_compensation_restores() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let fo = input(json!({"action": "failover", "target_region": "standby"}));
    let out = h.run(&fo).unwrap();
    assert_eq!(h.pdns.borrow().contents("LUA"), [FAILOVER_STANDBY]);
    assert_eq!(out.active, ["standby"]);
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("primary")
    );
    assert!(h.run(&fo).unwrap().changes.is_empty());
    let http = h.transport();
    let env = Env {
        http: &http,
        secrets: &h.secrets,
        clock: &h.clock,
        log: &NoLog,
    };
    crate::compensate(&env, &fo, out.undo.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(h.pdns.borrow().contents("LUA"), [FAILOVER_PRIMARY]);
}

#[test]
fn weighted_uses_pickwrandom_without_zero_weights() {
    let h = Harness::new();
    let mut w = input(json!({"policy": "weighted", "regions": [
        {"name": "primary", "endpoint": "127.0.0.2", "weight": 90},
        {"name": "standby", "endpoint": "127.0.0.3", "weight": 10},
        {"name": "spare", "endpoint": "127.0.0.4", "weight": 0}
    ]}));
    h.run(&w).unwrap();
    assert_eq!(
        h.pdns.borrow().contents("LUA"),
        ["A \"pickwrandom({{90, '127.0.0.2'}, {10, '127.0.0.3'}})\""]
    );
    w.action = GslbAction::SetWeights;
    w.weights = Some(BTreeMap::from([
        ("primary".to_owned(), 0),
        ("spare".to_owned(), 5),
    ]));
    let out = h.run(&w).unwrap();
    assert_eq!(
        h.pdns.borrow().contents("LUA"),
        ["A \"pickwrandom({{10, '127.0.0.3'}, {5, '127.0.0.4'}})\""]
    );
    assert_eq!(
        out.undo.unwrap().weights.unwrap()["primary"],
        90,
        "weights are read back from the record"
    );
    assert_eq!(out.active, ["standby", "spare"]);
}

#[test]
fn plain_records_switch_and_replace_the_lua_flavour() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let mut plain = input(json!({"action": "failover", "target_region": "standby"}));
    plain.provider.powerdns.as_mut().unwrap().records =
        meridian_families::gslb::PowerDnsRecords::Plain;
    let out = h.run(&plain).unwrap();
    assert_eq!(h.pdns.borrow().contents("A"), ["127.0.0.3"]);
    assert!(
        h.pdns.borrow().contents("LUA").is_empty(),
        "the LUA rrset is deleted in the same patch"
    );
    assert!(out.changes.iter().any(|c| c.op == ChangeOp::Delete));
    // Reading the plain record back gives the active region; compensation returns to primary.
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("primary")
    );
    let mut cname = plain.clone();
    cname.record_type = meridian_families::gslb::RecordType::Cname;
    cname.regions[0].endpoint = "eu.gw.example.net".into();
    cname.regions[1].endpoint = "us.gw.example.net".into();
    cname.regions[0].health_check = None;
    h.run(&cname).unwrap();
    assert_eq!(h.pdns.borrow().contents("CNAME"), ["us.gw.example.net."]);
}

#[test]
fn latency_uses_pickclosest() {
    let h = Harness::new();
    h.run(&input(json!({"policy": "latency"}))).unwrap();
    assert_eq!(
        h.pdns.borrow().contents("LUA"),
        [
            "A \"ifurlup('http://api.example.org:18080/status/ready', {{'127.0.0.2', '127.0.0.3'}}, {selector='pickclosest'})\""
        ]
    );
}

#[test]
fn probe_health_fills_status() {
    let h = Harness::new();
    h.pdns.borrow_mut().up.push("127.0.0.3".into());
    let mut i = input(json!({}));
    i.provider.powerdns.as_mut().unwrap().probe_health = true;
    let out = h.run(&i).unwrap();
    assert_eq!(out.status["primary"], Health::Unhealthy);
    assert_eq!(out.status["standby"], Health::Healthy);
    assert_eq!(
        out.active,
        ["standby"],
        "PowerDNS answers the next set when the first is down"
    );
    let st = h.run(&input(json!({"action": "status"}))).unwrap();
    assert_eq!(st.status["primary"], Health::Unknown, "probing is opt-in");
}

#[test]
fn invalid_combinations_are_refused() {
    let h = Harness::new();
    let cases = [
        (
            json!({"regions": [{"name": "a", "endpoint": "127.0.0.2"}, {"name": "b", "endpoint": "127.0.0.3"}]}),
            "needs an http/https health check",
        ),
        (
            json!({"regions": [{"name": "a", "endpoint": "127.0.0.2", "health_check": {"type": "tcp", "port": 1}}]}),
            "tcp cannot order",
        ),
        (
            json!({"regions": [
            {"name": "a", "endpoint": "127.0.0.2", "health_check": {"port": 1}},
            {"name": "b", "endpoint": "127.0.0.3", "health_check": {"port": 2}}]}),
            "must be identical",
        ),
        (
            json!({"type": "CNAME", "regions": [{"name": "a", "endpoint": "a.example.net"}]}),
            "type CNAME",
        ),
    ];
    for (extra, want) in cases {
        let e = h.run(&input(extra.clone())).unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains(want)),
            "{extra}: {e:?}"
        );
    }
    let mut plain_latency = input(json!({"policy": "latency"}));
    plain_latency.provider.powerdns.as_mut().unwrap().records =
        meridian_families::gslb::PowerDnsRecords::Plain;
    assert!(
        matches!(h.run(&plain_latency), Err(StepError::InvalidInput(m)) if m.contains("latency"))
    );
}

#[test]
fn errors_are_classified() {
    let h = Harness::new();
    let e = h.run(&input(json!({"action": "status"}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("zone `example.org.` does not exist")),
        "{e:?}"
    );
    let mut no_create = input(json!({}));
    no_create.provider.powerdns.as_mut().unwrap().create_zone = false;
    assert!(matches!(h.run(&no_create), Err(StepError::Fatal(_))));

    let bad_key = Harness {
        secrets: MapSecrets::from_pairs([("PDNS_API_KEY", "nope")]),
        ..Harness::new()
    };
    let e = bad_key.run(&input(json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("PDNS_API_KEY")),
        "{e:?}"
    );

    let down = FakeTransport::new(|_| Err(HttpError::Connect("connection refused".into())));
    assert!(matches!(
        h.run_with(&down, &input(json!({}))),
        Err(StepError::Retryable(_))
    ));
    let busy = FakeTransport::new(|_| Ok(Response::new(503, "busy")));
    assert!(matches!(
        h.run_with(&busy, &input(json!({}))),
        Err(StepError::Retryable(_))
    ));
}

#[test]
fn plan_mode_changes_nothing() {
    let h = Harness::new();
    let plan = PlanTransport::new(h.transport());
    let out = h.run_with(&plan, &input(json!({}))).unwrap();
    assert!(out.planned && !out.synced);
    assert_eq!(plan.planned().len(), 2, "create zone + patch");
    assert!(h.pdns.borrow().zones.is_empty());
}

#[test]
fn lua_parsers_round_trip() {
    assert_eq!(
        crate::parse_ifurlup(FAILOVER_STANDBY).unwrap(),
        vec![vec!["127.0.0.3".to_owned()], vec!["127.0.0.2".to_owned()]]
    );
    assert_eq!(
        crate::parse_ifurlup(
            "A \"ifurlup('https://x:443/', {'1.2.3.4', '5.6.7.8'}, {selector='pickclosest'})\""
        )
        .unwrap(),
        vec![vec!["1.2.3.4".to_owned(), "5.6.7.8".to_owned()]]
    );
    assert_eq!(
        crate::parse_pickwrandom("A \"pickwrandom({{90, '127.0.0.2'}, {10, '127.0.0.3'}})\"")
            .unwrap(),
        vec![(90, "127.0.0.2".to_owned()), (10, "127.0.0.3".to_owned())]
    );
    assert!(crate::parse_ifurlup("A \"pickrandom({'1.2.3.4'})\"").is_none());
    assert!(crate::parse_pickwrandom("A \"ifportup(1, {'a'})\"").is_none());
}
