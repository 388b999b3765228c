//! `meridian-emulator`: serves one emulator on the given addresses until Ctrl-C, for manual use.
//!
//! ```text
//! meridian-emulator apisix --admin 127.0.0.1:9180 --data 127.0.0.1:9080 --key KEY
//! meridian-emulator api7 --listen 127.0.0.1:7080 --token TOKEN
//! meridian-emulator cloudflare --listen 127.0.0.1:8787 --token TOKEN
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use meridian_emulators::{
    Api7Config, Api7Cp, Apisix, ApisixConfig, ApisixFlavor, Cloudflare, CloudflareConfig,
    CloudflareZone, serve,
};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(name = "meridian-emulator", about = "Serve a Meridian vendor emulator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// APISIX Admin API + data plane (+ /status/ready).
    Apisix {
        /// Admin API listen address.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
        /// Data-plane (proxy and status API) listen address.
        #[arg(long, default_value = "127.0.0.1:9080")]
        data: SocketAddr,
        /// Admin key required in X-API-KEY.
        #[arg(long, env = "APISIX_ADMIN_KEY", default_value_t = ApisixConfig::default().api_key)]
        key: String,
        /// Version reported in `Server: APISIX/<version>`.
        #[arg(long = "apisix-version", default_value_t = ApisixConfig::default().version)]
        version: String,
        /// Enable stream mode (stream_routes).
        #[arg(long)]
        stream: bool,
        /// Serve the API-driven standalone flavour (/apisix/admin/configs) instead.
        #[arg(long)]
        standalone: bool,
    },
    /// API7 EE control plane subset.
    Api7 {
        #[arg(long, default_value = "127.0.0.1:7080")]
        listen: SocketAddr,
        /// Access token accepted in X-API-KEY.
        #[arg(long, env = "API7_TOKEN", default_value_t = Api7Config::default().token)]
        token: String,
        /// Version reported by /api/version.
        #[arg(long = "api7-version", default_value_t = Api7Config::default().version)]
        version: String,
    },
    /// Cloudflare API v4 load balancing, under /client/v4.
    Cloudflare {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// API token accepted as `Authorization: Bearer <token>`.
        #[arg(long, env = "CLOUDFLARE_API_TOKEN", default_value_t = CloudflareConfig::default().token)]
        token: String,
        #[arg(long, default_value_t = CloudflareConfig::default().account_id)]
        account_id: String,
        #[arg(long, default_value_t = CloudflareConfig::default().zones[0].id.clone())]
        zone_id: String,
        #[arg(long, default_value_t = CloudflareConfig::default().zones[0].name.clone())]
        zone_name: String,
        /// Run the pools' monitors every N seconds (0 = never; health then comes from overrides).
        #[arg(long, default_value_t = 0)]
        probe_interval: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meridian-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(try_main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds `addr` and serves `router` until the shutdown signal flips.
async fn spawn_server(
    addr: SocketAddr,
    router: axum::Router,
    what: &str,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {what} on {addr}"))?;
    println!("{what} listening on http://{}", listener.local_addr()?);
    let mut stop = stop.clone();
    Ok(tokio::spawn(serve(listener, router, async move {
        let _ = stop.wait_for(|s| *s).await;
    })))
}

async fn try_main(cli: Cli) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let mut prober = None;
    match cli.cmd {
        Cmd::Apisix {
            admin,
            data,
            key,
            version,
            stream,
            standalone,
        } => {
            let apisix = Apisix::new(ApisixConfig {
                api_key: key,
                version,
                stream_mode: stream,
                backend: if standalone {
                    ApisixFlavor::Standalone
                } else {
                    ApisixFlavor::Apisix
                },
            });
            servers.push(
                spawn_server(admin, apisix.admin_router(), "APISIX admin API", &stop_rx).await?,
            );
            servers.push(
                spawn_server(
                    data,
                    apisix.data_plane_router(),
                    "APISIX data plane",
                    &stop_rx,
                )
                .await?,
            );
        }
        Cmd::Api7 {
            listen,
            token,
            version,
        } => {
            let cp = Api7Cp::new(Api7Config { token, version });
            servers
                .push(spawn_server(listen, cp.router(), "API7 EE control plane", &stop_rx).await?);
        }
        Cmd::Cloudflare {
            listen,
            token,
            account_id,
            zone_id,
            zone_name,
            probe_interval,
        } => {
            let cf = Cloudflare::new(CloudflareConfig {
                token,
                account_id,
                zones: vec![CloudflareZone {
                    id: zone_id,
                    name: zone_name,
                }],
            });
            if probe_interval > 0 {
                prober = Some(cf.spawn_prober(Duration::from_secs(probe_interval)));
            }
            servers.push(
                spawn_server(
                    listen,
                    cf.router(),
                    "Cloudflare API (base /client/v4)",
                    &stop_rx,
                )
                .await?,
            );
        }
    }
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    if let Some(p) = prober {
        p.abort();
    }
    let _ = stop_tx.send(true);
    for s in servers {
        s.await.context("server task panicked")??;
    }
    Ok(())
}
