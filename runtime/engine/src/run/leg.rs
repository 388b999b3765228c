//! One leg's task: waits for its permits, then runs its attempts with timeouts and retries.

use std::sync::Arc;
use std::time::Duration;

use meridian_model::RetryPolicy;
use meridian_protocol::{LogTap, Masker};
use serde_json::Value as Json;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LegReport;
use crate::event::{Event, EventSink, Outcome};
use crate::executor::{Executor, StepError, StepRequest, StepResult};
use crate::retry;

/// What one leg's task needs, detached from the runner.
pub(super) struct Attempt {
    pub(super) exec: Arc<dyn Executor>,
    /// What the leg waits for before its first attempt: the journal's word that the results
    /// it reads are durable (`EventSink::durable`), for a leg that can act.
    pub(super) durable: Option<meridian_protocol::event::Durable>,
    pub(super) sink: Option<Arc<dyn EventSink>>,
    pub(super) masker: Masker,
    pub(super) cancel: CancellationToken,
    pub(super) permits: Arc<Semaphore>,
    pub(super) step_sem: Option<Arc<Semaphore>>,
}

impl Attempt {
    #[allow(clippy::needless_pass_by_value)] // call sites build the event inline
    fn emit(&self, ev: Event) {
        if let Some(s) = &self.sink
            && let Err(e) = s.emit(&ev)
        {
            // The runner sees the same sink fail on LegFinished and stops the run there.
            tracing::error!("{e}");
        }
    }

    pub(super) async fn run_leg(
        mut self,
        step: &str,
        key: String,
        matrix: Json,
        mut req: StepRequest,
        policy: &RetryPolicy,
        earlier: super::EarlierAttempts,
    ) -> LegReport {
        // A leg's duration is its own work, from its first attempt's start (see
        // `Event::LegFinished`): a leg that ends before any attempt took no time.
        let cancelled = |attempts: u32, duration: Duration, key: String, matrix: Json| {
            LegReport::ended(key, matrix, attempts, duration, StepError::Cancelled)
        };
        // Hold a step-level permit (matrix max-parallel) and a run-level one for the whole leg.
        let _step_permit = match &self.step_sem {
            Some(s) => tokio::select! {
                p = s.clone().acquire_owned() => p.ok(),
                _ = self.cancel.cancelled() => return cancelled(0, Duration::ZERO, key, matrix),
            },
            None => None,
        };
        let _permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = self.cancel.cancelled() => return cancelled(0, Duration::ZERO, key, matrix),
        };
        let prepared = tokio::select! {
            r = self.exec.prepare(&req.uses) => r,
            _ = self.cancel.cancelled() => return cancelled(0, Duration::ZERO, key, matrix),
        };
        if let Err(e) = prepared {
            return LegReport::ended(key, matrix, 0, Duration::ZERO, mask_error(&self.masker, e));
        }
        if let Some(durable) = self.durable.take() {
            let synced = tokio::select! {
                r = durable => r,
                _ = self.cancel.cancelled() => return cancelled(0, Duration::ZERO, key, matrix),
            };
            if let Err(e) = synced {
                let e = StepError::Fatal(format!("not started: {e}"));
                return LegReport::ended(key, matrix, 0, Duration::ZERO, e);
            }
        }
        // Not earlier: waiting for the permits above is queueing, and preparing the step
        // (compiling its component on a cold cache) is not an attempt; counting either made the
        // reported duration disagree with the attempt timeline.
        let started = Instant::now();
        // A resumed leg goes on from its earlier attempts; those that failed count against its
        // retries, and it runs at least once.
        let mut attempt = earlier.next();
        let attempts = (earlier.failed + policy.attempts.max(1)).max(attempt);
        loop {
            req.attempt = attempt;
            self.emit(Event::AttemptStarted {
                step: step.to_string(),
                leg: key.clone(),
                attempt,
                idempotency_key: req.idempotency_key.clone(),
                input: self.masker.mask_json(&req.input),
            });
            let timeout = req.timeout;
            req.log = LogTap::default();
            let fut = self.exec.execute(req.clone());
            let mut result = tokio::select! {
                r = tokio::time::timeout(timeout, fut) => r.unwrap_or_else(|_| Err(StepError::Timeout(timeout).into())),
                _ = self.cancel.cancelled() => Err(StepError::Cancelled.into()),
            };
            // What the attempt logged, failed or not: a failed attempt's lines go out before
            // its failure (bounded and masked the same way), and a dropped one's (cancelled,
            // timed out by the engine) are those its tap holds.
            let logs = attempt_logs(&req.log, &mut result);
            if !logs.is_empty() {
                self.emit(Event::StepLog {
                    step: step.to_string(),
                    leg: key.clone(),
                    attempt,
                    lines: journal_lines(&self.masker, &logs),
                    compensation: false,
                });
            }
            let result = result.map_err(|f| f.error);
            match result {
                Ok(StepResult { output, plan, .. }) => {
                    return LegReport {
                        key,
                        matrix,
                        outcome: Outcome::Success,
                        attempts: attempt,
                        duration: started.elapsed(),
                        output: self.masker.mask_json(&output),
                        plan: plan.into_iter().map(|p| p.masked(&self.masker)).collect(),
                        error: None,
                        reused: false,
                    };
                }
                Err(StepError::Cancelled) if self.cancel.is_cancelled() => {
                    return cancelled(attempt, started.elapsed(), key, matrix);
                }
                Err(e) => {
                    // Cancelled by the executor while this run did not cancel it (a queue's
                    // task cancelled by another coordinator): not the run's cancellation, a
                    // failed attempt — taken as cancelled, the leg let the run succeed with
                    // the step never done.
                    let e = match e {
                        StepError::Cancelled => StepError::Retryable(
                            "the attempt was cancelled outside this run (its task was cancelled by another process)"
                                .into(),
                        ),
                        e => e,
                    };
                    let e = mask_error(&self.masker, host_paths(e, &req.grants.fs));
                    let retry = attempt < attempts && retry::retries(policy, &e);
                    let wait = retry.then(|| retry::delay(policy, attempt + 1));
                    self.emit(Event::AttemptFailed {
                        step: step.to_string(),
                        leg: key.clone(),
                        attempt,
                        error: e.clone(),
                        retry_in: wait,
                    });
                    let Some(wait) = wait else {
                        return LegReport::ended(key, matrix, attempt, started.elapsed(), e);
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => return cancelled(attempt, started.elapsed(), key, matrix),
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// An attempt's lines: those still in its tap (all of them when the attempt was dropped),
/// then those its result carries.
pub(super) fn attempt_logs(
    tap: &LogTap,
    result: &mut Result<StepResult, crate::executor::AttemptError>,
) -> Vec<meridian_protocol::LogLine> {
    let mut logs = tap.take();
    logs.append(match result {
        Ok(r) => &mut r.logs,
        Err(f) => &mut f.logs,
    });
    logs
}

/// A step names the files of its preopened directories by their path inside the sandbox
/// (`/config/lab.yaml:38:9: unknown field`): said with the directory on this machine instead
/// (`/srv/flows/adc/lab.yaml:38:9: …`), the file a person edits.
pub(super) fn host_paths(e: StepError, fs: &[crate::executor::FsPreopen]) -> StepError {
    let dirs: Vec<(String, String)> = fs
        .iter()
        .filter(|p| p.guest.trim_end_matches('/').len() > 1)
        .map(|p| {
            (
                format!("{}/", p.guest.trim_end_matches('/')),
                format!("{}/", p.host.display().to_string().trim_end_matches('/')),
            )
        })
        .collect();
    if dirs.is_empty() {
        return e;
    }
    e.map_text(|t| {
        dirs.iter()
            .fold(t, |t, (guest, host)| t.replace(guest.as_str(), host))
    })
}

pub(super) fn mask_error(m: &Masker, e: StepError) -> StepError {
    e.map_text(|t| m.mask_string(t))
}

/// What an attempt logged as the journal keeps it: bounded (see
/// [`meridian_protocol::log::bound_lines`]) and masked.
pub(super) fn journal_lines(
    masker: &meridian_protocol::Masker,
    logs: &[meridian_protocol::LogLine],
) -> Vec<meridian_protocol::LogLine> {
    meridian_protocol::log::bound_lines(logs.to_vec())
        .into_iter()
        .map(|mut l| {
            l.message = masker.mask_string(l.message);
            l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::FsPreopen;

    #[test]
    fn a_preopened_file_is_named_by_its_path_on_this_machine() {
        let fs = [FsPreopen {
            host: "/srv/flows/adc".into(),
            guest: "/config".into(),
            writable: false,
        }];
        let e = StepError::InvalidInput("/config/lab.yaml:38:9: unknown field `timeoutz`".into());
        assert_eq!(
            host_paths(e, &fs).to_string(),
            StepError::InvalidInput(
                "/srv/flows/adc/lab.yaml:38:9: unknown field `timeoutz`".into()
            )
            .to_string()
        );
        // `/configs/x` is not under `/config`, and a step without preopens is left as it is.
        let e = StepError::Fatal("/configs/x".into());
        assert_eq!(host_paths(e.clone(), &fs).to_string(), e.to_string());
        assert_eq!(host_paths(e.clone(), &[]).to_string(), e.to_string());
    }
}
