//! The in-daemon servers of a region: its APISIX emulator (admin + data plane) and its upstream.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use meridian_emulators::{Apisix, ApisixConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dataplanes::DataPlanes;
use crate::error::LabError;

/// One HTTP server task with its shutdown trigger.
#[derive(Debug)]
struct Served {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Served {
    fn spawn(listener: TcpListener, router: Router) -> Served {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(meridian_emulators::serve(listener, router, async {
            let _ = rx.await;
        }));
        Served { shutdown: tx, task }
    }

    /// Closes the listener at once and gives open connections `grace` to finish; then the task is
    /// aborted. Either way the port stops accepting immediately.
    async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Binds `ip:port` (tokio sets SO_REUSEADDR, so a port just closed can be bound again).
pub(crate) async fn bind(ip: Ipv4Addr, port: u16) -> Result<TcpListener, LabError> {
    TcpListener::bind((ip, port))
        .await
        .map_err(|e| LabError::io(format!("binding {ip}:{port}"), e))
}

/// Binds one listener per IP on a common port that is free on all of them (so the LUA
/// `ifurlup` record, which probes one URL on every candidate IP, reaches each region). Bounded:
/// 50 attempts.
pub(crate) async fn bind_common_port(
    ips: &[Ipv4Addr],
) -> Result<(u16, Vec<TcpListener>), LabError> {
    let mut last = None;
    for _ in 0..50 {
        let first = bind(ips[0], 0).await?;
        let port = first
            .local_addr()
            .map_err(|e| LabError::io("reading a bound address", e))?
            .port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if listeners.len() == ips.len() {
            return Ok((port, listeners));
        }
    }
    Err(LabError::io(
        format!("finding a port free on all of {ips:?}"),
        last.unwrap_or_else(|| std::io::Error::other("no attempt succeeded")),
    ))
}

/// A region's gateway: the emulator state (kept across stop/start, like APISIX's etcd), its
/// Admin API listener while it serves, and its data planes (N instances behind the region's
/// data-plane address, see [`crate::dataplanes`]).
#[derive(Debug)]
pub(crate) struct Gateway {
    pub(crate) apisix: Apisix,
    pub(crate) ip: Ipv4Addr,
    pub(crate) admin_port: u16,
    pub(crate) data_port: u16,
    admin: Option<Served>,
    pub(crate) data_planes: DataPlanes,
}

impl Gateway {
    /// Creates the emulator with `api_key` and serves it on the given (already bound) listeners,
    /// with `instances` data-plane instances ready at once; instances started later (scale,
    /// start) take `start_ms` to become ready.
    pub(crate) async fn serve(
        api_key: String,
        ip: Ipv4Addr,
        admin: TcpListener,
        data: TcpListener,
        instances: u32,
        start_ms: u64,
    ) -> Result<Gateway, LabError> {
        let apisix = Apisix::new(ApisixConfig {
            api_key,
            ..ApisixConfig::default()
        });
        let admin_port = admin
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| LabError::io("reading a bound address", e))?;
        let served = Served::spawn(admin, apisix.admin_router());
        let data_planes = DataPlanes::serve(apisix.clone(), ip, data, instances, start_ms).await?;
        Ok(Gateway {
            ip,
            admin_port,
            data_port: data_planes.port,
            admin: Some(served),
            data_planes,
            apisix,
        })
    }

    pub(crate) fn serving(&self) -> bool {
        self.admin.is_some() && self.data_planes.serving()
    }

    /// Serving, the gateway ready and at least one data-plane instance ready.
    pub(crate) fn ready(&self) -> bool {
        self.serving() && self.apisix.is_ready() && self.data_planes.ready_count() > 0
    }

    pub(crate) fn admin_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.admin_port)
    }

    pub(crate) fn data_plane_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.data_port)
    }

    /// Starts serving again on the same ports with the same stored configuration; the data
    /// planes take their start-up time.
    pub(crate) async fn start(&mut self) -> Result<(), LabError> {
        if self.serving() {
            return Ok(());
        }
        if self.admin.is_none() {
            let admin = bind(self.ip, self.admin_port).await?;
            self.admin = Some(Served::spawn(admin, self.apisix.admin_router()));
        }
        self.apisix.set_ready(true);
        self.data_planes.start().await
    }

    /// Stops serving. `graceful`: report not-ready first and let requests finish (up to 5 s);
    /// otherwise the listeners close at once and open connections get 100 ms.
    pub(crate) async fn stop(&mut self, graceful: bool) {
        let grace = if graceful {
            self.apisix.set_ready(false);
            Duration::from_secs(5)
        } else {
            Duration::from_millis(100)
        };
        let admin = self.admin.take();
        let stop_admin = async {
            if let Some(a) = admin {
                a.stop(grace).await;
            }
        };
        tokio::join!(stop_admin, self.data_planes.stop(grace));
    }
}

/// The region's upstream service: answers `{"region": "<name>"}` on every path and method.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    server: Option<Served>,
}

impl Upstream {
    pub(crate) fn serve(region: &str, listener: TcpListener) -> Result<Upstream, LabError> {
        let addr = listener
            .local_addr()
            .map_err(|e| LabError::io("reading a bound address", e))?;
        let body = serde_json::json!({ "region": region });
        let router = Router::new().fallback(move || {
            let body = body.clone();
            async move { axum::Json(body) }
        });
        Ok(Upstream {
            addr,
            server: Some(Served::spawn(listener, router)),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop(Duration::from_millis(500)).await;
        }
    }
}

/// Runs `f` on the blocking pool (process spawning and polling must not stall the runtime).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, LabError>
where
    F: FnOnce() -> Result<T, LabError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LabError::State(format!("background task failed: {e}")))?
}

/// Awaits `fut` for at most `d`, mapping a timeout to a [`LabError::State`] naming `what`.
pub(crate) async fn within<T>(
    d: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, LabError>>,
) -> Result<T, LabError> {
    tokio::time::timeout(d, fut)
        .await
        .map_err(|_| LabError::State(format!("{what} did not finish within {d:?}")))?
}
