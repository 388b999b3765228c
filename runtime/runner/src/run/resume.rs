//! Resuming a run: what the journal says stands, what runs again, and the checks before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meridian_engine::{PriorLeg, RunOptions};
use meridian_model::Workflow;
use meridian_protocol::{Outcome, RunStatus};
use meridian_store::LegRecord;

use super::{Resume, Resumed, Runner, StepRunner, check_approvals, prior_canary};
use crate::{RunnerError, secrets};

impl Runner {
    /// Resumes an interrupted, failed or waiting run: finished legs come from the journal, the
    /// rest run again with the same idempotency keys. With `from`, retries that step and every
    /// step that needs it.
    pub async fn resume(&self, run_id: &str, resume: Resume) -> Result<Resumed, RunnerError> {
        let (record, summary) = self.journal.run(run_id)?;
        let mut wf = self.resumable_workflow(run_id, &record)?;
        if resume.from.is_none() && summary.status == RunStatus::Succeeded {
            return Ok(Resumed::AlreadySucceeded);
        }
        // The code the run started with: its tags at the digests they named then, and for a
        // resume its files unchanged (a retry runs the files as they are: a fixed step).
        if let StepRunner::Local(local) = &self.steps {
            wf.workflow = Arc::new(crate::pins::for_resume(
                run_id,
                &wf.workflow,
                &record.settings.components,
                local.allows_unpinned(),
                resume.from.is_none(),
            )?);
        }
        let workflow = wf.workflow.clone();
        let settings = record.settings;
        if let Some(step) = &resume.from {
            if workflow.step(step).is_none() {
                return Err(RunnerError::Invalid(format!(
                    "run {run_id}'s workflow has no step `{step}`"
                )));
            }
            let again: Vec<String> = dependents(&workflow, step).into_iter().collect();
            self.journal.forget_legs(run_id, &again)?;
        }
        check_approvals(&workflow, "--approve", &resume.approve)?;
        let rejected: Vec<String> = resume
            .decisions
            .iter()
            .filter(|d| !d.approve)
            .map(|d| d.step.clone())
            .collect();
        check_approvals(&workflow, "--reject", &rejected)?;
        let secrets = secrets::load(&workflow, resume.secrets_file.as_deref()).map_err(|e| {
            // Secrets are never journaled; the file the run was started with is named.
            match (&settings.secrets_file, &resume.secrets_file, e) {
                (Some(file), None, RunnerError::Problems(mut p)) => {
                    p.push(format!(
                        "run {run_id} was started with --secrets-file {file}: give it again"
                    ));
                    RunnerError::Problems(p)
                }
                (_, _, e) => e,
            }
        })?;
        let inputs = meridian_engine::inputs::resolve(&workflow, &settings.raw_inputs)
            .map_err(RunnerError::Problems)?;
        let mut opts = RunOptions::new(run_id);
        opts.started_at_ms = summary.created_at_ms.max(0) as u64;
        opts.mode = record.mode;
        opts.inputs = inputs;
        opts.secrets = secrets;
        // Who approved: the journal (an approval given once stands), then this resume's.
        let mut approvals: BTreeMap<String, String> =
            self.journal.approvals(run_id)?.into_iter().collect();
        for step in resume.approve.iter().chain(&settings.approve) {
            approvals
                .entry(step.clone())
                .or_insert_with(|| "--approve".to_string());
        }
        for d in resume.decisions {
            let by = d.by.clone();
            if d.approve {
                let by = match d.comment.is_empty() {
                    true => by,
                    false => format!("{by}: {}", d.comment),
                };
                approvals.insert(d.step, by);
            } else {
                approvals.remove(&d.step);
                opts.rejections.insert(d.step, (by, d.comment));
            }
        }
        opts.approvals = approvals;
        opts.approver = resume.approver;
        if let Some(c) = resume.cancel {
            opts.cancel = c;
        }
        opts.prior = self
            .journal
            .legs(run_id)?
            .into_iter()
            .filter(finished_for_good)
            .map(|l| {
                (
                    (l.step, l.leg),
                    PriorLeg {
                        outcome: l.outcome,
                        attempts: l.attempts,
                        output: l.output,
                        plan: l.plan,
                        duration: l.duration,
                        error: l.error,
                    },
                )
            })
            .collect();
        let events = self.journal.events(run_id)?;
        opts.earlier = earlier_attempts(&events);
        // Its last invocation stopped at a gate: what failed before it stays failed (see
        // `keep_failures`), also when a resume of it was killed since.
        opts.keep_failures = events.iter().rev().find_map(|e| match &e.event {
            meridian_engine::Event::RunFinished { status, .. } => Some(*status),
            _ => None,
        }) == Some(RunStatus::AwaitingApproval);
        let prior = prior_canary(&events);
        self.journal.reopen_run(run_id)?;
        let view = resume.view.map(|make| make(&workflow));
        let owner = resume.lease_owner.as_deref();
        self.execute(&wf, opts, &settings, view, Some(prior), owner)
            .await
            .map(Resumed::Ran)
    }
}

impl Runner {
    /// Whether run `run_id` can be resumed as far as its workflow goes (see
    /// [`Runner::resume`]): a server asks before it answers an approval or takes a run over,
    /// so a run that cannot go on is said at once, not found failing on every try.
    pub fn check_resumable(&self, run_id: &str) -> Result<(), RunnerError> {
        let (record, _) = self.journal.run(run_id)?;
        self.resumable_workflow(run_id, &record).map(drop)
    }
}

/// The attempts earlier invocations began of each leg (see
/// [`meridian_engine::EarlierAttempts`]): a resumed leg numbers on after them. Every leg's,
/// the finished ones' too: a failed leg the engine runs again (a failed run's
/// resume) numbers on after its failed attempts instead of starting at 1 again, which read as
/// if nothing had been tried; a leg whose result stands never reads its entry.
fn earlier_attempts(
    events: &[meridian_store::EventRecord],
) -> std::collections::HashMap<(String, String), meridian_engine::EarlierAttempts> {
    let mut out = std::collections::HashMap::new();
    for e in events {
        let (step, leg, attempt, failed) = match &e.event {
            meridian_engine::Event::AttemptStarted {
                step, leg, attempt, ..
            } => (step, leg, *attempt, false),
            meridian_engine::Event::AttemptFailed {
                step, leg, attempt, ..
            } => (step, leg, *attempt, true),
            _ => continue,
        };
        let key = (step.clone(), leg.clone());
        let a: &mut meridian_engine::EarlierAttempts = out.entry(key).or_default();
        a.last = a.last.max(attempt);
        a.failed += u32::from(failed);
    }
    out
}

/// Whether a journaled leg may stand on resume; the engine decides which of these it reuses
/// (a success, or a failure under `continue-on-error`).
fn finished_for_good(l: &LegRecord) -> bool {
    matches!(l.outcome, Outcome::Success | Outcome::Failure)
}

/// `step` and every step that (transitively) needs it.
fn dependents(wf: &Workflow, step: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::from([step.to_string()]);
    loop {
        let before = out.len();
        for s in &wf.steps {
            if s.needs.iter().any(|n| out.contains(&n.value)) {
                out.insert(s.id.value.clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}
