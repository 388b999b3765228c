//! The packaged workflows (workflows/*.yaml) against a real local lab: each validates, its plan
//! changes nothing, and its run has the real effect (DNS answers the new region, PostgreSQL was
//! promoted, the data plane answers as its region).
//!
//! Every test starts its own lab in its scratch dir (`meridian lab up --dir <scratch>/lab`, ~2 s)
//! and a [`LabGuard`] runs `meridian lab down` when the test ends, also when it panics.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Scratch, expect_code};

pub(crate) const EU: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub(crate) const US: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// The workflows shipped in workflows/, by file name.
const PACKAGED: [&str; 5] = [
    "active-passive-failover.yaml",
    "dr-drill.yaml",
    "failback.yaml",
    "active-active.yaml",
    "config-sync.yaml",
];

pub(crate) fn workflow(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../workflows")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A running lab; `Drop` runs `meridian lab down` (which stops every lab process).
pub(crate) struct LabGuard<'a> {
    scratch: &'a Scratch,
    pub(crate) dir: PathBuf,
}

impl<'a> LabGuard<'a> {
    pub(crate) fn up(scratch: &'a Scratch) -> Self {
        Self::up_with(scratch, &[])
    }

    /// `meridian lab up EXTRA…` (`--regions`, `--capacity`, …).
    pub(crate) fn up_with(scratch: &'a Scratch, extra: &[&str]) -> Self {
        let dir = scratch.path().join("lab");
        // The guard exists before `up` runs: a half-started lab is torn down too.
        let guard = LabGuard { scratch, dir };
        let out = scratch
            .cmd()
            .args(["lab", "up", "--dir"])
            .arg(&guard.dir)
            .args(extra)
            .output()
            .expect("run meridian lab up");
        expect_code(&out, 0);
        guard
    }

    pub(crate) fn inputs(&self) -> String {
        self.dir.join("inputs.json").to_string_lossy().into_owned()
    }

    pub(crate) fn secrets(&self) -> String {
        self.dir.join("secrets.env").to_string_lossy().into_owned()
    }

    /// A secret's value from secrets.env.
    pub(crate) fn secret(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("secrets.env")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
            .unwrap_or_else(|| panic!("{name} not in secrets.env"))
    }

    /// The live lab state (asked from the daemon, not the 5-second-old lab.json).
    pub(crate) fn state(&self) -> meridian_lab::LabState {
        meridian_lab::status(&self.dir).expect("lab status")
    }

    /// `meridian lab region NAME ACTION` (`kill`, `start`, a fault …), which must succeed.
    pub(crate) fn region_do(&self, name: &str, action: &str) {
        let dir = self.dir.to_string_lossy();
        let out = self
            .scratch
            .run(&["lab", "region", name, action, "--dir", &dir]);
        expect_code(&out, 0);
    }

    pub(crate) fn region(&self, name: &str) -> meridian_lab::RegionState {
        self.state()
            .regions
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no region {name}"))
    }

    /// What the lab's PowerDNS answers for the API name.
    pub(crate) fn dns(&self) -> Vec<IpAddr> {
        let dns = self.state().dns.expect("the lab runs PowerDNS");
        let server: SocketAddr = dns.server.parse().unwrap();
        let mut answer =
            meridian_lab::dns_query(server, &dns.api_record, meridian_lab::RTYPE_A).unwrap();
        answer.sort();
        answer
    }

    /// `meridian plan|run WORKFLOW --inputs-file … --secrets-file … EXTRA… --json`, exit 0,
    /// the JSON report.
    pub(crate) fn meridian(&self, verb: &str, name: &str, extra: &[&str]) -> (Value, String) {
        let mut cmd = self.scratch.cmd();
        cmd.args([verb, &workflow(name), "--inputs-file", &self.inputs()])
            .args(["--secrets-file", &self.secrets(), "--json"])
            .args(extra);
        let out = cmd.output().expect("run meridian");
        // 6: the run succeeded and its drill did not meet every target (see the drill tests).
        let code = if out.status.code() == Some(6) { 6 } else { 0 };
        let (stdout, stderr) = expect_code(&out, code);
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{verb} {name}: not JSON ({e}):\n{stdout}\n{stderr}"));
        assert_eq!(report["status"], "succeeded", "{verb} {name}:\n{stderr}");
        assert_eq!(
            code == 6,
            report["drill"]["verdict"]
                .as_str()
                .is_some_and(|v| v != "met")
                && verb == "run",
            "exit {code} for drill {}",
            report["drill"]
        );
        (report, stderr)
    }
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let down = self
            .scratch
            .cmd()
            .args(["lab", "down", "--dir"])
            .arg(&self.dir)
            .output();
        if !matches!(&down, Ok(o) if o.status.success()) {
            eprintln!("meridian lab down failed ({down:?}); stopping through the library");
            let _ = meridian_lab::down(&self.dir);
        }
    }
}

/// The output of a (non-matrix) step in a JSON report.
pub(crate) fn output<'r>(report: &'r Value, step: &str) -> &'r Value {
    let s = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {report}"));
    if s.get("output").is_some() {
        return &s["output"];
    }
    &s["legs"][0]["output"]
}

fn outcome(report: &Value, step: &str) -> String {
    let s = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {report}"));
    s["outcome"].as_str().unwrap().to_owned()
}

/// The planned writes of a plan report, one `METHOD URL` / SQL line each.
fn planned(report: &Value) -> String {
    let mut lines = Vec::new();
    for step in report["steps"].as_array().unwrap() {
        let legs = step["legs"].as_array().cloned().unwrap_or_default();
        for leg in legs.iter().chain(std::iter::once(step)) {
            for p in leg["plan"].as_array().into_iter().flatten() {
                lines.push(format!("{}: {}", step["id"], p));
            }
        }
    }
    lines.join("\n")
}

/// `GET path` on `ip:port` with HTTP/1.1 and `Connection: close`; (status, body).
pub(crate) fn http_get(
    ip: IpAddr,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connect {ip}:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The region a data plane says it is, through the `/lab/region` route.
fn data_plane_region(lab: &LabGuard<'_>, region: &str) -> String {
    let r = lab.region(region);
    let url = &r.gateway.data_plane_url;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = http_get(IpAddr::V4(r.ip), port, "/lab/region", &[]);
    assert_eq!(status, 200, "{url}/lab/region: {body}");
    let v: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    v["region"].as_str().unwrap_or_default().to_owned()
}

fn in_recovery(lab: &LabGuard<'_>, region: &str) -> Option<bool> {
    lab.region(region).postgres.in_recovery
}

#[test]
fn packaged_workflows_validate() {
    let s = Scratch::new();
    for name in PACKAGED {
        let out = s.run(&["validate", &workflow(name)]);
        let (stdout, _) = expect_code(&out, 0);
        assert!(stdout.contains("ok"), "{name}: {stdout}");
    }
}

#[test]
fn dr_drill_crashes_the_primary_and_fails_over_unattended() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    assert_eq!(lab.dns(), [EU]);

    let (plan, _) = lab.meridian("plan", "dr-drill.yaml", &[]);
    let changes = planned(&plan);
    assert!(
        changes.contains("/regions/eu/faults/region-down"),
        "{changes}"
    );
    assert!(
        changes.contains("default_transaction_read_only"),
        "{changes}"
    );
    assert!(changes.contains("127.0.0.3"), "the DNS change: {changes}");
    assert_eq!(outcome(&plan, "verify"), "skipped");
    // Nothing changed.
    assert_eq!(lab.dns(), [EU]);
    assert_eq!(lab.region("eu").status, meridian_lab::RegionStatus::Up);
    assert_eq!(in_recovery(&lab, "us"), Some(true));

    let (run, _) = lab.meridian("run", "dr-drill.yaml", &[]);
    let killed_at = output(&run, "inject-fault")["fault_at_ms"]
        .as_u64()
        .unwrap();
    let report = output(&run, "report");
    let rto = report["rto_ms"].as_u64().expect("rto_ms");
    eprintln!("dr-drill RTO (kill → verified traffic): {rto} ms; report {report}");
    assert_eq!(
        killed_at + rto,
        output(&run, "verify")["at_ms"].as_u64().unwrap(),
        "RTO is measured from the kill"
    );
    assert!(rto < 60_000, "RTO target 60 s: {rto} ms");
    assert_eq!(lab.dns(), [US]);
    assert_eq!(lab.region("eu").status, meridian_lab::RegionStatus::Killed);
    assert_eq!(in_recovery(&lab, "us"), Some(false), "us was promoted");
    assert_eq!(data_plane_region(&lab, "us"), "us");
}

#[test]
fn failover_then_failback_returns_to_the_home_region() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);

    let approve = ["--approve", "promote"];
    // A plan passes the gate without `--approve` (it changes nothing) and plans the DNS change
    // beyond it; it used to stop there, exit 3.
    let (plan, _) = lab.meridian("plan", "active-passive-failover.yaml", &[]);
    assert!(planned(&plan).contains("127.0.0.3"), "{}", planned(&plan));
    assert_eq!(lab.dns(), [EU]);
    assert_eq!(in_recovery(&lab, "us"), Some(true));

    let (run, _) = lab.meridian("run", "active-passive-failover.yaml", &approve);
    eprintln!(
        "active-passive-failover RTO (declaration → traffic): {} ms",
        output(&run, "report")["rto_ms"]
    );
    assert_eq!(lab.dns(), [US]);
    assert_eq!(in_recovery(&lab, "us"), Some(false));
    assert_eq!(data_plane_region(&lab, "us"), "us");

    // A drill started from this state (traffic already on the standby region) measures nothing
    // real: it stops before injecting its fault (it ran, and counted as met).
    let out = s
        .cmd()
        .args([
            "run",
            &workflow("dr-drill.yaml"),
            "--inputs-file",
            &lab.inputs(),
        ])
        .args(["--secrets-file", &lab.secrets(), "--json"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 1);
    let drill: Value = serde_json::from_str(&stdout).unwrap();
    // Both checks say why: the "standby" is the old primary, fenced (`expect_role`), and the
    // traffic is on it already.
    assert_eq!(
        drill["message"], "failed: check-standby, check-traffic",
        "{drill}"
    );
    assert!(
        drill.to_string().contains("is a primary, not a standby"),
        "{drill}"
    );
    let inject = drill["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "inject-fault")
        .unwrap();
    assert_eq!(inject["outcome"], "skipped", "{drill}");
    assert_eq!(lab.dns(), [US], "nothing was changed");

    // The home region crashes while it is the fenced ex-primary: failback starts it again.
    lab.region_do("eu", "kill");

    let (plan, _) = lab.meridian("plan", "failback.yaml", &[]);
    let changes = planned(&plan);
    for want in [
        "/regions/eu/start",
        "/regions/eu/rebuild-standby?from=us",
        "default_transaction_read_only",
        "127.0.0.2",
    ] {
        assert!(changes.contains(want), "plan lacks {want}:\n{changes}");
    }
    assert_eq!(lab.dns(), [US]);
    assert_eq!(lab.region("eu").status, meridian_lab::RegionStatus::Killed);

    let (run, _) = lab.meridian("run", "failback.yaml", &[]);
    let rebuilt = output(&run, "rebuild-home");
    assert_eq!(rebuilt["role"], "standby", "{rebuilt}");
    let report = output(&run, "report");
    eprintln!(
        "failback duration (run start → traffic at home): {} ms",
        report["rto_ms"]
    );
    assert_eq!(
        report["rpo_bytes"], 0,
        "a caught-up standby loses nothing: {report}"
    );
    assert_eq!(lab.dns(), [EU]);
    assert_eq!(
        in_recovery(&lab, "eu"),
        Some(false),
        "eu is the primary again"
    );
    assert_eq!(lab.region("eu").role, "primary");
    assert_eq!(data_plane_region(&lab, "eu"), "eu");

    // The drill history keeps each workflow's figures apart (a failback's RTO, from its run's
    // start, was pooled into the failover's p95 and pass rate).
    let list = lab
        .scratch
        .cmd()
        .args(["drills", "list", "--json"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&list, 0);
    let history: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(history["summary"]["drills"], 3, "{history}");
    for w in ["active-passive-failover", "failback"] {
        assert_eq!(history["by_workflow"][w]["drills"], 1, "{w}: {history}");
        assert_eq!(history["by_workflow"][w]["met"], 1, "{w}: {history}");
    }
    // The drill refused above is listed as what it was: incomplete, in its own workflow's line.
    assert_eq!(
        history["by_workflow"]["dr-drill"]["incomplete"], 1,
        "{history}"
    );
}

#[test]
fn config_sync_and_active_active_serve_from_every_region() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let services = |region: &str, key: &str| {
        let r = lab.region(region);
        let port: u16 = r
            .gateway
            .admin_url
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (status, body) = http_get(
            IpAddr::V4(r.ip),
            port,
            "/apisix/admin/services",
            &[("X-API-KEY", &lab.secret(key))],
        );
        assert_eq!(status, 200, "{body}");
        body
    };

    // config-sync: the plan shows each region's writes and sends none.
    let (plan, _) = lab.meridian("plan", "config-sync.yaml", &[]);
    let legs = plan["steps"][0]["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2);
    for leg in legs {
        let out = &leg["output"];
        assert_eq!(out["applied"], false, "{out}");
        assert!(out["summary"]["create"].as_u64().unwrap() > 0, "{out}");
        let writes = leg["plan"].as_array().unwrap();
        let ip = if leg["key"] == "eu" {
            "127.0.0.2"
        } else {
            "127.0.0.3"
        };
        assert!(
            writes
                .iter()
                .all(|w| w["url"].as_str().unwrap().contains(ip)),
            "leg {} writes only to its region: {writes:?}",
            leg["key"]
        );
    }
    assert!(!services("eu", "ADMIN_KEY_EU").contains("lab-region"));
    assert!(!services("us", "ADMIN_KEY_US").contains("lab-region"));

    lab.meridian("run", "config-sync.yaml", &[]);
    assert!(services("eu", "ADMIN_KEY_EU").contains("lab-region"));
    assert!(services("us", "ADMIN_KEY_US").contains("lab-region"));
    // A second plan finds nothing to do.
    let (again, _) = lab.meridian("plan", "config-sync.yaml", &[]);
    for leg in again["steps"][0]["legs"].as_array().unwrap() {
        let sum = &leg["output"]["summary"];
        assert_eq!(
            (
                sum["create"].as_u64(),
                sum["update"].as_u64(),
                sum["delete"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{leg}"
        );
    }

    // active-active: the plan replaces the plain A record with weighted LUA, without doing it.
    let (plan, _) = lab.meridian("plan", "active-active.yaml", &[]);
    assert!(planned(&plan).contains("pickwrandom"), "{}", planned(&plan));
    assert_eq!(lab.dns(), [EU]);

    lab.meridian("run", "active-active.yaml", &[]);
    // pickwrandom answers one region per query; both must show up (bounded: 1 - 2^-40 odds).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer = lab.dns();
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert!([EU, US].contains(&answer[0]), "{answer:?}");
        seen.insert(answer[0]);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "weighted DNS answers both regions: {seen:?}");
    assert_eq!(data_plane_region(&lab, "eu"), "eu");
    assert_eq!(data_plane_region(&lab, "us"), "us");
}

/// A failover whose verification fails after the promotion leaves DNS on the promoted region:
/// the promotion cannot be undone, and compensating the DNS switch sent clients to the old
/// primary, fenced read-only beside the new one.
#[test]
fn a_failover_failing_after_its_promotion_keeps_dns_on_the_promoted_region() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    // Nothing answers on port 1: verify fails, after switch-dns.
    let out = s
        .cmd()
        .args(["--json", "run", &workflow("active-passive-failover.yaml")])
        .args([
            "--inputs-file",
            &lab.inputs(),
            "--secrets-file",
            &lab.secrets(),
        ])
        .args(["--approve", "promote", "--input", "data_plane_port=1"])
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 1);
    let run: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome(&run, "verify"), "failure", "{run}");
    assert_eq!(in_recovery(&lab, "us"), Some(false), "promoted");
    assert_eq!(lab.dns(), [US], "DNS went back to the fenced old primary");
}
