//! meridian-lab: the local multi-region lab, built from real components where they run locally.
//!
//! Two layers:
//!
//! * **Process harness** (synchronous, used by tests of every crate):
//!   [`PgCluster`] (a real PostgreSQL 15 primary or physical standby), [`Pdns`] (PowerDNS
//!   Authoritative with the HTTP API and LUA records), [`Moto`] (the Route 53 API emulator),
//!   [`free_port`] and [`dns_query`] (a tiny UDP DNS client). Each value owns its process group and
//!   stops it when dropped, also while a test panics. Every start waits (bounded) until the
//!   component answers and fails with the tail of its log when it does not; a missing binary is
//!   named together with the command that installs it.
//!
//! * **Lab daemon** (`meridian lab up|status|down`): [`up`] spawns a detached daemon process
//!   ([`run_daemon`] / [`daemon_main`]) that starts, per region, a PostgreSQL cluster (the first
//!   region primary, the others physical standbys), an APISIX emulator whose data planes (N
//!   instances behind one front, scalable: see `dataplanes`) listen on the region's own loopback
//!   IP (127.0.0.2, 127.0.0.3, …) and an upstream answering
//!   `{"region": "<name>"}`; then PowerDNS serving `lab.meridian.test.` (with an `api` A record
//!   and a LUA `ifurlup` `failover` record) and, on request, moto. It serves a control API on
//!   127.0.0.1 and keeps `<dir>/lab.json` ([`LabState`]) current. [`status`], [`region`] and
//!   [`down`] talk to it; `down` leaves no process behind even if the daemon died.
//!
//! When run as root, PostgreSQL runs as user `postgres` and PowerDNS as user `pdns`; their
//! directories are handed to those users, and scratch directories under the system temp directory
//! are made traversable for them.
//!
//! The calls block (they spawn processes and poll); from async code call them through
//! `tokio::task::spawn_blocking`.

mod client;
mod daemon;
mod dataplanes;
mod error;
mod faults;
mod gateway;
mod moto;
mod net;
mod pdns;
mod pg;
mod process;
mod state;

pub use client::{RegionAction, down, region, status, up};
pub use daemon::{daemon_main, run_daemon};
pub use dataplanes::{InstanceState, InstanceStatus, MAX_DATA_PLANES};
pub use error::LabError;
pub use faults::Fault;
pub use moto::Moto;
pub use net::{DnsAnswer, RTYPE_A, RTYPE_AAAA, RTYPE_SOA, dns_exchange, dns_query, free_port};
pub use pdns::Pdns;
pub use pg::{PgCluster, StopMode, pg_bin_dir};

/// What `meridian lab up` needs on this machine: `(what, where it is | how to install it)`.
/// moto is needed only with Route 53 (`--with-moto`).
pub fn prerequisites() -> Vec<(&'static str, Result<std::path::PathBuf, LabError>)> {
    vec![
        ("PostgreSQL server (initdb)", pg_bin_dir()),
        ("PowerDNS (pdns_server)", pdns::find()),
        ("moto (moto_server, for Route 53)", moto::find()),
    ]
}
pub use state::{
    API_RECORD, CONFIG_FILE, CapacityArgs, DEFAULT_INSTANCE_START_MS, DnsState, FAILOVER_RECORD,
    GatewayState, LabConfig, LabState, LabStatus, Launcher, MAX_INSTANCE_START_MS, MotoState,
    PgState, ProcessEntry, REGION_ROUTE, RegionState, RegionStatus, STATE_FILE, ZONE, region_ip,
};
