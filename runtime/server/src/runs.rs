//! Runs the server starts, resumes, cancels and answers approvals for. Every run goes through
//! the same [`Runner`] and journal as `meridian run`; the server only keeps in memory which runs
//! it is driving right now (to cancel them, and to wait for them on shutdown).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::{Event, EventSink, Mode, RunStatus, SinkError};
use meridian_runner::{Decision, Finished, Launch, Resume, Resumed, RunCancel, RunnerError};
use tokio::task::JoinHandle;

use crate::Server;
use crate::api::ApiError;
use crate::notify::Note;

/// See [`Server::lease_check`].
pub(crate) struct CheckLease<'a> {
    server: &'a Server,
    run_id: String,
}

impl Drop for CheckLease<'_> {
    fn drop(&mut self) {
        self.server.checks.lock().unwrap().remove(&self.run_id);
        self.server.release(&self.run_id);
    }
}

/// A run this server is driving now.
pub(crate) struct Active {
    pub workflow: String,
    /// The schedule that started it, if one did.
    pub schedule: Option<String>,
    pub handle: JoinHandle<()>,
    /// Cancels the run the way the engine stops one: legs in flight cancelled, what completed
    /// compensated, the run ended `cancelled`.
    pub cancel: RunCancel,
}

/// How long a start request's `Idempotency-Key` holds its run.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a start request asked for, as its `Idempotency-Key`'s claim keeps it in the journal: a
/// retried request must ask for the same. `inputs` is absent from the claims carried over from
/// runs journaled before claims existed (a run keeps its inputs merged with the inputs file,
/// and masked): those are not compared.
#[derive(serde::Serialize, serde::Deserialize)]
struct Asked {
    workflow: String,
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<BTreeMap<String, String>>,
}

/// Where [`Server::begin_start`] left a start request.
enum Begun {
    /// A retried request (same `Idempotency-Key`): the run it started.
    Known(String),
    /// A new run; `rx` answers once it is journaled (or why it was refused).
    New {
        run_id: String,
        rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
        key: Option<String>,
    },
}

/// What starts a run.
pub struct StartRequest {
    pub workflow: String,
    pub mode: Mode,
    /// Inputs given with the request, over the workflow's inputs file (server config).
    pub inputs: BTreeMap<String, String>,
    /// `api` or `schedule:ID`.
    pub trigger: String,
    pub schedule: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Server {
    /// Starts a run in the background and returns its id once the run is in the journal.
    /// Inputs, the steps' `with:` and the secrets are checked first, so a request the run
    /// would refuse is answered 400 and journals nothing.
    pub async fn start_run(self: &Arc<Self>, req: StartRequest) -> Result<String, ApiError> {
        let (run_id, rx, key) = match self.begin_start(req)? {
            Begun::Known(id) => return Ok(id),
            Begun::New { run_id, rx, key } => (run_id, rx, key),
        };
        match rx.await {
            Ok(Ok(())) => Ok(run_id),
            Ok(Err(e)) => {
                if let Some(key) = &key {
                    self.release_key(key, &run_id);
                }
                Err(ApiError::bad_request(e))
            }
            Err(_) => Err(ApiError::internal("the run's task ended before it started")),
        }
    }

    /// The synchronous part of [`Server::start_run`]: no lock is held across an await.
    fn begin_start(self: &Arc<Self>, req: StartRequest) -> Result<Begun, ApiError> {
        if self.draining() {
            return Err(ApiError::unavailable(
                "the server is shutting down and starts no new runs",
            ));
        }
        // The key is claimed in the journal for the new run id before anything else: among
        // every server of the journal, exactly one request with a new key starts a run, and
        // a retry (here or through another server) is answered the run it started.
        let run_id = meridian_runner::new_run_id();
        let claimed = req.idempotency_key.clone();
        if let Some(key) = &claimed
            && let Some(known) = self.claim_key(key, &run_id, &req)?
        {
            return Ok(Begun::Known(known));
        }
        let begun = self.begin_claimed(req, run_id.clone());
        if let (Some(key), Err(_)) = (&claimed, &begun) {
            self.release_key(key, &run_id);
        }
        begun
    }

    /// Claims `key` for `run_id`: `None` when taken; the run of the request that claimed it
    /// before when this one asks for the same; else 422.
    fn claim_key(
        &self,
        key: &str,
        run_id: &str,
        req: &StartRequest,
    ) -> Result<Option<String>, ApiError> {
        let asked = Asked {
            workflow: req.workflow.clone(),
            mode: req.mode,
            inputs: Some(req.inputs.clone()),
        };
        let claim = meridian_store::KeyClaim {
            run_id: run_id.to_string(),
            request: serde_json::to_string(&asked).unwrap_or_default(),
            claimed_at_ms: 0,
        };
        let journal = self.runner.journal();
        let Some(held) = journal
            .claim_key(key, &claim, IDEMPOTENCY_TTL)
            .map_err(|e| ApiError::from_store(&e))?
        else {
            return Ok(None);
        };
        let first: Option<Asked> = serde_json::from_str(&held.request).ok();
        let same = first.as_ref().is_some_and(|f| {
            f.workflow == asked.workflow
                && f.mode == asked.mode
                && f.inputs
                    .as_ref()
                    .is_none_or(|i| Some(i) == asked.inputs.as_ref())
        });
        if same {
            return Ok(Some(held.run_id));
        }
        // The key is namespaced by the caller (`NAME\0KEY`): the caller's part only.
        let given = key.split_once('\0').map_or(key, |(_, k)| k);
        let (workflow, mode, other_inputs) = match &first {
            Some(f) => (
                f.workflow.as_str(),
                f.mode.as_str(),
                f.workflow == asked.workflow && f.mode == asked.mode,
            ),
            None => ("?", "?", false),
        };
        Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key `{given}` started run {} of `{workflow}` ({mode}){}; a retried request must ask for the same — use a new key for a new request",
                held.run_id,
                if other_inputs {
                    " with other inputs"
                } else {
                    ""
                }
            ),
        ))
    }

    /// Gives back a key whose run could not start (a retry may then try again).
    fn release_key(&self, key: &str, run_id: &str) {
        if let Err(e) = self.runner.journal().release_key(key, run_id) {
            tracing::warn!("cannot release an Idempotency-Key of run {run_id}: {e}");
        }
    }

    /// [`Server::begin_start`] once the key, if any, is claimed for `run_id`.
    fn begin_claimed(
        self: &Arc<Self>,
        req: StartRequest,
        run_id: String,
    ) -> Result<Begun, ApiError> {
        let loaded = {
            let catalog = self.catalog.read().unwrap();
            catalog.get(&req.workflow).cloned().ok_or_else(|| {
                match catalog.refusal(&req.workflow) {
                    Some(why) => ApiError::bad_request(format!(
                        "workflow `{}` is not in service: {why}",
                        req.workflow
                    )),
                    None => ApiError::not_found(format!("no workflow `{}`", req.workflow)),
                }
            })?
        };
        let mut raw = self.file_inputs(&loaded.workflow).map_err(|e| {
            ApiError::internal(format!(
                "the server's inputs file for `{}`: {e}",
                req.workflow
            ))
        })?;
        raw.extend(req.inputs);
        meridian_runner::check_inputs(&loaded.workflow, &raw)
            .map_err(|e| ApiError::bad_request(e.one_line()))?;
        // One drill at a time: two break the same region twice and measure each other.
        if req.mode == Mode::Apply && loaded.workflow.drill.is_some() {
            let journal = self.runner.journal();
            let going =
                meridian_runner::history::drill_going(&**journal, &req.workflow, &|_| false)
                    .map_err(|e| ApiError::from_store(&e))?;
            if let Some((id, _)) = going {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    format!(
                        "run {id} of `{}` is drilling now; two drills at once break the same region twice, and each measures the other's failover: wait for it to end, or cancel it",
                        req.workflow
                    ),
                ));
            }
        }
        let idempotency_key = req.idempotency_key;
        // The lease first: a server looking for interrupted runs must never find this one
        // running with no lease, between its record and its lease.
        self.lease(&run_id)?;

        let server = self.clone();
        let id = run_id.clone();
        let workflow = req.workflow.clone();
        let schedule = req.schedule.clone();
        // Answered once the run is in the journal, or with why it could not start.
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let created = tx.clone();
        let cancel = RunCancel::new();
        let launch = Launch {
            cancel: Some(cancel.clone()),
            mode: req.mode,
            raw_inputs: raw,
            secrets_file: self.config.secrets_file.clone(),
            view: Some(self.view(&workflow, true)),
            run_id: Some(run_id.clone()),
            trigger: Some(req.trigger),
            idempotency_key: idempotency_key.clone(),
            on_created: Some(Box::new(move || {
                if let Some(t) = created.lock().unwrap().take() {
                    let _ = t.send(Ok(()));
                }
            })),
            // Its writes stop counting the moment another server takes the run over.
            lease_owner: Some(self.name.clone()),
            ..Launch::default()
        };
        let mut active = self.active.lock().unwrap();
        let handle = tokio::spawn(async move {
            let result = server.runner.start(&loaded, launch).await;
            if let Err(e) = &result
                && let Some(t) = tx.lock().unwrap().take()
            {
                // Refused before it was recorded: there is no run to report on.
                server.active.lock().unwrap().remove(&id);
                let _ = t.send(Err(e.one_line()));
                return;
            }
            server.ended(&id, &result.map(Some));
        });
        active.insert(
            run_id.clone(),
            Active {
                workflow,
                schedule,
                handle,
                cancel,
            },
        );
        Ok(Begun::New {
            run_id,
            rx,
            key: idempotency_key,
        })
    }

    /// The inputs the server config's inputs file gives a workflow (only those it declares).
    pub(crate) fn file_inputs(
        &self,
        wf: &meridian_model::Workflow,
    ) -> Result<BTreeMap<String, String>, RunnerError> {
        match self.config.workflow_inputs.get(&wf.name) {
            Some(file) => meridian_runner::inputs::from_file_for(wf, file),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Takes (or renews) this server's lease on driving `run_id`; a conflict when another
    /// server holds it.
    fn lease(&self, run_id: &str) -> Result<(), ApiError> {
        match self
            .runner
            .journal()
            .lease_run(run_id, &self.name, self.config.run_lease)
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::conflict(format!(
                "run {run_id} is driven by another server sharing this journal"
            ))),
            Err(e) => Err(ApiError::from_store(&e)),
        }
    }

    /// A new check run (readiness, drift) under this server's lease, so that a takeover pass
    /// never resumes it while it runs here; renewed with the other runs, given up when the guard
    /// drops. The launch's run id and lease owner are set.
    pub(crate) fn lease_check(&self, launch: &mut Launch) -> Result<CheckLease<'_>, String> {
        let run_id = meridian_runner::new_run_id();
        self.lease(&run_id).map_err(|e| e.message)?;
        self.checks.lock().unwrap().insert(run_id.clone());
        launch.run_id = Some(run_id.clone());
        launch.lease_owner = Some(self.name.clone());
        Ok(CheckLease {
            server: self,
            run_id,
        })
    }

    /// Gives up the lease on a run this server no longer drives.
    pub(crate) fn release(&self, run_id: &str) {
        if let Err(e) = self.runner.journal().release_run(run_id, &self.name) {
            tracing::warn!(run = %run_id, "cannot release the run's lease (it expires by itself): {e}");
        }
    }

    /// Resumes a run in the background (after an approval, or an interrupted run), once this
    /// server holds its lease.
    pub(crate) fn resume_run(
        self: &Arc<Self>,
        run_id: &str,
        workflow: &str,
        schedule: Option<String>,
        decisions: Vec<Decision>,
        cancel: RunCancel,
    ) -> Result<(), ApiError> {
        self.lease(run_id)?;
        let server = self.clone();
        let id = run_id.to_string();
        let view_for = workflow.to_string();
        let run_cancel = cancel.clone();
        let mut active = self.active.lock().unwrap();
        let handle = tokio::spawn(async move {
            let sink = server.view(&view_for, false);
            let resume = Resume {
                secrets_file: server.config.secrets_file.clone(),
                view: Some(Box::new(move |_| sink)),
                decisions,
                lease_owner: Some(server.name.clone()),
                cancel: Some(run_cancel),
                ..Resume::default()
            };
            let result = server.runner.resume(&id, resume).await.map(|r| match r {
                Resumed::Ran(f) => Some(f),
                Resumed::AlreadySucceeded => None,
            });
            server.ended(&id, &result);
        });
        active.insert(
            run_id.to_string(),
            Active {
                workflow: workflow.to_string(),
                schedule,
                handle,
                cancel,
            },
        );
        Ok(())
    }

    /// A run's task ended: bookkeeping, metrics, notifications, and the schedule that started
    /// it (which may have a tick queued behind it).
    fn ended(self: &Arc<Self>, run_id: &str, result: &Result<Option<Finished>, RunnerError>) {
        let active = self.active.lock().unwrap().remove(run_id);
        // Ended, waiting for an approval, or stopped by a shutdown: another server may go on.
        self.release(run_id);
        let workflow = active
            .as_ref()
            .map(|a| a.workflow.clone())
            .unwrap_or_default();
        let schedule = active.and_then(|a| a.schedule);
        self.ended_as(run_id, &workflow, schedule, result);
    }

    /// [`Server::ended`] for a run of `workflow` (started by `schedule`) this server is done with.
    pub(crate) fn ended_as(
        self: &Arc<Self>,
        run_id: &str,
        workflow: &str,
        schedule: Option<String>,
        result: &Result<Option<Finished>, RunnerError>,
    ) {
        let workflow = workflow.to_string();
        let (status, message) = match result {
            Ok(Some(f)) => (f.report.status, with_errors(f)),
            Ok(None) => (RunStatus::Succeeded, "already succeeded".to_string()),
            Err(e) => (RunStatus::Failed, e.one_line()),
        };
        // A stop at a gate is not an end: counted, the run counted twice once approved.
        if status != RunStatus::AwaitingApproval {
            self.metrics.run_ended(&workflow, status);
        }
        let note = match status {
            RunStatus::Succeeded => Some("run.succeeded"),
            RunStatus::AwaitingApproval => Some("run.awaiting-approval"),
            RunStatus::Failed | RunStatus::TimedOut => Some("run.failed"),
            // Who cancelled it and why are in the message; a schedule's `cancel-previous` too.
            RunStatus::Cancelled => Some("run.cancelled"),
            RunStatus::Running => None,
        };
        if let Some(kind) = note {
            let mut n = Note::run(kind, &workflow, run_id, status, &message);
            n.commit = self.git_commit_of(run_id);
            self.notify(n);
        }
        // A drill is judged once its run ended for good: a stop at a gate is not an end (its
        // figures are not measured yet: it sent "drill incomplete" at every gate), and a run
        // an operator cancelled was stopped on purpose; a plan measures nothing.
        let judged = matches!(
            status,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::TimedOut
        );
        if let Ok(Some(f)) = result
            && let Some(d) = &f.drill
            && judged
            && f.report.mode == meridian_protocol::Mode::Apply
        {
            self.metrics.drill(&workflow, d);
            let missed: Vec<String> = d
                .figures
                .iter()
                .filter(|f| f.verdict() != meridian_runner::Verdict::Met && f.target.is_some())
                .map(|f| match (f.achieved, f.target) {
                    (Some(a), Some(t)) => {
                        format!("{} {a} {u} (target {t} {u})", f.name, u = f.unit)
                    }
                    (None, Some(t)) => format!("{} not measured (target {t} {})", f.name, f.unit),
                    _ => f.name.to_string(),
                })
                .collect();
            if !missed.is_empty() {
                // A figure not measured misses its target too, but is not a slow failover: the
                // message says which the drill was (the API's verdict: `incomplete`).
                let measured = d
                    .figures
                    .iter()
                    .any(|f| f.verdict() == meridian_runner::Verdict::Missed);
                let what = if measured {
                    "drill targets missed"
                } else {
                    "drill incomplete, targets not measured"
                };
                self.notify(Note::run(
                    "drill.missed",
                    &workflow,
                    run_id,
                    status,
                    &format!("{what}: {}", missed.join(", ")),
                ));
            }
        }
        if let Some(id) = schedule {
            self.schedule_run_ended(&id, run_id, status, &message);
        }
    }

    /// Approves or rejects the approval gate a run waits at, then resumes the run.
    pub fn decide(self: &Arc<Self>, run_id: &str, decision: Decision) -> Result<(), ApiError> {
        // An approval drives the run on from here: not on a server that is shutting down.
        if self.draining() {
            return Err(ApiError::unavailable(
                "the server is shutting down and takes no approvals; approve through another server of the same journal, or once this one is back",
            ));
        }
        let journal = self.runner.journal();
        let (record, summary) = journal.run(run_id).map_err(|e| ApiError::from_store(&e))?;
        if summary.status != RunStatus::AwaitingApproval
            || self.active.lock().unwrap().contains_key(run_id)
        {
            return Err(ApiError::conflict(format!(
                "run {run_id} is not waiting for an approval (it is {})",
                summary.status.as_str()
            )));
        }
        let events = journal
            .events(run_id)
            .map_err(|e| ApiError::from_store(&e))?;
        let waiting = waiting_gates(events.iter().map(|e| &e.event));
        // A step the run's workflow does not have is not there to decide (404); one it has
        // that does not wait now is a conflict with the run's state (409).
        let known = self
            .catalog
            .read()
            .unwrap()
            .get(&summary.workflow)
            .is_none_or(|l| l.workflow.steps.iter().any(|s| s.id.value == decision.step));
        if !known && !waiting.contains(&decision.step) {
            return Err(ApiError::not_found(format!(
                "run {run_id}'s workflow `{}` has no step `{}`; it waits at: {}",
                summary.workflow,
                decision.step,
                if waiting.is_empty() {
                    "no step".to_string()
                } else {
                    waiting.join(", ")
                }
            )));
        }
        if !waiting.contains(&decision.step) {
            return Err(ApiError::conflict(format!(
                "run {run_id} is not waiting at step `{}`; it waits at: {}",
                decision.step,
                if waiting.is_empty() {
                    "no step".to_string()
                } else {
                    waiting.join(", ")
                }
            )));
        }
        // Said to the approver now: the run cannot go on, and keeps waiting (an approval
        // answered 202 and then did nothing, the run still waiting).
        self.runner.check_resumable(run_id).map_err(|e| {
            ApiError::conflict(format!(
                "run {run_id} cannot go on: {}; restore the workflow file as it was, or cancel the run",
                e.one_line()
            ))
        })?;
        self.resume_run(
            run_id,
            &summary.workflow,
            schedule_of(&record),
            vec![decision],
            RunCancel::new(),
        )
    }

    /// Renews the leases of the runs this server drives, and takes over the interrupted runs
    /// whose lease expired: a killed server's runs (or, after a restart, its own) go on from
    /// here within about one lease. Every third of a lease, until the server drains.
    pub(crate) async fn lease_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.run_lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.renew_leases();
            // Cancellations other servers were asked for, of runs this one drives.
            self.cancel_requested().await;
            // Draining (SIGTERM): the runs still going within `grace` keep their leases — the
            // loop used to end here, and a peer took over a run this server was still driving,
            // its writes then refused ("lost the run's lease"). Nothing more is taken over.
            if self.draining() {
                if self.active.lock().unwrap().is_empty() && self.checks.lock().unwrap().is_empty()
                {
                    return;
                }
                continue;
            }
            if self.config.resume_interrupted {
                match self.take_over() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("resumed {n} interrupted run(s)"),
                    Err(e) => tracing::warn!("cannot look for interrupted runs: {}", e.message),
                }
            }
        }
    }

    /// Renews this server's leases; a run whose lease another server took (this one stalled
    /// longer than a lease) is stopped here, as if this server had been killed.
    ///
    /// One commit (one round trip) for all of them: `Journal::renew_runs`.
    fn renew_leases(&self) {
        let mut ids: Vec<String> = self.active.lock().unwrap().keys().cloned().collect();
        // A check whose lease is lost simply fails: its journal writes are refused.
        ids.extend(self.checks.lock().unwrap().iter().cloned());
        if ids.is_empty() {
            return;
        }
        let journal = self.runner.journal();
        match journal.renew_runs(&ids, &self.name, self.config.run_lease) {
            Ok(lost) => {
                for id in lost {
                    tracing::warn!(run = %id, "another server took the run over; stopping it here");
                    if let Some(a) = self.active.lock().unwrap().remove(&id) {
                        // Its steps' tasks are the new driver's now: dropping the run here
                        // cancelled the task the new driver had re-attached to, and the run
                        // there ended with the step cancelled.
                        self.runner.abandon(&id);
                        a.handle.abort();
                    }
                }
            }
            Err(e) => tracing::warn!("cannot renew the leases of {} run(s): {e}", ids.len()),
        }
    }

    /// Resumes the interrupted runs servers started whose lease expired (or that never had
    /// one). Runs a person started with `meridian run` are left to that person.
    pub(crate) fn take_over(self: &Arc<Self>) -> Result<usize, ApiError> {
        let journal = self.runner.journal();
        let mut n = 0;
        // One query: server-started running runs without a live lease (not every running run).
        let orphaned = journal
            .orphaned_runs(1_000)
            .map_err(|e| ApiError::from_store(&e))?;
        for s in orphaned {
            if self.draining() {
                break;
            }
            if self.active.lock().unwrap().contains_key(&s.id) {
                continue;
            }
            if self.lease(&s.id).is_err() {
                continue; // driven by a live server
            }
            // Read again under the lease: the run may have ended since the listing (its
            // server writes the end before it lets the lease go), and resuming an ended run
            // would retry its failed steps.
            let (record, summary) = journal.run(&s.id).map_err(|e| ApiError::from_store(&e))?;
            if summary.status != RunStatus::Running {
                self.release(&s.id);
                continue;
            }
            // Someone asked for it to be cancelled while its server was gone.
            let cancelling = journal
                .cancel_requests(std::slice::from_ref(&s.id))
                .map_err(|e| ApiError::from_store(&e))?
                .pop()
                .map(|(_, why)| why);
            // A run whose workflow file changed or went since it started cannot go on: it
            // ends failed, saying why, once — it was tried again on every pass, each try a
            // `run.failed` webhook, while the run stayed `running` forever.
            if let Err(e) = self.runner.check_resumable(&s.id) {
                if let Some(why) = cancelling {
                    // It cannot go on, not even to be compensated: ended as asked.
                    let ended = self.end_uncompensated(&record, &summary, &why, &e);
                    self.release(&s.id);
                    ended?;
                    continue;
                }
                let why = format!(
                    "cannot resume: {}; restore the workflow file as it was and resume the run, or start a new one",
                    e.one_line()
                );
                tracing::warn!(run = %s.id, "an interrupted run cannot go on: {why}");
                let ended = self.journal_end(&s.id, &summary, RunStatus::Failed, &why);
                self.release(&s.id);
                ended?;
                let failed = Err(RunnerError::Invalid(why));
                self.ended_as(&s.id, &s.workflow, schedule_of(&record), &failed);
                continue;
            }
            let cancel = RunCancel::new();
            if let Some(why) = &cancelling {
                // Cancelled while its server was gone: compensated and ended here, not
                // resumed (it used to be marked cancelled, with nothing undone).
                tracing::info!(run = %s.id, "cancelling an interrupted run: {why}");
                cancel.cancel(why);
            } else {
                tracing::info!(run = %s.id, "resuming an interrupted run");
            }
            match self.resume_run(&s.id, &s.workflow, schedule_of(&record), Vec::new(), cancel) {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(run = %s.id, "cannot resume: {}", e.message),
            }
        }
        Ok(n)
    }

    /// The extra event sink of a run: metrics, and `run.started` for a new run (not on each
    /// resume, so a receiver hears of a run's start once).
    fn view(self: &Arc<Self>, workflow: &str, fresh: bool) -> Arc<dyn EventSink> {
        Arc::new(View {
            server: Arc::downgrade(self),
            workflow: workflow.to_string(),
            fresh,
        })
    }
}

/// The schedule that started a run (its trigger `schedule:ID`), if one did.
pub(crate) fn schedule_of(record: &meridian_store::RunRecord) -> Option<String> {
    record
        .settings
        .trigger
        .as_deref()
        .and_then(|t| t.strip_prefix("schedule:"))
        .map(str::to_string)
}

/// The gates a run's events show waiting: an `approval-required` with no answer after it.
/// A failed run's message with why its steps failed (the first three, each cut at 200
/// characters): a `run.failed` webhook that said only "failed: push-config" sent the operator to
/// the console to learn anything. Errors are masked in the report already.
fn with_errors(f: &Finished) -> String {
    let r = &f.report;
    if r.status != RunStatus::Failed {
        return r.message.clone();
    }
    let why: Vec<String> = r
        .steps
        .iter()
        .filter(|s| s.outcome == meridian_protocol::Outcome::Failure)
        .filter_map(|s| {
            let text = s.reason.clone().or_else(|| {
                s.legs
                    .iter()
                    .find_map(|l| l.error.as_ref().map(ToString::to_string))
            })?;
            let cut: String = text.chars().take(200).collect();
            let more = if cut.len() < text.len() { "…" } else { "" };
            Some(format!("{}: {cut}{more}", s.id))
        })
        .take(3)
        .collect();
    match why.is_empty() {
        true => r.message.clone(),
        false => format!("{} ({})", r.message, why.join("; ")),
    }
}

pub(crate) fn waiting_gates<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<String> {
    let mut waiting: Vec<String> = Vec::new();
    for e in events {
        match e {
            Event::ApprovalRequired { step, .. } if !waiting.contains(step) => {
                waiting.push(step.clone());
            }
            Event::ApprovalGranted { step, .. } | Event::ApprovalRejected { step, .. } => {
                waiting.retain(|s| s != step);
            }
            _ => {}
        }
    }
    waiting
}

struct View {
    server: std::sync::Weak<Server>,
    workflow: String,
    fresh: bool,
}

impl EventSink for View {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        let Some(server) = self.server.upgrade() else {
            return Ok(());
        };
        match event {
            Event::LegFinished { duration, .. } => server.metrics.step_finished(*duration),
            Event::RunStarted { run_id, .. } if self.fresh => server.notify(Note::run(
                "run.started",
                &self.workflow,
                run_id,
                RunStatus::Running,
                "",
            )),
            _ => {}
        }
        Ok(())
    }
}
