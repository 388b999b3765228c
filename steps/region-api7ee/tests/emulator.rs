//! region-api7ee against the API7 control-plane emulator and an APISIX data-plane emulator
//! (`meridian-emulator`, built in the host workspace: `cargo build -p meridian-emulators --bin
//! meridian-emulator`). The binary is `$MERIDIAN_EMULATOR_BIN`, else
//! `/var/tmp/meridian-target/debug/meridian-emulator`; without it the test fails with that
//! command, unless `MERIDIAN_ALLOW_SKIP=1`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_families::region::{MapMemo, RegionInput, RegionOutput};
use meridian_families::{Env, MapSecrets, StdClock, StderrLog, StepError, UreqTransport};
use serde_json::json;

const TOKEN: &str = "a7ee-region-test-token";

fn emulator_bin() -> Option<PathBuf> {
    meridian_families::testing::host_binary(
        "MERIDIAN_EMULATOR_BIN",
        "/var/tmp/meridian-target/debug/meridian-emulator",
        "build it in the host workspace: `cargo build -p meridian-emulators --bin meridian-emulator`",
    )
}

use meridian_families::testing::free_port;

/// An emulator process, killed on drop.
struct Emulator(Child);

impl Emulator {
    fn start(bin: &Path, args: &[String], port: u16) -> Emulator {
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn meridian-emulator");
        let emu = Emulator(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "emulator {args:?} did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        emu
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn act(
    memo: &MapMemo,
    token: &str,
    action: &str,
    provider: serde_json::Value,
    timeout_ms: u64,
) -> Result<RegionOutput, StepError> {
    let input = RegionInput::from_json(
        &json!({"action": action, "region": "eu", "timeout_ms": timeout_ms, "poll_interval_ms": 100,
                "provider": {"api7ee": provider}})
        .to_string(),
    )?;
    let http = UreqTransport::new(Duration::from_secs(10));
    let secrets = MapSecrets::from_pairs([("API7_TOKEN", token)]);
    let env = Env {
        http: &http,
        secrets: &secrets,
        clock: &StdClock,
        log: &StderrLog,
    };
    region_api7ee::run(&env, memo, &input, false)
}

#[test]
fn deploy_status_and_wait_against_the_emulators() {
    let Some(bin) = emulator_bin() else { return };
    let cp_port = free_port();
    let _cp = Emulator::start(
        &bin,
        &[
            "api7".into(),
            "--listen".into(),
            format!("127.0.0.1:{cp_port}"),
            "--token".into(),
            TOKEN.into(),
        ],
        cp_port,
    );
    let (admin, data) = (free_port(), free_port());
    let dp = Emulator::start(
        &bin,
        &[
            "apisix".into(),
            "--admin".into(),
            format!("127.0.0.1:{admin}"),
            "--data".into(),
            format!("127.0.0.1:{data}"),
        ],
        data,
    );
    let provider = json!({"control_plane": format!("http://127.0.0.1:{cp_port}"), "token_secret": "API7_TOKEN",
                          "gateway_group": "region-eu", "data_planes": [format!("http://127.0.0.1:{data}")]});

    let memo = MapMemo::default();
    let out = act(&memo, TOKEN, "deploy", provider.clone(), 10_000).unwrap();
    let id = out.gateway_group_id.clone().expect("group id");
    assert_eq!(
        (out.gateway_group_created, out.instance_token_issued),
        (Some(true), Some(true))
    );
    assert!(out.ready && out.ready_at_ms.is_some(), "{out:?}");
    assert_eq!(
        out.instances,
        Some(0),
        "no gateway registered with the emulator yet"
    );
    assert!(
        !serde_json::to_string(&out).unwrap().contains("a7adm-"),
        "the admin key value is withheld"
    );

    // Another run finds the group by name instead of creating a second one.
    let again = act(
        &MapMemo::default(),
        TOKEN,
        "deploy",
        provider.clone(),
        10_000,
    )
    .unwrap();
    assert_eq!(
        (
            again.gateway_group_id.as_deref(),
            again.gateway_group_created
        ),
        (Some(id.as_str()), Some(false))
    );
    let st = act(&memo, TOKEN, "status", provider.clone(), 10_000).unwrap();
    assert_eq!((st.status.as_str(), st.ready), ("ready", true));

    let e = act(&memo, "not-the-token", "status", provider.clone(), 10_000).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("HTTP 401")),
        "{e:?}"
    );

    drop(dp);
    let e = act(&memo, TOKEN, "wait-ready", provider, 1_000).unwrap_err();
    assert!(
        e.is_retryable() && e.message().contains("not ready after 1000 ms"),
        "{e:?}"
    );
}
