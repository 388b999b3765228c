//! The packaged drill, served, against the lab.

use super::*;

/// The third use of Meridian, end to end: the packaged `dr-drill` served as it ships (its
/// inputs from the lab's inputs file named in the server config, not edited), fired through
/// its schedule against the lab, and its figures in the drill history.
#[test]
fn the_packaged_dr_drill_runs_on_its_schedule_against_the_lab() {
    use crate::workflows::{EU, LabGuard, US};
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    assert_eq!(lab.dns(), [EU]);
    let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"{}\"\nsecrets-file = \"{}\"\n\n[workflow.dr-drill]\ninputs-file = \"{}\"\n",
            packaged.display(),
            lab.secrets(),
            lab.inputs()
        ),
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt().block_on(async {
        let (_, wfs) = call("GET", &served.url("/api/v1/workflows"), None, None).await;
        for w in wfs["workflows"].as_array().unwrap() {
            assert_eq!(w["valid"], true, "{w}");
        }
        let (_, scheds) = call("GET", &served.url("/api/v1/schedules"), None, None).await;
        let drill = scheds["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "dr-drill#0")
            .unwrap()
            .clone();
        assert_eq!(drill["error"], Json::Null, "{drill}");
        assert!(drill["next_fire"].is_string(), "{drill}");

        let (code, fired) = call(
            "POST",
            &served.url("/api/v1/schedules/dr-drill%230/trigger"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 202, "{fired}");
        let id = fired["started_run"].as_str().unwrap().to_string();
        let ended = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(180),
            |b| b["summary"]["status"] != "running",
        )
        .await;
        // Ended, its canaries still measuring (3 s without a failure at least): said, so a
        // poller does not take the figures as final; then they are.
        assert_eq!(ended["measuring"], true, "{ended}");
        let run = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(180),
            |b| b["measuring"] == false,
        )
        .await;
        assert!(run["drill"]["figures"].is_array(), "{run}");
        assert_eq!(
            run["summary"]["status"],
            "succeeded",
            "{run}\n{}",
            served.log()
        );
        assert_eq!(run["run"]["settings"]["trigger"], "schedule:dr-drill#0");

        let (_, drills) = call(
            "GET",
            &served.url("/api/v1/drills?workflow=dr-drill"),
            None,
            None,
        )
        .await;
        let d = &drills["drills"][0];
        assert_eq!(d["run"], id.as_str(), "{drills}");
        let rto = d["drill"]["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "RTO")
            .unwrap()
            .clone();
        assert!(rto["achieved"].as_f64().unwrap() > 0.0, "{rto}");
        assert_eq!(rto["target"], 60_000.0);
        eprintln!("served dr-drill: {}", d["drill"]);
    });
    assert_eq!(lab.dns(), [US]);
    drop(served);
}

/// Readiness under `serve`: checked every second for `dr-drill`, `GET /api/v1/readiness` and the
/// `meridian_ready` gauge follow the lab, and the turn to "not ready" when replication is cut
/// is notified (`readiness.changed`), as is the turn back.
#[test]
fn readiness_is_checked_on_an_interval_and_a_change_is_notified() {
    use crate::support::expect_code;
    use crate::workflows::LabGuard;
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    // The gateways serve the ADC files first, so only replication can make it not ready.
    lab.meridian("run", "config-sync.yaml", &[]);
    let rt = rt();
    let (hook, calls) = rt.block_on(receiver());
    let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"{}\"\nsecrets-file = \"{}\"\n\n[workflow.dr-drill]\ninputs-file = \"{}\"\nready-every = \"1s\"\n\n[[notify]]\nurl = \"{hook}\"\nevents = [\"readiness.changed\"]\n",
            packaged.display(),
            lab.secrets(),
            lab.inputs()
        ),
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let dir = lab.dir.to_string_lossy().into_owned();
    rt.block_on(async {
        let ready_is = |want: bool| {
            move |b: &Json| {
                b["readiness"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["workflow"] == "dr-drill"))
                    .is_some_and(|r| r["ready"] == want)
            }
        };
        let url = served.url("/api/v1/readiness");
        until(&url, None, Duration::from_secs(90), ready_is(true)).await;

        expect_code(
            &s.run(&["lab", "region", "eu", "replication-cut", "--dir", &dir]),
            0,
        );
        let r = until(&url, None, Duration::from_secs(60), ready_is(false)).await;
        assert!(
            r.to_string().contains("not streaming"),
            "the failed rule is named: {r}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = calls.lock().unwrap().iter().any(|(h, b)| {
                h.iter()
                    .any(|(k, v)| k == "x-meridian-event" && v == "readiness.changed")
                    && b.contains("not-ready")
            });
            if got {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no readiness.changed notification: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, metrics) = call("GET", &served.url("/metrics"), None, None).await;
        let metrics = metrics.as_str().unwrap_or_default().to_string();
        assert!(
            metrics.contains("meridian_ready{workflow=\"dr-drill\"} 0"),
            "{metrics}"
        );

        expect_code(&s.run(&["lab", "region", "eu", "start", "--dir", &dir]), 0);
        until(&url, None, Duration::from_secs(60), ready_is(true)).await;
    });
    // A server started while the workflow is not ready says so with its first answer (it said
    // nothing until the workflow had turned ready and back).
    drop(served);
    let not_ready = || {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b.contains("readiness.changed") && b.contains("not-ready"))
            .count()
    };
    let before = not_ready();
    expect_code(
        &s.run(&["lab", "region", "eu", "replication-cut", "--dir", &dir]),
        0,
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while not_ready() == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no readiness.changed for the first answer: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    expect_code(&s.run(&["lab", "region", "eu", "start", "--dir", &dir]), 0);
}
