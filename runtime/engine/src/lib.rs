//! The Meridian engine: runs a validated workflow's steps as a DAG through an [`Executor`].
//!
//! The engine knows nothing of WebAssembly: the sandbox is one `Executor`, the engine's own tests
//! use plain Rust ones. Everything that happens is an [`Event`]; the terminal view, JSON output and
//! the durable journal consume the same stream through an [`EventSink`].

pub mod event;
pub mod executor;
pub mod inputs;
pub mod retry;
pub mod run;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use event::{Event, EventSink, Outcome, RunStatus, SinkError};
pub use executor::{
    Action, AttemptError, Executor, FsPreopen, Mode, ResolvedGrants, StepError, StepRequest,
    StepResult,
};
pub use meridian_protocol::{ComponentRef, Masker, OriginPattern, PlannedChange};
pub use run::{
    Approver, CompensationReport, EarlierAttempts, LegReport, PLAN_PASSES_GATES, PriorLeg,
    RunCancel, RunError, RunOptions, RunReport, StepReport, run,
};
