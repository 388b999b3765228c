//! Faithful in-process emulators of the control planes Meridian drives but that cannot run on a
//! developer machine (no APISIX/OpenResty package, no licensed API7 images, no Cloudflare Load
//! Balancing emulator).
//!
//! Three emulators, each an [`axum::Router`] over shared state that tests and the lab daemon start
//! on their own listener with [`serve`]:
//!
//! * [`Apisix`] — the Apache APISIX 3.x Admin API (`/apisix/admin/...`, the etcd-node wrapper,
//!   201/200/404 codes, schema defaults filled on write, `Server: APISIX/<version>`), the
//!   API-driven standalone `PUT /apisix/admin/configs` flavour, and a minimal data plane that
//!   matches stored routes and proxies to their upstream nodes, plus `/status/ready`.
//! * [`Api7Cp`] — the subset of the API7 Enterprise control plane that "deploy region" and ADC's
//!   `api7ee` backend use: `/api/status`, `/api/version`, gateway groups, instance tokens,
//!   gateway-group admin keys and the gateway-group-scoped `/apisix/admin/*` resources.
//! * [`Cloudflare`] — Cloudflare API v4 Load Balancing: monitors, pools (with health), load
//!   balancers, the `{success, errors, messages, result}` envelope, Bearer auth, plus hooks to mark
//!   origins unhealthy or to run the monitors for real against local origins.
//!
//! Everything is in memory; nothing touches anything but the listeners the caller hands in and,
//! for the data-plane proxy and the monitors, the upstream addresses stored in the emulators.
//! State sits behind `std::sync::Mutex`es that are never held across an `.await`, so the handles
//! are cheap to clone and safe to share between the server and the test that inspects it.

pub mod api7;
pub mod apisix;
pub mod cloudflare;

mod clock;
mod http;
mod ids;
mod json;

pub use api7::{Api7Config, Api7Cp, Api7Error};
pub use apisix::{Apisix, ApisixConfig, ApisixFlavor};
pub use cloudflare::{Cloudflare, CloudflareConfig, CloudflareZone, Resolution};

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// Serves `router` on `listener` until `shutdown` completes, then drains in-flight requests.
///
/// The router is served with connection info so handlers can see the peer address (the gateway
/// data plane uses it for `X-Forwarded-For` / `X-Real-IP`). Costs one tokio task per connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
