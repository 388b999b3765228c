//! `meridian serve`: the runner as a long-lived service.
//!
//! It loads the workflows of a directory (reloading them when they change), fires their
//! schedules, answers the HTTP API (start, cancel, approve, stream, drill history, metrics) and
//! sends webhooks. Runs go through the same [`Runner`] and journal as `meridian run`, so
//! `meridian runs show` reads a served run like any other, and a run interrupted by a crash
//! or a shutdown is resumed by the next server that starts on the same journal.

pub mod api;
pub mod auth;
mod cancel;
pub mod catalog;
pub mod config;
mod console;
mod drift;
mod envelope;
mod gates;
mod git;
pub mod metrics;
pub mod notify;
mod pauses;
mod readiness;
mod runs;
mod schedule;
mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use meridian_runner::Runner;
use tokio_util::sync::CancellationToken;

pub use catalog::Catalog;
pub use config::{ConfigError, ServerConfig};
pub use runs::StartRequest;
pub use schedule::ScheduleInfo;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The server's state, shared by the API handlers, the scheduler and the runs' tasks.
pub struct Server {
    /// This server among those sharing a journal (claims of schedule ticks name it).
    name: String,
    config: ServerConfig,
    runner: Runner,
    catalog: RwLock<Catalog>,
    schedules: Mutex<BTreeMap<String, schedule::Sched>>,
    /// When the schedules' last runs were last read from the journal (`sync_last_runs`).
    schedules_synced: Mutex<Option<std::time::Instant>>,
    active: Mutex<BTreeMap<String, runs::Active>>,
    /// The check runs (readiness, drift) this server drives: leased and renewed like `active`.
    checks: Mutex<std::collections::BTreeSet<String>>,
    readiness: Mutex<BTreeMap<String, readiness::LastReadiness>>,
    drift: Mutex<BTreeMap<String, drift::LastDrift>>,
    git: Mutex<BTreeMap<String, git::Watch>>,
    notifier: notify::Notifier,
    metrics: metrics::Metrics,
    tokens: Option<auth::Tokens>,
    /// The web console's signed-in browsers.
    sessions: console::session::Sessions,
    draining: AtomicBool,
    drain: CancellationToken,
}

impl Server {
    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sends a notification to the server's webhooks and to the `notify:` webhooks of the
    /// workflow it is about.
    fn notify(&self, mut note: notify::Note) {
        if let Some(l) = self.catalog.read().unwrap().get(&note.workflow) {
            note.hooks = l
                .workflow
                .notify
                .iter()
                .map(config::Webhook::from)
                .collect();
        }
        self.notifier.send(note);
    }

    /// One loop per workflow of `every` (name → interval, at least 1 s) calling `check` on
    /// each tick, the first at once; each loop ends when the server drains. Serves the
    /// periodic readiness and drift checks.
    fn on_interval<F, Fut>(self: &Arc<Self>, every: BTreeMap<String, Duration>, check: F)
    where
        F: Fn(Arc<Server>, String) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        for (workflow, period) in every {
            let (s, check) = (self.clone(), check.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period.max(Duration::from_secs(1)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => check(s.clone(), workflow.clone()).await,
                        _ = s.drain.cancelled() => return,
                    }
                }
            });
        }
    }

    /// Reads the workflows directory: the files that changed are checked as `meridian
    /// validate` checks them — the file, then its components (every `uses:` loads, every
    /// `with:` fits its schema) — and put in service only when they pass.
    async fn load_workflows(self: &Arc<Self>) -> Result<catalog::Changes, std::io::Error> {
        let mut scan = self.catalog.read().unwrap().scan()?;
        for c in scan.workflows() {
            let Some(l) = c.loaded() else { continue };
            let mut errors = meridian_model::Diagnostics::new();
            for d in self
                .runner
                .component_diagnostics(&l.workflow, &l.text)
                .await
            {
                if d.severity == meridian_model::Severity::Error {
                    errors.push(d);
                }
            }
            if !errors.is_empty() {
                errors.sort();
                c.refuse(errors.to_string());
            }
        }
        Ok(self.catalog.write().unwrap().apply(scan))
    }

    /// Reads the workflows directory again; reports what changed.
    async fn reload(self: &Arc<Self>) {
        let changes = self.load_workflows().await;
        match changes {
            Ok(c) if c.is_empty() => {}
            Ok(c) => {
                for f in &c.loaded {
                    tracing::info!(file = %f, "workflow loaded");
                }
                for f in &c.removed {
                    tracing::info!(file = %f, "workflow removed");
                }
                if !c.rejected.is_empty() {
                    let catalog = self.catalog.read().unwrap();
                    for e in catalog.errors() {
                        // Diagnostics name file:line:col; the previous version stays in service.
                        tracing::warn!(
                            "workflow not loaded (the previous version, if any, stays in service):\n{e}"
                        );
                    }
                }
                self.sync_schedules(false);
                self.sync_git();
            }
            Err(e) => tracing::warn!(
                dir = %self.catalog.read().unwrap().dir().display(),
                "cannot read the workflows directory: {e}"
            ),
        }
    }
}

/// A running server: where it listens, and how to wait for its end.
pub struct Handle {
    pub addr: SocketAddr,
    /// `https` with a certificate, else `http`.
    pub scheme: &'static str,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Handle {
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::Invalid(format!("the server task failed: {e}")))?
    }
}

/// Starts a server; it stops when `shutdown` completes: it starts no new runs, lets the runs it
/// drives finish for up to `config.grace`, then returns (runs still going stay resumable and
/// are resumed by the next server on the same journal).
pub async fn serve(
    config: ServerConfig,
    runner: Runner,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Handle, ServeError> {
    let tokens = match &config.tokens {
        Some(p) => Some(auth::Tokens::load(p).map_err(ServeError::Invalid)?),
        None => None,
    };
    if tokens.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::Invalid(format!(
            "refusing to listen on {} without a tokens file: anyone who reaches it could start and approve runs. Give `tokens = \"tokens.toml\"` in the config (or --tokens), or listen on 127.0.0.1",
            config.listen
        )));
    }
    if !config.workflows.is_dir() {
        return Err(ServeError::Invalid(format!(
            "the workflows directory {} does not exist; create it or set `workflows = \"DIR\"` (or --workflows)",
            config.workflows.display()
        )));
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(tls::config(c, k).map_err(ServeError::Invalid)?),
        (None, None) => None,
        _ => {
            return Err(ServeError::Invalid(
                "TLS needs both a certificate and a key (tls-cert and tls-key)".into(),
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = Arc::new(Server {
        name: format!(
            "{}:{}:{:04x}",
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into()),
            std::process::id(),
            rand::random::<u16>()
        ),
        catalog: RwLock::new(Catalog::new(&config.workflows)),
        notifier: notify::Notifier::start(config.notify.clone()),
        config,
        runner,
        schedules: Mutex::default(),
        active: Mutex::default(),
        checks: Mutex::default(),
        readiness: Mutex::default(),
        drift: Mutex::default(),
        git: Mutex::default(),
        schedules_synced: Mutex::default(),
        metrics: metrics::Metrics::default(),
        tokens,
        sessions: Default::default(),
        draining: AtomicBool::new(false),
        drain: CancellationToken::new(),
    });
    server.load_workflows().await?;
    for e in server.catalog.read().unwrap().errors() {
        tracing::warn!("workflow not loaded:\n{e}");
    }
    let catch_up = server.sync_schedules(true);
    server.sync_last_runs();
    // Leases renewed, and interrupted runs taken over: at once, then every third of a lease.
    tokio::spawn(server.clone().lease_loop());
    // Gates nobody answered within their `approval.timeout` are rejected.
    tokio::spawn(server.clone().gate_timeout_loop());

    // The directory, checked for changes.
    let s = server.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(s.config.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => s.reload().await,
                _ = s.drain.cancelled() => return,
            }
        }
    });
    tokio::spawn(server.clone().schedule_loop(catch_up));
    server.start_readiness();
    server.start_drift();
    server.sync_git();

    let app = api::router(server.clone());
    let s = server.clone();
    let task = tokio::spawn(async move {
        let drained = s.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new runs; waiting for the runs in flight");
            drained.draining.store(true, Ordering::SeqCst);
            drained.drain.cancel();
        });
        // The listener stays open while the runs in flight finish: they can still be watched,
        // approved and cancelled here (a draining server closed it at once, and its runs could
        // not be cancelled through it for up to `grace`); new runs are refused (503), and
        // `/readyz` says 503 so a load balancer sends nobody new. Streams (SSE) would hold a
        // graceful HTTP shutdown open: the runs decide how long the server lingers, not the
        // clients.
        let closed = CancellationToken::new();
        let close = closed.clone();
        let mut http = match tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config)?;
                let http = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { close.cancelled().await });
                tokio::spawn(async move { http.await })
            }
            None => {
                let http = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { close.cancelled().await });
                tokio::spawn(async move { http.await })
            }
        };
        s.drain.cancelled().await;
        wait_for_runs(&s, s.config.grace).await;
        closed.cancel();
        // Answers already being written finish; streams are cut.
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut http).await;
        http.abort();
        Ok(())
    });
    Ok(Handle { addr, scheme, task })
}

/// Waits until the runs this server drives have ended, or `grace` has passed.
async fn wait_for_runs(s: &Arc<Server>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let left = s.active.lock().unwrap().len();
        if left == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "{left} run(s) still going after the grace period; they stay resumable and the next server resumes them"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
