//! `meridian serve` under load, in this process: the server of `meridian_server::serve` over a
//! temporary directory with the SQLite journal, its steps answered by the engine's test steps
//! (`test-ok`, plain Rust, no Wasm), so what is measured is the server: scheduler, HTTP API,
//! catalog and journal.
//!
//! 1. **Schedule lateness**: 10, then 100 workflows, each with `cron: "* * * * * *"`, served
//!    for `SERVE_BENCH_SECS` seconds (default 20) each. Lateness is the server's own figure (time from a
//!    tick's due time until the scheduler has claimed it in the journal, just before the run
//!    starts), read from `/metrics` (`meridian_schedule_lateness_recent_seconds`).
//! 2. **API latency** under 50 concurrent clients: `GET /api/v1/runs` with 1,000 runs in the
//!    journal, then `POST /api/v1/runs/{id}/approvals/{step}` on 1,000 runs waiting at a gate
//!    (each approval resumes its run, so the journal is busy meanwhile). Latency is from
//!    sending a request until its whole body is read.
//! 3. **Memory**: a child process (this binary again) reads its `VmRSS` before `serve`, after
//!    `serve` has loaded 1,000 workflows over a journal with 10,000 runs, and after a few
//!    requests that read the whole history; it also times `GET /api/v1/runs` at that size.
//!
//! `cargo bench -p meridian-server --bench serve`. Clients and server share this process's
//! multi-thread runtime and the machine's cores.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use meridian_engine::{AttemptError, Executor, StepRequest, StepResult};
use meridian_protocol::RunStatus;
use meridian_runner::{Launch, Loaded, Runner, StepRunner};
use meridian_server::{Handle, ServerConfig};
use meridian_store::SqliteStore;
use tokio::sync::oneshot;

/// Set in the memory phase's child process: the prepared directory.
const MEMORY_CHILD: &str = "MERIDIAN_SERVE_BENCH_MEMORY_DIR";
const CLIENTS: usize = 50;

/// The engine's test steps, answered in this process.
struct TestSteps;

impl Executor for TestSteps {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        Box::pin(async move {
            let ms = meridian_engine::testkit::sleep_ms(&req);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            meridian_engine::testkit::respond(&req)
        })
    }
}

fn runner(dir: &Path) -> Runner {
    let store = SqliteStore::open(&dir.join("meridian.db")).expect("journal");
    Runner::new(Arc::new(store), StepRunner::Remote(Arc::new(TestSteps)))
}

/// A server over `dir/workflows`; dropping the sender stops it.
async fn start(dir: &Path, runner: Runner) -> (Handle, oneshot::Sender<()>) {
    let config = ServerConfig {
        workflows: dir.join("workflows"),
        listen: "127.0.0.1:0".parse().unwrap(),
        grace: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let handle = meridian_server::serve(config, runner, async move {
        let _ = rx.await;
    })
    .await
    .expect("server starts");
    (handle, tx)
}

async fn stop(handle: Handle, tx: oneshot::Sender<()>) {
    drop(tx);
    handle.wait().await.expect("server ends cleanly");
}

fn write_workflows(dir: &Path, files: impl IntoIterator<Item = (String, String)>) {
    let wf = dir.join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    for (name, text) in files {
        std::fs::write(wf.join(name), text).unwrap();
    }
}

/// Runs `n` runs of `wf` straight through the runner (not the API), `parallel` at a time;
/// returns their ids and final states.
async fn preload(
    runner: &Runner,
    wf: &Loaded,
    n: usize,
    parallel: usize,
) -> Vec<(String, RunStatus)> {
    stream::iter(0..n)
        .map(|_| async {
            let f = runner
                .start(wf, Launch::default())
                .await
                .expect("preloaded run");
            (f.report.run_id.clone(), f.report.status)
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// Quantiles of a sample (nearest rank), as (p50, p99, max).
fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    assert!(!v.is_empty());
    v.sort();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

struct Row {
    what: String,
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `CLIENTS` tasks, each sending its share of `requests` one after another; every answer must
/// have status `expect`. Returns each request's latency.
async fn load<F>(requests: Vec<F>, expect: u16) -> (Vec<Duration>, Duration)
where
    F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + 'static,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let mut shares: Vec<Vec<F>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % CLIENTS].push(r);
    }
    let began = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(share.len());
                for make in share {
                    let t = Instant::now();
                    let resp = make(&client).send().await.expect("request");
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.expect("body");
                    took.push(t.elapsed());
                    assert_eq!(status, expect, "{}", String::from_utf8_lossy(&body));
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all, began.elapsed())
}

/// A metric's value in a Prometheus exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn schedule_lateness(schedules: usize, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let secs: u64 = std::env::var("SERVE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    write_workflows(
        dir.path(),
        (0..schedules).map(|i| {
            (
                format!("tick-{i:03}.yaml"),
                format!(
                    "name: tick-{i:03}\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {{id: a, uses: test-ok, with: {{n: {i}}}}}\n"
                ),
            )
        }),
    );
    let runner = runner(dir.path());
    let journal = runner.journal().clone();
    let began = unix_ms();
    let (handle, tx) = start(dir.path(), runner).await;
    let base = format!("http://{}", handle.addr);
    // Read the metrics half-way between two ticks, about `secs` after the start.
    let scrape_at = (began / 1000 + secs) * 1000 + 500;
    tokio::time::sleep(Duration::from_millis(scrape_at - began)).await;
    let scraped = unix_ms();
    // Ticks (whole seconds) due after the server started and before the metrics were read.
    let due = schedules as u64 * (scraped / 1000 - began / 1000);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop(handle, tx).await;
    let fired = metric(&text, "meridian_schedule_lateness_recent_seconds_count") as usize;
    assert!(
        fired <= meridian_server::metrics::LATE_RECENT,
        "the window holds every tick"
    );
    let q = |quantile: &str| {
        Duration::from_secs_f64(metric(
            &text,
            &format!("meridian_schedule_lateness_recent_seconds{{quantile=\"{quantile}\"}}"),
        ))
    };
    rows.push(Row {
        what: format!("schedule fire lateness, {schedules} schedules every second, {secs} s"),
        n: fired,
        p50: q("0.5"),
        p99: q("0.99"),
        max: q("1"),
    });
    let runs = journal.runs(10_000).unwrap();
    let ok = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count();
    notes.push(format!(
        "{schedules} schedules: {fired} ticks fired of {due} due before the metrics were read ({:.1} s after the start); {} runs journaled, {ok} succeeded",
        (scraped - began) as f64 / 1000.0,
        runs.len()
    ));
}

const PLAIN: &str = "name: plain\nsteps:\n  - {id: a, uses: test-ok, with: {v: 1}}\n  - {id: b, uses: test-ok, needs: a, with: {v: \"${{ steps.a.outputs.echo.v }}\"}}\n";
const GATED: &str = "name: gated\nsteps:\n  - {id: a, uses: test-ok, with: {v: 1}}\n  - id: promote\n    uses: test-ok\n    needs: a\n    approval: {message: \"promote?\"}\n";

async fn api(rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    write_workflows(
        dir.path(),
        [
            ("plain.yaml".to_string(), PLAIN.to_string()),
            ("gated.yaml".to_string(), GATED.to_string()),
        ],
    );
    let runner = runner(dir.path());
    let plain = meridian_runner::load(&dir.path().join("workflows/plain.yaml")).unwrap();
    let gated = meridian_runner::load(&dir.path().join("workflows/gated.yaml")).unwrap();
    let (handle, tx) = start(dir.path(), runner.clone()).await;
    let base = Arc::new(format!("http://{}/api/v1", handle.addr));

    let t = Instant::now();
    let done = preload(&runner, &plain, 1_000, 16).await;
    assert!(done.iter().all(|(_, s)| *s == RunStatus::Succeeded));
    notes.push(format!(
        "preloaded 1,000 2-step runs through the runner in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let first: serde_json::Value = reqwest::get(format!("{base}/runs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["total"], 1_000, "{first}");
    assert_eq!(first["runs"].as_array().unwrap().len(), 50);
    let requests: Vec<_> = (0..2_000)
        .map(|_| {
            let base = base.clone();
            move |c: &reqwest::Client| c.get(format!("{base}/runs"))
        })
        .collect();
    let (took, wall) = load(requests, 200).await;
    let n = took.len();
    let (p50, p99, max) = quantiles(took);
    rows.push(Row {
        what: "GET /api/v1/runs (1,000 runs, page of 50), 50 clients".into(),
        n,
        p50,
        p99,
        max,
    });
    notes.push(format!(
        "GET /runs: {n} requests in {:.2} s ({:.0}/s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    ));

    let t = Instant::now();
    let waiting = preload(&runner, &gated, 1_000, 16).await;
    assert!(
        waiting
            .iter()
            .all(|(_, s)| *s == RunStatus::AwaitingApproval)
    );
    notes.push(format!(
        "preloaded 1,000 runs waiting at an approval gate in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let requests: Vec<_> = waiting
        .iter()
        .map(|(id, _)| {
            let url = format!("{base}/runs/{id}/approvals/promote");
            move |c: &reqwest::Client| {
                c.post(&url)
                    .json(&serde_json::json!({"decision": "approve", "comment": "bench"}))
            }
        })
        .collect();
    let began = Instant::now();
    let (took, wall) = load(requests, 202).await;
    let n = took.len();
    let (p50, p99, max) = quantiles(took);
    rows.push(Row {
        what: "POST /api/v1/runs/{id}/approvals/{step}, 50 clients".into(),
        n,
        p50,
        p99,
        max,
    });
    // Every approved run resumes and ends; wait for them (bounded).
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids: Vec<&String> = waiting.iter().map(|(id, _)| id).collect();
    let succeeded = loop {
        let succeeded = ids
            .iter()
            .filter(|id| {
                runner
                    .journal()
                    .run(id)
                    .is_ok_and(|(_, s)| s.status == RunStatus::Succeeded)
            })
            .count();
        if succeeded == ids.len() || Instant::now() > deadline {
            break succeeded;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    notes.push(format!(
        "approvals: {n} answered in {:.2} s; {succeeded} of {} approved runs had succeeded {:.1} s after the first request",
        wall.as_secs_f64(),
        ids.len(),
        began.elapsed().as_secs_f64()
    ));
    stop(handle, tx).await;
    assert_eq!(succeeded, ids.len(), "every approved run ends");
}

/// A workflow of the memory phase: a daily schedule, an input, three steps.
fn drill_like(i: usize) -> String {
    format!(
        r#"name: wf-{i:04}
description: memory benchmark workflow {i}
on:
  schedule:
    - cron: "0 0 3 * * *"
      inputs: {{region: eu}}
inputs:
  region: {{type: string, default: eu}}
steps:
  - id: check
    uses: test-ok
    with: {{region: "${{{{ inputs.region }}}}", n: {i}}}
  - id: switch
    uses: test-ok
    needs: check
    with: {{from: "${{{{ steps.check.outputs.echo.region }}}}"}}
  - id: verify
    uses: test-ok
    needs: switch
    with: {{ok: true}}
"#
    )
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Prepares 1,000 workflows and 10,000 runs, then measures a server over them in a child.
async fn memory(rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    write_workflows(
        dir.path(),
        (0..1_000).map(|i| (format!("wf-{i:04}.yaml"), drill_like(i))),
    );
    let runner = runner(dir.path());
    let t = Instant::now();
    let mut total = 0;
    for i in 0..1_000 {
        let wf =
            meridian_runner::load(&dir.path().join(format!("workflows/wf-{i:04}.yaml"))).unwrap();
        let done = preload(&runner, &wf, 10, 10).await;
        assert!(done.iter().all(|(_, s)| *s == RunStatus::Succeeded));
        total += done.len();
    }
    drop(runner);
    notes.push(format!(
        "memory: journaled {total} 3-step runs of 1,000 workflows in {:.1} s ({:.1} MB journal)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(dir.path().join("meridian.db"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1e6
    ));
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_CHILD, dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kib = |k: &str| report[k].as_u64().unwrap();
    notes.push(format!(
        "memory: VmRSS {} MiB before serve, {} MiB after serve loaded 1,000 workflows over 10,000 runs (+{} MiB, start-up {} ms), {} MiB after requests reading the whole history",
        mib(kib("before_kib")),
        mib(kib("loaded_kib")),
        mib(kib("loaded_kib").saturating_sub(kib("before_kib"))),
        report["startup_ms"],
        mib(kib("after_requests_kib")),
    ));
    let us = |k: &str| Duration::from_micros(report[k].as_u64().unwrap());
    rows.push(Row {
        what: "GET /api/v1/runs (10,000 runs, page of 50), 1 client".into(),
        n: report["list_n"].as_u64().unwrap() as usize,
        p50: us("list_p50_us"),
        p99: us("list_p99_us"),
        max: us("list_max_us"),
    });
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The child of [`memory`]: one JSON object on stdout.
fn memory_child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let before = vm_rss_kib();
        let t = Instant::now();
        let (handle, tx) = start(dir, runner(dir)).await;
        let startup = t.elapsed();
        let loaded = vm_rss_kib();
        let base = format!("http://{}", handle.addr);
        let client = reqwest::Client::new();
        let workflows: serde_json::Value = client
            .get(format!("{base}/api/v1/workflows"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(workflows["workflows"].as_array().unwrap().len(), 1_000);
        let schedules: serde_json::Value = client
            .get(format!("{base}/api/v1/schedules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(schedules["schedules"].as_array().unwrap().len(), 1_000);
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric(
                &metrics,
                "meridian_runs{state=\"succeeded\",mode=\"apply\"}"
            ) as u64,
            10_000
        );
        let mut took = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let page: serde_json::Value = client
                .get(format!("{base}/api/v1/runs"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            took.push(t.elapsed());
            assert_eq!(page["total"], 10_000);
        }
        let after = vm_rss_kib();
        stop(handle, tx).await;
        let list_n = took.len();
        let (p50, p99, max) = quantiles(took);
        let report = serde_json::json!({
            "before_kib": before,
            "loaded_kib": loaded,
            "after_requests_kib": after,
            "startup_ms": startup.as_millis() as u64,
            "list_n": list_n,
            "list_p50_us": p50.as_micros() as u64,
            "list_p99_us": p99.as_micros() as u64,
            "list_max_us": max.as_micros() as u64,
        });
        println!("{report}");
    });
}

fn main() {
    if let Some(dir) = std::env::var_os(MEMORY_CHILD) {
        return memory_child(Path::new(&dir));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    rt.block_on(async {
        // 10 schedules first: how lateness grows with the number of ticks due at once.
        schedule_lateness(10, &mut rows, &mut notes).await;
        schedule_lateness(100, &mut rows, &mut notes).await;
        api(&mut rows, &mut notes).await;
        memory(&mut rows, &mut notes).await;
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("\nmeridian serve, in-process ({cores} cores available to this process)\n");
    println!(
        "{:<62} {:>6} {:>11} {:>11} {:>11}",
        "what", "n", "p50", "p99", "max"
    );
    for r in &rows {
        println!(
            "{:<62} {:>6} {:>11} {:>11} {:>11}",
            r.what,
            r.n,
            ms(r.p50),
            ms(r.p99),
            ms(r.max)
        );
    }
    println!();
    for n in &notes {
        println!("- {n}");
    }
}
