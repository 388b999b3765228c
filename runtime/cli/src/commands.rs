//! The subcommands. Each is a small function over the library crates.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_engine::{
    Approver, ComponentRef, EventSink, Mode, Outcome, PriorLeg, RunOptions, RunReport, RunStatus,
};
use meridian_model::Workflow;
use meridian_store::RunRecord;

use crate::store::Store;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::cli::{Cli, Command, NewCmd, ResumeArgs, RunArgs, RunsCmd, StepsCmd};
use crate::view::{self, fmt_dur};
use crate::{Exit, exit};
use meridian_host::WasmExecutor;

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx {
        state_dir: cli.state_dir.clone(),
        store: cli.store.clone(),
        cache_dir: cli.cache_dir.clone().or_else(default_cache_dir),
        json: cli.json,
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
        Command::Runs(RunsCmd::List { limit }) => runs_list(&ctx, limit),
        Command::Runs(RunsCmd::Show { run_id, html }) => runs_show(&ctx, &run_id, html.as_deref()),
        Command::Steps(StepsCmd::List) => steps_list(&ctx).await,
        Command::Steps(StepsCmd::Show { step }) => steps_show(&ctx, &step).await,
        Command::New(NewCmd::Step { name, dir }) => crate::scaffold::scaffold(&name, dir),
        Command::Lab(_) => unreachable!("handled before the runtime starts"),
        Command::Worker {
            id,
            max_concurrent,
            new_key,
        } => worker(&ctx, id, max_concurrent, new_key).await,
    }
}

pub struct Ctx {
    pub state_dir: PathBuf,
    pub store: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
}

impl Ctx {
    fn store(&self) -> anyhow::Result<Store> {
        Store::open(self.store.as_deref(), &self.state_dir)
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

    fn executor(&self) -> anyhow::Result<Arc<WasmExecutor>> {
        let exec = WasmExecutor::new(self.cache_dir.clone()).map_err(|e| Exit {
            code: exit::INTERNAL,
            message: format!("error: cannot start the Wasm sandbox: {e}"),
        })?;
        Ok(Arc::new(exec))
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("meridian"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meridian"))
}

/// Reads and parses a workflow; diagnostics become an exit-2 error.
fn load(path: &Path) -> anyhow::Result<(Arc<Workflow>, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::invalid(format!("error: cannot read {}: {e}", path.display())))?;
    match meridian_model::parse(&path.display().to_string(), &text) {
        Ok(wf) => Ok((Arc::new(wf), text)),
        Err(diags) => Err(Exit::invalid(diags.to_string())),
    }
}

async fn validate(ctx: &Ctx, files: &[PathBuf]) -> anyhow::Result<u8> {
    let exec = ctx.executor()?;
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let mut out = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                errors += 1;
                continue;
            }
        };
        let (wf, mut diags) = meridian_model::analyze(&f.display().to_string(), &text);
        let Some(wf) = wf.filter(|_| !diags.has_errors()) else {
            errors += diags.error_count();
            warnings += diags.warning_count();
            eprintln!("{diags}");
            out.push(json!({"file": f, "valid": false, "diagnostics": diags.as_slice()}));
            continue;
        };
        let schemas = exec.schemas_for(&wf).await;
        let lookup = |c: &ComponentRef| schemas.get(c).and_then(|r| r.as_ref().ok()).cloned();
        for d in meridian_model::schema::check_steps(&wf, &lookup) {
            diags.push(d);
        }
        // A `uses:` that cannot be loaded is an error at its position.
        for step in &wf.steps {
            if let Some(Err(msg)) = step.component.as_ref().and_then(|c| schemas.get(c)) {
                diags.push(
                    meridian_model::diag::Diagnostic::error(
                        &wf.file,
                        step.uses.span,
                        format!("cannot load step `{}`: {msg}", step.uses.value),
                    )
                    .with_hint("use a built-in name (`meridian steps list`), a path to a .wasm component, or NAME@sha256:DIGEST")
                    .with_source(&text),
                );
            }
        }
        diags.sort();
        let e = diags.error_count();
        errors += e;
        warnings += diags.warning_count();
        if !diags.is_empty() {
            eprintln!("{diags}");
        }
        out.push(json!({"file": f, "valid": e == 0, "diagnostics": diags.as_slice()}));
        if e == 0 && !ctx.json {
            println!("{}: ok ({} steps)", f.display(), wf.steps.len());
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if errors > 0 {
        eprintln!("{errors} error(s), {warnings} warning(s)");
        return Ok(exit::INVALID);
    }
    Ok(exit::OK)
}

fn parse_kv(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(Exit::invalid(format!(
                "error: --input `{item}` is not NAME=VALUE"
            )));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// A map of inputs from a JSON or YAML file, as the strings `--input` would give.
fn inputs_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::invalid(format!("error: --inputs-file {}: {e}", path.display())))?;
    let map: BTreeMap<String, Json> = serde_yaml_ng::from_str(&text).map_err(|e| {
        Exit::invalid(format!(
            "error: --inputs-file {}: {e} (expected a map of input names to values)",
            path.display()
        ))
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Json::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}

/// Secret values: `MERIDIAN_SECRET_<NAME>` wins over the secrets file. A declared secret with no
/// value is an error, named with both ways to give it.
fn load_secrets(wf: &Workflow, file: Option<&Path>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut from_file = BTreeMap::new();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Exit::invalid(format!("error: secrets file {}: {e}", f.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Exit::invalid(format!(
                    "error: {}:{}: expected NAME=value",
                    f.display(),
                    n + 1
                )));
            };
            from_file.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for s in &wf.secrets {
        let env = format!(
            "MERIDIAN_SECRET_{}",
            s.value.to_uppercase().replace('-', "_")
        );
        match std::env::var(&env)
            .ok()
            .or_else(|| from_file.get(&s.value).cloned())
        {
            Some(v) => {
                out.insert(s.value.clone(), v);
            }
            None => missing.push(format!(
                "secret `{}` has no value: export {env}=… or put `{}=…` in --secrets-file",
                s.value, s.value
            )),
        }
    }
    if !missing.is_empty() {
        return Err(Exit::invalid(format!(
            "error: {}",
            missing.join("\nerror: ")
        )));
    }
    Ok(out)
}

fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let suffix: u32 = rand::random::<u32>() & 0xffff;
    format!("r{}-{:04x}", now.as_millis(), suffix)
}

struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask(&self, step: &str, message: &str) -> BoxFuture<'static, bool> {
        let prompt = format!("\n{message}\napprove step `{step}`? [y/N] ");
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                eprint!("{prompt}");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).is_ok()
                    && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
            })
            .await
            .unwrap_or(false)
        })
    }
}

fn view_sink(ctx: &Ctx, wf: &Workflow) -> Arc<dyn EventSink> {
    if ctx.json {
        Arc::new(view::JsonLines)
    } else if std::io::stderr().is_terminal() && std::env::var_os("MERIDIAN_PLAIN").is_none() {
        let ids: Vec<String> = wf.steps.iter().map(|s| s.id.value.clone()).collect();
        Arc::new(view::Live::new(&ids))
    } else {
        Arc::new(view::Lines::new())
    }
}

async fn start(ctx: &Ctx, args: RunArgs, mode: Mode) -> anyhow::Result<u8> {
    let (wf, text) = load(&args.file)?;
    // A shared inputs file (the lab's) may describe more than this workflow declares.
    let mut raw: BTreeMap<String, String> = match &args.inputs_file {
        Some(f) => inputs_file(f)?
            .into_iter()
            .filter(|(k, _)| wf.inputs.contains_key(k))
            .collect(),
        None => BTreeMap::new(),
    };
    raw.extend(parse_kv(&args.inputs)?);
    let inputs = meridian_engine::inputs::resolve(&wf, &raw)
        .map_err(|errs| Exit::invalid(format!("error: {}", errs.join("\nerror: "))))?;
    let secrets = load_secrets(&wf, args.secrets_file.as_deref())?;
    let run_timeout = match &args.timeout {
        Some(t) => Some(
            meridian_model::duration::parse_duration(t)
                .map_err(|e| Exit::invalid(format!("error: --timeout {t}: {e}")))?,
        ),
        None => None,
    };
    let store = ctx.store()?;
    let run_id = new_run_id();
    let abs = std::fs::canonicalize(&args.file).unwrap_or(args.file.clone());
    let masker = meridian_engine::Masker::new(secrets.values().cloned());
    store.create_run(&RunRecord {
        id: run_id.clone(),
        workflow: wf.name.clone(),
        workflow_path: abs.display().to_string(),
        workflow_sha256: hex::encode(Sha256::digest(text.as_bytes())),
        mode: format!("{mode:?}").to_lowercase(),
        inputs: masker.mask_json(&Json::Object(inputs.clone())),
        options: json!({
            "max_parallel": args.max_parallel,
            "approve": args.approve,
            "timeout": args.timeout,
            "raw_inputs": masker.mask_json(&serde_json::to_value(&raw)?),
        }),
    })?;
    let mut opts = RunOptions::new(run_id);
    opts.mode = mode;
    opts.inputs = inputs;
    opts.secrets = secrets;
    opts.max_parallel = args.max_parallel.or(wf.max_parallel).unwrap_or(4);
    opts.approvals = args.approve.iter().cloned().collect();
    opts.run_timeout = run_timeout;
    if !args.no_prompt && std::io::stdin().is_terminal() && !ctx.json {
        opts.approver = Some(Arc::new(TerminalApprover));
    }
    execute(ctx, &store, wf, opts, true).await
}

/// Runs `opts` to the end. `fresh`: a new run (its start time is taken after compiling), not a
/// resume (which keeps the first start time).
async fn execute(
    ctx: &Ctx,
    store: &Store,
    wf: Arc<Workflow>,
    mut opts: RunOptions,
    fresh: bool,
) -> anyhow::Result<u8> {
    let journal = store.journal(&opts.run_id)?;
    opts.sink = Some(Arc::new(vec![journal, view_sink(ctx, &wf)]));
    let exec: Arc<dyn meridian_engine::Executor> = if ctx.store.is_some() {
        ctx.step_executor().await?
    } else {
        let local = ctx.executor()?;
        // Compile (or load from the cache) every component before the run starts, so a cold
        // cache neither delays the first steps nor counts in a drill's measured times. A
        // component that cannot be loaded fails its step with the reason when the step runs.
        let uses: std::collections::HashSet<&ComponentRef> = wf
            .steps
            .iter()
            .filter_map(|s| s.component.as_ref())
            .collect();
        for u in uses {
            let _ = meridian_engine::Executor::prepare(&*local, u).await;
        }
        if fresh {
            opts.started_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
        }
        local
    };
    let report = meridian_engine::run(wf.clone(), exec, opts)
        .await
        .map_err(|e| Exit {
            code: exit::INTERNAL,
            message: format!("error: {e}"),
        })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&wf, &report);
    }
    Ok(match report.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::Failed | RunStatus::Cancelled => exit::FAILED,
        RunStatus::AwaitingApproval => exit::AWAITING_APPROVAL,
        RunStatus::TimedOut => exit::TIMED_OUT,
        // The engine returns a report only for a run that ended.
        RunStatus::Running => exit::INTERNAL,
    })
}

fn print_summary(wf: &Workflow, r: &RunReport) {
    println!();
    println!("{} — run {} ({:?})", wf.name, r.run_id, r.mode);
    for s in &r.steps {
        for l in &s.legs {
            let id = view::leg_id(&s.id, &l.key);
            let err = l
                .error
                .as_ref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            let reused = if l.reused { "  (from journal)" } else { "" };
            println!(
                "  {:<10} {:<28} {:>9}  attempts {}{reused}{err}",
                l.outcome.as_str(),
                id,
                fmt_dur(l.duration),
                l.attempts
            );
        }
        if s.legs.is_empty() {
            println!(
                "  {:<10} {:<28} {:>9}  {}",
                s.outcome.as_str(),
                s.id,
                "",
                s.reason.clone().unwrap_or_default()
            );
        }
    }
    if r.mode == Mode::Plan {
        println!("\nplan (changes that `meridian run` would make):");
        let mut any = false;
        for s in &r.steps {
            for l in &s.legs {
                for p in &l.plan {
                    any = true;
                    println!("  {}: {p}", view::leg_id(&s.id, &l.key));
                }
            }
        }
        if !any {
            println!("  no changes");
        }
    }
    for c in &r.compensations {
        println!(
            "  compensated {} → {}{}",
            view::leg_id(&c.step, &c.leg),
            c.outcome.as_str(),
            c.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(d) = drill_summary(wf, r) {
        println!("\n{d}");
    }
    println!(
        "\nrun {}: {} in {}",
        r.status.as_str(),
        r.message,
        fmt_dur(r.duration)
    );
}

/// Measured RTO/RPO against the workflow's `drill:` targets: any step output named `rto_ms`,
/// `rpo_ms` or `rpo_bytes` counts as a measurement.
fn drill_summary(wf: &Workflow, r: &RunReport) -> Option<String> {
    let drill = wf.drill.as_ref()?;
    let mut found: BTreeMap<&str, f64> = BTreeMap::new();
    for s in &r.steps {
        for l in &s.legs {
            for key in ["rto_ms", "rpo_ms", "rpo_bytes"] {
                if let Some(v) = l.output.get(key).and_then(Json::as_f64) {
                    found.insert(key, v);
                }
            }
        }
    }
    let mut lines = vec!["drill:".to_string()];
    let row = |name: &str, got: Option<f64>, target: Option<f64>, unit: &str| {
        let got_s = got
            .map(|g| format!("{g:.0}{unit}"))
            .unwrap_or("not measured".into());
        let verdict = match (got, target) {
            (Some(g), Some(t)) if g <= t => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "",
        };
        let target_s = target
            .map(|t| format!("{t:.0}{unit}"))
            .unwrap_or("-".into());
        format!("  {name:<9} achieved {got_s:<14} target {target_s:<10} {verdict}")
    };
    lines.push(row(
        "RTO",
        found.get("rto_ms").copied(),
        drill.rto.map(|d| d.as_millis() as f64),
        "ms",
    ));
    if drill.rpo.is_some() || found.contains_key("rpo_ms") {
        lines.push(row(
            "RPO",
            found.get("rpo_ms").copied(),
            drill.rpo.map(|d| d.as_millis() as f64),
            "ms",
        ));
    }
    if drill.rpo_bytes.is_some() || found.contains_key("rpo_bytes") {
        lines.push(row(
            "RPO bytes",
            found.get("rpo_bytes").copied(),
            drill.rpo_bytes.map(|b| b as f64),
            "B",
        ));
    }
    Some(lines.join("\n"))
}

async fn resume(
    ctx: &Ctx,
    run_id: &str,
    from: Option<String>,
    args: ResumeArgs,
) -> anyhow::Result<u8> {
    let store = ctx.store()?;
    let (record, summary) = store
        .run(run_id)
        .map_err(|e| Exit::invalid(format!("error: {e}")))?;
    let path = PathBuf::from(&record.workflow_path);
    let (wf, text) = load(&path)?;
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    if sha != record.workflow_sha256 {
        return Err(Exit::invalid(format!(
            "error: {} changed since run {run_id} started; resuming would mix two workflows. Start a new run instead.",
            path.display()
        )));
    }
    if from.is_none() && summary.status == "succeeded" {
        println!(
            "run {run_id} already succeeded; nothing to resume (use `meridian retry {run_id} --from STEP`)"
        );
        return Ok(exit::OK);
    }
    if let Some(step) = &from {
        if wf.step(step).is_none() {
            return Err(Exit::invalid(format!(
                "error: run {run_id}'s workflow has no step `{step}`"
            )));
        }
        let again = dependents(&wf, step);
        store.forget_legs(run_id, &again.into_iter().collect::<Vec<_>>())?;
    }
    let secrets = load_secrets(&wf, args.secrets_file.as_deref())?;
    // Inputs were stored masked; re-type the raw inputs so secrets in them are not lost.
    let raw: BTreeMap<String, String> = record
        .options
        .get("raw_inputs")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let inputs = meridian_engine::inputs::resolve(&wf, &raw)
        .map_err(|errs| Exit::invalid(format!("error: {}", errs.join("\nerror: "))))?;
    let mut opts = RunOptions::new(run_id);
    opts.started_at_ms = summary.created_at_ms.max(0) as u64;
    opts.mode = if record.mode == "plan" {
        Mode::Plan
    } else {
        Mode::Apply
    };
    opts.inputs = inputs;
    opts.secrets = secrets;
    opts.max_parallel = record
        .options
        .get("max_parallel")
        .and_then(Json::as_u64)
        .map(|n| n as usize)
        .or(wf.max_parallel)
        .unwrap_or(4);
    let mut approvals: BTreeSet<String> = store.approvals(run_id)?.into_iter().collect();
    approvals.extend(args.approve.iter().cloned());
    if let Some(prev) = record.options.get("approve").and_then(Json::as_array) {
        approvals.extend(prev.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    opts.approvals = approvals;
    opts.prior = store
        .legs(run_id)?
        .into_iter()
        .filter(|(_, l)| l.outcome == "success")
        .map(|(k, l)| {
            (
                k,
                PriorLeg {
                    outcome: Outcome::Success,
                    attempts: l.attempts,
                    output: l.output,
                    plan: l.plan,
                    duration: Duration::from_millis(l.duration_ms),
                },
            )
        })
        .collect();
    if !args.no_prompt && std::io::stdin().is_terminal() && !ctx.json {
        opts.approver = Some(Arc::new(TerminalApprover));
    }
    store.reopen_run(run_id)?;
    execute(ctx, &store, wf, opts, false).await
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

fn runs_list(ctx: &Ctx, limit: usize) -> anyhow::Result<u8> {
    let store = ctx.store()?;
    let runs = store.runs(limit)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        println!("no runs yet in {}", store.describe());
    }
    for r in runs {
        let took = r
            .finished_at_ms
            .map(|f| fmt_dur(Duration::from_millis((f - r.created_at_ms).max(0) as u64)))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:<18} {:<6} {:>9}  {}  {}",
            r.id,
            r.status,
            r.mode,
            took,
            r.workflow,
            r.message.unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

fn runs_show(ctx: &Ctx, run_id: &str, html: Option<&Path>) -> anyhow::Result<u8> {
    let store = ctx.store()?;
    let (record, summary) = store
        .run(run_id)
        .map_err(|e| Exit::invalid(format!("error: {e}")))?;
    let events = store.events(run_id)?;
    if let Some(path) = html {
        std::fs::write(path, crate::report::html(&record, &summary, &events))
            .map_err(|e| Exit::invalid(format!("error: writing {}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    let legs = store.legs(run_id)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "run": record, "summary": summary, "events": events,
                "legs": legs.values().collect::<Vec<_>>(),
            }))?
        );
        return Ok(exit::OK);
    }
    println!("run {} — {} ({})", record.id, record.workflow, record.mode);
    println!("  workflow: {}", record.workflow_path);
    println!(
        "  status:   {} {}",
        summary.status,
        summary.message.unwrap_or_default()
    );
    println!("  inputs:   {}", record.inputs);
    println!("timeline:");
    let t0 = events.first().map(|e| e.at_ms).unwrap_or(0);
    for e in &events {
        let line = describe_json(&e.body);
        println!(
            "  +{:>8}  {line}",
            fmt_dur(Duration::from_millis((e.at_ms - t0).max(0) as u64))
        );
    }
    println!("outputs:");
    let mut legs: Vec<_> = legs.into_values().collect();
    legs.sort_by(|a, b| (&a.step, &a.leg).cmp(&(&b.step, &b.leg)));
    for l in legs {
        println!(
            "  {} [{}] {}",
            view::leg_id(&l.step, &l.leg),
            l.outcome,
            l.error
                .map(|e| e.to_string())
                .unwrap_or_else(|| l.output.to_string())
        );
    }
    Ok(exit::OK)
}

/// A journaled event (JSON) as one line.
fn describe_json(body: &Json) -> String {
    let s = |k: &str| body.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let id = view::leg_id(&s("step"), &s("leg"));
    match s("event").as_str() {
        "run-started" => format!("run started ({})", s("mode")),
        "step-skipped" => format!("{id}: skipped ({})", s("reason")),
        "approval-required" => format!("{id}: needs approval: {}", s("message")),
        "approval-granted" => format!("{id}: approved by {}", s("by")),
        "attempt-started" => format!("{id}: attempt {} started", body["attempt"]),
        "attempt-failed" => format!(
            "{id}: attempt {} failed: {}{}",
            body["attempt"],
            body["error"]["message"]
                .as_str()
                .unwrap_or(&body["error"].to_string()),
            body.get("retry_in")
                .and_then(Json::as_u64)
                .map(|ms| format!(" (retry in {ms}ms)"))
                .unwrap_or_default()
        ),
        "leg-finished" => format!(
            "{id}: {} after {} attempt(s), {}ms",
            s("outcome"),
            body["attempts"],
            body["duration"]
        ),
        "step-finished" => format!("{id}: step {}", s("outcome")),
        "compensation" => format!("{id}: compensation {}", s("outcome")),
        "run-finished" => format!("run {}: {}", s("status"), s("message")),
        other => other.to_string(),
    }
}

async fn steps_list(ctx: &Ctx) -> anyhow::Result<u8> {
    let exec = ctx.executor()?;
    let mut rows = Vec::new();
    for name in meridian_artifacts::BUILTIN.iter().map(|(n, _)| *n) {
        match exec.manifest(&ComponentRef::builtin(name)).await {
            Ok(m) => {
                rows.push(json!({"name": name, "version": m.version, "description": m.description}))
            }
            Err(e) => rows.push(json!({"name": name, "error": e.to_string()})),
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in rows {
            println!(
                "{:<18} {:<8} {}",
                r["name"].as_str().unwrap_or(""),
                r["version"].as_str().unwrap_or(""),
                r["description"]
                    .as_str()
                    .or(r["error"].as_str())
                    .unwrap_or("")
            );
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
    println!("{}", serde_json::to_string_pretty(&m)?);
    Ok(exit::OK)
}

/// `meridian worker`: takes steps from the PostgreSQL queue and runs them in the local sandbox
/// until SIGINT/SIGTERM, then lets running steps finish.
async fn worker(
    ctx: &Ctx,
    id: Option<String>,
    max_concurrent: usize,
    new_key: bool,
) -> anyhow::Result<u8> {
    if new_key {
        println!("{}", meridian_distributed::TaskKey::generate().to_hex());
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
    eprintln!("worker {id}: taking steps from the queue (Ctrl-C to stop)");
    meridian_distributed::run_worker(
        url,
        &id,
        exec,
        key,
        meridian_distributed::WorkerOptions {
            max_concurrent: max_concurrent.max(1),
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
