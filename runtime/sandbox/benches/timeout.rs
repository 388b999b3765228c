//! How late a step's timeout ends it: the distribution of (time the call took − its timeout)
//! for a guest that loops forever, on an idle machine and next to 16 CPU-burning threads.
//!
//! The deadline is an instant on the monotonic clock checked at every epoch tick (2 ms), so a
//! step should end within about a tick of it however late the ticker thread wakes; counting
//! ticks instead let a 4 s timeout end 2.3–2.7 s late under load.
//!
//! Run: `cargo bench -p meridian-sandbox --bench timeout` (`-- --runs N --timeout-ms T` to
//! change the 20 runs of 1,000 ms per case).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meridian_sandbox::{Call, Capabilities, Invocation, Mode, Sandbox, SandboxConfig, StepFailure};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Threads spinning until dropped.
struct Burners(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Burners {
    fn start(n: usize) -> Burners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Burners(stop, threads)
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse for it.
    let runs = arg("--runs", 20) as usize;
    let timeout = Duration::from_millis(arg("--timeout-ms", 1_000));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let component = sandbox
        .load_file(std::path::Path::new(meridian_artifacts::LOOP_FOREVER), None)
        .expect("load loop-forever");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("timeout lateness: {runs} runs of a {timeout:?} timeout per case, {cores} cores");
    for (case, burners) in [("idle", 0), ("16 CPU-burning threads", 16)] {
        let _load = Burners::start(burners);
        let mut late: Vec<Duration> = (0..runs)
            .map(|i| {
                let call = Call {
                    timeout,
                    ..Call::run(
                        Invocation {
                            run_id: "bench".into(),
                            step_id: "loop".into(),
                            attempt: i as u32 + 1,
                            idempotency_key: format!("bench/loop/{i}"),
                            mode: Mode::Apply,
                            input: serde_json::json!({}),
                        },
                        Capabilities::default(),
                    )
                };
                let started = Instant::now();
                let result = rt.block_on(sandbox.invoke(&component, call));
                let took = started.elapsed();
                assert_eq!(result.unwrap_err(), StepFailure::Timeout(timeout));
                took.saturating_sub(timeout)
            })
            .collect();
        late.sort();
        println!(
            "  {case:<24} late by  p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
            percentile(&late, 0.5),
            percentile(&late, 0.9),
            percentile(&late, 0.99),
            late[late.len() - 1],
        );
    }
}
