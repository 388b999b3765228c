//! GitOps and drift against the lab: `meridian drift` sees a change made behind Meridian's back
//! on one region's gateway, per region and object, and sees it clear after a sync; under
//! `meridian serve`, the packaged `config-sync-gitops` syncs every region on each commit to
//! the ADC files, asks for approval when a commit deletes an object, and the drift check
//! notifies a change of state.

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::serve::git::{push, repo};
use crate::serve::{Served, call, receiver, rt, until};
use crate::support::Scratch;
use crate::workflows::LabGuard;

fn packaged(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../workflows")
        .join(name)
}

/// The global rule `prometheus` deleted straight from a region's Admin API, as an operator with
/// curl would.
async fn delete_rule(admin: String, key: String) {
    let r = reqwest::Client::new()
        .delete(format!("{admin}/apisix/admin/global_rules/prometheus"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

fn behind_the_back(lab: &LabGuard<'_>, region: &str, key_secret: &str) {
    let (admin, key) = (lab.region(region).gateway.admin_url, lab.secret(key_secret));
    rt().block_on(delete_rule(admin, key));
}

fn drift(s: &Scratch, lab: &LabGuard<'_>, json: bool) -> (i32, String) {
    let wf = packaged("config-sync.yaml");
    let mut args = vec!["drift", wf.to_str().unwrap(), "--inputs-file"];
    let (inputs, secrets) = (lab.inputs(), lab.secrets());
    args.extend([inputs.as_str(), "--secrets-file", secrets.as_str()]);
    if json {
        args.insert(0, "--json");
    }
    let out = s.run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn drift_appears_after_a_change_behind_meridians_back_and_clears_after_a_sync() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    lab.meridian("run", "config-sync.yaml", &[]);
    let (code, out) = drift(&s, &lab, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config-sync: IN SYNC"), "{out}");

    behind_the_back(&lab, "eu", "ADMIN_KEY_EU");
    let (code, out) = drift(&s, &lab, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("config-sync: DRIFT"), "{out}");
    assert!(out.contains("missing  global_rule prometheus"), "{out}");
    let (code, out) = drift(&s, &lab, true);
    assert_eq!(code, 1, "{out}");
    let d: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(d["state"], "drift");
    let by_leg = |leg: &str| {
        d["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["leg"] == leg)
            .unwrap_or_else(|| panic!("no region {leg}: {d}"))
            .clone()
    };
    assert_eq!(
        by_leg("eu")["objects"],
        json!([{"kind": "missing", "resource_type": "global_rule", "name": "prometheus"}])
    );
    assert_eq!(by_leg("us")["objects"], json!([]));

    lab.meridian("run", "config-sync.yaml", &[]);
    let (code, out) = drift(&s, &lab, false);
    assert_eq!(code, 0, "the sync put the rule back: {out}");
}

#[test]
fn gitops_syncs_every_commit_asks_before_deleting_and_notifies_drift() {
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    let (origin, work) = repo(s.path());
    let adc = std::fs::read_to_string(packaged("adc/lab.yaml")).unwrap();
    // The repository starts as the packaged tree is: every file the workflow's `paths` take in.
    let shipped: Vec<(String, String)> = std::fs::read_dir(packaged("adc"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (
                format!("workflows/adc/{name}"),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let files: Vec<(&str, Option<&str>)> = shipped
        .iter()
        .map(|(path, text)| (path.as_str(), Some(text.as_str())))
        .collect();
    let c1 = push(&work, &files, "lab config");
    // The packaged workflow, pointed at this repository and polled every second.
    let wf = std::fs::read_to_string(packaged("config-sync-gitops.yaml"))
        .unwrap()
        .replace(
            "    repo: ..\n",
            &format!("    repo: {}\n", origin.display()),
        )
        .replace("interval: 30s", "interval: 1s");
    s.write("wf/config-sync-gitops.yaml", &wf);
    let rt = rt();
    let (hook, calls) = rt.block_on(receiver());
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"wf\"\nsecrets-file = \"{}\"\n\n[workflow.config-sync-gitops]\ninputs-file = \"{}\"\ndrift-every = \"1s\"\n\n[[notify]]\nurl = \"{hook}\"\nevents = [\"drift.changed\", \"run.awaiting-approval\"]\n",
            lab.secrets(),
            lab.inputs()
        ),
    );
    let (us_admin, us_key) = (
        lab.region("us").gateway.admin_url,
        lab.secret("ADMIN_KEY_US"),
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let drift_url = served.url("/api/v1/drift");
        let drift_is = |state: &'static str| {
            move |b: &Json| {
                b["drift"]
                    .as_array()
                    .and_then(|a| a.first())
                    .is_some_and(|d| d["state"] == state)
            }
        };
        // The lab's gateways start empty: the branch head is not applied yet.
        let d = until(&drift_url, None, Duration::from_secs(60), drift_is("drift")).await;
        assert_eq!(d["drift"][0]["drift"]["commit"], c1.as_str(), "{d}");

        // A commit adding a route: synced to every region without asking.
        let more = adc.replace(
            "      - name: orders\n",
            "      - name: health\n        uris: [/health]\n        methods: [GET]\n      - name: orders\n",
        );
        assert_ne!(more, adc);
        let c2 = push(&work, &[("workflows/adc/lab.yaml", Some(&more))], "add health");
        let runs_url = served.url("/api/v1/runs?limit=20");
        let mine = |b: &Json, want: &str| -> Option<Json> {
            // Drift checks are plan runs of the same workflow: only applied runs count here.
            b["runs"]
                .as_array()?
                .iter()
                .find(|r| r["status"] == want && r["mode"] == "apply")
                .cloned()
        };
        let b = until(&runs_url, None, Duration::from_secs(90), |b| {
            mine(b, "succeeded").is_some()
        })
        .await;
        let run = mine(&b, "succeeded").unwrap();
        let (_, shown) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
        assert_eq!(shown["run"]["settings"]["trigger"], format!("git:{c2}"));
        until(&drift_url, None, Duration::from_secs(60), drift_is("in-sync")).await;

        // A commit deleting a route waits for a person.
        let fewer = more.replace("      - name: health\n        uris: [/health]\n        methods: [GET]\n", "");
        let c3 = push(&work, &[("workflows/adc/lab.yaml", Some(&fewer))], "drop health");
        let b = until(&runs_url, None, Duration::from_secs(90), |b| {
            mine(b, "awaiting-approval").is_some()
        })
        .await;
        let gated = mine(&b, "awaiting-approval").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // The gate says what goes (it said "see the plan step's events").
        let (_, events) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{gated}/events")),
            None,
            None,
        )
        .await;
        let text = events.to_string();
        assert!(
            text.contains("deletes: route `health` on http://"),
            "the approval does not name what is deleted: {text}"
        );
        let (code, body) = call(
            "POST",
            &served.url(&format!("/api/v1/runs/{gated}/approvals/approve-deletes")),
            None,
            Some(json!({"decision": "approve", "comment": "health moved"})),
        )
        .await;
        assert!(code < 300, "{code} {body}");
        let r = until(
            &served.url(&format!("/api/v1/runs/{gated}")),
            None,
            Duration::from_secs(90),
            |b| b["summary"]["status"] == "succeeded",
        )
        .await;
        assert_eq!(r["run"]["settings"]["trigger"], format!("git:{c3}"));
        until(&drift_url, None, Duration::from_secs(60), drift_is("in-sync")).await;

        // Behind Meridian's back: drift, notified, on the gauge.
        delete_rule(us_admin, us_key).await;
        let d = until(&drift_url, None, Duration::from_secs(60), drift_is("drift")).await;
        let regions = d["drift"][0]["drift"]["regions"].as_array().unwrap().clone();
        let us = regions.iter().find(|r| r["leg"] == "us").unwrap();
        assert_eq!(us["objects"][0]["name"], "prometheus", "{d}");
        let (_, metrics) = call("GET", &served.url("/metrics"), None, None).await;
        let metrics = metrics.as_str().unwrap_or_default().to_string();
        assert!(
            metrics.contains("meridian_drift{workflow=\"config-sync-gitops\"} 1"),
            "{metrics}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = |kind: &str, needle: &str| {
                calls.lock().unwrap().iter().any(|(h, b)| {
                    h.iter().any(|(k, v)| k == "x-meridian-event" && v == kind) && b.contains(needle)
                })
            };
            if seen("drift.changed", "us: 1 object differs")
                && seen("run.awaiting-approval", &c3)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "notifications: {:?}\n{}",
                calls.lock().unwrap(),
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    drop(served);
}
