//! The test steps every crate's tests share (feature `testkit`): `uses:` names answered by plain
//! Rust instead of Wasm, so the engine's, the queue's and the workers' tests describe the same
//! behaviour once.
//!
//! - `test-ok`: returns `{"echo": with}`.
//! - `test-sleep`: returns `{"slept": ms, "echo": with}` (the caller sleeps `with.ms` first).
//! - `test-fail`: fails with `with.message` (default `boom`) as `with.kind` — `retryable`,
//!   `invalid`, `cancelled` (the executor says the attempt was cancelled), anything else fatal.
//! - `test-flaky`: fails retryably until attempt `with.succeed_on` (default 2), then returns
//!   `{"attempt": n}`.
//!
//! Each logs `with.log` (a string), if given, as one guest line, failed or not.

use serde_json::{Value as Json, json};

use crate::{AttemptError, StepError, StepRequest, StepResult};

/// `with.ms`, the time a test step sleeps before it answers (0 when absent).
pub fn sleep_ms(req: &StepRequest) -> u64 {
    req.input.get("ms").and_then(Json::as_u64).unwrap_or(0)
}

/// The answer of the test step `req.uses` (after its sleep).
pub fn respond(req: &StepRequest) -> Result<StepResult, AttemptError> {
    let logs: Vec<meridian_protocol::LogLine> = req
        .input
        .get("log")
        .and_then(Json::as_str)
        .map(|m| meridian_protocol::LogLine {
            level: meridian_protocol::Level::Info,
            source: meridian_protocol::LogSource::Guest,
            message: m.to_string(),
            fields: Vec::new(),
        })
        .into_iter()
        .collect();
    answer(req)
        .map(|r| StepResult {
            logs: logs.clone(),
            ..r
        })
        .map_err(|e| AttemptError { logs, ..e })
}

fn answer(req: &StepRequest) -> Result<StepResult, AttemptError> {
    let ok = |output: Json| {
        Ok(StepResult {
            output,
            ..Default::default()
        })
    };
    match req.uses.builtin_name().unwrap_or("") {
        "test-ok" => ok(json!({"echo": req.input})),
        "test-sleep" => ok(json!({"slept": sleep_ms(req), "echo": req.input})),
        "test-fail" => {
            let msg = req
                .input
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("boom")
                .to_string();
            Err(match req.input.get("kind").and_then(Json::as_str) {
                Some("retryable") => StepError::Retryable(msg),
                Some("invalid") => StepError::InvalidInput(msg),
                // What a queue answers for a task another process cancelled.
                Some("cancelled") => StepError::Cancelled,
                _ => StepError::Fatal(msg),
            }
            .into())
        }
        "test-flaky" => {
            let on = req
                .input
                .get("succeed_on")
                .and_then(Json::as_u64)
                .unwrap_or(2) as u32;
            if req.attempt >= on {
                ok(json!({"attempt": req.attempt}))
            } else {
                Err(StepError::Retryable(format!("not yet ({})", req.attempt)).into())
            }
        }
        _ => Err(StepError::Fatal(format!("unknown test step {}", req.uses)).into()),
    }
}
