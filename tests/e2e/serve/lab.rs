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
        let id = fired["last_run"].as_str().unwrap().to_string();
        let run = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(180),
            |b| b["summary"]["status"] != "running",
        )
        .await;
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
