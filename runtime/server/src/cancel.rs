//! Cancelling runs: here when this server drives the run; else through the journal, where the
//! server that holds the run's lease finds the request when it renews its leases (every third
//! of a lease) and cancels the run there — so a cancel sent to any server of a journal, and a
//! schedule's `overlap: cancel-previous`, reach the run wherever it is driven.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::{Event, RunStatus};
use meridian_store::RunSummary;
use meridian_store::pending::now_ms;

use crate::Server;
use crate::api::ApiError;

/// What [`Server::cancel_run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Stopped here (a run waiting for an approval, driven nowhere, resumed here to be
    /// stopped); `ended`: the run ended within the wait, else its compensation goes on.
    Here { ended: bool },
    /// Another server drives the run: asked through the journal; `driver` (its lease holder)
    /// cancels it within a third of a lease.
    Requested { driver: Option<String> },
}

/// How long a cancel request waits for the run to end (its legs cancelled, what completed
/// compensated) before it answers `cancelling` and lets the run finish on its own.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

impl Server {
    /// Cancels a run, saying `why` (who asked) in its end. A run this server drives is stopped
    /// as the engine stops one: its legs in flight cancelled, what completed compensated, then
    /// `run-finished: cancelled`. A run waiting for an approval is resumed here to be cancelled
    /// the same way (its finished steps compensated, nothing else run); a run another server
    /// drives is asked of that server through the journal. Until 2026-12-05 a cancel dropped the
    /// run where it stood: a failover cancelled at its gate left the primary fenced.
    pub async fn cancel_run(
        self: &Arc<Self>,
        run_id: &str,
        why: &str,
    ) -> Result<Cancelled, ApiError> {
        let journal = self.runner.journal();
        let (record, summary) = journal.run(run_id).map_err(|e| ApiError::from_store(&e))?;
        let active = self
            .active
            .lock()
            .unwrap()
            .get(run_id)
            .map(|a| a.cancel.clone());
        let stoppable = matches!(
            summary.status,
            RunStatus::Running | RunStatus::AwaitingApproval
        );
        if active.is_none() && !stoppable {
            return Err(ApiError::conflict(format!(
                "run {run_id} has already ended ({})",
                summary.status.as_str()
            )));
        }
        if active.is_none() && summary.status == RunStatus::Running {
            let driver = journal.lease_holder(run_id).ok().flatten();
            if record.settings.trigger.is_none() {
                // A person's `meridian run`: no server drives it or will take it over.
                return Err(ApiError::conflict(format!(
                    "run {run_id} was started with `meridian run`{}, not by a server: stop that process (Ctrl-C)",
                    driver
                        .map(|d| format!(" (`{d}` drives it)"))
                        .unwrap_or_default()
                )));
            }
            journal
                .request_cancel(run_id, why)
                .map_err(|e| ApiError::from_store(&e))?;
            return Ok(Cancelled::Requested { driver });
        }
        match active {
            Some(cancel) => cancel.cancel(why),
            None => {
                // Waiting at a gate, driven nowhere: resumed here to be compensated and ended.
                // One that cannot go on (its workflow file changed) is ended in the journal.
                if let Err(e) = self.runner.check_resumable(run_id) {
                    self.end_uncompensated(&record, &summary, why, &e)?;
                    return Ok(Cancelled::Here { ended: true });
                }
                let cancel = meridian_runner::RunCancel::new();
                cancel.cancel(why);
                self.resume_run(
                    run_id,
                    &summary.workflow,
                    crate::runs::schedule_of(&record),
                    Vec::new(),
                    cancel,
                )?;
            }
        }
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while self.active.lock().unwrap().contains_key(run_id) {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Cancelled::Here { ended: false });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Cancelled::Here { ended: true })
    }

    /// Ends a run asked to be cancelled that cannot go on, not even to be compensated (its
    /// workflow file changed since it started): `cancelled`, saying that nothing was undone.
    pub(crate) fn end_uncompensated(
        self: &Arc<Self>,
        record: &meridian_store::RunRecord,
        summary: &RunSummary,
        why: &str,
        cannot: &meridian_runner::RunnerError,
    ) -> Result<(), ApiError> {
        let why = format!(
            "{why} (nothing compensated: {}; undo its finished steps by hand)",
            cannot.one_line()
        );
        self.journal_end(&record.id, summary, RunStatus::Cancelled, &why)?;
        self.metrics
            .run_ended(&summary.workflow, RunStatus::Cancelled);
        if let Some(id) = crate::runs::schedule_of(record) {
            self.schedule_run_ended(&id, &record.id, RunStatus::Cancelled, "cancelled");
        }
        Ok(())
    }

    /// Journals run `run_id`'s end (cancelled, or failed when it cannot go on), saying `why`.
    pub(crate) fn journal_end(
        &self,
        run_id: &str,
        summary: &RunSummary,
        status: RunStatus,
        why: &str,
    ) -> Result<(), ApiError> {
        let elapsed = (now_ms() - summary.created_at_ms).max(0) as u64;
        self.runner
            .journal()
            .sink(run_id)
            .and_then(|s| {
                s.emit(&Event::RunFinished {
                    status,
                    duration: Duration::from_millis(elapsed),
                    message: why.to_string(),
                })
                .map_err(|e| meridian_store::StoreError::Backend(e.to_string()))
            })
            .map_err(|e| ApiError::from_store(&e))
    }

    /// Cancels the runs this server drives whose cancellation was asked of another server (one
    /// journal query for all of them).
    pub(crate) async fn cancel_requested(self: &Arc<Self>) {
        let ids: Vec<String> = self.active.lock().unwrap().keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let requests = match self.runner.journal().cancel_requests(&ids) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the cancellations asked of this server's runs: {e}");
                return;
            }
        };
        for (id, why) in requests {
            if !self.active.lock().unwrap().contains_key(&id) {
                continue;
            }
            tracing::info!(run = %id, "cancelling the run as asked through the journal: {why}");
            // Not awaited here: the lease loop that asks must go on renewing leases while the
            // run's compensation runs.
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.cancel_run(&id, &why).await {
                    tracing::warn!(run = %id, "cannot cancel the run: {}", e.message);
                }
            });
        }
    }
}
