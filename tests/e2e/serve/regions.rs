//! The runner survives the region it fails over from: one `meridian serve` per region, each with
//! its own embedded store, workflows, inputs and secrets. Region eu dies together with its
//! server; the us server, alone, runs the failover, an approver answers its gate through the
//! us server's API, and traffic moves to us.

use super::*;

#[test]
fn the_us_server_fails_over_alone_when_eu_and_its_server_are_gone() {
    use crate::support::expect_code;
    use crate::workflows::{EU, LabGuard, US};
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    assert_eq!(lab.dns(), [EU]);
    let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let config = |region: &str| {
        s.write(
            &format!("{region}/meridian.toml"),
            &format!(
                "workflows = \"{}\"\nsecrets-file = \"{}\"\n\n[workflow.active-passive-failover]\ninputs-file = \"{}\"\n",
                packaged.display(),
                lab.secrets(),
                lab.inputs()
            ),
        )
    };
    // Each server keeps its journal in its own state directory (in production: on its own
    // region's disk), so nothing it needs lives in the other region.
    let server = |region: &str| {
        let path = config(region);
        let mut cmd = s.cmd();
        cmd.env("MERIDIAN_STATE_DIR", s.path().join(region).join("state"));
        Served::spawn(cmd, &["--config", path.to_str().unwrap()])
    };
    let eu_server = server("eu");
    let us_server = server("us");

    // Region eu is lost, and its server with it.
    let dir = lab.dir.to_string_lossy().into_owned();
    expect_code(&s.run(&["lab", "region", "eu", "kill", "--dir", &dir]), 0);
    drop(eu_server);

    rt().block_on(async {
        let (code, started) = call(
            "POST",
            &us_server.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "active-passive-failover"})),
        )
        .await;
        assert_eq!(code, 202, "{started}");
        let id = started["id"].as_str().unwrap().to_string();
        let run_url = us_server.url(&format!("/api/v1/runs/{id}"));
        let waiting = until(&run_url, None, Duration::from_secs(120), |b| {
            b["summary"]["status"] != "running"
        })
        .await;
        assert_eq!(
            waiting["summary"]["status"],
            "awaiting-approval",
            "{waiting}\n{}",
            us_server.log()
        );
        let (code, body) = call(
            "POST",
            &us_server.url(&format!("/api/v1/runs/{id}/approvals/promote")),
            None,
            Some(json!({"decision": "approve", "comment": "eu is gone"})),
        )
        .await;
        assert!(code < 300, "{code} {body}");
        let done = until(&run_url, None, Duration::from_secs(180), |b| {
            !matches!(
                b["summary"]["status"].as_str(),
                Some("running" | "awaiting-approval")
            )
        })
        .await;
        assert_eq!(
            done["summary"]["status"],
            "succeeded",
            "{done}\n{}",
            us_server.log()
        );
    });
    assert_eq!(lab.dns(), [US]);
    // The run is in the us server's journal only.
    let out = s
        .cmd()
        .env("MERIDIAN_STATE_DIR", s.path().join("us").join("state"))
        .args(["runs", "list"])
        .output()
        .unwrap();
    let (listed, _) = expect_code(&out, 0);
    assert!(listed.contains("active-passive-failover"), "{listed}");
    drop(us_server);
}
