//! The step end to end against a real `moto_server` (Route 53 REST-XML emulator) started on a
//! free loopback port per test and killed on drop. moto does not check signatures and does not
//! evaluate health, so these tests prove the API conversation, not SigV4 (see `vectors`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gslb_route53::sigv4::{self, Credentials};
use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, GslbOutput, Health};
use meridian_families::testing::PlanTransport;
use meridian_families::{Env, MapSecrets, NoLog, StdClock, StepError, UreqTransport};
use meridian_sdk::http::{Request, Transport};
use serde_json::json;

/// A moto_server child process; killed and reaped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// Starts moto, or returns `None` (with a notice) when `moto_server` is not installed.
    ///
    /// moto binds a port of the kernel's choosing (`-p 0`) and names it on stderr: a port picked
    /// here and handed over could be taken in between (two tests picked the same one once; the
    /// second moto exited and its test talked to the first's until that one was killed).
    fn start() -> Option<Self> {
        let mut child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIPPED: moto_server not runnable ({e}); install it with: pip install 'moto[server]'"
                );
                return None;
            }
        };
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads to the end: moto logs every request there, and a full pipe would stall it.
        std::thread::spawn(move || {
            const READY: &str = "Running on http://127.0.0.1:";
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line.split(READY).nth(1) {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let mut moto = Self {
            child,
            endpoint: String::new(),
        };
        let port = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(port)) => port,
            Ok(None) => panic!("moto_server named no port it listens on"),
            Err(_) => panic!(
                "moto_server did not say where it listens within 15 s (exited: {:?})",
                moto.child.try_wait()
            ),
        };
        moto.endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not listen on 127.0.0.1:{port} within 15 s");
    }

    /// Creates a hosted zone (the step never creates zones) and returns its id.
    fn create_zone(&self, name: &str) -> String {
        let body = format!(
            "<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>{name}</Name><CallerReference>{name}</CallerReference></CreateHostedZoneRequest>"
        );
        let resp = self.signed("POST", "/2013-04-01/hostedzone", Some(body));
        assert_eq!(resp.0, 201, "{}", resp.1);
        let doc = roxmltree::Document::parse(&resp.1).unwrap();
        let id = doc
            .descendants()
            .find(|n| n.has_tag_name("Id"))
            .unwrap()
            .text()
            .unwrap();
        id.trim_start_matches("/hostedzone/").to_owned()
    }

    /// A signed raw call, for checks independent of the step's own client.
    fn signed(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let mut req = Request::new(method, format!("{}{path}", self.endpoint));
        if let Some(b) = body {
            req = req.body(b.into_bytes());
        }
        let creds = Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        sigv4::sign(&mut req, &creds, "us-east-1", "route53", now).unwrap();
        let resp = UreqTransport::default().send(&req).unwrap();
        (resp.status, resp.text())
    }

    /// `(set identifier, failover/weight/region, value, health check id)` of the rrsets named `name`.
    fn records(&self, zone_id: &str, name: &str) -> Vec<(String, String, String, Option<String>)> {
        let (status, body) = self.signed(
            "GET",
            &format!("/2013-04-01/hostedzone/{zone_id}/rrset"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let doc = roxmltree::Document::parse(&body).unwrap();
        let mut out = Vec::new();
        for rr in doc
            .descendants()
            .filter(|n| n.has_tag_name("ResourceRecordSet"))
        {
            let t = |tag: &str| {
                rr.descendants()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.text())
                    .map(str::to_owned)
            };
            if t("Name").as_deref() != Some(name) {
                continue;
            }
            let policy = t("Failover")
                .or(t("Weight"))
                .or(t("Region"))
                .unwrap_or_default();
            out.push((
                t("SetIdentifier").unwrap_or_default(),
                policy,
                t("Value").unwrap_or_default(),
                t("HealthCheckId"),
            ));
        }
        out.sort();
        out
    }

    fn health_check_count(&self) -> usize {
        self.health_check_ids().len()
    }

    fn health_check_ids(&self) -> Vec<String> {
        let (status, body) = self.signed("GET", "/2013-04-01/healthcheck", None);
        assert_eq!(status, 200, "{body}");
        let doc = roxmltree::Document::parse(&body).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("HealthCheck"))
            .filter_map(|hc| {
                hc.children()
                    .find(|n| n.has_tag_name("Id"))
                    .and_then(|n| n.text())
                    .map(str::to_owned)
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_on(http: &dyn Transport, input: &GslbInput) -> Result<GslbOutput, StepError> {
    let secrets = MapSecrets::from_pairs([
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    let env = Env {
        http,
        secrets: &secrets,
        clock: &StdClock,
        log: &NoLog,
    };
    gslb_route53::run(&env, input)
}

fn run(input: &GslbInput) -> Result<GslbOutput, StepError> {
    run_on(&UreqTransport::default(), input)
}

fn input(moto: &Moto, zone_id: Option<&str>, extra: serde_json::Value) -> GslbInput {
    let mut provider = json!({"endpoint": moto.endpoint});
    if let Some(id) = zone_id {
        provider["hosted_zone_id"] = json!(id);
    }
    let mut v = json!({
        "zone": "example.com",
        "record": "api.example.com",
        "policy": "failover",
        "regions": [
            {"name": "eu-west-1", "endpoint": "203.0.113.10", "primary": true,
             "health_check": {"type": "https", "port": 7085, "path": "/status/ready"}},
            {"name": "us-east-1", "endpoint": "198.51.100.20",
             "health_check": {"type": "https", "port": 7085, "path": "/status/ready"}}
        ],
        "provider": {"route53": provider},
        "timeout_ms": 10000
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn failover_apply_failover_and_compensate() {
    let Some(moto) = Moto::start() else { return };
    let zone = moto.create_zone("example.com.");

    // Zone looked up by name (no hosted_zone_id).
    let out = run(&input(&moto, None, json!({}))).unwrap();
    assert_eq!(out.active, ["eu-west-1"]);
    assert!(out.change_id.is_some() && out.synced);
    let recs = moto.records(&zone, "api.example.com.");
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(
        (recs[0].0.as_str(), recs[0].1.as_str(), recs[0].2.as_str()),
        ("eu-west-1", "PRIMARY", "203.0.113.10")
    );
    assert_eq!(
        (recs[1].0.as_str(), recs[1].1.as_str()),
        ("us-east-1", "SECONDARY")
    );
    assert!(
        recs.iter().all(|r| r.3.is_some()),
        "both records carry their health check: {recs:?}"
    );
    assert_eq!(moto.health_check_count(), 2);

    // Idempotent: nothing is sent again, no health check is duplicated.
    let again = run(&input(&moto, Some(&zone), json!({}))).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(moto.health_check_count(), 2);

    // Failover: the standby becomes PRIMARY in one batch.
    let fo = input(
        &moto,
        Some(&zone),
        json!({"action": "failover", "target_region": "us-east-1"}),
    );
    let out = run(&fo).unwrap();
    assert_eq!(out.active, ["us-east-1"]);
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("eu-west-1")
    );
    let recs = moto.records(&zone, "api.example.com.");
    assert_eq!(
        (recs[0].1.as_str(), recs[1].1.as_str()),
        ("SECONDARY", "PRIMARY"),
        "{recs:?}"
    );
    assert!(
        run(&fo).unwrap().changes.is_empty(),
        "a retried failover changes nothing"
    );

    // Status reads moto's health-check status (moto always reports success).
    let st = run(&input(&moto, Some(&zone), json!({"action": "status"}))).unwrap();
    assert_eq!(st.active, ["us-east-1"]);
    assert_eq!(st.status["eu-west-1"], Health::Healthy);

    // Compensation puts the previous primary back.
    let secrets = MapSecrets::from_pairs([
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    let http = UreqTransport::default();
    let env = Env {
        http: &http,
        secrets: &secrets,
        clock: &StdClock,
        log: &NoLog,
    };
    let back = gslb_route53::compensate(&env, &fo, out.undo.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(back.active, ["eu-west-1"]);
    let recs = moto.records(&zone, "api.example.com.");
    assert_eq!(
        (recs[0].1.as_str(), recs[1].1.as_str()),
        ("PRIMARY", "SECONDARY")
    );
}

#[test]
fn weighted_latency_and_set_weights() {
    let Some(moto) = Moto::start() else { return };
    let zone = moto.create_zone("example.com.");
    let regions = json!([
        {"name": "eu-west-1", "endpoint": "eu.gw.example.net", "weight": 90},
        {"name": "us-east-1", "endpoint": "us.gw.example.net", "weight": 10}
    ]);
    let w = input(
        &moto,
        Some(&zone),
        json!({"policy": "weighted", "type": "CNAME", "record": "w.example.com", "regions": regions}),
    );
    let out = run(&w).unwrap();
    assert_eq!(out.active, ["eu-west-1", "us-east-1"]);
    assert_eq!(moto.health_check_count(), 0);
    let recs = moto.records(&zone, "w.example.com.");
    assert_eq!(
        recs.iter()
            .map(|r| (r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [("90", "eu.gw.example.net"), ("10", "us.gw.example.net")]
    );

    let mut drain = w.clone();
    drain.action = GslbAction::SetWeights;
    drain.weights = Some(BTreeMap::from([("eu-west-1".to_owned(), 0)]));
    let out = run(&drain).unwrap();
    assert_eq!(out.active, ["us-east-1"]);
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].op, ChangeOp::Update);
    assert_eq!(moto.records(&zone, "w.example.com.")[0].1, "0");

    let l = input(
        &moto,
        Some(&zone),
        json!({"policy": "latency", "record": "lat.example.com"}),
    );
    run(&l).unwrap();
    let recs = moto.records(&zone, "lat.example.com.");
    assert_eq!(
        recs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["eu-west-1", "us-east-1"]
    );
}

/// Regression: changed health-check settings and removed regions used to leave checks (and the
/// removed region's record) behind.
#[test]
fn changed_checks_and_removed_regions_are_cleaned_up() {
    let Some(moto) = Moto::start() else { return };
    let zone = moto.create_zone("example.com.");
    let hc = json!({"type": "https", "port": 7085, "path": "/status/ready"});
    let three = input(
        &moto,
        Some(&zone),
        json!({"policy": "weighted", "regions": [
            {"name": "eu-west-1", "endpoint": "203.0.113.10", "weight": 50, "health_check": hc},
            {"name": "us-east-1", "endpoint": "198.51.100.20", "weight": 50, "health_check": hc},
            {"name": "ap-south-1", "endpoint": "192.0.2.30", "weight": 0, "health_check": hc}
        ]}),
    );
    run(&three).unwrap();
    assert_eq!(moto.health_check_count(), 3);

    let mut changed = three.clone();
    for r in &mut changed.regions {
        r.health_check.as_mut().unwrap().port = Some(8443);
    }
    run(&changed).unwrap();
    let checks = moto.health_check_ids();
    assert_eq!(checks.len(), 3, "the old checks are deleted");
    let recs = moto.records(&zone, "api.example.com.");
    assert!(
        recs.iter()
            .all(|r| r.3.as_ref().is_some_and(|id| checks.contains(id))),
        "every record uses a current check: {recs:?} {checks:?}"
    );

    let mut two = changed.clone();
    two.regions.retain(|r| r.name != "ap-south-1");
    let out = run(&two).unwrap();
    assert!(
        out.changes
            .iter()
            .any(|c| c.op == ChangeOp::Delete && c.kind == "record"),
        "{:?}",
        out.changes
    );
    let recs = moto.records(&zone, "api.example.com.");
    assert_eq!(
        recs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["eu-west-1", "us-east-1"]
    );
    assert_eq!(moto.health_check_count(), 2);
    assert!(
        run(&two).unwrap().changes.is_empty(),
        "a second run changes nothing"
    );
}

#[test]
fn plan_mode_changes_nothing() {
    let Some(moto) = Moto::start() else { return };
    let zone = moto.create_zone("example.com.");
    let plan = PlanTransport::new(UreqTransport::default());
    let out = run_on(&plan, &input(&moto, Some(&zone), json!({}))).unwrap();
    assert!(out.planned);
    assert_eq!(out.changes.len(), 4);
    assert_eq!(plan.planned().len(), 3);
    assert!(moto.records(&zone, "api.example.com.").is_empty());
    assert_eq!(moto.health_check_count(), 0);
}

#[test]
fn missing_zones_are_fatal_and_named() {
    let Some(moto) = Moto::start() else { return };
    let e = run(&input(&moto, Some("ZNOTHERE"), json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("NoSuchHostedZone") && m.contains("example.com.")),
        "{e:?}"
    );
    let e = run(&input(&moto, None, json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("no hosted zone named `example.com.`")),
        "{e:?}"
    );
}

#[test]
fn a_dead_endpoint_is_retryable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut i: GslbInput = serde_json::from_value(json!({
        "zone": "example.com", "record": "api.example.com", "policy": "weighted",
        "regions": [{"name": "a", "endpoint": "192.0.2.1"}],
        "provider": {"route53": {"endpoint": format!("http://127.0.0.1:{port}"), "hosted_zone_id": "Z1"}}
    }))
    .unwrap();
    i.wait = false;
    assert!(matches!(run(&i), Err(StepError::Retryable(m)) if m.contains("cannot connect")));
}
