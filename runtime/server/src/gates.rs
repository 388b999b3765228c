//! Approval timeouts: a gate with `approval: {timeout: …}` that nobody answers in time is
//! rejected, and the run takes its failure path (its `if: failure()` steps, then compensation of
//! what completed) — a failover half done must not wait forever for a person, e.g. with the old
//! primary fenced.
//!
//! A sweep every [`SWEEP`] reads the runs waiting for an approval that a server started (runs a
//! person started with `meridian run` wait for that person's `resume`), one indexed query; for
//! each, its events say since when each gate waits. Being a sweep over the journal, it holds
//! across a restart, and servers sharing a journal may both see a gate expire: the first resume
//! takes the run's lease, the second is refused.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::{Event, RunStatus};
use meridian_runner::Decision;
use meridian_store::RunQuery;
use meridian_store::pending::now_ms;

use crate::Server;
use crate::runs::schedule_of;

/// How often waiting gates are checked: a gate's timeout is honoured within this.
const SWEEP: Duration = Duration::from_secs(2);

/// Who rejected a gate nobody answered (the approval's `by`).
pub(crate) const TIMED_OUT_BY: &str = "timeout";

impl Server {
    /// Rejects the gates whose `approval.timeout` passed, until the server drains.
    pub(crate) async fn gate_timeout_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.drain.cancelled() => return,
            }
            if let Err(e) = self.reject_expired_gates() {
                tracing::warn!("cannot check approval timeouts: {e}");
            }
        }
    }

    fn reject_expired_gates(self: &Arc<Self>) -> Result<(), String> {
        let journal = self.runner.journal();
        let waiting = journal
            .query_runs(&RunQuery {
                status: Some(RunStatus::AwaitingApproval),
                limit: 1000,
                ..RunQuery::default()
            })
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        for run in waiting.runs {
            let Some(loaded) = self.catalog.read().unwrap().get(&run.workflow).cloned() else {
                continue;
            };
            let timeouts: Vec<(&str, Duration)> = loaded
                .workflow
                .steps
                .iter()
                .filter_map(|s| {
                    let t = s.approval.as_ref()?.timeout?;
                    Some((s.id.value.as_str(), t))
                })
                .collect();
            if timeouts.is_empty() {
                continue;
            }
            let (record, _) = journal.run(&run.id).map_err(|e| e.to_string())?;
            if record.settings.trigger.is_none() {
                continue;
            }
            let events = journal.events(&run.id).map_err(|e| e.to_string())?;
            let since = waiting_since(events.iter().map(|e| (e.at_ms, &e.event)));
            for (step, at) in since {
                let Some((_, limit)) = timeouts.iter().find(|(s, _)| *s == step) else {
                    continue;
                };
                if now.saturating_sub(at) < limit.as_millis() as i64 {
                    continue;
                }
                let comment = format!(
                    "nobody answered within {}",
                    meridian_protocol::duration::format_duration(*limit)
                );
                tracing::warn!(run = %run.id, step = %step, "approval timed out: {comment}; the gate is rejected");
                // A run that cannot go on (its workflow file changed or went) cannot take its
                // failure path either: it ends failed, once, saying both.
                if let Err(e) = self.runner.check_resumable(&run.id) {
                    let why = format!(
                        "approval of `{step}` timed out ({comment}), and the run cannot go on: {}",
                        e.one_line()
                    );
                    if let Err(e) = self.journal_end(&run.id, &run, RunStatus::Failed, &why) {
                        tracing::warn!(run = %run.id, "cannot end the run: {}", e.message);
                        break;
                    }
                    let failed = Err(meridian_runner::RunnerError::Invalid(why));
                    self.ended_as(&run.id, &run.workflow, schedule_of(&record), &failed);
                    break;
                }
                let decision = Decision {
                    step: step.clone(),
                    approve: false,
                    by: TIMED_OUT_BY.to_string(),
                    comment,
                };
                // Refused when another server was first, or the run is already going on.
                if let Err(e) = self.decide(&run.id, decision) {
                    tracing::debug!(run = %run.id, "approval timeout not applied: {}", e.message);
                }
                // One decision per resume: the next sweep sees the run's new state.
                break;
            }
        }
        Ok(())
    }
}

/// The gates a run waits at, each with when it started waiting (its last `approval-required`).
fn waiting_since<'a>(events: impl Iterator<Item = (i64, &'a Event)>) -> Vec<(String, i64)> {
    let mut waiting: Vec<(String, i64)> = Vec::new();
    for (at, e) in events {
        match e {
            Event::ApprovalRequired { step, .. } => {
                waiting.retain(|(s, _)| s != step);
                waiting.push((step.clone(), at));
            }
            Event::ApprovalGranted { step, .. } | Event::ApprovalRejected { step, .. } => {
                waiting.retain(|(s, _)| s != step);
            }
            _ => {}
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_waits_since_its_last_request_until_answered() {
        let req = |s: &str| Event::ApprovalRequired {
            step: s.into(),
            message: String::new(),
        };
        let granted = Event::ApprovalGranted {
            step: "a".into(),
            by: "x".into(),
        };
        let events = [(1, req("a")), (2, req("b")), (3, granted), (5, req("b"))];
        assert_eq!(
            waiting_since(events.iter().map(|(t, e)| (*t, e))),
            vec![("b".to_string(), 5)]
        );
    }
}
