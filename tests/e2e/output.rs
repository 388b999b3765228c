//! What a person reads: `steps show`, `runs list`, run summaries, error messages.

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

#[test]
fn steps_show_prints_a_summary_and_json_prints_the_schema() {
    let s = Scratch::new();
    let (out, _) = expect_code(&s.run(&["steps", "show", "db-postgres"]), 0);
    assert!(out.starts_with("db-postgres "), "{out}");
    assert!(
        out.contains("action") && out.contains("one of: status, setup-logical, fence"),
        "{out}"
    );
    assert!(
        out.contains("connection") && out.contains("string (required)"),
        "{out}"
    );
    assert!(out.contains("grants it needs:\n  sql "), "{out}");
    assert!(out.contains("plan mode:  yes"), "{out}");
    assert!(out.contains("compensate: yes"), "{out}");
    let (out, _) = expect_code(&s.run(&["--json", "steps", "show", "db-postgres"]), 0);
    let m: Json = serde_json::from_str(&out).unwrap();
    assert!(m["input_schema"]["properties"]["action"].is_object(), "{m}");
}

const COE: &str = r#"
name: coe
steps:
  - id: optional
    uses: ./kitchen_sink.wasm
    continue-on-error: true
    with: {ops: [{op: fail, kind: fatal, message: "first line\nsecond line"}]}
  - id: last
    needs: optional
    if: always()
    uses: hello
"#;

#[test]
fn a_continue_on_error_failure_is_reported_and_its_lines_stay_indented() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write("coe.yaml", COE);
    let (out, err) = expect_code(&s.run(&["run", "coe.yaml"]), 0);
    assert!(!out.contains("all steps succeeded"), "{out}");
    assert!(
        out.contains("1 step failed under continue-on-error (optional)"),
        "{out}"
    );
    // The error's second line sits under its first, not at the start of a line.
    assert!(
        out.contains("\n             step failed: first line\n             second line\n"),
        "{out}"
    );
    assert!(err.contains("first line\n           second line"), "{err}");
    assert!(!err.contains("all steps succeeded"), "{err}");

    let (out, _) = expect_code(&s.run(&["runs", "list"]), 0);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for column in ["RUN", "STARTED (UTC)", "DURATION", "STATE", "WORKFLOW"] {
        assert!(header.contains(column), "{out}");
    }
    let row = lines.next().unwrap();
    assert!(row.contains("succeeded") && row.contains(" coe "), "{out}");
    assert!(row.contains("failed under continue-on-error"), "{out}");
    // A start time: YYYY-MM-DD HH:MM:SS.
    let started = row.split_whitespace().nth(1).unwrap();
    assert_eq!(started.len(), 10, "{row}");
    assert_eq!(&started[4..5], "-", "{row}");
}

#[test]
fn a_waiting_run_says_the_command_to_type() {
    let s = Scratch::new();
    s.write(
        "gate.yaml",
        "name: gated\nsteps:\n  - id: promote\n    uses: hello\n    approval: {message: go?}\n",
    );
    let (out, err) = expect_code(&s.run(&["run", "gate.yaml"]), 3);
    let (json, _) = expect_code(&s.run(&["--json", "runs", "list"]), 0);
    let runs: Json = serde_json::from_str(&json).unwrap();
    let want = format!(
        "meridian resume {} --approve promote",
        runs[0]["id"].as_str().unwrap()
    );
    assert!(out.contains(&want), "{out}");
    assert!(err.contains(&want), "{err}");
    assert!(!out.contains("re-run with"), "{out}");
}

/// Every error is said once: no "error: error:" however it reaches the terminal.
#[test]
fn errors_are_prefixed_once() {
    let s = Scratch::new();
    s.write(
        "wf.yaml",
        "name: w\nsecrets: [A, B]\nsteps:\n  - id: a\n    uses: hello\n",
    );
    s.write("bad.yaml", "name: b\nsteps:\n  - id: a\n    uses: nope\n");
    let cases: &[&[&str]] = &[
        &["validate", "missing.yaml"],
        &["validate", "bad.yaml"],
        &["run", "missing.yaml"],
        &["run", "bad.yaml"],
        &["run", "wf.yaml"],
        &["run", "wf.yaml", "--secrets-file", "missing.env"],
        &["run", "wf.yaml", "--inputs-file", "missing.json"],
        &["run", "wf.yaml", "--timeout", "soon"],
        &["run", "wf.yaml", "--input", "x"],
        &["steps", "show", "nope"],
        &["runs", "show", "r-nope"],
        &["resume", "r-nope"],
        &["--store", "mysql://x", "runs", "list"],
        &["worker"],
        &["lab", "status", "--dir", "no-lab"],
        &["new", "step", "Bad"],
    ];
    for args in cases {
        let o = s.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code().is_some_and(|c| c != 0),
            "{args:?} succeeded: {err}"
        );
        assert!(!err.is_empty(), "{args:?}: nothing said");
        assert!(
            !err.to_lowercase().contains("error: error"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn completions_and_man_pages_come_from_the_definitions() {
    let s = Scratch::new();
    for (shell, marker) in [
        ("bash", "complete -F _meridian"),
        ("zsh", "#compdef meridian"),
        ("fish", "complete -c meridian"),
    ] {
        let (out, _) = expect_code(&s.run(&["completions", shell]), 0);
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("secrets-file"), "{shell}: {out}");
    }
    expect_code(&s.run(&["completions", "tcsh"]), 2);

    let (out, _) = expect_code(&s.run(&["man"]), 0);
    assert!(out.contains(".TH meridian 1"), "{out}");
    assert!(out.contains("\\-\\-state\\-dir"), "{out}");
    let (out, _) = expect_code(&s.run(&["man", "runs", "list"]), 0);
    assert!(out.contains(".TH meridian-runs-list 1"), "{out}");
    assert!(out.contains("How many runs"), "{out}");
    let (_, err) = expect_code(&s.run(&["man", "runs", "nope"]), 2);
    assert!(
        err.contains("`meridian runs nope` is not a command"),
        "{err}"
    );

    expect_code(&s.run(&["man", "--dir", "pages"]), 0);
    for page in ["meridian.1", "meridian-run.1", "meridian-lab-up.1"] {
        assert!(s.path().join("pages").join(page).is_file(), "{page}");
    }
}

/// `--json` streams the events on stderr, one JSON object per line, each with the Unix ms it
/// happened at.
#[test]
fn json_events_carry_timestamps() {
    let s = Scratch::new();
    s.write(
        "t.yaml",
        "name: t\nsteps:\n  - {id: a, uses: hello}\n  - {id: b, uses: hello, needs: a}\n",
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (_, stderr) = expect_code(&s.run(&["--json", "run", "t.yaml"]), 0);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.len() >= 6, "{stderr}");
    let mut last = before;
    for e in &events {
        let at = e["at_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("no at_ms: {e}"));
        assert!(at >= last, "timestamps go forward: {e}");
        last = at;
        assert!(e["event"].is_string(), "{e}");
    }
    assert_eq!(events[0]["event"], "run-started");
}

/// What a step logs is journaled per attempt (masked, bounded), streamed in `--json` events and
/// shown by `runs show`; a secret's value never appears.
#[test]
fn step_logs_are_journaled_masked_and_shown() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write(
        "logs.yaml",
        r#"
name: logs
secrets: [token]
steps:
  - id: talk
    uses: ./kitchen_sink.wasm
    with:
      ops:
        - {op: log, level: info, message: "connecting with t0ps3cret now"}
        - {op: log, level: warn, message: "second line"}
"#,
    );
    let run = s
        .cmd()
        .env("MERIDIAN_SECRET_TOKEN", "t0ps3cret")
        .args(["--json", "run", "logs.yaml"])
        .output()
        .unwrap();
    let (out, stderr) = expect_code(&run, 0);
    let run_id = serde_json::from_str::<Json>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let streamed = stderr
        .lines()
        .find(|l| l.contains("\"step-log\""))
        .unwrap_or_else(|| panic!("no step-log event: {stderr}"));
    assert!(streamed.contains("connecting with *** now"), "{streamed}");
    assert!(!stderr.contains("t0ps3cret"), "{stderr}");

    let (shown, _) = expect_code(&s.run(&["--json", "runs", "show", &run_id]), 0);
    let shown: Json = serde_json::from_str(&shown).unwrap();
    let log = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["event"] == "step-log")
        .unwrap_or_else(|| panic!("not journaled: {shown}"));
    assert_eq!(log["event"]["attempt"], 1);
    assert_eq!(log["event"]["lines"].as_array().unwrap().len(), 2, "{log}");
    assert!(log["at_ms"].as_i64().unwrap() > 0);

    let (text, _) = expect_code(&s.run(&["runs", "show", &run_id]), 0);
    assert!(text.contains("attempt 1 logged"), "{text}");
    assert!(text.contains("warn: second line"), "{text}");
    assert!(!text.contains("t0ps3cret"), "{text}");
}

/// A failed attempt's log lines are journaled too (masked), before its failure: what a step
/// logged before it failed is what an operator reads first.
#[test]
fn a_failed_attempts_logs_are_kept_and_shown() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write(
        "fails.yaml",
        r#"
name: fails
secrets: [token]
steps:
  - id: promote
    uses: ./kitchen_sink.wasm
    retry: {attempts: 2, initial: 10ms}
    with:
      ops:
        - {op: log, level: warn, message: "replica lag 9 GB with t0ps3cret, refusing"}
        - {op: fail, kind: retryable, message: "lag too high"}
"#,
    );
    let run = s
        .cmd()
        .env("MERIDIAN_SECRET_TOKEN", "t0ps3cret")
        .args(["--json", "run", "fails.yaml"])
        .output()
        .unwrap();
    let (out, _) = expect_code(&run, 1);
    let run_id = serde_json::from_str::<Json>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (shown, _) = expect_code(&s.run(&["--json", "runs", "show", &run_id]), 0);
    let shown: Json = serde_json::from_str(&shown).unwrap();
    let kinds: Vec<(String, Json)> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["event"].as_str().unwrap().to_string(),
                e["event"]["attempt"].clone(),
            )
        })
        .filter(|(k, _)| k.starts_with("attempt-") || k == "step-log")
        .collect();
    let want: Vec<(String, Json)> = [
        ("attempt-started", 1),
        ("step-log", 1),
        ("attempt-failed", 1),
        ("attempt-started", 2),
        ("step-log", 2),
        ("attempt-failed", 2),
    ]
    .iter()
    .map(|(k, a)| (k.to_string(), Json::from(*a)))
    .collect();
    assert_eq!(kinds, want, "{shown}");
    let (text, _) = expect_code(&s.run(&["runs", "show", &run_id]), 0);
    assert!(text.contains("attempt 2 logged"), "{text}");
    assert!(
        text.contains("replica lag 9 GB with ***, refusing"),
        "{text}"
    );
    assert!(!text.contains("t0ps3cret"), "{text}");
}

/// A workflow's name and its file's name are text from a repository, not the user's: shown
/// escaped wherever they are (the run's header, `runs show`, validate's diagnostics, the run
/// page's title), as a step's text is.
#[test]
fn a_workflows_name_and_file_name_are_escaped_when_shown() {
    let s = Scratch::new();
    let file = "wf\u{1b}[31m.yaml";
    s.write(
        file,
        "name: \"evil\\e]0;title\\aname\"\nsteps:\n  - id: ok\n    uses: hello\n",
    );
    let (out, _) = expect_code(&s.run(&["run", file]), 0);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("evil\\x1b]0;title\\x07name — run"), "{out}");
    let (id, _) = expect_code(&s.run(&["runs", "list"]), 0);
    let id = id
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (shown, _) = expect_code(&s.run(&["runs", "show", &id]), 0);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains("wf\\x1b[31m.yaml"), "{shown}");
    let page = s.path().join("run.html");
    expect_code(
        &s.run(&["runs", "show", &id, "--html", page.to_str().unwrap()]),
        0,
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains('\u{1b}') && !html.contains('\u{7}'),
        "the page"
    );
    // A problem in the file: its name is escaped in the diagnostic.
    s.write(
        file,
        "name: x\nsteps:\n  - id: ok\n    uses: hello\n    wiht: {}\n",
    );
    let (_, err) = expect_code(&s.run(&["validate", file]), 2);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("wf\\x1b[31m.yaml:5:5"), "{err}");
}
