//! The runner: starts, resumes and retries workflow runs over a [`Journal`], and judges a
//! drill's measurements against its targets. The CLI parses arguments and prints what this
//! returns; `meridian serve` uses the same calls.
//!
//! What a run needs besides the workflow — inputs, secret values, approvals, a view of its
//! events — comes in a [`Launch`] or a [`Resume`]; everything that must survive the process (the
//! inputs as given, `--max-parallel`, `--timeout`, approvals) is written into the journal's
//! [`RunSettings`] when the run starts and read back on every resume.

pub mod canary;
pub mod drift;
pub mod drill;
mod error;
pub mod evidence;
pub mod files;
pub mod git;
pub mod history;
pub mod inputs;
mod json_keys;
mod pins;
pub mod ready;
mod run;
pub mod secrets;
pub mod validate;

pub use drill::{DrillFigure, DrillVerdict, Overall, Verdict};
pub use error::RunnerError;
pub use run::{
    Decision, Finished, Launch, Loaded, Resume, Resumed, Runner, StepRunner, ViewFactory,
    check_inputs, legs_at_once, load, new_run_id,
};

pub use meridian_engine::RunCancel;
pub use meridian_store::{Journal, RunSettings};
