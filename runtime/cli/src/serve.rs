//! `meridian serve`: the runner as a service (see the meridian-server crate).

use std::path::PathBuf;

use clap::Args;
use meridian_server::ServerConfig;

use crate::commands::Ctx;
use crate::{Exit, exit};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The server's config file (workflows directory, listen address, tokens, schedules,
    /// webhooks); flags override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The directory of workflow files (*.yaml) to serve.
    #[arg(long, value_name = "DIR")]
    pub workflows: Option<PathBuf>,
    /// Where the HTTP API listens (`127.0.0.1:0` picks a free port and prints it).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer tokens and their roles (hashed); without it the server listens on loopback only.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Secret values for the workflows' `secrets:` (NAME=value lines).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
}

pub async fn serve(ctx: &Ctx, args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path).map_err(|e| Exit::invalid(format!("error: {e}")))?,
        None => ServerConfig::default(),
    };
    if let Some(d) = args.workflows {
        config.workflows = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(t) = args.tokens {
        config.tokens = Some(t);
    }
    if let Some(c) = args.tls_cert {
        config.tls_cert = Some(c);
    }
    if let Some(k) = args.tls_key {
        config.tls_key = Some(k);
    }
    if let Some(s) = args.secrets_file {
        config.secrets_file = Some(s);
    }
    config.state_dir = ctx.state_dir.clone();
    // The config's trust policy, unless `--trust-policy` (or MERIDIAN_TRUST_POLICY) gave one.
    let with_policy;
    let ctx = match (&ctx.trust_policy, &config.trust_policy) {
        (None, Some(p)) => {
            with_policy = Ctx {
                trust_policy: Some(p.clone()),
                ..ctx.clone()
            };
            &with_policy
        }
        _ => ctx,
    };
    let runner = ctx.runner().await?;
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let handle = meridian_server::serve(config, runner, shutdown)
        .await
        .map_err(|e| Exit {
            code: exit::INVALID,
            message: format!("error: {e}"),
        })?;
    // The address on a line of its own, for scripts and tests that asked for port 0.
    eprintln!("meridian: serving {}://{}", handle.scheme, handle.addr);
    handle.wait().await.map_err(|e| Exit {
        code: exit::INTERNAL,
        message: format!("error: {e}"),
    })?;
    eprintln!("meridian: stopped");
    Ok(exit::OK)
}
