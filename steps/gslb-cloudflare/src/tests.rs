//! Unit tests against an in-memory Cloudflare that keeps monitors, pools and load balancers,
//! answers with the v4 envelope, pages lists, checks the bearer token and can inject errors.

use std::cell::RefCell;
use std::collections::BTreeMap;

use meridian_families::gslb::{ChangeOp, GslbAction, GslbInput, GslbOutput, Health};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Env, FakeClock, MapSecrets, NoLog, StepError};
use meridian_sdk::http::{Request, Response, Transport};
use serde_json::{Value, json};

const ACCOUNT: &str = "acc0123";
const ZONE: &str = "zone0123";

#[derive(Default)]
struct FakeCf {
    monitors: Vec<Value>,
    pools: Vec<Value>,
    lbs: Vec<Value>,
    next_id: u32,
    /// pool id → PoP reports
    health: BTreeMap<String, Vec<bool>>,
    fail_next: Option<(u16, Value)>,
    writes: u32,
}

fn envelope(result: Value) -> Response {
    Response::new(
        200,
        json!({"success": true, "errors": [], "messages": [], "result": result}).to_string(),
    )
}

fn failure(status: u16, code: u32, message: &str) -> Response {
    Response::new(status, json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}).to_string())
}

impl FakeCf {
    fn handle(&mut self, req: &Request) -> Response {
        if req.header_value("authorization") != Some("Bearer tok") {
            return failure(403, 10000, "Authentication error");
        }
        if let Some((status, body)) = self.fail_next.take() {
            return Response::new(status, body.to_string());
        }
        let url = req.url.strip_prefix("http://cf.test/client/v4/").unwrap();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let body: Value = req
            .body
            .as_ref()
            .map(|b| serde_json::from_slice(b).unwrap())
            .unwrap_or(Value::Null);
        let segs: Vec<&str> = path.split('/').collect();
        let acct = format!("accounts/{ACCOUNT}/load_balancers/");
        let (coll, rest): (&mut Vec<Value>, Vec<&str>) = if let Some(r) = path.strip_prefix(&acct) {
            let parts: Vec<&str> = r.split('/').collect();
            match parts[0] {
                "monitors" => (&mut self.monitors, parts[1..].to_vec()),
                "pools" => {
                    if parts.len() == 3 && parts[2] == "health" {
                        let reports = self.health.get(parts[1]).cloned().unwrap_or_default();
                        let pops: serde_json::Map<String, Value> = reports
                            .iter()
                            .enumerate()
                            .map(|(i, h)| (format!("POP{i}"), json!({"healthy": h, "origins": []})))
                            .collect();
                        return envelope(json!({"pool_id": parts[1], "pop_health": pops}));
                    }
                    (&mut self.pools, parts[1..].to_vec())
                }
                _ => return failure(404, 7003, "Could not route"),
            }
        } else if path.starts_with(&format!("zones/{ZONE}/load_balancers")) {
            (&mut self.lbs, segs[3..].to_vec())
        } else {
            return failure(
                404,
                7003,
                "Could not route to /x, perhaps your object identifier is invalid?",
            );
        };
        match (req.method.as_str(), rest.as_slice()) {
            ("GET", []) => {
                // Two items per page, to exercise pagination.
                let page: usize = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("page="))
                    .map(|p| p.parse().unwrap())
                    .unwrap_or(1);
                let items: Vec<Value> = coll.iter().skip((page - 1) * 2).take(2).cloned().collect();
                let total_pages = coll.len().div_ceil(2).max(1);
                Response::new(200, json!({"success": true, "errors": [], "messages": [], "result": items,
                    "result_info": {"page": page, "per_page": 2, "count": items.len(), "total_count": coll.len(), "total_pages": total_pages}}).to_string())
            }
            ("POST", []) => {
                self.next_id += 1;
                self.writes += 1;
                let mut obj = body;
                obj["id"] = json!(format!("{:032x}", self.next_id));
                obj["created_on"] = json!("2026-11-27T00:00:00Z");
                coll.push(obj.clone());
                envelope(obj)
            }
            ("GET", [id]) => match coll.iter().find(|o| o["id"] == *id) {
                Some(o) => envelope(o.clone()),
                None => failure(404, 1002, "not found"),
            },
            ("PATCH", [id]) => match coll.iter_mut().find(|o| o["id"] == *id) {
                Some(o) => {
                    for (k, v) in body.as_object().unwrap() {
                        o[k] = v.clone();
                    }
                    self.writes += 1;
                    envelope(o.clone())
                }
                None => failure(404, 1002, "not found"),
            },
            other => panic!("unexpected {} {other:?}", req.method),
        }
    }
}

struct Harness {
    cf: RefCell<FakeCf>,
    secrets: MapSecrets,
    clock: FakeClock,
}

impl Harness {
    fn new() -> Self {
        Self {
            cf: RefCell::new(FakeCf::default()),
            secrets: MapSecrets::from_pairs([("CLOUDFLARE_API_TOKEN", "tok")]),
            clock: FakeClock::at(0),
        }
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

    fn transport(&self) -> FakeTransport<'_> {
        FakeTransport::new(|req| Ok(self.cf.borrow_mut().handle(req)))
    }

    fn run(&self, input: &GslbInput) -> Result<GslbOutput, StepError> {
        self.run_with(&self.transport(), input)
    }

    fn lb(&self) -> Value {
        self.cf.borrow().lbs[0].clone()
    }

    fn pool_id(&self, region: &str) -> String {
        let cf = self.cf.borrow();
        let p = cf
            .pools
            .iter()
            .find(|p| p["name"].as_str().unwrap().ends_with(region))
            .unwrap();
        p["id"].as_str().unwrap().to_owned()
    }
}

fn input(extra: Value) -> GslbInput {
    let mut v = json!({
        "zone": "example.com",
        "record": "api.example.com",
        "policy": "failover",
        "regions": [
            {"name": "eu-west-1", "endpoint": "203.0.113.10", "health_check": {"type": "https", "port": 7085}},
            {"name": "us-east-1", "endpoint": "198.51.100.20", "health_check": {"type": "https", "port": 7085}},
            {"name": "ap-south-1", "endpoint": "192.0.2.30"}
        ],
        "provider": {"cloudflare": {"endpoint": "http://cf.test/client/v4", "account_id": ACCOUNT, "zone_id": ZONE}}
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn apply_creates_monitors_pools_and_a_failover_balancer_once() {
    let h = Harness::new();
    let out = h.run(&input(json!({}))).unwrap();
    assert_eq!(out.active, ["eu-west-1"]);
    let kinds: Vec<(&str, ChangeOp)> = out
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.op))
        .collect();
    assert_eq!(kinds.iter().filter(|k| k.0 == "monitor").count(), 2);
    assert_eq!(kinds.iter().filter(|k| k.0 == "pool").count(), 3);
    assert_eq!(kinds.iter().filter(|k| k.0 == "load-balancer").count(), 1);
    assert!(out.synced);

    let cf = h.cf.borrow();
    let mon = &cf.monitors[0];
    assert_eq!(mon["interval"], 60, "raised to Cloudflare's minimum");
    assert_eq!(mon["header"]["Host"], json!(["api.example.com"]));
    assert_eq!(mon["path"], "/status/ready");
    let pool = cf
        .pools
        .iter()
        .find(|p| p["name"] == "api-example-com-eu-west-1")
        .unwrap();
    assert_eq!(pool["origins"][0]["address"], "203.0.113.10");
    assert_eq!(pool["monitor"], mon["id"]);
    assert!(
        cf.pools
            .iter()
            .find(|p| p["name"] == "api-example-com-ap-south-1")
            .unwrap()
            .get("monitor")
            .is_none()
    );
    let lb = cf.lbs[0].clone();
    assert_eq!(lb["name"], "api.example.com");
    assert_eq!(lb["steering_policy"], "off");
    assert_eq!(lb["ttl"], 60);
    let writes = cf.writes;
    drop(cf);
    assert_eq!(lb["default_pools"][0], json!(h.pool_id("eu-west-1")));
    assert_eq!(lb["fallback_pool"], json!(h.pool_id("ap-south-1")));

    // Idempotent: reads only (the fake pages lists two at a time).
    let again = h.run(&input(json!({}))).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(h.cf.borrow().writes, writes);
    assert_eq!(h.cf.borrow().pools.len(), 3);
}

#[test]
fn failover_reorders_default_pools_and_compensation_restores() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let fo = input(json!({"action": "failover", "target_region": "us-east-1"}));
    let out = h.run(&fo).unwrap();
    assert_eq!(out.active, ["us-east-1"]);
    assert_eq!(out.order, ["us-east-1", "eu-west-1", "ap-south-1"]);
    assert_eq!(out.changes.len(), 1, "{:?}", out.changes);
    assert_eq!(out.changes[0].kind, "load-balancer");
    assert_eq!(h.lb()["default_pools"][0], json!(h.pool_id("us-east-1")));
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("eu-west-1")
    );
    assert!(h.run(&fo).unwrap().changes.is_empty());

    let http = h.transport();
    let env = Env {
        http: &http,
        secrets: &h.secrets,
        clock: &h.clock,
        log: &NoLog,
    };
    let back = crate::compensate(&env, &fo, out.undo.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(back.order, ["eu-west-1", "us-east-1", "ap-south-1"]);
    assert_eq!(h.lb()["default_pools"][0], json!(h.pool_id("eu-west-1")));
}

#[test]
fn weighted_uses_random_steering_with_exact_weights() {
    let h = Harness::new();
    let mut w = input(json!({"policy": "weighted"}));
    w.regions[0].weight = Some(200);
    w.regions[1].weight = Some(55);
    w.regions[2].weight = Some(0);
    let out = h.run(&w).unwrap();
    assert_eq!(out.active, ["eu-west-1", "us-east-1"]);
    let lb = h.lb();
    assert_eq!(lb["steering_policy"], "random");
    assert_eq!(
        lb["random_steering"]["pool_weights"][h.pool_id("eu-west-1")],
        json!(0.7843)
    );
    assert_eq!(lb["fallback_pool"], json!(h.pool_id("eu-west-1")));

    let mut sw = w.clone();
    sw.action = GslbAction::SetWeights;
    sw.weights = Some(BTreeMap::from([("eu-west-1".to_owned(), 0)]));
    let out = h.run(&sw).unwrap();
    // The weights read back from 0–1 floats are the family's exact integers.
    assert_eq!(
        out.undo.unwrap().weights.unwrap(),
        BTreeMap::from([
            ("ap-south-1".to_owned(), 0),
            ("eu-west-1".to_owned(), 200),
            ("us-east-1".to_owned(), 55)
        ])
    );
    assert_eq!(out.weights["us-east-1"], 55);
    assert_eq!(out.active, ["us-east-1"]);
    for w in 0..=255 {
        assert_eq!(
            crate::from_cloudflare_weight(crate::to_cloudflare_weight(w)),
            w
        );
    }
}

#[test]
fn latency_uses_dynamic_latency() {
    let h = Harness::new();
    h.run(&input(json!({"policy": "latency"}))).unwrap();
    assert_eq!(h.lb()["steering_policy"], "dynamic_latency");
}

#[test]
fn status_reads_pool_health() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let eu = h.pool_id("eu-west-1");
    let us = h.pool_id("us-east-1");
    h.cf.borrow_mut()
        .health
        .insert(eu, vec![false, false, true]);
    h.cf.borrow_mut().health.insert(us, vec![true, true]);
    let st = h.run(&input(json!({"action": "status"}))).unwrap();
    assert_eq!(st.status["eu-west-1"], Health::Unhealthy);
    assert_eq!(st.status["us-east-1"], Health::Healthy);
    assert_eq!(st.status["ap-south-1"], Health::Unknown, "no monitor");
    assert_eq!(st.active, ["us-east-1"]);
}

#[test]
fn errors_are_classified() {
    let h = Harness::new();
    let bad_token = Harness {
        secrets: MapSecrets::from_pairs([("CLOUDFLARE_API_TOKEN", "wrong")]),
        ..Harness::new()
    };
    let e = bad_token.run(&input(json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("CLOUDFLARE_API_TOKEN") && m.contains("10000")),
        "{e:?}"
    );

    h.cf.borrow_mut().fail_next = Some((
        429,
        json!({"success": false, "errors": [{"code": 971, "message": "rate limited"}]}),
    ));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));
    h.cf.borrow_mut().fail_next = Some((502, json!("bad gateway")));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    let mut wrong_zone = input(json!({}));
    wrong_zone.provider.cloudflare.as_mut().unwrap().zone_id = "nozone".into();
    let e = h.run(&wrong_zone).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("zone_id")),
        "{e:?}"
    );

    h.cf.borrow_mut().fail_next = Some((
        400,
        json!({"success": false, "errors": [{"code": 1002, "message": "Load Balancing is not enabled"}]}),
    ));
    let e = h.run(&input(json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("Load Balancing is not enabled")),
        "{e:?}"
    );

    let mut no_cfg = input(json!({}));
    no_cfg.provider.cloudflare = None;
    assert!(
        matches!(h.run(&no_cfg), Err(StepError::InvalidInput(m)) if m.contains("provider.cloudflare"))
    );
}

#[test]
fn plan_mode_records_and_uses_placeholders() {
    let h = Harness::new();
    let plan = PlanTransport::new(h.transport());
    let out = h.run_with(&plan, &input(json!({}))).unwrap();
    assert!(out.planned && !out.synced);
    assert_eq!(out.changes.len(), 6);
    let planned = plan.planned();
    assert_eq!(planned.len(), 6);
    let lb_body: Value = serde_json::from_slice(planned[5].body.as_ref().unwrap()).unwrap();
    assert_eq!(
        lb_body["default_pools"][0],
        "planned:pool:api-example-com-eu-west-1"
    );
    assert!(h.cf.borrow().pools.is_empty());
}

#[test]
fn subset_comparison() {
    assert!(crate::subset_eq(
        &json!({"a": 1, "b": [{"x": 1.0}]}),
        &json!({"a": 1.0, "b": [{"x": 1, "y": 2}], "c": 3})
    ));
    assert!(!crate::subset_eq(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    assert!(!crate::subset_eq(&json!({"a": 1}), &json!({})));
}
