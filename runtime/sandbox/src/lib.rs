//! # meridian-sandbox: the wasmtime host for Meridian steps
//!
//! A step is a WebAssembly component implementing `meridian:step@0.2.0` (`sdk/wit/step.wit`).
//! This crate loads such components and runs them, one fresh instance per call, under
//! deny-by-default capabilities. It knows nothing of workflow YAML: the engine resolves `uses:`,
//! evaluates `with:` and grants, and hands over a [`Call`].
//!
//! ```no_run
//! # async fn demo(bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use meridian_sandbox::{Call, Capabilities, Invocation, Mode, Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig { cache_dir: Some(".meridian/cache".into()), ..Default::default() })?;
//! let hello = sandbox.load(bytes, None)?; // compiles once; later runs hit the disk cache
//! let manifest = sandbox.describe(&hello).await?;
//! let inv = Invocation {
//!     run_id: "r1".into(), step_id: "greet".into(), attempt: 1,
//!     idempotency_key: "r1/greet".into(), mode: Mode::Apply,
//!     input: serde_json::json!({"name": "Ada"}),
//! };
//! let out = sandbox.invoke(&hello, Call::run(inv, Capabilities::default())).await?;
//! assert_eq!(out.output["greeting"], "Hello, Ada!");
//! # Ok(()) }
//! ```
//!
//! ## What a step can touch
//! Only what [`Capabilities`] grants: HTTP origins ([`HttpPolicy`]), named SQL connections,
//! preopened directories ([`Preopen`]), named secrets, the run's kv store and its log. WASI is
//! linked deny-by-default: no environment variables, no arguments, no stdin, no sockets;
//! stdout/stderr are captured into the step's log. Every string leaving the guest (log lines,
//! stdout/stderr, output, error messages, plan records) has secret values replaced by `***`.
//!
//! ## Plan mode ([`Mode::Plan`]), enforced here, not by step authors
//! - HTTP: `GET`, `HEAD`, `OPTIONS` are sent; any other method is recorded as
//!   [`PlannedChange::Http`] and answered with status **202**, headers
//!   `content-type: application/json` and `x-meridian-plan: recorded`, body `{}`, and
//!   `recorded: true`.
//! - SQL: statements run inside `BEGIN READ ONLY … ROLLBACK`; what PostgreSQL refuses as a write
//!   is recorded as [`PlannedChange::Sql`] and answered with 0 rows (`execute` returns 0, `query`
//!   returns no columns and no rows). Statements naming server functions that act even in a
//!   read-only transaction (`pg_promote`, `pg_terminate_backend`, replication-slot functions,
//!   `COPY`, …) are recorded without being sent.
//! - Files: preopens are read-only.
//!
//! ## Limits and failures
//! Each call has a timeout (epoch interruption for guest code, a wall-clock bound for host
//! calls), a memory cap, an output cap and a wasm stack limit; a guest hitting one fails with
//! the matching [`StepFailure`] and the sandbox stays usable.
//!
//! ## Costs
//! [`Sandbox::new`]: milliseconds. [`Sandbox::load`]: sha256 of the bytes, then a compile
//! (~0.5–2 s) unless the component is in memory or in the disk cache (an mmap). Each call:
//! instantiation from a pooled `InstancePre` plus the guest's own work; see `benches/step.rs`.

#[doc(hidden)]
pub mod bindings;
mod cache;
mod caps;
mod engine;
mod error;
mod failure;
mod sandbox;
mod state;
mod stdio;
mod types;

pub use cache::{PruneReason, Pruned};
pub use caps::dns::{BoxError as DnsError, lookup as dns_lookup};
pub use caps::{Capabilities, HttpPolicy, LogContext, Preopen};
pub use error::{SandboxError, StepFailure};
pub use meridian_protocol::{
    Action, GrantKind, GrantRequest, KvError, KvStore, Level, LogLine, LogSource, LogTap, MemoryKv,
    Mode, OriginPattern, PlannedChange, ScopedKv,
};
pub use sandbox::{Sandbox, SandboxConfig, Stats, StepComponent};
pub use types::{Call, Invocation, Manifest, Outcome, Report};
