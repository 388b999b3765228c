//! Starting and resuming runs.

mod resume;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_engine::{Approver, EventSink, Executor, RunOptions, RunReport};
use meridian_host::WasmExecutor;
use meridian_model::Workflow;
use meridian_protocol::{Masker, Mode, RunStatus};
use meridian_store::{Journal, RunRecord, RunSettings};
use sha2::{Digest, Sha256};

use crate::canary::now_ms;
use crate::{DrillVerdict, RunnerError, secrets};

/// A parsed workflow file and the text it came from (hashed into the run record, so a resume
/// refuses a changed file).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub workflow: Arc<Workflow>,
    pub text: String,
    /// Absolute when the file exists.
    pub path: PathBuf,
}

impl Loaded {
    pub(crate) fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }
}

/// Reads and parses a workflow; diagnostics (file:line:col) become [`RunnerError::Invalid`].
pub fn load(path: &Path) -> Result<Loaded, RunnerError> {
    // Capped: a server's workflows directory or a resume may meet any file.
    let text = crate::files::read_capped(path, "workflow", crate::files::WORKFLOW_LIMIT)?;
    let workflow = meridian_model::parse(&path.display().to_string(), &text)
        .map_err(|diags| RunnerError::Diagnostics(diags.to_string()))?;
    Ok(Loaded {
        workflow: Arc::new(workflow),
        text,
        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    })
}

/// Types `raw` against the workflow's `inputs:` without starting anything: what [`Runner::start`]
/// would refuse, said before a caller (a server) answers that a run started.
/// How many legs of `workflow` run at once: the run's own `max_parallel` (`--max-parallel`),
/// else the workflow's `max-parallel`, else 4.
pub fn legs_at_once(max_parallel: Option<usize>, workflow: &Workflow) -> usize {
    max_parallel.or(workflow.max_parallel).unwrap_or(4).max(1)
}

pub fn check_inputs(wf: &Workflow, raw: &BTreeMap<String, String>) -> Result<(), RunnerError> {
    meridian_engine::inputs::resolve(wf, raw)
        .map(|_| ())
        .map_err(RunnerError::Problems)
}

/// What executes the steps.
#[derive(Clone)]
pub enum StepRunner {
    /// The Wasm sandbox in this process; its kv state lives in the run's journal.
    Local(Arc<WasmExecutor>),
    /// Another executor (the PostgreSQL queue that `meridian worker` processes serve).
    Remote(Arc<dyn Executor>),
}

/// How to start a run.
#[derive(Default)]
pub struct Launch {
    pub mode: Mode,
    /// Inputs as given (`NAME` → text), typed against the workflow's `inputs:`.
    pub raw_inputs: BTreeMap<String, String>,
    pub secrets_file: Option<PathBuf>,
    pub max_parallel: Option<usize>,
    pub approve: Vec<String>,
    /// The run's time budget, applied to every invocation (this one and each resume).
    pub timeout: Option<Duration>,
    pub approver: Option<Arc<dyn Approver>>,
    /// Receives every event besides the journal (a terminal view, a server's stream).
    pub view: Option<Arc<dyn EventSink>>,
    /// The run's id, when the caller needs it before the run ends (a server answers a start
    /// request at once); a fresh one otherwise. See [`new_run_id`].
    pub run_id: Option<String>,
    /// Journaled in the run's settings (see [`RunSettings::trigger`]).
    pub trigger: Option<String>,
    /// Journaled in the run's settings (see [`RunSettings::idempotency_key`]).
    pub idempotency_key: Option<String>,
    /// Called once the run is recorded in the journal (before its first step): a server
    /// answers a start request then, so the run can be read as soon as its id is known.
    pub on_created: Option<Box<dyn FnOnce() + Send>>,
    /// The holder of the run's lease ([`Journal::lease_run`]) this invocation drives it under:
    /// its journal writes are refused once another takes the lease over
    /// ([`Journal::fenced_sink`]).
    pub lease_owner: Option<String>,
    /// See [`meridian_engine::RunOptions::keep_going`] (plans that read every region).
    pub keep_going: bool,
    /// Cancels the run from outside (a server's cancel): see [`meridian_engine::RunCancel`].
    pub cancel: Option<meridian_engine::RunCancel>,
}

/// How to resume (or, with `from`, retry) a run.
#[derive(Default)]
pub struct Resume {
    /// `retry --from STEP`: forget STEP and everything that needs it, then run them again.
    pub from: Option<String>,
    pub approve: Vec<String>,
    pub secrets_file: Option<PathBuf>,
    pub approver: Option<Arc<dyn Approver>>,
    /// Makes the view of the run's events once the run's workflow is loaded.
    pub view: Option<ViewFactory>,
    /// Answers to approval gates given by somebody with a name (an API token), journaled with it.
    pub decisions: Vec<Decision>,
    /// As [`Launch::lease_owner`].
    pub lease_owner: Option<String>,
    /// As [`Launch::cancel`]; cancelled already, the run is compensated and ends cancelled
    /// without going on.
    pub cancel: Option<meridian_engine::RunCancel>,
}

/// An answer to a step's approval gate.
#[derive(Clone, Debug)]
pub struct Decision {
    pub step: String,
    pub approve: bool,
    /// Who answered (a token's name).
    pub by: String,
    pub comment: String,
}

/// Builds a view (an extra event sink) for a workflow.
pub type ViewFactory = Box<dyn FnOnce(&Workflow) -> Arc<dyn EventSink> + Send>;

/// A run that ran (to any end: success, failure, a wait for approval, a timeout).
#[derive(Debug)]
pub struct Finished {
    pub workflow: Arc<Workflow>,
    pub report: RunReport,
    /// Measurements against the workflow's `drill:` targets, when it has any.
    pub drill: Option<DrillVerdict>,
}

/// What `resume` did.
#[derive(Debug)]
pub enum Resumed {
    /// The run had already succeeded; nothing ran (`retry --from` runs steps again).
    AlreadySucceeded,
    Ran(Finished),
}

/// Runs workflows over one journal and one way of executing steps.
#[derive(Clone)]
pub struct Runner {
    journal: Arc<dyn Journal>,
    pub(crate) steps: StepRunner,
    /// The lease owner of each run this runner drives under a lease: its steps' kv writes are
    /// fenced like its journal writes.
    fences: Arc<Mutex<HashMap<String, String>>>,
    /// The workflow versions this runner started runs of, newest last (at most
    /// [`VERSIONS_KEPT`]): a run waiting at a gate goes on with the version it started with
    /// after its file was edited (an edit, or a `git pull` of the workflows directory, blocked
    /// its approval while its primary stayed fenced).
    /// Each with its text's sha256, computed once.
    versions: Arc<Mutex<std::collections::VecDeque<(String, Loaded)>>>,
}

/// How many workflow versions a runner remembers (see `Runner::versions`).
const VERSIONS_KEPT: usize = 64;

/// Removes a run's fence when its execution ends, however it ends.
struct Fence<'a>(&'a Mutex<HashMap<String, String>>, String);

impl Drop for Fence<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

impl Runner {
    pub fn new(journal: Arc<dyn Journal>, steps: StepRunner) -> Runner {
        Runner {
            journal,
            steps,
            fences: Arc::default(),
            versions: Arc::default(),
        }
    }

    /// Remembers `wf` as a version runs were started from.
    fn remember(&self, wf: &Loaded) {
        let sha = wf.sha256();
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(s, _)| *s != sha);
        v.push_back((sha, wf.clone()));
        while v.len() > VERSIONS_KEPT {
            v.pop_front();
        }
    }

    /// The workflow run `run_id` was started from: its file if unchanged, else the version this
    /// runner started it from (a server that has run since; a restart, or another process,
    /// does not know it).
    fn resumable_workflow(&self, run_id: &str, record: &RunRecord) -> Result<Loaded, RunnerError> {
        let file = load(Path::new(&record.workflow_path));
        if let Ok(wf) = &file
            && wf.sha256() == record.workflow_sha256
        {
            return file;
        }
        if let Some(kept) = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(sha, _)| *sha == record.workflow_sha256)
        {
            return Ok(kept.1.clone());
        }
        let wf = file?;
        Err(RunnerError::Invalid(format!(
            "{} changed since run {run_id} started, and this process does not have the version it started with; resuming would mix two workflows",
            wf.path.display()
        )))
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Drops the runner in a process about to exit: the journal closes as usual (its syncer
    /// flushes what is left and stops), while the sandbox — its engine, its pool of instance
    /// slots, the components it loaded — is left for the operating system to reclaim instead
    /// of being unmapped piece by piece (~0.4 ms of a 1-step `meridian run`). Nothing waits on
    /// its drop: a compiled component and its functions are written to the caches as each
    /// compile ends.
    pub fn close_at_exit(self) {
        if let StepRunner::Local(e) = &self.steps {
            std::mem::forget(Arc::clone(e));
        }
    }

    /// What the steps' executor still owes for attempts given up on ([`Executor::settle`]): after
    /// a run was stopped from outside (a signal dropped it), the tasks of its dropped attempts
    /// are cancelled before the process exits, so no worker runs them later.
    pub async fn settle(&self) {
        match &self.steps {
            StepRunner::Local(e) => e.settle().await,
            StepRunner::Remote(e) => e.settle().await,
        }
    }

    /// Run `run_id` was stopped from outside (a signal dropped it): cancels what the executor
    /// still runs or holds queued for it ([`Executor::stop_run`]: a queue's tasks, claimed or
    /// not), then settles. Without it, a worker finished the interrupted step after the
    /// process had said it stopped, and one started later ran a step still queued.
    pub async fn stop_run(&self, run_id: &str) {
        match &self.steps {
            StepRunner::Local(e) => e.stop_run(run_id).await,
            StepRunner::Remote(e) => e.stop_run(run_id).await,
        }
        self.settle().await;
    }

    /// See [`Executor::abandon`]: call before dropping a run another coordinator took over.
    pub fn abandon(&self, run_id: &str) {
        match &self.steps {
            StepRunner::Local(e) => e.abandon(run_id),
            StepRunner::Remote(e) => e.abandon(run_id),
        }
    }

    /// Starts a new run of `wf` and runs it to its end.
    pub async fn start(&self, wf: &Loaded, launch: Launch) -> Result<Finished, RunnerError> {
        self.remember(wf);
        let workflow = wf.workflow.clone();
        let raw = launch.raw_inputs;
        let inputs =
            meridian_engine::inputs::resolve(&workflow, &raw).map_err(RunnerError::Problems)?;
        check_approvals(&workflow, "--approve", &launch.approve)?;
        let secrets = secrets::load(&workflow, launch.secrets_file.as_deref())?;
        self.check_with(&workflow).await?;
        let components = match &self.steps {
            StepRunner::Local(local) => crate::pins::record(&workflow, local),
            // A distributed run's components are loaded by its workers.
            StepRunner::Remote(_) => BTreeMap::new(),
        };
        // Every step of the run loads the version its checks read (see `pins`).
        let pinned_wf;
        let wf = if components.is_empty() {
            wf
        } else {
            pinned_wf = Loaded {
                workflow: Arc::new(crate::pins::pinned(&workflow, &components)),
                text: wf.text.clone(),
                path: wf.path.clone(),
            };
            &pinned_wf
        };
        let masker = Masker::new(secrets.values());
        let run_id = launch.run_id.unwrap_or_else(new_run_id);
        let settings = RunSettings {
            max_parallel: launch.max_parallel,
            approve: launch.approve.clone(),
            timeout: launch.timeout,
            raw_inputs: raw
                .iter()
                .map(|(k, v)| (k.clone(), masker.mask_str(v)))
                .collect(),
            trigger: launch.trigger,
            idempotency_key: launch.idempotency_key,
            secrets_file: launch
                .secrets_file
                .as_deref()
                .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf()))
                .map(|f| f.to_string_lossy().into_owned()),
            components,
        };
        self.journal.create_run(&RunRecord {
            id: run_id.clone(),
            workflow: workflow.name.clone(),
            workflow_path: wf.path.display().to_string(),
            workflow_sha256: wf.sha256(),
            mode: launch.mode,
            inputs: masker.mask_json(&serde_json::Value::Object(inputs.clone())),
            settings: settings.clone(),
        })?;
        if let Some(created) = launch.on_created {
            created();
        }
        let mut opts = RunOptions::new(run_id);
        opts.mode = launch.mode;
        opts.inputs = inputs;
        opts.secrets = secrets;
        opts.approvals = launch
            .approve
            .into_iter()
            .map(|s| (s, "--approve".to_string()))
            .collect();
        opts.approver = launch.approver;
        opts.keep_going = launch.keep_going;
        if let Some(c) = launch.cancel {
            opts.cancel = c;
        }
        let owner = launch.lease_owner.as_deref();
        self.execute(wf, opts, &settings, launch.view, None, owner)
            .await
    }

    /// What `validate` checks of `with:` against each component's input schema, checked again
    /// before a run starts, so a run refuses what `validate` refuses (and a component whose
    /// `describe` does not answer stops the run before anything ran). Only with the sandbox in
    /// this process: the components of a distributed run live with its workers. A component
    /// that cannot be loaded is left to fail its own step, as before.
    async fn check_with(&self, workflow: &Workflow) -> Result<(), RunnerError> {
        let StepRunner::Local(local) = &self.steps else {
            return Ok(());
        };
        if !local.allows_unpinned()
            && let Some(s) = workflow
                .steps
                .iter()
                .find(|s| s.component.as_ref().is_some_and(|c| c.is_unpinned_oci()))
        {
            let c = s.component.as_ref().expect("found above");
            return Err(RunnerError::Invalid(format!(
                "step `{}`: `uses: {c}` names a tag without a digest; pin it as {c}@sha256:<manifest digest> (`meridian step pull {c}` prints it) or pass --allow-unpinned",
                s.id.value
            )));
        }
        // The workflow's own trust policy, on top of the runner's.
        if let Some(p) = &workflow.trust_policy {
            let policy = meridian_oci::policy::TrustPolicy::load(&p.value).map_err(|e| {
                RunnerError::Invalid(format!("{}: `trust-policy`: {e}", workflow.file))
            })?;
            for s in &workflow.steps {
                if let Some(c @ meridian_model::ComponentRef::Oci { .. }) = &s.component
                    && let Err(e) = local.verify_oci_with(c, &policy).await
                {
                    return Err(RunnerError::Invalid(format!(
                        "step `{}`: {e} (the workflow's `trust-policy`)",
                        s.id.value
                    )));
                }
            }
        }
        let schemas = local.schemas_for(workflow).await;
        // A step whose component cannot be loaded stops the run before anything ran, as
        // `validate` does: an OCI step that cannot be pulled, verified or trusted (what runs
        // must be what was pinned and signed), a file that is missing or not a component (the
        // run was journaled and its step failed, exit 1).
        let unloadable: Vec<String> = workflow
            .steps
            .iter()
            .filter_map(|s| match schemas.get(s.component.as_ref()?) {
                Some(Err(e)) => Some(format!("step `{}`: {e}", s.id.value)),
                _ => None,
            })
            .collect();
        if !unloadable.is_empty() {
            return Err(RunnerError::Problems(unloadable));
        }
        let lookup = |c: &meridian_model::ComponentRef| {
            schemas.get(c).and_then(|r| r.as_ref().ok()).cloned()
        };
        let mut errors = meridian_model::Diagnostics::new();
        for d in meridian_model::schema::check_steps(workflow, &lookup) {
            if d.severity == meridian_model::Severity::Error {
                errors.push(d);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RunnerError::Diagnostics(errors.to_string()))
        }
    }

    /// Runs `opts` to the end. `resumed`: what the journal says of the drill's canaries when
    /// this resumes a run (`None` for a new run, whose start time is taken after compiling; a
    /// resume keeps the first start time).
    async fn execute(
        &self,
        wf: &Loaded,
        mut opts: RunOptions,
        settings: &RunSettings,
        view: Option<Arc<dyn EventSink>>,
        resumed: Option<PriorCanary>,
        lease_owner: Option<&str>,
    ) -> Result<Finished, RunnerError> {
        let fresh = resumed.is_none();
        let workflow = wf.workflow.clone();
        opts.max_parallel = legs_at_once(settings.max_parallel, &workflow);
        opts.run_timeout = settings.timeout;
        let journal = match lease_owner {
            Some(owner) => self.journal.fenced_sink(&opts.run_id, owner)?,
            None => self.journal.sink(&opts.run_id)?,
        };
        let _fence = lease_owner.map(|owner| {
            self.fences
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(opts.run_id.clone(), owner.to_string());
            Fence(&self.fences, opts.run_id.clone())
        });
        let sink: Arc<dyn EventSink> = match view {
            Some(v) => Arc::new(vec![journal, v]),
            None => journal,
        };
        opts.sink = Some(sink.clone());
        let measure = |name: &str, value: serde_json::Value| {
            let event = meridian_protocol::Event::Measured {
                name: name.to_string(),
                value,
            };
            sink.emit(&event)
                .map_err(|e| RunnerError::Host(format!("journaling the drill's canaries: {e}")))
        };
        let exec: Arc<dyn Executor> = match &self.steps {
            StepRunner::Remote(e) => e.clone(),
            StepRunner::Local(local) => {
                let (journal, fences) = (self.journal.clone(), self.fences.clone());
                local.set_kv_source(Arc::new(move |run: &str| {
                    let owner = fences
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(run)
                        .cloned();
                    match owner {
                        Some(owner) => journal.fenced_kv(run, &owner),
                        None => journal.kv(run),
                    }
                }));
                // Compile (or load from the cache) every component before the run starts, so a
                // cold cache neither delays the first steps nor counts in a drill's measured
                // times; the components compile concurrently (each on a blocking thread). A
                // component that cannot be loaded fails its step when the step runs.
                let mut uses: Vec<&meridian_model::ComponentRef> = workflow
                    .steps
                    .iter()
                    .filter_map(|s| s.component.as_ref())
                    .collect();
                uses.sort_by_key(|c| c.to_string());
                uses.dedup();
                futures::future::join_all(uses.into_iter().map(|u| Executor::prepare(&**local, u)))
                    .await;
                if fresh {
                    opts.started_at_ms = now_ms();
                }
                local.clone()
            }
        };
        // The drill's canaries: for a new run in apply mode. A resumed run's canaries either
        // reported already or died with the runner that started them.
        let mut canary_report = None;
        let canaries = match resumed {
            Some(PriorCanary::Reported(r)) => {
                canary_report = Some(r);
                None
            }
            Some(PriorCanary::Interrupted) => {
                let r = crate::canary::interrupted();
                measure(crate::canary::REPORT, r.clone())?;
                canary_report = Some(r);
                None
            }
            // A resumed run whose canaries never started does not start them half-way.
            Some(PriorCanary::None) => None,
            None if opts.mode != Mode::Apply => None,
            None => {
                let run = serde_json::json!({"id": opts.run_id, "workflow": workflow.name, "mode": opts.mode});
                match crate::canary::CanaryPlan::resolve(
                    &workflow,
                    &opts.inputs,
                    &opts.secrets,
                    run,
                )
                .map_err(RunnerError::Invalid)?
                {
                    Some(plan) => {
                        let warm_up = plan.warm_up;
                        let running = crate::canary::Running::start(plan, &opts.run_id);
                        measure(crate::canary::STARTED, running.started_record())?;
                        // The baseline: what clients see before anything is broken.
                        tokio::time::sleep(warm_up).await;
                        Some(running)
                    }
                    None => None,
                }
            }
        };
        let run_id = opts.run_id.clone();
        let report = meridian_engine::run(workflow.clone(), exec, opts).await;
        if let Some(running) = canaries {
            let succeeded = report
                .as_ref()
                .is_ok_and(|r| r.status == RunStatus::Succeeded);
            measure(crate::canary::SETTLING, running.settling_record(succeeded))?;
            let r = running.finish(succeeded).await;
            measure(crate::canary::REPORT, r.clone())?;
            canary_report = Some(r);
        }
        let report = report.map_err(|e| RunnerError::Host(e.to_string()))?;
        let approval_wait = match workflow.drill {
            // Every event is in the journal once the run ended (its end is a commit point).
            Some(_) => crate::drill::approval_wait_ms(&self.journal.events(&run_id)?),
            None => None,
        };
        let drill = DrillVerdict::judge(&workflow, &report, canary_report.as_ref(), approval_wait);
        Ok(Finished {
            workflow,
            report,
            drill,
        })
    }
}

/// What a journal says of a run's drill canaries.
#[derive(Debug)]
pub(crate) enum PriorCanary {
    /// None started (no canary, a plan, or they never ran).
    None,
    /// They reported: the last report.
    Reported(serde_json::Value),
    /// They started and never reported: the runner died with their samples.
    Interrupted,
}

pub(crate) fn prior_canary(events: &[meridian_store::EventRecord]) -> PriorCanary {
    let mut state = PriorCanary::None;
    for e in events {
        if let meridian_protocol::Event::Measured { name, value } = &e.event {
            if name == crate::canary::STARTED {
                state = PriorCanary::Interrupted;
            } else if name == crate::canary::REPORT {
                state = PriorCanary::Reported(value.clone());
            }
        }
    }
    state
}

/// Each `--approve STEP` names a step of the workflow that has an `approval:` gate: any other
/// name (a typo, a step without a gate) would be journaled with the run and change nothing,
/// while the run stops at the gate it was meant to pass.
fn check_approvals(workflow: &Workflow, flag: &str, names: &[String]) -> Result<(), RunnerError> {
    let gated = || {
        let ids: Vec<String> = workflow
            .steps
            .iter()
            .filter(|s| s.approval.is_some())
            .map(|s| format!("`{}`", s.id.value))
            .collect();
        if ids.is_empty() {
            "the workflow has no step with an approval gate".to_string()
        } else {
            format!("the steps with an approval gate: {}", ids.join(", "))
        }
    };
    for name in names {
        let why = match workflow.step(name) {
            None => "the workflow has no such step",
            Some(s) if s.approval.is_none() => "that step has no `approval:` gate",
            Some(_) => continue,
        };
        return Err(RunnerError::Invalid(format!(
            "{flag} {}: {why}; {}",
            meridian_protocol::text::for_terminal(name, ""),
            gated()
        )));
    }
    Ok(())
}

/// A new run id: `r<unix ms>-<8 hex digits>`, sortable by start time. 32 random bits: a server
/// starting many runs in one millisecond must not give two the same id (16 bits made that a
/// matter of time).
pub fn new_run_id() -> String {
    format!("r{}-{:08x}", now_ms(), rand::random::<u32>())
}
