//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Meridian: multi-region deployment and disaster-recovery workflows for API gateways.
///
/// Exit codes: 0 success; 1 a step (and so the run) failed; 2 invalid workflow or usage;
/// 3 the run waits for an approval (`--approve STEP`); 4 the run timed out; 5 the state store or
/// the host failed; 6 the run succeeded but its drill missed a target or could not measure one.
#[derive(Parser, Debug)]
#[command(name = "meridian", version, about, long_about = None)]
pub struct Cli {
    /// Where runs are journaled (SQLite file `meridian.db` inside).
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_STATE_DIR",
        default_value = ".meridian"
    )]
    pub state_dir: PathBuf,
    /// Journal runs in PostgreSQL (`postgres://…`) instead of the SQLite file in --state-dir;
    /// steps are then executed by `meridian worker` processes.
    #[arg(long, global = true, env = "MERIDIAN_STORE")]
    pub store: Option<String>,
    /// Compiled-component cache (default: $XDG_CACHE_HOME/meridian or ~/.cache/meridian).
    #[arg(long, global = true, env = "MERIDIAN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A `meridian serve` to talk to (`runs list|show`, `approve`, `trigger`); the bearer token
    /// comes from MERIDIAN_TOKEN.
    #[arg(long, global = true, env = "MERIDIAN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Machine-readable output (JSON lines for events, one JSON document for results).
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust policy (TOML): which keys must have signed the `uses: oci://…` steps of which
    /// registries and namespaces. Without one, OCI steps are digest-checked but not signature-checked.
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_TRUST_POLICY",
        value_name = "FILE"
    )]
    pub trust_policy: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check workflow files: syntax, keys, references, cycles, step inputs against their schemas.
    Validate {
        /// Workflow files (any file; each at most 4 MiB).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a workflow in plan mode: reads go through, changes are recorded and shown, not made.
    Plan(RunArgs),
    /// Run a workflow.
    Run(RunArgs),
    /// Resume an interrupted, waiting or failed run: what succeeded is not run again; failed
    /// and unfinished legs run again, their attempts numbered on from the journal's.
    Resume {
        /// The run (`meridian runs list`).
        run_id: String,
        #[command(flatten)]
        common: ResumeArgs,
    },
    /// Run a finished run again from a step (that step and everything after it).
    Retry {
        /// The run (`meridian runs list`).
        run_id: String,
        /// The first step to run again.
        #[arg(long)]
        from: String,
        #[command(flatten)]
        common: ResumeArgs,
    },
    /// Run history.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Would a failover work right now? Plans the workflow (nothing changes) and checks the
    /// readiness rules: every step plans, replication healthy and within target, gateway config
    /// equal to the ADC files, the service answers through the GSLB, components pinned.
    /// Exit 0 ready, 1 not ready.
    Ready(RunArgs),
    /// Has a gateway drifted from its ADC files? Plans the workflow (nothing changes): every
    /// `adc-apisix` leg reads its region's live configuration and lists each object that differs
    /// from the files (for a workflow with `on.git`, the files of the branch head).
    /// Exit 0 in sync, 1 drift, 5 when a region could not be read.
    Drift(RunArgs),
    /// Is this machine fit to run workflows? Verifies the whole journal (opening it checks only
    /// what is cheap), the state directory and compile cache, the built-in steps, and what
    /// `new step` and `lab` need. Exit 0 fit, 1 when something fails.
    Doctor,
    /// Drill history: each drill's figures against its targets, and a summary.
    #[command(subcommand)]
    Drills(DrillsCmd),
    /// Signed drill evidence: export a run's, verify a file, print the public key.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Built-in steps and step components.
    #[command(subcommand)]
    Steps(StepsCmd),
    /// Ship steps through OCI registries: push, pull, sign, keygen.
    #[command(subcommand)]
    Step(crate::oci::StepCmd),
    /// The compile cache: prune what is no longer used.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Scaffolding.
    #[command(subcommand)]
    New(NewCmd),
    /// Take steps from the PostgreSQL queue (`--store postgres://…`) and run them here.
    Worker {
        /// This worker's name in leases (default host:pid).
        #[arg(long)]
        id: Option<String>,
        /// Steps run at once.
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// How long a claimed step is held without a heartbeat: the steps of a killed worker are
        /// taken over by another after this (at least 1s). It bounds what a dead worker adds to
        /// a failover's RTO.
        #[arg(long, value_name = "DURATION", default_value = "30s")]
        lease: String,
        /// How often a running step's lease is extended (at most half the lease; default 10s,
        /// or a third of a shorter lease).
        #[arg(long, value_name = "DURATION")]
        heartbeat: Option<String>,
        /// Print a new task key (for MERIDIAN_TASK_KEY) and exit.
        #[arg(long)]
        new_key: bool,
    },
    /// The local multi-region lab (real PostgreSQL and PowerDNS, gateway emulators).
    #[command(subcommand)]
    Lab(LabCmd),
    /// Run as a service: workflows of a directory on their schedules, an HTTP API with
    /// approvals, webhooks and metrics.
    Serve(crate::serve::ServeArgs),
    /// Approve (or reject) the gate a served run waits at (needs --server).
    Approve {
        /// The run waiting for the approval.
        run_id: String,
        /// The step whose gate to answer.
        step: String,
        /// Reject instead: the step fails without running.
        #[arg(long)]
        reject: bool,
        /// Why, journaled with the answer.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel a served run (needs --server): its steps in flight are cancelled, nothing new
    /// starts, what completed is compensated.
    Cancel {
        /// The run to cancel.
        run_id: String,
        /// Why, one line: in the run's message and its `run.cancelled` webhook.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fire a schedule of a server now, under its overlap policy (needs --server).
    Trigger {
        /// The schedule's id (`WORKFLOW#N`, see GET /api/v1/schedules).
        schedule: String,
    },
    /// Shell completions on stdout, e.g. `meridian completions bash > ~/.local/share/bash-completion/completions/meridian`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// The manual page as roff on stdout (`meridian man | man -l -`), or every page with --dir.
    Man {
        /// The command whose page to print, e.g. `runs list` (default: meridian itself).
        command: Vec<String>,
        /// Write meridian.1 and one page per command into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The workflow file.
    pub file: PathBuf,
    /// An input, `name=value` (repeatable).
    #[arg(short, long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Inputs from a JSON or YAML file (a map, at most 1 MiB); `--input` wins. `meridian lab up`
    /// writes one.
    #[arg(long, value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Approve a gated step up front (repeatable).
    #[arg(long = "approve", value_name = "STEP")]
    pub approve: Vec<String>,
    /// Steps (legs) running at once (at least 1).
    #[arg(long, value_parser = at_least_one)]
    pub max_parallel: Option<usize>,
    /// Secrets file in dotenv form: `NAME=value` or `export NAME=value` lines, quotes, `#`
    /// comments; at most 1 MiB. `MERIDIAN_SECRET_<NAME>` env vars win.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Whole-run timeout, overriding the workflow's `timeout:` (e.g. 10m).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Never prompt for approvals, even on a terminal.
    #[arg(long)]
    pub no_prompt: bool,
    /// Run `uses: oci://…:TAG` steps that have no `@sha256:` digest (the tag is resolved now).
    #[arg(long)]
    pub allow_unpinned: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Approve a gated step (repeatable); approvals given when the run started still hold.
    #[arg(long = "approve", value_name = "STEP")]
    pub approve: Vec<String>,
    /// Reject a gated step (repeatable): it fails without running, and the run goes on into
    /// its failure path (`if: failure()` steps, then compensation of what completed).
    #[arg(long = "reject", value_name = "STEP", conflicts_with = "approve")]
    pub reject: Vec<String>,
    /// Why, journaled with the rejection.
    #[arg(long, requires = "reject")]
    pub comment: Option<String>,
    /// Secrets file in dotenv form, as for `run` (secrets are never journaled, so give them
    /// again). `MERIDIAN_SECRET_<NAME>` env vars win.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Never prompt for approvals, even on a terminal.
    #[arg(long)]
    pub no_prompt: bool,
}

#[derive(Subcommand, Debug)]
pub enum DrillsCmd {
    /// The last drills (newest first) with RTO, time to full capacity, rows lost, downtime and
    /// verdict; then p50/p95 RTO, the worst time to full capacity and rows lost, and the pass
    /// rate.
    List {
        /// Only this workflow's drills.
        workflow: Option<String>,
        /// How many drills, newest first.
        #[arg(long, default_value_t = 20)]
        last: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCmd {
    /// Write a run's evidence (workflow and component digests, inputs, approvals, the event
    /// chain, the drill's figures), signed with this runner's key.
    Export {
        /// The run (`runs list` shows ids).
        run_id: String,
        /// The file to write (default: `<run id>.evidence.json`).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Check an evidence file: exit 0 when the events and the signature match, 1 when not.
    Verify {
        /// The evidence file (`evidence export` wrote it).
        file: PathBuf,
        /// The signer's public key (hex, from `meridian evidence key`); default: this state
        /// directory's own key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print this runner's public key (creating the key pair on first use).
    Key,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Recent runs.
    List {
        /// How many runs, newest first (at least 1).
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        limit: usize,
    },
    /// One run: per-step timeline, attempts, errors, outputs (secrets masked).
    Show {
        /// The run (`meridian runs list`).
        run_id: String,
        /// Also write the run as one self-contained HTML page, the web console's run page:
        /// time axis, a bar per attempt, approvals, errors in plain words, the drill's figures.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Delete runs that ended (succeeded, failed, timed out, cancelled) at least DURATION ago,
    /// with their events, legs and kv state. Running, interrupted and waiting runs are kept.
    Prune {
        /// e.g. 30d, 12h, 90m.
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
    /// Check the whole journal (SQLite integrity, every stored value); exit 5 when damaged.
    /// Opening the journal checks only its header, so this is the full check.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum StepsCmd {
    /// Built-in steps with their descriptions.
    List,
    /// A step's inputs and outputs (types, descriptions), the grants it needs, plan and
    /// compensate support; with --json its manifest with the full JSON Schemas.
    Show {
        /// A built-in name, a path to a component, or an `oci://` reference.
        step: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Remove compiled components of another wasmtime or CPU (never loaded again), compiled
    /// components not used and function packs not written for DURATION, and leftovers of
    /// interrupted writes. Pulled OCI steps are kept. Safe while other runs use the cache.
    Prune {
        /// e.g. 30d, 12h, 90m; 0s empties the cache (everything compiles again once).
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        older_than: String,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NewCmd {
    /// Scaffold a step that builds as is: a Rust crate (`cargo build --release`), or with
    /// --lang js|python a JavaScript or Python project with the SDK, the WIT and an example workflow.
    Step {
        /// The step's name: lower-case letters, digits and `-`, starting with a letter.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The language: rust (cargo), js (componentize-js) or python (componentize-py).
        #[arg(long, value_enum, default_value_t)]
        lang: crate::scaffold_polyglot::Lang,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Start the lab (idempotent while it runs; after `down` or a crash, a fresh lab).
    Up {
        /// Region names, comma-separated; the first is the primary.
        #[arg(long, default_value = "eu,us", value_delimiter = ',')]
        regions: Vec<String>,
        /// Where the lab keeps its state, data and logs.
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
        /// Also start moto (Route 53 API).
        #[arg(long)]
        with_moto: bool,
        #[command(flatten)]
        capacity: meridian_lab::CapacityArgs,
    },
    /// What runs, where; exit 1 when the lab or any part of it is down.
    Status {
        /// The lab's directory (as given to `lab up`).
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// Stop everything the lab started.
    Down {
        /// The lab's directory (as given to `lab up`).
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// Kill, stop or start a region, or inject a fault (what a disaster looks like in the lab).
    Region {
        /// Region name.
        name: String,
        /// kill | stop | start | rebuild-standby | scale, or a fault: region-down | db-down |
        /// data-plane-down | replication-cut | dns-stale (`start` undoes any fault)
        action: String,
        /// With rebuild-standby: the region to copy from (the current primary).
        #[arg(long)]
        from: Option<String>,
        /// With scale: the data-plane instances the region should run (0-16).
        #[arg(long)]
        instances: Option<u32>,
        /// With dns-stale: how long the GSLB keeps answering the dead region, in ms.
        #[arg(long)]
        stale_ms: Option<u64>,
        /// The lab's directory (as given to `lab up`).
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// (internal) the lab's supervisor process.
    #[command(hide = true)]
    Daemon {
        /// The lab's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// A count of 1 or more (`--max-parallel`, `--limit`).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (a whole number, at least 1)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, flag and argument explains itself in `--help`, the man page and completions.
    #[test]
    fn every_command_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
                missing.push(format!("`{path}` (the command)"));
            }
            for a in cmd.get_arguments() {
                if matches!(a.get_id().as_str(), "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    let name = a
                        .get_long()
                        .map_or_else(|| a.get_id().as_str().to_uppercase(), |l| format!("--{l}"));
                    missing.push(format!("`{path} {name}`"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "meridian", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
