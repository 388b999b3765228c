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
    /// Stopped here, or (waiting for an approval, driven nowhere) ended in the journal.
    Here,
    /// Another server drives the run: asked through the journal; `driver` (its lease holder)
    /// cancels it within a third of a lease.
    Requested { driver: Option<String> },
}

impl Server {
    /// Cancels a run, saying `why` (who asked) in its end. A run this server drives is stopped
    /// (its in-flight steps are dropped, as when a runner is killed), then `run-finished:
    /// cancelled` is journaled; a run waiting for an approval is cancelled in the journal
    /// alone; a run another server drives is asked of that server through the journal.
    pub async fn cancel_run(
        self: &Arc<Self>,
        run_id: &str,
        why: &str,
    ) -> Result<Cancelled, ApiError> {
        let journal = self.runner.journal();
        let (record, summary) = journal.run(run_id).map_err(|e| ApiError::from_store(&e))?;
        let active = self.active.lock().unwrap().remove(run_id);
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
        let schedule = active.as_ref().and_then(|a| a.schedule.clone());
        let workflow = active
            .as_ref()
            .map(|a| a.workflow.clone())
            .unwrap_or(summary.workflow.clone());
        if let Some(a) = active {
            a.handle.abort();
            let _ = a.handle.await;
            self.release(run_id);
        }
        self.journal_end(run_id, &summary, RunStatus::Cancelled, why)?;
        self.metrics.run_ended(&workflow, RunStatus::Cancelled);
        if let Some(id) = schedule {
            self.schedule_run_ended(&id, run_id, RunStatus::Cancelled, "cancelled");
        }
        Ok(Cancelled::Here)
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
            if let Err(e) = self.cancel_run(&id, &why).await {
                tracing::warn!(run = %id, "cannot cancel the run: {}", e.message);
            }
        }
    }
}
