//! The typed workflow: what a parsed and validated workflow file means.
//!
//! Every node that a diagnostic may point at carries a [`Span`]. Values in `with:`, `vars:` and
//! connection strings keep their `${{ … }}` templates unevaluated; the engine evaluates them when a
//! step is about to run (see [`crate::expr`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
pub use meridian_protocol::{ComponentRef, OriginPattern};
use serde::Serialize;

use crate::expr::{EvalContext, EvalError, Expr, Template};
use crate::span::{Span, Spanned};

/// A whole workflow file.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The path the workflow was read from, as given (used in diagnostics).
    pub file: String,
    pub name: String,
    pub description: Option<String>,
    /// Typed inputs, in file order.
    pub inputs: IndexMap<String, InputDef>,
    /// Named values; may use `${{ inputs.* }}`.
    pub vars: IndexMap<String, ValueNode>,
    /// Named connections (PostgreSQL DSNs, HTTP endpoints). Steps see only the names.
    pub connections: IndexMap<String, Connection>,
    /// Secret names; values come from the environment or a file at run time.
    pub secrets: Vec<Spanned<String>>,
    /// `on:` triggers.
    pub on: Option<Triggers>,
    /// `drill:` targets.
    pub drill: Option<Drill>,
    /// `notify:` webhooks for this workflow's runs (sent by `meridian serve`).
    pub notify: Vec<Notify>,
    /// Whole-run timeout (`timeout:` at top level).
    pub timeout: Option<Duration>,
    /// `max-parallel:` at top level (the CLI flag overrides it).
    pub max_parallel: Option<usize>,
    /// `trust-policy: FILE`: a trust policy for this workflow's OCI steps, made absolute against
    /// the workflow file's directory. It adds to the runner's own policy: a step must satisfy
    /// both.
    pub trust_policy: Option<Spanned<std::path::PathBuf>>,
    /// Steps in file order.
    pub steps: Vec<Step>,
    /// The file's text, so checks made after parsing (e.g. [`crate::schema::check_steps`]) can
    /// quote the offending line.
    pub source: SourceText,
}

/// The text of a workflow file. Cloning shares it; `Debug` prints only its length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceText(pub Arc<str>);

impl fmt::Debug for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceText({} bytes)", self.0.len())
    }
}

impl std::ops::Deref for SourceText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Workflow {
    /// The step with this id, if any.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }

    /// Every component the workflow runs — its steps' and their compensation steps' — each once
    /// (ordered by their written form).
    pub fn components(&self) -> Vec<&ComponentRef> {
        // Distinct first, then sorted by their text, each formatted once: a 10,000-step
        // workflow of one component sorted 10,000 refs, formatting two per comparison.
        let mut seen = std::collections::HashSet::new();
        let mut uses: Vec<&ComponentRef> = self
            .steps
            .iter()
            .filter_map(|s| s.component.as_ref())
            .chain(self.steps.iter().filter_map(|s| match &s.compensate {
                Compensate::Step { component, .. } => Some(component),
                _ => None,
            }))
            .filter(|c| seen.insert(*c))
            .collect();
        uses.sort_by_cached_key(|c| c.to_string());
        uses
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    /// A whole number (JSON Schema's `integer`, what a step's integer fields take).
    Integer,
    Bool,
    Duration,
    List,
    Map,
}

impl InputType {
    /// The word written after `type:`.
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Integer => "integer",
            InputType::Bool => "bool",
            InputType::Duration => "duration",
            InputType::List => "list",
            InputType::Map => "map",
        }
    }
}

#[derive(Clone, Debug)]
pub struct InputDef {
    pub span: Span,
    pub ty: InputType,
    pub description: Option<String>,
    /// Already checked against `ty`. A `duration` default is kept as its text (e.g. `"30s"`).
    pub default: Option<serde_json::Value>,
    /// `required: true` and no default: the run refuses to start without `--input name=…`.
    pub required: bool,
}

#[derive(Clone, Debug)]
pub struct Connection {
    /// Span of the connection's value (`{postgres: …}`).
    pub span: Span,
    pub kind: ConnectionKind,
}

#[derive(Clone, Debug)]
pub enum ConnectionKind {
    /// `postgres: "host=… user=… ${{ secrets.PG_PASSWORD }}"` (a libpq DSN or URL).
    Postgres(Template),
    /// `url: "http://127.0.0.1:9180"`; a base URL a step may be granted by name.
    Http(Template),
}

#[derive(Clone, Debug, Default)]
pub struct Triggers {
    pub schedule: Vec<Schedule>,
    /// `on.git`: a branch whose commits touching some paths start the workflow.
    pub git: Option<GitTrigger>,
}

/// `on.git`: under `meridian serve`, a new commit on `branch` that touches `paths` starts a run
/// with the inputs [`GitTrigger::INPUTS`] the workflow declares.
#[derive(Clone, Debug)]
pub struct GitTrigger {
    pub span: Span,
    /// A URL (`https://…`, `ssh://…`, `git@host:…`) or a local path, made absolute against the
    /// workflow file's directory.
    pub repo: String,
    /// The branch watched (default `main`).
    pub branch: String,
    /// Git-style globs (`adc/**`); empty means every path.
    pub paths: Vec<String>,
    /// How often the branch is polled (default 60 s); a webhook wakes the poller at once.
    pub interval: std::time::Duration,
    /// Name of the server secret that signs push webhooks; without it webhooks are refused.
    pub webhook_secret: Option<String>,
}

/// Whether `repo` of `on.git` names a remote repository: a URL other than `file://`, or the
/// scp-like `git@host:org/repo.git` (a colon before any slash). Anything else is a path.
pub fn is_remote_repo(repo: &str) -> bool {
    if let Some((scheme, _)) = repo.split_once("://") {
        return scheme != "file";
    }
    matches!(repo.find(':'), Some(c) if !repo[..c].contains('/') && c > 1)
}

impl GitTrigger {
    /// The inputs a git-started run gets, when the workflow declares them: the commit id
    /// (required), the changed paths under `paths`, and the text of every file under `paths`.
    pub const INPUTS: [(&'static str, &'static str); 3] = [
        ("git_commit", "string"),
        ("git_changed_files", "list"),
        ("git_files", "map"),
    ];
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub span: Span,
    /// A 5- or 6-field cron expression (seconds first when 6), already checked.
    pub cron: String,
    pub overlap: OverlapPolicy,
    /// An IANA time zone name (`Europe/Berlin`) the cron line is read in; UTC when absent.
    pub timezone: Option<String>,
    /// After downtime, fire the latest missed tick once (`catch-up: latest`) or not at all.
    pub catch_up: bool,
    /// Each fire is delayed by a random time up to this, so many schedules do not fire at once.
    pub jitter: Option<std::time::Duration>,
    /// Inputs of the runs it starts, as text typed against `inputs:` (like `--input`).
    pub inputs: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlapPolicy {
    /// A tick that finds the previous run still going is skipped (default).
    #[default]
    Skip,
    /// It waits for the previous run to end (at most one tick waits).
    Queue,
    /// The previous run is cancelled, then the new one starts.
    CancelPrevious,
    /// Runs may overlap.
    Allow,
}

impl OverlapPolicy {
    /// The words of `overlap:`, as written in a workflow or the server config.
    pub const WORDS: [&'static str; 4] = ["skip", "queue", "cancel-previous", "allow"];
}

impl std::str::FromStr for OverlapPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(OverlapPolicy::Skip),
            "queue" => Ok(OverlapPolicy::Queue),
            "cancel-previous" => Ok(OverlapPolicy::CancelPrevious),
            "allow" => Ok(OverlapPolicy::Allow),
            other => Err(format!(
                "`{other}`: use `skip`, `queue`, `cancel-previous` or `allow`"
            )),
        }
    }
}

pub use crate::drill::{Canary, CanaryProber, CanaryWriter, Drill};

/// One step of a workflow.
#[derive(Clone, Debug)]
pub struct Step {
    /// Span of the whole step mapping.
    pub span: Span,
    pub id: Spanned<String>,
    /// Display name (`name:`), defaults to the id.
    pub name: Option<String>,
    /// `uses:` as written (for messages): a path (`./x.wasm`), a built-in step name (`hello`),
    /// or `name@sha256:<hex>` / `path@sha256:<hex>`.
    pub uses: Spanned<String>,
    /// What `uses:` names, a path made absolute against the workflow file's directory. `None`
    /// only in a workflow with errors (`uses:` missing or invalid).
    pub component: Option<ComponentRef>,
    /// `with:` inputs, unevaluated.
    pub with: IndexMap<String, ValueNode>,
    pub needs: Vec<Spanned<String>>,
    /// `if:` condition; `${{ }}` around it is optional as in GitHub Actions.
    pub condition: Option<Spanned<Expr>>,
    pub matrix: Option<Matrix>,
    pub retry: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    pub grants: Grants,
    pub limits: Limits,
    pub compensate: Compensate,
    pub approval: Option<Approval>,
}

impl Step {
    /// Whether the step's `if:` is read per matrix leg: it reads `matrix`, so it can only be
    /// evaluated once the legs exist. The legs it is false for are skipped, with no output.
    pub fn if_per_leg(&self) -> bool {
        self.matrix.is_some()
            && self.condition.as_ref().is_some_and(|c| {
                c.value
                    .references()
                    .iter()
                    .any(|r| r.path.first().is_some_and(|p| p == "matrix"))
            })
    }

    /// The components the step runs: its `uses:`, then its compensation's when that is a
    /// component of its own (`compensate: {uses, with}`).
    pub fn components_mut(&mut self) -> impl Iterator<Item = &mut ComponentRef> {
        let undo = match &mut self.compensate {
            Compensate::Step { component, .. } => Some(component),
            _ => None,
        };
        self.component.iter_mut().chain(undo)
    }

    /// Whether the step runs the built-in step `name` (`uses: adc-apisix`, any version).
    pub fn runs_builtin(&self, name: &str) -> bool {
        matches!(&self.component, Some(ComponentRef::Builtin { name: n, .. }) if n == name)
    }
}

/// `strategy.matrix` (plus `strategy.max-parallel` / `strategy.fail-fast`).
#[derive(Clone, Debug)]
pub struct Matrix {
    pub span: Span,
    /// Axes in file order; the cartesian product gives the legs.
    pub axes: IndexMap<String, MatrixAxis>,
    /// Extra legs (`include:`).
    pub include: Vec<IndexMap<String, serde_json::Value>>,
    /// Legs removed (`exclude:`); a leg is removed when every key given matches.
    pub exclude: Vec<IndexMap<String, serde_json::Value>>,
    pub max_parallel: Option<usize>,
    /// Default true: one failed leg cancels the others.
    pub fail_fast: bool,
}

/// One combination of a matrix: the values `matrix.*` sees, and its key.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixLeg {
    /// The leg's values joined with `,` in key order (see [`leg_key`]): `eu` or `eu,blue`.
    pub key: String,
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// The key of a leg: its values in order, strings as they are and other values as JSON, joined
/// with `,`. `steps.<id>.outputs.<key>` holds that leg's outputs.
pub fn leg_key(values: &serde_json::Map<String, serde_json::Value>) -> String {
    values
        .values()
        .map(crate::expr::to_str)
        .collect::<Vec<_>>()
        .join(",")
}

impl Matrix {
    /// The legs for the given axis values (one entry per axis, in axis order): the cartesian
    /// product, minus legs matching an `exclude` entry (every key given equal), plus each
    /// `include` entry as a leg of its own; a leg whose key was already produced is dropped.
    /// Cost: proportional to the number of legs times the number of axes.
    pub fn legs_with(&self, axes: &[(String, Vec<serde_json::Value>)]) -> Vec<MatrixLeg> {
        use serde_json::Map;
        let mut combos: Vec<Map<String, serde_json::Value>> = if axes.is_empty() {
            Vec::new()
        } else {
            vec![Map::new()]
        };
        for (name, values) in axes {
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for c in &combos {
                for v in values {
                    let mut c = c.clone();
                    c.insert(name.clone(), v.clone());
                    next.push(c);
                }
            }
            combos = next;
        }
        combos.retain(|c| {
            !self
                .exclude
                .iter()
                .any(|ex| ex.iter().all(|(k, v)| c.get(k) == Some(v)))
        });
        for inc in &self.include {
            combos.push(inc.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        let mut seen = std::collections::HashSet::new();
        combos
            .into_iter()
            .filter_map(|values| {
                let key = leg_key(&values);
                seen.insert(key.clone())
                    .then_some(MatrixLeg { key, values })
            })
            .collect()
    }

    /// The legs when every axis is a literal list; `None` when an axis is an expression (its
    /// legs are known only at run time).
    pub fn static_legs(&self) -> Option<Vec<MatrixLeg>> {
        let mut axes = Vec::with_capacity(self.axes.len());
        for (name, axis) in &self.axes {
            match axis {
                MatrixAxis::Values(v) => axes.push((name.clone(), v.clone())),
                MatrixAxis::Expr(_) => return None,
            }
        }
        Some(self.legs_with(&axes))
    }

    /// Every name `matrix.<name>` may use in this step: the axes and the keys of `include`.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.axes.keys().map(String::as_str).collect();
        for inc in &self.include {
            for k in inc.keys() {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        keys
    }
}

#[derive(Clone, Debug)]
pub enum MatrixAxis {
    /// `region: [eu, us]`
    Values(Vec<serde_json::Value>),
    /// `region: ${{ inputs.regions }}` – must evaluate to a list at run time.
    Expr(Spanned<Template>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (>= 1).
    pub attempts: u32,
    pub backoff: Backoff,
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Full jitter (random delay in [0, computed]) when true; default true.
    pub jitter: bool,
    /// Which failures are retried (default: retryable and timeout).
    pub on: Vec<RetryOn>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    Constant,
    Exponential,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The step returned `retryable(...)`.
    Retryable,
    /// The attempt hit its timeout.
    Timeout,
    /// The step returned `fatal(...)` or trapped (use with care).
    Fatal,
}

/// What the sandbox lets a step reach. Everything not listed is denied.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// `http: ["https://*.example.com", "http://127.0.0.1:9180"]` or the long form with limits.
    pub http: Vec<Spanned<HttpGrant>>,
    pub http_limits: HttpLimits,
    /// Connection names (from `connections:`) the step may run SQL on.
    pub sql: Vec<Spanned<String>>,
    /// Preopened directories.
    pub fs: Vec<FsGrant>,
    /// Secret names (from `secrets:`) the step may read.
    pub secrets: Vec<Spanned<String>>,
    /// `dns: "IP:PORT"` (a template): the step's HTTP requests resolve host names through this
    /// DNS server only, so a verification sees what the GSLB answers.
    pub dns: Option<Spanned<Template>>,
    /// Shared kv namespaces: a key `NS/…` with `NS` listed here is shared with every step that
    /// lists `NS`; every other key is the step's own.
    pub kv: Vec<Spanned<String>>,
    /// `optional: [secrets, …]`: needs of these kinds the component declares may go ungranted
    /// (the step does not use them with this input), so validation does not ask for them.
    pub optional: Vec<Spanned<meridian_protocol::GrantKind>>,
    /// The keys written under `grants:` (`None`: the step has no `grants:`), so a suggested fix
    /// can say where its entry goes.
    pub written: Option<Vec<String>>,
}

/// One entry of `grants.http`, parsed once by the model; [`HttpGrant::origin`] is what it allows
/// in a run, [`HttpGrant::origin_before_run`] what validation can know of that.
#[derive(Clone, Debug)]
pub enum HttpGrant {
    /// A written origin pattern: `https://*.example.com`, `http://127.0.0.1:*`.
    Pattern(OriginPattern),
    /// The name of a `url:` connection: the origin of its URL.
    Connection(String),
    /// `"${{ inputs.admin_url }}"`: evaluated when the step runs, then read as an origin
    /// pattern, or as a URL whose origin is granted.
    Template(Template),
}

impl HttpGrant {
    /// The origin pattern this entry allows, expressions evaluated against `ctx`.
    pub fn origin(&self, wf: &Workflow, ctx: &EvalContext) -> Result<OriginPattern, String> {
        match self {
            HttpGrant::Pattern(p) => Ok(p.clone()),
            HttpGrant::Template(t) => {
                let text = t
                    .eval(ctx)
                    .map_err(|e| format!("grants.http `{}`: {e}", t.raw()))?;
                let text = crate::expr::to_str(&text);
                OriginPattern::of_pattern_or_url(&text)
                    .map_err(|e| format!("grants.http `{}` gave `{text}`: {e}", t.raw()))
            }
            HttpGrant::Connection(name) => {
                let url = match wf.connections.get(name).map(|c| &c.kind) {
                    Some(ConnectionKind::Http(t)) => t
                        .eval(ctx)
                        .map_err(|e| format!("connections.{name}: {e}"))?,
                    _ => return Err(format!("grants.http: no `url:` connection named `{name}`")),
                };
                let url = crate::expr::to_str(&url);
                OriginPattern::of_url_text(&url)
                    .map_err(|e| format!("connections.{name}: `{url}`: {e}"))
            }
        }
    }

    /// The origin pattern this entry allows when it is known before the run; `None` for an
    /// expression, or a connection whose URL is one.
    pub fn origin_before_run(&self, wf: &Workflow) -> Option<OriginPattern> {
        match self {
            HttpGrant::Pattern(p) => Some(p.clone()),
            HttpGrant::Template(_) => None,
            HttpGrant::Connection(name) => match wf.connections.get(name).map(|c| &c.kind) {
                Some(ConnectionKind::Http(t)) if t.is_literal() => {
                    OriginPattern::of_url_text(t.raw()).ok()
                }
                _ => None,
            },
        }
    }
}

impl fmt::Display for HttpGrant {
    /// As a workflow would write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpGrant::Pattern(p) => write!(f, "{p}"),
            HttpGrant::Connection(name) => f.write_str(name),
            HttpGrant::Template(t) => f.write_str(t.raw()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FsGrant {
    pub span: Span,
    /// Host directory, absolute: a relative path was resolved against the workflow file's
    /// directory when the file was parsed.
    pub host: PathBuf,
    /// Path the guest sees (default: same as `host` when absolute, else `/` + host).
    pub guest: String,
    pub writable: bool,
}

/// `limits:` of a step's sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap in bytes (default 64 MiB).
    pub memory: u64,
    /// Largest output JSON accepted from the step, in bytes (default 1 MiB).
    pub output: u64,
    /// Host handles the step may hold at once: open files and directories, streams, and
    /// every other entry of its resource table (default 256).
    pub handles: u32,
}

impl Limits {
    /// Default `limits.handles`: far above what a step holds (a Rust guest uses a handful), far
    /// below a process's file-descriptor limit shared by every step running.
    pub const DEFAULT_HANDLES: u32 = 256;
    /// Most `limits.handles` a workflow may ask for.
    pub const MAX_HANDLES: u32 = 65_536;
    /// Most `limits.memory` a workflow may ask for: the sandbox's maximum for one step.
    pub const MAX_MEMORY: u64 = 1 << 30;
    /// Most `limits.output` a workflow may ask for: an output is journaled, shown and handed to
    /// later steps' expressions; bulk data belongs in files or kv.
    pub const MAX_OUTPUT: u64 = 16 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            output: 1 << 20,
            handles: Limits::DEFAULT_HANDLES,
        }
    }
}

/// `compensate:` of a step: how to undo it when a later step fails the run.
// One per step, inside a `Step` that is larger still: boxing the big variant saves nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
pub enum Compensate {
    /// No compensation (default, and `compensate: false`).
    #[default]
    None,
    /// `compensate: true`: call the component's own `compensate` export with the same input.
    Export,
    /// `compensate: { uses: …, with: … }`: run another step component.
    Step {
        span: Span,
        /// As written, for messages.
        uses: Spanned<String>,
        component: ComponentRef,
        with: IndexMap<String, ValueNode>,
    },
}

/// `approval:` manual gate before the step runs.
#[derive(Clone, Debug)]
pub struct Approval {
    pub span: Span,
    /// Shown when asking; may use expressions.
    pub message: Option<Template>,
    /// How long to wait for an interactive answer (none: wait forever on a terminal).
    pub timeout: Option<Duration>,
}

/// A YAML value with its position; strings are templates.
#[derive(Clone, Debug)]
pub struct ValueNode {
    pub span: Span,
    pub kind: ValueKind,
}

#[derive(Clone, Debug)]
pub enum ValueKind {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// A string; plain text is a template with no expressions.
    String(Template),
    List(Vec<ValueNode>),
    Map(IndexMap<String, ValueNode>),
}

impl ValueNode {
    /// The value with every template evaluated (a string that is exactly one `${{ expr }}` takes
    /// the expression's type). Cost: one evaluation per template inside.
    pub fn eval(&self, ctx: &EvalContext) -> Result<serde_json::Value, EvalError> {
        use serde_json::Value as J;
        Ok(match &self.kind {
            ValueKind::Null => J::Null,
            ValueKind::Bool(b) => J::Bool(*b),
            ValueKind::Number(n) => J::Number(n.clone()),
            ValueKind::String(t) => t.eval(ctx)?,
            ValueKind::List(items) => J::Array(
                items
                    .iter()
                    .map(|i| i.eval(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            ValueKind::Map(m) => {
                let mut out = serde_json::Map::with_capacity(m.len());
                for (k, v) in m {
                    let v = v
                        .eval(ctx)
                        .map_err(|e| EvalError(format!("{k}: {}", e.0)))?;
                    out.insert(k.clone(), v);
                }
                J::Object(out)
            }
        })
    }

    /// The literal value, templates as their raw text (for display and plans).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            ValueKind::Null => J::Null,
            ValueKind::Bool(b) => J::Bool(*b),
            ValueKind::Number(n) => J::Number(n.clone()),
            ValueKind::String(t) => J::String(t.raw().to_owned()),
            ValueKind::List(items) => J::Array(items.iter().map(ValueNode::to_json).collect()),
            ValueKind::Map(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// True when no template inside has an expression.
    pub fn is_literal(&self) -> bool {
        match &self.kind {
            ValueKind::String(t) => t.is_literal(),
            ValueKind::List(items) => items.iter().all(ValueNode::is_literal),
            ValueKind::Map(m) => m.values().all(ValueNode::is_literal),
            _ => true,
        }
    }

    /// Visits every template inside with the span of the value holding it.
    pub fn for_each_template<'a>(&'a self, f: &mut dyn FnMut(Span, &'a Template)) {
        match &self.kind {
            ValueKind::String(t) => f(self.span, t),
            ValueKind::List(items) => items.iter().for_each(|i| i.for_each_template(f)),
            ValueKind::Map(m) => m.values().for_each(|v| v.for_each_template(f)),
            _ => {}
        }
    }
}

/// A `notify:` entry: a webhook told about this workflow's runs by `meridian serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub span: Span,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// `json` (default) or `slack`.
    pub format: String,
    /// The environment variable (of the server) holding the HMAC key; unsigned when absent.
    pub secret_env: Option<String>,
    /// The notification kinds it receives; every kind when absent.
    pub events: Option<Vec<String>>,
}

/// The notification kinds a server sends.
pub const NOTIFY_EVENTS: [&str; 9] = [
    "run.started",
    "run.awaiting-approval",
    "run.failed",
    "run.succeeded",
    "run.cancelled",
    "drill.missed",
    "schedule.paused",
    "readiness.changed",
    "drift.changed",
];
