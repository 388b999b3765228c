//! `meridian lab` through the CLI: `up` after `down` starts a fresh lab, and `status` exits
//! non-zero when anything is down.

use std::path::PathBuf;

use crate::support::{Scratch, expect_code};

/// Runs `meridian lab down --dir` when dropped, also when the test panics.
struct Down<'a>(&'a Scratch, PathBuf);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .cmd()
            .args(["lab", "down", "--dir"])
            .arg(&self.1)
            .output();
    }
}

#[test]
fn up_after_down_starts_again_and_status_reports_what_is_down() {
    let s = Scratch::new();
    let dir = s.path().join("lab");
    let d = dir.to_str().unwrap();
    let _down = Down(&s, dir.clone());
    let lab = |args: &[&str]| {
        s.cmd()
            .arg("lab")
            .args(args)
            .args(["--dir", d])
            .output()
            .unwrap()
    };
    expect_code(&lab(&["up", "--regions", "eu,us"]), 0);
    let (out, _) = expect_code(&lab(&["status"]), 0);
    assert!(out.contains("lab Ready"), "{out}");

    // A region down: status says which and exits 1.
    expect_code(&lab(&["region", "us", "kill"]), 0);
    let (out, err) = expect_code(&lab(&["status"]), 1);
    // Not "Ready" beside its problems.
    assert!(out.contains("lab Degraded"), "{out}");
    assert!(err.contains("region us is killed"), "{err}");
    assert!(
        err.contains("region us: PostgreSQL is not running"),
        "{err}"
    );

    expect_code(&lab(&["down"]), 0);
    let (out, err) = expect_code(&lab(&["status"]), 1);
    assert!(err.contains("the lab is stopped"), "{err}");
    // No region of a stopped lab is shown up (they all were, after `down`).
    let state = std::fs::read_to_string(dir.join("lab.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    for r in state["regions"].as_array().unwrap() {
        assert_ne!(r["status"], "up", "{out}\n{r}");
    }
    // A region action on the stopped lab says so and how to start it ("connection refused").
    let (_, err) = expect_code(&lab(&["region", "eu", "kill"]), 1);
    assert!(
        err.contains("is not running") && err.contains("meridian lab up --dir"),
        "{err}"
    );

    // The same directory again: a fresh lab, not "already holds a cluster".
    let (out, err) = expect_code(&lab(&["up", "--regions", "eu,us"]), 0);
    assert!(out.contains("lab Ready"), "{out}\n{err}");
    expect_code(&lab(&["status"]), 0);
    expect_code(&lab(&["down"]), 0);
}
