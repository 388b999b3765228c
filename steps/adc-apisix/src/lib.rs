//! `adc-apisix`: the Meridian step that pushes gateway configuration written in ADC's
//! declarative format (API7's "API Declarative CLI") to Apache APISIX, API7 EE or APISIX
//! standalone — ADC re-implemented in Rust, because ADC itself cannot run inside a sandboxed
//! WebAssembly step (domain.md §0).
//!
//! The pipeline, one module each:
//! - [`yaml`]: YAML/JSON text → positioned tree (`${NAME}` substituted per scalar) → serde, with
//!   `line:col` on every error;
//! - [`schema`]: the strict ADC file format and its semantic checks;
//! - [`load`]: several files → one [`load::Config`], duplicates named with both places;
//! - [`ids`], [`model`]: ADC's deterministic ids, and resources as APISIX objects;
//! - [`remote`]: the gateway's current state; [`compare`] + [`differ`]: defaults-aware
//!   comparison and ADC-ordered events; [`apply`]: events → Admin API writes;
//! - [`dump`]: gateway state → ADC file; [`sync`]: the whole run, behind the SDK's
//!   [`meridian_sdk::http::Transport`];
//! - [`step`]: the component glue over `meridian-sdk` (HTTP, secrets, plan mode, errors).
//!
//! Everything runs (and is tested) on the host; the SDK's WIT imports are only reached inside
//! the component. The input/output contract is documented in the crate's README.

pub mod apply;
pub mod client;
pub mod compare;
pub mod differ;
pub mod dump;
pub mod error;
pub mod ids;
pub mod load;
pub mod model;
pub mod remote;
pub mod schema;
pub mod step;
pub mod sync;
pub mod yaml;

pub use error::{ErrorKind, SyncError};
pub use sync::{Backend, Input, Mode, Output, Runtime, run};

meridian_sdk::export_step!(step::AdcApisix);
