//! A runner killed with SIGKILL at many points resumes: finished steps are not run again, the
//! interrupted step runs again with the same idempotency key, and the run ends as an
//! uninterrupted run would.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

fn workflow() -> String {
    let mut wf = String::from("name: chain\nsteps:\n");
    let ids = ["a", "b", "c", "d", "e"];
    for (i, id) in ids.iter().enumerate() {
        wf.push_str(&format!("  - id: {id}\n    uses: ../../sleeper.wasm\n"));
        if i > 0 {
            wf.push_str(&format!("    needs: {}\n", ids[i - 1]));
        }
        wf.push_str(
            "    with: {ms: 250, record: /rec/executions.log}\n    grants:\n      fs: [{path: rec, guest: /rec, mode: rw}]\n",
        );
    }
    wf
}

/// Lines of the execution record: (step, attempt, idempotency key).
fn executions(s: &Scratch, dir: &str) -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(s.path().join(dir).join("rec/executions.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut p = l.split(' ');
            (
                p.next().unwrap_or("").to_string(),
                p.next().unwrap_or("").to_string(),
                p.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn outputs(report: &Json) -> BTreeMap<String, Json> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["legs"][0]["output"].clone(),
            )
        })
        .collect()
}

fn setup(s: &Scratch, dir: &str) {
    s.write(&format!("{dir}/wf/x/wf.yaml"), &workflow());
    std::fs::create_dir_all(s.path().join(dir).join("wf/x/rec")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join(dir).join("sleeper.wasm"),
    )
    .unwrap();
}

/// The uninterrupted run, for comparison: its `--json` report.
fn baseline(s: &Scratch) -> Json {
    setup(s, "base");
    let wf = s.path().join("base/wf/x/wf.yaml");
    let (out, _) = expect_code(
        &s.cmd()
            .env("MERIDIAN_STATE_DIR", s.path().join("base/state"))
            .args(["--json", "run", wf.to_str().unwrap()])
            .output()
            .unwrap(),
        0,
    );
    assert_eq!(executions(s, "base/wf/x").len(), 5);
    serde_json::from_str(&out).unwrap()
}

/// `meridian --json ARGS…` on the journal in `state`, parsed.
fn query(s: &Scratch, state: &Path, args: &[&str]) -> Json {
    let o = s
        .cmd()
        .env("MERIDIAN_STATE_DIR", state)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 0);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn sigkill_at_many_points_then_resume_matches_an_uninterrupted_run() {
    let s = Scratch::new();
    let base = baseline(&s);

    // Kill points spread over the run (5 steps × 250 ms), bounded.
    for (n, kill_after) in [50u64, 300, 550, 800, 1050, 1200].into_iter().enumerate() {
        let dir = format!("k{n}");
        setup(&s, &dir);
        let wf = s.path().join(&dir).join("wf/x/wf.yaml");
        let state = s.path().join(&dir).join("state");
        let mut child = s
            .cmd()
            .env("MERIDIAN_STATE_DIR", &state)
            .args(["run", wf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(kill_after) {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let runs = query(&s, &state, &["runs", "list"]);
        let Some(run_id) = runs[0]["id"].as_str() else {
            // Killed before the run was even recorded: nothing to resume, nothing ran.
            assert!(executions(&s, &format!("{dir}/wf/x")).is_empty());
            continue;
        };
        resume_and_check(
            &s,
            &dir,
            &state,
            run_id,
            &base,
            &format!("kill at {kill_after}ms"),
        );
    }
}

/// Kill points chosen by what is on disk: right after a step's leg-finished commit, while the
/// next step runs and its attempt-started waits in memory for the next commit point. The kill
/// loses that event, and resume still runs the interrupted step once more under the same key.
#[test]
fn sigkill_right_after_a_commit_then_resume() {
    let s = Scratch::new();
    let base = baseline(&s);
    for (n, after) in ["a", "c"].into_iter().enumerate() {
        let dir = format!("e{n}");
        setup(&s, &dir);
        let wf = s.path().join(&dir).join("wf/x/wf.yaml");
        let state = s.path().join(&dir).join("state");
        let mut child = s
            .cmd()
            .env("MERIDIAN_STATE_DIR", &state)
            .args(["run", wf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.path().join(format!("{dir}.err"))).unwrap())
            .spawn()
            .unwrap();
        let mut run_id = None;
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before step {after} was seen finished in the journal: {}",
                std::fs::read_to_string(s.path().join(format!("{dir}.err"))).unwrap_or_default()
            );
            if run_id.is_none() {
                run_id = query(&s, &state, &["runs", "list"])[0]["id"]
                    .as_str()
                    .map(str::to_string);
            }
            if let Some(id) = &run_id {
                let shown = query(&s, &state, &["runs", "show", id]);
                let finished = shown["legs"].as_array().unwrap();
                if finished.iter().any(|l| l["step"] == after) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let run_id = run_id.unwrap();
        // What the kill left: whole commits only, each closed by a leg-finished, so no attempt
        // is on disk without its leg's end.
        let events: Vec<Json> = query(&s, &state, &["runs", "show", &run_id])["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].clone())
            .collect();
        assert_eq!(
            events.last().map(|e| e["event"].clone()),
            Some(Json::from("leg-finished")),
            "after {after}: {events:?}"
        );
        for e in events.iter().filter(|e| e["event"] == "attempt-started") {
            assert!(
                events
                    .iter()
                    .any(|f| f["event"] == "leg-finished" && f["step"] == e["step"]),
                "after {after}: {e} is on disk without its leg's end"
            );
        }
        resume_and_check(
            &s,
            &dir,
            &state,
            &run_id,
            &base,
            &format!("kill after {after}"),
        );
    }
}

/// Resumes the killed run in `dir` and checks it against the uninterrupted run `base`: it
/// succeeds with the same outputs, every step ran, at most the interrupted one twice and then
/// with the same idempotency key, and steps finished before the kill were not run again.
fn resume_and_check(s: &Scratch, dir: &str, state: &Path, run_id: &str, base: &Json, label: &str) {
    let before = executions(s, &format!("{dir}/wf/x"));

    let resumed = s
        .cmd()
        .env("MERIDIAN_STATE_DIR", state)
        .args(["--json", "resume", run_id])
        .output()
        .unwrap();
    let (out, err) = expect_code(&resumed, 0);
    let report: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(report["status"], "succeeded", "{label}: {report}");
    // Same outputs as the uninterrupted run.
    assert_eq!(outputs(&report), outputs(base), "{label}");

    // Every step ran; at most the interrupted one ran twice, with the same idempotency key.
    let all = executions(s, &format!("{dir}/wf/x"));
    let mut count: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (step, _, key) in &all {
        count.entry(step.as_str()).or_default().push(key.as_str());
    }
    assert_eq!(count.len(), 5, "{label}: {all:?}");
    let twice: Vec<_> = count.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(twice.len() <= 1, "{label}: {all:?}");
    for (_, keys) in twice {
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0], keys[1],
            "the retried step keeps its idempotency key"
        );
    }
    // Steps recorded as started before the kill and finished are not run again.
    let reused = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["legs"][0]["reused"] == true)
        .count();
    assert!(
        reused + 1 >= before.len(),
        "{label}: reused {reused}, before {before:?}"
    );
}

/// Runs a workflow whose `long` step sleeps `ms` behind an approval gate, resumes it with the
/// gate approved, and once the resume has started `long`, takes the run's lease from it as a
/// server would once it expired. Returns the run's id, the resume's output and the journal.
fn resume_and_take_its_lease(
    s: &Scratch,
    ms: u64,
) -> (String, std::process::Output, meridian_store::SqliteStore) {
    resume_and_take_its_lease_with(s, &format!("{{ms: {ms}}}"))
}

/// [`resume_and_take_its_lease`] with the long step's `with:` given whole.
fn resume_and_take_its_lease_with(
    s: &Scratch,
    with: &str,
) -> (String, std::process::Output, meridian_store::SqliteStore) {
    use meridian_store::Journal;
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    s.write(
        "slow.yaml",
        &format!("name: slow\nsteps:\n  - {{id: gate, uses: ./sleeper.wasm, with: {{ms: 1}}, approval: {{message: go?}}}}\n  - {{id: long, uses: ./sleeper.wasm, with: {with}, needs: gate}}\n"),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "slow.yaml"]), 3);
    let id = serde_json::from_str::<Json>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let child = s
        .cmd()
        .args(["resume", &id, "--approve", "gate"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = meridian_store::SqliteStore::open(&s.path().join("state/meridian.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the resume never started the long step"
        );
        let events = journal.events(&id).unwrap();
        if events
            .iter()
            .any(|e| e.event.kind() == "attempt-started" && e.event.step() == Some("long"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let owner = journal
        .lease_holder(&id)
        .unwrap()
        .expect("the resume holds the lease");
    assert!(
        owner.starts_with("meridian-cli:") && owner.contains(&format!(":{}:", child.id())),
        "{owner}"
    );
    journal.release_run(&id, &owner).unwrap();
    assert!(
        journal
            .lease_run(&id, "server-x", Duration::from_secs(120))
            .unwrap()
    );
    let output = child.wait_with_output().unwrap();
    (id, output, journal)
}

/// A `meridian resume` whose lease a server took (as after this process stalled longer than the
/// lease) stops at its next renewal instead of driving the run beside the server.
#[test]
fn a_resume_that_lost_its_lease_stops() {
    use meridian_store::Journal;
    let s = Scratch::new();
    let started = Instant::now();
    let (id, output, journal) = resume_and_take_its_lease(&s, 30_000);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("run {id} was taken over by a server")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it ran the step out"
    );
    journal.release_run(&id, "server-x").unwrap();
}

/// A resume whose lease is taken while its step runs cannot record the step when it ends
/// (before its next renewal would notice): the journal refuses the write and the command stops.
#[test]
fn a_step_that_ends_after_the_lease_was_taken_is_not_recorded() {
    use meridian_store::Journal;
    let s = Scratch::new();
    let (id, output, journal) = resume_and_take_its_lease(&s, 1_500);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{err}");
    assert!(err.contains("lost the run's lease to `server-x`"), "{err}");
    let legs: Vec<String> = journal
        .legs(&id)
        .unwrap()
        .into_iter()
        .map(|l| l.step)
        .collect();
    assert_eq!(legs, ["gate"], "the long step's end was not kept");
    journal.release_run(&id, "server-x").unwrap();
}

/// The same step saving a value once its sleep is over: the kv write is refused like the
/// journal's, so the run's new driver never finds a stale process's value in the step's state.
#[test]
fn a_step_that_saves_after_the_lease_was_taken_saves_nothing() {
    use meridian_store::Journal;
    let s = Scratch::new();
    let (id, output, journal) = resume_and_take_its_lease_with(&s, "{ms: 1500, save: stale}");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{err}");
    assert!(err.contains("lost the run's lease to `server-x`"), "{err}");
    assert_eq!(
        journal.kv(&id).keys("").unwrap(),
        Vec::<String>::new(),
        "{err}"
    );
    journal.release_run(&id, "server-x").unwrap();
}

/// `slow.yaml`: a quick step `a`, then `long`, a minute's sleep.
fn slow_workflow(s: &Scratch) {
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    s.write(
        "slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1}}\n  - {id: long, uses: ./sleeper.wasm, with: {ms: 60000}, needs: a}\n",
    );
}

/// The newest run once process `pid` drives it (holds its lease) and its `long` step started.
fn long_step_started(journal: &meridian_store::SqliteStore, pid: u32) -> String {
    use meridian_store::Journal;
    let newest = meridian_store::RunQuery {
        limit: 1,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never started its long step"
        );
        if let Ok(runs) = journal.query_runs(&newest)
            && let Some(r) = runs.runs.first()
            && journal
                .lease_holder(&r.id)
                .unwrap()
                .is_some_and(|h| h.contains(&format!(":{pid}:")))
            && journal
                .events(&r.id)
                .unwrap()
                .iter()
                .any(|e| e.event.kind() == "attempt-started" && e.event.step() == Some("long"))
        {
            return r.id.clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: `meridian resume` of a run a live `meridian run` was still driving started a
/// second coordinator (the long step ran in both, and the first process died on a duplicate
/// event). The run holds the run's lease now: the resume is refused, naming the process; once
/// that process is killed, its lease is freed at once and the run resumes without waiting for
/// the lease to expire.
#[test]
fn resume_refuses_a_run_a_live_run_drives_and_takes_a_killed_ones_at_once() {
    use meridian_store::Journal;
    let s = Scratch::new();
    slow_workflow(&s);
    let mut child = s
        .cmd()
        .args(["run", "slow.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = meridian_store::SqliteStore::open(&s.path().join("state/meridian.db")).unwrap();
    let id = long_step_started(&journal, child.id());

    let (_, err) = expect_code(&s.run(&["resume", &id]), 2);
    let by = format!("`meridian` process {} on", child.id());
    assert!(
        err.contains(&format!("run {id} is being driven by {by}")),
        "{err}"
    );
    let holder = journal
        .lease_holder(&id)
        .unwrap()
        .expect("the run holds its lease");
    assert!(holder.contains(&format!(":{}:", child.id())), "{holder}");

    child.kill().unwrap();
    child.wait().unwrap();
    // The dead process's lease would last 15 s more; the resume frees it at once and runs
    // `long` again (stopped here once it holds the lease: the minute's sleep is not the point).
    let mut resumed = s
        .cmd()
        .args(["resume", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let h = journal.lease_holder(&id).unwrap();
        if let Some(h) = h.filter(|h| h.contains(&format!(":{}:", resumed.id()))) {
            break h;
        }
        if let Some(status) = resumed.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(resumed.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the resume ended ({status}) without taking the lease: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the resume did not take the lease of the killed run"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(taken, holder);
    resumed.kill().unwrap();
    resumed.wait().unwrap();
}

/// Regression: Ctrl-C (SIGINT) or SIGTERM killed `meridian run` on the spot, saying nothing,
/// holding the run's lease, with nothing to tell that the run was dead. Now the run stops as a
/// kill would (nothing finished is lost), its lease is let go, the command to go on is printed,
/// and the exit code is the shell's for the signal.
#[test]
fn an_interrupted_run_says_how_to_go_on_and_lets_its_lease_go() {
    use meridian_store::Journal;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let s = Scratch::new();
    slow_workflow(&s);
    let journal = meridian_store::SqliteStore::open(&s.path().join("state/meridian.db")).unwrap();
    for (signal, code, what) in [
        (Signal::SIGINT, 130, "interrupted"),
        (Signal::SIGTERM, 143, "terminated"),
    ] {
        let child = s
            .cmd()
            .args(["run", "slow.yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let id = long_step_started(&journal, child.id());
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(
            err.contains(&format!("{what}: run {id} stopped here"))
                && err.contains(&format!("meridian resume {id}")),
            "{err}"
        );
        assert_eq!(
            journal.lease_holder(&id).unwrap(),
            None,
            "the lease was kept"
        );
        let legs: Vec<String> = journal
            .legs(&id)
            .unwrap()
            .into_iter()
            .map(|l| l.step)
            .collect();
        assert_eq!(legs, ["a"], "what finished is kept");
        // Listed as interrupted (running, nobody driving it), not as running.
        let (out, _) = expect_code(&s.run(&["runs", "list"]), 0);
        let row = out.lines().find(|l| l.starts_with(&id)).unwrap_or_default();
        assert!(
            row.contains("interrupted") && row.contains("meridian resume"),
            "{out}"
        );
    }
}
