//! What the user points at is read with a cap: `/dev/zero` as a workflow, an inputs file or a
//! secrets file fails at once, naming the file and the limit, with memory bounded.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::Scratch;

/// Most memory a refused `/dev/zero` may take: the binary, wasmtime and a 4 MiB read fit well
/// under it; reading `/dev/zero` whole does not.
const RSS_CAP_KIB: u64 = 512 * 1024;

/// Runs `meridian ARGS`, killing it when its resident memory passes [`RSS_CAP_KIB`] or it takes
/// longer than 30 s (so a regression fails this test instead of the machine).
fn run_bounded(s: &Scratch, args: &[&str]) -> Output {
    let mut child = s
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meridian");
    let status = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let rss = std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
            .unwrap_or(0);
        peak = peak.max(rss);
        if rss > RSS_CAP_KIB || started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "meridian {args:?} still running after {:?} with {rss} KiB resident",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    assert!(peak <= RSS_CAP_KIB, "{peak} KiB");
    o
}

#[track_caller]
fn refused(o: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for w in want {
        assert!(err.contains(w), "missing {w:?} in: {err}");
    }
}

const WF: &str = "name: w\nsecrets: [token]\ninputs:\n  who: {type: string, default: x}\nsteps:\n  - id: a\n    uses: hello\n";

#[test]
fn validate_dev_zero_fails_fast_naming_the_limit() {
    let s = Scratch::new();
    let o = run_bounded(&s, &["validate", "/dev/zero"]);
    refused(&o, &["/dev/zero", "the limit is 4 MiB"]);
}

#[test]
fn run_of_a_device_or_an_oversized_workflow_is_refused_before_reading() {
    let s = Scratch::new();
    refused(
        &run_bounded(&s, &["run", "/dev/zero"]),
        &["/dev/zero", "not a regular file"],
    );
    // Sparse: 2 GiB long without a byte written.
    let big = s.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    refused(
        &run_bounded(&s, &["plan", "big.yaml"]),
        &["big.yaml", "is 2 GiB; the limit is 4 MiB"],
    );
}

#[test]
fn inputs_file_dev_zero_fails_fast_naming_the_limit() {
    let s = Scratch::new();
    s.write("wf.yaml", WF);
    let o = run_bounded(&s, &["run", "wf.yaml", "--inputs-file", "/dev/zero"]);
    refused(&o, &["--inputs-file /dev/zero", "the limit is 1 MiB"]);
}

#[test]
fn secrets_file_dev_zero_fails_fast_naming_the_limit() {
    let s = Scratch::new();
    s.write("wf.yaml", WF);
    let o = run_bounded(&s, &["run", "wf.yaml", "--secrets-file", "/dev/zero"]);
    refused(&o, &["secrets file /dev/zero", "the limit is 1 MiB"]);
}

#[test]
fn a_secrets_file_in_dotenv_form_is_read_and_a_duplicate_is_refused() {
    let s = Scratch::new();
    s.write(
        "wf.yaml",
        "name: w\nsecrets: [token]\nsteps:\n  - id: a\n    uses: hello\n    with: {name: \"${{ secrets.token }}\"}\n    grants: {secrets: [token]}\n",
    );
    s.write("ok.env", "# lab\nexport token='s3cr3t $x'\n");
    let o = s
        .cmd()
        .args(["--json", "run", "wf.yaml", "--secrets-file", "ok.env"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // The value reached the step and was masked on the way out.
    assert!(out.contains("Hello, ***!"), "{out}");
    s.write("dup.env", "token=a\n\ntoken=b\n");
    let o = s
        .cmd()
        .args(["run", "wf.yaml", "--secrets-file", "dup.env"])
        .output()
        .unwrap();
    refused(&o, &["dup.env:3: `token` is given twice (first on line 1)"]);
}
