//! The scheduler's own cost per step, with a Rust executor that returns at once (no Wasm, no
//! journal): what is left is DAG bookkeeping, expression contexts, leg tasks and reports.
//!
//! - `sequential/N`: a chain of `N` steps, each needing the one before: one step ready at a time,
//!   so any per-finished-step scan of the whole workflow shows as time per step growing with `N`.
//! - `parallel/N`: `N` independent steps, 4 at a time.
//!
//! Criterion reports time per workflow and, through the throughput, steps per second; flat
//! steps per second from 100 to 10,000 steps means per-step cost does not grow with the run.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::BoxFuture;
use meridian_engine::{AttemptError, Executor, RunOptions, RunStatus, StepRequest, StepResult};

fn workflow(n: usize, chained: bool) -> Arc<meridian_model::Workflow> {
    let mut y = String::from("name: bench\nsteps:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: s{i}\n    uses: noop\n"));
        if chained && i > 0 {
            y.push_str(&format!("    needs: s{}\n", i - 1));
        }
    }
    Arc::new(meridian_model::parse("bench.yaml", &y).expect("bench workflow"))
}

struct Noop;
impl Executor for Noop {
    fn execute(&self, _req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
        Box::pin(async { Ok(StepResult::default()) })
    }
}

fn bench(c: &mut Criterion) {
    // One thread: the scheduler's CPU cost without cross-thread wake-ups (and kinder to a shared
    // machine).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut opts = RunOptions::new("bench");
    opts.max_parallel = 4;
    for (name, chained) in [("sequential", true), ("parallel", false)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(10));
        for n in [100, 1_000, 10_000] {
            let wf = workflow(n, chained);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.to_async(&rt).iter(|| async {
                    let r = meridian_engine::run(wf.clone(), Arc::new(Noop), opts.clone())
                        .await
                        .unwrap();
                    assert_eq!(r.status, RunStatus::Succeeded);
                    assert_eq!(r.steps.len(), n);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
