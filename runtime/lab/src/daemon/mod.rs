//! The lab daemon: starts every component, supervises it, serves the control API and keeps
//! `lab.json` current.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use tokio::sync::{Mutex, Notify};

mod control;
mod ops;

use crate::error::LabError;
use crate::faults::Fault;
use crate::gateway::{Gateway, Upstream, bind, bind_common_port, blocking, within};
use crate::moto::Moto;
use crate::net::{RTYPE_A, dns_query, free_port};
use crate::pdns::{Pdns, random_hex};
use crate::pg::{PgCluster, StopMode};
use crate::state::{
    API_RECORD, DnsState, FAILOVER_RECORD, GatewayState, LabConfig, LabState, LabStatus, MotoState,
    PgState, ProcessEntry, REGION_ROUTE, RegionState, RegionStatus, ZONE, region_ip,
};

/// The database and table created on the primary: what "the gateway's control-plane data" is in
/// the lab, so replication, RPO and failover have something real to carry.
const SEED_SQL: &str = "\
CREATE TABLE gateway_config (\n\
    id text PRIMARY KEY,\n\
    kind text NOT NULL,\n\
    value jsonb NOT NULL,\n\
    updated_at timestamptz NOT NULL DEFAULT now()\n\
);\n\
INSERT INTO gateway_config (id, kind, value) VALUES\n\
    ('lab-upstream', 'upstream', '{\"type\": \"roundrobin\", \"nodes\": [{\"host\": \"upstream\", \"port\": 80, \"weight\": 1}]}'),\n\
    ('lab-region', 'route', '{\"uri\": \"/lab/region\", \"upstream_id\": \"lab-upstream\"}');\n";

/// A region as the daemon holds it.
struct Region {
    name: String,
    ip: Ipv4Addr,
    pg: Arc<std::sync::Mutex<PgCluster>>,
    pg_port: u16,
    pg_dir: PathBuf,
    pg_log: PathBuf,
    gateway: Gateway,
    upstream: Upstream,
    status: RegionStatus,
    last_role: String,
    /// Faults injected and not yet undone by `start`, in the order they were injected.
    faults: Vec<Fault>,
    /// `replication-cut`: the `primary_conninfo` this (standby) region had before the cut.
    saved_conninfo: Option<String>,
}

/// Everything the daemon owns. Dropping it stops every process (each harness value kills its
/// process group on drop); [`Lab::shutdown`] does it in order and off the async workers.
struct Lab {
    cfg: LabConfig,
    logs: PathBuf,
    control_url: String,
    daemon_pid: u32,
    status: LabStatus,
    error: Option<String>,
    regions: Vec<Region>,
    pdns: Option<Arc<Pdns>>,
    moto: Option<Arc<Moto>>,
    /// `dns-stale`: the task that keeps the `api` record on the dead region's address.
    stale_dns: Option<tokio::task::JoinHandle<()>>,
}

type Shared = Arc<Mutex<Lab>>;

#[derive(Clone)]
struct AppState {
    lab: Shared,
    shutdown: Arc<Notify>,
}

/// Runs the lab described by `cfg` until `POST /shutdown`, SIGTERM or SIGINT, then stops every
/// component and returns. Start-up failures are recorded in `lab.json` (status `failed`) and
/// returned after cleaning up.
///
/// This is what `meridian lab daemon` runs; it needs a multi-threaded tokio runtime (see
/// [`daemon_main`] for a ready-made one). It blocks the calling task for the lab's whole life.
pub async fn run_daemon(cfg: LabConfig) -> Result<(), LabError> {
    let cfg = cfg.validate()?;
    let logs = cfg.dir.join("logs");
    crate::process::create_dir(&logs)?;
    refuse_if_running(&cfg).await?;

    let control_port = cfg.control_port.unwrap_or(0);
    let control = bind(Ipv4Addr::LOCALHOST, control_port).await?;
    let control_addr = control
        .local_addr()
        .map_err(|e| LabError::io("reading the control address", e))?;
    let mut lab = Lab {
        logs,
        control_url: format!("http://{control_addr}"),
        daemon_pid: std::process::id(),
        status: LabStatus::Starting,
        error: None,
        regions: Vec::new(),
        pdns: None,
        moto: None,
        stale_dns: None,
        cfg,
    };
    lab.publish().await?;

    if let Err(e) = start_all(&mut lab).await {
        tracing::error!(error = %e, "lab start-up failed");
        lab.status = LabStatus::Failed;
        lab.error = Some(e.to_string());
        let _ = lab.publish().await;
        lab.shutdown().await;
        let _ = lab.publish().await;
        return Err(e);
    }
    lab.status = LabStatus::Ready;
    lab.publish().await?;
    tracing::info!(control = %lab.control_url, "lab ready");

    let shared: Shared = Arc::new(Mutex::new(lab));
    let shutdown = Arc::new(Notify::new());
    let app = AppState {
        lab: shared.clone(),
        shutdown: shutdown.clone(),
    };
    let router = axum::Router::new()
        .route("/status", get(control::get_status))
        .route("/regions/{name}/{action}", post(control::region_action))
        .route(
            "/regions/{name}/faults/{fault}",
            post(control::fault_action),
        )
        .route("/shutdown", post(control::post_shutdown))
        .with_state(app);
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meridian_emulators::serve(control, router, async {
        let _ = control_stopped.await;
    }));
    let refresher = tokio::spawn(refresh_loop(shared.clone()));

    wait_for_shutdown(&shutdown).await;
    tracing::info!("lab shutting down");
    refresher.abort();
    let mut lab = shared.lock().await;
    lab.status = LabStatus::Stopping;
    let _ = lab.publish().await;
    lab.shutdown().await;
    lab.status = LabStatus::Stopped;
    let written = lab.publish().await;
    drop(lab);
    let _ = stop_control.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    written.map(|_| ())
}

/// Builds a runtime, loads `<dir>/config.json` and runs [`run_daemon`]: the whole body of the
/// `lab daemon` subcommand. Installs nothing global (logging is the caller's choice).
pub fn daemon_main(dir: &std::path::Path) -> Result<(), LabError> {
    let cfg = LabConfig::load(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::io("building the daemon's tokio runtime", e))?;
    rt.block_on(run_daemon(cfg))
}

/// Waits for `POST /shutdown`, SIGTERM or SIGINT. SIGHUP is ignored: the daemon outlives the
/// terminal that started it.
async fn wait_for_shutdown(shutdown: &Notify) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        shutdown.notified().await;
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.notified() => return,
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => continue,
        }
    }
}

/// Fails when another daemon already serves this directory.
async fn refuse_if_running(cfg: &LabConfig) -> Result<(), LabError> {
    let Ok(old) = LabState::read(&cfg.dir) else {
        return Ok(());
    };
    if old.daemon_pid != std::process::id() && crate::client::control_get_status(&old).is_ok() {
        return Err(LabError::State(format!(
            "a lab daemon (pid {}) already serves {} at {}",
            old.daemon_pid,
            cfg.dir.display(),
            old.control_url
        )));
    }
    Ok(())
}

/// Starts every component in dependency order, publishing progress so that `down` can clean up
/// whatever had started if the daemon dies half-way.
async fn start_all(lab: &mut Lab) -> Result<(), LabError> {
    let names = lab.cfg.regions.clone();
    let ips: Vec<Ipv4Addr> = (0..names.len()).map(region_ip).collect();

    // PostgreSQL: the first region is the primary, the others stream from it.
    let mut clusters: Vec<Arc<std::sync::Mutex<PgCluster>>> = Vec::new();
    let mut pg_meta = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let dir = lab.cfg.dir.join("pg").join(name);
        let log = lab.logs.join(format!("postgres-{name}.log"));
        // A port found free can be taken by another process before postgres binds it (tests
        // start labs side by side): then the cluster starts again on another, at most 3 times.
        let mut attempt = 0;
        let (pg, port) = loop {
            attempt += 1;
            let port = free_port();
            let started = if i == 0 {
                let (d, l) = (dir.clone(), log.clone());
                blocking(move || {
                    let pg = PgCluster::start_primary_with_log(&d, port, Some(&l))?;
                    pg.psql("CREATE DATABASE api7;")?;
                    pg.psql_db("api7", SEED_SQL)?;
                    Ok(pg)
                })
                .await
            } else {
                let primary = clusters[0].clone();
                let (d, l, slot) = (dir.clone(), log.clone(), slot_name(name));
                blocking(move || {
                    let primary = primary.lock().unwrap_or_else(|p| p.into_inner());
                    PgCluster::start_standby_with_log(&primary, &d, port, &slot, Some(&l))
                })
                .await
            };
            match started {
                Err(e) if attempt < 3 && e.to_string().contains("Address already in use") => {
                    tracing::warn!(region = %name, port, "port taken while postgres started; again on another");
                    let _ = std::fs::remove_dir_all(&dir);
                }
                other => break (other?, port),
            }
        };
        tracing::info!(region = %name, port, primary = i == 0, "postgres ready");
        clusters.push(Arc::new(std::sync::Mutex::new(pg)));
        pg_meta.push((port, dir, log));
    }

    // Gateways and upstreams: one common port per role across the region IPs, because the LUA
    // ifurlup record probes the same URL on every candidate IP.
    let (_, admin_listeners) = bind_common_port(&ips).await?;
    let (_, data_listeners) = bind_common_port(&ips).await?;
    let (_, upstream_listeners) = bind_common_port(&ips).await?;
    let listeners = admin_listeners
        .into_iter()
        .zip(data_listeners)
        .zip(upstream_listeners);
    for (i, ((admin, data), up)) in listeners.enumerate() {
        let name = names[i].clone();
        let gateway = Gateway::serve(
            random_hex(16)?,
            ips[i],
            admin,
            data,
            lab.cfg.capacity_of(i),
            lab.cfg.instance_start_ms,
        )
        .await?;
        let upstream = Upstream::serve(&name, up)?;
        let (pg_port, pg_dir, pg_log) = pg_meta[i].clone();
        lab.regions.push(Region {
            last_role: if i == 0 { "primary" } else { "standby" }.into(),
            name,
            ip: ips[i],
            pg: clusters[i].clone(),
            pg_port,
            pg_dir,
            pg_log,
            gateway,
            upstream,
            status: RegionStatus::Up,
            faults: Vec::new(),
            saved_conninfo: None,
        });
    }
    lab.publish().await?;
    for r in &lab.regions {
        within(
            Duration::from_secs(30),
            "seeding the gateway route",
            seed_gateway(r),
        )
        .await?;
    }

    // PowerDNS as the GSLB.
    let pdns_dir = lab.cfg.dir.join("pdns");
    let pdns_log = lab.logs.join("pdns.log");
    let (dns_port, api_port) = (free_port(), free_port());
    let pdns =
        blocking(move || Pdns::start_with(&pdns_dir, dns_port, api_port, None, Some(&pdns_log)))
            .await?;
    let pdns = Arc::new(pdns);
    lab.pdns = Some(pdns.clone());
    lab.publish().await?;
    let data_port = lab.regions[0].gateway.data_port;
    let region_records: Vec<(String, Ipv4Addr)> =
        lab.regions.iter().map(|r| (r.name.clone(), r.ip)).collect();
    blocking(move || configure_dns(&pdns, data_port, &region_records)).await?;

    if lab.cfg.with_moto {
        let log = lab.logs.join("moto.log");
        let port = free_port();
        let moto = blocking(move || Moto::start_with_log(port, &log)).await?;
        lab.moto = Some(Arc::new(moto));
    }
    Ok(())
}

/// What the daemon's command line contains (`up` appends `--dir <dir>`): how `down` recognises it.
pub(crate) fn daemon_marker(dir: &std::path::Path) -> String {
    format!("--dir {}", dir.display())
}

/// `<region>_slot` with `-` mapped to `_` (slot names allow `[a-z0-9_]`).
fn slot_name(region: &str) -> String {
    format!("{}_slot", region.replace('-', "_"))
}

/// Puts the lab route (`/lab/region` → the region's upstream) on a region's gateway through its
/// Admin API, then checks that real traffic through the data plane reaches that upstream.
async fn seed_gateway(r: &Region) -> Result<(), LabError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| LabError::Http {
            url: r.gateway.admin_url(),
            message: e.to_string(),
        })?;
    let url = format!("{}/apisix/admin/routes/lab-region", r.gateway.admin_url());
    let route = serde_json::json!({
        "name": "meridian-lab-region",
        "uri": REGION_ROUTE,
        "upstream": {
            "type": "roundrobin",
            "nodes": [{"host": r.ip.to_string(), "port": r.upstream.addr.port(), "weight": 1}]
        }
    });
    let http_err = |url: &str, message: String| LabError::Http {
        url: url.to_string(),
        message,
    };
    let resp = client
        .put(&url)
        .header("X-API-KEY", r.gateway.apisix.config().api_key.as_str())
        .json(&route)
        .send()
        .await
        .map_err(|e| http_err(&url, e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(http_err(&url, format!("seeding route: {status} {body}")));
    }
    let probe = format!("{}{REGION_ROUTE}", r.gateway.data_plane_url());
    let body: serde_json::Value = client
        .get(&probe)
        .send()
        .await
        .map_err(|e| http_err(&probe, e.to_string()))?
        .json()
        .await
        .map_err(|e| http_err(&probe, e.to_string()))?;
    if body["region"] != r.name.as_str() {
        return Err(http_err(
            &probe,
            format!(
                "expected {{\"region\": \"{}\"}} through the gateway, got {body}",
                r.name
            ),
        ));
    }
    Ok(())
}

/// Creates the lab zone: `ns1` and one A record per region, `api` pointing at the first region,
/// and the LUA `ifurlup` failover record over the regions' `/status/ready` in order.
fn configure_dns(
    pdns: &Pdns,
    data_port: u16,
    regions: &[(String, Ipv4Addr)],
) -> Result<(), LabError> {
    pdns.ensure_zone(ZONE, &format!("ns1.{ZONE}"))?;
    pdns.replace_rrset(ZONE, &format!("ns1.{ZONE}"), "A", 300, &["127.0.0.1"])?;
    for (name, ip) in regions {
        pdns.replace_rrset(ZONE, &format!("{name}.{ZONE}"), "A", 30, &[&ip.to_string()])?;
    }
    pdns.replace_rrset(ZONE, API_RECORD, "A", 5, &[&regions[0].1.to_string()])?;
    let sets: Vec<String> = regions
        .iter()
        .map(|(_, ip)| format!("{{'{ip}'}}"))
        .collect();
    let host = FAILOVER_RECORD.trim_end_matches('.');
    // Single quotes inside the Lua string: nested double quotes get a 422 (domain.md §7).
    let lua = format!(
        "A \"ifurlup('http://{host}:{data_port}/status/ready', {{{}}})\"",
        sets.join(", ")
    );
    pdns.replace_rrset(ZONE, FAILOVER_RECORD, "LUA", 5, &[&lua])
}

impl Lab {
    /// Takes a fresh snapshot (PostgreSQL roles, gateway state, DNS answers) and writes it to
    /// `lab.json`. Cost: one psql per running cluster and two DNS queries.
    async fn publish(&mut self) -> Result<LabState, LabError> {
        let state = self.snapshot().await;
        state.write()?;
        Ok(state)
    }

    async fn snapshot(&mut self) -> LabState {
        let mut processes = vec![ProcessEntry {
            name: "daemon".into(),
            pid: self.daemon_pid,
            cmdline_contains: daemon_marker(&self.cfg.dir),
        }];
        let mut regions = Vec::new();
        for r in &mut self.regions {
            let pg = r.pg.clone();
            let (pid, running, in_recovery, data_dir) = blocking(move || {
                let pg = pg.lock().unwrap_or_else(|p| p.into_inner());
                let running = pg.is_running();
                let rec = if running {
                    pg.is_in_recovery().ok()
                } else {
                    None
                };
                Ok((pg.pid(), running, rec, pg.data_dir.clone()))
            })
            .await
            .unwrap_or((None, false, None, r.pg_dir.join("data")));
            if let Some(rec) = in_recovery {
                r.last_role = if rec { "standby" } else { "primary" }.into();
            }
            if let Some(pid) = pid {
                processes.push(ProcessEntry {
                    name: format!("postgres {}", r.name),
                    pid,
                    cmdline_contains: data_dir.to_string_lossy().into_owned(),
                });
            }
            let gw = &r.gateway;
            regions.push(RegionState {
                name: r.name.clone(),
                ip: r.ip,
                role: r.last_role.clone(),
                status: r.status,
                postgres: PgState {
                    port: r.pg_port,
                    dsn: format!(
                        "host=127.0.0.1 port={} user=postgres dbname=api7",
                        r.pg_port
                    ),
                    data_dir,
                    log: r.pg_log.clone(),
                    pid,
                    running,
                    in_recovery,
                },
                gateway: GatewayState {
                    admin_url: gw.admin_url(),
                    admin_key: gw.apisix.config().api_key.clone(),
                    data_plane_url: gw.data_plane_url(),
                    ready_url: format!("{}/status/ready", gw.data_plane_url()),
                    serving: gw.serving(),
                    ready: gw.ready(),
                    capacity: gw.data_planes.desired(),
                    instances_ready: gw.data_planes.ready_count(),
                    instances: gw.data_planes.states(),
                },
                upstream_url: r.upstream.url(),
                faults: r.faults.iter().map(|f| f.as_str().to_string()).collect(),
            });
        }
        let dns = match &self.pdns {
            None => None,
            Some(p) => {
                processes.push(ProcessEntry {
                    name: "pdns".into(),
                    pid: p.pid(),
                    cmdline_contains: p.dir.to_string_lossy().into_owned(),
                });
                let addr = p.dns_addr();
                let (api_answer, failover_answer) = blocking(move || {
                    let ask = |name| {
                        dns_query(addr, name, RTYPE_A)
                            .map(|ips| ips.iter().map(ToString::to_string).collect())
                            .unwrap_or_default()
                    };
                    Ok((ask(API_RECORD), ask(FAILOVER_RECORD)))
                })
                .await
                .unwrap_or_default();
                Some(DnsState {
                    server: addr.to_string(),
                    zone: ZONE.into(),
                    api_record: API_RECORD.into(),
                    failover_record: FAILOVER_RECORD.into(),
                    api_url: p.api_url(),
                    api_key: p.api_key.clone(),
                    pid: p.pid(),
                    running: p.is_running(),
                    api_answer,
                    failover_answer,
                })
            }
        };
        let moto = self.moto.as_ref().map(|m| {
            processes.push(ProcessEntry {
                name: "moto".into(),
                pid: m.pid(),
                cmdline_contains: "moto_server".into(),
            });
            MotoState {
                url: m.url(),
                pid: m.pid(),
                running: m.is_running(),
            }
        });
        LabState {
            status: self.status,
            error: self.error.clone(),
            dir: self.cfg.dir.clone(),
            logs_dir: self.logs.clone(),
            daemon_pid: self.daemon_pid,
            control_url: self.control_url.clone(),
            regions,
            dns,
            moto,
            processes,
        }
    }

    fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Stops everything: gateways and upstreams, then moto, PowerDNS and the clusters (standbys
    /// first, fast shutdown), each on the blocking pool.
    async fn shutdown(&mut self) {
        if let Some(task) = self.stale_dns.take() {
            task.abort();
        }
        for r in &mut self.regions {
            r.gateway.stop(false).await;
            r.upstream.stop().await;
            // `lab status` of a stopped lab said each region was still up.
            if r.status == RegionStatus::Up {
                r.status = RegionStatus::Stopped;
            }
        }
        let clusters: Vec<_> = self.regions.iter().rev().map(|r| r.pg.clone()).collect();
        let pdns = self.pdns.take();
        let moto = self.moto.take();
        let _ = blocking(move || {
            drop(moto);
            drop(pdns);
            for pg in clusters {
                pg.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .stop(StopMode::Fast);
            }
            Ok(())
        })
        .await;
    }
}

/// Keeps `lab.json` current (roles change when a workflow promotes a standby) every 5 s, skipping
/// a round while a control request holds the lab.
async fn refresh_loop(lab: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Ok(mut guard) = lab.try_lock()
            && let Err(e) = guard.publish().await
        {
            tracing::warn!(error = %e, "refreshing lab.json failed");
        }
    }
}
