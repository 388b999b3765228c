//! Compensation: after a failed apply run, undoes completed legs in reverse completion order.

use meridian_model::Compensate;

use super::context::{component, eval_with};
use super::leg::{attempt_logs, journal_lines, mask_error};
use super::runner::{Runner, StepState};
use super::{CompensationReport, DEFAULT_STEP_TIMEOUT, RunError, display_id};
use crate::event::{Event, Outcome};
use crate::executor::{Action, StepError, StepRequest};

impl Runner {
    /// Undoes completed legs in reverse completion order.
    pub(super) async fn compensate(&mut self) -> Result<Vec<CompensationReport>, RunError> {
        let mut out = Vec::new();
        let completed = std::mem::take(&mut self.completed);
        // An undo acts: what it undoes, and the failure that asks for it, are durable first.
        if let Some(sink) = &self.opts.sink
            && self.opts.mode == crate::executor::Mode::Apply
            && !completed.is_empty()
        {
            sink.durable().await?;
        }
        for (si, li) in completed.into_iter().rev() {
            let wf = self.wf.clone();
            let step = &wf.steps[si];
            if matches!(step.compensate, Compensate::None) {
                continue;
            }
            let StepState::Done(report) = &self.states[si] else {
                continue;
            };
            let Some(leg) = report.legs.get(li).cloned() else {
                continue;
            };
            let mut ctx = self.ctx(si, Some(&leg.matrix));
            let display = display_id(&step.id.value, &leg.key);
            let prepared = match &step.compensate {
                Compensate::Export => component(step).and_then(|uses| {
                    self.granted_only(si, &mut ctx, |c| eval_with(&step.with, c))
                        .map(|input| (uses, Action::Compensate, input))
                }),
                Compensate::Step {
                    component, with, ..
                } => self
                    .granted_only(si, &mut ctx, |c| eval_with(with, c))
                    .map(|input| (component.clone(), Action::Run, input)),
                Compensate::None => unreachable!(),
            };
            let result = match prepared.and_then(|p| Ok((p, self.resolve_grants(step, &ctx)?))) {
                Err(msg) => Err(StepError::InvalidInput(msg)),
                Ok(((uses, action, input), grants)) => {
                    let req = StepRequest {
                        run_id: self.opts.run_id.clone(),
                        idempotency_key: format!("{}/{}/compensate", self.opts.run_id, display),
                        // The step's own `compensate` export sees the step id it ran under, so
                        // state it kept under that id (e.g. in kv) is found again.
                        step_id: if action == Action::Compensate {
                            display.clone()
                        } else {
                            format!("{display}:compensate")
                        },
                        uses,
                        action,
                        mode: self.opts.mode,
                        input,
                        attempt: 1,
                        grants,
                        limits: step.limits.clone(),
                        timeout: step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
                        mask: self.masker.values().to_vec(),
                        log: meridian_protocol::LogTap::default(),
                    };
                    // Retried as the step's own attempts are (`retry:`): an undo that hit a
                    // transient error must not leave the world half changed. What each attempt
                    // logged is journaled as a run attempt's is, marked as the compensation's.
                    let policy = step.retry.clone().unwrap_or_else(crate::retry::no_retry);
                    let attempts = policy.attempts.max(1);
                    let mut req = req;
                    loop {
                        let timeout = req.timeout;
                        req.log = meridian_protocol::LogTap::default();
                        let mut result =
                            tokio::time::timeout(timeout, self.exec.execute(req.clone()))
                                .await
                                .unwrap_or_else(|_| Err(StepError::Timeout(timeout).into()));
                        let logs = attempt_logs(&req.log, &mut result);
                        if !logs.is_empty() {
                            self.emit(Event::StepLog {
                                step: step.id.value.clone(),
                                leg: leg.key.clone(),
                                attempt: req.attempt,
                                lines: journal_lines(&self.masker, &logs),
                                compensation: true,
                            })?;
                        }
                        match result.map(|_| ()).map_err(|f| f.error) {
                            Err(e)
                                if req.attempt < attempts && crate::retry::retries(&policy, &e) =>
                            {
                                tokio::time::sleep(crate::retry::delay(&policy, req.attempt + 1))
                                    .await;
                                req.attempt += 1;
                            }
                            done => break done,
                        }
                    }
                }
            };
            let (outcome, error) = match result {
                Ok(()) => (Outcome::Success, None),
                Err(e) => (Outcome::Failure, Some(mask_error(&self.masker, e))),
            };
            let action = match step.compensate {
                Compensate::Export => Action::Compensate,
                _ => Action::Run,
            };
            self.emit(Event::Compensation {
                step: step.id.value.clone(),
                leg: leg.key.clone(),
                action,
                outcome,
                error: error.clone(),
            })?;
            out.push(CompensationReport {
                step: step.id.value.clone(),
                leg: leg.key,
                outcome,
                error,
            });
        }
        Ok(out)
    }
}
