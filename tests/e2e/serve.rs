//! `meridian serve` through the binary: the API with roles and approvals, idempotent starts,
//! the event stream, webhooks (each once, signed), schedules (fire, overlap, pause after
//! failures), reloads that keep the previous version, and a restart that resumes a run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::support::Scratch;

/// A `meridian serve` process on a free loopback port; killed and reaped on drop.
struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    fn start(s: &Scratch, args: &[&str]) -> Served {
        Served::spawn(s.cmd(), args)
    }

    /// `meridian serve --listen 127.0.0.1:0 ARGS…` from a prepared command (its environment).
    fn spawn(mut cmd: std::process::Command, args: &[&str]) -> Served {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("meridian: serving ") {
                    let _ = tx.send(addr.to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Served { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request with an optional bearer token; (status, JSON body).
async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Json>) -> (u16, Json) {
    call_with(method, url, token, body, &[]).await
}

async fn call_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Json>,
    headers: &[(&str, &str)],
) -> (u16, Json) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

/// Polls `url` until `done` holds (at most `limit`).
async fn until(
    url: &str,
    token: Option<&str>,
    limit: Duration,
    done: impl Fn(&Json) -> bool,
) -> Json {
    let start = Instant::now();
    loop {
        let (_, body) = call("GET", url, token, None).await;
        if done(&body) {
            return body;
        }
        assert!(start.elapsed() < limit, "{url} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Received webhook calls: (headers lower-cased, body).
type Calls = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A loopback HTTP receiver that answers 200 to every POST and records it.
async fn receiver() -> (String, Calls) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let calls: Calls = Arc::default();
    let rec = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    rec.lock().unwrap().push((headers, body));
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, calls)
}

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const GATED: &str = r#"
name: gated
steps:
  - id: before
    uses: hello
  - id: promote
    uses: hello
    needs: before
    approval: {message: "promote the standby?"}
"#;

#[test]
fn the_api_starts_streams_and_an_approver_approves() {
    let s = Scratch::new();
    let rt = rt();
    // The workflow's own webhook, for its successes only, besides the server's.
    let (own_hook, own_calls) = rt.block_on(receiver());
    s.write(
        "wf/gated.yaml",
        &format!("{GATED}notify:\n  - {{url: \"{own_hook}\", events: [run.succeeded]}}\n"),
    );
    s.write(
        "tokens.toml",
        &format!(
            "[[token]]\nname = \"vic\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"olga\"\nroles = [\"operator\"]\nsha256 = \"{}\"\n\n[[token]]\nname = \"alice\"\nroles = [\"approver\"]\nsha256 = \"{}\"\n",
            sha("viewer-token"),
            sha("operator-token"),
            sha("approver-token")
        ),
    );
    let (hook, calls) = rt.block_on(receiver());
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"wf\"\ntokens = \"tokens.toml\"\n\n[[notify]]\nurl = \"{hook}\"\nsecret-env = \"HOOK_KEY\"\n"
        ),
    );
    // The HMAC key comes from the server's environment.
    let mut cmd = s.cmd();
    cmd.env("HOOK_KEY", "k3y");
    let served = Served::spawn(cmd, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let (code, body) = call("GET", &served.url("/api/v1/runs"), None, None).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
        let (code, _) = call("GET", &served.url("/api/v1/runs"), Some("nope"), None).await;
        assert_eq!(code, 401);

        // A viewer cannot start a run.
        let start = json!({"workflow": "gated"});
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            Some("viewer-token"),
            Some(start.clone()),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator")
        );

        // The same Idempotency-Key twice starts one run.
        let key = [("Idempotency-Key", "deploy-42")];
        let (code, first) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            Some("operator-token"),
            Some(start.clone()),
            &key,
        )
        .await;
        assert_eq!(code, 202, "{first}");
        let (code, second) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            Some("operator-token"),
            Some(start),
            &key,
        )
        .await;
        assert_eq!(code, 202);
        assert_eq!(first["id"], second["id"]);
        let id = first["id"].as_str().unwrap().to_string();

        let run_url = served.url(&format!("/api/v1/runs/{id}"));
        let run = until(
            &run_url,
            Some("viewer-token"),
            Duration::from_secs(60),
            |b| b["summary"]["status"] == "awaiting-approval",
        )
        .await;
        assert_eq!(run["waiting_for_approval"], json!(["promote"]));
        let (_, list) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=gated"),
            Some("viewer-token"),
            None,
        )
        .await;
        assert_eq!(list["total"], 1, "{list}");

        // Only an approver approves; the gate must be the one waiting.
        let approve = json!({"decision": "approve", "comment": "go"});
        let gate = served.url(&format!("/api/v1/runs/{id}/approvals/promote"));
        let (code, _) = call("POST", &gate, Some("viewer-token"), Some(approve.clone())).await;
        assert_eq!(code, 403);
        let (code, _) = call("POST", &gate, Some("operator-token"), Some(approve.clone())).await;
        assert_eq!(code, 403);
        let wrong = served.url(&format!("/api/v1/runs/{id}/approvals/before"));
        let (code, body) = call(
            "POST",
            &wrong,
            Some("approver-token"),
            Some(approve.clone()),
        )
        .await;
        assert_eq!(code, 409, "{body}");
        let (code, body) = call("POST", &gate, Some("approver-token"), Some(approve)).await;
        assert_eq!(code, 202, "{body}");

        // The stream replays the journal and ends with the run.
        let stream = reqwest::Client::new()
            .get(served.url(&format!("/api/v1/runs/{id}/stream")))
            .bearer_auth("viewer-token")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(stream.contains("event: approval-granted"), "{stream}");
        assert!(stream.contains("event: end\ndata: succeeded"), "{stream}");

        let (_, run) = call("GET", &run_url, Some("viewer-token"), None).await;
        assert_eq!(run["summary"]["status"], "succeeded");

        // Webhooks: each notification once, signed with the key.
        let start = Instant::now();
        loop {
            let kinds: Vec<String> = calls
                .lock()
                .unwrap()
                .iter()
                .map(|(_, b)| {
                    serde_json::from_str::<Json>(b).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            if kinds.contains(&"run.succeeded".to_string()) {
                let mut sorted = kinds.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    ["run.awaiting-approval", "run.started", "run.succeeded"],
                    "{kinds:?}"
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "webhooks: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Deliveries go out on their own tasks: wait for the workflow's hook too.
        let start = Instant::now();
        while own_calls.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let own: Vec<String> = own_calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        assert_eq!(own.len(), 1, "{own:?}");
        assert!(own[0].contains("\"kind\":\"run.succeeded\""), "{own:?}");
        for (headers, body) in calls.lock().unwrap().iter() {
            let sig = headers
                .iter()
                .find(|(k, _)| k == "x-meridian-signature")
                .map(|(_, v)| v.clone());
            assert_eq!(
                sig,
                Some(meridian_server::notify::signature(b"k3y", body.as_bytes()))
            );
        }
    });
    // The approval is journaled with who gave it; the CLI reads the served run.
    let (list, _) = crate::support::expect_code(&s.run(&["--json", "runs", "list"]), 0);
    let id = serde_json::from_str::<Json>(&list).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, _) = crate::support::expect_code(&s.run(&["runs", "show", &id]), 0);
    assert!(out.contains("promote: approved (alice: go)"), "{out}");
    drop(served);
}

#[test]
fn schedules_fire_skip_overlaps_and_pause_after_failures() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join("wf/sleeper.wasm"),
    )
    .unwrap();
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    // Each run takes 2.5 s and a tick comes every second: overlap skip lets one run at a time.
    s.write(
        "wf/slow.yaml",
        "name: slow\non:\n  schedule:\n    - {cron: \"* * * * * *\", overlap: skip}\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 2500}}\n",
    );
    // Times out every time: paused after two failures.
    s.write(
        "wf/broken.yaml",
        "name: broken\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: ./sleeper.wasm, timeout: 50ms, with: {ms: 5000}}\n",
    );
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\npause-after-failures = 2\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let rt = rt();
    rt.block_on(async {
        let url = served.url("/api/v1/schedules");
        let paused = until(&url, None, Duration::from_secs(60), |b| {
            b["schedules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "broken#0" && s["paused"].is_string())
        })
        .await;
        let broken = paused["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "broken#0")
            .unwrap()
            .clone();
        assert!(
            broken["paused"]
                .as_str()
                .unwrap()
                .contains("2 consecutive failed runs"),
            "{broken}"
        );
        assert_eq!(broken["next_fire"], Json::Null);
        // Let more ticks pass: a paused schedule stays paused and starts nothing.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let (_, runs) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=broken"),
            None,
            None,
        )
        .await;
        assert_eq!(runs["total"], 2, "{runs}");

        let (_, runs) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=tick&status=succeeded"),
            None,
            None,
        )
        .await;
        assert!(runs["total"].as_u64().unwrap() >= 3, "{runs}");

        let (_, all) = call("GET", &url, None, None).await;
        let slow = all["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "slow#0")
            .unwrap()
            .clone();
        let (_, runs) = call("GET", &served.url("/api/v1/runs?workflow=slow"), None, None).await;
        let ran = runs["runs"].as_array().unwrap();
        let overlapping = ran.iter().filter(|r| r["status"] == "running").count();
        assert!(overlapping <= 1, "{runs}");
        assert!(!ran.is_empty());
        // Over ~5 s of ticks, 2.5 s runs one at a time: a few runs, not one per tick.
        assert!(ran.len() <= 3, "{runs}");
        assert!(
            slow["last_result"]
                .as_str()
                .unwrap_or_default()
                .contains("skipped")
                || ran.len() >= 2,
            "{slow}"
        );

        // Resume it: it fires again.
        let (code, info) = call(
            "POST",
            &served.url("/api/v1/schedules/broken%230/resume"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{info}");
        assert_eq!(info["paused"], Json::Null);

        let (code, metrics) = call("GET", &served.url("/metrics"), None, None).await;
        assert_eq!(code, 200);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(
            metrics.contains("meridian_schedule_lateness_seconds_count"),
            "{metrics}"
        );
        assert!(
            metrics.contains("meridian_runs{state=\"failed\"}"),
            "{metrics}"
        );
    });
    let log = served.log();
    drop(served);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn an_invalid_edit_keeps_the_previous_version_and_a_restart_resumes() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join("wf/sleeper.wasm"),
    )
    .unwrap();
    let slow = "name: slow\nsteps:\n  - {id: a, uses: ./sleeper.wasm, with: {ms: 1500}}\n  - {id: b, uses: ./sleeper.wasm, needs: a, with: {ms: 1500}}\n";
    s.write("wf/slow.yaml", slow);
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\nreload-interval = \"100ms\"\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let rt = rt();
    let id = rt.block_on(async {
        // A broken edit: reported with file:line:col, the previous version serves on.
        s.write("wf/slow.yaml", &slow.replace("needs: a", "needz: a"));
        let wfs = until(
            &served.url("/api/v1/workflows"),
            None,
            Duration::from_secs(20),
            |b| b["workflows"][0]["valid"] == false,
        )
        .await;
        let err = wfs["workflows"][0]["error"].as_str().unwrap();
        assert!(err.contains("slow.yaml:4:"), "{err}");
        assert_eq!(wfs["workflows"][0]["name"], "slow");
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "slow"})),
        )
        .await;
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    });
    // Kill the server while the run is in step a or b.
    std::thread::sleep(Duration::from_millis(800));
    drop(served);
    // Restore the file (a resume refuses a changed workflow), then start again.
    s.write("wf/slow.yaml", slow);
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let run = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(60),
            |b| b["summary"]["status"] != "running",
        )
        .await;
        assert_eq!(run["summary"]["status"], "succeeded", "{run}");
    });
    assert!(
        served.log().contains("resuming an interrupted run"),
        "{}",
        served.log()
    );
}

#[test]
fn without_tokens_it_refuses_to_listen_beyond_loopback() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    let o = s.run(&["serve", "--workflows", "wf", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without a tokens file"), "{err}");
}

/// Two servers on one PostgreSQL journal, a schedule every second: each tick is claimed by one
/// server and starts one run; SIGKILLing one server (then the other, after a restart) leaves
/// no tick unfired for longer than the takeover, which needs no lease: the survivor claims the
/// very next tick.
#[test]
fn two_servers_on_one_postgres_fire_each_tick_once() {
    use crate::distributed::{Workers, store};
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    let worker = db
        .cmd(&s)
        .args(["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Workers(vec![worker]);
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let b = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(5));
    drop(a); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(3));
    drop(b); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    drop(a);

    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    let ticks: Vec<i64> =
        q("SELECT tick FROM meridian.ticks WHERE schedule = 'tick#0' ORDER BY tick")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    let servers: i64 = q("SELECT count(DISTINCT claimed_by) FROM meridian.ticks")
        .parse()
        .unwrap();
    let runs: usize = q("SELECT count(*) FROM meridian.runs WHERE workflow = 'tick'")
        .parse()
        .unwrap();
    assert!(
        ticks.len() >= 12,
        "only {} ticks fired in ~18 s: {ticks:?}",
        ticks.len()
    );
    assert!(servers >= 2, "one server fired every tick");
    // A claimed tick starts one run; a server killed between its claim and the run's record
    // loses that one tick (two kills: at most two).
    assert!(
        runs <= ticks.len() && runs + 2 >= ticks.len(),
        "{runs} runs for {} ticks",
        ticks.len()
    );
    // Takeover: the largest gap between consecutive fired ticks.
    let gap = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap <= 3_000,
        "a gap of {gap} ms between fired ticks: {ticks:?}"
    );
    eprintln!(
        "takeover: largest gap between fired ticks {gap} ms ({} ticks, {runs} runs)",
        ticks.len()
    );
}

/// `--server URL`: an operator lists, shows, triggers and approves from another machine.
#[test]
fn the_cli_talks_to_a_server() {
    let s = Scratch::new();
    // A schedule that does not fire during the test: only `trigger` starts runs.
    s.write(
        "wf/gated.yaml",
        &GATED.replace(
            "name: gated\n",
            "name: gated\non:\n  schedule:\n    - cron: \"0 0 1 1 *\"\n",
        ),
    );
    s.write(
        "tokens.toml",
        &format!(
            "[[token]]\nname = \"olga\"\nroles = [\"operator\"]\nsha256 = \"{}\"\n\n[[token]]\nname = \"alice\"\nroles = [\"approver\"]\nsha256 = \"{}\"\n",
            sha("operator-token"),
            sha("approver-token")
        ),
    );
    let served = Served::start(&s, &["--workflows", "wf", "--tokens", "tokens.toml"]);
    // Another "machine": a fresh state dir that holds nothing.
    let remote = |token: &str, args: &[&str]| {
        s.cmd()
            .env("MERIDIAN_STATE_DIR", s.path().join("laptop"))
            .env("MERIDIAN_SERVER", &served.base)
            .env("MERIDIAN_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    };
    let (out, _) =
        crate::support::expect_code(&remote("operator-token", &["trigger", "gated#0"]), 0);
    assert!(out.contains("fired schedule gated#0"), "{out}");
    let start = Instant::now();
    let id = loop {
        let (out, _) =
            crate::support::expect_code(&remote("operator-token", &["--json", "runs", "list"]), 0);
        let runs: Json = serde_json::from_str(&out).unwrap();
        if runs[0]["status"] == "awaiting-approval" {
            break runs[0]["id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The operator may not approve; the server's reason is shown.
    let (_, err) =
        crate::support::expect_code(&remote("operator-token", &["approve", &id, "promote"]), 1);
    assert!(err.contains("403") && err.contains("approver"), "{err}");
    let (out, _) = crate::support::expect_code(
        &remote(
            "approver-token",
            &["approve", &id, "promote", "--comment", "window open"],
        ),
        0,
    );
    assert!(out.contains("approved step `promote`"), "{out}");
    let start = Instant::now();
    loop {
        let (out, _) =
            crate::support::expect_code(&remote("approver-token", &["runs", "show", &id]), 0);
        if out.contains("status:   succeeded") {
            assert!(
                out.contains("promote: approved (alice: window open)"),
                "{out}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without --server, approve says what to type instead.
    let (_, err) = crate::support::expect_code(&s.run(&["approve", &id, "promote"]), 2);
    assert!(err.contains("--server") && err.contains("resume"), "{err}");
}

/// HTTPS with a certificate the test makes (a CA and a leaf for 127.0.0.1, by `openssl`):
/// a client that trusts the CA gets answers; one that does not, and plain HTTP, get none.
#[test]
fn tls_with_a_generated_certificate() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    s.write(
        "leaf.ext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=meridian test CA",
            ][..],
        ]
        .concat(),
        [
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ][..],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    ] {
        let o = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(s.path())
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let served = Served::start(
        &s,
        &[
            "--workflows",
            "wf",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ],
    );
    assert!(
        served.base.starts_with("https://127.0.0.1:"),
        "{}",
        served.base
    );
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(s.path().join("ca.pem")).unwrap()).unwrap();
    rt().block_on(async {
        let trusting = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let r = trusting
            .get(served.url("/api/v1/workflows"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let stranger = reqwest::Client::new();
        assert!(stranger.get(served.url("/healthz")).send().await.is_err());
        let plain = served.url("/healthz").replace("https://", "http://");
        let timeout = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        match timeout.get(&plain).send().await {
            Err(_) => {}
            Ok(r) => panic!("plain HTTP got an answer: {}", r.status()),
        }
    });
}

/// The third use of Meridian, end to end: the packaged `dr-drill` served as it ships (its
/// inputs from the lab's inputs file named in the server config, not edited), fired through
/// its schedule against the lab, and its figures in the drill history.
#[test]
fn the_packaged_dr_drill_runs_on_its_schedule_against_the_lab() {
    use crate::workflows::{EU, LabGuard, US};
    let s = Scratch::new();
    let lab = LabGuard::up(&s);
    assert_eq!(lab.dns(), [EU]);
    let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"{}\"\nsecrets-file = \"{}\"\n\n[workflow.dr-drill]\ninputs-file = \"{}\"\n",
            packaged.display(),
            lab.secrets(),
            lab.inputs()
        ),
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    rt().block_on(async {
        let (_, wfs) = call("GET", &served.url("/api/v1/workflows"), None, None).await;
        for w in wfs["workflows"].as_array().unwrap() {
            assert_eq!(w["valid"], true, "{w}");
        }
        let (_, scheds) = call("GET", &served.url("/api/v1/schedules"), None, None).await;
        let drill = scheds["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "dr-drill#0")
            .unwrap()
            .clone();
        assert_eq!(drill["error"], Json::Null, "{drill}");
        assert!(drill["next_fire"].is_string(), "{drill}");

        let (code, fired) = call(
            "POST",
            &served.url("/api/v1/schedules/dr-drill%230/trigger"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 202, "{fired}");
        let id = fired["last_run"].as_str().unwrap().to_string();
        let run = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(180),
            |b| b["summary"]["status"] != "running",
        )
        .await;
        assert_eq!(
            run["summary"]["status"],
            "succeeded",
            "{run}\n{}",
            served.log()
        );
        assert_eq!(run["run"]["settings"]["trigger"], "schedule:dr-drill#0");

        let (_, drills) = call(
            "GET",
            &served.url("/api/v1/drills?workflow=dr-drill"),
            None,
            None,
        )
        .await;
        let d = &drills["drills"][0];
        assert_eq!(d["run"], id.as_str(), "{drills}");
        let rto = d["drill"]["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "RTO")
            .unwrap()
            .clone();
        assert!(rto["achieved"].as_f64().unwrap() > 0.0, "{rto}");
        assert_eq!(rto["target"], 60_000.0);
        eprintln!("served dr-drill: {}", d["drill"]);
    });
    assert_eq!(lab.dns(), [US]);
    drop(served);
}
