//! Drills that measure what users lose: the packaged `dr-drill` against the lab, once per fault.
//! The runner's canaries write rows and send requests while the drill runs; each test checks
//! that the measured figures move the way the fault says they must (never fixed numbers).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Scratch, expect_code};
use crate::workflows::{LabGuard, output};

fn workflow() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../workflows/dr-drill.yaml")
        .to_string_lossy()
        .into_owned()
}

/// A figure's achieved value from a `--json` report's drill section.
fn figure(report: &Value, name: &str) -> Option<f64> {
    report["drill"]["figures"]
        .as_array()
        .unwrap_or_else(|| panic!("no drill figures in {}", report["drill"]))
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["achieved"].as_f64())
}

fn must(report: &Value, name: &str) -> f64 {
    figure(report, name).unwrap_or_else(|| panic!("{name} not measured: {}", report["drill"]))
}

/// Runs the drill with `fault`; the report.
fn drill(lab: &LabGuard<'_>, fault: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--input".to_string(), format!("fault={fault}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (report, stderr) = lab.meridian("run", "dr-drill.yaml", &args);
    eprintln!("{fault}: drill {}\n{stderr}", report["drill"]);
    assert_eq!(output(&report, "inject-fault")["fault"], fault);
    report
}

#[test]
fn region_down_clients_see_downtime_and_the_drill_meets_its_rto() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let r = drill(&lab, "region-down", &["--input", "fault_hold_ms=500"]);
    let written = must(&r, "Rows written");
    assert!(written > 0.0, "the writer wrote before the crash");
    assert!(must(&r, "RPO rows") <= written);
    // The data plane died with the region: clients failed until DNS moved and their cached
    // answer expired, at least for the time the fault went unnoticed.
    assert!(must(&r, "Downtime") >= 400.0, "{}", r["drill"]);
    assert!(must(&r, "Requests failed") > 0.0);
    assert!(must(&r, "RTO") < 60_000.0);
    // The primary died with the region: writes were refused (its connection gone, no new one)
    // until the standby took them — a figure, never a zero and never "still refused".
    assert!(must(&r, "Write outage") > 0.0, "{}", r["drill"]);
}

#[test]
fn replication_cut_loses_acknowledged_rows() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let r = drill(&lab, "replication-cut", &["--input", "fault_hold_ms=1500"]);
    // Writes went on for 1.5 s to a primary whose standby no longer received them.
    let lost = must(&r, "RPO rows");
    assert!(lost > 0.0, "{}", r["drill"]);
    assert!(must(&r, "RPO") > 0.0, "a window of writes was lost");
    assert_eq!(
        must(&r, "Rows written") - lost,
        must(&r, "Rows found"),
        "found + lost = written"
    );
    let promote = output(&r, "promote");
    assert_eq!(promote["caught_up"], false, "{promote}");
    // Writes were refused from the fence until the promoted standby took them: measured (the
    // canary counted rows lost, never how long nobody could write).
    assert!(must(&r, "Write outage") > 0.0, "{}", r["drill"]);
}

#[test]
fn data_plane_down_loses_no_rows_and_clients_wait_for_dns() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let r = drill(&lab, "data-plane-down", &["--input", "fault_hold_ms=1000"]);
    // The database never failed: the fenced primary's writes reached the standby before the
    // promotion (it waited for the stream to catch up).
    assert_eq!(must(&r, "RPO rows"), 0.0, "{}", r["drill"]);
    assert!(must(&r, "Rows written") > 0.0);
    assert_eq!(output(&r, "promote")["caught_up"], true);
    // Clients failed from the fault until DNS moved: at least the unnoticed second.
    assert!(must(&r, "Downtime") >= 900.0, "{}", r["drill"]);
    assert_eq!(r["drill"]["verdict"], "met", "{}", r["drill"]);
    // The fence refused writes until the promotion: a write outage, though nothing was lost.
    assert!(must(&r, "Write outage") > 0.0, "{}", r["drill"]);

    // The history lists it with the same verdict.
    let list = s.run(&["drills", "list", "--json"]);
    let (stdout, _) = expect_code(&list, 0);
    let history: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(history["summary"]["drills"], 1, "{history}");
    assert_eq!(history["summary"]["met"], 1, "{history}");
    assert_eq!(history["drills"][0]["run"], r["run_id"], "{history}");

    evidence_round_trip(&s, r["run_id"].as_str().unwrap());
}

/// Exports the run's evidence, verifies it elsewhere with only the public key, and sees a
/// changed byte fail.
fn evidence_round_trip(s: &Scratch, run_id: &str) {
    let key = s.run(&["evidence", "key"]);
    let (public, _) = expect_code(&key, 0);
    let public = public.trim().to_string();
    let file = s.path().join("drill.evidence.json");
    let export = s.run(&["evidence", "export", run_id, "-o", file.to_str().unwrap()]);
    expect_code(&export, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let record = &doc["record"];
    assert_eq!(record["drill"]["verdict"], "met");
    assert!(record["events"].as_array().unwrap().len() > 10);
    let components = record["components"].as_array().unwrap();
    assert!(
        components
            .iter()
            .all(|c| c["sha256"].as_str().is_some_and(|d| d.len() == 64)),
        "every component's digest: {components:?}"
    );

    // Another machine: a fresh state dir and only the public key.
    let elsewhere = Scratch::new();
    let ok = elsewhere.run(&[
        "evidence",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        &public,
    ]);
    let (stdout, _) = expect_code(&ok, 0);
    assert!(stdout.contains("untouched"), "{stdout}");
    let no_key = elsewhere.run(&["evidence", "verify", file.to_str().unwrap()]);
    let (_, stderr) = expect_code(&no_key, 2);
    assert!(stderr.contains("--public-key"), "{stderr}");

    // One changed byte in the figures.
    let tampered = s.path().join("tampered.json");
    let changed = text.replacen("\"verdict\": \"met\"", "\"verdict\": \"mat\"", 1);
    assert_ne!(changed, text);
    std::fs::write(&tampered, changed).unwrap();
    let bad = elsewhere.run(&[
        "evidence",
        "verify",
        tampered.to_str().unwrap(),
        "--public-key",
        &public,
    ]);
    let (_, stderr) = expect_code(&bad, 1);
    assert!(stderr.contains("changed after it was signed"), "{stderr}");
}

#[test]
fn db_down_keeps_the_data_planes_answering() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let r = drill(&lab, "db-down", &["--input", "fault_hold_ms=1000"]);
    // The gateways never stopped, and DNS moved to another serving region: clients saw no
    // lasting outage (a second covers one request timing out on a loaded machine).
    assert!(must(&r, "Downtime") < 1_000.0, "{}", r["drill"]);
    // Writes failed while the database was down; none of those was acknowledged.
    assert!(must(&r, "Rows written") > 0.0);
    assert!(must(&r, "RPO rows") <= must(&r, "Rows written"));
}

#[test]
fn dns_stale_keeps_clients_on_the_dead_region_for_the_stale_window() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let r = drill(&lab, "dns-stale", &["--input", "dns_stale_ms=4000"]);
    // The GSLB answered the dead region for 4 s: clients (which resolve once per TTL) could
    // not reach the standby before then.
    assert!(must(&r, "Downtime") >= 3_800.0, "{}", r["drill"]);
    assert!(must(&r, "Write outage") > 0.0, "{}", r["drill"]);
    // Nor could the drill's own probes: its recovery ends no sooner. (They reused one
    // kept-alive connection to the standby's address, looked up once: RTO 160 ms.)
    assert!(must(&r, "RTO") >= 3_800.0, "{}", r["drill"]);
    assert_eq!(r["drill"]["verdict"], "met", "{}", r["drill"]);
}

/// SIGKILL of the runner right after the old primary is fenced (so during the promotion), then
/// resume: the drill's canaries died with the runner, and the report says so ("incomplete"),
/// never a false "met"; the promotion is not reported as "already primary".
#[test]
fn a_drill_killed_during_promote_is_incomplete_after_resume_never_met() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let err = s.path().join("run.err");
    let mut child = s
        .cmd()
        .args(["run", &workflow(), "--inputs-file", &lab.inputs()])
        .args(["--secrets-file", &lab.secrets()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut run_id = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "fence-primary never finished: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        let list = s.run(&["runs", "list", "--json"]);
        let runs: Value = serde_json::from_slice(&list.stdout).unwrap_or(Value::Null);
        run_id = run_id.or_else(|| runs[0]["id"].as_str().map(str::to_string));
        if let Some(id) = &run_id {
            let shown = s.run(&["runs", "show", id, "--json"]);
            let shown: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
            let legs = shown["legs"].as_array().cloned().unwrap_or_default();
            if legs.iter().any(|l| l["step"] == "fence-primary") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run_id = run_id.unwrap();
    let out = s
        .cmd()
        .args([
            "resume",
            &run_id,
            "--secrets-file",
            &lab.secrets(),
            "--json",
        ])
        .output()
        .unwrap();
    // Exit 6: the run succeeded, its drill could not measure every target (it exited 0).
    let (stdout, stderr) = expect_code(&out, 6);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    eprintln!("resumed drill: {}\n{stderr}", r["drill"]);
    assert_eq!(r["drill"]["verdict"], "incomplete", "{}", r["drill"]);
    let promote = output(&r, "promote");
    assert_ne!(promote["already_primary"], true, "{promote}");
    assert_eq!(promote["promoted"], true, "{promote}");
}

/// `meridian ready` on the lab: ready once the gateways serve the ADC files, not ready while
/// replication is cut, ready again when it is restored.
#[test]
fn ready_turns_not_ready_when_replication_is_cut_and_back() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let ready = |want: i32| -> Value {
        let out = s
            .cmd()
            .args(["ready", &workflow(), "--inputs-file", &lab.inputs()])
            .args(["--secrets-file", &lab.secrets(), "--json"])
            .output()
            .unwrap();
        let (stdout, stderr) = expect_code(&out, want);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
    };
    let rule = |r: &Value, name: &str| -> bool {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["rule"] == name)
            .all(|c| c["ok"] == true)
    };
    // The lab's gateways start with only the lab route: the ADC files are not served yet.
    let r = ready(1);
    assert!(!rule(&r, "config"), "{r}");
    lab.meridian("run", "config-sync.yaml", &[]);
    let r = ready(0);
    assert_eq!(r["ready"], true, "{r}");

    let dir = lab.dir.to_string_lossy().into_owned();
    expect_code(
        &s.run(&["lab", "region", "eu", "replication-cut", "--dir", &dir]),
        0,
    );
    let r = ready(1);
    assert!(!rule(&r, "replication"), "{r}");
    assert!(
        rule(&r, "plan") && rule(&r, "config"),
        "only replication: {r}"
    );

    expect_code(&s.run(&["lab", "region", "eu", "start", "--dir", &dir]), 0);
    let r = ready(0);
    assert_eq!(r["ready"], true, "{r}");
}

/// Each of `http-probe`'s probes through a granted DNS server is its own lookup and connection:
/// probes that want the primary region (eu) fail once the GSLB answers the standby (us), moved
/// by another run while they go on. They reused one kept-alive connection to eu, looked up once,
/// and four passes in a row were the first lookup's (a dns-stale drill's RTO came out 160 ms).
#[test]
fn every_probe_looks_the_name_up_again() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let inputs: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.inputs()).unwrap()).unwrap();
    let input = |k: &str| match &inputs[k] {
        Value::String(v) => v.clone(),
        other => other.to_string(),
    };
    s.write(
        "probe.yaml",
        &format!(
            "name: probe\nsteps:\n  - id: verify\n    uses: http-probe\n    with: {{url: \"http://{host}:{port}/lab/region\", expect_body_contains: '\"region\":\"eu\"', timeout_ms: 1000, consecutive: 8, interval_ms: 500}}\n    grants: {{http: [\"http://*.lab.meridian.test:*\"], dns: \"{dns}\"}}\n",
            host = input("api_host"),
            port = input("data_plane_port"),
            dns = input("dns_server"),
        ),
    );
    s.write(
        "switch.yaml",
        &format!(
            "name: switch\nsecrets: [PDNS_API_KEY]\nsteps:\n  - id: switch-dns\n    uses: gslb-powerdns\n    with:\n      action: failover\n      zone: \"{zone}\"\n      record: \"{host}\"\n      ttl: 1\n      policy: failover\n      target_region: us\n      regions:\n        - {{name: eu, endpoint: \"{eu}\", primary: true}}\n        - {{name: us, endpoint: \"{us}\"}}\n      provider:\n        powerdns: {{endpoint: \"{pdns}\", records: plain}}\n    grants: {{http: [\"{pdns}\"], secrets: [PDNS_API_KEY]}}\n",
            zone = input("dns_zone"),
            host = input("api_host"),
            eu = input("primary_ip"),
            us = input("standby_ip"),
            pdns = input("pdns_api_url"),
        ),
    );
    let probe = s
        .cmd()
        .args(["--json", "run", "probe.yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let switched = s.run(&["run", "switch.yaml", "--secrets-file", &lab.secrets()]);
    expect_code(&switched, 0);
    let out = probe.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        report["status"],
        "failed",
        "the probes kept passing on eu after DNS moved to us: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A drill whose run failed (here at its first check: the lab is down) stops its canaries after
/// `settle`: no failover completed for clients to recover through. They waited the full two
/// minutes for a recovery that could not come, saying nothing.
#[test]
fn a_failed_drill_does_not_wait_for_clients_to_recover() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let dir = lab.dir.to_string_lossy().into_owned();
    expect_code(&s.run(&["lab", "down", "--dir", &dir]), 0);
    let out = s
        .cmd()
        .args(["--json", "run", &workflow(), "--inputs-file", &lab.inputs()])
        .args(["--secrets-file", &lab.secrets()])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 1);
    let run_id = serde_json::from_str::<Value>(&stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = s.run(&["runs", "show", &run_id, "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let events = shown["events"].as_array().unwrap();
    let finished = events
        .iter()
        .find(|e| e["event"]["event"] == "run-finished")
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("no end in {shown}"));
    let canary = events
        .iter()
        .find(|e| e["event"]["event"] == "measured" && e["event"]["name"] == "canary")
        .unwrap_or_else(|| panic!("no canary figures: {shown}"));
    let ended = canary["event"]["value"]["ended_at_ms"].as_u64().unwrap();
    // settle is 3 s; the recovery wait is 2 minutes.
    assert!(
        ended.saturating_sub(finished) < 20_000,
        "the canaries went on {} ms after the run failed: {canary}",
        ended.saturating_sub(finished)
    );
}

/// The runner killed while the canaries settle after a run that succeeded: `resume` has
/// nothing to run, and its exit says the drill is incomplete (6), as `drills list` does — it
/// said "already succeeded" and exited 0.
#[test]
fn a_drill_killed_while_its_canaries_settle_resumes_to_incomplete() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let mut child = s
        .cmd()
        .args(["run", &workflow(), "--inputs-file", &lab.inputs()])
        .args(["--secrets-file", &lab.secrets(), "--input", "fault=db-down"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run_id = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never ended"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runner exited first"
        );
        let list = s.run(&["runs", "list", "--json"]);
        let runs: Value = serde_json::from_slice(&list.stdout).unwrap_or(Value::Null);
        if runs[0]["status"] == "succeeded" {
            break runs[0]["id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap(); // SIGKILL, within the 3 s settle
    child.wait().unwrap();
    let out = s
        .cmd()
        .args(["resume", &run_id, "--secrets-file", &lab.secrets()])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 6);
    assert!(
        stdout.contains("already succeeded") && stdout.contains("its drill: incomplete"),
        "{stdout}"
    );
}

/// A drill whose GSLB credentials are refused stops before its fault (`check-gslb`): it broke
/// the primary, promoted the standby, and then failed to move DNS, leaving clients on the
/// broken region.
#[test]
fn refused_gslb_credentials_stop_the_drill_before_its_fault() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let secrets = std::fs::read_to_string(lab.secrets()).unwrap();
    let wrong: String = secrets
        .lines()
        .map(|l| match l.split_once('=') {
            Some(("PDNS_API_KEY", _)) => "PDNS_API_KEY=not-the-key\n".to_string(),
            _ => format!("{l}\n"),
        })
        .collect();
    s.write("wrong.env", &wrong);
    let out = s
        .cmd()
        .args(["--json", "run", &workflow(), "--inputs-file", &lab.inputs()])
        .args(["--secrets-file", "wrong.env", "--input", "fault=db-down"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 1);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let step = |id: &str| {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {r}"))
    };
    assert_eq!(step("check-gslb")["outcome"], "failure", "{r}");
    assert!(
        step("check-gslb").to_string().contains("PDNS_API_KEY"),
        "{r}"
    );
    assert_eq!(step("inject-fault")["outcome"], "skipped", "{r}");
    // The lab is as it was: nothing faulted, eu still the primary.
    let state = lab.state();
    let eu = state.regions.iter().find(|r| r.name == "eu").unwrap();
    assert_eq!(eu.role, "primary");
    assert!(eu.faults.is_empty(), "{:?}", eu.faults);
}

/// A drill stopped by its first check (replication cut before it started: no fault injected,
/// nothing promoted) does not report the rows the standby lacks as lost: they are on the
/// primary, which took every write. It reported 261 rows "lost" and the RPO missed.
#[test]
fn a_drill_stopped_before_its_fault_reports_no_lost_rows() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let dir = lab.dir.to_string_lossy().into_owned();
    expect_code(
        &s.run(&["lab", "region", "eu", "replication-cut", "--dir", &dir]),
        0,
    );
    let out = s
        .cmd()
        .args(["run", &workflow(), "--inputs-file", &lab.inputs()])
        .args(["--secrets-file", &lab.secrets(), "--json"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 1);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("check-standby"),
        "{}",
        r["message"]
    );
    let rows = r["drill"]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "RPO rows")
        .cloned()
        .unwrap_or_default();
    assert!(rows["achieved"].is_null(), "{}", r["drill"]);
    assert!(
        rows["note"]
            .as_str()
            .unwrap_or_default()
            .contains("is still a standby (nothing promoted it)"),
        "{}",
        r["drill"]
    );
    assert_ne!(r["drill"]["verdict"], "missed", "{}", r["drill"]);
}

/// One drill at a time from the command line: a second run of a drill while the first waits at
/// its gate is refused before anything runs (two broke the same region twice, and the second
/// reported "met" with signed evidence for a promotion it found done already). A plan breaks
/// nothing and is not refused.
#[test]
fn a_second_drill_is_refused_while_one_goes() {
    let s = Scratch::new();
    s.write(
        "gd.yaml",
        "name: gatedrill\ndrill: {rto: 60s}\nsteps:\n  - {id: promote, uses: hello, approval: true}\n",
    );
    expect_code(&s.run(&["run", "gd.yaml", "--no-prompt"]), 3);
    let (_, err) = expect_code(&s.run(&["run", "gd.yaml", "--no-prompt"]), 2);
    assert!(
        err.contains("of `gatedrill` is drilling now") && err.contains("--reject STEP"),
        "{err}"
    );
    expect_code(&s.run(&["plan", "gd.yaml"]), 0);
}
