//! Unit tests against an in-memory lab control API that answers like `meridian-lab`'s daemon
//! (`GET /status`, `POST /regions/{name}/{action}`, errors as `{"error": ...}`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use meridian_families::region::{MapMemo, RegionInput, RegionOutput};
use meridian_families::testing::{FakeTransport, PlanTransport};
use meridian_families::{Clock, Env, FakeClock, MapSecrets, NoLog, StepError};
use meridian_sdk::http::{HttpError, Request, Response, Transport};

use serde_json::json;

const BASE: &str = "http://127.0.0.1:7700";

/// The fake lab: region → status; `ready_after` GETs before a started region's gateway is ready;
/// `standbys`: regions whose PostgreSQL is in recovery (`us` at start, like the real lab).
struct FakeLab {
    regions: RefCell<BTreeMap<String, String>>,
    standbys: RefCell<BTreeSet<String>>,
    /// `(region, from)` of every rebuild the lab performed.
    rebuilds: RefCell<Vec<(String, String)>>,
    gets: Cell<u32>,
    ready_after: Cell<u32>,
    fail_gets: Cell<u32>,
    /// region → (data-plane instances it should run, instances ready before the last scale).
    capacity: RefCell<BTreeMap<String, (u32, u32)>>,
    /// Every instance is ready from this many GETs on (the start-up time of a scale).
    scaled_ready_at_get: Cell<u32>,
    /// GETs a scale-up takes to be ready.
    scale_takes_gets: Cell<u32>,
}

impl FakeLab {
    fn new() -> Self {
        Self {
            regions: RefCell::new(BTreeMap::from([
                ("eu".into(), "up".into()),
                ("us".into(), "up".into()),
            ])),
            standbys: RefCell::new(BTreeSet::from(["us".to_owned()])),
            rebuilds: RefCell::new(Vec::new()),
            gets: Cell::new(0),
            ready_after: Cell::new(0),
            fail_gets: Cell::new(0),
            capacity: RefCell::new(BTreeMap::new()),
            scaled_ready_at_get: Cell::new(0),
            scale_takes_gets: Cell::new(3),
        }
    }

    /// `(capacity, instances ready)` of `region` now.
    fn instances(&self, region: &str) -> (u32, u32) {
        let (desired, before) = self
            .capacity
            .borrow()
            .get(region)
            .copied()
            .unwrap_or((1, 1));
        if self.gets.get() >= self.scaled_ready_at_get.get() {
            (desired, desired)
        } else {
            (desired, before.min(desired))
        }
    }

    fn doc(&self) -> serde_json::Value {
        let ready_now = self.gets.get() >= self.ready_after.get();
        let standbys = self.standbys.borrow();
        let regions: Vec<_> = self
            .regions
            .borrow()
            .iter()
            .map(|(name, status)| {
                let up = status == "up";
                let standby = standbys.contains(name);
                let role = if standby { "standby" } else { "primary" };
                let (capacity, ready) = self.instances(name);
                let instances: Vec<_> = (0..capacity)
                    .map(|i| json!({"id": i + 1, "ready_url": format!("http://127.0.0.2:{}/status/ready", 9000 + i),
                                    "status": if i < ready { "ready" } else { "starting" }}))
                    .collect();
                json!({"name": name, "ip": "127.0.0.2", "role": role, "status": status,
                       "postgres": {"port": 5432, "running": up,
                                    "in_recovery": if up { json!(standby) } else { json!(null) }},
                       "gateway": {"serving": up, "ready": up && ready_now && ready > 0,
                                   "capacity": capacity, "instances_ready": ready,
                                   "instances": instances}})
            })
            .collect();
        json!({"status": "ready", "control_url": BASE, "regions": regions})
    }

    fn answer(&self, req: &Request) -> Result<Response, HttpError> {
        let path = req.url.strip_prefix(BASE).expect("lab URL");
        if req.method == "GET" && path == "/status" {
            self.gets.set(self.gets.get() + 1);
            if self.fail_gets.get() > 0 {
                self.fail_gets.set(self.fail_gets.get() - 1);
                return Err(HttpError::Connect("connection refused".into()));
            }
            return Ok(Response::new(200, self.doc().to_string()));
        }
        let rest = path.strip_prefix("/regions/").expect("region path");
        let (name, verb) = rest.split_once('/').expect("name/verb");
        assert_eq!(req.method, "POST");
        if let Some(query) = verb.strip_prefix("rebuild-standby") {
            let Some(from) = query.strip_prefix("?from=").filter(|f| !f.is_empty()) else {
                return Ok(Response::new(
                    400,
                    r#"{"error":"rebuild-standby needs ?from=<region of the new primary>"}"#,
                ));
            };
            if !self.regions.borrow().contains_key(from) {
                return Ok(Response::new(
                    400,
                    format!(r#"{{"error":"no region \"{from}\" to rebuild from"}}"#),
                ));
            }
            // Like the daemon: the database is replaced and runs as a standby; the region's
            // status (and gateway) stay as they were.
            self.standbys.borrow_mut().insert(name.to_owned());
            self.rebuilds
                .borrow_mut()
                .push((name.to_owned(), from.to_owned()));
            return Ok(Response::new(200, self.doc().to_string()));
        }
        if let Some(n) = verb.strip_prefix("scale?instances=") {
            let n: u32 = n.parse().expect("instances");
            let (_, ready) = self.instances(name);
            self.capacity
                .borrow_mut()
                .insert(name.to_owned(), (n, ready));
            self.scaled_ready_at_get
                .set(self.gets.get() + self.scale_takes_gets.get());
            return Ok(Response::new(200, self.doc().to_string()));
        }
        let status = match verb {
            "kill" => "killed",
            "stop" => "stopped",
            "start" => "up",
            _ => {
                return Ok(Response::new(400, r#"{"error":"unknown region action"}"#));
            }
        };
        let mut regions = self.regions.borrow_mut();
        let Some(slot) = regions.get_mut(name) else {
            return Ok(Response::new(
                404,
                format!(r#"{{"error":"no region \"{name}\"; regions: eu, us"}}"#),
            ));
        };
        *slot = status.to_owned();
        drop(regions);
        Ok(Response::new(200, self.doc().to_string()))
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

fn scale(region: &str, capacity: u32, min: Option<u32>) -> RegionInput {
    RegionInput::from_json(
        &json!({"action": "scale", "region": region, "capacity": capacity, "min_capacity": min,
                "timeout_ms": 5_000, "poll_interval_ms": 100,
                "provider": {"lab": {"control_url": BASE}}})
        .to_string(),
    )
    .unwrap()
}

fn rebuild(region: &str, from: &str) -> RegionInput {
    RegionInput::from_json(
        &json!({"action": "rebuild-standby", "region": region, "from": from,
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
fn rebuild_standby_posts_from_and_a_retry_does_not_copy_again() {
    let lab = FakeLab::new();
    // After a failover: us is the primary, eu came back as a (diverged) primary.
    lab.standbys.borrow_mut().clear();
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(2_000);
    let memo = MapMemo::default();
    let out = run_with(&http, &clock, &memo, &rebuild("eu", "us"), false).unwrap();
    assert_eq!(
        (out.changed, out.rebuilt_at_ms, out.role.as_deref()),
        (true, Some(2_000), Some("standby"))
    );
    assert_eq!(out.changes, ["POST /regions/eu/rebuild-standby?from=us"]);
    assert_eq!(
        http.lines(),
        [
            format!("GET {BASE}/status"),
            format!("POST {BASE}/regions/eu/rebuild-standby?from=us")
        ]
    );
    assert_eq!(*lab.rebuilds.borrow(), [("eu".into(), "us".into())]);

    // A retry in the same run finds it a standby: same instant, no second copy.
    clock.sleep_ms(1_000);
    let again = run_with(&http, &clock, &memo, &rebuild("eu", "us"), false).unwrap();
    assert_eq!(
        (again.changed, again.rebuilt_at_ms, again.observed_at_ms),
        (false, Some(2_000), 3_000)
    );
    assert_eq!(lab.rebuilds.borrow().len(), 1);

    // A new run (empty memo) cannot tell whom the standby follows: it rebuilds again.
    let fresh = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &rebuild("eu", "us"),
        false,
    )
    .unwrap();
    assert!(fresh.changed);
    assert_eq!(lab.rebuilds.borrow().len(), 2);
}

#[test]
fn rebuild_standby_checks_the_result_and_plan_mode_only_records() {
    let lab = FakeLab::new();
    lab.standbys.borrow_mut().clear();
    let http = PlanTransport::new(FakeTransport::new(|r| lab.answer(r)));
    let memo = MapMemo::default();
    let out = run_with(&http, &FakeClock::at(0), &memo, &rebuild("eu", "us"), true).unwrap();
    assert!(out.planned && out.changed);
    assert_eq!(
        (out.role.as_deref(), out.rebuilt_at_ms),
        (Some("primary"), None)
    );
    assert_eq!(http.planned().len(), 1);
    assert!(lab.rebuilds.borrow().is_empty() && lab.standbys.borrow().is_empty());
    assert!(memo.0.lock().unwrap().is_empty());

    // A source the lab does not have is fatal before anything is posted.
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(0);
    let e = run_with(&http, &clock, &memo, &rebuild("eu", "ap"), false).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("no region `ap`")),
        "{e:?}"
    );
    assert_eq!(http.lines().len(), 1, "only the status read");

    // The lab answers, but the region is not in recovery: retryable, nothing remembered.
    let liar = FakeTransport::new(|r| {
        Ok(Response::new(200, {
            let mut doc = FakeLab::new().doc();
            doc["regions"][0]["postgres"]["in_recovery"] = json!(false);
            let _ = r;
            doc.to_string()
        }))
    });
    let e = run_with(&liar, &clock, &memo, &rebuild("eu", "us"), false).unwrap_err();
    assert!(
        e.is_retryable() && e.message().contains("not a running standby"),
        "{e:?}"
    );
    assert!(memo.0.lock().unwrap().is_empty());
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
    let log = meridian_families::testing::RecordingLog::default();
    let env = Env {
        http: &http,
        secrets: &MapSecrets::default(),
        clock: &clock,
        log: &log,
    };
    let out = crate::run(&env, &MapMemo::default(), &input("wait-ready", "us"), true).unwrap();
    assert_eq!((out.planned, out.ready), (true, false));
    assert_eq!(lab.gets.get(), before + 1);
    // The plan says what it read: its leg succeeds, its log does not let it pass for ready.
    assert!(
        log.lines()
            .iter()
            .any(|l| l.starts_with("warn: region `us` is not ready now (status killed")),
        "{:?}",
        log.lines()
    );
}

#[test]
fn scale_posts_the_count_and_waits_for_every_instance() {
    let lab = FakeLab::new();
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(1_000);
    let memo = MapMemo::default();
    let out = run_with(&http, &clock, &memo, &scale("us", 3, None), false).unwrap();
    assert_eq!(out.changes, ["POST /regions/us/scale?instances=3"]);
    assert_eq!(
        (out.capacity, out.instances_ready, out.changed),
        (Some(3), Some(3), true)
    );
    assert_eq!(out.scaled_at_ms, Some(1_000));
    // Polled every 100 ms until the third GET after the scale saw all three ready.
    assert_eq!(out.ready_at_ms, Some(1_200));
    assert_eq!(out.capacity_ready_at_ms, Some(1_200));
    assert_eq!(out.data_planes.values().filter(|r| **r).count(), 3);

    // A retry of the same run finds it scaled: no second request, the first instant.
    clock.sleep_ms(1_000);
    let posts = || {
        http.lines()
            .iter()
            .filter(|l| l.starts_with("POST"))
            .count()
    };
    let again = run_with(&http, &clock, &memo, &scale("us", 3, None), false).unwrap();
    assert_eq!((again.changed, again.scaled_at_ms), (false, Some(1_000)));
    assert_eq!(posts(), 1);
}

#[test]
fn scale_with_min_capacity_returns_before_full_capacity_and_wait_ready_reports_it() {
    let lab = FakeLab::new();
    lab.scale_takes_gets.set(4);
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(0);
    let memo = MapMemo::default();
    // One instance already runs: min_capacity 1 is met at once, full capacity is not yet.
    let out = run_with(&http, &clock, &memo, &scale("us", 3, Some(1)), false).unwrap();
    assert_eq!((out.ready_at_ms, out.waited_ms), (Some(0), Some(0)));
    assert_eq!(
        (out.instances_ready, out.capacity_ready_at_ms),
        (Some(1), None)
    );

    let mut wait = input("wait-ready", "us");
    wait.capacity = Some(3);
    let full = run_with(&http, &clock, &memo, &wait, false).unwrap();
    assert!(full.ready);
    assert_eq!(full.instances_ready, Some(3));
    assert_eq!(full.capacity_ready_at_ms, full.ready_at_ms);
    assert!(full.capacity_ready_at_ms.unwrap() > 0);
}

#[test]
fn scale_times_out_retryable_and_plan_mode_only_records() {
    let lab = FakeLab::new();
    lab.scale_takes_gets.set(1_000);
    let http = FakeTransport::new(|r| lab.answer(r));
    let clock = FakeClock::at(0);
    let e = run_with(
        &http,
        &clock,
        &MapMemo::default(),
        &scale("us", 3, None),
        false,
    )
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        e.message()
            .contains("did not reach 3 ready data-plane instances within 5000 ms: 1 of 3"),
        "{e:?}"
    );
    assert_eq!(clock.now_unix_ms(), 5_000, "bounded by timeout_ms");

    let lab = FakeLab::new();
    let http = PlanTransport::new(FakeTransport::new(|r| lab.answer(r)));
    let memo = MapMemo::default();
    let out = run_with(&http, &FakeClock::at(0), &memo, &scale("us", 3, None), true).unwrap();
    assert!(out.planned && out.changed);
    assert_eq!(out.changes, ["POST /regions/us/scale?instances=3"]);
    assert_eq!((out.capacity, out.scaled_at_ms), (Some(1), None));
    assert_eq!(http.planned().len(), 1);
    assert!(lab.capacity.borrow().is_empty());
    assert!(memo.0.lock().unwrap().is_empty());
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
            Ok(Response::new(200, FakeLab::new().doc().to_string()))
        } else {
            Ok(Response::new(409, r#"{"error":"the lab is Starting"}"#))
        }
    });
    let e = run_with(&busy, &clock, &memo, &input("kill", "eu"), false).unwrap_err();
    assert!(
        e.is_retryable() && e.message().contains("the lab is Starting"),
        "{e:?}"
    );

    let garbage = FakeTransport::new(|_| Ok(Response::new(200, "<html>nginx</html>")));
    let e = run_with(&garbage, &clock, &memo, &input("status", "eu"), false).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("is `provider.lab.control_url` the lab's control API"))
    );

    let refused = FakeTransport::new(|_| Err(HttpError::Connect("refused".into())));
    let e = run_with(&refused, &clock, &memo, &input("status", "eu"), false).unwrap_err();
    assert!(e.is_retryable());
}

#[test]
fn manifest_declares_the_http_grant_and_schemas() {
    let m = meridian_sdk::export::describe::<crate::RegionLab>();
    assert_eq!(m.name, "region-lab");
    assert!(
        m.needs
            .iter()
            .any(|n| n.kind == meridian_sdk::GrantKind::Http)
    );
    assert!(m.input_schema.contains("wait-ready") && m.output_schema.contains("killed_at_ms"));
    assert!(
        m.input_schema.contains("rebuild-standby") && m.output_schema.contains("rebuilt_at_ms")
    );
    assert!(
        m.input_schema.contains("min_capacity") && m.output_schema.contains("capacity_ready_at_ms")
    );
}

/// A region up with a fault still injected is started (the lab's start clears its faults):
/// "already up; nothing to start" skipped it, and a failback went on with the home region's
/// data plane down.
#[test]
fn start_of_an_up_region_with_a_fault_posts_start() {
    let faulted = Cell::new(true);
    let doc = |faulted: bool| {
        let faults = if faulted {
            json!(["data-plane-down"])
        } else {
            json!([])
        };
        json!({"status": "ready", "control_url": BASE, "regions": [{
            "name": "eu", "ip": "127.0.0.2", "role": "primary", "status": "up", "faults": faults,
            "postgres": {"port": 5432, "running": true, "in_recovery": false},
            "gateway": {"serving": true, "ready": true, "capacity": 1, "instances_ready": 1,
                        "instances": [{"id": 1, "ready_url": "http://127.0.0.2:9000/status/ready", "status": "ready"}]}}]})
        .to_string()
    };
    let http = FakeTransport::new(|r| {
        if r.method == "POST" {
            faulted.set(false);
        }
        Ok(Response::new(200, doc(faulted.get())))
    });
    let clock = FakeClock::at(1_000);
    let memo = MapMemo::default();
    let out = run_with(&http, &clock, &memo, &input("start", "eu"), false).unwrap();
    assert!(out.changed, "{out:?}");
    assert!(
        http.lines()
            .contains(&format!("POST {BASE}/regions/eu/start")),
        "{:?}",
        http.lines()
    );
    // Started and fault-free: a second start is a no-op.
    let again = run_with(&http, &clock, &memo, &input("start", "eu"), false).unwrap();
    assert!(!again.changed, "{again:?}");
}
