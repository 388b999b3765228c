//! The engine's [`Executor`] over the Wasm sandbox: resolves `uses:` to a component (a built-in
//! name, a path, either optionally pinned by `@sha256:`), turns grants into sandbox capabilities,
//! and maps sandbox failures to engine errors. The glue between `meridian-engine` (which knows
//! nothing of Wasm) and `meridian-sandbox` (which knows nothing of workflows).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use meridian_engine::{Action, Executor, Mode, StepError, StepRequest, StepResult};
use meridian_model::Workflow;
use meridian_model::schema::StepSchema;
use meridian_sandbox as sb;

/// Gives a run's key-value state: the run's journal in production, memory by default.
pub type KvSource = Arc<dyn Fn(&str) -> Arc<dyn sb::KvStore> + Send + Sync>;

/// Runs steps as Wasm components in one shared [`sb::Sandbox`].
pub struct WasmExecutor {
    resolver: Resolver,
    /// Where each run's kv state lives; `None`: in memory, one space per run (tests, `validate`).
    kv_source: Mutex<Option<KvSource>>,
    /// The in-memory spaces, when there is no source.
    kv: Mutex<HashMap<String, Arc<dyn sb::KvStore>>>,
}

/// Finds and compiles (or loads from the cache) the component a `uses:` names. Cheap to clone, so
/// the blocking compile can move to a blocking thread.
#[derive(Clone)]
struct Resolver {
    sandbox: Arc<sb::Sandbox>,
    base_dir: Arc<Mutex<PathBuf>>,
    loaded: Arc<Mutex<HashMap<String, Arc<sb::StepComponent>>>>,
}

/// A parsed `uses:` reference.
#[derive(Debug, PartialEq, Eq)]
pub enum Uses<'a> {
    Builtin {
        name: &'a str,
        sha256: Option<&'a str>,
    },
    Path {
        path: &'a str,
        sha256: Option<&'a str>,
    },
}

/// `hello`, `hello@sha256:…`, `./x.wasm`, `steps/x.wasm@sha256:…`.
pub fn parse_uses(uses: &str) -> Uses<'_> {
    let (target, sha256) = match uses.rsplit_once("@sha256:") {
        Some((t, d)) => (t, Some(d)),
        None => (uses, None),
    };
    if target.contains('/') || target.ends_with(".wasm") {
        Uses::Path {
            path: target,
            sha256,
        }
    } else {
        Uses::Builtin {
            name: target,
            sha256,
        }
    }
}

impl WasmExecutor {
    /// A sandbox with the default configuration and this compile cache.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, sb::SandboxError> {
        let cfg = sb::SandboxConfig {
            cache_dir,
            ..Default::default()
        };
        let sandbox = sb::Sandbox::new(cfg)?;
        Ok(WasmExecutor {
            resolver: Resolver {
                sandbox: Arc::new(sandbox),
                base_dir: Arc::new(Mutex::new(PathBuf::from("."))),
                loaded: Arc::new(Mutex::new(HashMap::new())),
            },
            kv_source: Mutex::new(None),
            kv: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps each run's kv state where `source` says (the run's journal), so it outlives this
    /// process: compensation after a resume, or on another worker, sees what a step saved.
    pub fn set_kv_source(&self, source: KvSource) {
        *self.kv_source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Relative `uses:` paths resolve against this (the workflow file's directory).
    pub fn set_base_dir(&self, dir: PathBuf) {
        *self
            .resolver
            .base_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = dir;
    }

    /// The compiled component for `uses` (compiling blocks: it runs on a blocking thread).
    async fn component(&self, uses: &str) -> Result<Arc<sb::StepComponent>, String> {
        let r = self.resolver.clone();
        let uses = uses.to_string();
        tokio::task::spawn_blocking(move || r.component(&uses))
            .await
            .map_err(|e| format!("loading the component panicked: {e}"))?
    }

    /// The manifest a step component declares.
    pub async fn manifest(&self, uses: &str) -> Result<sb::Manifest, String> {
        let c = self.component(uses).await?;
        self.resolver
            .sandbox
            .describe(&c)
            .await
            .map_err(|e| format!("describe failed: {e}"))
    }

    /// The sandbox (for its statistics).
    pub fn sandbox(&self) -> &sb::Sandbox {
        &self.resolver.sandbox
    }

    /// Schemas of every step component the workflow uses (including compensation steps), keyed by
    /// the `uses:` text; a component that cannot be loaded maps to its error.
    pub async fn schemas_for(
        &self,
        wf: &Workflow,
        base: &Path,
    ) -> HashMap<String, Result<StepSchema, String>> {
        self.set_base_dir(base.to_path_buf());
        let mut uses: Vec<&str> = wf.steps.iter().map(|s| s.uses.value.as_str()).collect();
        for s in &wf.steps {
            if let meridian_model::Compensate::Step { uses: u, .. } = &s.compensate {
                uses.push(u.value.as_str());
            }
        }
        let mut out = HashMap::new();
        for u in uses {
            if out.contains_key(u) {
                continue;
            }
            let r = match self.manifest(u).await {
                Ok(m) => Ok(StepSchema {
                    input: m.input_schema.clone(),
                    output: m.output_schema.clone(),
                    grants_needed: m.needs.clone(),
                }),
                Err(e) => Err(e),
            };
            out.insert(u.to_string(), r);
        }
        out
    }

    fn kv_for(&self, run_id: &str) -> Arc<dyn sb::KvStore> {
        if let Some(source) = &*self.kv_source.lock().unwrap_or_else(|p| p.into_inner()) {
            return source(run_id);
        }
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(run_id.to_string())
            .or_insert_with(|| Arc::new(sb::MemoryKv::default()))
            .clone()
    }
}

/// A clear word for the two common wrong files, before wasmtime's parser error: not Wasm at
/// all, or a core module where a component is needed.
fn check_header(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n < 8 || &head[..4] != b"\0asm" {
        return Err(format!(
            "{} is not a WebAssembly file (it does not start with \\0asm)",
            path.display()
        ));
    }
    if head[4..8] == [1, 0, 0, 0] {
        return Err(format!(
            "{} is a core WebAssembly module, not a component: build the step for wasm32-wasip2 \
             (or wrap the module with `wasm-tools component new`)",
            path.display()
        ));
    }
    Ok(())
}

impl Resolver {
    /// The component for `uses` if it was loaded before.
    fn cached(&self, uses: &str) -> Option<Arc<sb::StepComponent>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uses)
            .cloned()
    }

    fn component(&self, uses: &str) -> Result<Arc<sb::StepComponent>, String> {
        if let Some(c) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uses)
        {
            return Ok(c.clone());
        }
        let c = match parse_uses(uses) {
            Uses::Builtin { name, sha256 } => {
                let Some((_, bytes)) = meridian_artifacts::BUILTIN.iter().find(|(n, _)| *n == name)
                else {
                    let names: Vec<&str> = meridian_artifacts::BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    return Err(format!(
                        "no built-in step `{name}` (built-ins: {}; a path must contain `/` or end in .wasm)",
                        names.join(", ")
                    ));
                };
                self.sandbox
                    .load(bytes, sha256)
                    .map_err(|e| e.to_string())?
            }
            Uses::Path { path, sha256 } => {
                let p = Path::new(path);
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.base_dir
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .join(p)
                };
                check_header(&p)?;
                self.sandbox
                    .load_file(&p, sha256)
                    .map_err(|e| e.to_string())?
            }
        };
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uses.to_string(), c.clone());
        Ok(c)
    }
}

impl Executor for WasmExecutor {
    fn prepare(&self, uses: &str) -> BoxFuture<'static, Result<(), StepError>> {
        let resolver = self.resolver.clone();
        let uses = uses.to_string();
        Box::pin(async move {
            if resolver.cached(&uses).is_some() {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || resolver.component(&uses))
                .await
                .map_err(|e| StepError::Fatal(format!("loading the component panicked: {e}")))?
                .map(|_| ())
                .map_err(StepError::Fatal)
        })
    }

    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, StepError>> {
        let resolver = self.resolver.clone();
        let kv = self.kv_for(&req.run_id);
        Box::pin(async move {
            let sandbox = resolver.sandbox.clone();
            // Loaded before (the common case): no thread hop. Else compile on a blocking thread.
            let component = match resolver.cached(&req.uses) {
                Some(c) => c,
                None => {
                    let uses = req.uses.clone();
                    tokio::task::spawn_blocking(move || resolver.component(&uses))
                        .await
                        .map_err(|e| {
                            StepError::Fatal(format!("loading the component panicked: {e}"))
                        })?
                        .map_err(StepError::Fatal)?
                }
            };
            let g = req.grants;
            let caps = sb::Capabilities {
                http: sb::HttpPolicy {
                    allow: g.http,
                    max_request_bytes: g.http_limits.max_request_bytes,
                    max_response_bytes: g.http_limits.max_response_bytes,
                    timeout: g.http_limits.timeout,
                    resolver: g.dns,
                },
                sql: g.sql,
                fs: g
                    .fs
                    .into_iter()
                    .map(|f| sb::Preopen {
                        host: f.host,
                        guest: f.guest,
                        writable: f.writable,
                    })
                    .collect(),
                secrets: g.secrets,
                mask: req.mask,
                kv,
                log: sb::LogContext {
                    run_id: req.run_id.clone(),
                    step_id: req.step_id.clone(),
                    attempt: req.attempt,
                },
            };
            let call = sb::Call {
                action: match req.action {
                    Action::Run => sb::Action::Run,
                    Action::Compensate => sb::Action::Compensate,
                },
                invocation: sb::Invocation {
                    run_id: req.run_id,
                    step_id: req.step_id,
                    attempt: req.attempt,
                    idempotency_key: req.idempotency_key,
                    mode: match req.mode {
                        Mode::Apply => sb::Mode::Apply,
                        Mode::Plan => sb::Mode::Plan,
                    },
                    input: req.input,
                },
                caps,
                timeout: req.timeout,
                memory_limit: req.limits.memory,
                output_limit: req.limits.output,
            };
            match sandbox.invoke(&component, call).await {
                Ok(o) => Ok(StepResult {
                    output: o.output,
                    plan: o.plan,
                    logs: o.logs,
                }),
                Err(f) => Err(map_failure(f)),
            }
        })
    }
}

fn map_failure(f: sb::StepFailure) -> StepError {
    match f {
        sb::StepFailure::Retryable(m) => StepError::Retryable(m),
        sb::StepFailure::InvalidInput(m) => StepError::InvalidInput(m),
        sb::StepFailure::Timeout(d) => StepError::Timeout(d),
        other => StepError::Fatal(other.to_string()),
    }
}
