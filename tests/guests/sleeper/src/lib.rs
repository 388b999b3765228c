//! Sleeps `with.ms`, optionally appending `<step id> <attempt> <idempotency key>` to
//! `with.record` (a file in a writable preopen) first, so crash/resume tests can count how often
//! each step really ran, and optionally saving `with.save` under the kv key `saved` after the
//! sleep (fencing tests). Outputs `{"slept": ms, "step": id}`.
use std::io::Write;

use meridian_sdk::{Ctx, Error, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// How long to sleep, in milliseconds.
    #[serde(default)]
    pub ms: u64,
    /// A file to append one line to when the step starts.
    #[serde(default)]
    pub record: Option<String>,
    /// A value to save under the kv key `saved` once the sleep is over.
    #[serde(default)]
    pub save: Option<String>,
}

/// Outputs.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Output {
    /// `with.ms`.
    pub slept: u64,
    /// The step id this ran as.
    pub step: String,
}

/// The step.
pub struct Sleeper;

impl Step for Sleeper {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("sleeper", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let inv = ctx.invocation();
        if let Some(path) = &input.record {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::fatal(format!("open {path}: {e}")))?;
            writeln!(f, "{} {} {}", inv.step_id, inv.attempt, inv.idempotency_key)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::fatal(format!("write {path}: {e}")))?;
        }
        std::thread::sleep(std::time::Duration::from_millis(input.ms));
        if let Some(value) = &input.save {
            ctx.kv().set("saved", value.as_bytes())?;
        }
        Ok(Output {
            slept: input.ms,
            step: inv.step_id.clone(),
        })
    }
}

meridian_sdk::export_step!(Sleeper);
