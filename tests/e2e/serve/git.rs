//! `on.git` under `meridian serve`: commits pushed to a local bare repository, as a user pushes
//! them, start runs (one per commit that touches the watched paths, none for other paths), a
//! signed push webhook wakes a watcher at once, a bad signature is refused, and a restarted
//! server starts no second run for a commit.

use std::path::Path;
use std::process::Command;

use hmac::{Hmac, Mac};

use super::*;

/// `git ARGS…` in `dir`, as the user (the test's side; Meridian reads git in-process).
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Op", "-c", "user.email=op@example.test"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bare repository `origin.git` and a clone `work` of it, both under `root`.
pub(crate) fn repo(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let origin = root.join("origin.git");
    let work = root.join("work");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    git(root, &["clone", "-q", origin.to_str().unwrap(), "work"]);
    git(&work, &["checkout", "-q", "-b", "main"]);
    (origin, work)
}

/// Writes (or, with `None`, removes) files in the clone, commits and pushes; the commit id.
pub(crate) fn push(work: &Path, files: &[(&str, Option<&str>)], message: &str) -> String {
    for (path, text) in files {
        let p = work.join(path);
        match text {
            Some(t) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, t).unwrap();
            }
            None => std::fs::remove_file(&p).unwrap(),
        }
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn workflow(name: &str, origin: &Path, interval: &str) -> String {
    format!(
        r#"
name: {name}
on:
  git:
    repo: {}
    paths: [adc/**]
    interval: {interval}
    webhook-secret: HOOK_SECRET
inputs:
  git_commit: {{type: string, required: true}}
  git_changed_files: {{type: list, default: []}}
  git_files: {{type: map, default: {{}}}}
steps:
  - id: greet
    uses: hello
    with: {{name: "${{{{ inputs.git_commit }}}}"}}
"#,
        origin.display()
    )
}

fn runs_of(body: &Json, workflow: &str) -> Vec<Json> {
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workflow"] == workflow)
        .cloned()
        .collect()
}

fn signed(secret: &str, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

#[test]
fn commits_touching_the_paths_start_one_run_each_and_webhooks_are_signed() {
    let s = Scratch::new();
    let (origin, work) = repo(s.path());
    let c1 = push(&work, &[("adc/a.yaml", Some("services: []\n"))], "first");
    s.write("wf/polled.yaml", &workflow("polled", &origin, "1s"));
    // Polled once an hour: only a webhook makes it look again.
    s.write("wf/hooked.yaml", &workflow("hooked", &origin, "1h"));
    s.write("secrets.env", "HOOK_SECRET=s3cret-hook\n");
    let args = ["--workflows", "wf", "--secrets-file", "secrets.env"];
    let served = Served::start(&s, &args);
    let rt = rt();
    rt.block_on(async {
        let git_url = served.url("/api/v1/git");
        let at = |wf: &'static str, commit: String| {
            move |b: &Json| {
                b["git"]
                    .as_array()
                    .and_then(|a| a.iter().find(|g| g["workflow"] == wf))
                    .is_some_and(|g| g["commit"] == commit.as_str())
            }
        };
        // Both start from the head as they find it: no run for history.
        until(
            &git_url,
            None,
            Duration::from_secs(30),
            at("polled", c1.clone()),
        )
        .await;
        until(
            &git_url,
            None,
            Duration::from_secs(30),
            at("hooked", c1.clone()),
        )
        .await;

        // A commit outside the paths: seen, no run.
        let c2 = push(&work, &[("README.md", Some("docs\n"))], "docs only");
        until(
            &git_url,
            None,
            Duration::from_secs(30),
            at("polled", c2.clone()),
        )
        .await;
        // A commit under the paths: one run, for that commit, with what it changed.
        let c3 = push(
            &work,
            &[
                ("adc/b.yaml", Some("routes: []\n")),
                ("notes.txt", Some("x")),
            ],
            "add b",
        );
        until(
            &git_url,
            None,
            Duration::from_secs(30),
            at("polled", c3.clone()),
        )
        .await;
        let runs_url = served.url("/api/v1/runs?limit=50");
        let body = until(&runs_url, None, Duration::from_secs(30), |b| {
            runs_of(b, "polled")
                .iter()
                .any(|r| r["status"] == "succeeded")
        })
        .await;
        let polled = runs_of(&body, "polled");
        assert_eq!(polled.len(), 1, "one run for c3, none for c1/c2: {body}");
        let id = polled[0]["id"].as_str().unwrap().to_string();
        let (_, run) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            None,
        )
        .await;
        assert_eq!(run["run"]["settings"]["trigger"], format!("git:{c3}"));
        assert_eq!(run["run"]["inputs"]["git_commit"], c3.as_str());
        assert_eq!(
            run["run"]["inputs"]["git_changed_files"],
            json!(["adc/b.yaml"])
        );
        assert_eq!(
            run["run"]["inputs"]["git_files"],
            json!({"adc/a.yaml": "services: []\n", "adc/b.yaml": "routes: []\n"})
        );
        // The hourly watcher has not looked again.
        let (_, runs) = call("GET", &runs_url, None, None).await;
        assert!(runs_of(&runs, "hooked").is_empty(), "{runs}");

        // Webhooks: a bad or missing signature is refused; another branch is ignored.
        let hook = served.url("/hooks/git/hooked");
        let payload = format!(r#"{{"ref":"refs/heads/main","after":"{c3}"}}"#);
        let send = |sig: Option<String>, body: String| {
            let hook = hook.clone();
            async move {
                let mut req = reqwest::Client::new()
                    .post(&hook)
                    .header("x-github-event", "push")
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(sig) = sig {
                    req = req.header("x-hub-signature-256", sig);
                }
                let r = req.send().await.unwrap();
                let code = r.status().as_u16();
                (code, r.json::<Json>().await.unwrap())
            }
        };
        let (code, body) = send(Some(signed("wrong", &payload)), payload.clone()).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not match")
        );
        let (code, _) = send(None, payload.clone()).await;
        assert_eq!(code, 401);
        let other = r#"{"ref":"refs/heads/dev"}"#.to_string();
        let (code, body) = send(Some(signed("s3cret-hook", &other)), other).await;
        assert_eq!((code, &body["accepted"]), (202, &json!(false)), "{body}");
        let (code, body) = call(
            "POST",
            &served.url("/hooks/git/polled"),
            None,
            Some(json!({})),
        )
        .await;
        assert_eq!(
            code, 401,
            "polled has a secret too, and this is unsigned: {body}"
        );

        // A signed push: the hourly watcher looks at once and starts the run for c3.
        let (code, body) = send(Some(signed("s3cret-hook", &payload)), payload.clone()).await;
        assert_eq!((code, &body["accepted"]), (202, &json!(true)), "{body}");
        let body = until(&runs_url, None, Duration::from_secs(30), |b| {
            runs_of(b, "hooked")
                .iter()
                .any(|r| r["status"] == "succeeded")
        })
        .await;
        assert_eq!(runs_of(&body, "hooked").len(), 1, "{body}");
    });
    drop(served);

    // Restarted on the same journal: no second run for c3; a new commit gets its own.
    let served = Served::start(&s, &args);
    rt.block_on(async {
        let c4 = push(
            &work,
            &[("adc/a.yaml", Some("services: []\nroutes: []\n"))],
            "edit a",
        );
        let runs_url = served.url("/api/v1/runs?limit=50");
        let body = until(&runs_url, None, Duration::from_secs(30), |b| {
            runs_of(b, "polled").len() == 2
                && runs_of(b, "polled")
                    .iter()
                    .all(|r| r["status"] == "succeeded")
        })
        .await;
        let newest = &runs_of(&body, "polled")[0];
        let (_, run) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{}", newest["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
        assert_eq!(run["run"]["settings"]["trigger"], format!("git:{c4}"));
        assert_eq!(
            run["run"]["inputs"]["git_changed_files"],
            json!(["adc/a.yaml"])
        );
        // `runs show` ties the run to its commit and does not print the files inline.
        let out = s.run(&["runs", "show", newest["id"].as_str().unwrap()]);
        let (stdout, _) = crate::support::expect_code(&out, 0);
        assert!(stdout.contains(&format!("trigger:  git:{c4}")), "{stdout}");
        assert!(stdout.contains("<2 files>"), "{stdout}");

        // Regression: the branch moved back to c3 (a rollback) started no run — c3 had been
        // claimed once, for good. The claim is on the move now: c3 is applied again.
        let c3 = git(&work, &["rev-parse", "HEAD~1"]);
        git(
            &work,
            &["push", "-q", "-f", "origin", &format!("{c3}:main")],
        );
        let body = until(&runs_url, None, Duration::from_secs(30), |b| {
            runs_of(b, "polled").len() == 3
                && runs_of(b, "polled")
                    .iter()
                    .all(|r| r["status"] == "succeeded")
        })
        .await;
        let newest = &runs_of(&body, "polled")[0];
        let (_, run) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{}", newest["id"].as_str().unwrap())),
            None,
            None,
        )
        .await;
        assert_eq!(run["run"]["settings"]["trigger"], format!("git:{c3}"));
        assert_eq!(
            run["run"]["inputs"]["git_changed_files"],
            json!(["adc/a.yaml"]),
            "what the rollback changed"
        );
    });
}
