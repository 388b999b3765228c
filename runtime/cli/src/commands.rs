//! The subcommands. Each is a small function over the library crates.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use meridian_engine::{Approver, ComponentRef, EventSink, Mode};
use meridian_model::Workflow;
use meridian_runner::{Journal, Launch, Resume, Resumed, Runner, RunnerError, StepRunner};
use meridian_store::StoreError;
use serde_json::json;

use crate::cli::{Cli, Command, NewCmd, ResumeArgs, RunArgs, StepsCmd};
use crate::out::{errln, outln};
use crate::view;
use crate::{Exit, exit};
use meridian_host::WasmExecutor;

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx {
        state_dir: cli.state_dir.clone(),
        store: cli.store.clone(),
        cache_dir: cli.cache_dir.clone().or_else(default_cache_dir),
        json: cli.json,
        server: cli.server.clone(),
        trust_policy: cli.trust_policy.clone(),
        // What runs refuses a tag without a digest unless `run`/`plan` say --allow-unpinned;
        // `validate` only warns, and `steps show` / `step pull` resolve the tag.
        allow_unpinned: match &cli.command {
            Command::Run(a) | Command::Plan(a) => a.allow_unpinned,
            Command::Validate { .. } | Command::Steps(_) | Command::Step(_) => true,
            _ => false,
        },
    };
    match cli.command {
        Command::Validate { files } => validate(&ctx, &files).await,
        Command::Plan(args) => start(&ctx, args, Mode::Plan).await,
        Command::Run(args) => start(&ctx, args, Mode::Apply).await,
        Command::Resume { run_id, common } => resume(&ctx, &run_id, None, common).await,
        Command::Retry {
            run_id,
            from,
            common,
        } => resume(&ctx, &run_id, Some(from), common).await,
        Command::Runs(cmd) => crate::runs::run(&ctx, cmd),
        Command::Ready(args) => ready(&ctx, args).await,
        Command::Drift(args) => crate::drift::drift(&ctx, args).await,
        Command::Doctor => crate::doctor::doctor(&ctx),
        Command::Drills(cmd) => crate::evidence::drills(&ctx, cmd),
        Command::Evidence(cmd) => crate::evidence::evidence(&ctx, cmd),
        Command::Steps(StepsCmd::List) => steps_list(&ctx).await,
        Command::Steps(StepsCmd::Show { step }) => steps_show(&ctx, &step).await,
        Command::New(NewCmd::Step { name, dir, lang }) => {
            crate::scaffold::scaffold(&name, dir, lang)
        }
        Command::Step(cmd) => crate::oci::run(&ctx, cmd).await,
        Command::Cache(cmd) => crate::cache::run(&ctx, cmd),
        Command::Lab(_) | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the runtime starts")
        }
        Command::Worker {
            id,
            max_concurrent,
            lease,
            heartbeat,
            new_key,
        } => {
            let lease = lease_timing(&lease, heartbeat.as_deref())?;
            worker(&ctx, id, max_concurrent, lease, new_key).await
        }
        Command::Serve(args) => crate::serve::serve(&ctx, args).await,
        Command::Approve {
            run_id,
            step,
            reject,
            comment,
        } => crate::remote::approve(ctx.server.as_deref(), &run_id, &step, reject, comment),
        Command::Trigger { schedule } => crate::remote::trigger(ctx.server.as_deref(), &schedule),
        Command::Cancel { run_id, reason } => {
            crate::remote::cancel(ctx.server.as_deref(), &run_id, reason)
        }
    }
}

#[derive(Clone)]
pub struct Ctx {
    pub state_dir: PathBuf,
    pub store: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    /// `--server URL`: read runs from a `meridian serve` instead of a journal.
    pub server: Option<String>,
    /// `--trust-policy FILE` for `uses: oci://…`.
    pub trust_policy: Option<PathBuf>,
    /// Whether an OCI tag without a digest may be loaded.
    pub allow_unpinned: bool,
}

impl Ctx {
    pub(crate) fn journal(&self) -> anyhow::Result<Arc<dyn Journal>> {
        if let Some(url) = &self.server {
            let remote = crate::remote::Remote::new(url)?;
            return Ok(Arc::new(crate::remote::RemoteJournal(remote)));
        }
        crate::store::open(self.store.as_deref(), &self.state_dir)
    }

    /// A runner over this invocation's journal and step executor.
    pub(crate) async fn runner(&self) -> anyhow::Result<Runner> {
        self.runner_for(None, None).await
    }

    /// A runner that is about to run `wf`. The journal opens (SQLite reads its WAL back) on a
    /// blocking thread while the sandbox starts and loads `wf`'s components (from the compile
    /// cache, or compiled, all at once) and asks each for its schemas — what the run's first
    /// check needs anyway: a `meridian run` waits for the longer of the two instead of both.
    /// The sandbox has room for as many steps at once as the run runs (`max_parallel`, the
    /// run's `--max-parallel`).
    pub(crate) async fn runner_for(
        &self,
        wf: Option<&Workflow>,
        max_parallel: Option<usize>,
    ) -> anyhow::Result<Runner> {
        let ctx = self.clone();
        let journal = tokio::task::spawn_blocking(move || ctx.journal());
        let steps = match self.store.as_deref() {
            Some(url) if crate::store::is_postgres(url) => {
                StepRunner::Remote(self.step_executor().await?)
            }
            _ => {
                let slots = wf.map(|wf| meridian_runner::legs_at_once(max_parallel, wf));
                let exec = self.executor_with(slots)?;
                // Only local components: an OCI one is fetched and verified against the
                // workflow's trust policy by the run's check first, before any of its code runs.
                let local = |wf: &&Workflow| {
                    wf.components()
                        .iter()
                        .all(|c| !matches!(c, meridian_model::ComponentRef::Oci { .. }))
                };
                if let Some(wf) = wf.filter(local) {
                    // Errors are the run's to report, when it checks the same schemas.
                    let _ = exec.schemas_for(wf).await;
                }
                StepRunner::Local(exec)
            }
        };
        let journal = journal
            .await
            .map_err(|e| anyhow::anyhow!("opening the journal panicked: {e}"))??;
        Ok(Runner::new(journal, steps))
    }

    /// What runs the steps: the sandbox in this process, or — with a PostgreSQL store — the
    /// queue that `meridian worker` processes take steps from.
    async fn step_executor(&self) -> anyhow::Result<Arc<dyn meridian_engine::Executor>> {
        match self.store.as_deref() {
            Some(url) if url.starts_with("postgres") => {
                let key = meridian_distributed::TaskKey::from_env().map_err(|e| {
                    Exit::invalid(format!(
                        "error: {e}\n  = help: every coordinator and worker needs the same key: `export {}=$(meridian worker --new-key)`",
                        meridian_distributed::TASK_KEY_ENV
                    ))
                })?;
                let q = meridian_distributed::PgQueue::connect(
                    url,
                    key,
                    meridian_distributed::QueueOptions::default(),
                )
                .await
                .map_err(|e| Exit {
                    code: exit::INTERNAL,
                    message: format!("error: {e}"),
                })?;
                Ok(Arc::new(q))
            }
            _ => Ok(self.executor()?),
        }
    }

    pub(crate) fn executor(&self) -> anyhow::Result<Arc<WasmExecutor>> {
        self.executor_with(None)
    }

    /// The sandbox, with room for `slots` steps at once (the default: many runs' steps).
    fn executor_with(&self, slots: Option<usize>) -> anyhow::Result<Arc<WasmExecutor>> {
        let slots = slots.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let exec = WasmExecutor::with_slots(self.cache_dir.clone(), slots).map_err(|e| Exit {
            code: exit::INTERNAL,
            message: format!("error: cannot start the Wasm sandbox: {e}"),
        })?;
        Ok(Arc::new(exec.with_oci(crate::oci::settings(self)?)))
    }
}

/// `$XDG_CACHE_HOME/meridian`, else `$HOME/.cache/meridian`. As the XDG spec says, an empty or
/// relative `XDG_CACHE_HOME` is ignored; an empty or relative `HOME` gives no cache (rather
/// than one under whatever directory the command runs in).
fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(x) = absolute("XDG_CACHE_HOME") {
        return Some(x.join("meridian"));
    }
    absolute("HOME").map(|h| h.join(".cache/meridian"))
}

/// Text a step produced (or that contains it), escaped for the terminal with continuation lines
/// indented under the row it belongs to.
pub(crate) fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    meridian_protocol::text::for_terminal(s, "      ")
}

/// Text a step produced, escaped, its continuation lines starting with `indent`.
pub(crate) fn indented<'a>(s: &'a str, indent: &str) -> std::borrow::Cow<'a, str> {
    meridian_protocol::text::for_terminal(s, indent)
}

/// A runner error as the CLI reports it: the user's mistakes exit 2, the host's exit 5.
pub(crate) fn fail(e: RunnerError) -> anyhow::Error {
    let usage = e.is_usage();
    let message = match e {
        // Diagnostics print as they are (they name file:line:col themselves).
        RunnerError::Diagnostics(m) => m,
        // Anything else may carry what a step, a registry or a signature said: made safe for
        // the terminal (a registry's error body cleared the screen and printed a fake "OK").
        other => format!(
            "error: {}",
            meridian_protocol::text::for_terminal(&other.to_string(), "  ")
        ),
    };
    anyhow::Error::new(Exit {
        code: if usage { exit::INVALID } else { exit::INTERNAL },
        message,
    })
}

/// A journal error: an unknown run is the user's mistake (exit 2), anything else the store's.
pub(crate) fn store_fail(e: StoreError) -> anyhow::Error {
    fail(RunnerError::Store(e))
}

async fn validate(ctx: &Ctx, files: &[PathBuf]) -> anyhow::Result<u8> {
    let exec = ctx.executor()?;
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let mut out = Vec::new();
    for f in files {
        // Any file, a device or a FIFO, read with the model's cap.
        let text = match meridian_runner::files::read_capped(
            f,
            "workflow",
            meridian_runner::files::WORKFLOW_LIMIT,
        ) {
            Ok(t) => t,
            Err(e) => {
                errln!("error: {e}");
                errors += 1;
                continue;
            }
        };
        let (wf, mut diags) = meridian_model::analyze(&f.display().to_string(), &text);
        let Some(wf) = wf.filter(|_| !diags.has_errors()) else {
            errors += diags.error_count();
            warnings += diags.warning_count();
            errln!("{diags}");
            out.push(json!({"file": f, "valid": false, "diagnostics": diags.as_slice()}));
            continue;
        };
        for d in meridian_runner::validate::component_diagnostics(&exec, &wf, &text).await {
            diags.push(d);
        }
        diags.sort();
        let e = diags.error_count();
        errors += e;
        warnings += diags.warning_count();
        if !diags.is_empty() {
            errln!("{diags}");
        }
        out.push(json!({"file": f, "valid": e == 0, "diagnostics": diags.as_slice()}));
        if e == 0 && !ctx.json {
            let n = wf.steps.len();
            outln!(
                "{}: ok ({n} step{})",
                f.display(),
                if n == 1 { "" } else { "s" }
            )?;
        }
    }
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    }
    if errors > 0 {
        errln!("{errors} error(s), {warnings} warning(s)");
        return Ok(exit::INVALID);
    }
    Ok(exit::OK)
}

struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask(&self, step: &str, message: &str) -> BoxFuture<'static, bool> {
        let prompt = format!("\n{}\napprove step `{step}`? [y/N] ", safe(message));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // The live table steps aside while the question is on the screen.
                crate::live::with_table_hidden(|| {
                    crate::out::err(&prompt);
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).is_ok()
                        && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
                })
            })
            .await
            .unwrap_or(false)
        })
    }
}

pub(crate) fn view_sink(ctx: &Ctx, wf: &Workflow) -> Arc<dyn EventSink> {
    view_for(ctx.json, crate::live::can_redraw(), wf)
}

fn view_for(json: bool, live: bool, wf: &Workflow) -> Arc<dyn EventSink> {
    if json {
        Arc::new(view::JsonLines)
    } else if live {
        let ids: Vec<String> = wf.steps.iter().map(|s| s.id.value.clone()).collect();
        Arc::new(crate::live::Live::new(&ids))
    } else {
        Arc::new(view::Lines::new())
    }
}

async fn start(ctx: &Ctx, args: RunArgs, mode: Mode) -> anyhow::Result<u8> {
    // Size and kind from the metadata, before `load` reads the file whole.
    meridian_runner::files::check_workflow_file(&args.file).map_err(fail)?;
    let wf = meridian_runner::load(&args.file).map_err(fail)?;
    let (raw, _) = raw_inputs(ctx, &wf, &args).await?;
    let timeout = match &args.timeout {
        Some(t) => Some(
            meridian_model::duration::parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    let why = meridian_model::duration::parse_duration(t)
                        .err()
                        .map_or("must be more than 0".to_string(), |e| e.to_string());
                    Exit::invalid(format!("error: --timeout {t}: {why}"))
                })?,
        ),
        None => None,
    };
    let runner = ctx
        .runner_for(Some(&wf.workflow), args.max_parallel)
        .await?;
    if mode == Mode::Apply && wf.workflow.drill.is_some() {
        refuse_a_second_drill(&**runner.journal(), &wf.workflow.name)?;
    }
    view::set_resume_flags(&ctx.state_dir, args.secrets_file.as_deref());
    let mut launch = Launch {
        mode,
        raw_inputs: raw,
        secrets_file: args.secrets_file.clone(),
        max_parallel: args.max_parallel,
        approve: args.approve.clone(),
        timeout,
        approver: approver(ctx, args.no_prompt),
        view: Some(view_sink(ctx, &wf.workflow)),
        ..Launch::default()
    };
    // Held from before the run is recorded: a `meridian resume` of it while this process
    // drives it is refused (it would run the same steps beside this one).
    let lease = crate::lease::RunLease::for_new_run(runner.journal().clone(), &mut launch)?;
    let id = lease.run_id().to_string();
    let done = tokio::select! {
        done = runner.start(&wf, launch) => done.map_err(fail)?,
        signal = interrupted() => {
            runner.stop_run(&id).await;
            stop_interrupted(&id, lease, &**runner.journal(), signal)
        }
    };
    drop(lease);
    runner.close_at_exit();
    crate::summary::report(ctx, &done)
}

/// Refuses a drill while another run of it goes (see `history::drill_going`).
fn refuse_a_second_drill(journal: &dyn meridian_store::Journal, name: &str) -> anyhow::Result<()> {
    let going = meridian_runner::history::drill_going(journal, name, &crate::lease::holder_is_dead)
        .map_err(|e| Exit {
            code: exit::INTERNAL,
            message: format!("error: {e}"),
        })?;
    let Some((id, holder)) = going else {
        return Ok(());
    };
    let how = match holder {
        Some(_) => "wait for it to end, or stop it".to_string(),
        None => format!(
            "it waits at a gate: approve or reject it (`meridian resume {id} --approve STEP` or `--reject STEP`)"
        ),
    };
    Err(Exit {
        code: exit::INVALID,
        message: format!(
            "error: run {id} of `{}` is drilling now; two drills at once break the same region twice, and each measures the other's failover: {how}",
            meridian_protocol::text::for_terminal(name, "")
        ),
    }
    .into())
}

/// The inputs of a run started from the command line: `--inputs-file` (the names the workflow
/// declares), then `--input` pairs; for a workflow with `on.git`, the git inputs not given
/// (from `git_commit` when given, else the branch head). Returns the commit too.
pub(crate) async fn raw_inputs(
    ctx: &Ctx,
    wf: &meridian_runner::Loaded,
    args: &RunArgs,
) -> anyhow::Result<(BTreeMap<String, String>, Option<meridian_gitops::Commit>)> {
    let mut raw: BTreeMap<String, String> = match &args.inputs_file {
        Some(f) => meridian_runner::inputs::from_file_for(&wf.workflow, f).map_err(fail)?,
        None => BTreeMap::new(),
    };
    raw.extend(meridian_runner::inputs::parse_pairs(&args.inputs).map_err(fail)?);
    let (workflow, state_dir) = (wf.workflow.clone(), ctx.state_dir.clone());
    let (raw, commit) = tokio::task::spawn_blocking(move || {
        let mut raw = raw;
        meridian_runner::git::fill_inputs(&workflow, &state_dir, &mut raw).map(|c| (raw, c))
    })
    .await?
    .map_err(fail)?;
    Ok((raw, commit))
}

/// `meridian ready`: the readiness rules over a plan of the workflow.
async fn ready(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    meridian_runner::files::check_workflow_file(&args.file).map_err(fail)?;
    let wf = meridian_runner::load(&args.file).map_err(fail)?;
    let (raw, _) = raw_inputs(ctx, &wf, &args).await?;
    let runner = ctx.runner().await?;
    let mut launch = Launch {
        raw_inputs: raw,
        secrets_file: args.secrets_file.clone(),
        max_parallel: args.max_parallel,
        ..Launch::default()
    };
    let _lease = crate::lease::RunLease::for_new_run(runner.journal().clone(), &mut launch)?;
    let r = runner.ready(&wf, launch).await.map_err(fail)?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        outln!(
            "{} is {} ({} ms; plan run {})",
            r.workflow,
            if r.ready { "READY" } else { "NOT READY" },
            r.took_ms,
            r.run_id
        )?;
        for c in &r.checks {
            outln!(
                "  {:<4} {:<12} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.rule,
                c.detail
            )?;
        }
    }
    Ok(if r.ready { exit::OK } else { exit::FAILED })
}

/// SIGINT (Ctrl-C) or SIGTERM: the signal's exit code (128 + its number) and name.
async fn interrupted() -> (i32, &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => (130, "interrupted"),
        _ = term.recv() => (143, "terminated"),
    }
}

/// Stops a run this process drives, as a kill would — the journal is consistent at every
/// point, so nothing finished is lost — but lets its lease go (another machine resumes it at
/// once) and says how to go on. A step that was running is abandoned; it runs again, with the
/// same idempotency key, when the run is resumed. Exits the process: a terminal prompt may be
/// blocking on its input.
fn stop_interrupted(
    run_id: &str,
    lease: crate::lease::RunLease,
    journal: &dyn meridian_store::Journal,
    (code, what): (i32, &str),
) -> ! {
    drop(lease);
    let events = journal.events(run_id).unwrap_or_default();
    let measured = |n: &str| {
        events
            .iter()
            .any(|e| matches!(&e.event, meridian_engine::Event::Measured { name, .. } if name == n))
    };
    let canaries = measured("canary-started") && !measured("canary");
    let ended = journal.run(run_id).ok().map(|(_, s)| s.status).filter(|s| {
        !matches!(
            s,
            meridian_engine::RunStatus::Running | meridian_engine::RunStatus::AwaitingApproval
        )
    });
    let text = match ended {
        // The run had ended; only its drill's canaries were still measuring.
        Some(status) => format!(
            "\n{what}: run {run_id} had ended ({}); its drill's canaries were stopped before they reported, so its drill has no writer or prober figures (a new run measures them)\n",
            status.as_str()
        ),
        None => format!(
            "\n{what}: run {run_id} stopped here; what finished is kept, and a step that was running runs again (same idempotency key) when the run goes on:\n  meridian resume {run_id}{}\n{}",
            view::resume_flags(),
            if canaries {
                "Its drill's canaries stopped with it: a resume finishes the run, but the drill's writer and prober figures are not measured (a new run measures them).\nWhat it broke stays broken until then: a fault injected, a primary fenced, DNS not yet moved (`meridian lab status` says what is down in the lab).\n"
            } else {
                ""
            }
        ),
    };
    view::write_stderr(&text);
    let _ = crate::out::flush();
    std::process::exit(code)
}

/// A terminal prompt for approval gates, when there is a terminal to ask on.
fn approver(ctx: &Ctx, no_prompt: bool) -> Option<Arc<dyn Approver>> {
    (!no_prompt && std::io::stdin().is_terminal() && !ctx.json)
        .then(|| Arc::new(TerminalApprover) as Arc<dyn Approver>)
}

async fn resume(
    ctx: &Ctx,
    run_id: &str,
    from: Option<String>,
    args: ResumeArgs,
) -> anyhow::Result<u8> {
    let runner = ctx.runner().await?;
    view::set_resume_flags(&ctx.state_dir, args.secrets_file.as_deref());
    let json = ctx.json;
    let live = std::io::stderr().is_terminal() && std::env::var_os("MERIDIAN_PLAIN").is_none();
    let lease = crate::lease::RunLease::take(runner.journal().clone(), run_id)?;
    let resume = Resume {
        from,
        approve: args.approve.clone(),
        secrets_file: args.secrets_file.clone(),
        approver: approver(ctx, args.no_prompt),
        view: Some(Box::new(move |wf: &Workflow| view_for(json, live, wf))),
        decisions: args
            .reject
            .iter()
            .map(|step| meridian_runner::Decision {
                step: step.clone(),
                approve: false,
                by: "--reject".to_string(),
                comment: args.comment.clone().unwrap_or_default(),
            })
            .collect(),
        lease_owner: Some(lease.owner().to_string()),
        cancel: None,
    };
    let resumed = tokio::select! {
        resumed = runner.resume(run_id, resume) => resumed.map_err(fail)?,
        signal = interrupted() => {
            runner.stop_run(run_id).await;
            stop_interrupted(run_id, lease, &**runner.journal(), signal)
        }
    };
    match resumed {
        Resumed::AlreadySucceeded => {
            outln!(
                "run {run_id} already succeeded; nothing to resume (use `meridian retry {run_id} --from STEP`)"
            )?;
            // Its drill may not have been judged (the runner killed while its canaries
            // settled): the exit says what `drills list` says, as a run's exit does.
            let drill = meridian_runner::history::of_run(runner.journal().as_ref(), run_id)
                .map_err(store_fail)?;
            match drill {
                Some(d) if d.verdict != meridian_runner::Overall::Met => {
                    outln!(
                        "its drill: {} (see `meridian runs show {run_id}`)",
                        d.verdict.as_str()
                    )?;
                    Ok(exit::DRILL_NOT_MET)
                }
                _ => Ok(exit::OK),
            }
        }
        Resumed::Ran(done) => crate::summary::report(ctx, &done),
    }
}

async fn steps_list(ctx: &Ctx) -> anyhow::Result<u8> {
    let exec = ctx.executor()?;
    let mut rows = Vec::new();
    // The built-ins, then the OCI steps pulled into the cache (verified again, offline).
    let steps = meridian_artifacts::BUILTIN
        .iter()
        .map(|(n, _)| ComponentRef::builtin(*n))
        .chain(exec.pulled());
    for c in steps {
        let name = match &c {
            ComponentRef::Builtin { name, .. } => name.clone(),
            other => other.to_string(),
        };
        let origin = crate::oci::origin(&exec, &c).await;
        match exec.manifest(&c).await {
            Ok(m) => rows.push(
                json!({"name": name, "version": m.version, "description": m.description,
                       "origin": origin.to_json()}),
            ),
            Err(e) => rows.push(json!({"name": name, "error": e.to_string(),
                                       "origin": origin.to_json()})),
        }
    }
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
        let mut pulled_header = false;
        for r in rows {
            let about = r["description"]
                .as_str()
                .or(r["error"].as_str())
                .unwrap_or("");
            if r["origin"]["kind"] != "oci" {
                outln!(
                    "{:<18} {:<8} {about}",
                    text(&r, "name"),
                    text(&r, "version")
                )?;
                continue;
            }
            if !pulled_header {
                outln!("\npulled from OCI registries:")?;
                pulled_header = true;
            }
            // A vendor's manifest is untrusted text: escaped before it reaches the terminal.
            let safe = |s: &str| meridian_protocol::text::for_terminal(s, "    ").to_string();
            outln!("{}  {}", text(&r, "name"), safe(&text(&r, "version")))?;
            outln!("    {}", safe(about))?;
            outln!("    signature: {}", safe(&text(&r["origin"], "signature")))?;
        }
    }
    Ok(exit::OK)
}

async fn steps_show(ctx: &Ctx, step: &str) -> anyhow::Result<u8> {
    let exec = ctx.executor()?;
    // A path on the command line means what it means in the shell: relative to here.
    let component = ComponentRef::parse(step, &std::env::current_dir()?)
        .map_err(|e| Exit::invalid(format!("error: step `{step}`: {e}")))?;
    let m = exec
        .manifest(&component)
        .await
        .map_err(|e| Exit::invalid(format!("error: step `{step}`: {e}")))?;
    let origin = crate::oci::origin(&exec, &component).await;
    if ctx.json {
        let mut v = serde_json::to_value(&m)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("origin".into(), origin.to_json());
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        crate::out::write(format_args!("{}", crate::manifest::summary(&m, step)))?;
        crate::out::write(format_args!("{}", origin.to_text()))?;
    }
    Ok(exit::OK)
}

/// `meridian worker`: takes steps from the PostgreSQL queue and runs them in the local sandbox
/// until SIGINT/SIGTERM, then lets running steps finish.
/// `--lease` and `--heartbeat` of `meridian worker`: (lease, heartbeat), checked.
fn lease_timing(
    lease: &str,
    heartbeat: Option<&str>,
) -> anyhow::Result<(std::time::Duration, std::time::Duration)> {
    use std::time::Duration;
    let parse = |flag: &str, v: &str| {
        meridian_model::duration::parse_duration(v)
            .map_err(|e| Exit::invalid(format!("error: --{flag} {v}: {e}")))
    };
    let lease = parse("lease", lease)?;
    if lease < Duration::from_secs(1) {
        return Err(Exit::invalid(
            "error: --lease must be at least 1s (a heartbeat must reach the database well within it)",
        ));
    }
    let heartbeat = match heartbeat {
        Some(h) => parse("heartbeat", h)?,
        None => Duration::from_secs(10).min(lease / 3),
    };
    if heartbeat.is_zero() || heartbeat > lease / 2 {
        return Err(Exit::invalid(format!(
            "error: --heartbeat must be more than 0 and at most half of --lease ({:?}), so one late heartbeat does not lose the lease",
            lease / 2
        )));
    }
    Ok((lease, heartbeat))
}

async fn worker(
    ctx: &Ctx,
    id: Option<String>,
    max_concurrent: usize,
    (lease, heartbeat): (std::time::Duration, std::time::Duration),
    new_key: bool,
) -> anyhow::Result<u8> {
    if new_key {
        outln!("{}", meridian_distributed::TaskKey::generate().to_hex())?;
        return Ok(exit::OK);
    }
    let Some(url) = ctx.store.as_deref().filter(|u| u.starts_with("postgres")) else {
        return Err(Exit::invalid(
            "error: `meridian worker` needs --store postgres://… (the queue lives in PostgreSQL)",
        ));
    };
    let key = meridian_distributed::TaskKey::from_env().map_err(|e| {
        Exit::invalid(format!(
            "error: {e}\n  = help: `export {}=$(meridian worker --new-key)` on the coordinator and every worker",
            meridian_distributed::TASK_KEY_ENV
        ))
    })?;
    let id = id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), std::process::id())
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        stop.cancel();
    });
    let exec = ctx.executor()?;
    // A run's kv state lives in the shared journal, so a compensation this worker runs sees what
    // a step saved on another worker, or before a coordinator was killed.
    let journal = ctx.journal()?;
    exec.set_kv_source(Arc::new(move |run: &str| journal.kv(run)));
    errln!("worker {id}: taking steps from the queue (Ctrl-C to stop)");
    meridian_distributed::run_worker(
        url,
        &id,
        exec,
        key,
        meridian_distributed::WorkerOptions {
            max_concurrent: max_concurrent.max(1),
            lease,
            heartbeat,
            shutdown,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Exit {
        code: exit::INTERNAL,
        message: format!("error: worker {id}: {e}"),
    })?;
    Ok(exit::OK)
}
