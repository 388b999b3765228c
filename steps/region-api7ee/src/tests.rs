//! Unit tests against an in-memory control plane answering like `meridian_emulators::Api7Cp`
//! (routes and bodies as runtime/emulators/src/api7/ serves them) and data planes whose
//! `/status/ready` can be flipped.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use meridian_families::region::{MapMemo, RegionInput, RegionOutput};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Clock, Env, FakeClock, MapSecrets, NoLog, StepError};
use meridian_sdk::http::{HttpError, Request, Response, Transport};

use serde_json::json;

const CP: &str = "http://127.0.0.1:7080";
const TOKEN: &str = "a7ee-token";

#[derive(Default)]
struct FakeCp {
    groups: RefCell<BTreeMap<String, String>>,
    tokens: Cell<u32>,
    keys: Cell<u32>,
    /// Readiness polls each data plane fails before it answers 200.
    dp_warmup: Cell<u32>,
    dp_polls: Cell<u32>,
    /// Data planes (by host) that never answer ready: not started by the platform yet.
    dp_missing: RefCell<Vec<&'static str>>,
}

impl FakeCp {
    fn answer(&self, req: &Request) -> Result<Response, HttpError> {
        if let Some(rest) = req.url.strip_prefix("http://10.0.0.") {
            assert!(rest.ends_with(":7085/status/ready"), "{}", req.url);
            self.dp_polls.set(self.dp_polls.get() + 1);
            if self.dp_missing.borrow().iter().any(|h| req.url.contains(h)) {
                return Err(HttpError::Connect("connection refused".into()));
            }
            return Ok(if self.dp_polls.get() > self.dp_warmup.get() {
                Response::new(200, r#"{"status":"ok"}"#)
            } else {
                Response::new(
                    503,
                    r#"{"status":"error","error":"worker id: 0 has not received configuration"}"#,
                )
            });
        }
        let path = req.url.strip_prefix(CP).expect("control-plane URL");
        if req.header_value("x-api-key") != Some(TOKEN) {
            return Ok(Response::new(401, r#"{"error_msg":"invalid api key"}"#));
        }
        let ok = |v: serde_json::Value| Ok(Response::new(200, v.to_string()));
        match (req.method.as_str(), path) {
            ("GET", p) if p.starts_with("/api/gateway_groups?name=") => {
                let name = p
                    .trim_start_matches("/api/gateway_groups?name=")
                    .replace("%20", " ");
                let list: Vec<_> = self
                    .groups
                    .borrow()
                    .iter()
                    .filter(|(_, n)| n.contains(&name))
                    .map(|(id, n)| json!({"id": id, "name": n}))
                    .collect();
                ok(json!({"list": list, "total": list.len()}))
            }
            ("POST", "/api/gateway_groups") => {
                let body: serde_json::Value =
                    serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
                let name = body["name"].as_str().unwrap().to_owned();
                if self.groups.borrow().values().any(|n| *n == name) {
                    return Ok(Response::new(
                        400,
                        format!(r#"{{"error_msg":"gateway group name [{name}] already exists"}}"#),
                    ));
                }
                let id = format!("gg-{}", self.groups.borrow().len() + 1);
                self.groups.borrow_mut().insert(id.clone(), name.clone());
                ok(json!({"value": {"id": id, "name": name}}))
            }
            ("POST", p) if p.ends_with("/instance_token") => {
                self.tokens.set(self.tokens.get() + 1);
                ok(json!({"value": {"token_plain_text": "a7ee-instance-secret"}}))
            }
            ("PUT", p) if p.ends_with("/admin_key") => {
                self.keys.set(self.keys.get() + 1);
                ok(json!({"value": {"key": "a7adm-secret-key"}}))
            }
            ("GET", p) if p.ends_with("/instances") => {
                ok(json!({"list": [{"id": "i1"}], "total": 1}))
            }
            _ => Ok(Response::new(404, r#"{"error_msg":"not found"}"#)),
        }
    }
}

fn input(action: &str, extra: serde_json::Value) -> RegionInput {
    let mut provider = json!({"control_plane": CP, "token_secret": "API7_TOKEN",
                              "data_planes": ["http://10.0.0.5:7085", "http://10.0.0.6:7085/status/ready"]});
    for (k, v) in extra.as_object().unwrap() {
        provider[k] = v.clone();
    }
    RegionInput::from_json(
        &json!({"action": action, "region": "eu-west", "timeout_ms": 3_000, "poll_interval_ms": 250,
                "provider": {"api7ee": provider}})
        .to_string(),
    )
    .unwrap()
}

fn run_with(
    http: &dyn Transport,
    clock: &FakeClock,
    memo: &MapMemo,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    let secrets = MapSecrets::from_pairs([("API7_TOKEN", TOKEN)]);
    let env = Env {
        http,
        secrets: &secrets,
        clock,
        log: &NoLog,
    };
    crate::run(&env, memo, input, plan)
}

#[test]
fn deploy_creates_the_group_issues_once_and_waits_for_the_data_planes() {
    let cp = FakeCp::default();
    cp.dp_warmup.set(3);
    let http = FakeTransport::new(|r| cp.answer(r));
    let clock = FakeClock::at(1_000);
    let memo = MapMemo::default();
    let out = run_with(&http, &clock, &memo, &input("deploy", json!({})), false).unwrap();
    assert_eq!(out.gateway_group_id.as_deref(), Some("gg-1"));
    assert_eq!(
        (out.gateway_group_created, out.instance_token_issued),
        (Some(true), Some(true))
    );
    assert!(
        out.admin_key_secret_hint
            .as_deref()
            .unwrap()
            .contains("withheld")
    );
    assert_eq!(out.instances, Some(1));
    assert!(out.changed);
    assert!(out.ready);
    assert_eq!(out.status, "ready");
    assert_eq!(out.data_planes.values().filter(|r| **r).count(), 2);
    // 3 failed probes: the first round (2) and one of the second; then all ready.
    assert_eq!((out.ready_at_ms, out.waited_ms), (Some(1_500), Some(500)));
    let all = serde_json::to_string(&out).unwrap();
    for secret in ["a7adm-secret-key", "a7ee-instance-secret", TOKEN] {
        assert!(!all.contains(secret), "{secret} in the output: {all}");
    }

    // A retry in the same run neither creates nor issues again; the group is found by name.
    let again = run_with(&http, &clock, &memo, &input("deploy", json!({})), false).unwrap();
    assert_eq!(
        (
            again.gateway_group_created,
            again.gateway_group_id.as_deref()
        ),
        (Some(false), Some("gg-1"))
    );
    assert_eq!((cp.tokens.get(), cp.keys.get()), (1, 1));
    assert!(
        again.changes.is_empty() && !again.changed,
        "{:?}",
        again.changes
    );
    // A new run issues a token (and the key) again; the group stays.
    let next = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("deploy", json!({"issue_admin_key": false})),
        false,
    )
    .unwrap();
    assert_eq!(
        (cp.tokens.get(), cp.keys.get(), cp.groups.borrow().len()),
        (2, 1, 1)
    );
    assert!(
        next.admin_key_secret_hint
            .unwrap()
            .contains("issue_admin_key: false")
    );
}

#[test]
fn group_name_defaults_to_the_region_and_must_match_exactly() {
    let cp = FakeCp::default();
    cp.groups
        .borrow_mut()
        .insert("gg-9".into(), "eu-west-2".into());
    let http = FakeTransport::new(|r| cp.answer(r));
    let out = run_with(
        &http,
        &FakeClock::at(0),
        &MapMemo::default(),
        &input("status", json!({})),
        false,
    )
    .unwrap();
    assert_eq!(
        (out.status.as_str(), out.ready, out.gateway_group_id),
        ("missing", false, None)
    );
    assert_eq!(out.data_planes.len(), 2, "data planes are still probed");

    let out = run_with(
        &http,
        &FakeClock::at(0),
        &MapMemo::default(),
        &input("status", json!({"gateway_group": "eu-west-2"})),
        false,
    )
    .unwrap();
    assert_eq!(
        (out.gateway_group_id.as_deref(), out.ready),
        (Some("gg-9"), true)
    );
    assert_eq!(cp.tokens.get(), 0, "status issues nothing");
}

#[test]
fn plan_mode_records_the_bootstrap_and_does_not_wait() {
    let cp = FakeCp::default();
    cp.dp_warmup.set(100);
    let http = PlanTransport::new(FakeTransport::new(|r| cp.answer(r)));
    let clock = FakeClock::at(0);
    let out = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("deploy", json!({})),
        true,
    )
    .unwrap();
    assert!(out.planned);
    assert_eq!(
        (out.status.as_str(), out.gateway_group_id, out.ready),
        ("planned", None, false)
    );
    assert_eq!(out.changes.len(), 3, "{:?}", out.changes);
    assert_eq!(
        http.planned().len(),
        1,
        "only the create is sent (recorded); the rest needs its id"
    );
    assert!(cp.groups.borrow().is_empty());
    assert_eq!(clock.now_unix_ms(), 0, "no waiting in plan mode");
}

fn three_planes(action: &str, capacity: u32, min: Option<u32>) -> RegionInput {
    RegionInput::from_json(
        &json!({"action": action, "region": "eu-west", "timeout_ms": 3_000, "poll_interval_ms": 250,
                "capacity": capacity, "min_capacity": min,
                "provider": {"api7ee": {"control_plane": CP, "token_secret": "API7_TOKEN",
                    "data_planes": ["http://10.0.0.5:7085", "http://10.0.0.6:7085", "http://10.0.0.7:7085"]}}})
        .to_string(),
    )
    .unwrap()
}

#[test]
fn scale_waits_for_the_data_planes_the_platform_started() {
    let cp = FakeCp::default();
    cp.groups
        .borrow_mut()
        .insert("gg-1".into(), "eu-west".into());
    // The third data plane is still being started by the platform.
    cp.dp_missing.borrow_mut().push("10.0.0.7");
    let http = FakeTransport::new(|r| cp.answer(r));
    let clock = FakeClock::at(0);
    let memo = MapMemo::default();
    let out = run_with(
        &http,
        &clock,
        &memo,
        &three_planes("scale", 3, Some(2)),
        false,
    )
    .unwrap();
    assert!(out.ready);
    assert_eq!(
        (out.capacity, out.instances_ready, out.capacity_ready_at_ms),
        (Some(3), Some(2), None)
    );
    assert_eq!(
        out.instances,
        Some(1),
        "the control plane's registered instances"
    );
    assert!(!out.changed, "scale on API7 changes nothing itself");

    // Full capacity is not there: a bounded, retryable wait that says how many are ready.
    let e = run_with(&http, &clock, &memo, &three_planes("scale", 3, None), false).unwrap_err();
    assert!(e.is_retryable());
    assert!(e.message().contains("(2 of 3 ready, 3 needed)"), "{e:?}");

    // The platform started it: wait-ready with capacity reports when all three answered.
    cp.dp_missing.borrow_mut().clear();
    let t = clock.now_unix_ms();
    let full = run_with(
        &http,
        &clock,
        &memo,
        &three_planes("wait-ready", 3, None),
        false,
    )
    .unwrap();
    assert_eq!(full.capacity_ready_at_ms, Some(t));
    assert_eq!(full.instances_ready, Some(3));

    // More capacity than data planes listed cannot be waited for.
    let mut bad = input("wait-ready", json!({}));
    bad.capacity = Some(3);
    let e = run_with(&http, &clock, &memo, &bad, false).unwrap_err();
    assert!(
        matches!(&e, StepError::InvalidInput(m) if m.contains("lists 2")),
        "{e:?}"
    );
}

#[test]
fn data_planes_that_stay_down_are_a_retryable_error_naming_each() {
    let cp = FakeCp::default();
    cp.dp_warmup.set(1_000);
    let http = FakeTransport::new(|r| cp.answer(r));
    let clock = FakeClock::at(0);
    let e = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("wait-ready", json!({})),
        false,
    )
    .unwrap_err();
    assert!(e.is_retryable());
    let m = e.message();
    assert!(m.contains("not ready after 3000 ms"), "{m}");
    assert!(
        m.contains("http://10.0.0.5:7085/status/ready: HTTP 503")
            && m.contains("http://10.0.0.6:7085/status/ready"),
        "{m}"
    );
    assert_eq!(clock.now_unix_ms(), 3_000);
    assert!(
        http.lines().iter().all(|l| !l.contains(CP)),
        "wait-ready does not call the control plane"
    );
}

#[test]
fn refusals_and_bad_input_are_clear() {
    let cp = FakeCp::default();
    let http = FakeTransport::new(|r| cp.answer(r));
    let clock = FakeClock::at(0);
    let memo = MapMemo::default();
    let secrets = MapSecrets::from_pairs([("API7_TOKEN", "wrong")]);
    let env = Env {
        http: &http,
        secrets: &secrets,
        clock: &clock,
        log: &NoLog,
    };
    let e = crate::run(&env, &memo, &input("deploy", json!({})), false).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("HTTP 401") && m.contains("secret `API7_TOKEN`")),
        "{e:?}"
    );
    assert!(
        !e.message().contains("wrong"),
        "the token value is never in a message"
    );

    let e = run_with(
        &http,
        &clock,
        &memo,
        &input("deploy", json!({"token_secret": "MISSING"})),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("`MISSING`")),
        "{e:?}"
    );
    let e = run_with(
        &http,
        &clock,
        &memo,
        &input("deploy", json!({"data_planes": []})),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&e, StepError::InvalidInput(m) if m.starts_with("provider.api7ee.data_planes")),
        "{e:?}"
    );
    let e = run_with(
        &http,
        &clock,
        &memo,
        &input("deploy", json!({"data_planes": ["10.0.0.5:7085"]})),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&e, StepError::InvalidInput(m) if m.starts_with("provider.api7ee.data_planes[0]")),
        "{e:?}"
    );
    let e = run_with(&http, &clock, &memo, &input("kill", json!({})), false).unwrap_err();
    assert!(
        matches!(&e, StepError::InvalidInput(m) if m.contains("use one of deploy, status, wait-ready"))
    );

    let down = FakeTransport::new(|_| Err(HttpError::Connect("refused".into())));
    let e = run_with(&down, &clock, &memo, &input("deploy", json!({})), false).unwrap_err();
    assert!(e.is_retryable());
}

#[test]
fn a_group_created_concurrently_is_adopted() {
    let cp = FakeCp::default();
    let lists = Cell::new(0);
    // The first lookup misses the group another writer creates in the meantime.
    let http = FakeTransport::new(|r| {
        if r.method == "GET" && r.url.contains("gateway_groups?name=") {
            lists.set(lists.get() + 1);
            if lists.get() == 1 {
                cp.groups
                    .borrow_mut()
                    .insert("gg-7".into(), "eu-west".into());
                return Ok(Response::new(200, r#"{"list":[],"total":0}"#));
            }
        }
        cp.answer(r)
    });
    let out = run_with(
        &http,
        &FakeClock::at(0),
        &MapMemo::default(),
        &input("deploy", json!({})),
        false,
    )
    .unwrap();
    assert_eq!(
        (out.gateway_group_id.as_deref(), out.gateway_group_created),
        (Some("gg-7"), Some(false))
    );
}

#[test]
fn manifest_declares_http_and_secret() {
    let m = meridian_sdk::export::describe::<crate::RegionApi7ee>();
    assert_eq!(m.name, "region-api7ee");
    assert!(
        m.needs
            .iter()
            .any(|n| n.kind == meridian_sdk::GrantKind::Http)
            && m.needs
                .iter()
                .any(|n| n.kind == meridian_sdk::GrantKind::Secret)
    );
    assert!(
        m.input_schema.contains("token_secret")
            && m.output_schema.contains("admin_key_secret_hint")
    );
}
