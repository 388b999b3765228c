//! A workflow's `drill:` block: the targets a drill is judged against, and the canaries the
//! host runs beside it to measure what users lose.
//!
//! ```yaml
//! drill:
//!   rto: 60s            # fault -> verified service (a step reports rto_ms)
//!   capacity: 90s       # fault -> the recovered region at full capacity (a step reports capacity_ms)
//!   rpo: 5s             # time window of acknowledged writes lost (canary writer, or rpo_ms)
//!   rpo-rows: 100       # acknowledged canary rows missing on the new primary
//!   rpo-bytes: 16MiB    # WAL not replicated at the fault (a step reports rpo_bytes)
//!   downtime: 30s       # client-observed downtime (canary prober)
//!   canary:
//!     writer: {connection: primary, verify: standby, rate: 20}
//!     prober: {url: "http://api.example.com:9080/health", dns: "10.0.0.53:53", rate: 10}
//!     warm-up: 2s       # measure this long before the first step (the baseline)
//!     settle: 3s        # keep measuring this long after the last step
//! ```

use std::time::Duration;

use crate::expr::Template;
use crate::span::{Span, Spanned};

#[derive(Clone, Debug, Default)]
pub struct Drill {
    pub span: Span,
    /// Recovery time objective.
    pub rto: Option<Duration>,
    /// Time to full capacity: fault to the recovered region running all the data planes it
    /// needs (a step reports `capacity_ms`, e.g. `drill-report`).
    pub capacity: Option<Duration>,
    /// Recovery point objective as time: the window of acknowledged writes lost.
    pub rpo: Option<Duration>,
    /// Recovery point objective as WAL bytes not yet replicated.
    pub rpo_bytes: Option<u64>,
    /// Recovery point objective as acknowledged canary rows lost.
    pub rpo_rows: Option<u64>,
    /// Longest client-observed downtime (first failed request to first lasting success).
    pub downtime: Option<Duration>,
    /// Longest write outage the canary writer saw (first refused write to the first accepted
    /// again, on the old primary or the promoted one).
    pub write_outage: Option<Duration>,
    /// What the host measures from the client side while the drill runs.
    pub canary: Option<Canary>,
}

/// The host-side canaries of a drill (never trusted to a step).
#[derive(Clone, Debug)]
pub struct Canary {
    pub span: Span,
    pub writer: Option<CanaryWriter>,
    pub prober: Option<CanaryProber>,
    /// How long the canaries keep measuring after the run's last step: a success counts as
    /// lasting only when nothing fails in this window.
    pub settle: Duration,
    /// How long the canaries measure before the first step starts: the baseline the fault is
    /// judged against (default 2 s).
    pub warm_up: Duration,
}

/// Inserts sequenced rows into the primary at a steady rate, then counts them on the new one.
#[derive(Clone, Debug)]
pub struct CanaryWriter {
    /// The `connections:` entry writes go to (the primary, as the workflow's steps see it).
    pub connection: Spanned<String>,
    /// The connection where the rows are counted afterwards (the new primary).
    pub verify: Spanned<String>,
    /// Writes per second.
    pub rate: u32,
    /// The table the rows go to (created when missing).
    pub table: String,
}

/// Sends requests at a steady rate through a name resolved by the GSLB's DNS, as a client would.
#[derive(Clone, Debug)]
pub struct CanaryProber {
    /// `http://NAME:PORT/PATH`; NAME is resolved through `dns` (the system resolver without it).
    pub url: Template,
    /// The DNS server to ask, `IP:PORT`.
    pub dns: Option<Template>,
    /// Requests per second.
    pub rate: u32,
    /// A request succeeds on a 2xx answer whose body contains this (any 2xx without it).
    pub expect: Option<Template>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How many clients probe, each at `rate`, their cached DNS answers expiring evenly across
    /// the TTL (the drill's downtime is the worst client's).
    pub clients: u32,
}

/// Defaults of the canary block.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(3);
pub const DEFAULT_WARM_UP: Duration = Duration::from_secs(2);
pub const DEFAULT_WRITE_RATE: u32 = 20;
pub const DEFAULT_PROBE_RATE: u32 = 10;
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_PROBE_CLIENTS: u32 = 4;
/// The most prober clients a drill may ask for.
pub const MAX_PROBE_CLIENTS: u32 = 16;
pub const DEFAULT_CANARY_TABLE: &str = "meridian_canary";
/// The highest rate either canary accepts (a drill measures, it does not load-test).
pub const MAX_CANARY_RATE: u32 = 200;
