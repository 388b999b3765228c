//! HTTP grants as a workflow writes them, through the real engine and sandbox: what validation
//! accepts is what a run allows.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use meridian_engine::{RunOptions, RunStatus};
use meridian_host::WasmExecutor;

/// Answers every connection on 127.0.0.1 with `200 ok`, on a thread that lives as long as the
/// test process (the listener is never dropped, so the port is never reused under the test).
fn serve_ok() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

/// Regression: `*://host` passed validation, and the sandbox then refused it on every run
/// ("only http and https are supported").
#[tokio::test]
async fn a_wildcard_scheme_grant_that_validates_also_runs() {
    let port = serve_ok();
    let yaml = format!(
        r#"
name: t
steps:
  - id: probe
    uses: http-probe
    with: {{url: "http://127.0.0.1:{port}/health"}}
    grants: {{http: ["*://127.0.0.1:{port}"]}}
"#
    );
    let wf = Arc::new(meridian_model::parse("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}")));
    let cache = tempfile::tempdir().unwrap();
    let exec = Arc::new(WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap());
    let report = meridian_engine::run(wf, exec, RunOptions::new("r1"))
        .await
        .unwrap();
    assert_eq!(
        report.status,
        RunStatus::Succeeded,
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
}
