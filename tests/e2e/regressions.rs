//! One test per bug fixed at the seams between crates, named after the bug (ripgrep's
//! `tests/regression.rs`). Each failed before its fix.

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

/// `change` saves what it would undo in kv; `gate` stops the run; after a resume (a new
/// process, or another worker) `boom` fails and `change` is compensated.
pub const UNDO_WORKFLOW: &str = r#"
name: undo
secrets: [token]
steps:
  - id: change
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: kv-set, key: undo, value: "eu was primary"}]
      undo_record: /rec/undo.log
    grants: {fs: [{path: rec, guest: /rec, mode: rw}]}
    compensate: true
  - id: gate
    needs: change
    uses: hello
    approval: {message: "go on?"}
  - id: boom
    needs: gate
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: fail, kind: fatal, message: boom}]
"#;

fn json(out: &str) -> Json {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The kv state a step saved lived only in the runner's memory: compensation after a resume
/// found nothing (a fenced primary stayed fenced, GSLB undo fell back to the declared primary).
#[test]
fn compensation_after_resume_sees_the_kv_state_saved_before_it() {
    let s = Scratch::new();
    s.kitchen_sink();
    std::fs::create_dir_all(s.path().join("rec")).unwrap();
    s.write("undo.yaml", UNDO_WORKFLOW);
    let env = [("MERIDIAN_SECRET_TOKEN", "t0k")];
    let o = s
        .cmd()
        .envs(env)
        .args(["--json", "run", "undo.yaml"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 3);
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    // A new process resumes; `boom` fails and `change` is compensated.
    let o = s
        .cmd()
        .envs(env)
        .args(["--json", "resume", &run_id, "--approve", "gate"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 1);
    let report = json(&out);
    assert_eq!(report["compensations"][0]["step"], "change", "{report}");
    assert_eq!(report["compensations"][0]["outcome"], "success", "{report}");
    let seen = std::fs::read_to_string(s.path().join("rec/undo.log")).unwrap();
    assert_eq!(seen, "\"eu was primary\"\n");
}

/// `resume` dropped the run's `--timeout`: a run given 3 s that timed out was resumed without
/// any limit and ran on to success.
#[test]
fn resume_keeps_the_run_timeout() {
    let s = Scratch::new();
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    s.write(
        "slow.yaml",
        "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 700}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 700}}\n  - {id: c, uses: ./sleeper.wasm, needs: b, with: {ms: 700}}\n",
    );
    let (out, _) = expect_code(
        &s.run(&["--json", "run", "slow.yaml", "--timeout", "1s"]),
        4,
    );
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    // b and c still need 1.4 s: with the run's 1 s budget the resume times out again.
    let (out, _) = expect_code(&s.run(&["--json", "resume", &run_id]), 4);
    assert_eq!(json(&out)["status"], "timed-out");
}

/// `retry --from X` ran again earlier steps that had failed under `continue-on-error`.
#[test]
fn retry_from_a_step_keeps_earlier_continue_on_error_failures() {
    let s = Scratch::new();
    s.kitchen_sink();
    std::fs::copy(meridian_artifacts::SLEEPER, s.path().join("sleeper.wasm")).unwrap();
    std::fs::create_dir_all(s.path().join("rec")).unwrap();
    s.write(
        "coe.yaml",
        r#"
name: coe
secrets: [token]
steps:
  - id: optional
    uses: ./kitchen_sink.wasm
    continue-on-error: true
    with: {ops: [{op: fail, kind: fatal, message: "not today"}]}
  - id: last
    needs: optional
    if: always()
    uses: ./sleeper.wasm
    with: {ms: 1, record: /rec/runs.log}
    grants: {fs: [{path: rec, guest: /rec, mode: rw}]}
"#,
    );
    let env = [("MERIDIAN_SECRET_TOKEN", "t0k")];
    let o = s
        .cmd()
        .envs(env)
        .args(["--json", "run", "coe.yaml"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 0);
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    let o = s
        .cmd()
        .envs(env)
        .args(["--json", "retry", &run_id, "--from", "last"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 0);
    let report = json(&out);
    let optional = &report["steps"][0]["legs"][0];
    assert_eq!(optional["outcome"], "failure", "{report}");
    assert_eq!(
        optional["reused"], true,
        "the failed optional step ran again: {report}"
    );
    let runs = std::fs::read_to_string(s.path().join("rec/runs.log")).unwrap();
    assert_eq!(runs.lines().count(), 2, "`last` runs once per invocation");
}

/// A plan that failed printed "no changes" above "run failed", as if nothing would change.
#[test]
fn a_failed_plan_does_not_claim_no_changes() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write(
        "plan.yaml",
        "name: p\nsecrets: [token]\nsteps:\n  - id: creds\n    uses: ./kitchen_sink.wasm\n    with: {ops: [{op: fail, kind: fatal, message: \"bad credentials\"}]}\n",
    );
    let o = s
        .cmd()
        .env("MERIDIAN_SECRET_TOKEN", "t0k")
        .env("MERIDIAN_PLAIN", "1")
        .args(["plan", "plan.yaml"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 1);
    assert!(!out.contains("no changes\n"), "{out}");
    assert!(out.contains("plan incomplete"), "{out}");
}

/// A step's error text reached the terminal raw: escape sequences (clear screen, OSC 52 to the
/// clipboard, a window title) acted on the terminal and a carriage return forged a
/// `success fake-step` row. What a step writes is shown escaped, in `run` and `runs show`.
#[test]
fn a_step_cannot_write_control_sequences_to_the_terminal() {
    let s = Scratch::new();
    s.kitchen_sink();
    let hostile =
        "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}]52;c;aGk=\u{7}\r  success    fake-step\nline two";
    s.write(
        "evil.yaml",
        &format!(
            "name: evil\nsecrets: [token]\nsteps:\n  - id: evil\n    uses: ./kitchen_sink.wasm\n    with: {{ops: [{{op: fail, kind: fatal, message: {}}}]}}\n",
            serde_json::to_string(hostile).unwrap()
        ),
    );
    let o = s
        .cmd()
        .env("MERIDIAN_SECRET_TOKEN", "t0k")
        .env("MERIDIAN_PLAIN", "1")
        .args(["run", "evil.yaml"])
        .output()
        .unwrap();
    let (out, err) = expect_code(&o, 1);
    let run_id = out
        .lines()
        .find_map(|l| l.split(" — run ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let (shown, _) = expect_code(&s.run(&["runs", "show", &run_id]), 0);
    for text in [&out, &err, &shown] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(!text.contains('\r'), "{text:?}");
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("line two") && !l.starts_with("      ")),
            "a step's second line must stay indented under its row: {text}"
        );
        assert!(
            text.contains("\\x1b[2J"),
            "the text is shown, escaped: {text}"
        );
    }
}

/// Regression: `run` did not check `with:` against the component's input schema (only
/// `validate` did): now it refuses the same way, exit 2, before a run is recorded.
#[test]
fn run_checks_with_against_the_schema_like_validate() {
    let s = Scratch::new();
    s.write(
        "w.yaml",
        "name: w\nsteps:\n  - id: a\n    uses: hello\n    with: {nmae: x}\n",
    );
    let (_, validate) = expect_code(&s.run(&["validate", "w.yaml"]), 2);
    let (_, run) = expect_code(&s.run(&["run", "w.yaml"]), 2);
    for err in [&validate, &run] {
        assert!(
            err.contains("unknown input `with.nmae` for step `a`") && err.contains("w.yaml:5:12"),
            "{err}"
        );
    }
    let (out, _) = expect_code(&s.run(&["--json", "runs", "list"]), 0);
    assert_eq!(out.trim(), "[]", "nothing was recorded");
}

/// Regression: a step needing a grant it was not given drew a warning and ran, to fail on the
/// call it was denied — possibly after earlier steps had changed production. It is an error in
/// `validate`, `run` and `plan`, before anything runs, with YAML that fixes it; a workflow that
/// knows the step does not use the need marks it optional.
#[test]
fn a_missing_grant_stops_the_run_before_anything_runs() {
    let s = Scratch::new();
    let wf = "name: w\nsteps:\n  - id: first\n    uses: hello\n  - id: probe\n    uses: http-probe\n    needs: first\n    with: {url: \"http://127.0.0.1:9/health\"}\n";
    s.write("w.yaml", wf);
    let (_, validate) = expect_code(&s.run(&["validate", "w.yaml"]), 2);
    let (_, run) = expect_code(&s.run(&["run", "w.yaml"]), 2);
    let (_, plan) = expect_code(&s.run(&["plan", "w.yaml"]), 2);
    for err in [&validate, &run, &plan] {
        assert!(
            err.contains(
                "step `probe` (`uses: http-probe`) needs http access to `http://127.0.0.1:9/health`"
            ) && err.contains("w.yaml:6:11")
                && err.contains("add `grants: {http: [\"http://127.0.0.1:9\"]}` to step `probe`"),
            "{err}"
        );
    }
    let (out, _) = expect_code(&s.run(&["--json", "runs", "list"]), 0);
    assert_eq!(out.trim(), "[]", "nothing was recorded");
    // The suggested grant, pasted as is, validates.
    s.write(
        "w.yaml",
        &format!("{wf}    grants: {{http: [\"http://127.0.0.1:9\"]}}\n"),
    );
    expect_code(&s.run(&["validate", "w.yaml"]), 0);
}

/// Per-run kv was shared by every step without a grant: a token one step stored was read by a
/// grantless step. Now each step has its own keys, and a namespace is shared only between steps
/// that list it in `grants.kv`.
#[test]
fn a_step_cannot_read_what_another_step_stored_in_kv_without_a_grant() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write(
        "kv.yaml",
        r#"
name: kv
secrets: [token]
steps:
  - id: store
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: kv-set, key: token, value: "s3cret"}, {op: kv-set, key: handoff/url, value: "http://x"}]
    grants: {kv: [handoff]}
  - id: thief
    needs: store
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: kv-get, key: token}, {op: kv-get, key: handoff/url}, {op: kv-list, prefix: ""}]
  - id: friend
    needs: store
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: kv-get, key: handoff/url}, {op: kv-get, key: token}]
    grants: {kv: [handoff]}
"#,
    );
    let o = s
        .cmd()
        .env("MERIDIAN_SECRET_TOKEN", "t0k")
        .args(["--json", "run", "kv.yaml"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&o, 0);
    let report = json(&out);
    let results = |step: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == step)
            .unwrap()["legs"][0]["output"]["results"]
            .clone()
    };
    assert_eq!(
        results("thief"),
        serde_json::json!([null, null, []]),
        "{report}"
    );
    assert_eq!(
        results("friend"),
        serde_json::json!(["http://x", null]),
        "{report}"
    );
}

/// A gated step that runs after a failure (`if: always()`: a cleanup or a rollback) stopped the
/// run at its gate, but the run said `failed`, was compensated at once, hid the gate, and a later
/// `resume --approve` ran the failed step again. Now the run waits for the approval (exit 3,
/// naming what failed), nothing is undone before the gate is answered, and the approval runs
/// the gated step, keeps the failure as it was, and then compensates.
#[test]
fn a_gate_after_a_failure_waits_and_its_approval_keeps_the_failure() {
    let s = Scratch::new();
    s.kitchen_sink();
    std::fs::create_dir_all(s.path().join("rec")).unwrap();
    s.write(
        "cleanup.yaml",
        r#"
name: cleanup
steps:
  - id: change
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: kv-set, key: undo, value: "was primary"}]
      undo_record: /rec/undo.log
    grants: {fs: [{path: rec, guest: /rec, mode: rw}]}
    compensate: true
  - id: boom
    needs: change
    uses: ./kitchen_sink.wasm
    with:
      ops: [{op: fail, kind: fatal, message: boom}]
  - id: tidy
    needs: boom
    if: always()
    uses: hello
    approval: {message: "tidy up?"}
"#,
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "cleanup.yaml"]), 3);
    let report = json(&out);
    assert_eq!(report["status"], "awaiting-approval", "{report}");
    let message = report["message"].as_str().unwrap();
    assert_eq!(
        message, "waiting for approval of tidy (failed: boom)",
        "{report}"
    );
    assert_eq!(report["compensations"], Json::Array(vec![]), "{report}");
    assert!(
        !s.path().join("rec/undo.log").exists(),
        "undone before the gate was answered"
    );
    let run_id = report["run_id"].as_str().unwrap().to_string();

    let (out, _) = expect_code(
        &s.run(&["--json", "resume", &run_id, "--approve", "tidy"]),
        1,
    );
    let report = json(&out);
    assert_eq!(report["status"], "failed", "{report}");
    let step = |id: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id}: {report}"))
            .clone()
    };
    let boom = step("boom");
    assert_eq!(boom["conclusion"], "failure", "{boom}");
    assert_eq!(
        boom["legs"][0]["reused"], true,
        "the failed step ran again: {boom}"
    );
    assert_eq!(step("tidy")["conclusion"], "success");
    assert_eq!(report["compensations"][0]["step"], "change", "{report}");
    let undone = std::fs::read_to_string(s.path().join("rec/undo.log")).unwrap();
    assert_eq!(undone, "\"was primary\"\n");
}
