//! Standby capacity and active-active over three regions, against the lab:
//! * the drill scales the standby from 1 to 3 data planes before the GSLB switch and reports the
//!   time to full capacity beside the RTO (`runs show`, `drills list`, evidence);
//! * three regions serve behind the weighted GSLB; one is drained (weight 0) and restored while
//!   a steady client keeps resolving and requesting, and no request fails.
//!
//! Figures are checked for presence and plausibility, never against fixed numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Scratch, expect_code};
use crate::workflows::{EU, LabGuard, US, output};

const AP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

/// A drill figure's achieved value from a `--json` report.
fn figure(report: &Value, name: &str) -> f64 {
    report["drill"]["figures"]
        .as_array()
        .unwrap_or_else(|| panic!("no drill figures in {report}"))
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["achieved"].as_f64())
        .unwrap_or_else(|| panic!("{name} not measured: {}", report["drill"]))
}

#[test]
fn drill_scales_the_standby_from_1_to_3_data_planes_and_measures_the_time_to_full_capacity() {
    let s = Scratch::new();
    let start_ms = 1_000;
    let lab = LabGuard::up_with(
        &s,
        &[
            "--capacity",
            "3",
            "--standby-capacity",
            "1",
            "--instance-start-ms",
            &start_ms.to_string(),
        ],
    );
    let us = lab.region("us");
    assert_eq!(
        (us.gateway.capacity, us.gateway.instances_ready),
        (1, 1),
        "the standby waits at its minimum capacity"
    );
    assert_eq!(lab.region("eu").gateway.instances_ready, 3);

    // A failover rejected at its gate leaves the standby as it waited: scaled up while the
    // promotion waited, back to its idle capacity once rejected (it stayed at 3 of 3).
    let inputs = lab.inputs();
    let secrets = lab.secrets();
    let flags = [
        "--inputs-file",
        inputs.as_str(),
        "--secrets-file",
        secrets.as_str(),
    ];
    let wf = crate::workflows::workflow("active-passive-failover.yaml");
    let waiting = s
        .cmd()
        .args(["--json", "run", &wf])
        .args(flags)
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&waiting, 3);
    let run_id = serde_json::from_str::<Value>(&stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lab.region("us").gateway.capacity,
        3,
        "scaled up before the gate"
    );
    let rejected = s
        .cmd()
        .args(["resume", &run_id, "--reject", "promote"])
        .args(["--secrets-file", secrets.as_str()])
        .output()
        .unwrap();
    expect_code(&rejected, 1);
    let us = lab.region("us");
    assert_eq!((us.gateway.capacity, us.gateway.instances_ready), (1, 1));

    let (report, _) = lab.meridian("run", "dr-drill.yaml", &["--input", "fault_hold_ms=200"]);
    let scale = output(&report, "scale-standby");
    assert_eq!(scale["changed"], true, "{scale}");
    assert_eq!(scale["capacity"], 3, "{scale}");
    let fault_at = output(&report, "inject-fault")["fault_at_ms"]
        .as_u64()
        .unwrap();
    let scaled_at = scale["scaled_at_ms"].as_u64().expect("scaled_at_ms");
    assert!(scaled_at >= fault_at, "the failover scales after the fault");
    let full = output(&report, "full-capacity");
    assert_eq!(full["instances_ready"], 3, "{full}");
    let full_at = full["capacity_ready_at_ms"]
        .as_u64()
        .expect("capacity_ready_at_ms");

    // The lab runs three ready instances behind the new primary's address; the two new ones
    // took their start-up time.
    let us = lab.region("us");
    assert_eq!((us.gateway.capacity, us.gateway.instances_ready), (3, 3));
    let mut slow = 0;
    for i in &us.gateway.instances {
        assert_eq!(i.status, meridian_lab::InstanceStatus::Ready, "{i:?}");
        if i.ready_at_ms.unwrap() - i.started_at_ms >= start_ms {
            slow += 1;
        }
    }
    assert_eq!(slow, 2, "{:?}", us.gateway.instances);

    // The figure: fault -> every data plane ready, beside the RTO; plausible, not fixed.
    let capacity = figure(&report, "Capacity");
    let rto = figure(&report, "RTO");
    assert_eq!(capacity as u64, full_at - fault_at, "{}", report["drill"]);
    assert!(
        capacity >= start_ms as f64,
        "new instances need their start-up time: {capacity} ms"
    );
    assert!(capacity < 90_000.0 && rto < 60_000.0, "{}", report["drill"]);
    assert_eq!(report["drill"]["verdict"], "met", "{}", report["drill"]);
    let names: Vec<&str> = report["drill"]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(&names[..2], ["RTO", "Capacity"], "beside the RTO");

    // Shown wherever the RTO is: runs show, drills list, evidence.
    let run_id = report["run_id"].as_str().unwrap();
    let (shown, _) = expect_code(&s.run(&["runs", "show", run_id]), 0);
    assert!(
        shown.contains(&format!("\"capacity_ms\":{capacity}")) && shown.contains("info: Capacity "),
        "{shown}"
    );
    // The drill's table, as the run printed it.
    let table: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("drill: "))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("    "))
        .collect();
    assert!(
        shown.contains("drill: met")
            && table.iter().any(|l| {
                l.trim_start().starts_with("Capacity ")
                    && l.contains(&format!("achieved {capacity:.0}ms"))
            }),
        "{shown}"
    );
    // One column for every figure, the longest name (`Downtime, best client`) included.
    let columns: Vec<usize> = table.iter().filter_map(|l| l.find(" achieved ")).collect();
    assert!(
        columns.len() >= 5 && columns.iter().all(|c| *c == columns[0]),
        "{table:#?}"
    );
    let (shown_json, _) = expect_code(&s.run(&["--json", "runs", "show", run_id]), 0);
    let shown_json: Value = serde_json::from_str(&shown_json).unwrap();
    assert_eq!(
        shown_json["drill"], report["drill"],
        "the same figures as the run's report"
    );
    let page = s.path().join("run.html");
    expect_code(
        &s.run(&["runs", "show", run_id, "--html", page.to_str().unwrap()]),
        0,
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Capacity"), "the run page's drill figures");
    let (list, _) = expect_code(&s.run(&["drills", "list"]), 0);
    assert!(
        list.contains("CAPACITY") && list.contains("worst time to full capacity"),
        "{list}"
    );
    let (json, _) = expect_code(&s.run(&["drills", "list", "--json"]), 0);
    let history: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        history["summary"]["worst_capacity_ms"].as_f64(),
        Some(capacity),
        "{history}"
    );
    let file = s.path().join("capacity.evidence.json");
    expect_code(
        &s.run(&["evidence", "export", run_id, "-o", file.to_str().unwrap()]),
        0,
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let figures = doc["record"]["drill"]["figures"].as_array().unwrap();
    assert!(
        figures
            .iter()
            .any(|f| f["name"] == "Capacity" && f["achieved"].as_f64() == Some(capacity)),
        "{figures:?}"
    );

    // The failback brings traffic home and the other region back to what it runs as a standby
    // (`standby_idle_capacity` of inputs.json), so the next failover scales it up again.
    let (back, _) = lab.meridian("run", "failback.yaml", &[]);
    let down = output(&back, "scale-down");
    assert_eq!(
        (&down["changed"], &down["capacity"]),
        (&Value::Bool(true), &Value::from(1)),
        "{down}"
    );
    let us = lab.region("us");
    assert_eq!((us.gateway.capacity, us.gateway.instances_ready), (1, 1));
    assert_eq!(lab.region("eu").gateway.instances_ready, 3);
    assert_eq!(lab.region("eu").role, "primary");
}

/// What the steady client saw, by phase (0 before the drain, 1 drained, 2 restored).
#[derive(Debug, Default)]
struct Seen {
    sent: u32,
    failed: Vec<String>,
    /// (phase, region answered) → requests.
    by_region: BTreeMap<(u8, String), u32>,
}

/// A client that resolves the API name through the GSLB's DNS for every request (so it follows
/// every change at once) and sends `GET /lab/region` to the address it got, every 50 ms, until
/// stopped (at most 4,000 requests).
struct SteadyClient {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SteadyClient {
    fn start(dns: SocketAddr, name: String, port: u16) -> SteadyClient {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU8::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (st, ph, se) = (stop.clone(), phase.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for _ in 0..4_000 {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                // The phase before the DNS query: an answer given after a change is counted
                // in the phase that follows it.
                let p = ph.load(Ordering::SeqCst);
                let result = one_request(dns, &name, port);
                let mut s = se.lock().unwrap();
                s.sent += 1;
                match result {
                    Ok(region) => *s.by_region.entry((p, region)).or_default() += 1,
                    Err(e) => s.failed.push(e),
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        SteadyClient {
            stop,
            phase,
            seen,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u32 {
        self.seen.lock().unwrap().sent
    }

    fn hits(&self, phase: u8, region: &str) -> u32 {
        self.seen
            .lock()
            .unwrap()
            .by_region
            .get(&(phase, region.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for SteadyClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One resolution and one request; the region that answered, or what failed.
fn one_request(dns: SocketAddr, name: &str, port: u16) -> Result<String, String> {
    let answer = meridian_lab::dns_query(dns, name, meridian_lab::RTYPE_A)
        .map_err(|e| format!("DNS: {e}"))?;
    let ip = *answer.first().ok_or("DNS: empty answer")?;
    let addr = SocketAddr::new(ip, port);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let host = name.trim_end_matches('.');
    let req =
        format!("GET /lab/region HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}: {}", text.lines().next().unwrap_or("")));
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("{addr}: {e}: {body}"))?;
    Ok(v["region"].as_str().unwrap_or_default().to_string())
}

/// The regions the GSLB answers in `n` queries (one address per query under pickwrandom).
fn answers(lab: &LabGuard<'_>, n: usize) -> BTreeSet<IpAddr> {
    (0..n).flat_map(|_| lab.dns()).collect()
}

#[test]
fn three_region_active_active_drains_and_restores_a_region_without_failed_requests() {
    let s = Scratch::new();
    let lab = LabGuard::up_with(&s, &["--regions", "eu,us,ap"]);
    // One configuration to all three regions, one leg each; a second sync changes nothing.
    let (synced, _) = lab.meridian("run", "config-sync.yaml", &[]);
    let legs = &synced["steps"][0]["legs"];
    assert_eq!(legs.as_array().map(Vec::len), Some(3), "{legs}");
    let (again, _) = lab.meridian("run", "config-sync.yaml", &[]);
    for leg in again["steps"][0]["legs"].as_array().unwrap() {
        assert_eq!(leg["output"]["requests"], 0, "{leg}");
    }
    lab.meridian("run", "active-active.yaml", &[]);
    // pickwrandom answers one region per query; all three show up (bounded: 1 - 3·(2/3)^60).
    assert_eq!(
        answers(&lab, 60),
        BTreeSet::from([EU, US, AP]),
        "weighted DNS answers every region"
    );

    let state = lab.state();
    let dns = state.dns.as_ref().unwrap();
    let port: u16 = state.regions[0]
        .gateway
        .data_plane_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let client = SteadyClient::start(dns.server.parse().unwrap(), dns.api_record.clone(), port);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("the client's first 20 requests", &|| client.sent() >= 20);

    // Drain ap: DNS stops answering it; ap keeps serving (drained, not down).
    lab.meridian(
        "run",
        "active-active.yaml",
        &["--input", r#"weights={"eu":1,"us":1,"ap":0}"#],
    );
    client.phase.store(1, Ordering::SeqCst);
    let drained = answers(&lab, 40);
    assert!(!drained.contains(&AP), "ap drained out of DNS: {drained:?}");
    assert!(
        lab.region("ap").gateway.ready,
        "a drained region still serves"
    );
    let mark = client.sent();
    wait_for("20 requests while ap is drained", &|| {
        client.sent() >= mark + 20
    });

    // Restore it: ap is answered again; eu and us keep their weights. The drained phase ends
    // before the run starts (its GSLB step answers ap again before the run returns).
    client.phase.store(2, Ordering::SeqCst);
    lab.meridian(
        "run",
        "active-active.yaml",
        &["--input", r#"weights={"ap":1}"#],
    );
    assert_eq!(answers(&lab, 60), BTreeSet::from([EU, US, AP]));
    wait_for("the client to reach ap again", &|| client.hits(2, "ap") > 0);

    let seen = client.finish();
    eprintln!("steady client: {seen:?}");
    assert!(seen.failed.is_empty(), "failed requests: {:?}", seen.failed);
    assert!(seen.sent >= 60, "{seen:?}");
    let hits = |phase: u8, region: &str| {
        seen.by_region
            .get(&(phase, region.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        hits(1, "ap"),
        0,
        "no request reached ap while drained: {seen:?}"
    );
    assert!(hits(1, "eu") + hits(1, "us") >= 20, "{seen:?}");
    assert!(hits(0, "ap") + hits(2, "ap") > 0, "{seen:?}");

    // ap goes down: drained by its weight alone, its legs are skipped (its `ready` would fail)
    // and the DNS change goes ahead for the other two.
    lab.region_do("ap", "kill");
    let (run, _) = lab.meridian(
        "run",
        "active-active.yaml",
        &["--input", r#"weights={"ap":0}"#],
    );
    let leg_of = |step: &str, region: &str| {
        run["steps"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["id"] == step))
            .and_then(|s| s["legs"].as_array())
            .and_then(|legs| legs.iter().find(|l| l["key"] == region))
            .map(|l| l["outcome"].clone())
    };
    for step in ["ready", "push-config", "verify-region"] {
        assert_eq!(leg_of(step, "ap"), Some(json!("skipped")), "{step}: {run}");
        assert_eq!(leg_of(step, "eu"), Some(json!("success")), "{step}: {run}");
    }
    let answered = answers(&lab, 40);
    assert!(
        !answered.contains(&AP),
        "a dead region drained: {answered:?}"
    );
    assert!(
        answered.contains(&EU) && answered.contains(&US),
        "{answered:?}"
    );

    // Draining every region skips every leg before the DNS change; the change itself still
    // runs and refuses (the run "succeeded" having changed nothing), and DNS stays as it was.
    let all = s.run(&[
        "run",
        &crate::workflows::workflow("active-active.yaml"),
        "--inputs-file",
        &lab.inputs(),
        "--secrets-file",
        &lab.secrets(),
        "--input",
        r#"weights={"eu":0,"us":0,"ap":0}"#,
    ]);
    let (_, err) = expect_code(&all, 1);
    assert!(err.contains("every region would have weight 0"), "{err}");
    let answered = answers(&lab, 20);
    assert!(
        answered.contains(&EU) && answered.contains(&US),
        "{answered:?}"
    );
}
