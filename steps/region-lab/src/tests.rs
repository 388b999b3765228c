//! Unit tests against an in-memory lab control API that answers like `meridian-lab`'s daemon
//! (`GET /status`, `POST /regions/{name}/{action}`, errors as `{"error": ...}`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use meridian_families::region::{MapMemo, RegionInput, RegionOutput};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Clock, Env, FakeClock, MapSecrets, NoLog, StepError, Transport};
use meridian_families::{HttpRequest, HttpResponse, TransportError};
use serde_json::json;

const BASE: &str = "http://127.0.0.1:7700";

/// The fake lab: region → status; `ready_after` GETs before a started region's gateway is ready.
struct FakeLab {
    regions: RefCell<BTreeMap<String, String>>,
    gets: Cell<u32>,
    ready_after: Cell<u32>,
    fail_gets: Cell<u32>,
}

impl FakeLab {
    fn new() -> Self {
        Self {
            regions: RefCell::new(BTreeMap::from([
                ("eu".into(), "up".into()),
                ("us".into(), "up".into()),
            ])),
            gets: Cell::new(0),
            ready_after: Cell::new(0),
            fail_gets: Cell::new(0),
        }
    }

    fn doc(&self) -> serde_json::Value {
        let ready_now = self.gets.get() >= self.ready_after.get();
        let regions: Vec<_> = self
            .regions
            .borrow()
            .iter()
            .map(|(name, status)| {
                let up = status == "up";
                json!({"name": name, "ip": "127.0.0.2", "role": "primary", "status": status,
                       "postgres": {"port": 5432, "running": up},
                       "gateway": {"serving": up, "ready": up && ready_now}})
            })
            .collect();
        json!({"status": "ready", "control_url": BASE, "regions": regions})
    }

    fn answer(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let path = req.url.strip_prefix(BASE).expect("lab URL");
        if req.method == "GET" && path == "/status" {
            self.gets.set(self.gets.get() + 1);
            if self.fail_gets.get() > 0 {
                self.fail_gets.set(self.fail_gets.get() - 1);
                return Err(TransportError::Connect("connection refused".into()));
            }
            return Ok(HttpResponse::new(200, self.doc().to_string()));
        }
        let rest = path.strip_prefix("/regions/").expect("region path");
        let (name, verb) = rest.split_once('/').expect("name/verb");
        assert_eq!(req.method, "POST");
        let status = match verb {
            "kill" => "killed",
            "stop" => "stopped",
            "start" => "up",
            _ => {
                return Ok(HttpResponse::new(
                    400,
                    r#"{"error":"unknown region action"}"#,
                ));
            }
        };
        let mut regions = self.regions.borrow_mut();
        let Some(slot) = regions.get_mut(name) else {
            return Ok(HttpResponse::new(
                404,
                format!(r#"{{"error":"no region \"{name}\"; regions: eu, us"}}"#),
            ));
        };
        *slot = status.to_owned();
        drop(regions);
        Ok(HttpResponse::new(200, self.doc().to_string()))
    }
}

fn input(action: &str, region: &str) -> RegionInput {
    RegionInput::from_json(
        &json!({"action": action, "region": region, "timeout_ms": 5_000, "poll_interval_ms": 100,
                "provider": {"lab": {"control_url": BASE}}})
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
    let env = Env {
        http,
        secrets: &MapSecrets::default(),
        clock,
        log: &NoLog,
    };
    crate::run(&env, memo, input, plan)
}

#[test]
fn kill_records_the_instant_and_a_retry_reports_it_again() {
    let lab = FakeLab::new();
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(1_000);
    let memo = MapMemo::default();
    let out = run_with(&http, &clock, &memo, &input("kill", "us"), false).unwrap();
    assert_eq!(
        (out.status.as_str(), out.ready, out.changed),
        ("killed", false, true)
    );
    assert_eq!(out.killed_at_ms, Some(1_000));
    assert_eq!(out.changes, ["POST /regions/us/kill"]);
    assert_eq!(
        http.lines(),
        [
            format!("GET {BASE}/status"),
            format!("POST {BASE}/regions/us/kill")
        ]
    );

    clock.sleep_ms(5_000);
    let again = run_with(&http, &clock, &memo, &input("kill", "us"), false).unwrap();
    assert_eq!(
        (again.changed, again.killed_at_ms, again.observed_at_ms),
        (false, Some(1_000), 6_000)
    );
    assert_eq!(http.lines().len(), 3, "no second kill");

    // Stopping a killed region is a no-op; starting it posts start.
    let stop = run_with(&http, &clock, &memo, &input("stop", "us"), false).unwrap();
    assert_eq!((stop.changed, stop.stopped_at_ms), (false, None));
    let start = run_with(&http, &clock, &memo, &input("start", "us"), false).unwrap();
    assert_eq!(
        (start.changed, start.started_at_ms, start.status.as_str()),
        (true, Some(6_000), "up")
    );
}

#[test]
fn wait_ready_polls_until_the_gateway_answers_ready() {
    let lab = FakeLab::new();
    lab.ready_after.set(4);
    lab.fail_gets.set(1);
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(10_000);
    let out = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("wait-ready", "eu"),
        false,
    )
    .unwrap();
    assert!(out.ready);
    assert_eq!(
        lab.gets.get(),
        4,
        "one refused poll, two not ready, then ready"
    );
    assert_eq!((out.ready_at_ms, out.waited_ms), (Some(10_300), Some(300)));
}

#[test]
fn wait_ready_times_out_retryable_and_plan_mode_does_not_wait() {
    let lab = FakeLab::new();
    lab.regions
        .borrow_mut()
        .insert("us".into(), "killed".into());
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(0);
    let e = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("wait-ready", "us"),
        false,
    )
    .unwrap_err();
    assert!(e.is_retryable());
    assert!(
        e.message()
            .contains("not ready after 5000 ms: status killed"),
        "{e:?}"
    );
    assert_eq!(clock.now_unix_ms(), 5_000, "bounded by timeout_ms");

    let before = lab.gets.get();
    let out = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &input("wait-ready", "us"),
        true,
    )
    .unwrap();
    assert_eq!((out.planned, out.ready), (true, false));
    assert_eq!(lab.gets.get(), before + 1);
}

#[test]
fn plan_mode_records_the_kill_and_changes_nothing() {
    let lab = FakeLab::new();
    let http = PlanTransport::new(FakeTransport::new(|r| lab.answer(r)));
    let memo = MapMemo::default();
    let out = run_with(&http, &FakeClock::at(0), &memo, &input("kill", "eu"), true).unwrap();
    assert!(out.planned && out.changed);
    assert_eq!(
        (out.status.as_str(), out.ready, out.killed_at_ms),
        ("up", true, None)
    );
    assert_eq!(http.planned().len(), 1);
    assert_eq!(lab.regions.borrow()["eu"], "up");
    assert!(memo.0.lock().unwrap().is_empty());
}

#[test]
fn errors_name_the_problem() {
    let lab = FakeLab::new();
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(0);
    let memo = MapMemo::default();
    let e = run_with(&http, &clock, &memo, &input("kill", "ap"), false).unwrap_err();
    assert_eq!(
        e,
        StepError::fatal("the lab has no region `ap` (regions: eu, us); check `region`")
    );

    let e = run_with(&http, &clock, &memo, &input("deploy", "eu"), false).unwrap_err();
    assert!(
        matches!(&e, StepError::InvalidInput(m) if m.contains("use one of status, start, stop, kill, wait-ready"))
    );

    let no_provider = RegionInput::from_json(r#"{"action":"status","region":"eu"}"#).unwrap();
    let e = run_with(&http, &clock, &memo, &no_provider, false).unwrap_err();
    assert!(matches!(&e, StepError::InvalidInput(m) if m.starts_with("provider.lab")));

    let busy = FakeTransport::new(|r| {
        if r.method == "GET" {
            Ok(HttpResponse::new(200, FakeLab::new().doc().to_string()))
        } else {
            Ok(HttpResponse::new(409, r#"{"error":"the lab is Starting"}"#))
        }
    });
    let e = run_with(&busy, &clock, &memo, &input("kill", "eu"), false).unwrap_err();
    assert!(
        e.is_retryable() && e.message().contains("the lab is Starting"),
        "{e:?}"
    );

    let garbage = FakeTransport::new(|_| Ok(HttpResponse::new(200, "<html>nginx</html>")));
    let e = run_with(&garbage, &clock, &memo, &input("status", "eu"), false).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("is `provider.lab.control_url` the lab's control API"))
    );

    let refused = FakeTransport::new(|_| Err(TransportError::Connect("refused".into())));
    let e = run_with(&refused, &clock, &memo, &input("status", "eu"), false).unwrap_err();
    assert!(e.is_retryable());
}

#[test]
fn manifest_declares_the_http_grant_and_schemas() {
    let m = meridian_sdk::export::describe::<crate::RegionLab>();
    assert_eq!(m.name, "region-lab");
    assert!(m.needs.iter().any(|n| n.kind == "http"));
    assert!(m.input_schema.contains("wait-ready") && m.output_schema.contains("killed_at_ms"));
}
