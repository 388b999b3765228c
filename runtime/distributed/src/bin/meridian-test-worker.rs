//! A worker process running the fake steps of `meridian_distributed::testkit`, for the crate's
//! integration tests (they start several and SIGKILL them mid-task). Not for production use.
//!
//! ```text
//! meridian-test-worker --dsn DSN --id NAME --key HEX [--record-dsn DSN] [--lease-ms N]
//!                      [--heartbeat-ms N] [--poll-ms N] [--max-concurrent N]
//! ```
//! Exits 2 on a usage error, 1 when the worker fails.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use meridian_distributed::testkit::FakeExec;
use meridian_distributed::{TaskKey, WorkerOptions, run_worker};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts: HashMap<&str, &str> = HashMap::new();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k.starts_with("--") => {
                opts.insert(&k[2..], v);
            }
            _ => {
                eprintln!("usage: meridian-test-worker --dsn DSN --id NAME --key HEX [...]");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(dsn), Some(id), Some(key)) = (opts.get("dsn"), opts.get("id"), opts.get("key"))
    else {
        eprintln!("meridian-test-worker: --dsn, --id and --key are required");
        return ExitCode::from(2);
    };
    let key = match TaskKey::from_hex(key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("meridian-test-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let ms = |name: &str, default: u64| {
        Duration::from_millis(
            opts.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    };
    let wopts = WorkerOptions {
        lease: ms("lease-ms", 2000),
        heartbeat: ms("heartbeat-ms", 400),
        poll: ms("poll-ms", 200),
        max_concurrent: opts
            .get("max-concurrent")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        ..Default::default()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meridian-test-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let record = opts.get("record-dsn").copied();
    let res = rt.block_on(async move {
        let exec = FakeExec::new(id, record).await?;
        run_worker(dsn, id, Arc::new(exec), key, wopts).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian-test-worker {id}: {e}");
            ExitCode::FAILURE
        }
    }
}
