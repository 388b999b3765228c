//! Shared input/output types of Meridian's step families, and the seams their logic runs on.
//!
//! A *family* is a set of steps that do the same job against different vendors: `gslb-route53`,
//! `gslb-cloudflare` and `gslb-powerdns` all take a [`gslb::GslbInput`] and return a
//! [`gslb::GslbOutput`], so a workflow swaps vendors by changing `uses:` only.
//!
//! The vendor logic is plain Rust over small traits — the SDK's [`meridian_sdk::http::Transport`] for HTTP,
//! [`Secrets`], [`Clock`], [`Log`] — bundled in an [`Env`]. A component wires them to the host
//! interfaces; a host test wires them to fakes ([`testing`]) or to real local services
//! ([`UreqTransport`], feature `ureq`); the component glue over `meridian-sdk` is [`sdk`].
//! Nothing here allocates beyond the data it returns; nothing blocks except
//! `Transport::send` and `Clock::sleep_ms`.

pub mod database;
pub mod env;
pub mod error;
pub mod gslb;
pub mod region;
pub mod sdk;
pub mod testing;
#[cfg(feature = "ureq")]
mod ureq_transport;

pub use env::{Clock, Env, FakeClock, Log, MapSecrets, NoLog, Secrets, StdClock, StderrLog};
pub use error::StepError;
#[cfg(feature = "ureq")]
pub use ureq_transport::UreqTransport;
