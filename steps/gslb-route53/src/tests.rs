//! Unit tests of the step logic against an in-memory Route 53 that keeps records and health
//! checks, answers in the real XML shapes, and can inject errors and PENDING changes.

use std::cell::RefCell;
use std::collections::BTreeMap;

use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, Health};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{
    Clock, Env, FakeClock, HttpRequest, HttpResponse, MapSecrets, NoLog, StepError, Transport,
};
use serde_json::json;

use crate::xml::{self, RecordSet};

#[derive(Default)]
struct FakeR53 {
    records: Vec<RecordSet>,
    checks: Vec<(String, String, bool)>, // id, caller reference, healthy
    pending_polls: u32,
    fail_next: Option<(u16, String)>,
    changes: u32,
}

impl FakeR53 {
    fn handle(&mut self, req: &HttpRequest) -> HttpResponse {
        assert!(
            req.header_value("authorization")
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 Credential=AK/")
        );
        if let Some((status, body)) = self.fail_next.take() {
            return HttpResponse::new(status, body);
        }
        let path = req.url.strip_prefix("http://r53.test").unwrap();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let q: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
        let body = req
            .body
            .as_ref()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .unwrap_or_default();
        match (req.method.as_str(), path) {
            ("GET", "/2013-04-01/hostedzonesbyname") => {
                assert_eq!(q["dnsname"], "example.com.");
                ok(
                    "<ListHostedZonesByNameResponse><HostedZones><HostedZone><Id>/hostedzone/Z1</Id><Name>example.com.</Name></HostedZone></HostedZones></ListHostedZonesByNameResponse>",
                )
            }
            ("GET", "/2013-04-01/hostedzone/Z1/rrset") => {
                let mut sets: Vec<&RecordSet> = self
                    .records
                    .iter()
                    .filter(|r| r.name.as_str() >= q["name"])
                    .collect();
                sets.sort_by(|a, b| {
                    (&a.name, &a.rtype, &a.set_identifier).cmp(&(
                        &b.name,
                        &b.rtype,
                        &b.set_identifier,
                    ))
                });
                let mut out = String::from("<ListResourceRecordSetsResponse><ResourceRecordSets>");
                for r in sets {
                    out.push_str(&record_xml(r));
                }
                out.push_str("</ResourceRecordSets><IsTruncated>false</IsTruncated></ListResourceRecordSetsResponse>");
                ok(&out)
            }
            ("GET", p) if p.starts_with("/2013-04-01/hostedzone/") => HttpResponse::new(
                404,
                "<ErrorResponse><Error><Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: ZX</Message></Error></ErrorResponse>",
            ),
            ("GET", "/2013-04-01/healthcheck") => {
                let mut out = String::from("<ListHealthChecksResponse><HealthChecks>");
                for (id, r, _) in &self.checks {
                    out.push_str(&format!("<HealthCheck><Id>{id}</Id><CallerReference>{r}</CallerReference></HealthCheck>"));
                }
                out.push_str(
                    "</HealthChecks><IsTruncated>false</IsTruncated></ListHealthChecksResponse>",
                );
                ok(&out)
            }
            ("POST", "/2013-04-01/healthcheck") => {
                let doc = roxmltree::Document::parse(&body).unwrap();
                let r = doc
                    .descendants()
                    .find(|n| n.has_tag_name("CallerReference"))
                    .unwrap()
                    .text()
                    .unwrap()
                    .to_owned();
                let id = format!("hc-{}", self.checks.len() + 1);
                self.checks.push((id.clone(), r, true));
                HttpResponse::new(
                    201,
                    format!(
                        "<CreateHealthCheckResponse><HealthCheck><Id>{id}</Id></HealthCheck></CreateHealthCheckResponse>"
                    ),
                )
            }
            ("GET", p) if p.starts_with("/2013-04-01/healthcheck/") => {
                let id = p
                    .trim_start_matches("/2013-04-01/healthcheck/")
                    .trim_end_matches("/status");
                let healthy = self.checks.iter().find(|c| c.0 == id).unwrap().2;
                let status = if healthy {
                    "Success: HTTP Status Code 200"
                } else {
                    "Failure: Connection timed out"
                };
                ok(&format!(
                    "<GetHealthCheckStatusResponse><HealthCheckObservations><HealthCheckObservation><StatusReport><Status>{status}</Status></StatusReport></HealthCheckObservation></HealthCheckObservations></GetHealthCheckStatusResponse>"
                ))
            }
            ("POST", "/2013-04-01/hostedzone/Z1/rrset/") => {
                self.apply_batch(&body);
                self.changes += 1;
                let status = if self.pending_polls > 0 {
                    "PENDING"
                } else {
                    "INSYNC"
                };
                ok(&format!(
                    "<ChangeResourceRecordSetsResponse><ChangeInfo><Id>/change/C{}</Id><Status>{status}</Status></ChangeInfo></ChangeResourceRecordSetsResponse>",
                    self.changes
                ))
            }
            ("GET", p) if p.starts_with("/2013-04-01/change/") => {
                let status = if self.pending_polls > 0 {
                    self.pending_polls -= 1;
                    "PENDING"
                } else {
                    "INSYNC"
                };
                ok(&format!(
                    "<GetChangeResponse><ChangeInfo><Id>/change/C1</Id><Status>{status}</Status></ChangeInfo></GetChangeResponse>"
                ))
            }
            other => panic!("unexpected request {other:?}"),
        }
    }

    fn apply_batch(&mut self, body: &str) {
        let doc = roxmltree::Document::parse(body).unwrap();
        for change in doc.descendants().filter(|n| n.has_tag_name("Change")) {
            let text = |n: roxmltree::Node<'_, '_>, name: &str| {
                n.descendants()
                    .find(|c| c.has_tag_name(name))
                    .and_then(|c| c.text())
                    .map(str::to_owned)
            };
            assert_eq!(text(change, "Action").as_deref(), Some("UPSERT"));
            let rr = RecordSet {
                name: text(change, "Name").unwrap(),
                rtype: text(change, "Type").unwrap(),
                set_identifier: text(change, "SetIdentifier"),
                weight: text(change, "Weight").map(|w| w.parse().unwrap()),
                region: text(change, "Region"),
                failover: text(change, "Failover"),
                ttl: text(change, "TTL").map(|t| t.parse().unwrap()),
                values: change
                    .descendants()
                    .filter(|n| n.has_tag_name("Value"))
                    .map(|n| n.text().unwrap().to_owned())
                    .collect(),
                health_check_id: text(change, "HealthCheckId"),
                alias: false,
            };
            self.records.retain(|r| {
                !(r.name == rr.name && r.rtype == rr.rtype && r.set_identifier == rr.set_identifier)
            });
            self.records.push(rr);
        }
    }
}

fn ok(body: &str) -> HttpResponse {
    HttpResponse::new(200, body)
}

fn record_xml(r: &RecordSet) -> String {
    let batch = xml::change_batch(None, &[(xml::Action::Upsert, r.clone())]);
    let start = batch.find("<ResourceRecordSet>").unwrap();
    let end = batch.find("</ResourceRecordSet>").unwrap() + "</ResourceRecordSet>".len();
    batch[start..end].to_owned()
}

fn input(extra: serde_json::Value) -> GslbInput {
    let mut v = json!({
        "zone": "example.com",
        "record": "api.example.com",
        "policy": "failover",
        "regions": [
            {"name": "eu-west-1", "endpoint": "203.0.113.10", "health_check": {"type": "https", "port": 7085}},
            {"name": "us-east-1", "endpoint": "198.51.100.20", "health_check": {"type": "https", "port": 7085}}
        ],
        "provider": {"route53": {"endpoint": "http://r53.test"}}
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

struct Harness {
    r53: RefCell<FakeR53>,
    secrets: MapSecrets,
    clock: FakeClock,
}

impl Harness {
    fn new() -> Self {
        Self {
            r53: RefCell::new(FakeR53::default()),
            secrets: MapSecrets::from_pairs([
                ("AWS_ACCESS_KEY_ID", "AK"),
                ("AWS_SECRET_ACCESS_KEY", "SK"),
            ]),
            clock: FakeClock::at(1_795_776_409_000),
        }
    }

    fn transport(&self) -> FakeTransport<'_> {
        FakeTransport::new(|req| Ok(self.r53.borrow_mut().handle(req)))
    }

    fn run_with(
        &self,
        http: &dyn Transport,
        input: &GslbInput,
    ) -> Result<meridian_families::gslb::GslbOutput, StepError> {
        let env = Env {
            http,
            secrets: &self.secrets,
            clock: &self.clock,
            log: &NoLog,
        };
        crate::run(&env, input)
    }

    fn run(&self, input: &GslbInput) -> Result<meridian_families::gslb::GslbOutput, StepError> {
        self.run_with(&self.transport(), input)
    }
}

#[test]
fn apply_creates_checks_and_records_then_is_idempotent() {
    let h = Harness::new();
    let out = h.run(&input(json!({}))).unwrap();
    assert_eq!(out.active, ["eu-west-1"]);
    assert_eq!(out.order, ["eu-west-1", "us-east-1"]);
    assert_eq!(
        out.changes
            .iter()
            .filter(|c| c.kind == "health-check")
            .count(),
        2
    );
    assert_eq!(
        out.changes
            .iter()
            .filter(|c| c.kind == "record" && c.op == ChangeOp::Create)
            .count(),
        2
    );
    assert_eq!(out.change_id.as_deref(), Some("C1"));
    assert!(out.synced && !out.planned && out.undo.is_none());
    assert_eq!(out.status["eu-west-1"], Health::Healthy);
    {
        let r53 = h.r53.borrow();
        let primary = r53
            .records
            .iter()
            .find(|r| r.failover.as_deref() == Some("PRIMARY"))
            .unwrap();
        assert_eq!(primary.set_identifier.as_deref(), Some("eu-west-1"));
        assert_eq!(primary.health_check_id.as_deref(), Some("hc-1"));
    }

    let again = h.run(&input(json!({}))).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.change_id, None);
    assert_eq!(
        h.r53.borrow().checks.len(),
        2,
        "health checks are reused by caller reference"
    );
    assert_eq!(h.r53.borrow().changes, 1);
}

#[test]
fn failover_swaps_roles_in_one_batch_and_compensation_swaps_back() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let fo = input(json!({"action": "failover", "target_region": "us-east-1"}));
    let out = h.run(&fo).unwrap();
    assert_eq!(out.active, ["us-east-1"]);
    assert_eq!(out.changes.iter().filter(|c| c.kind == "record").count(), 2);
    assert!(out.changes.iter().all(|c| c.op == ChangeOp::Update));
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(h.r53.borrow().changes, 2, "the swap is one atomic batch");

    // Retrying the same failover is a no-op.
    assert!(h.run(&fo).unwrap().changes.is_empty());

    let env_http = h.transport();
    let env = Env {
        http: &env_http,
        secrets: &h.secrets,
        clock: &h.clock,
        log: &NoLog,
    };
    let back = crate::compensate(&env, &fo, out.undo.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(back.active, ["eu-west-1"]);
    assert!(
        crate::compensate(&env, &input(json!({})), None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn unhealthy_primary_is_not_active() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    h.r53.borrow_mut().checks[0].2 = false;
    let st = h.run(&input(json!({"action": "status"}))).unwrap();
    assert_eq!(st.status["eu-west-1"], Health::Unhealthy);
    assert_eq!(st.active, ["us-east-1"]);
    assert!(st.changes.is_empty());
}

#[test]
fn weighted_and_set_weights() {
    let h = Harness::new();
    let w = input(json!({"policy": "weighted", "regions": [
        {"name": "eu-west-1", "endpoint": "203.0.113.10", "weight": 70},
        {"name": "us-east-1", "endpoint": "198.51.100.20", "weight": 30},
        {"name": "ap-south-1", "endpoint": "192.0.2.30", "weight": 0}
    ]}));
    let out = h.run(&w).unwrap();
    assert_eq!(out.active, ["eu-west-1", "us-east-1"]);
    assert!(
        h.r53.borrow().checks.is_empty(),
        "no health check requested"
    );
    let mut sw = w.clone();
    sw.action = GslbAction::SetWeights;
    sw.weights = Some(BTreeMap::from([("eu-west-1".to_string(), 0)]));
    let out = h.run(&sw).unwrap();
    assert_eq!(
        out.weights,
        BTreeMap::from([
            ("ap-south-1".to_string(), 0),
            ("eu-west-1".to_string(), 0),
            ("us-east-1".to_string(), 30)
        ])
    );
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.undo.unwrap().weights.unwrap()["eu-west-1"], 70);
    assert_eq!(out.active, ["us-east-1"]);
}

#[test]
fn latency_records_carry_the_aws_region() {
    let h = Harness::new();
    let mut l = input(json!({"policy": "latency"}));
    l.regions[1].location = Some("us-east-2".into());
    h.run(&l).unwrap();
    let regions: Vec<_> = h
        .r53
        .borrow()
        .records
        .iter()
        .map(|r| r.region.clone().unwrap())
        .collect();
    assert_eq!(regions, ["eu-west-1", "us-east-2"]);
    l.regions[0].location = Some("europe".into());
    assert!(matches!(h.run(&l), Err(StepError::InvalidInput(m)) if m.contains("location")));
}

#[test]
fn waits_for_insync_within_the_timeout() {
    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 3;
    let t0 = h.clock.now_unix_ms();
    let out = h.run(&input(json!({}))).unwrap();
    assert!(out.synced);
    // Three PENDING polls and one INSYNC, with the delay doubling from 1 s.
    assert_eq!(h.clock.now_unix_ms() - t0, 1_000 + 2_000 + 4_000 + 8_000);

    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 1_000;
    let e = h.run(&input(json!({"timeout_ms": 5_000}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Retryable(m) if m.contains("not INSYNC after 5000 ms")),
        "{e:?}"
    );

    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 1_000;
    let out = h.run(&input(json!({"wait": false}))).unwrap();
    assert!(!out.synced);
}

#[test]
fn errors_are_classified() {
    let h = Harness::new();
    h.r53.borrow_mut().fail_next = Some((400, "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into()));
    assert!(
        matches!(h.run(&input(json!({}))), Err(StepError::Retryable(m)) if m.contains("Throttling"))
    );

    h.r53.borrow_mut().fail_next = Some((400, "<ErrorResponse><Error><Code>PriorRequestNotComplete</Code><Message>busy</Message></Error></ErrorResponse>".into()));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    h.r53.borrow_mut().fail_next = Some((403, "<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>".into()));
    let e = h.run(&input(json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("AWS_ACCESS_KEY_ID")),
        "{e:?}"
    );

    h.r53.borrow_mut().fail_next = Some((503, "Service Unavailable".into()));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    let mut missing = input(json!({}));
    missing.provider.route53.as_mut().unwrap().hosted_zone_id = Some("/hostedzone/ZX".into());
    let e = h.run(&missing).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("example.com.") && m.contains("NoSuchHostedZone")),
        "{e:?}"
    );

    let fail_connect =
        FakeTransport::new(|_| Err(meridian_families::TransportError::Connect("refused".into())));
    assert!(matches!(
        h.run_with(&fail_connect, &input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    let no_secret = Harness {
        secrets: MapSecrets::default(),
        ..Harness::new()
    };
    assert!(
        matches!(no_secret.run(&input(json!({}))), Err(StepError::Fatal(m)) if m.contains("AWS_ACCESS_KEY_ID"))
    );
}

#[test]
fn input_limits_specific_to_route53() {
    let h = Harness::new();
    let three = input(json!({"regions": [
        {"name": "a", "endpoint": "192.0.2.1"}, {"name": "b", "endpoint": "192.0.2.2"}, {"name": "c", "endpoint": "192.0.2.3"}
    ]}));
    assert!(matches!(h.run(&three), Err(StepError::InvalidInput(m)) if m.contains("exactly two")));
    let mut none = input(json!({}));
    none.provider.route53 = None;
    assert!(
        matches!(h.run(&none), Err(StepError::InvalidInput(m)) if m.contains("provider.route53"))
    );
}

#[test]
fn plan_mode_reads_but_records_writes() {
    let h = Harness::new();
    let plan = PlanTransport::new(h.transport());
    let out = h.run_with(&plan, &input(json!({}))).unwrap();
    assert!(out.planned && !out.synced);
    assert_eq!(out.changes.len(), 4, "2 health checks + 2 records intended");
    let planned = plan.planned();
    assert_eq!(
        planned.len(),
        3,
        "2 CreateHealthCheck + 1 ChangeResourceRecordSets"
    );
    let batch = String::from_utf8(planned[2].body.clone().unwrap()).unwrap();
    assert!(
        batch.contains("<HealthCheckId>planned:meridian-"),
        "{batch}"
    );
    assert!(h.r53.borrow().records.is_empty() && h.r53.borrow().checks.is_empty());
}

#[test]
fn hosts_and_caller_references() {
    let i = input(json!({}));
    let cfg = crate::health_check_config(&i, &i.regions[0]).unwrap();
    assert_eq!(cfg.ip_address.as_deref(), Some("203.0.113.10"));
    assert_eq!(cfg.fqdn.as_deref(), Some("api.example.com"));
    assert_eq!(
        (cfg.kind.as_str(), cfg.port, cfg.request_interval),
        ("HTTPS", Some(7085), 10)
    );
    let r1 = crate::caller_reference(&i, "eu-west-1", &cfg);
    assert_eq!(r1, crate::caller_reference(&i, "eu-west-1", &cfg));
    assert!(r1.len() <= 64);
    let mut changed = cfg.clone();
    changed.failure_threshold = 5;
    assert_ne!(r1, crate::caller_reference(&i, "eu-west-1", &changed));
    assert!(crate::looks_like_aws_region("us-gov-west-1"));
    assert!(!crate::looks_like_aws_region("eu"));
}

/// The component glue (meridian_families::sdk) over the SDK's `run_with`, with a host whose
/// HTTP is the fake Route 53 and whose kv is a map.
mod component {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use meridian_families::gslb::GslbOutput;
    use meridian_sdk::http::{HttpError, Request, Response};
    use meridian_sdk::sql::{Rows, SqlError, Value};
    use meridian_sdk::{HostApi, Invocation, Level, Mode, compensate_with, run_with};
    use serde_json::json;

    use super::FakeR53;
    use crate::GslbRoute53;

    #[derive(Default)]
    struct Host {
        r53: Mutex<FakeR53>,
        kv: Mutex<BTreeMap<String, Vec<u8>>>,
        plan: bool,
    }

    impl HostApi for Host {
        fn log(&self, _level: Level, _message: &str, _fields: &[(String, String)]) {}
        fn http_send(&self, req: &Request) -> Result<Response, HttpError> {
            let mut r = meridian_families::HttpRequest::new(req.method.clone(), req.url.clone());
            r.headers = req.headers.clone();
            r.body = req.body.clone();
            if self.plan && r.is_mutating() {
                return Ok(Response {
                    status: 202,
                    headers: vec![],
                    body: b"{}".to_vec(),
                    recorded: true,
                });
            }
            let out = self.r53.lock().unwrap().handle(&r);
            Ok(Response {
                status: out.status,
                headers: out.headers,
                body: out.body,
                recorded: false,
            })
        }
        fn sql_query(&self, _: &str, _: &str, _: &[Value]) -> Result<Rows, SqlError> {
            Err(SqlError::Denied("no sql".into()))
        }
        fn sql_execute(&self, _: &str, _: &str, _: &[Value]) -> Result<u64, SqlError> {
            Err(SqlError::Denied("no sql".into()))
        }
        fn secret(&self, name: &str) -> Result<String, String> {
            match name {
                "AWS_ACCESS_KEY_ID" => Ok("AK".into()),
                "AWS_SECRET_ACCESS_KEY" => Ok("SK".into()),
                _ => Err(format!("secret `{name}` is not granted")),
            }
        }
        fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
            self.kv.lock().unwrap().get(key).cloned()
        }
        fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
            self.kv
                .lock()
                .unwrap()
                .insert(key.to_owned(), value.to_vec());
            Ok(())
        }
        fn kv_delete(&self, key: &str) -> bool {
            self.kv.lock().unwrap().remove(key).is_some()
        }
        fn kv_list(&self, prefix: &str) -> Vec<String> {
            self.kv
                .lock()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        }
    }

    fn with(extra: serde_json::Value) -> serde_json::Value {
        serde_json::to_value(super::input(extra)).unwrap()
    }

    fn run(host: &Arc<Host>, input: &serde_json::Value) -> Result<GslbOutput, meridian_sdk::Error> {
        let out = run_with::<GslbRoute53>(Invocation::for_test(input), host.clone())?;
        Ok(serde_json::from_str(&out).unwrap())
    }

    fn primary(host: &Host) -> String {
        let r53 = host.r53.lock().unwrap();
        r53.records
            .iter()
            .find(|r| r.failover.as_deref() == Some("PRIMARY"))
            .unwrap()
            .set_identifier
            .clone()
            .unwrap()
    }

    #[test]
    fn undo_is_recorded_before_the_first_attempt_and_survives_retries() {
        let host = Arc::new(Host::default());
        run(&host, &with(json!({}))).unwrap();
        assert!(host.kv.lock().unwrap().is_empty(), "apply records no undo");

        let fo = with(json!({"action": "failover", "target_region": "us-east-1"}));
        let out = run(&host, &fo).unwrap();
        assert_eq!(
            out.undo.unwrap().target_region.as_deref(),
            Some("eu-west-1")
        );
        let stored = host.kv.lock().unwrap()["gslb/undo/test-step"].clone();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
            json!({"target_region": "eu-west-1"})
        );

        // A retry (the first attempt already switched) still reports the original state.
        let again = run(&host, &fo).unwrap();
        assert_eq!(
            again.undo.unwrap().target_region.as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(primary(&host), "us-east-1");

        compensate_with::<GslbRoute53>(Invocation::for_test(&fo), host.clone()).unwrap();
        assert_eq!(primary(&host), "eu-west-1");
        assert!(
            host.kv.lock().unwrap().is_empty(),
            "compensation forgets the undo state"
        );
    }

    #[test]
    fn plan_mode_records_no_undo_and_bad_input_is_invalid() {
        let host = Arc::new(Host {
            plan: true,
            ..Host::default()
        });
        let fo = with(json!({"action": "failover", "target_region": "us-east-1"}));
        let mut inv = Invocation::for_test(&fo);
        inv.mode = Mode::Plan;
        let out: GslbOutput =
            serde_json::from_str(&run_with::<GslbRoute53>(inv, host.clone()).unwrap()).unwrap();
        assert!(out.planned);
        assert!(host.kv.lock().unwrap().is_empty());

        let mut bad = with(json!({}));
        bad["regions"][0]["bogus"] = json!(1);
        let e = run(&host, &bad).unwrap_err();
        assert_eq!(e.kind(), meridian_sdk::ErrorKind::InvalidInput);
        assert!(
            e.message().contains("regions[0]") && e.message().contains("bogus"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn describe_publishes_the_family_schema() {
        let m = meridian_sdk::export::describe::<GslbRoute53>();
        assert_eq!(m.name, "gslb-route53");
        assert!(m.supports_plan && m.supports_compensate);
        let schema: serde_json::Value = serde_json::from_str(&m.input_schema).unwrap();
        assert!(schema["properties"]["provider"].is_object());
        assert!(m.output_schema.contains("change_id"));
        assert!(
            m.needs
                .iter()
                .any(|n| n.kind == meridian_sdk::GrantKind::Http
                    && n.detail.contains("`provider.route53.endpoint`"))
        );
    }
}
