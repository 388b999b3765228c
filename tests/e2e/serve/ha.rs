//! Several servers on one PostgreSQL journal.

use super::*;
use crate::distributed::{Store, Workers};

/// A `meridian worker` on the store, killed when dropped.
fn one_worker(db: &Store, s: &Scratch) -> Workers {
    let worker = db
        .cmd(s)
        .args(["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Workers(vec![worker])
}

/// Two servers on one PostgreSQL journal, a schedule every second: each tick is claimed by one
/// server and starts one run; SIGKILLing one server (then the other, after a restart) leaves
/// no tick unfired for longer than the takeover, which needs no lease: the survivor claims the
/// very next tick.
#[test]
fn two_servers_on_one_postgres_fire_each_tick_once() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    let _workers = one_worker(&db, &s);
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let b = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(5));
    drop(a); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(3));
    drop(b); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    drop(a);

    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    let ticks: Vec<i64> =
        q("SELECT tick FROM meridian.ticks WHERE schedule = 'tick#0' ORDER BY tick")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    let servers: i64 = q("SELECT count(DISTINCT claimed_by) FROM meridian.ticks")
        .parse()
        .unwrap();
    let runs: usize = q("SELECT count(*) FROM meridian.runs WHERE workflow = 'tick'")
        .parse()
        .unwrap();
    assert!(
        ticks.len() >= 12,
        "only {} ticks fired in ~18 s: {ticks:?}",
        ticks.len()
    );
    assert!(servers >= 2, "one server fired every tick");
    // Each tick is the cron's whole second: servers started at different instants computed
    // ticks with their own sub-second, claimed different keys for one second, and both fired.
    assert!(
        ticks.iter().all(|t| t % 1000 == 0),
        "ticks off the whole second: {ticks:?}"
    );
    // A claimed tick starts one run; a server killed between its claim and the run's record
    // loses that one tick (two kills: at most two).
    assert!(
        runs <= ticks.len() && runs + 2 >= ticks.len(),
        "{runs} runs for {} ticks",
        ticks.len()
    );
    // Takeover: the largest gap between consecutive fired ticks.
    let gap = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap <= 3_000,
        "a gap of {gap} ms between fired ticks: {ticks:?}"
    );
    eprintln!(
        "takeover: largest gap between fired ticks {gap} ms ({} ticks, {runs} runs)",
        ticks.len()
    );
}

/// Regression: a run driven by a server that died stayed `running` until someone resumed it by
/// hand. The servers sharing the journal hold a lease on each run they drive; when a server is
/// SIGKILLed mid-run, another takes the run over once the lease expires, and the run finishes
/// with each step run once.
#[test]
fn a_killed_servers_run_is_taken_over_by_another() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    with_sleeper(&s);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1500}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 1500}}\n  - {id: c, uses: ./sleeper.wasm, needs: b, with: {ms: 100}}\n",
    );
    s.write("meridian.toml", "workflows = \"wf\"\nrun-lease = \"2s\"\n");
    let _workers = one_worker(&db, &s);
    let a = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let b = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let rt = rt();
    let id = start(&a, "slow");
    // Kill the server driving it while step a runs; b must not touch it before its lease ends.
    std::thread::sleep(Duration::from_millis(700));
    drop(a);
    let killed = Instant::now();
    let run = rt.block_on(until(
        &b.url(&format!("/api/v1/runs/{id}")),
        None,
        Duration::from_secs(60),
        |r| r["summary"]["status"] != "running",
    ));
    assert_eq!(run["summary"]["status"], "succeeded", "{run}\n{}", b.log());
    assert!(
        b.log().contains("resuming an interrupted run"),
        "{}",
        b.log()
    );
    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    // Each step finished once; step a's task (in flight on the worker) was re-attached to, not
    // queued again.
    let legs = q(&format!(
        "SELECT string_agg(step || ':' || attempts, ',' ORDER BY step) FROM meridian.legs WHERE run_id = '{id}'"
    ));
    assert_eq!(legs.trim(), "a:1,b:1,c:1");
    let tasks: i64 = q(&format!(
        "SELECT count(*) FROM meridian.tasks WHERE run_id = '{id}' AND step_id = 'a'"
    ))
    .trim()
    .parse()
    .unwrap();
    assert_eq!(tasks, 1, "step a queued again");
    eprintln!(
        "takeover: run finished {} ms after its server was killed (lease 2 s)",
        killed.elapsed().as_millis()
    );
}

/// A server told to stop (SIGTERM) lets its in-flight run finish within `grace` and keeps the
/// run's lease meanwhile: it stopped renewing at once, a peer took the run over while it was
/// still driving it, and its own writes were then refused (a `run.failed` webhook, then a
/// `run.succeeded` for the same run).
#[test]
fn a_draining_server_keeps_its_runs_leases_until_they_end() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    with_sleeper(&s);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 4000}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 100}}\n",
    );
    // The run outlasts a lease (2 s) by far, within the grace (20 s).
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\nrun-lease = \"2s\"\ngrace = \"20s\"\n",
    );
    let _workers = one_worker(&db, &s);
    let mut a = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let b = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    // Started with an Idempotency-Key; the same request retried through the other server (a
    // load balancer's choice) finds that run: the key is read from the shared journal (each
    // server knew only the keys it took, and the retry started a second run).
    let key = [("Idempotency-Key", "deploy-7")];
    let body = Some(json!({"workflow": "slow"}));
    let (id, again) = rt().block_on(async {
        let (code, first) =
            call_with("POST", &a.url("/api/v1/runs"), None, body.clone(), &key).await;
        assert_eq!(code, 202, "{first}");
        let (code, again) = call_with("POST", &b.url("/api/v1/runs"), None, body, &key).await;
        assert_eq!(code, 202, "{again}");
        (
            first["id"].as_str().unwrap().to_string(),
            again["id"].clone(),
        )
    });
    assert_eq!(again, id.as_str());
    // A new key sent to both servers at the same instant, eight times (a client's retries
    // fanned out by a load balancer): one run, and every answer names it. Each server checked
    // the key and then recorded it, and both started a run. The same key asking for other
    // inputs, through either server, is refused naming that run.
    rt().block_on(async {
        let calls = (0..8).map(|i| {
            let url = [&a, &b][i % 2].url("/api/v1/runs");
            async move {
                let body = Some(json!({"workflow": "slow"}));
                call_with("POST", &url, None, body, &[("Idempotency-Key", "deploy-8")]).await
            }
        });
        let answers = futures::future::join_all(calls).await;
        let ids: std::collections::BTreeSet<String> = answers
            .iter()
            .map(|(code, body)| {
                assert_eq!(*code, 202, "{body}");
                body["id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1, "{answers:?}");
        let (_, list) = call("GET", &b.url("/api/v1/runs?workflow=slow"), None, None).await;
        assert_eq!(list["total"], 2, "{list}");
        let other = Some(json!({"workflow": "slow", "inputs": {"x": "1"}}));
        let (code, refused) = call_with(
            "POST",
            &b.url("/api/v1/runs"),
            None,
            other,
            &[("Idempotency-Key", "deploy-8")],
        )
        .await;
        assert_eq!(code, 422, "{refused}");
        let message = refused.to_string();
        let run = ids.first().unwrap();
        assert!(
            message.contains(run.as_str()) && message.contains("other inputs"),
            "{refused}"
        );
    });
    std::thread::sleep(Duration::from_millis(500));
    let exited = a.terminate(Duration::from_secs(30));
    assert!(
        exited.is_some_and(|e| e.success()),
        "{exited:?}\n{}",
        a.log()
    );
    let run = rt().block_on(until(
        &b.url(&format!("/api/v1/runs/{id}")),
        None,
        Duration::from_secs(10),
        |r| r["summary"]["status"] != "running",
    ));
    assert_eq!(run["summary"]["status"], "succeeded", "{run}\n{}", a.log());
    assert!(
        !b.log().contains("resuming an interrupted run"),
        "{}",
        b.log()
    );
    assert!(!a.log().contains("lost the run"), "{}", a.log());
}

/// A draining server (SIGTERM) keeps answering for the run it still drives: the run can be
/// watched and cancelled through it, while new runs and approvals are refused (503) and
/// `/readyz` says 503. It closed its listener at once: nobody could cancel the run through it
/// for up to `grace`.
#[test]
fn a_draining_server_still_answers_for_its_runs() {
    let s = Scratch::new();
    with_sleeper(&s);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 30000}}\n",
    );
    s.write("meridian.toml", "workflows = \"wf\"\ngrace = \"60s\"\n");
    let mut a = Served::start(&s, &["--config", "meridian.toml"]);
    let id = rt().block_on(async {
        let start = Some(json!({"workflow": "slow"}));
        let (code, body) = call("POST", &a.url("/api/v1/runs"), None, start).await;
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    });
    a.term();
    rt().block_on(async {
        let ready = a.url("/readyz");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = reqwest::get(&ready)
                .await
                .expect("the draining server answers");
            if r.status() == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz never said 503");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let start = Some(json!({"workflow": "slow"}));
        let (code, body) = call("POST", &a.url("/api/v1/runs"), None, start).await;
        assert_eq!(code, 503, "{body}");
        let (code, body) = call("GET", &a.url(&format!("/api/v1/runs/{id}")), None, None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["summary"]["status"], "running", "{body}");
        let cancel = a.url(&format!("/api/v1/runs/{id}/cancel"));
        let (code, body) = call("POST", &cancel, None, None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "cancelled", "{body}");
    });
    // Its only run ended: the server stops well within the grace.
    let exited = a.terminate(Duration::from_secs(20));
    assert!(
        exited.is_some_and(|e| e.success()),
        "{exited:?}\n{}",
        a.log()
    );
}

/// `overlap: skip` holds across the servers sharing a journal: a tick one server claims while
/// another server's run of the schedule is still going is skipped. Each server looked at its
/// own runs only, and runs of one schedule ran side by side.
#[test]
fn overlap_skip_holds_across_servers() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    with_sleeper(&s);
    s.write(
        "wf/long.yaml",
        "name: long\non:\n  schedule:\n    - {cron: \"* * * * * *\", overlap: skip}\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 2500}}\n",
    );
    let _workers = one_worker(&db, &s);
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let b = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(9));
    drop(a);
    drop(b);
    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    // [created, finished) of every run of the schedule, in order of creation.
    let spans: Vec<(i64, i64)> = q(
        "SELECT created_at || ' ' || coalesce(finished_at, 9223372036854775807) FROM meridian.runs WHERE workflow = 'long' ORDER BY created_at",
    )
    .lines()
    .filter_map(|l| {
        let (c, f) = l.trim().split_once(' ')?;
        Some((c.parse().ok()?, f.parse().ok()?))
    })
    .collect();
    assert!(spans.len() >= 2, "{spans:?}");
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "two runs of one schedule overlapped: {spans:?}"
        );
    }
}

/// `overlap: cancel-previous` reaches the previous run whichever server drives it: server a
/// starts a run of 8 s and is told to stop (it drives its run on, firing nothing more); server
/// b's next tick cancels a's run through the journal, and a ends it. A run another server
/// drove used to go on to succeed beside the new one.
#[test]
fn overlap_cancel_previous_reaches_across_servers() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    with_sleeper(&s);
    s.write(
        "wf/long.yaml",
        "name: long\non:\n  schedule:\n    - {cron: \"*/2 * * * * *\", overlap: cancel-previous}\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 8000}}\n",
    );
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\nrun-lease = \"2s\"\ngrace = \"30s\"\n",
    );
    let _workers = one_worker(&db, &s);
    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    let first_run = || {
        q("SELECT id FROM meridian.runs WHERE workflow = 'long' ORDER BY created_at LIMIT 1")
            .trim()
            .to_string()
    };
    let mut a = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let started = Instant::now();
    while first_run().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = first_run();
    assert_eq!(a.terminate(Duration::ZERO), None); // draining: drives its run, fires nothing
    let b = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let exited = a.terminate(Duration::from_secs(30));
    assert!(exited.is_some_and(|e| e.success()), "{}", a.log());
    let ended = q(&format!(
        "SELECT status || ': ' || coalesce(message, '') FROM meridian.runs WHERE id = '{id}'"
    ));
    assert!(
        ended.trim().starts_with("cancelled: ") && ended.contains("overlap: cancel-previous"),
        "{ended}\n{}\n{}",
        a.log(),
        b.log()
    );
    drop(b);
}

/// Regression: `meridian resume` of a run a server was driving started a second coordinator on
/// it. The CLI takes the run's lease too, so it refuses a run a server drives (and a server does
/// not take over a run the CLI resumes).
#[test]
fn resume_refuses_a_run_a_server_drives() {
    let s = Scratch::new();
    with_sleeper(&s);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 2500}}\n",
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let rt = rt();
    let id = start(&served, "slow");
    let (_, err) = crate::support::expect_code(&s.run(&["resume", &id]), 2);
    assert!(
        err.contains(&format!("run {id} is being driven by a server")),
        "{err}"
    );
    let run = rt.block_on(until(
        &served.url(&format!("/api/v1/runs/{id}")),
        None,
        Duration::from_secs(60),
        |r| r["summary"]["status"] != "running",
    ));
    assert_eq!(run["summary"]["status"], "succeeded", "{run}");
    // Ended, the lease is given up: resume may look at it again.
    let (out, _) = crate::support::expect_code(&s.run(&["resume", &id]), 0);
    assert!(out.contains("already succeeded"), "{out}");
}

/// A cancel sent to a server that does not drive the run is asked of the driver through the
/// journal (202, naming it) and the driver cancels the run; a run whose server was killed is
/// cancelled by the server that takes it over, not resumed. The other server used to answer
/// 409 ("cancel it there"), and `overlap: cancel-previous` left other servers' runs going.
#[test]
fn a_cancel_reaches_the_run_through_any_server() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    with_sleeper(&s);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 5000}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 100}}\n",
    );
    s.write("meridian.toml", "workflows = \"wf\"\nrun-lease = \"2s\"\n");
    let _workers = one_worker(&db, &s);
    let a = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let b = Served::spawn(db.cmd(&s), &["--config", "meridian.toml"]);
    let rt = rt();
    let cancel_through_b = |id: &str| {
        rt.block_on(async {
            let url = b.url(&format!("/api/v1/runs/{id}/cancel"));
            call("POST", &url, None, None).await
        })
    };
    let ended = |id: &str| {
        rt.block_on(until(
            &b.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(30),
            |r| r["summary"]["status"] != "running",
        ))
    };

    let id = start(&a, "slow");
    std::thread::sleep(Duration::from_millis(300));
    let (code, asked) = cancel_through_b(&id);
    assert_eq!(code, 202, "{asked}");
    assert_eq!(asked["status"], "cancel-requested", "{asked}");
    assert!(asked["driver"].is_string(), "{asked}");
    let run = ended(&id);
    assert_eq!(run["summary"]["status"], "cancelled", "{run}\n{}", a.log());
    let message = run["summary"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cancelled through the API by"), "{run}");
    // Asked again once it ended: nothing to cancel.
    assert_eq!(cancel_through_b(&id).0, 409);

    let id = start(&a, "slow");
    std::thread::sleep(Duration::from_millis(300));
    drop(a); // SIGKILL: its lease runs out in 2 s
    let (code, asked) = cancel_through_b(&id);
    assert_eq!(code, 202, "{asked}");
    let run = ended(&id);
    assert_eq!(run["summary"]["status"], "cancelled", "{run}\n{}", b.log());
    assert!(
        b.log().contains("cancelling an interrupted run") && !b.log().contains("resuming"),
        "{}",
        b.log()
    );
}

/// A schedule's last run and pause are the journal's, whichever server fired or paused it:
/// triggered through server a, server b names the same run and how it ended; paused through
/// b, a says so (each kept its own answer until it restarted, or, for a pause, until its next
/// tick).
#[test]
fn every_server_names_a_schedules_last_run() {
    use crate::distributed::store;
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    // Fires only when triggered.
    s.write(
        "wf/yearly.yaml",
        "name: yearly\non:\n  schedule:\n    - cron: \"0 0 1 1 *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    let _workers = one_worker(&db, &s);
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let b = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let rt = rt();
    let schedule = |served: &Served| {
        let (code, body) =
            rt.block_on(async { call("GET", &served.url("/api/v1/schedules"), None, None).await });
        assert_eq!(code, 200, "{body}");
        body["schedules"][0].clone()
    };
    assert_eq!(schedule(&b)["last_run"], Json::Null);
    let (code, fired) = rt.block_on(async {
        let url = a.url("/api/v1/schedules/yearly%230/trigger");
        call("POST", &url, None, None).await
    });
    assert!(code == 200 || code == 202, "{code} {fired}");
    let id = fired["last_run"]
        .as_str()
        .expect("the run it started")
        .to_string();
    rt.block_on(until(
        &a.url(&format!("/api/v1/runs/{id}")),
        None,
        Duration::from_secs(30),
        |r| r["summary"]["status"] == "succeeded",
    ));
    let seen = rt.block_on(until(
        &b.url("/api/v1/schedules"),
        None,
        Duration::from_secs(10),
        |r| r["schedules"][0]["last_state"] == "succeeded",
    ));
    let seen = &seen["schedules"][0];
    assert_eq!(seen["last_run"], id.as_str(), "{seen}");
    assert!(seen["last_fire"].is_string(), "{seen}");
    assert_eq!(schedule(&a)["last_run"], id.as_str());

    // A pause through b is a's answer too (a knew it only at its next tick).
    let (code, paused) = rt.block_on(async {
        let url = b.url("/api/v1/schedules/yearly%230/pause");
        call("POST", &url, None, None).await
    });
    assert_eq!(code, 200, "{paused}");
    let seen = rt.block_on(until(
        &a.url("/api/v1/schedules"),
        None,
        Duration::from_secs(10),
        |r| r["schedules"][0]["paused"].is_string(),
    ));
    assert_eq!(seen["schedules"][0]["next_fire"], Json::Null, "{seen}");
}
