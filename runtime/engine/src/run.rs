//! The scheduler: runs a workflow's DAG with bounded parallelism, conditions, matrices, retries,
//! timeouts, fail-fast cancellation, approvals and compensation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use indexmap::IndexMap;
use meridian_model::expr::{EvalContext, RunStatus as ExprStatus};
use meridian_model::{
    Compensate, ComponentRef, MatrixAxis, RetryPolicy, Step, ValueNode, Workflow,
};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, EventSink, Outcome, RunStatus};
use crate::executor::{
    Action, Executor, FsPreopen, Mode, ResolvedGrants, StepError, StepRequest, StepResult,
};
use crate::retry;
pub use meridian_protocol::display_id;
use meridian_protocol::{Masker, PlannedChange};

/// Default attempt timeout of a step without `timeout:`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// Asks a human whether a gated step may run (an interactive prompt on a terminal).
pub trait Approver: Send + Sync {
    fn ask(&self, step: &str, message: &str) -> BoxFuture<'static, bool>;
}

/// A leg finished in an earlier invocation of the same run (from the journal): it is not run again.
#[derive(Clone, Debug)]
pub struct PriorLeg {
    pub outcome: Outcome,
    pub attempts: u32,
    pub output: Json,
    pub plan: Vec<PlannedChange>,
    pub duration: Duration,
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    pub run_id: String,
    pub mode: Mode,
    /// Inputs already typed (see [`crate::inputs::resolve`]).
    pub inputs: Map<String, Json>,
    /// Every secret the workflow declares, name → value.
    pub secrets: BTreeMap<String, String>,
    /// Legs running at once, across the whole run (≥ 1).
    pub max_parallel: usize,
    /// Steps approved up front (`--approve STEP`).
    pub approvals: BTreeSet<String>,
    pub approver: Option<Arc<dyn Approver>>,
    pub sink: Option<Arc<dyn EventSink>>,
    /// Legs already finished, keyed by (step id, leg key).
    pub prior: HashMap<(String, String), PriorLeg>,
    /// Overrides the workflow's `timeout:`.
    pub run_timeout: Option<Duration>,
    /// When the run was first started, Unix ms (`run.started_at_ms`; kept across resumes).
    pub started_at_ms: u64,
}

impl RunOptions {
    pub fn new(run_id: impl Into<String>) -> Self {
        RunOptions {
            run_id: run_id.into(),
            mode: Mode::Apply,
            inputs: Map::new(),
            secrets: BTreeMap::new(),
            max_parallel: 4,
            approvals: BTreeSet::new(),
            approver: None,
            sink: None,
            prior: HashMap::new(),
            run_timeout: None,
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }
}

/// One leg (the only one for a step without a matrix).
#[derive(Clone, Debug, Serialize)]
pub struct LegReport {
    /// `""` without a matrix, else the leg's matrix values joined by `,`.
    pub key: String,
    pub matrix: Json,
    pub outcome: Outcome,
    pub attempts: u32,
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    pub output: Json,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Taken from the journal of an earlier invocation instead of being run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

impl LegReport {
    /// A leg that ended without output: cancelled when `error` is `Cancelled`, else failed.
    fn ended(
        key: String,
        matrix: Json,
        attempts: u32,
        duration: Duration,
        error: StepError,
    ) -> Self {
        LegReport {
            key,
            matrix,
            outcome: if error == StepError::Cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Failure
            },
            attempts,
            duration,
            output: Json::Null,
            plan: vec![],
            error: Some(error),
            reused: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub outcome: Outcome,
    /// `success` also for a failed step with `continue-on-error`.
    pub conclusion: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub legs: Vec<LegReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompensationReport {
    pub step: String,
    pub leg: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub mode: Mode,
    pub status: RunStatus,
    pub message: String,
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// In file order; steps that never became ready are absent.
    pub steps: Vec<StepReport>,
    pub compensations: Vec<CompensationReport>,
}

impl RunReport {
    pub fn step(&self, id: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.id == id)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Sink(#[from] crate::event::SinkError),
    #[error("vars.{name}: {message}")]
    Var { name: String, message: String },
}

enum StepState {
    Waiting,
    /// Blocked on approval that nobody can give in this invocation.
    Blocked,
    Running {
        legs: Vec<Option<LegReport>>,
        pending: usize,
    },
    Done(StepReport),
}

struct LegDone {
    step: usize,
    leg: usize,
    report: LegReport,
}

/// Runs `wf` to the end and reports. Errors only when the run cannot start or its event sink fails.
pub async fn run(
    wf: Arc<Workflow>,
    exec: Arc<dyn Executor>,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    Runner::new(wf, exec, opts)?.run().await
}

struct Runner {
    wf: Arc<Workflow>,
    exec: Arc<dyn Executor>,
    opts: RunOptions,
    masker: Masker,
    /// `inputs`, `vars`, `secrets`, `run`: what every expression may see.
    base: Map<String, Json>,
    /// `steps.<id>` of every finished step.
    published: HashMap<String, Json>,
    /// Which finished steps each step's expressions refer to (`None`: all of them), so building
    /// its context copies only those: a cost that does not grow with the run's length.
    refs: Vec<Option<BTreeSet<String>>>,
    /// Step id → index.
    index: HashMap<String, usize>,
    states: Vec<StepState>,
    /// (step index, leg index) in completion order, for compensation.
    completed: Vec<(usize, usize)>,
    failed: bool,
    /// Set when the run timed out; no new step starts.
    cancelled: bool,
    /// Cancellation of each leg in flight, keyed by (step index, leg index).
    inflight: HashMap<(usize, usize), CancellationToken>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<LegDone>,
    started: Instant,
}

impl Runner {
    fn new(wf: Arc<Workflow>, exec: Arc<dyn Executor>, opts: RunOptions) -> Result<Self, RunError> {
        let masker = Masker::new(opts.secrets.values().cloned());
        let secrets: Map<String, Json> = opts
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        let mut base = Map::new();
        base.insert("inputs".into(), Json::Object(opts.inputs.clone()));
        base.insert("secrets".into(), Json::Object(secrets));
        base.insert(
            "run".into(),
            json!({
                "id": opts.run_id,
                "workflow": wf.name,
                "mode": opts.mode,
                "started_at_ms": opts.started_at_ms,
            }),
        );
        base.insert("matrix".into(), json!({}));
        // vars are evaluated once, in file order; each may use the ones before it.
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
        let n = wf.steps.len();
        let max_parallel = opts.max_parallel.max(1);
        let refs = wf.steps.iter().map(step_refs).collect();
        let index = wf
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.value.clone(), i))
            .collect();
        Ok(Runner {
            exec,
            masker,
            base,
            published: HashMap::new(),
            refs,
            index,
            states: (0..n).map(|_| StepState::Waiting).collect(),
            completed: Vec::new(),
            failed: false,
            cancelled: false,
            inflight: HashMap::new(),
            permits: Arc::new(Semaphore::new(max_parallel)),
            tasks: JoinSet::new(),
            started: Instant::now(),
            wf,
            opts,
        })
    }

    #[allow(clippy::needless_pass_by_value)] // call sites build the event inline
    fn emit(&self, ev: Event) -> Result<(), RunError> {
        if let Some(sink) = &self.opts.sink {
            sink.emit(&ev)?;
        }
        Ok(())
    }

    async fn run(mut self) -> Result<RunReport, RunError> {
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

        loop {
            self.start_ready().await?;
            if self.tasks.is_empty() {
                break;
            }
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, self.tasks.join_next())
                        .await
                        .ok(),
                    None => Some(self.tasks.join_next().await),
                }
            };
            match next.await {
                Some(Some(Ok(done))) => self.leg_done(done)?,
                Some(Some(Err(join))) => {
                    // A leg task panicked: a bug in an executor. Fail the run, never the process.
                    tracing::error!("leg task failed: {join}");
                    self.fail_run();
                }
                Some(None) => break,
                None => {
                    timed_out = true;
                    self.cancelled = true;
                    self.fail_run();
                    // Drain: cancelled legs return promptly.
                    while let Some(res) = self.tasks.join_next().await {
                        if let Ok(done) = res {
                            self.leg_done(done)?;
                        }
                    }
                    break;
                }
            }
        }

        let compensations = if self.failed && self.opts.mode == Mode::Apply {
            self.compensate().await?
        } else {
            Vec::new()
        };

        let awaiting: Vec<&str> = self
            .states
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, StepState::Blocked))
            .map(|(i, _)| self.wf.steps[i].id.value.as_str())
            .collect();
        let failed_steps: Vec<&str> = self
            .states
            .iter()
            .filter_map(|s| match s {
                StepState::Done(r) if r.conclusion == Outcome::Failure => Some(r.id.as_str()),
                _ => None,
            })
            .collect();
        let (status, message) = if timed_out {
            (
                RunStatus::TimedOut,
                format!(
                    "run timed out after {}",
                    meridian_model::duration::format_duration(timeout.unwrap_or_default())
                ),
            )
        } else if self.failed {
            (
                RunStatus::Failed,
                format!("failed: {}", failed_steps.join(", ")),
            )
        } else if !awaiting.is_empty() {
            (
                RunStatus::AwaitingApproval,
                format!(
                    "waiting for approval of {}: re-run with {}",
                    awaiting.join(", "),
                    awaiting
                        .iter()
                        .map(|s| format!("--approve {s}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )
        } else {
            (RunStatus::Succeeded, "all steps succeeded".to_string())
        };
        let duration = self.started.elapsed();
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
            steps,
            compensations,
        })
    }

    /// What step `i`'s expressions see, with the matrix leg's values when given.
    fn ctx(&self, i: usize, matrix: Option<&Json>) -> EvalContext {
        let mut data = self.base.clone();
        if let Some(m) = matrix {
            data.insert("matrix".into(), m.clone());
        }
        let steps: Map<String, Json> = match &self.refs[i] {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.published.get(id).map(|v| (id.clone(), v.clone())))
                .collect(),
            None => self
                .published
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        data.insert("steps".into(), Json::Object(steps));
        EvalContext {
            data: Json::Object(data),
            status: ExprStatus {
                failed: self.failed,
                cancelled: self.cancelled,
            },
        }
    }

    fn outcome_of(&self, id: &str) -> Option<Outcome> {
        match &self.states[*self.index.get(id)?] {
            StepState::Done(r) => Some(r.conclusion),
            _ => None,
        }
    }

    /// Starts every step whose `needs` are all done. Loops until nothing changes, because skipping
    /// a step can make others ready.
    async fn start_ready(&mut self) -> Result<(), RunError> {
        loop {
            let mut progressed = false;
            for i in 0..self.wf.steps.len() {
                if !matches!(self.states[i], StepState::Waiting) {
                    continue;
                }
                let step = &self.wf.steps[i];
                let needs: Option<Vec<Outcome>> = step
                    .needs
                    .iter()
                    .map(|n| self.outcome_of(&n.value))
                    .collect();
                let Some(needs) = needs else { continue };
                progressed = true;
                self.start_step(i, &needs).await?;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    async fn start_step(&mut self, i: usize, needs: &[Outcome]) -> Result<(), RunError> {
        let wf = self.wf.clone();
        let step = &wf.steps[i];
        let id = step.id.value.clone();
        let needs_ok = needs.iter().all(|o| *o == Outcome::Success);
        let default_ok = !self.failed && !self.cancelled && needs_ok;
        let run_it = match &step.condition {
            None => Ok(default_ok),
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
                return Ok(());
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
            self.emit(Event::StepSkipped {
                step: id.clone(),
                reason: reason.clone(),
            })?;
            self.finish_without_legs(i, Outcome::Skipped, reason)?;
            return Ok(());
        }

        if let Some(approval) = &step.approval {
            let already = self.opts.approvals.contains(&id);
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
            if already {
                self.emit(Event::ApprovalGranted {
                    step: id.clone(),
                    by: "--approve".into(),
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
                    return Ok(());
                }
            } else {
                self.emit(Event::ApprovalRequired {
                    step: id.clone(),
                    message,
                })?;
                self.states[i] = StepState::Blocked;
                return Ok(());
            }
        }

        let legs = match self.expand_matrix(i, step) {
            Ok(l) => l,
            Err(msg) => {
                self.finish_without_legs(i, Outcome::Failure, msg)?;
                return Ok(());
            }
        };
        let n = legs.len();
        self.states[i] = StepState::Running {
            legs: vec![None; n],
            pending: n,
        };
        if n == 0 {
            self.finish_step(i)?;
            return Ok(());
        }
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

    /// The legs of a step: `("", {})` without a matrix.
    fn expand_matrix(&self, si: usize, step: &Step) -> Result<Vec<(String, Json)>, String> {
        let Some(m) = &step.matrix else {
            return Ok(vec![(String::new(), json!({}))]);
        };
        let mut axes: Vec<(String, Vec<Json>)> = Vec::new();
        for (name, axis) in &m.axes {
            let values = match axis {
                MatrixAxis::Values(v) => v.clone(),
                MatrixAxis::Expr(t) => match t.value.eval(&self.ctx(si, None)) {
                    Ok(Json::Array(v)) => v,
                    Ok(other) => {
                        return Err(format!(
                            "strategy.matrix.{name}: `{}` gave {other}, expected a list",
                            t.value.raw()
                        ));
                    }
                    Err(e) => return Err(format!("strategy.matrix.{name}: {e}")),
                },
            };
            axes.push((name.clone(), values));
        }
        Ok(m.legs_with(&axes)
            .into_iter()
            .map(|l| (l.key, Json::Object(l.values)))
            .collect())
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
        if let Some(prior) = self.opts.prior.get(&(id.clone(), key.clone()))
            && prior.outcome == Outcome::Success
        {
            let report = LegReport {
                key,
                matrix,
                outcome: prior.outcome,
                attempts: prior.attempts,
                duration: prior.duration,
                output: prior.output.clone(),
                plan: prior.plan.clone(),
                error: None,
                reused: true,
            };
            self.tasks.spawn(async move {
                LegDone {
                    step: si,
                    leg: li,
                    report,
                }
            });
            return Ok(());
        }
        let ctx = self.ctx(si, Some(&matrix));
        let display = display_id(&id, &key);
        let prepared = component(step).and_then(|uses| {
            let input = eval_with(&step.with, &ctx)?;
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
                self.tasks.spawn(async move {
                    LegDone {
                        step: si,
                        leg: li,
                        report,
                    }
                });
                return Ok(());
            }
        };
        let req = StepRequest {
            run_id: self.opts.run_id.clone(),
            idempotency_key: format!("{}/{}", self.opts.run_id, display),
            step_id: display,
            uses,
            action: Action::Run,
            mode: self.opts.mode,
            input,
            attempt: 1,
            grants,
            limits: step.limits.clone(),
            timeout: step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
            mask: self.masker.values().to_vec(),
        };
        let policy = step.retry.clone().unwrap_or_else(retry::no_retry);
        let cancel = CancellationToken::new();
        self.inflight.insert((si, li), cancel.clone());
        let attempt = Attempt {
            exec: self.exec.clone(),
            sink: self.opts.sink.clone(),
            masker: self.masker.clone(),
            cancel,
            permits: self.permits.clone(),
            step_sem,
        };
        let step_name = id;
        self.tasks.spawn(async move {
            let report = attempt.run_leg(&step_name, key, matrix, req, &policy).await;
            LegDone {
                step: si,
                leg: li,
                report,
            }
        });
        Ok(())
    }

    fn resolve_grants(&self, step: &Step, ctx: &EvalContext) -> Result<ResolvedGrants, String> {
        let g = &step.grants;
        let mut sql = BTreeMap::new();
        for name in &g.sql {
            let conn = self
                .wf
                .connections
                .get(&name.value)
                .ok_or_else(|| format!("grants.sql: no connection named `{}`", name.value))?;
            let dsn = match &conn.kind {
                meridian_model::ConnectionKind::Postgres(t) => t
                    .eval(ctx)
                    .map_err(|e| format!("connections.{}: {e}", name.value))?,
                meridian_model::ConnectionKind::Http(_) => {
                    return Err(format!(
                        "grants.sql: connection `{}` is an HTTP endpoint, not PostgreSQL",
                        name.value
                    ));
                }
            };
            sql.insert(name.value.clone(), json_to_string(dsn));
        }
        let http = g
            .http
            .iter()
            .map(|h| h.value.origin(&self.wf, ctx))
            .collect::<Result<_, _>>()?;
        let secrets = g
            .secrets
            .iter()
            .filter_map(|s| {
                self.opts
                    .secrets
                    .get(&s.value)
                    .map(|v| (s.value.clone(), v.clone()))
            })
            .collect();
        let dns = match &g.dns {
            Some(t) => {
                let text =
                    json_to_string(t.value.eval(ctx).map_err(|e| format!("grants.dns: {e}"))?);
                Some(parse_dns_server(&text).ok_or_else(|| {
                    format!("grants.dns: `{text}` is not IP:PORT (e.g. 127.0.0.1:5353)")
                })?)
            }
            None => None,
        };
        let fs =
            g.fs.iter()
                .map(|f| FsPreopen {
                    host: f.host.clone(),
                    guest: f.guest.clone(),
                    writable: f.writable,
                })
                .collect();
        Ok(ResolvedGrants {
            http,
            http_limits: g.http_limits.clone(),
            sql,
            fs,
            secrets,
            dns,
        })
    }

    fn leg_done(&mut self, done: LegDone) -> Result<(), RunError> {
        let step = &self.wf.steps[done.step];
        let id = step.id.value.clone();
        let report = done.report;
        self.inflight.remove(&(done.step, done.leg));
        if !report.reused {
            self.emit(Event::LegFinished {
                step: id.clone(),
                leg: report.key.clone(),
                outcome: report.outcome,
                attempts: report.attempts,
                duration: report.duration,
                output: report.output.clone(),
                plan: report.plan.clone(),
                error: report.error.clone(),
            })?;
        }
        if report.outcome == Outcome::Success {
            self.completed.push((done.step, done.leg));
        } else if report.outcome == Outcome::Failure && !step.continue_on_error {
            // Fail fast: every leg in flight, of this step and of others, is cancelled.
            self.fail_run();
        } else if report.outcome == Outcome::Failure
            && step.matrix.as_ref().is_some_and(|m| m.fail_fast)
        {
            // continue-on-error with a fail-fast matrix: only the sibling legs stop.
            for ((s, _), c) in &self.inflight {
                if *s == done.step {
                    c.cancel();
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

    /// Marks the run failed and cancels every leg in flight. Steps that start later (`if:
    /// always()`, `if: failure()`) get fresh tokens and run normally.
    fn fail_run(&mut self) {
        self.failed = true;
        for c in self.inflight.values() {
            c.cancel();
        }
    }

    fn finish_without_legs(
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
        self.emit(Event::StepFinished { step: id, outcome })?;
        self.states[i] = StepState::Done(report);
        Ok(())
    }

    fn finish_step(&mut self, i: usize) -> Result<(), RunError> {
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
        } else {
            Outcome::Success
        };
        let conclusion = if outcome == Outcome::Failure && step.continue_on_error {
            Outcome::Success
        } else {
            outcome
        };
        let report = StepReport {
            id: step.id.value.clone(),
            outcome,
            conclusion,
            reason: None,
            legs,
        };
        self.publish(i, &report);
        self.emit(Event::StepFinished {
            step: report.id.clone(),
            outcome,
        })?;
        self.states[i] = StepState::Done(report);
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

    /// Undoes completed legs in reverse completion order.
    async fn compensate(&mut self) -> Result<Vec<CompensationReport>, RunError> {
        let mut out = Vec::new();
        let completed = std::mem::take(&mut self.completed);
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
            let ctx = self.ctx(si, Some(&leg.matrix));
            let display = display_id(&step.id.value, &leg.key);
            let prepared = match &step.compensate {
                Compensate::Export => component(step).and_then(|uses| {
                    eval_with(&step.with, &ctx).map(|input| (uses, Action::Compensate, input))
                }),
                Compensate::Step {
                    component, with, ..
                } => eval_with(with, &ctx).map(|input| (component.clone(), Action::Run, input)),
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
                    };
                    let timeout = req.timeout;
                    tokio::time::timeout(timeout, self.exec.execute(req))
                        .await
                        .unwrap_or(Err(StepError::Timeout(timeout)))
                        .map(|_| ())
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

/// What one leg's task needs, detached from the runner.
struct Attempt {
    exec: Arc<dyn Executor>,
    sink: Option<Arc<dyn EventSink>>,
    masker: Masker,
    cancel: CancellationToken,
    permits: Arc<Semaphore>,
    step_sem: Option<Arc<Semaphore>>,
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

    async fn run_leg(
        self,
        step: &str,
        key: String,
        matrix: Json,
        mut req: StepRequest,
        policy: &RetryPolicy,
    ) -> LegReport {
        let started = Instant::now();
        let cancelled = |attempts: u32, started: Instant, key: String, matrix: Json| {
            LegReport::ended(
                key,
                matrix,
                attempts,
                started.elapsed(),
                StepError::Cancelled,
            )
        };
        // Hold a step-level permit (matrix max-parallel) and a run-level one for the whole leg.
        let _step_permit = match &self.step_sem {
            Some(s) => tokio::select! {
                p = s.clone().acquire_owned() => p.ok(),
                _ = self.cancel.cancelled() => return cancelled(0, started, key, matrix),
            },
            None => None,
        };
        let _permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = self.cancel.cancelled() => return cancelled(0, started, key, matrix),
        };
        let prepared = tokio::select! {
            r = self.exec.prepare(&req.uses) => r,
            _ = self.cancel.cancelled() => return cancelled(0, started, key, matrix),
        };
        if let Err(e) = prepared {
            return LegReport::ended(
                key,
                matrix,
                0,
                started.elapsed(),
                mask_error(&self.masker, e),
            );
        }
        let attempts = policy.attempts.max(1);
        let mut attempt = 1;
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
            let fut = self.exec.execute(req.clone());
            let result = tokio::select! {
                r = tokio::time::timeout(timeout, fut) => r.unwrap_or(Err(StepError::Timeout(timeout))),
                _ = self.cancel.cancelled() => Err(StepError::Cancelled),
            };
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
                Err(StepError::Cancelled) => return cancelled(attempt, started, key, matrix),
                Err(e) => {
                    let e = mask_error(&self.masker, e);
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
                        _ = self.cancel.cancelled() => return cancelled(attempt, started, key, matrix),
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// The ids of the steps whose `steps.<id>` a step's expressions read; `None` when one reads the
/// whole `steps` object.
fn step_refs(step: &Step) -> Option<BTreeSet<String>> {
    use meridian_model::HttpGrant;
    use meridian_model::expr::Reference;
    let mut refs: Vec<Reference> = Vec::new();
    let add_values = |with: &IndexMap<String, ValueNode>, refs: &mut Vec<Reference>| {
        for v in with.values() {
            v.for_each_template(&mut |_, t| refs.extend(t.references()));
        }
    };
    add_values(&step.with, &mut refs);
    if let Compensate::Step { with, .. } = &step.compensate {
        add_values(with, &mut refs);
    }
    if let Some(c) = &step.condition {
        refs.extend(c.value.references());
    }
    if let Some(m) = step.approval.as_ref().and_then(|a| a.message.as_ref()) {
        refs.extend(m.references());
    }
    if let Some(m) = &step.matrix {
        for axis in m.axes.values() {
            if let MatrixAxis::Expr(t) = axis {
                refs.extend(t.value.references());
            }
        }
    }
    if let Some(d) = &step.grants.dns {
        refs.extend(d.value.references());
    }
    for h in &step.grants.http {
        if let HttpGrant::Template(t) = &h.value {
            refs.extend(t.references());
        }
    }
    let mut ids = BTreeSet::new();
    for r in refs {
        match r.path.as_slice() {
            [first, id, ..] if first == "steps" => {
                ids.insert(id.clone());
            }
            [first] if first == "steps" => return None,
            _ => {}
        }
    }
    Some(ids)
}

/// The component a step runs. Only a workflow that failed validation has none.
fn component(step: &Step) -> Result<ComponentRef, String> {
    step.component.clone().ok_or_else(|| {
        format!(
            "`uses: {}` names no step component (validate the workflow)",
            step.uses.value
        )
    })
}

fn mask_error(m: &Masker, e: StepError) -> StepError {
    e.map_text(|t| m.mask_string(t))
}

fn eval_with(with: &IndexMap<String, ValueNode>, ctx: &EvalContext) -> Result<Json, String> {
    let mut out = Map::new();
    for (k, v) in with {
        let value = v.eval(ctx).map_err(|e| format!("with.{k}: {e}"))?;
        out.insert(k.clone(), value);
    }
    Ok(Json::Object(out))
}

fn json_to_string(v: Json) -> String {
    match v {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

/// `IP:PORT`, or a bare IP (port 53).
fn parse_dns_server(s: &str) -> Option<std::net::SocketAddr> {
    let s = s.trim();
    s.parse()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}
