//! The typed workflow: what a parsed and validated workflow file means.
//!
//! Every node that a diagnostic may point at carries a [`Span`]. Values in `with:`, `vars:` and
//! connection strings keep their `${{ … }}` templates unevaluated; the engine evaluates them when a
//! step is about to run (see [`crate::expr`]).

use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use crate::expr::{Expr, Template};
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
    /// Whole-run timeout (`timeout:` at top level).
    pub timeout: Option<Duration>,
    /// `max-parallel:` at top level (the CLI flag overrides it).
    pub max_parallel: Option<usize>,
    /// Steps in file order.
    pub steps: Vec<Step>,
}

impl Workflow {
    /// The step with this id, if any.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Bool,
    Duration,
    List,
    Map,
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
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub span: Span,
    /// A 5- or 6-field cron expression, already checked.
    pub cron: String,
    pub overlap: OverlapPolicy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// A tick that finds the previous run still going is skipped (default).
    #[default]
    Skip,
    /// It waits for the previous run to end.
    Queue,
    /// Runs may overlap.
    Allow,
}

#[derive(Clone, Debug, Default)]
pub struct Drill {
    pub span: Span,
    /// Recovery time objective.
    pub rto: Option<Duration>,
    /// Recovery point objective as time.
    pub rpo: Option<Duration>,
    /// Recovery point objective as WAL bytes not yet replicated.
    pub rpo_bytes: Option<u64>,
}

/// One step of a workflow.
#[derive(Clone, Debug)]
pub struct Step {
    /// Span of the whole step mapping.
    pub span: Span,
    pub id: Spanned<String>,
    /// Display name (`name:`), defaults to the id.
    pub name: Option<String>,
    /// A path (`./x.wasm`), a built-in step name (`hello`), or `name@sha256:<hex>` / `path@sha256:<hex>`.
    pub uses: Spanned<String>,
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
    pub http: Vec<Spanned<String>>,
    pub http_limits: HttpLimits,
    /// Connection names (from `connections:`) the step may run SQL on.
    pub sql: Vec<Spanned<String>>,
    /// Preopened directories.
    pub fs: Vec<FsGrant>,
    /// Secret names (from `secrets:`) the step may read.
    pub secrets: Vec<Spanned<String>>,
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
    /// Host directory, relative paths resolved against the workflow file's directory.
    pub host: String,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            output: 1 << 20,
        }
    }
}

/// `compensate:` of a step: how to undo it when a later step fails the run.
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
        uses: Spanned<String>,
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
