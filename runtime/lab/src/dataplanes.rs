//! A region's data planes: N APISIX data-plane instances that share the region's configuration
//! (as real data planes share etcd or the control plane), behind one front address on the
//! region's IP — an L4 load balancer, as a cloud load balancer or a Kubernetes Service is.
//!
//! * Each instance listens on its own port of the region's IP and has its own `/status/ready`.
//!   A started instance answers 503 on every path (APISIX's "has not received configuration")
//!   for the lab's start-up time (`data_plane_start_ms`), then serves.
//! * The front accepts connections on the region's data-plane port and hands each to the next
//!   ready instance, round robin; with none ready it answers `503` itself, as a load balancer
//!   without healthy targets does. A connection stays on the instance it was given.
//! * Scaling down drains: the instances removed get no new connection at once, and their open
//!   connections get 5 s to finish.
//!
//! Costs: one tokio task per instance listener and per proxied connection (two copies of the
//! bytes through the front).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meridian_emulators::Apisix;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::LabError;

/// The most data-plane instances a region runs.
pub const MAX_DATA_PLANES: u32 = 16;

/// How long draining instances and a graceful front keep open connections.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What an instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceStatus {
    /// Started, not ready yet (within its start-up time).
    Starting,
    /// Ready: the front sends it connections.
    Ready,
}

/// One data-plane instance as `lab.json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Its number within the region (1, 2, …; never reused while the lab runs).
    pub id: u32,
    /// Its own base URL (`http://<region ip>:<port>`), beside the region's front address.
    pub url: String,
    /// `<url>/status/ready`.
    pub ready_url: String,
    /// Starting or ready.
    pub status: InstanceStatus,
    /// When it was started, Unix ms.
    pub started_at_ms: u64,
    /// When it became ready, Unix ms.
    pub ready_at_ms: Option<u64>,
    /// Connections the front handed it.
    pub connections: u64,
}

/// What the front and an instance share about the instance.
#[derive(Debug, Default)]
struct Flags {
    ready: AtomicBool,
    /// Scaled away: no new connections.
    draining: AtomicBool,
    ready_at_ms: AtomicU64,
    connections: AtomicU64,
}

#[derive(Debug, Clone)]
struct Backend {
    addr: SocketAddr,
    flags: Arc<Flags>,
}

/// The instances the front may choose from, in order.
#[derive(Debug, Clone, Default)]
struct Pool {
    backends: Arc<Mutex<Vec<Backend>>>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    /// The ready, not draining instances, starting at the round-robin position.
    fn candidates(&self) -> Vec<Backend> {
        let all = self
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ready: Vec<Backend> = all
            .into_iter()
            .filter(|b| {
                b.flags.ready.load(Ordering::SeqCst) && !b.flags.draining.load(Ordering::SeqCst)
            })
            .collect();
        if ready.is_empty() {
            return ready;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % ready.len();
        ready[start..]
            .iter()
            .chain(&ready[..start])
            .cloned()
            .collect()
    }

    fn push(&self, b: Backend) {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(b);
    }

    fn remove(&self, addr: SocketAddr) {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|b| b.addr != addr);
    }
}

/// A server task with its shutdown trigger and its connection tasks.
#[derive(Debug)]
struct Task {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Task {
    async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        if tokio::time::timeout(grace + Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// One running instance.
#[derive(Debug)]
struct Instance {
    id: u32,
    addr: SocketAddr,
    started_at_ms: u64,
    flags: Arc<Flags>,
    server: Task,
    timer: JoinHandle<()>,
}

/// The data planes of one region: the front while it serves, and the instances.
#[derive(Debug)]
pub(crate) struct DataPlanes {
    apisix: Apisix,
    ip: Ipv4Addr,
    /// The front's port (the region's data-plane port), kept across stop/start.
    pub(crate) port: u16,
    /// How long a started instance takes to become ready.
    start_ms: u64,
    /// How many instances the region should run (kept while the region is down).
    desired: u32,
    pool: Pool,
    front: Option<Task>,
    instances: Vec<Instance>,
    next_id: u32,
}

impl DataPlanes {
    /// Serves the front on `listener` with `ready_now` instances that are ready at once (the
    /// lab's start-up waits for them) and `desired` in all.
    pub(crate) async fn serve(
        apisix: Apisix,
        ip: Ipv4Addr,
        listener: TcpListener,
        desired: u32,
        start_ms: u64,
    ) -> Result<DataPlanes, LabError> {
        let port = listener
            .local_addr()
            .map_err(|e| LabError::io("reading a bound address", e))?
            .port();
        let mut dp = DataPlanes {
            apisix,
            ip,
            port,
            start_ms,
            desired: desired.min(MAX_DATA_PLANES),
            pool: Pool::default(),
            front: None,
            instances: Vec::new(),
            next_id: 1,
        };
        dp.front = Some(spawn_front(listener, dp.pool.clone()));
        for _ in 0..dp.desired {
            dp.add_instance(0).await?;
        }
        Ok(dp)
    }

    pub(crate) fn serving(&self) -> bool {
        self.front.is_some()
    }

    pub(crate) fn desired(&self) -> u32 {
        self.desired
    }

    /// Instances ready and in rotation.
    pub(crate) fn ready_count(&self) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.flags.ready.load(Ordering::SeqCst))
            .count() as u32
    }

    pub(crate) fn states(&self) -> Vec<InstanceState> {
        self.instances
            .iter()
            .map(|i| {
                let ready = i.flags.ready.load(Ordering::SeqCst);
                let url = format!("http://{}", i.addr);
                InstanceState {
                    id: i.id,
                    ready_url: format!("{url}/status/ready"),
                    url,
                    status: if ready {
                        InstanceStatus::Ready
                    } else {
                        InstanceStatus::Starting
                    },
                    started_at_ms: i.started_at_ms,
                    ready_at_ms: ready.then(|| i.flags.ready_at_ms.load(Ordering::SeqCst)),
                    connections: i.flags.connections.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Starts one instance that becomes ready after `start_ms`.
    async fn add_instance(&mut self, start_ms: u64) -> Result<(), LabError> {
        let listener = crate::gateway::bind(self.ip, 0).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| LabError::io("reading a bound address", e))?;
        let flags = Arc::new(Flags::default());
        let router = self
            .apisix
            .data_plane_router()
            .layer(axum::middleware::from_fn_with_state(
                (flags.clone(), self.apisix.clone()),
                gate,
            ));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = meridian_emulators::serve(listener, router, async {
                let _ = rx.await;
            })
            .await;
        });
        let started_at_ms = now_ms();
        let f = flags.clone();
        let timer = tokio::spawn(async move {
            if start_ms > 0 {
                tokio::time::sleep(Duration::from_millis(start_ms)).await;
            }
            f.ready_at_ms.store(now_ms(), Ordering::SeqCst);
            f.ready.store(true, Ordering::SeqCst);
        });
        if start_ms == 0 {
            // Ready before anyone can ask (the lab's own start-up waits for these).
            flags.ready_at_ms.store(started_at_ms, Ordering::SeqCst);
            flags.ready.store(true, Ordering::SeqCst);
        }
        self.pool.push(Backend {
            addr,
            flags: flags.clone(),
        });
        let id = self.next_id;
        self.next_id += 1;
        self.instances.push(Instance {
            id,
            addr,
            started_at_ms,
            flags,
            server: Task { shutdown: tx, task },
            timer,
        });
        tracing::info!(ip = %self.ip, instance = id, %addr, start_ms, "data-plane instance started");
        Ok(())
    }

    /// Sets the instance count: new instances take the start-up time; removed ones (the newest
    /// first) drain. While the region is down only the count is kept; `start` starts that many.
    pub(crate) async fn scale(&mut self, n: u32) -> Result<(), LabError> {
        if n > MAX_DATA_PLANES {
            return Err(LabError::Invalid(format!(
                "instances: at most {MAX_DATA_PLANES} data planes per region, not {n}"
            )));
        }
        self.desired = n;
        if !self.serving() {
            return Ok(());
        }
        while (self.instances.len() as u32) < n {
            self.add_instance(self.start_ms).await?;
        }
        while (self.instances.len() as u32) > n {
            if let Some(i) = self.instances.pop() {
                i.flags.draining.store(true, Ordering::SeqCst);
                self.pool.remove(i.addr);
                tracing::info!(ip = %self.ip, instance = i.id, "data-plane instance draining");
                tokio::spawn(async move {
                    i.timer.abort();
                    i.server.stop(DRAIN_GRACE).await;
                });
            }
        }
        Ok(())
    }

    /// Serves again on the same front port with `desired` instances, each taking the start-up
    /// time, as a restarted region's data planes do; returns once they are ready (as a region's
    /// `start` returns once its PostgreSQL accepts connections).
    pub(crate) async fn start(&mut self) -> Result<(), LabError> {
        if self.front.is_some() {
            return Ok(());
        }
        let listener = crate::gateway::bind(self.ip, self.port).await?;
        self.front = Some(spawn_front(listener, self.pool.clone()));
        for _ in 0..self.desired {
            self.add_instance(self.start_ms).await?;
        }
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.start_ms)
            + Duration::from_secs(5);
        while self.ready_count() < self.desired {
            if tokio::time::Instant::now() >= deadline {
                return Err(LabError::State(format!(
                    "{} of {} data-plane instances on {} ready {} ms after their start",
                    self.ready_count(),
                    self.desired,
                    self.ip,
                    self.start_ms + 5_000
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops the front and every instance; `grace` for open connections (the count is kept).
    pub(crate) async fn stop(&mut self, grace: Duration) {
        let mut stops = Vec::new();
        if let Some(front) = self.front.take() {
            stops.push(tokio::spawn(front.stop(grace)));
        }
        for i in self.instances.drain(..) {
            i.timer.abort();
            self.pool.remove(i.addr);
            stops.push(tokio::spawn(i.server.stop(grace)));
        }
        for s in stops {
            let _ = s.await;
        }
    }
}

/// An instance's answers while it starts: 503 everywhere (APISIX's "has not received
/// configuration" on `/status/ready`); afterwards `/status/ready` also follows the gateway's
/// own readiness (a draining region answers 503), and everything else is the data plane.
async fn gate(
    State((flags, apisix)): State<(Arc<Flags>, Apisix)>,
    req: Request,
    next: Next,
) -> Response {
    let ready = flags.ready.load(Ordering::SeqCst);
    if req.uri().path() == "/status/ready" || !ready {
        if ready && apisix.is_ready() {
            return next.run(req).await;
        }
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "error",
                "error": "worker id: 0 has not received configuration"
            })),
        )
            .into_response();
    }
    next.run(req).await
}

/// The front: accepts until stopped, each connection proxied on its own task.
fn spawn_front(listener: TcpListener, pool: Pool) -> Task {
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((sock, _)) => {
                        let pool = pool.clone();
                        conns.spawn(proxy(sock, pool));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "data-plane front: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        // Open connections finish within the stopper's grace; then this task is aborted
        // (dropping the JoinSet aborts what is left).
        while conns.join_next().await.is_some() {}
    });
    Task { shutdown: tx, task }
}

/// Hands `client` to the first ready instance that accepts it; a 503 when none does.
async fn proxy(mut client: TcpStream, pool: Pool) {
    for b in pool.candidates() {
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(b.addr)).await
        else {
            continue;
        };
        b.flags.connections.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // Read the request head first: closing with unread input would reset the connection and
    // the client would never see the answer.
    let mut head = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        while let Ok(n) = client.read(&mut head).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&head[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 65_536 {
                break;
            }
        }
    })
    .await;
    let body = r#"{"error":"no data-plane instance of this region is ready"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_emulators::ApisixConfig;

    /// `GET path` through `addr`; the status, or 0 when the connection failed.
    async fn get(addr: SocketAddr, path: &str) -> u16 {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        match client.get(format!("http://{addr}{path}")).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_start_slowly_take_turns_and_drain() {
        let ip = Ipv4Addr::LOCALHOST;
        let listener = crate::gateway::bind(ip, 0).await.unwrap();
        let front = listener.local_addr().unwrap();
        let apisix = Apisix::new(ApisixConfig::default());
        let mut dp = DataPlanes::serve(apisix, ip, listener, 1, 300)
            .await
            .unwrap();
        assert_eq!((dp.desired(), dp.ready_count()), (1, 1), "ready at once");
        assert_eq!(get(front, "/status/ready").await, 200);

        // Two more: each answers 503 on its own address until its start-up time passed, and
        // the front keeps sending everything to the ready one meanwhile.
        dp.scale(3).await.unwrap();
        assert_eq!((dp.desired(), dp.ready_count()), (3, 1));
        let states = dp.states();
        let new: SocketAddr = states[2].url.trim_start_matches("http://").parse().unwrap();
        assert_eq!(get(new, "/status/ready").await, 503);
        assert_eq!(get(new, "/anything").await, 503);
        for _ in 0..6 {
            assert_eq!(get(front, "/status/ready").await, 200);
        }
        assert_eq!(dp.states()[0].connections, 7);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while dp.ready_count() < 3 {
            assert!(std::time::Instant::now() < deadline, "ready within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let states = dp.states();
        for s in &states[1..] {
            assert!(s.ready_at_ms.unwrap() - s.started_at_ms >= 300, "{s:?}");
        }
        assert_eq!(get(new, "/status/ready").await, 200);
        // Round robin over the three.
        for _ in 0..6 {
            assert_eq!(get(front, "/status/ready").await, 200);
        }
        assert!(
            dp.states().iter().all(|s| s.connections >= 2),
            "{:?}",
            dp.states()
        );

        // Down to none: the front answers 503 itself; the count survives a stop and start.
        dp.scale(0).await.unwrap();
        assert_eq!(get(front, "/status/ready").await, 503);
        dp.scale(2).await.unwrap();
        dp.stop(Duration::from_millis(100)).await;
        assert_eq!(get(front, "/status/ready").await, 0, "nothing listens");
        let started = std::time::Instant::now();
        dp.start().await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "a restart answers once its instances passed their start-up time"
        );
        assert_eq!((dp.desired(), dp.ready_count()), (2, 2));
        assert_eq!(get(front, "/status/ready").await, 200);
        assert!(dp.scale(MAX_DATA_PLANES + 1).await.is_err());
        dp.stop(Duration::from_millis(100)).await;
    }
}
