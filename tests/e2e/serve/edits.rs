//! A served run whose workflow file changed (or went) since it started cannot go on: the server
//! says so once, and the run does not hang.

use super::*;

/// Approving a gate of a run whose workflow file was edited meanwhile, on a server that does not
/// have the version the run started with (restarted since), answers 409 with why, and the run
/// keeps waiting (it answered 202 and did nothing). An interrupted run whose file was
/// edited ends failed, saying why, with one `run.failed` webhook — it was resumed and failed on
/// every pass of the takeover loop, a webhook each, the run `running` forever.
#[test]
fn a_run_whose_workflow_changed_says_so_once() {
    let s = Scratch::new();
    let rt = rt();
    with_sleeper(&s);
    s.write("wf/gated.yaml", GATED);
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 3000}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 10}}\n",
    );
    let (hook, calls) = rt.block_on(receiver());
    s.write(
        "meridian.toml",
        &format!("workflows = \"wf\"\nrun-lease = \"2s\"\n\n[[notify]]\nurl = \"{hook}\"\n"),
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let gated = start(&served, "gated");
    rt.block_on(until(
        &served.url(&format!("/api/v1/runs/{gated}")),
        None,
        Duration::from_secs(20),
        |r| r["summary"]["status"] == "awaiting-approval",
    ));
    s.write(
        "wf/gated.yaml",
        &GATED.replace("promote the standby?", "go?"),
    );
    // A server that started the run goes on with the version it started (see
    // `an_edited_workflow_does_not_strand_a_run_at_its_gate`); a restarted one does not have it.
    drop(served);
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let approve = json!({"decision": "approve"});
    let gate = served.url(&format!("/api/v1/runs/{gated}/approvals/promote"));
    let (code, body) = rt.block_on(call("POST", &gate, None, Some(approve)));
    assert_eq!(code, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("changed since run") && message.contains("restore the workflow file"),
        "{body}"
    );
    let (_, run) = rt.block_on(call(
        "GET",
        &served.url(&format!("/api/v1/runs/{gated}")),
        None,
        None,
    ));
    assert_eq!(run["summary"]["status"], "awaiting-approval", "{run}");

    let slow = start(&served, "slow");
    std::thread::sleep(Duration::from_millis(500));
    drop(served); // SIGKILL mid-step
    s.write(
        "wf/slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1000}}\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let run = rt.block_on(until(
        &served.url(&format!("/api/v1/runs/{slow}")),
        None,
        Duration::from_secs(30),
        |r| r["summary"]["status"] != "running",
    ));
    assert_eq!(run["summary"]["status"], "failed", "{run}");
    let message = run["summary"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cannot resume"), "{run}");
    // Several passes of the takeover loop later: still one webhook for it.
    std::thread::sleep(Duration::from_secs(3));
    let failed = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, body)| body.contains("run.failed") && body.contains(&slow))
        .count();
    assert_eq!(failed, 1, "{}", served.log());
}
