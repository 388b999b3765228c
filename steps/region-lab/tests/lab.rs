//! region-lab against a real lab daemon (`meridian-lab up`, built in the host workspace:
//! `cargo build -p meridian-lab --bin meridian-lab`). The binary is `$MERIDIAN_LAB_BIN`, else
//! `/var/tmp/meridian-target/debug/meridian-lab`; without it the test fails with that command,
//! unless `MERIDIAN_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meridian_families::region::{MapMemo, RegionInput, RegionOutput};
use meridian_families::{Env, MapSecrets, StdClock, StderrLog, StepError, UreqTransport};
use serde_json::json;

fn lab_bin() -> Option<PathBuf> {
    meridian_families::testing::host_binary(
        "MERIDIAN_LAB_BIN",
        "/var/tmp/meridian-target/debug/meridian-lab",
        "build it in the host workspace: `cargo build -p meridian-lab --bin meridian-lab`",
    )
}

/// A running lab; `Drop` runs `meridian-lab down`, which leaves no process behind.
struct Lab {
    bin: PathBuf,
    dir: PathBuf,
    control_url: String,
}

impl Lab {
    fn up(bin: &Path) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("meridian-region-lab-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(bin)
            .args(["up", "--regions", "eu,us", "--dir"])
            .arg(&dir)
            .output()
            .expect("run meridian-lab up");
        let mut lab = Lab {
            bin: bin.to_owned(),
            dir,
            control_url: String::new(),
        };
        assert!(
            out.status.success(),
            "meridian-lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lab state JSON");
        lab.control_url = state["control_url"]
            .as_str()
            .expect("control_url")
            .to_owned();
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn act(
    lab: &Lab,
    memo: &MapMemo,
    action: &str,
    region: &str,
    timeout_ms: u64,
) -> Result<RegionOutput, StepError> {
    act_with(lab, memo, action, region, timeout_ms, json!({}))
}

/// `act` with more input fields (`capacity`, …).
fn act_with(
    lab: &Lab,
    memo: &MapMemo,
    action: &str,
    region: &str,
    timeout_ms: u64,
    extra: serde_json::Value,
) -> Result<RegionOutput, StepError> {
    let mut with = json!({"action": action, "region": region, "timeout_ms": timeout_ms, "poll_interval_ms": 50,
                          "provider": {"lab": {"control_url": lab.control_url}}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        with[k] = v.clone();
    }
    let input = RegionInput::from_json(&with.to_string())?;
    let http = UreqTransport::new(Duration::from_secs(90));
    let env = Env {
        http: &http,
        secrets: &MapSecrets::default(),
        clock: &StdClock,
        log: &StderrLog,
    };
    region_lab::run(&env, memo, &input, false)
}

#[test]
fn kill_wait_start_and_wait_ready_against_the_real_lab() {
    let Some(bin) = lab_bin() else { return };
    let lab = Lab::up(&bin);
    let memo = MapMemo::default();

    let eu = act(&lab, &memo, "status", "eu", 10_000).unwrap();
    assert_eq!((eu.status.as_str(), eu.ready), ("up", true), "{eu:?}");

    let killed = act(&lab, &memo, "kill", "us", 60_000).unwrap();
    assert_eq!(
        (killed.status.as_str(), killed.ready, killed.changed),
        ("killed", false, true)
    );
    let killed_at = killed.killed_at_ms.expect("killed_at_ms");
    let again = act(&lab, &memo, "kill", "us", 60_000).unwrap();
    assert_eq!(
        (again.changed, again.killed_at_ms),
        (false, Some(killed_at))
    );

    let e = act(&lab, &memo, "wait-ready", "us", 1_000).unwrap_err();
    assert!(
        e.is_retryable() && e.message().contains("status killed"),
        "{e:?}"
    );

    let started = act(&lab, &memo, "start", "us", 60_000).unwrap();
    assert_eq!((started.status.as_str(), started.changed), ("up", true));
    let ready = act(&lab, &memo, "wait-ready", "us", 60_000).unwrap();
    assert!(ready.ready);
    let ready_at = ready.ready_at_ms.expect("ready_at_ms");
    assert!(
        ready_at >= killed_at,
        "RTO = ready_at_ms - killed_at_ms = {} ms",
        ready_at - killed_at
    );

    // Scale us to 3 data planes: the step waits for the new ones' start-up time (the lab's
    // default, 1 s); back to 1, the others drain at once.
    let scaled = act_with(&lab, &memo, "scale", "us", 60_000, json!({"capacity": 3})).unwrap();
    assert_eq!(
        (scaled.changed, scaled.capacity, scaled.instances_ready),
        (true, Some(3), Some(3)),
        "{scaled:?}"
    );
    assert_eq!(scaled.data_planes.len(), 3, "{scaled:?}");
    let took = scaled.capacity_ready_at_ms.unwrap() - scaled.scaled_at_ms.unwrap();
    assert!(
        took >= 1_000,
        "new instances take their start-up time: {took} ms"
    );
    let full = act_with(
        &lab,
        &memo,
        "wait-ready",
        "us",
        10_000,
        json!({"capacity": 3}),
    )
    .unwrap();
    assert_eq!(full.instances_ready, Some(3));
    let down = act_with(&lab, &memo, "scale", "us", 10_000, json!({"capacity": 1})).unwrap();
    assert_eq!((down.capacity, down.instances_ready), (Some(1), Some(1)));
    assert!(down.ready);

    let stopped = act(&lab, &memo, "stop", "eu", 60_000).unwrap();
    assert_eq!((stopped.status.as_str(), stopped.ready), ("stopped", false));
    assert!(stopped.stopped_at_ms.is_some());
    let e = act(&lab, &memo, "status", "ap", 10_000).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("no region `ap`")),
        "{e:?}"
    );
}
