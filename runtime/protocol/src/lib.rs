//! The protocol between Meridian's crates: the values that cross a crate boundary, defined once.
//!
//! The workflow model, the engine, the Wasm sandbox, the journals (SQLite and PostgreSQL), the
//! distributed queue and the CLI all speak these types; none of them re-reads a value another
//! built as a string or JSON object by key name. This crate depends on no other Meridian crate,
//! so every side can depend on it without pulling in wasmtime, YAML or a database driver.
//!
//! | module | what crosses |
//! | --- | --- |
//! | [`component`] | what `uses:` names ([`ComponentRef`]), paths already absolute |
//! | [`event`] | what happens in a run ([`Event`]), how steps and runs end, the [`EventSink`] seam |
//! | [`error`] | why a step attempt failed ([`StepError`]), which the retry policy acts on |
//! | [`grant`] | the capability kinds ([`GrantKind`]) a step asks for and a workflow grants |
//! | [`origin`] | the HTTP grant pattern ([`OriginPattern`]), parsed once and matched everywhere |
//! | [`plan`] | a change recorded in plan mode ([`PlannedChange`]) |
//! | [`log`] | a log line a step wrote ([`LogLine`]) |
//! | [`mask`] | the one secret [`Masker`] |
//! | [`kv`] | the per-run key-value state a step keeps for its compensation ([`KvStore`]) |

/// Serde for a type that travels as its `Display` text and is checked again by `$parse`
/// (`&str -> Result<Self, impl Display>`) when it is read back, so a value off the wire is as
/// valid as one parsed from a workflow.
macro_rules! serde_as_text {
    ($ty:ty, $parse:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                ($parse)(text.as_str())
                    .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
            }
        }
    };
}

pub mod component;
pub mod duration;
pub mod error;
pub mod event;
pub mod grant;
pub mod kv;
pub mod log;
pub mod mask;
pub mod origin;
pub mod plan;
pub mod text;

pub use component::{ComponentRef, ComponentRefError, OCI_SCHEME, Sha256};
pub use error::StepError;
pub use event::{Encoded, Event, EventSink, Outcome, RunStatus, SinkError};
pub use grant::{GrantKind, GrantRequest};
pub use kv::{KvError, KvStore, MemoryKv, ScopedKv};
pub use log::{Level, LogLine, LogSource, LogTap};
pub use mask::Masker;
pub use origin::{OriginError, OriginPattern};
pub use plan::PlannedChange;

use serde::{Deserialize, Serialize};

/// Which export of a step to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `run`: do the step's work.
    Run,
    /// `compensate`: undo a previous `run`.
    Compensate,
}

/// Apply does the work; plan asks the sandbox to record mutations instead of performing them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Perform every effect.
    #[default]
    Apply,
    /// Let reads through; record mutating HTTP requests and SQL writes instead of performing
    /// them; make preopens read-only.
    Plan,
}

impl Mode {
    /// `apply` or `plan`, as stored in journals.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Apply => "apply",
            Mode::Plan => "plan",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "apply" => Ok(Mode::Apply),
            "plan" => Ok(Mode::Plan),
            other => Err(format!("unknown mode `{other}` (apply or plan)")),
        }
    }
}

/// How a leg is shown and keyed: `deploy` for a plain step, `deploy[eu]` for a matrix leg.
pub fn display_id(step: &str, leg: &str) -> String {
    if leg.is_empty() {
        step.to_string()
    } else {
        format!("{step}[{leg}]")
    }
}

/// The idempotency key of one leg of one run: the same for every attempt and every resume, so
/// a step can tell a retry of its own work from new work.
pub fn idempotency_key(run_id: &str, step: &str, leg: &str) -> String {
    format!("{run_id}/{}", display_id(step, leg))
}
