//! A reader that goes away early (`meridian runs list | head -1`) ends the command quietly with
//! exit 0, as `ls | head` does, instead of a "Broken pipe" panic (exit 101).

use std::process::Stdio;

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

/// `meridian ARGS` with stdout a pipe whose reading end is closed before the command writes.
fn into_closed_pipe(s: &Scratch, args: &[&str]) {
    let mut child = s
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meridian");
    // The only reading end: once it is gone, every write to the child's stdout fails with EPIPE.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait for meridian");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "meridian {args:?}: {err}");
    assert!(err.is_empty(), "meridian {args:?} said on stderr: {err}");
}

#[test]
fn a_closed_stdout_ends_list_and_show_commands_quietly() {
    let s = Scratch::new();
    s.write(
        "wf.yaml",
        "name: p\nsteps:\n  - id: a\n    uses: hello\n  - id: b\n    uses: hello\n    needs: a\n",
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
    let report: Json = serde_json::from_str(&out).unwrap();
    let run_id = report["run_id"].as_str().unwrap();

    into_closed_pipe(&s, &["runs", "list"]);
    into_closed_pipe(&s, &["--json", "runs", "list"]);
    into_closed_pipe(&s, &["runs", "show", run_id]);
    into_closed_pipe(&s, &["steps", "show", "hello"]);
    into_closed_pipe(&s, &["steps", "list"]);
    into_closed_pipe(&s, &["validate", "wf.yaml"]);
}
