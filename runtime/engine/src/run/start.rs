//! Starting one step: its `if:` condition, its approval gate, its matrix legs, and spawning each
//! leg (or reusing it from an earlier invocation).

use std::sync::Arc;
use std::time::Duration;

use meridian_model::{MatrixAxis, Step};
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::context::{component, eval_with};
use super::leg::Attempt;
use super::runner::{LegDone, Runner, StepState};
use super::{DEFAULT_STEP_TIMEOUT, LegReport, PLAN_PASSES_GATES, RunError, display_id};
use crate::event::{Event, Outcome};
use crate::executor::{Action, Mode, StepError, StepRequest};
use crate::retry;

impl Runner {
    pub(super) async fn start_step(&mut self, i: usize, needs: &[Outcome]) -> Result<(), RunError> {
        let wf = self.wf.clone();
        let step = &wf.steps[i];
        if !self.replays(i) && !self.admit(i, needs).await? {
            return Ok(());
        }
        let legs = match self.expand_matrix(i, step) {
            Ok(l) => l,
            Err(msg) => {
                self.finish_without_legs(i, Outcome::Failure, msg)?;
                return Ok(());
            }
        };
        // As GitHub Actions does: a matrix of no legs is an error, not a step that did nothing
        // and succeeded (a region list that came out empty must not pass for a deployment).
        if legs.is_empty() {
            self.finish_without_legs(
                i,
                Outcome::Failure,
                "strategy.matrix gives no legs (an axis is an empty list, or every combination is excluded): the step would do nothing; give each axis a value, or skip the step with `if:`",
            )?;
            return Ok(());
        }
        let n = legs.len();
        self.states[i] = StepState::Running {
            legs: vec![None; n],
            pending: n,
        };
        let step_sem = step
            .matrix
            .as_ref()
            .and_then(|m| m.max_parallel)
            .map(|p| Arc::new(Semaphore::new(p.max(1))));
        for (li, (key, matrix)) in legs.into_iter().enumerate() {
            self.spawn_leg(i, li, key, matrix, step_sem.clone())?;
        }
        Ok(())
    }

    /// Step `i` does not run, for `reason`: `step-skipped`, and its report.
    fn skip(&mut self, i: usize, reason: String) -> Result<bool, RunError> {
        self.emit(Event::StepSkipped {
            step: self.wf.steps[i].id.value.clone(),
            reason: reason.clone(),
        })?;
        self.finish_without_legs(i, Outcome::Skipped, reason)?;
        Ok(false)
    }

    /// Whether step `i` runs: its `if:` (or, without one, success so far and of its needs),
    /// then its approval gate. A step that does not run ends here (skipped, failed, or blocked
    /// on its gate).
    async fn admit(&mut self, i: usize, needs: &[Outcome]) -> Result<bool, RunError> {
        let wf = self.wf.clone();
        let step = &wf.steps[i];
        let id = step.id.value.clone();
        // A cancelled run starts nothing more, whatever its `if:` says (a step made ready by a
        // replayed one after a cancel before the run went on).
        if self.cancelled || self.opts.cancel.is_cancelled() {
            return self.skip(i, "the run was cancelled".to_string());
        }
        let needs_ok = needs.iter().all(|o| *o == Outcome::Success);
        let default_ok = !self.failed && !self.cancelled && needs_ok;
        let run_it = match &step.condition {
            None => Ok(default_ok),
            // Read per leg, once the legs exist (`leg_condition`); here only what holds for
            // the whole step: its needs and the run so far, unless a status function decides.
            Some(c) if step.if_per_leg() => Ok(c.value.uses_status_function() || default_ok),
            Some(c) => match c.value.eval(&self.ctx(i, None)) {
                Ok(v) => {
                    let t = meridian_model::expr::Expr::truthy(&v);
                    Ok(if c.value.uses_status_function() {
                        t
                    } else {
                        default_ok && t
                    })
                }
                Err(e) => Err(format!("if: {e}")),
            },
        };
        let run_it = match run_it {
            Ok(b) => b,
            Err(msg) => {
                self.finish_without_legs(i, Outcome::Failure, msg)?;
                return Ok(false);
            }
        };
        if !run_it {
            let reason = if !needs_ok {
                "a needed step did not succeed".to_string()
            } else if self.failed {
                "an earlier step failed".to_string()
            } else {
                format!(
                    "condition `{}` is false",
                    step.condition
                        .as_ref()
                        .map(|c| c.value.source())
                        .unwrap_or("success()")
                )
            };
            return self.skip(i, reason);
        }

        if let Some(approval) = &step.approval {
            let already = self.opts.approvals.get(&id).cloned();
            let rejected = self.opts.rejections.get(&id).cloned();
            let message = approval
                .message
                .as_ref()
                .and_then(|m| m.eval(&self.ctx(i, None)).ok())
                .map(|v| match v {
                    Json::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_else(|| format!("run step `{id}`?"));
            let message = self.masker.mask_str(&message);
            if let Some((by, comment)) = rejected {
                let reason = match comment.is_empty() {
                    true => format!("approval rejected by {by}"),
                    false => format!("approval rejected by {by}: {comment}"),
                };
                self.emit(Event::ApprovalRejected {
                    step: id.clone(),
                    by,
                    comment,
                })?;
                self.finish_without_legs(i, Outcome::Failure, reason)?;
                return Ok(false);
            } else if let Some(by) = already {
                self.emit(Event::ApprovalGranted {
                    step: id.clone(),
                    by,
                })?;
            } else if self.opts.mode == Mode::Plan {
                // A plan changes nothing, so it does not stop at a gate: it goes on to plan
                // what lies beyond, and says where a run will wait.
                self.emit(Event::ApprovalGranted {
                    step: id.clone(),
                    by: PLAN_PASSES_GATES.into(),
                })?;
            } else if let Some(approver) = self.opts.approver.clone() {
                self.emit(Event::ApprovalRequired {
                    step: id.clone(),
                    message: message.clone(),
                })?;
                let answer = match approval.timeout {
                    Some(t) => tokio::time::timeout(t, approver.ask(&id, &message))
                        .await
                        .unwrap_or(false),
                    None => approver.ask(&id, &message).await,
                };
                if answer {
                    self.emit(Event::ApprovalGranted {
                        step: id.clone(),
                        by: "terminal".into(),
                    })?;
                } else {
                    self.finish_without_legs(i, Outcome::Failure, "approval denied")?;
                    return Ok(false);
                }
            } else {
                self.emit(Event::ApprovalRequired {
                    step: id.clone(),
                    message,
                })?;
                self.states[i] = StepState::Blocked;
                return Ok(false);
            }
        }

        Ok(true)
    }

    /// Whether a leg of step `si` runs, by the step's `if:` when it reads `matrix` (see
    /// [`Step::if_per_leg`]): evaluated with the leg's values. Without such an `if:`, every
    /// leg runs.
    fn leg_condition(&self, si: usize, matrix: &Json) -> Result<bool, String> {
        let step = &self.wf.steps[si];
        match step.condition.as_ref().filter(|_| step.if_per_leg()) {
            None => Ok(true),
            Some(c) => c
                .value
                .eval(&self.ctx(si, Some(matrix)))
                .map(|v| meridian_model::expr::Expr::truthy(&v))
                .map_err(|e| format!("if: {e}")),
        }
    }

    /// The legs of a step: `("", {})` without a matrix.
    fn expand_matrix(&self, si: usize, step: &Step) -> Result<Vec<(String, Json)>, String> {
        let Some(m) = &step.matrix else {
            return Ok(vec![(String::new(), json!({}))]);
        };
        let mut axes: Vec<(String, Vec<Json>)> = Vec::new();
        for (name, axis) in &m.axes {
            let values = match axis {
                MatrixAxis::Values(v) => v.clone(),
                MatrixAxis::Expr(t) => {
                    match self.granted_only(si, &mut self.ctx(si, None), |c| t.value.eval(c)) {
                        Ok(Json::Array(v)) => v,
                        Ok(other) => {
                            return Err(format!(
                                "strategy.matrix.{name}: `{}` gave {other}, expected a list",
                                t.value.raw()
                            ));
                        }
                        Err(e) => return Err(format!("strategy.matrix.{name}: {e}")),
                    }
                }
            };
            axes.push((name.clone(), values));
        }
        Ok(m.legs_with(&axes)
            .into_iter()
            .map(|l| (l.key, Json::Object(l.values)))
            .collect())
    }

    /// A leg whose end is known without running it (from the journal, cancelled, refused its
    /// input): booked through the same channel as the legs that run.
    fn decided(&mut self, si: usize, li: usize, report: LegReport) {
        self.tasks.spawn(async move {
            LegDone {
                step: si,
                leg: li,
                report,
            }
        });
    }

    fn spawn_leg(
        &mut self,
        si: usize,
        li: usize,
        key: String,
        matrix: Json,
        step_sem: Option<Arc<Semaphore>>,
    ) -> Result<(), RunError> {
        let step = &self.wf.steps[si];
        let id = step.id.value.clone();
        // A leg that succeeded, or failed in a step the run carries on past, stands; any other
        // earlier end (failure, cancellation) runs again — unless the step is replayed
        // (`Runner::replays`): then its failures stand too and its other legs end cancelled.
        let replays = self.replays(si);
        if let Some(prior) = self.opts.prior.get(&(id.clone(), key.clone()))
            && (prior.outcome == Outcome::Success
                || (prior.outcome == Outcome::Failure && (step.continue_on_error || replays)))
        {
            let report = LegReport {
                key,
                matrix,
                outcome: prior.outcome,
                attempts: prior.attempts,
                duration: prior.duration,
                output: prior.output.clone(),
                plan: prior.plan.clone(),
                error: prior.error.clone(),
                reused: true,
            };
            self.decided(si, li, report);
            return Ok(());
        }
        if replays {
            let report = LegReport::ended(key, matrix, 0, Duration::ZERO, StepError::Cancelled);
            self.decided(si, li, report);
            return Ok(());
        }
        match self.leg_condition(si, &matrix) {
            Ok(true) => {}
            Ok(false) => {
                self.decided(si, li, LegReport::skipped(key, matrix));
                return Ok(());
            }
            Err(msg) => {
                let error = StepError::InvalidInput(self.masker.mask_str(&msg));
                let report = LegReport::ended(key, matrix, 0, Duration::ZERO, error);
                self.decided(si, li, report);
                return Ok(());
            }
        }
        let mut ctx = self.ctx(si, Some(&matrix));
        let display = display_id(&id, &key);
        let prepared = component(step).and_then(|uses| {
            let input = self.granted_only(si, &mut ctx, |c| eval_with(&step.with, c))?;
            Ok((uses, input, self.resolve_grants(step, &ctx)?))
        });
        let (uses, input, grants) = match prepared {
            Ok(p) => p,
            Err(msg) => {
                let report = LegReport::ended(
                    key,
                    matrix,
                    0,
                    Duration::ZERO,
                    StepError::InvalidInput(self.masker.mask_str(&msg)),
                );
                self.decided(si, li, report);
                return Ok(());
            }
        };
        let earlier = self
            .opts
            .earlier
            .get(&(id.clone(), key.clone()))
            .copied()
            .unwrap_or_default();
        let req = StepRequest {
            run_id: self.opts.run_id.clone(),
            idempotency_key: format!("{}/{}", self.opts.run_id, display),
            step_id: display,
            uses,
            action: Action::Run,
            mode: self.opts.mode,
            input,
            attempt: earlier.next(),
            grants,
            limits: step.limits.clone(),
            timeout: step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
            mask: self.masker.values().to_vec(),
            log: meridian_protocol::LogTap::default(),
        };
        let policy = step.retry.clone().unwrap_or_else(retry::no_retry);
        let cancel = CancellationToken::new();
        self.inflight.insert((si, li), cancel.clone());
        // A leg that can act waits until the results it was given are durable; one that only
        // computes starts while the journal flushes them.
        let durable = match &self.opts.sink {
            Some(sink) if req.mode == Mode::Apply && req.grants.can_act() => Some(sink.durable()),
            _ => None,
        };
        let attempt = Attempt {
            exec: self.exec.clone(),
            durable,
            sink: self.opts.sink.clone(),
            masker: self.masker.clone(),
            cancel,
            permits: self.permits.clone(),
            step_sem,
        };
        let step_name = id;
        self.tasks.spawn(async move {
            let report = attempt
                .run_leg(&step_name, key, matrix, req, &policy, earlier)
                .await;
            LegDone {
                step: si,
                leg: li,
                report,
            }
        });
        Ok(())
    }
}
