//! The runner: schedules the DAG, collects finished legs, finishes steps and the run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_model::expr::{EvalContext, RunStatus as ExprStatus};
use meridian_model::{Step, Workflow};
use meridian_protocol::Masker;
use serde_json::{Map, Value as Json, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::context::step_refs;
use super::{LegReport, RunError, RunOptions, RunReport, StepReport};
use crate::event::{Event, Outcome, RunStatus};
use crate::executor::{Executor, Mode};

pub(super) enum StepState {
    Waiting,
    /// Blocked on approval that nobody can give in this invocation.
    Blocked,
    Running {
        legs: Vec<Option<LegReport>>,
        pending: usize,
    },
    Done(StepReport),
}

pub(super) struct LegDone {
    pub(super) step: usize,
    pub(super) leg: usize,
    pub(super) report: LegReport,
}

pub(super) struct Runner {
    pub(super) wf: Arc<Workflow>,
    pub(super) exec: Arc<dyn Executor>,
    pub(super) opts: RunOptions,
    pub(super) masker: Masker,
    /// `inputs`, `vars`, `secrets`, `run`: what every expression may see.
    pub(super) base: Map<String, Json>,
    /// `steps.<id>` of every finished step.
    pub(super) published: HashMap<String, Json>,
    /// Which finished steps each step's expressions refer to (`None`: all of them), so building
    /// its context copies only those: a cost that does not grow with the run's length.
    pub(super) refs: Vec<Option<BTreeSet<String>>>,
    /// Step id → index.
    pub(super) index: HashMap<String, usize>,
    pub(super) states: Vec<StepState>,
    /// Per step, how many of its `needs` are not done yet.
    unmet: Vec<usize>,
    /// Per step, the steps that need it (once per mention, matching `unmet`).
    dependents: Vec<Vec<usize>>,
    /// Waiting steps whose `needs` are all done, by index: what `start_ready` starts, so
    /// scheduling costs what is ready, not the whole workflow.
    ready: BTreeSet<usize>,
    /// (step index, leg index) in completion order, for compensation.
    pub(super) completed: Vec<(usize, usize)>,
    pub(super) failed: bool,
    /// This resume carries on a run that had failed before it stopped at a gate
    /// ([`RunOptions::keep_failures`]): it starts failed, and the steps that ran before are
    /// replayed as they ended ([`Runner::replays`]).
    pub(super) replay: bool,
    /// Set when the run timed out; no new step starts.
    pub(super) cancelled: bool,
    /// Cancellation of each leg in flight, keyed by (step index, leg index).
    pub(super) inflight: HashMap<(usize, usize), CancellationToken>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) tasks: JoinSet<LegDone>,
    pub(super) started: Instant,
}

/// Why the run loop stopped waiting for legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Cancelled,
}

impl Runner {
    pub(super) fn new(
        wf: Arc<Workflow>,
        exec: Arc<dyn Executor>,
        opts: RunOptions,
    ) -> Result<Self, RunError> {
        let masker = Masker::new(opts.secrets.values().cloned());
        let run = json!({
            "id": opts.run_id,
            "workflow": wf.name,
            "mode": opts.mode,
            "started_at_ms": opts.started_at_ms,
        });
        let base = base_context(&wf, &opts.inputs, &opts.secrets, run)?;
        let n = wf.steps.len();
        let max_parallel = opts.max_parallel.max(1);
        let refs = wf.steps.iter().map(step_refs).collect();
        let index = wf
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.value.clone(), i))
            .collect::<HashMap<_, _>>();
        let mut unmet = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        for (i, step) in wf.steps.iter().enumerate() {
            for need in &step.needs {
                unmet[i] += 1;
                // A need naming no step (the validator rejects it) is never met, so the step
                // never starts.
                if let Some(&d) = index.get(&need.value) {
                    dependents[d].push(i);
                }
            }
        }
        let ready = (0..n).filter(|&i| unmet[i] == 0).collect();
        // Cancelled before it starts: what finished before is replayed (and compensated),
        // nothing else runs.
        let cancelled = opts.cancel.is_cancelled();
        let replay = cancelled || wf.steps.iter().any(|s| kept_failure(&opts, s));
        Ok(Runner {
            exec,
            masker,
            base,
            published: HashMap::new(),
            refs,
            index,
            states: (0..n).map(|_| StepState::Waiting).collect(),
            unmet,
            dependents,
            ready,
            completed: Vec::new(),
            failed: replay,
            replay,
            cancelled,
            inflight: HashMap::new(),
            permits: Arc::new(Semaphore::new(max_parallel)),
            tasks: JoinSet::new(),
            started: Instant::now(),
            wf,
            opts,
        })
    }

    #[allow(clippy::needless_pass_by_value)] // call sites build the event inline
    pub(super) fn emit(&self, ev: Event) -> Result<(), RunError> {
        if let Some(sink) = &self.opts.sink {
            sink.emit(&ev)?;
        }
        Ok(())
    }

    pub(super) async fn run(mut self) -> Result<RunReport, RunError> {
        self.emit(Event::RunStarted {
            run_id: self.opts.run_id.clone(),
            workflow: self.wf.name.clone(),
            mode: self.opts.mode,
            inputs: self
                .masker
                .mask_json(&Json::Object(self.opts.inputs.clone())),
        })?;
        let timeout = self.opts.run_timeout.or(self.wf.timeout);
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut timed_out = false;
        // Cancelled before the run started: nothing is in flight to cancel.
        let mut cancel_seen = self.cancelled;

        loop {
            self.start_ready().await?;
            if self.tasks.is_empty() {
                break;
            }
            let cancel = self.opts.cancel.clone();
            let next = async {
                let joined = async {
                    match deadline {
                        Some(d) => tokio::time::timeout_at(d, self.tasks.join_next())
                            .await
                            .map_err(|_| Stop::TimedOut),
                        None => Ok(self.tasks.join_next().await),
                    }
                };
                // Legs that ended first (their results are booked; a cancel starts nothing
                // new either way, see `admit`).
                tokio::select! {
                    biased;
                    r = joined => r,
                    () = cancel.cancelled(), if !cancel_seen => Err(Stop::Cancelled),
                }
            };
            match next.await {
                Ok(Some(first)) => {
                    let batch = self.with_finished(first);
                    self.legs_done(batch)?;
                }
                Ok(None) => break,
                // An operator's cancel: the legs in flight are cancelled and end on their own
                // (booked as they end); nothing new starts (`admit`); steps made ready by a
                // replayed one are skipped, so every step has its report.
                Err(Stop::Cancelled) => {
                    cancel_seen = true;
                    self.cancelled = true;
                    self.fail_run();
                    for c in self.inflight.values() {
                        c.cancel();
                    }
                }
                Err(Stop::TimedOut) => {
                    timed_out = true;
                    self.cancelled = true;
                    self.fail_run();
                    for c in self.inflight.values() {
                        c.cancel();
                    }
                    // Drain: cancelled legs return promptly.
                    while let Some(first) = self.tasks.join_next().await {
                        let batch = self.with_finished(first);
                        self.legs_done(batch)?;
                    }
                    break;
                }
            }
        }

        // Attempts given up on (timed out, cancelled by fail-fast or the run's timeout) must be
        // stopped where they would run before the run says it ended.
        self.exec.settle().await;
        let awaiting: Vec<String> = self
            .states
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, StepState::Blocked))
            .map(|(i, _)| self.wf.steps[i].id.value.clone())
            .collect();
        // A run that failed and waits at a gate (a cleanup or rollback step's, `if: always()`)
        // has not ended: it is undone once it ends, after that step ran or was refused.
        // Cancelled by an operator (in flight, or before it went on from a gate).
        let cancelled = self.cancelled && !timed_out;
        let compensations = if self.failed
            && self.opts.mode == Mode::Apply
            && (timed_out || cancelled || awaiting.is_empty())
        {
            self.compensate().await?
        } else {
            Vec::new()
        };

        // The ids of the finished steps whose report `pick`s.
        let steps_where = |pick: &dyn Fn(&StepReport) -> bool| -> Vec<&str> {
            self.states
                .iter()
                .filter_map(|s| match s {
                    StepState::Done(r) if pick(r) => Some(r.id.as_str()),
                    _ => None,
                })
                .collect()
        };
        let failed_steps = steps_where(&|r| r.conclusion == Outcome::Failure);
        // An undo that failed leaves the world half changed: the run's message says so.
        let undone_not: Vec<String> = compensations
            .iter()
            .filter(|c| c.outcome != Outcome::Success)
            .map(|c| meridian_protocol::display_id(&c.step, &c.leg))
            .collect();
        let also = match undone_not.is_empty() {
            true => String::new(),
            false => format!("; compensation failed: {}", undone_not.join(", ")),
        };
        let (status, message) = if timed_out {
            (
                RunStatus::TimedOut,
                format!(
                    "run timed out after {}{also}",
                    meridian_model::duration::format_duration(timeout.unwrap_or_default())
                ),
            )
        } else if cancelled {
            (
                RunStatus::Cancelled,
                format!("{}{also}", self.opts.cancel.why()),
            )
        } else if !awaiting.is_empty() {
            let failed = match failed_steps.is_empty() {
                true => String::new(),
                false => format!(" (failed: {})", failed_steps.join(", ")),
            };
            // Which gates, not how to answer them: that depends on who reads it (a terminal's
            // `meridian resume --approve`, a server's API or console) and each says its own.
            (
                RunStatus::AwaitingApproval,
                format!("waiting for approval of {}{failed}", awaiting.join(", ")),
            )
        } else if self.failed {
            (
                RunStatus::Failed,
                format!("failed: {}{also}", failed_steps.join(", ")),
            )
        } else {
            let skipped = steps_where(&|r| r.outcome == Outcome::Skipped);
            // Failures kept under `continue-on-error` are said in the run's own message (the
            // journal, the API, `--json`): it said "all steps succeeded" of them.
            let tolerated = steps_where(&|r| r.outcome == Outcome::Failure);
            let failed = |n: usize| {
                format!(
                    "{n} step{} failed under continue-on-error ({})",
                    if n == 1 { "" } else { "s" },
                    tolerated.join(", ")
                )
            };
            let message = match (tolerated.len(), skipped.len()) {
                (0, 0) => "all steps succeeded".to_string(),
                (0, n) => format!(
                    "every step that ran succeeded; {n} skipped: {}",
                    skipped.join(", ")
                ),
                (f, 0) => format!("{}; the others succeeded", failed(f)),
                (f, n) => format!(
                    "{}; the others that ran succeeded; {n} skipped: {}",
                    failed(f),
                    skipped.join(", ")
                ),
            };
            (RunStatus::Succeeded, message)
        };
        // A resumed run's duration is counted from its first start (`run.started_at_ms`), as the
        // journal's run list counts it: the time it stood still (at a gate, or killed) is part
        // of it. The report also says how long this resume took.
        let this = self.started.elapsed();
        let resumed = !self.opts.prior.is_empty() || !self.opts.earlier.is_empty();
        let duration = if resumed {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Duration::from_millis(now.saturating_sub(self.opts.started_at_ms)).max(this)
        } else {
            this
        };
        self.emit(Event::RunFinished {
            status,
            duration,
            message: message.clone(),
        })?;
        let steps = self
            .states
            .into_iter()
            .filter_map(|s| match s {
                StepState::Done(r) => Some(r),
                _ => None,
            })
            .collect();
        Ok(RunReport {
            run_id: self.opts.run_id,
            workflow: self.wf.name.clone(),
            mode: self.opts.mode,
            status,
            message,
            duration,
            resumed: resumed.then_some(this),
            steps,
            compensations,
        })
    }

    fn outcome_of(&self, id: &str) -> Option<Outcome> {
        match &self.states[*self.index.get(id)?] {
            StepState::Done(r) => Some(r.conclusion),
            _ => None,
        }
    }

    /// Starts every step whose `needs` are all done, in passes over file order as a scan of the
    /// whole workflow would: a step made ready while a pass starts steps (by one that is skipped
    /// or fails as it starts) starts in this pass if it comes later in the file, else in the next.
    /// The order is observable: a step that fails as it starts fails the run for the ones started
    /// after it.
    async fn start_ready(&mut self) -> Result<(), RunError> {
        let mut last: Option<usize> = None;
        loop {
            let next = last
                .and_then(|l| self.ready.range(l + 1..).next())
                .or_else(|| self.ready.first())
                .copied();
            let Some(i) = next else { return Ok(()) };
            self.ready.remove(&i);
            last = Some(i);
            let needs: Option<Vec<Outcome>> = self.wf.steps[i]
                .needs
                .iter()
                .map(|n| self.outcome_of(&n.value))
                .collect();
            let Some(needs) = needs else {
                unreachable!("a ready step's needs are all done")
            };
            self.start_step(i, &needs).await?;
        }
    }

    /// Records step `i` as done and makes ready the steps whose last unmet need it was.
    fn set_done(&mut self, i: usize, report: StepReport) {
        self.states[i] = StepState::Done(report);
        for d in std::mem::take(&mut self.dependents[i]) {
            self.unmet[d] -= 1;
            if self.unmet[d] == 0 {
                self.ready.insert(d);
            }
        }
    }

    /// `first` and every other leg task that has already ended: legs that finished together
    /// (while the scheduler waited, or while the previous commit ran) are journaled together.
    fn with_finished(
        &mut self,
        first: Result<LegDone, tokio::task::JoinError>,
    ) -> Vec<Result<LegDone, tokio::task::JoinError>> {
        let mut batch = vec![first];
        while let Some(more) = self.tasks.try_join_next() {
            batch.push(more);
        }
        batch
    }

    /// Journals the legs of `batch` in one group (one durable commit for all of them: see
    /// `EventSink::emit_all`), then books each. Their dependents start only after this returns.
    fn legs_done(
        &mut self,
        batch: Vec<Result<LegDone, tokio::task::JoinError>>,
    ) -> Result<(), RunError> {
        let mut done = Vec::with_capacity(batch.len());
        for res in batch {
            match res {
                Ok(d) => done.push(d),
                Err(join) => {
                    // A leg task panicked: a bug in an executor. Fail the run, never the process.
                    tracing::error!("leg task failed: {join}");
                    self.fail_run();
                }
            }
        }
        let finished: Vec<Event> = done
            .iter()
            .filter(|d| !d.report.reused)
            .map(|d| {
                let r = &d.report;
                Event::LegFinished {
                    step: self.wf.steps[d.step].id.value.clone(),
                    leg: r.key.clone(),
                    outcome: r.outcome,
                    attempts: r.attempts,
                    duration: r.duration,
                    output: r.output.clone(),
                    plan: r.plan.clone(),
                    error: r.error.clone(),
                }
            })
            .collect();
        if let (Some(sink), false) = (&self.opts.sink, finished.is_empty()) {
            sink.emit_all(&finished)?;
        }
        done.into_iter().try_for_each(|d| self.leg_done(d))
    }

    /// Books one journaled leg: fail-fast, its step's progress.
    fn leg_done(&mut self, done: LegDone) -> Result<(), RunError> {
        let step = &self.wf.steps[done.step];
        let report = done.report;
        self.inflight.remove(&(done.step, done.leg));
        if report.outcome == Outcome::Success {
            self.completed.push((done.step, done.leg));
        } else if report.outcome == Outcome::Failure {
            if !step.continue_on_error {
                self.failed = true;
            }
            // A fail-fast matrix stops its other legs (as GitHub Actions does); the legs of
            // other steps run to their end.
            if step.matrix.as_ref().is_some_and(|m| m.fail_fast) && !self.opts.keep_going {
                for ((s, _), c) in &self.inflight {
                    if *s == done.step {
                        c.cancel();
                    }
                }
            }
        }
        let StepState::Running { legs, pending } = &mut self.states[done.step] else {
            unreachable!("leg finished for a step that is not running");
        };
        legs[done.leg] = Some(report);
        *pending -= 1;
        if *pending == 0 {
            self.finish_step(done.step)?;
        }
        Ok(())
    }

    /// Whether step `i` ran before in a run this resume carries on after its failure
    /// ([`Runner::replay`]): its `if:` and gate were passed then (now, the run having failed,
    /// its `if:` would skip it), its finished legs stand, failed ones included, and the legs
    /// that had not finished end cancelled instead of running again.
    pub(super) fn replays(&self, i: usize) -> bool {
        let id = &self.wf.steps[i].id.value;
        self.replay && self.opts.prior.keys().any(|(s, _)| s == id)
    }

    /// Marks the run failed: no step starts any more but those whose `if:` asks for it
    /// (`always()`, `failure()`). Legs of other steps already running are not cancelled: they
    /// end on their own (bounded by their timeouts and the run's), so a promotion or a DNS
    /// change in flight is never cut off halfway by an unrelated failure, and what they
    /// completed is compensated with the rest.
    fn fail_run(&mut self) {
        self.failed = true;
    }

    pub(super) fn finish_without_legs(
        &mut self,
        i: usize,
        outcome: Outcome,
        reason: impl Into<String>,
    ) -> Result<(), RunError> {
        let reason: String = reason.into();
        let wf = self.wf.clone();
        let step = &wf.steps[i];
        let id = step.id.value.clone();
        if outcome == Outcome::Failure && !step.continue_on_error {
            self.fail_run();
        }
        let conclusion = if outcome == Outcome::Failure && step.continue_on_error {
            Outcome::Success
        } else {
            outcome
        };
        let report = StepReport {
            id: id.clone(),
            outcome,
            conclusion,
            reason: Some(self.masker.mask_str(&reason)),
            legs: vec![],
        };
        self.publish(i, &report);
        self.emit(Event::StepFinished {
            step: id,
            outcome,
            // A skip's reason is in its `step-skipped` already.
            reason: report
                .reason
                .clone()
                .filter(|_| outcome != Outcome::Skipped),
        })?;
        self.set_done(i, report);
        Ok(())
    }

    pub(super) fn finish_step(&mut self, i: usize) -> Result<(), RunError> {
        let StepState::Running { legs, .. } =
            std::mem::replace(&mut self.states[i], StepState::Waiting)
        else {
            unreachable!()
        };
        let legs: Vec<LegReport> = legs.into_iter().flatten().collect();
        let step = &self.wf.steps[i];
        let outcome = if legs.iter().any(|l| l.outcome == Outcome::Failure) {
            Outcome::Failure
        } else if legs.iter().any(|l| l.outcome == Outcome::Cancelled) {
            Outcome::Cancelled
        } else if legs.iter().all(|l| l.outcome == Outcome::Skipped) {
            // Its `if:` left out every leg (see `Step::if_per_leg`).
            Outcome::Skipped
        } else {
            Outcome::Success
        };
        let conclusion = if outcome == Outcome::Failure && step.continue_on_error {
            Outcome::Success
        } else {
            outcome
        };
        let reason = (outcome == Outcome::Skipped).then(|| {
            format!(
                "condition `{}` is false for every leg",
                step.condition.as_ref().map_or("", |c| c.value.source())
            )
        });
        if let Some(reason) = &reason {
            self.emit(Event::StepSkipped {
                step: step.id.value.clone(),
                reason: reason.clone(),
            })?;
        }
        let report = StepReport {
            id: step.id.value.clone(),
            outcome,
            conclusion,
            reason,
            legs,
        };
        self.publish(i, &report);
        self.emit(Event::StepFinished {
            step: report.id.clone(),
            outcome,
            reason: None,
        })?;
        self.set_done(i, report);
        Ok(())
    }

    /// Makes a finished step visible to expressions as `steps.<id>`.
    fn publish(&mut self, i: usize, report: &StepReport) {
        let step = &self.wf.steps[i];
        let outputs = if step.matrix.is_some() {
            Json::Object(
                report
                    .legs
                    .iter()
                    .map(|l| (l.key.clone(), l.output.clone()))
                    .collect(),
            )
        } else {
            report
                .legs
                .first()
                .map(|l| l.output.clone())
                .unwrap_or(json!({}))
        };
        let legs: Vec<Json> = report
            .legs
            .iter()
            .map(|l| json!({"key": l.key, "matrix": l.matrix, "outputs": l.output, "outcome": l.outcome}))
            .collect();
        let entry = json!({
            "outputs": outputs,
            "outcome": report.outcome,
            "conclusion": report.conclusion,
            "legs": legs,
        });
        self.published.insert(step.id.value.clone(), entry);
    }
}

/// What every expression of a run sees before any step ran: `inputs`, `secrets`, `run`, an empty
/// `matrix`, and `vars` — evaluated once, in file order, each able to use the ones before it.
/// Also what a drill's canary block is evaluated against.
pub fn base_context(
    wf: &Workflow,
    inputs: &Map<String, Json>,
    secrets: &std::collections::BTreeMap<String, String>,
    run: Json,
) -> Result<Map<String, Json>, RunError> {
    let secrets: Map<String, Json> = secrets
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    let mut base = Map::new();
    base.insert("inputs".into(), Json::Object(inputs.clone()));
    base.insert("secrets".into(), Json::Object(secrets));
    base.insert("run".into(), run);
    base.insert("matrix".into(), json!({}));
    // The drill's targets, so a step reports against them instead of copies that drift.
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    base.insert(
        "drill".into(),
        match &wf.drill {
            Some(d) => json!({
                "rto_ms": ms(d.rto),
                "capacity_ms": ms(d.capacity),
                "rpo_ms": ms(d.rpo),
                "rpo_bytes": d.rpo_bytes,
                "rpo_rows": d.rpo_rows,
                "downtime_ms": ms(d.downtime),
                "write_outage_ms": ms(d.write_outage),
            }),
            None => json!({}),
        },
    );
    let mut vars = Map::new();
    base.insert("vars".into(), Json::Object(vars.clone()));
    for (name, node) in &wf.vars {
        let ctx = EvalContext {
            data: Json::Object(base.clone()),
            status: ExprStatus::default(),
        };
        let v = node.eval(&ctx).map_err(|e| RunError::Var {
            name: name.clone(),
            message: e.to_string(),
        })?;
        vars.insert(name.clone(), v);
        base.insert("vars".into(), Json::Object(vars.clone()));
    }
    Ok(base)
}

/// Whether `step` failed in the run being resumed and stays failed
/// ([`RunOptions::keep_failures`]): a failed leg of it in the journal, and no
/// `continue-on-error` (whose failures stand on every resume anyway).
fn kept_failure(opts: &RunOptions, step: &Step) -> bool {
    opts.keep_failures
        && !step.continue_on_error
        && opts
            .prior
            .iter()
            .any(|((s, _), p)| *s == step.id.value && p.outcome == Outcome::Failure)
}
