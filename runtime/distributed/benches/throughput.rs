//! Steps per second through the PostgreSQL queue, with no-op fake steps.
//!
//! - `queue_noop/N`: `PgQueue::execute` with 64 attempts in flight, N workers (tokio tasks of this
//!   process, each with its own connection, up to 16 tasks at once each). Per step: a queue
//!   commit, a claim commit, a result commit and a result read.
//! - `engine_journaled/4`: a 100-step workflow of independent no-op steps run by the engine with
//!   the PostgreSQL journal as sink (one more commit per finished step, legs finishing together
//!   share it), 4 workers.
//! - `journal_append/{unfenced,fenced}`: one leg's commit through a run's sink, one after
//!   another: as `meridian run` writes (unfenced), and as a server or `meridian resume` writes,
//!   checking in the same statement that its owner still holds the run's lease (`FOR SHARE` on
//!   the lease row). The difference is what fencing costs a commit.
//!
//! Everything — PostgreSQL (the lab's settings: `fsync=off`), coordinator and workers — shares the
//! machine's cores, so more workers mostly add contention on a small machine; the numbers say what
//! the protocol costs, not how a fleet scales.
//!
//! `cargo bench -p meridian-distributed --bench throughput` (`MERIDIAN_BENCH_CONCURRENCY=N` sets
//! the tasks each worker runs at once, default 16).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use meridian_distributed::testkit::FakeExec;
use meridian_distributed::{PgJournal, PgQueue, QueueOptions, TaskKey, WorkerOptions, run_worker};
use meridian_engine::{
    Action, ComponentRef, Executor, Mode, ResolvedGrants, RunOptions, RunStatus, StepRequest,
};
use meridian_lab::{PgCluster, free_port};
use meridian_model::Limits;
use meridian_protocol::{Event, Outcome};
use meridian_store::{Journal, RunRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

static SEQ: AtomicU64 = AtomicU64::new(0);

fn noop(key: String) -> StepRequest {
    StepRequest {
        run_id: "bench".into(),
        step_id: key.clone(),
        uses: ComponentRef::builtin("test-noop"),
        action: Action::Run,
        mode: Mode::Apply,
        input: json!({}),
        attempt: 1,
        idempotency_key: key,
        grants: ResolvedGrants::default(),
        limits: Limits::default(),
        timeout: Duration::from_secs(60),
        mask: vec![],
        log: Default::default(),
    }
}

struct Workers {
    shutdown: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_workers(dsn: &str, key: &TaskKey, n: usize) -> Workers {
    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for i in 0..n {
        let exec = Arc::new(FakeExec::new(&format!("b{i}"), None).await.unwrap());
        let opts = WorkerOptions {
            max_concurrent: std::env::var("MERIDIAN_BENCH_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(16),
            shutdown: shutdown.clone(),
            ..Default::default()
        };
        let (dsn, key) = (dsn.to_string(), key.clone());
        handles.push(tokio::spawn(async move {
            run_worker(&dsn, &format!("b{i}"), exec, key, opts)
                .await
                .unwrap();
        }));
    }
    Workers { shutdown, handles }
}

impl Workers {
    async fn stop(self) {
        self.shutdown.cancel();
        for h in self.handles {
            let _ = h.await;
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = PgCluster::start_primary(&dir.path().join("pg"), free_port()).expect("PostgreSQL");
    pg.psql("CREATE DATABASE meridian;").unwrap();
    let dsn = pg.dsn("meridian");
    let key = TaskKey::generate();
    let queue = rt
        .block_on(PgQueue::connect(&dsn, key.clone(), QueueOptions::default()))
        .unwrap();

    let mut group = c.benchmark_group("queue_noop");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    for n in [1, 2, 4] {
        let workers = rt.block_on(start_workers(&dsn, &key, n));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    futures::stream::iter(0..iters)
                        .map(|_| {
                            let k = format!("bench/{}", SEQ.fetch_add(1, Ordering::Relaxed));
                            queue.execute(noop(k))
                        })
                        .buffer_unordered(64)
                        .for_each(|r| async move {
                            r.expect("no-op step");
                        })
                        .await;
                    start.elapsed()
                })
            })
        });
        rt.block_on(workers.stop());
    }
    group.finish();

    const STEPS: usize = 100;
    let mut yaml = String::from("name: bench\nsteps:\n");
    for i in 0..STEPS {
        yaml.push_str(&format!("  - id: s{i}\n    uses: test-noop\n"));
    }
    let wf = Arc::new(meridian_model::parse("bench.yaml", &yaml).unwrap());
    let journal = PgJournal::open(&dsn).unwrap();
    let mut group = c.benchmark_group("engine_journaled");
    group
        .throughput(Throughput::Elements(STEPS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    let workers = rt.block_on(start_workers(&dsn, &key, 4));
    group.bench_function(BenchmarkId::from_parameter(4), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let id = format!("run-{}", SEQ.fetch_add(1, Ordering::Relaxed));
                    journal.create_run(&record(&id)).unwrap();
                    let mut opts = RunOptions::new(id.clone());
                    opts.max_parallel = 64;
                    opts.secrets = BTreeMap::new();
                    opts.sink = Some(journal.sink(&id).unwrap());
                    let start = Instant::now();
                    let r = meridian_engine::run(wf.clone(), Arc::new(queue.clone()), opts)
                        .await
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(r.status, RunStatus::Succeeded);
                }
                total
            })
        })
    });
    rt.block_on(workers.stop());
    group.finish();

    let mut group = c.benchmark_group("journal_append");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    for fenced in [false, true] {
        let id = format!("append-{fenced}");
        journal.create_run(&record(&id)).unwrap();
        let sink = if fenced {
            assert!(
                journal
                    .lease_run(&id, "bench", Duration::from_secs(600))
                    .unwrap()
            );
            journal.fenced_sink(&id, "bench").unwrap()
        } else {
            journal.sink(&id).unwrap()
        };
        let name = if fenced { "fenced" } else { "unfenced" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let step = format!("s{}", SEQ.fetch_add(1, Ordering::Relaxed));
                sink.emit(&Event::LegFinished {
                    step,
                    leg: String::new(),
                    outcome: Outcome::Success,
                    attempts: 1,
                    duration: Duration::from_millis(1),
                    output: json!({}),
                    plan: vec![],
                    error: None,
                })
                .expect("a leg's commit");
            })
        });
    }
    group.finish();
}

fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        workflow: "bench".into(),
        workflow_path: "bench.yaml".into(),
        workflow_sha256: "0".into(),
        mode: meridian_protocol::Mode::Apply,
        inputs: json!({}),
        settings: Default::default(),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
