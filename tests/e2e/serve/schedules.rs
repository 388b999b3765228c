//! Schedules (fire, overlap, pause after failures), reloads that keep the previous version, and
//! a restart that resumes a run.

use super::*;

#[test]
fn schedules_fire_skip_overlaps_and_pause_after_failures() {
    let s = Scratch::new();
    with_sleeper(&s);
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    // Each run takes 2.5 s and a tick comes every second: overlap skip lets one run at a time.
    s.write(
        "wf/slow.yaml",
        "name: slow\non:\n  schedule:\n    - {cron: \"* * * * * *\", overlap: skip}\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 2500}}\n",
    );
    // Times out every time: paused after two failures.
    s.write(
        "wf/broken.yaml",
        "name: broken\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: ./sleeper.wasm, timeout: 50ms, with: {ms: 5000}}\n",
    );
    // Its secret has no value on this server: each start fails before the run exists.
    s.write(
        "wf/nosecret.yaml",
        "name: nosecret\nsecrets: [TOKEN]\non:\n  schedule:\n    - cron: \"0 0 1 1 *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\npause-after-failures = 2\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let rt = rt();
    rt.block_on(async {
        // A trigger whose run cannot start says why (it answered 202 and started nothing, the
        // reason only in the schedule's `last_result`), and the server's log says it too.
        let (code, err) = call(
            "POST",
            &served.url("/api/v1/schedules/nosecret%230/trigger"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 400, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("secret `TOKEN` has no value"),
            "{err}"
        );
        let url = served.url("/api/v1/schedules");
        let paused = until(&url, None, Duration::from_secs(60), |b| {
            b["schedules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "broken#0" && s["paused"].is_string())
        })
        .await;
        let broken = paused["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "broken#0")
            .unwrap()
            .clone();
        assert!(
            broken["paused"]
                .as_str()
                .unwrap()
                .contains("2 consecutive failed runs"),
            "{broken}"
        );
        // The last result's state in a word of its own (the console read it out of the text).
        assert_eq!(broken["last_state"], "failed", "{broken}");
        // Why the last run failed, not only which step did.
        assert!(
            broken["paused"]
                .as_str()
                .unwrap()
                .contains("failed: a (a: timed out after 50ms"),
            "{broken}"
        );
        assert_eq!(broken["next_fire"], Json::Null);
        // Let more ticks pass: a paused schedule stays paused and starts nothing.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let (_, runs) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=broken"),
            None,
            None,
        )
        .await;
        assert_eq!(runs["total"], 2, "{runs}");
        // Triggering it by hand says it is paused (it used to answer 202 and start nothing).
        let (code, err) = call(
            "POST",
            &served.url("/api/v1/schedules/broken%230/trigger"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 409, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is paused (paused after 2 consecutive failed runs"),
            "{err}"
        );
        // The way out, once, as a request that works when typed (`#` percent-encoded).
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("); resume it first: POST /api/v1/schedules/broken%230/resume"),
            "{message}"
        );
        assert_eq!(message.matches("resume it").count(), 1, "{message}");

        let (_, runs) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=tick&status=succeeded"),
            None,
            None,
        )
        .await;
        assert!(runs["total"].as_u64().unwrap() >= 3, "{runs}");

        let (_, all) = call("GET", &url, None, None).await;
        let slow = all["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "slow#0")
            .unwrap()
            .clone();
        let (_, runs) = call("GET", &served.url("/api/v1/runs?workflow=slow"), None, None).await;
        let ran = runs["runs"].as_array().unwrap();
        let overlapping = ran.iter().filter(|r| r["status"] == "running").count();
        assert!(overlapping <= 1, "{runs}");
        assert!(!ran.is_empty());
        // Over ~5 s of ticks, 2.5 s runs one at a time: a few runs, not one per tick.
        assert!(ran.len() <= 3, "{runs}");
        assert!(
            slow["last_result"]
                .as_str()
                .unwrap_or_default()
                .contains("skipped")
                || ran.len() >= 2,
            "{slow}"
        );
        let word = slow["last_state"].as_str().unwrap_or_default();
        assert!(["skipped", "succeeded"].contains(&word), "{slow}");
        // A trigger while a run of it goes is skipped too, and its answer says it started none
        // (`last_run` alone named the run before it). At most 20 tries, 200 ms apart.
        let mut skipped = None;
        for _ in 0..20 {
            let (code, fired) = call(
                "POST",
                &served.url("/api/v1/schedules/slow%230/trigger"),
                None,
                None,
            )
            .await;
            assert_eq!(code, 202, "{fired}");
            if fired["started_run"].is_null() {
                skipped = Some(fired);
                break;
            }
            assert!(fired["started_run"].is_string(), "{fired}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let skipped = skipped.expect("one trigger found a run of it going");
        assert!(
            skipped["last_result"]
                .as_str()
                .unwrap_or_default()
                .contains("skipped"),
            "{skipped}"
        );

        // Resume it: it fires again.
        let (code, info) = call(
            "POST",
            &served.url("/api/v1/schedules/broken%230/resume"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{info}");
        assert_eq!(info["paused"], Json::Null);

        let (code, metrics) = call("GET", &served.url("/metrics"), None, None).await;
        assert_eq!(code, 200);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(
            metrics.contains("meridian_schedule_lateness_seconds_count"),
            "{metrics}"
        );
        assert!(
            metrics.contains("meridian_runs{state=\"failed\",mode=\"apply\"}"),
            "{metrics}"
        );
    });
    let log = served.log();
    drop(served);
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("could not start a run") && log.contains("nosecret#0"),
        "{log}"
    );
}

#[test]
fn an_invalid_edit_keeps_the_previous_version_and_a_restart_resumes() {
    let s = Scratch::new();
    with_sleeper(&s);
    let slow = "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1500}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 1500}}\n";
    s.write("wf/slow.yaml", slow);
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\nreload-interval = \"100ms\"\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let rt = rt();
    let id = rt.block_on(async {
        // A broken edit: reported with file:line:col, the previous version serves on.
        s.write("wf/slow.yaml", &slow.replace("needs: a", "needz: a"));
        let wfs = until(
            &served.url("/api/v1/workflows"),
            None,
            Duration::from_secs(20),
            |b| b["workflows"][0]["valid"] == false,
        )
        .await;
        let err = wfs["workflows"][0]["error"].as_str().unwrap();
        assert!(err.contains("slow.yaml:4:"), "{err}");
        assert_eq!(wfs["workflows"][0]["name"], "slow");
        let (code, body) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "slow"})),
            &[("Idempotency-Key", "once")],
        )
        .await;
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    });
    // Kill the server while the run is in step a or b.
    std::thread::sleep(Duration::from_millis(800));
    drop(served);
    // Restore the file (a resume refuses a changed workflow), then start again.
    s.write("wf/slow.yaml", slow);
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let run = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(60),
            |b| b["summary"]["status"] != "running",
        )
        .await;
        assert_eq!(run["summary"]["status"], "succeeded", "{run}");
        // The request retried across the restart finds the run it started.
        let (code, again) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "slow"})),
            &[("Idempotency-Key", "once")],
        )
        .await;
        assert_eq!(code, 202, "{again}");
        assert_eq!(again["id"], id.as_str());
        // The same key for another request is refused (it used to answer with the first run).
        let (code, other) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "slow", "plan": true})),
            &[("Idempotency-Key", "once")],
        )
        .await;
        assert_eq!(code, 422, "{other}");
        let message = other["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`once` started run {id} of `slow` (apply)")),
            "{message}"
        );
        let (_, runs) = call("GET", &served.url("/api/v1/runs?workflow=slow"), None, None).await;
        assert_eq!(runs["total"], 1, "{runs}");
    });
    assert!(
        served.log().contains("resuming an interrupted run"),
        "{}",
        served.log()
    );
}

/// A readiness check's plan run holds the server's lease while it runs (so a takeover pass
/// never resumes it under the server running it) and lets it go when it ends.
#[test]
fn a_readiness_check_runs_under_the_servers_lease() {
    use meridian_store::Journal;
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join("wf/sleeper.wasm"),
    )
    .unwrap();
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1500}}\n",
    );
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\n\n[workflow.slow]\nready-every = \"1h\"\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let journal = meridian_store::SqliteStore::open(&s.path().join("state/meridian.db")).unwrap();
    let leased = |id: &str| {
        // Another owner is refused while the lease is live; a run nobody leases is free.
        !journal
            .lease_run(id, "someone-else", Duration::from_millis(1))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        assert!(
            Instant::now() < deadline,
            "no readiness run started: {}",
            served.log()
        );
        let running = journal.runs(10).unwrap();
        if let Some(r) = running
            .iter()
            .find(|r| r.workflow == "slow" && r.status == meridian_protocol::RunStatus::Running)
        {
            break r.id.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(leased(&id), "the running check holds a lease");
    loop {
        assert!(Instant::now() < deadline, "the readiness run never ended");
        let (_, summary) = journal.run(&id).unwrap();
        if summary.status != meridian_protocol::RunStatus::Running {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Released once it ended (the release follows the run's end closely).
    let released = Instant::now() + Duration::from_secs(5);
    while leased(&id) {
        assert!(Instant::now() < released, "the lease was not let go");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(served);
}

/// Regression: a schedule's pause lived in the server's memory only. A restart (or a crash) of
/// the server forgot a person's pause and the pause after failed runs, and the schedule fired
/// again — a paused drill that breaks the primary region came back by itself.
#[test]
fn a_schedules_pause_survives_a_restart() {
    let s = Scratch::new();
    with_sleeper(&s);
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    s.write(
        "wf/broken.yaml",
        "name: broken\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: ./sleeper.wasm, timeout: 50ms, with: {ms: 5000}}\n",
    );
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\npause-after-failures = 1\n",
    );
    let schedule = |all: &Json, id: &str| {
        all["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {all}"))
            .clone()
    };
    let rt = rt();
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let (tick_runs, broken_runs) = rt.block_on(async {
        let (code, paused) = call(
            "POST",
            &served.url("/api/v1/schedules/tick%230/pause"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{paused}");
        until(
            &served.url("/api/v1/schedules"),
            None,
            Duration::from_secs(60),
            |b| schedule(b, "broken#0")["paused"].is_string(),
        )
        .await;
        let total = |wf: &'static str| {
            let url = served.url(&format!("/api/v1/runs?workflow={wf}"));
            async move {
                call("GET", &url, None, None).await.1["total"]
                    .as_u64()
                    .unwrap()
            }
        };
        // Runs the paused schedules started before their pause (a failing tick may have
        // started a second run before the first one ended).
        (total("tick").await, total("broken").await)
    });
    drop(served);

    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let (_, all) = call("GET", &served.url("/api/v1/schedules"), None, None).await;
        let tick = schedule(&all, "tick#0");
        assert!(
            tick["paused"].as_str().unwrap().starts_with("paused by"),
            "{tick}"
        );
        assert_eq!(tick["next_fire"], Json::Null, "{tick}");
        let broken = schedule(&all, "broken#0");
        assert!(
            broken["paused"]
                .as_str()
                .unwrap()
                .contains("consecutive failed runs"),
            "{broken}"
        );
        assert!(
            broken["consecutive_failures"].as_u64().unwrap() >= 1,
            "{broken}"
        );
        // Its last run is read back from the journal (a restart forgot it).
        let (_, newest) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=broken&limit=1"),
            None,
            None,
        )
        .await;
        assert_eq!(broken["last_run"], newest["runs"][0]["id"], "{broken}");
        assert!(broken["last_fire"].is_string(), "{broken}");
        // Ticks pass: neither fires.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (_, runs) = call("GET", &served.url("/api/v1/runs?workflow=tick"), None, None).await;
        assert_eq!(runs["total"].as_u64().unwrap(), tick_runs, "{runs}");
        let (_, runs) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=broken"),
            None,
            None,
        )
        .await;
        assert_eq!(runs["total"].as_u64().unwrap(), broken_runs, "{runs}");
        // Resumed, it fires again, and stays resumed across the next restart.
        let (code, info) = call(
            "POST",
            &served.url("/api/v1/schedules/tick%230/resume"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{info}");
        until(
            &served.url("/api/v1/runs?workflow=tick"),
            None,
            Duration::from_secs(20),
            |b| b["total"].as_u64().unwrap() > tick_runs,
        )
        .await;
    });
    drop(served);
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let (_, all) = call("GET", &served.url("/api/v1/schedules"), None, None).await;
        assert_eq!(schedule(&all, "tick#0")["paused"], Json::Null, "{all}");
    });
}
