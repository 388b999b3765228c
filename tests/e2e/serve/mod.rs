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
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    pub(crate) fn start(s: &Scratch, args: &[&str]) -> Served {
        Served::spawn(s.cmd(), args)
    }

    /// `meridian serve --listen 127.0.0.1:0 ARGS…` from a prepared command (its environment).
    pub(crate) fn spawn(mut cmd: std::process::Command, args: &[&str]) -> Served {
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM (a graceful stop), then waits at most `within` for the process to exit; its exit
    /// status, `None` if it is still running (it is killed on drop then).
    /// Sends SIGTERM and returns at once (the server drains).
    pub(crate) fn term(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wf/` with the sleeper test guest in it (`uses: ./sleeper.wasm`, `with: {ms: N}`).
pub(crate) fn with_sleeper(s: &Scratch) {
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    std::fs::copy(
        meridian_artifacts::SLEEPER,
        s.path().join("wf/sleeper.wasm"),
    )
    .unwrap();
}

/// Starts a run of `workflow` through the API of `served`; its id.
pub(crate) fn start(served: &Served, workflow: &str) -> String {
    rt().block_on(async {
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": workflow})),
        )
        .await;
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    })
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request with an optional bearer token; (status, JSON body).
pub(crate) async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Json>,
) -> (u16, Json) {
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
pub(crate) async fn until(
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

/// Polls the run at `run_url` (no token) until its status is `status` (at most 30 s).
pub(crate) async fn until_status(run_url: &str, status: &str) -> Json {
    until(run_url, None, Duration::from_secs(30), |b| {
        b["summary"]["status"] == status
    })
    .await
}

/// Received webhook calls: (headers lower-cased, body).
pub(crate) type Calls = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A loopback HTTP receiver that answers 200 to every POST and records it.
pub(crate) async fn receiver() -> (String, Calls) {
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

pub(crate) fn sha(token: &str) -> String {
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

mod api;
mod edits;
mod gates;
pub(crate) mod git;
mod ha;
mod lab;
mod regions;
mod schedules;
mod tls;
