//! Files that change under a server: a workflow edited under a waiting run (it goes on with its
//! version; a server without that version says so once, and the run does not hang), a step's
//! component file rebuilt between runs.

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

/// A server runs a component file as it is when each run starts: rebuilt between two runs, the
/// second runs the new file (the server kept the first version it loaded until it restarted),
/// and each run's journaled digest is the one it ran.
#[test]
fn a_rebuilt_component_file_is_what_the_next_run_runs() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    std::fs::copy(meridian_artifacts::HELLO, s.path().join("wf/step.wasm")).unwrap();
    s.write(
        "wf/greet.yaml",
        "name: greet\nsteps:\n  - {id: a, uses: ./step.wasm, with: {name: Ada}}\n",
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let ran = |served: &Served| {
        let id = start(served, "greet");
        rt().block_on(async {
            let url = served.url(&format!("/api/v1/runs/{id}"));
            until(&url, None, Duration::from_secs(30), |r| {
                r["summary"]["status"] == "succeeded"
            })
            .await
        })
    };
    let first = ran(&served);
    assert_eq!(
        first["legs"][0]["output"]["greeting"], "Hello, Ada!",
        "{first}"
    );
    // Another size and mtime: the next run loads it again.
    std::fs::copy(meridian_artifacts::NOOP, s.path().join("wf/step.wasm")).unwrap();
    let second = ran(&served);
    assert_eq!(second["legs"][0]["output"], json!({}), "{second}");
    let digest = |r: &Json| {
        r["run"]["settings"]["components"]
            .as_object()
            .and_then(|c| c.values().next().cloned())
            .unwrap_or_default()
    };
    assert_ne!(digest(&first), digest(&second), "{first}\n{second}");
}

/// A run waiting at its gate goes on with the workflow version it started with after its file
/// was edited (an edit blocked the approval — 409, "changed since the run started" — while a
/// failover's primary stayed fenced); the next run gets the edit.
#[test]
fn an_edited_workflow_does_not_strand_a_run_at_its_gate() {
    let s = Scratch::new();
    let gated = |who: &str| {
        format!(
            "name: gated\nsteps:\n  - {{id: fence, uses: hello, with: {{name: fence}}}}\n  - id: promote\n    uses: hello\n    needs: fence\n    approval: true\n    with: {{name: {who}}}\n"
        )
    };
    s.write("wf/gated.yaml", &gated("Bob"));
    let served = Served::start(&s, &["--workflows", "wf"]);
    let id = start(&served, "gated");
    let run_url = served.url(&format!("/api/v1/runs/{id}"));
    rt().block_on(async {
        until_status(&run_url, "awaiting-approval").await;
    });
    s.write("wf/gated.yaml", &gated("Eve"));
    // The server has read the edit (it checks its directory every second).
    std::thread::sleep(Duration::from_millis(2500));
    let run = rt().block_on(async {
        let url = served.url(&format!("/api/v1/runs/{id}/approvals/promote"));
        let (code, body) = call("POST", &url, None, Some(json!({"decision": "approve"}))).await;
        assert!(code == 200 || code == 202, "{code} {body}");
        until_status(&run_url, "succeeded").await
    });
    let promoted = run["legs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["step"] == "promote")
        .cloned()
        .unwrap();
    assert_eq!(promoted["output"]["greeting"], "Hello, Bob!", "{run}");
}
