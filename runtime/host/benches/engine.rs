//! Engine overhead per step, end to end through the real engine and sandbox.
//!
//! - `engine/in-process`: the scheduler alone, with a Rust executor that returns at once
//!   (bookkeeping, expression evaluation, events).
//! - `engine/wasm-noop`: a workflow of independent no-op Wasm steps through `WasmExecutor`
//!   (fresh instance per step from the pooled `InstancePre`, call, bookkeeping), no journal.
//! - `engine/wasm-noop-journaled`: the same with the SQLite journal, `synchronous=FULL`: one
//!   durable commit per finished step (the other events go with it).
//! - `workflow/1000-steps`: a 1,000-step no-op Wasm workflow (chains of 10 so the DAG matters).
//!
//! Each iteration runs a workflow of `N` steps; criterion reports time per workflow, and the
//! README divides by `N`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::BoxFuture;
use meridian_engine::{AttemptError, Executor, RunOptions, StepRequest, StepResult};
use meridian_host::WasmExecutor;

fn workflow(n: usize, uses: &str, chain: usize) -> Arc<meridian_model::Workflow> {
    let mut y = String::from("name: bench\nsteps:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: s{i}\n    uses: {uses}\n"));
        if chain > 1 && i % chain != 0 {
            y.push_str(&format!("    needs: s{}\n", i - 1));
        }
    }
    Arc::new(meridian_model::parse("bench.yaml", &y).expect("bench workflow"))
}

struct Instant0;
impl Executor for Instant0 {
    fn execute(&self, _req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        Box::pin(async { Ok(StepResult::default()) })
    }
}

fn opts(max_parallel: usize) -> RunOptions {
    let mut o = RunOptions::new("bench");
    o.max_parallel = max_parallel;
    o
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let exec = Arc::new(WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap());
    let noop = meridian_artifacts::NOOP;

    let mut g = c.benchmark_group("engine");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(30);
    const N: usize = 100;
    g.throughput(Throughput::Elements(N as u64));

    let wf = workflow(N, noop, 1);
    g.bench_function(BenchmarkId::new("in-process", N), |b| {
        b.to_async(&rt).iter(|| async {
            let r = meridian_engine::run(wf.clone(), Arc::new(Instant0), opts(1))
                .await
                .unwrap();
            assert_eq!(r.status, meridian_engine::RunStatus::Succeeded);
        })
    });

    // Warm: the component is compiled (and cached) before measuring.
    rt.block_on(async {
        meridian_engine::run(wf.clone(), exec.clone(), opts(1))
            .await
            .unwrap()
    });
    g.bench_function(BenchmarkId::new("wasm-noop", N), |b| {
        b.to_async(&rt).iter(|| async {
            let r = meridian_engine::run(wf.clone(), exec.clone(), opts(1))
                .await
                .unwrap();
            assert_eq!(r.status, meridian_engine::RunStatus::Succeeded);
        })
    });

    // The same on a single-threaded runtime: no cross-thread wake-ups between the scheduler and
    // the leg tasks.
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function(BenchmarkId::new("wasm-noop-current-thread", N), |b| {
        b.to_async(&rt1).iter(|| async {
            let r = meridian_engine::run(wf.clone(), exec.clone(), opts(1))
                .await
                .unwrap();
            assert_eq!(r.status, meridian_engine::RunStatus::Succeeded);
        })
    });

    let state = tempfile::tempdir().unwrap();
    let store = meridian_store::SqliteStore::open(&state.path().join("m.db")).unwrap();
    let mut n = 0u64;
    g.bench_function(BenchmarkId::new("wasm-noop-journaled", N), |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let id = format!("bench-{n}");
            store
                .create_run(&meridian_store::RunRecord {
                    id: id.clone(),
                    workflow: "bench".into(),
                    workflow_path: "bench.yaml".into(),
                    workflow_sha256: String::new(),
                    mode: meridian_engine::Mode::Apply,
                    inputs: serde_json::json!({}),
                    settings: Default::default(),
                })
                .unwrap();
            let mut o = opts(1);
            o.run_id = id.clone();
            o.sink = Some(Arc::new(store.journal(&id).unwrap()));
            let wf = wf.clone();
            let exec = exec.clone();
            async move {
                let r = meridian_engine::run(wf, exec, o).await.unwrap();
                assert_eq!(r.status, meridian_engine::RunStatus::Succeeded);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("workflow");
    g.measurement_time(Duration::from_secs(10));
    g.sample_size(10);
    let big = workflow(1000, noop, 10);
    g.bench_function("1000-steps", |b| {
        b.to_async(&rt).iter(|| async {
            let r = meridian_engine::run(big.clone(), exec.clone(), opts(2))
                .await
                .unwrap();
            assert_eq!(r.status, meridian_engine::RunStatus::Succeeded);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
