//! Unit tests of the step logic against an in-memory Route 53 that keeps records and health
//! checks, answers in the real XML shapes, and can inject errors and PENDING changes.

use std::cell::RefCell;
use std::collections::BTreeMap;

use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, Health};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Clock, Env, FakeClock, MapSecrets, NoLog, StepError};
use meridian_sdk::http::{Request, Response, Transport};
use serde_json::json;

use crate::xml::{self, RecordSet};

#[derive(Default)]
struct FakeR53 {
    records: Vec<RecordSet>,
    checks: Vec<(String, String, bool)>, // id, caller reference, healthy
    pending_polls: u32,
    fail_next: Option<(u16, String)>,
    changes: u32,
    /// Ids of the health checks deleted, in order.
    deleted_checks: Vec<String>,
    /// Every caller reference a check was created with, deleted ones included.
    references: Vec<String>,
}

impl FakeR53 {
    fn handle(&mut self, req: &Request) -> Response {
        assert!(
            req.header_value("authorization")
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 Credential=AK/")
        );
        if let Some((status, body)) = self.fail_next.take() {
            return Response::new(status, body);
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
            ("GET", p) if p.starts_with("/2013-04-01/hostedzone/") => Response::new(
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
                // Route 53 refuses a reference that an existing or a deleted check has.
                if self.references.contains(&r) {
                    return Response::new(
                        409,
                        format!(
                            "<ErrorResponse><Error><Code>HealthCheckAlreadyExists</Code><Message>{r} was used</Message></Error></ErrorResponse>"
                        ),
                    );
                }
                self.references.push(r.clone());
                let id = format!("hc-{}", self.references.len());
                self.checks.push((id.clone(), r, true));
                Response::new(
                    201,
                    format!(
                        "<CreateHealthCheckResponse><HealthCheck><Id>{id}</Id></HealthCheck></CreateHealthCheckResponse>"
                    ),
                )
            }
            ("DELETE", p) if p.starts_with("/2013-04-01/healthcheck/") => {
                let id = p.trim_start_matches("/2013-04-01/healthcheck/");
                // Stricter than Route 53, which lets a check in use be deleted (its records then
                // fail over unpredictably): here that is a bug in the step, so the test fails.
                assert!(
                    !self
                        .records
                        .iter()
                        .any(|r| r.health_check_id.as_deref() == Some(id)),
                    "health check {id} deleted while a record still uses it"
                );
                let before = self.checks.len();
                self.checks.retain(|c| c.0 != id);
                if self.checks.len() == before {
                    return Response::new(
                        404,
                        format!(
                            "<ErrorResponse><Error><Code>NoSuchHealthCheck</Code><Message>A health check with id {id} does not exist.</Message></Error></ErrorResponse>"
                        ),
                    );
                }
                self.deleted_checks.push(id.to_owned());
                ok("<DeleteHealthCheckResponse/>")
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
            let action = text(change, "Action").unwrap();
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
            let same_set = |r: &RecordSet| {
                r.name == rr.name && r.rtype == rr.rtype && r.set_identifier == rr.set_identifier
            };
            match action.as_str() {
                "UPSERT" => {
                    self.records.retain(|r| !same_set(r));
                    self.records.push(rr);
                }
                "DELETE" => {
                    // Route 53 deletes only a record that matches in every field.
                    let i = self.records.iter().position(|r| *r == rr);
                    self.records.remove(i.unwrap_or_else(|| {
                        panic!("DELETE of {rr:?}, which does not match {:?}", self.records)
                    }));
                }
                other => panic!("unexpected change action {other}"),
            }
        }
    }
}

fn ok(body: &str) -> Response {
    Response::new(200, body)
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

mod cleanup;
mod records;

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
    let r1 = crate::reference_prefix("Z1", &i, "eu-west-1", &cfg);
    assert_eq!(r1, crate::reference_prefix("Z1", &i, "eu-west-1", &cfg));
    assert!(r1.starts_with(&crate::record_reference("Z1", &i)));
    // Route 53 allows 64 characters; the creation time in hex (ms) takes at most 16.
    assert!(r1.len() + 16 <= 64, "{r1}");
    let mut changed = cfg.clone();
    changed.failure_threshold = 5;
    assert_ne!(r1, crate::reference_prefix("Z1", &i, "eu-west-1", &changed));
    assert_ne!(r1, crate::reference_prefix("Z1", &i, "us-east-1", &cfg));
    // Another zone, name or type is another record: its checks are never this one's.
    let mut aaaa = i.clone();
    aaaa.record_type = serde_json::from_value(json!("AAAA")).unwrap();
    let mut other_name = i.clone();
    other_name.record = "www.example.com".into();
    let tags = [
        crate::record_reference("Z1", &i),
        crate::record_reference("Z2", &i),
        crate::record_reference("Z1", &aaaa),
        crate::record_reference("Z1", &other_name),
    ];
    assert_eq!(
        tags.iter().collect::<std::collections::BTreeSet<_>>().len(),
        4
    );
    assert!(crate::looks_like_aws_region("us-gov-west-1"));
    assert!(!crate::looks_like_aws_region("eu"));
}

/// The component glue (meridian_families::sdk) over the SDK's `run_with`, with a host whose
/// HTTP is the fake Route 53 and whose kv is a map.
mod component {
    use std::sync::{Arc, Mutex};

    use meridian_families::gslb::GslbOutput;
    use meridian_sdk::testing::MockHost;
    use meridian_sdk::{Invocation, Mode, compensate_with, run_with};
    use serde_json::json;

    use super::FakeR53;
    use crate::GslbRoute53;

    /// A host whose HTTP is the fake Route 53 (shared with the test) and which grants the AWS
    /// keys; with `plan`, mutating requests are recorded as the sandbox does in plan mode.
    struct Host {
        host: Arc<MockHost>,
        r53: Arc<Mutex<FakeR53>>,
    }

    impl Host {
        fn new(plan: bool) -> Self {
            let r53 = Arc::new(Mutex::new(FakeR53::default()));
            let fake = Arc::clone(&r53);
            let mut host = MockHost::new()
                .http(move |req| Ok(fake.lock().unwrap().handle(req)))
                .secret("AWS_ACCESS_KEY_ID", "AK")
                .secret("AWS_SECRET_ACCESS_KEY", "SK");
            if plan {
                host = host.plan();
            }
            Self {
                host: Arc::new(host),
                r53,
            }
        }
    }

    fn with(extra: serde_json::Value) -> serde_json::Value {
        serde_json::to_value(super::input(extra)).unwrap()
    }

    fn run(host: &Host, input: &serde_json::Value) -> Result<GslbOutput, meridian_sdk::Error> {
        let out = run_with::<GslbRoute53>(Invocation::for_test(input), host.host.clone())?;
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
        let host = Host::new(false);
        run(&host, &with(json!({}))).unwrap();
        assert!(host.host.kv().is_empty(), "apply records no undo");

        let fo = with(json!({"action": "failover", "target_region": "us-east-1"}));
        let out = run(&host, &fo).unwrap();
        assert_eq!(
            out.undo.unwrap().target_region.as_deref(),
            Some("eu-west-1")
        );
        let stored = host.host.kv()["gslb/undo/test-step"].clone();
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

        compensate_with::<GslbRoute53>(Invocation::for_test(&fo), host.host.clone()).unwrap();
        assert_eq!(primary(&host), "eu-west-1");
        assert!(
            host.host.kv().is_empty(),
            "compensation forgets the undo state"
        );
    }

    #[test]
    fn plan_mode_records_no_undo_and_bad_input_is_invalid() {
        let host = Host::new(true);
        let fo = with(json!({"action": "failover", "target_region": "us-east-1"}));
        let mut inv = Invocation::for_test(&fo);
        inv.mode = Mode::Plan;
        let out: GslbOutput =
            serde_json::from_str(&run_with::<GslbRoute53>(inv, host.host.clone()).unwrap())
                .unwrap();
        assert!(out.planned);
        assert!(host.host.kv().is_empty());

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
