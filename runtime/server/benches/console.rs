//! The web console's page weight and speed, server-side: `meridian_server::serve` in this
//! process over a temporary SQLite journal, steps answered by the engine's test steps.
//!
//! 1. The run page of a 1,000-step run (chains of 10, every step's output shown): `GET
//!    /runs/{id}` from reading the journal to the last byte, and the rendering alone
//!    (`meridian_console::run_page` over data read once).
//! 2. The overview with 100 workflows, each a drill with a schedule and three finished runs
//!    (so each row reads its last drill's legs).
//!
//! Prints p50 / p99 / max of 30 requests after 3 warm-ups, and the body's size.
//! `cargo bench -p meridian-server --bench console`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use meridian_engine::{AttemptError, Executor, StepRequest, StepResult};
use meridian_runner::{Launch, Runner, StepRunner};
use meridian_server::ServerConfig;
use meridian_store::SqliteStore;
use tokio::sync::oneshot;

const N: usize = 30;

struct TestSteps;

impl Executor for TestSteps {
    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        Box::pin(async move { meridian_engine::testkit::respond(&req) })
    }
}

fn runner(dir: &Path) -> Runner {
    let store = SqliteStore::open(&dir.join("meridian.db")).expect("journal");
    Runner::new(Arc::new(store), StepRunner::Remote(Arc::new(TestSteps)))
}

fn big_workflow() -> String {
    let mut s = String::from("name: big\nsteps:\n");
    for i in 0..1000 {
        s.push_str(&format!(
            "  - {{id: step-{i:04}, uses: test-ok, with: {{region: eu-{i}, n: {i}}}"
        ));
        if i % 10 != 0 {
            s.push_str(&format!(", needs: step-{:04}", i - 1));
        }
        s.push_str("}\n");
    }
    s
}

fn drill_workflow(i: usize) -> String {
    format!(
        "name: wf-{i:03}\ndescription: drill number {i}\ndrill: {{rto: 60s, rpo-bytes: 16MiB}}\non:\n  schedule:\n    - cron: \"0 0 3 * * *\"\nsteps:\n  - {{id: a, uses: test-ok, with: {{rto_ms: {}, rpo_bytes: 0}}}}\n",
        1000 + i
    )
}

/// (p50, p99, max) and the last body's size.
async fn measure(url: &str) -> (Duration, Duration, Duration, usize) {
    let client = reqwest::Client::new();
    let mut took = Vec::new();
    let mut size = 0;
    for i in 0..N + 3 {
        let began = Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body = r.bytes().await.unwrap();
        if i >= 3 {
            took.push(began.elapsed());
        }
        size = body.len();
    }
    let (p50, p99, max) = quantiles(took);
    (p50, p99, max, size)
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(wf.join("big.yaml"), big_workflow()).unwrap();
    for i in 0..100 {
        std::fs::write(wf.join(format!("wf-{i:03}.yaml")), drill_workflow(i)).unwrap();
    }
    let mut rows: Vec<(String, (Duration, Duration, Duration, usize))> = Vec::new();
    rt.block_on(async {
        let runner = runner(dir.path());
        let big = meridian_runner::load(&wf.join("big.yaml")).unwrap();
        let done = runner.start(&big, Launch::default()).await.unwrap();
        let id = done.report.run_id.clone();
        for i in 0..100 {
            let l = meridian_runner::load(&wf.join(format!("wf-{i:03}.yaml"))).unwrap();
            for _ in 0..3 {
                runner.start(&l, Launch::default()).await.unwrap();
            }
        }

        // Rendering alone, over data read once.
        let j = runner.journal();
        let (record, summary) = j.run(&id).unwrap();
        let events = j.events(&id).unwrap();
        let steps: Vec<String> = big
            .workflow
            .steps
            .iter()
            .map(|s| s.id.value.clone())
            .collect();
        let data = meridian_console::RunData {
            record: &record,
            summary: &summary,
            events: &events,
            steps: &steps,
            drill: None,
            drill_note: None,
            now_ms: 0,
            live: false,
        };
        let viewer = meridian_console::Viewer {
            name: "bench".into(),
            roles: "viewer".into(),
            may_approve: false,
            may_operate: false,
            csrf: "0".repeat(64),
            signed_in: false,
        };
        let mut took = Vec::new();
        let mut size = 0;
        for i in 0..N + 3 {
            let began = Instant::now();
            let page = meridian_console::run_page(&data, meridian_console::Shell::Served(&viewer));
            if i >= 3 {
                took.push(began.elapsed());
            }
            size = page.len();
        }
        let (a, b, c) = quantiles(took);
        rows.push((
            format!(
                "render the run page of a 1,000-step run ({} events)",
                events.len()
            ),
            (a, b, c, size),
        ));

        let config = ServerConfig {
            workflows: wf.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = meridian_server::serve(config, runner, async move {
            let _ = rx.await;
        })
        .await
        .expect("server starts");
        let base = format!("http://{}", handle.addr);
        rows.push((
            "GET /runs/{id}, the 1,000-step run".into(),
            measure(&format!("{base}/runs/{id}")).await,
        ));
        rows.push((
            "GET /, the overview of 100 drill workflows (300 runs)".into(),
            measure(&format!("{base}/")).await,
        ));
        rows.push((
            "GET /drills, 100 drill workflows (300 runs)".into(),
            measure(&format!("{base}/drills")).await,
        ));
        drop(tx);
        handle.wait().await.unwrap();
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nweb console, in-process ({cores} cores available to this process), {N} requests each\n"
    );
    println!(
        "{:<62} {:>10} {:>10} {:>10} {:>10}",
        "what", "p50", "p99", "max", "bytes"
    );
    for (what, (a, b, c, size)) in rows {
        println!(
            "{:<62} {:>10} {:>10} {:>10} {:>10}",
            what,
            ms(a),
            ms(b),
            ms(c),
            size
        );
    }
}
