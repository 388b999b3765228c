//! Integration tests of meridian-distributed, each on its own real PostgreSQL 15 cluster (started
//! by the lab harness on a free loopback port, removed when the test ends).
//!
//! - `journal`: the PostgreSQL journal mirrors the SQLite one; schema versioning.
//! - `queue`: workflows run through the real engine with in-process workers; re-attachment,
//!   cancellation, key separation, fencing.
//! - `kill`: worker child processes SIGKILLed or cut off mid-task; no attempt ever runs twice at
//!   once.
//!
//! Set `MERIDIAN_ALLOW_SKIP=1` to skip (instead of fail) when PostgreSQL is not installed.

mod journal;
mod kill;
mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_distributed::testkit::{FakeExec, RECORD_TABLE};
use meridian_distributed::{TaskKey, WorkerOptions, run_worker};
use meridian_lab::{LabError, PgCluster, free_port};
use tokio_util::sync::CancellationToken;

/// One test's PostgreSQL cluster and scratch directory.
pub struct Pg {
    pub cluster: PgCluster,
    _dir: tempfile::TempDir,
}

impl Pg {
    /// Starts a cluster with a `meridian` database, or `None` when PostgreSQL is missing and
    /// `MERIDIAN_ALLOW_SKIP=1`.
    pub fn start() -> Option<Pg> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        match PgCluster::start_primary(&dir.path().join("pg"), free_port()) {
            Ok(cluster) => {
                cluster
                    .psql("CREATE DATABASE meridian;")
                    .expect("create database");
                cluster
                    .psql_db("meridian", RECORD_TABLE)
                    .expect("create test_exec");
                Some(Pg { cluster, _dir: dir })
            }
            Err(e @ LabError::MissingBinary { .. })
                if std::env::var("MERIDIAN_ALLOW_SKIP").as_deref() == Ok("1") =>
            {
                eprintln!("skipped: {e}");
                None
            }
            Err(e) => panic!("cannot start PostgreSQL: {e}"),
        }
    }

    pub fn dsn(&self) -> String {
        self.cluster.dsn("meridian")
    }

    pub fn sql(&self, sql: &str) -> String {
        self.cluster
            .psql_db("meridian", sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fast settings so takeovers happen within seconds.
pub fn fast_opts() -> WorkerOptions {
    WorkerOptions {
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(400),
        poll: Duration::from_millis(200),
        max_concurrent: 1,
        ..Default::default()
    }
}

/// Workers running as tasks of this process; stopped (gracefully) by [`InProc::stop`] or aborted
/// when dropped.
pub struct InProc {
    shutdown: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl InProc {
    pub async fn start(pg: &Pg, names: &[&str], key: &TaskKey, opts: WorkerOptions) -> InProc {
        let shutdown = CancellationToken::new();
        let mut handles = Vec::new();
        for name in names {
            let exec = FakeExec::new(name, Some(&pg.dsn()))
                .await
                .expect("fake exec");
            let (dsn, name, key) = (pg.dsn(), name.to_string(), key.clone());
            let opts = WorkerOptions {
                shutdown: shutdown.clone(),
                ..opts.clone()
            };
            handles.push(tokio::spawn(async move {
                run_worker(&dsn, &name, Arc::new(exec), key, opts)
                    .await
                    .expect("worker");
            }));
        }
        InProc { shutdown, handles }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for h in std::mem::take(&mut self.handles) {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("worker stops")
                .expect("worker task");
        }
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// One row of `test_exec`.
#[derive(Debug, Clone)]
pub struct Exec {
    pub worker: String,
    pub key: String,
    pub attempt: i32,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    pub how: Option<String>,
}

pub fn executions(pg: &Pg) -> Vec<Exec> {
    pg.sql(
        "SELECT worker, idempotency_key, attempt, started_us, coalesce(ended_us::text, ''), coalesce(how, '')
           FROM test_exec ORDER BY started_us",
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        Exec {
            worker: f[0].into(),
            key: f[1].into(),
            attempt: f[2].parse().unwrap(),
            started_us: f[3].parse().unwrap(),
            ended_us: f[4].parse().ok(),
            how: (!f[5].is_empty()).then(|| f[5].to_string()),
        }
    })
    .collect()
}

/// Asserts that no two executions of the same (idempotency key, attempt) overlap in time. An
/// execution without an end ended when its worker process died (`deaths`: worker → time).
pub fn assert_no_overlap(execs: &[Exec], deaths: &BTreeMap<String, i64>) {
    // (key, attempt) → [(start, end, worker)]
    type Spans = Vec<(i64, i64, String)>;
    let mut by_task: BTreeMap<(String, i32), Spans> = BTreeMap::new();
    for e in execs {
        let end = e
            .ended_us
            .or_else(|| deaths.get(&e.worker).copied())
            .unwrap_or_else(|| {
                panic!("execution without an end by a worker that did not die: {e:?}")
            });
        by_task
            .entry((e.key.clone(), e.attempt))
            .or_default()
            .push((e.started_us, end, e.worker.clone()));
    }
    for (task, mut runs) in by_task {
        runs.sort();
        for w in runs.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{task:?} ran on two workers at once: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
}
