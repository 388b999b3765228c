//! The CLI surface: validate, run, plan, approvals, secrets, history, exit codes.

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

const HELLO: &str = r#"
name: hello-world
inputs:
  who: {type: string, default: Ada}
steps:
  - id: greet
    uses: hello
    with:
      name: ${{ inputs.who }}
  - id: again
    uses: hello
    needs: greet
    with:
      name: ${{ steps.greet.outputs.greeting }}
"#;

#[test]
fn validate_accepts_a_good_workflow() {
    let s = Scratch::new();
    let f = s.write("wf.yaml", HELLO);
    let (out, _) = expect_code(&s.run(&["validate", f.to_str().unwrap()]), 0);
    assert!(out.contains("ok (2 steps)"), "{out}");
}

#[test]
fn validate_reports_every_problem_with_positions_and_exits_2() {
    let s = Scratch::new();
    s.write(
        "bad.yaml",
        "name: bad\nsteps:\n  - id: a\n    uses: hello\n    nedds: [b]\n  - id: a\n    uses: hello\n",
    );
    let (_, err) = expect_code(&s.run(&["validate", "bad.yaml"]), 2);
    assert!(err.contains("bad.yaml:5:5"), "{err}");
    assert!(err.contains("needs"), "did-you-mean missing: {err}");
    assert!(
        err.contains("bad.yaml:6:"),
        "duplicate id not reported: {err}"
    );
}

#[test]
fn validate_checks_with_against_the_step_schema() {
    let s = Scratch::new();
    s.write(
        "wf.yaml",
        "name: x\nsteps:\n  - id: greet\n    uses: hello\n    with:\n      nmae: Ada\n",
    );
    let (_, err) = expect_code(&s.run(&["validate", "wf.yaml"]), 2);
    assert!(err.contains("wf.yaml:6:7"), "{err}");
    assert!(err.contains("name"), "{err}");
}

#[test]
fn validate_names_an_unknown_step_component() {
    let s = Scratch::new();
    s.write(
        "wf.yaml",
        "name: x\nsteps:\n  - id: a\n    uses: no-such-step\n",
    );
    let (_, err) = expect_code(&s.run(&["validate", "wf.yaml"]), 2);
    assert!(err.contains("wf.yaml:4:11"), "{err}");
    assert!(err.contains("no built-in step `no-such-step`"), "{err}");
}

#[test]
fn run_passes_outputs_between_steps_and_journals() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    let (out, _) = expect_code(
        &s.run(&["--json", "run", "wf.yaml", "--input", "who=Grace"]),
        0,
    );
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(
        report["steps"][1]["legs"][0]["output"]["greeting"],
        "Hello, Hello, Grace!!"
    );
    let run_id = report["run_id"].as_str().unwrap().to_string();

    let (out, _) = expect_code(&s.run(&["runs", "list"]), 0);
    assert!(out.contains(&run_id) && out.contains("succeeded"), "{out}");
    let (out, _) = expect_code(&s.run(&["runs", "show", &run_id]), 0);
    assert!(out.contains("greet: attempt 1 started"), "{out}");
    assert!(out.contains("Hello, Grace!"), "{out}");
    // The same run as an HTML report with a timeline bar per attempt.
    let (out, err) = expect_code(
        &s.run(&["runs", "show", &run_id, "--html", "report.html"]),
        0,
    );
    assert_eq!(out, "", "the page only, not the text report as well");
    assert!(err.contains("wrote report.html"), "{err}");
    let page = std::fs::read_to_string(s.path().join("report.html")).unwrap();
    assert!(
        // Its lane links to the step's details (its log lines are there).
        page.contains(">Timeline</h2>")
            && page.contains("<th><a href=\"#step-again\">again</a></th>"),
        "{page}"
    );
    assert_eq!(page.matches("class=\"b success\"").count(), 2, "{page}");
    assert!(page.contains("Hello, Grace!"), "outputs: {page}");
    // Self-contained: no script, nothing fetched.
    assert!(
        !page.contains("<script") && !page.contains("src=\"http"),
        "{page}"
    );
}

#[test]
fn bad_inputs_and_missing_secrets_exit_2_with_a_fix() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    let (_, err) = expect_code(&s.run(&["run", "wf.yaml", "--input", "whom=x"]), 2);
    assert!(err.contains("unknown input `whom`"), "{err}");

    s.write(
        "secret.yaml",
        "name: s\nsecrets: [API_TOKEN]\nsteps:\n  - id: a\n    uses: hello\n",
    );
    let (_, err) = expect_code(&s.run(&["run", "secret.yaml"]), 2);
    assert!(err.contains("MERIDIAN_SECRET_API_TOKEN"), "{err}");
}

#[test]
fn approval_gate_stops_then_resume_approves_without_redoing_work() {
    let s = Scratch::new();
    s.write(
        "gate.yaml",
        r#"
name: gated
steps:
  - id: before
    uses: hello
  - id: promote
    uses: hello
    needs: before
    approval: {message: "promote the standby?"}
"#,
    );
    let o = s.run(&["--json", "run", "gate.yaml"]);
    let (out, _) = expect_code(&o, 3);
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "awaiting-approval");
    assert_eq!(
        report["message"], "waiting for approval of promote",
        "{report}"
    );
    let run_id = report["run_id"].as_str().unwrap().to_string();

    // A name that is not a gated step is refused (it used to be journaled and change nothing,
    // the run stopping at the gate it was meant to pass), on `run` and on `resume`.
    for (args, why) in [
        (
            vec!["run", "gate.yaml", "--approve", "promte"],
            "the workflow has no such step",
        ),
        (
            vec!["resume", &run_id, "--approve", "before"],
            "that step has no `approval:` gate",
        ),
    ] {
        let (_, err) = expect_code(&s.run(&args), 2);
        assert!(err.contains(why), "{err}");
        assert!(
            err.contains("the steps with an approval gate: `promote`"),
            "{err}"
        );
    }

    let (out, _) = expect_code(
        &s.run(&["--json", "resume", &run_id, "--approve", "promote"]),
        0,
    );
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["steps"][0]["legs"][0]["reused"], true);
    assert!(report["steps"][1]["legs"][0].get("reused").is_none());
}

/// A gate can be refused without a server: `resume --reject STEP` fails the step without running
/// it, and the run goes on into its failure path (there was no way but a server's API: a fenced
/// primary stayed fenced, its compensation never ran).
#[test]
fn a_waiting_run_can_be_rejected_from_the_cli() {
    let s = Scratch::new();
    s.write(
        "gate.yaml",
        r#"
name: gated
steps:
  - id: before
    uses: hello
  - id: promote
    uses: hello
    needs: before
    approval: {message: "promote the standby?"}
  - id: tidy
    uses: hello
    needs: promote
    if: failure()
"#,
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "gate.yaml"]), 3);
    let report: Json = serde_json::from_str(&out).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let (_, err) = expect_code(&s.run(&["resume", &run_id, "--reject", "before"]), 2);
    assert!(
        err.contains("--reject before: that step has no `approval:` gate"),
        "{err}"
    );
    let (out, _) = expect_code(
        &s.run(&[
            "--json",
            "resume",
            &run_id,
            "--reject",
            "promote",
            "--comment",
            "not tonight",
        ]),
        1,
    );
    let report: Json = serde_json::from_str(&out).unwrap();
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
    assert_eq!(step("promote")["outcome"], "failure");
    assert_eq!(
        step("promote")["reason"],
        "approval rejected by --reject: not tonight"
    );
    assert_eq!(step("tidy")["outcome"], "success");
}

/// The closing line of a run waiting for approval is a command that works as printed: it carries
/// the secrets file (secrets are never journaled) and the state directory.
#[test]
fn the_command_a_waiting_run_prints_resumes_it() {
    let s = Scratch::new();
    s.write(
        "gate.yaml",
        "name: gated\nsecrets: [TOKEN]\nsteps:\n  - id: promote\n    uses: hello\n    approval: {message: go?}\n",
    );
    s.write("my secrets.env", "TOKEN=t0k3n\n");
    let (_, err) = expect_code(
        &s.run(&[
            "run",
            "gate.yaml",
            "--secrets-file",
            "my secrets.env",
            "--state-dir",
            "elsewhere",
        ]),
        3,
    );
    let (_, command) = err
        .split_once("to approve and go on: meridian ")
        .unwrap_or_else(|| panic!("no command in: {err}"));
    let command = command.lines().next().unwrap();
    assert!(
        command.contains("--state-dir elsewhere --secrets-file 'my secrets.env'"),
        "{command}"
    );
    // The words as a shell would split them (the one quoted path is the only quoting).
    let mut words = Vec::new();
    let mut rest = command;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (word, after) = match rest.strip_prefix('\'') {
            Some(q) => q.split_once('\'').unwrap(),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        words.push(word.to_string());
        rest = after;
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_eq!(words[0], "resume", "{command}");
    // `runs list` and `runs show` read the run from the journal: their command names the
    // secrets file too (journaled as an absolute path; it used to be left out, and the command
    // as shown failed on the missing secret).
    let secrets = s.path().join("my secrets.env");
    let want = format!("--secrets-file '{}'", secrets.display());
    let (listed, _) = expect_code(&s.run(&["--state-dir", "elsewhere", "runs", "list"]), 0);
    assert!(listed.contains(&want), "{listed}");
    let id = words[1];
    let (shown, _) = expect_code(&s.run(&["--state-dir", "elsewhere", "runs", "show", id]), 0);
    assert!(shown.contains(&want), "{shown}");
    // A resume without the file says which file the run was started with.
    let (_, err) = expect_code(&s.run(&["--state-dir", "elsewhere", "resume", id]), 2);
    assert!(
        err.contains("secret `TOKEN` has no value")
            && err.contains(&format!(
                "was started with --secrets-file {}",
                secrets.display()
            )),
        "{err}"
    );
    let (out, _) = expect_code(&s.run(&words), 0);
    assert!(out.contains("succeeded"), "{out}");
}

#[test]
fn a_digest_mismatch_refuses_to_run() {
    let s = Scratch::new();
    s.write(
        "pin.yaml",
        &format!(
            "name: pin\nsteps:\n  - id: a\n    uses: hello@sha256:{}\n",
            "0".repeat(64)
        ),
    );
    // Refused before anything runs or is journaled, as `validate` refuses it (exit 2).
    let (_, err) = expect_code(&s.run(&["--json", "run", "pin.yaml"]), 2);
    assert!(err.contains("sha256"), "{err}");
    let (out, _) = expect_code(&s.run(&["--json", "runs", "list"]), 0);
    assert!(!out.contains("\"pin\""), "{out}");
}

#[test]
fn steps_list_and_show_describe_builtins() {
    let s = Scratch::new();
    let (out, _) = expect_code(&s.run(&["steps", "list"]), 0);
    assert!(out.contains("hello"), "{out}");
    let (out, _) = expect_code(&s.run(&["--json", "steps", "show", "hello"]), 0);
    let m: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(m["name"], "hello");
    assert!(m["input_schema"]["properties"]["name"].is_object(), "{m}");
}

#[test]
fn a_corrupt_state_file_is_refused_and_kept() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    let db = s.write("state/meridian.db", &"not sqlite at all\n".repeat(50));
    let before = std::fs::read(&db).unwrap();
    let (_, err) = expect_code(&s.run(&["run", "wf.yaml"]), 5);
    assert!(err.contains("not a Meridian state file"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn retry_from_a_step_reruns_it_and_its_dependents_only() {
    let s = Scratch::new();
    s.write(
        "chain.yaml",
        "name: chain\nsteps:\n  - id: a\n    uses: hello\n  - id: b\n    uses: hello\n    needs: a\n  - id: c\n    uses: hello\n    needs: b\n  - id: side\n    uses: hello\n",
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "chain.yaml"]), 0);
    let first: Json = serde_json::from_str(&out).unwrap();
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let (out, _) = expect_code(&s.run(&["--json", "retry", &run_id, "--from", "b"]), 0);
    let again: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(again["run_id"], run_id.as_str());
    let reused = |id: &str| {
        again["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["legs"][0]["reused"] == true)
            .unwrap()
    };
    assert!(reused("a") && reused("side"));
    assert!(!reused("b") && !reused("c"));

    let (_, err) = expect_code(&s.run(&["retry", &run_id, "--from", "nope"]), 2);
    assert!(err.contains("no step `nope`"), "{err}");
    let (_, err) = expect_code(&s.run(&["resume", "r-unknown"]), 2);
    assert!(err.contains("meridian runs list"), "{err}");
}

#[test]
fn wrong_files_as_steps_get_a_plain_word() {
    let s = Scratch::new();
    s.write("garbage.wasm", "not wasm at all");
    std::fs::write(s.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    s.write(
        "wf.yaml",
        "name: w\nsteps:\n  - id: a\n    uses: ./garbage.wasm\n  - id: b\n    uses: ./core.wasm\n    needs: a\n    if: always()\n",
    );
    let (_, err) = expect_code(&s.run(&["validate", "wf.yaml"]), 2);
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
    // `run` refuses the same, both reasons, before anything runs (it journaled a run whose
    // steps failed, exit 1).
    let (_, err) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 2);
    assert!(err.contains("not a WebAssembly file"), "{err}");
    assert!(err.contains("core WebAssembly module"), "{err}");
}

#[test]
fn runs_prune_deletes_ended_runs_and_keeps_waiting_ones_and_check_passes() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    s.write(
        "gate.yaml",
        "name: gated\nsteps:\n  - id: promote\n    uses: hello\n    approval: {message: go?}\n",
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
    let done: Json = serde_json::from_str(&out).unwrap();
    let (out, _) = expect_code(&s.run(&["--json", "run", "gate.yaml"]), 3);
    let waiting: Json = serde_json::from_str(&out).unwrap();

    let (out, _) = expect_code(&s.run(&["runs", "check"]), 0);
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    // A bare number (seconds in a workflow) is refused: `30` meant days to whoever typed it,
    // and deleted the runs of the last 30 seconds.
    let (_, err) = expect_code(&s.run(&["runs", "prune", "--older-than", "30"]), 2);
    assert!(err.contains("`30` has no unit"), "{err}");
    let (out, _) = expect_code(&s.run(&["runs", "prune", "--older-than", "1h"]), 0);
    assert!(out.contains("pruned 0 runs"), "{out}");
    let (out, _) = expect_code(
        &s.run(&["--json", "runs", "prune", "--older-than", "0s"]),
        0,
    );
    assert_eq!(serde_json::from_str::<Json>(&out).unwrap()["pruned"], 1);
    let (out, _) = expect_code(&s.run(&["--json", "runs", "list"]), 0);
    let left: Json = serde_json::from_str(&out).unwrap();
    let ids: Vec<&Json> = left.as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&waiting["run_id"]], "{left}");
    let (_, err) = expect_code(
        &s.run(&["runs", "show", done["run_id"].as_str().unwrap()]),
        2,
    );
    assert!(err.contains("not found"), "{err}");

    let (_, err) = expect_code(&s.run(&["runs", "prune", "--older-than", "soon"]), 2);
    assert!(err.contains("--older-than"), "{err}");
}

#[test]
fn doctor_verifies_the_journal_and_names_what_is_missing() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    expect_code(&s.run(&["run", "wf.yaml"]), 0);
    let (out, _) = expect_code(&s.run(&["doctor"]), 0);
    assert!(out.contains("ok   journal"), "{out}");
    assert!(out.contains("verified whole"), "{out}");
    assert!(out.contains("12 carried by this binary"), "{out}");
    assert!(out.trim_end().ends_with("meridian doctor: ok"), "{out}");
    let (out, _) = expect_code(&s.run(&["--json", "doctor"]), 0);
    let d: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(d["ok"], true, "{d}");
    // A lab tool off PATH is a warning, not a failure: only `meridian lab` needs it.
    let out = s
        .cmd()
        .args(["--json", "doctor"])
        .env("PATH", "/nonexistent")
        .env("MERIDIAN_PG_BIN", "/nonexistent")
        .output()
        .unwrap();
    let (out, _) = expect_code(&out, 0);
    let d: Json = serde_json::from_str(&out).unwrap();
    let pdns = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"].as_str().unwrap().contains("PowerDNS"))
        .unwrap()
        .clone();
    // /usr/sbin is searched too: absent or present, never a failure.
    assert_ne!(pdns["state"], "fail", "{pdns}");

    // A damaged journal file fails the check, naming it. `runs prune` moves the WAL into the
    // file first (commands leave the WAL in place; its pages would mask damage to the file's
    // older copies of them).
    expect_code(&s.run(&["runs", "prune", "--older-than", "30d"]), 0);
    let db = s.path().join("state/meridian.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let end = bytes.len().min(12_288);
    for b in &mut bytes[4_096..end] {
        *b = 0xAB;
    }
    std::fs::write(&db, &bytes).unwrap();
    let (out, _) = expect_code(&s.run(&["doctor"]), 1);
    assert!(out.contains("FAIL journal"), "{out}");
}

#[test]
fn cache_prune_removes_unused_and_foreign_compiled_components_only() {
    let s = Scratch::new();
    s.write("wf.yaml", HELLO);
    let cache = s.path().join("own-cache");
    let with_cache = |args: &[&str]| {
        s.cmd()
            .env("MERIDIAN_CACHE_DIR", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    expect_code(&with_cache(&["run", "wf.yaml"]), 0);
    let compiled: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    // A component compiled by another engine (another wasmtime, another CPU) is never loaded.
    let foreign = cache.join(format!("{}-0123456789abcdef.cwasm", "f".repeat(64)));
    std::fs::write(&foreign, b"old").unwrap();

    let (out, _) = expect_code(&with_cache(&["cache", "prune"]), 0);
    assert!(out.contains("removed 1 file (3 B)"), "{out}");
    assert!(
        out.contains("1 component compiled by another wasmtime"),
        "{out}"
    );
    assert!(!foreign.exists() && compiled[0].exists());

    let (out, _) = expect_code(
        &with_cache(&[
            "--json",
            "cache",
            "prune",
            "--older-than",
            "0s",
            "--dry-run",
        ]),
        0,
    );
    let p: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(p["removed"][0]["reason"], "unused", "{p}");
    assert!(compiled[0].exists(), "a dry run removes nothing");
    expect_code(&with_cache(&["cache", "prune", "--older-than", "0s"]), 0);
    assert!(!compiled[0].exists());
    // The next run compiles it again.
    expect_code(&with_cache(&["run", "wf.yaml"]), 0);
    assert!(compiled[0].exists());

    let (_, err) = expect_code(&with_cache(&["cache", "prune", "--older-than", "later"]), 2);
    assert!(err.contains("--older-than"), "{err}");
}

/// A failed run's resume runs its failed step again, as attempt 2: the journal numbered it 1
/// again, which read as if nothing had been tried before.
#[test]
fn a_failed_runs_resume_numbers_its_attempts_on() {
    let s = Scratch::new();
    // Nothing listens on the discard port: the probe fails at once, retryably.
    s.write(
        "again.yaml",
        "name: again\nsteps:\n  - id: probe\n    uses: http-probe\n    with: {url: \"http://127.0.0.1:9/x\", timeout_ms: 200}\n    grants: {http: [\"http://127.0.0.1:9\"]}\n    retry: 1\n",
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "again.yaml"]), 1);
    let report: Json = serde_json::from_str(&out).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    expect_code(&s.run(&["resume", &run_id]), 1);
    let (shown, _) = expect_code(&s.run(&["--json", "runs", "show", &run_id]), 0);
    let shown: Json = serde_json::from_str(&shown).unwrap();
    let started: Vec<u64> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["event"] == "attempt-started")
        .map(|e| e["event"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(started, [1, 2], "{shown}");
    assert_eq!(shown["legs"][0]["attempts"], 2, "{}", shown["legs"]);
}

/// `validate` loads the workflow's own `trust-policy:` as a run does first (it passed a missing
/// or broken one every run then refused), and never quotes a file that is not a policy.
#[test]
fn validate_loads_the_workflows_trust_policy_and_quotes_nothing_of_it() {
    let s = Scratch::new();
    s.write("secret.env", "DB_PASSWORD=hunter2-very-secret\n");
    for (policy, says) in [
        ("missing.toml", "missing.toml"),
        ("secret.env", "not valid TOML at line 1, column 13"),
    ] {
        s.write(
            "wf.yaml",
            &format!("name: w\ntrust-policy: {policy}\nsteps:\n  - id: a\n    uses: hello\n"),
        );
        let (_, err) = expect_code(&s.run(&["validate", "wf.yaml"]), 2);
        assert!(
            err.contains("`trust-policy`") && err.contains(says),
            "{err}"
        );
        let (_, err) = expect_code(&s.run(&["run", "wf.yaml"]), 2);
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// An error that quotes what came from outside (here a file name; a registry's error body, a
/// signature's key id) reaches the terminal without its control characters.
#[test]
fn errors_are_safe_for_the_terminal() {
    let s = Scratch::new();
    let (_, err) = expect_code(&s.run(&["run", "\u{1b}[2J\u{7}fake.yaml"]), 2);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("fake.yaml"), "{err}");
}
