//! The engine's [`Executor`] over the Wasm sandbox: loads the component a [`ComponentRef`] names
//! (a built-in step or an absolute path, either optionally pinned by sha256, or an OCI artifact
//! pulled through `meridian-oci`: cached by digest, verified, checked against the trust
//! policy), turns grants into sandbox capabilities,
//! and maps sandbox failures to engine errors. The glue between `meridian-engine` (which knows
//! nothing of Wasm) and `meridian-sandbox` (which knows nothing of workflows).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use meridian_engine::{
    Action, AttemptError, ComponentRef, Executor, Mode, StepError, StepRequest, StepResult,
};
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
/// the blocking compile can move to a blocking thread. It has no base directory: a path arrives
/// absolute (the workflow model resolved it), so where this process runs does not matter.
#[derive(Clone)]
struct Resolver {
    sandbox: Arc<sb::Sandbox>,
    loaded: Arc<Mutex<HashMap<ComponentRef, Arc<sb::StepComponent>>>>,
    /// What pins each loaded component: `sha256:<its bytes>`, or for an OCI artifact the
    /// reference pinned to the manifest digest it was fetched by (a tag's, resolved).
    pins: Arc<Mutex<HashMap<ComponentRef, String>>>,
    /// A component file's size and modification time when it was loaded: a run that starts
    /// after the file changed loads it again (a long-lived `serve` kept the first version it
    /// loaded until it restarted).
    stamps: Arc<Mutex<HashMap<ComponentRef, FileStamp>>>,
    oci: Arc<OciSettings>,
}

/// What tells that a component file changed: its size and modification time.
type FileStamp = (u64, Option<std::time::SystemTime>);

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// How `uses: oci://…` is resolved.
#[derive(Clone, Debug, Default)]
pub struct OciSettings {
    /// Where pulled artifacts are kept by digest (`<dir>/oci`); the system temp dir if `None`.
    pub cache_dir: Option<PathBuf>,
    /// Which keys must have signed which registries' steps; `None`: signatures are not asked.
    pub policy: Option<Arc<meridian_oci::policy::TrustPolicy>>,
    /// Run a tag without a digest (resolved when the component is loaded).
    pub allow_unpinned: bool,
}

impl WasmExecutor {
    /// A sandbox with the default configuration and this compile cache: room for the steps of
    /// many runs at once (a server's).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, sb::SandboxError> {
        Self::with_slots(cache_dir, u32::MAX)
    }

    /// A sandbox that runs at most `slots` steps at once (more wait for a slot; at most the
    /// default's 64), for a process that runs one workflow: its pool of instance slots, stacks
    /// and memories is reserved at start and released at exit, and a pool sized for 64 steps
    /// cost a 1-step `meridian run` ~0.5 ms of its start-up and exit (a guard page set per
    /// stack, each pool's index built, its mappings torn down).
    pub fn with_slots(cache_dir: Option<PathBuf>, slots: u32) -> Result<Self, sb::SandboxError> {
        let most = sb::SandboxConfig::default().max_instances;
        let cfg = sb::SandboxConfig {
            cache_dir,
            max_instances: slots.clamp(1, most),
            // What validation lets a workflow ask for.
            max_memory_limit: meridian_model::Limits::MAX_MEMORY,
            ..Default::default()
        };
        let oci = OciSettings {
            cache_dir: cfg.cache_dir.clone(),
            ..Default::default()
        };
        let sandbox = sb::Sandbox::new(cfg)?;
        Ok(WasmExecutor {
            resolver: Resolver {
                sandbox: Arc::new(sandbox),
                loaded: Arc::new(Mutex::new(HashMap::new())),
                pins: Arc::new(Mutex::new(HashMap::new())),
                stamps: Arc::new(Mutex::new(HashMap::new())),
                oci: Arc::new(oci),
            },
            kv_source: Mutex::new(None),
            kv: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves `uses: oci://…` with these settings (before any component is loaded).
    #[must_use]
    pub fn with_oci(mut self, settings: OciSettings) -> Self {
        self.resolver.oci = Arc::new(settings);
        self
    }

    /// Whether a trust policy is in force.
    pub fn has_policy(&self) -> bool {
        self.resolver.oci.policy.is_some()
    }

    /// What pins `uses`, once it was loaded: `sha256:<hex of the component's bytes>` for a file
    /// or a built-in, `oci://…@sha256:<manifest digest>` for an OCI artifact (a tag's digest
    /// when it was loaded).
    pub fn pin_of(&self, uses: &ComponentRef) -> Option<String> {
        self.resolver
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uses)
            .cloned()
    }

    /// Whether a tag without a digest may run.
    pub fn allows_unpinned(&self) -> bool {
        self.resolver.oci.allow_unpinned
    }

    /// The OCI steps fetched into this executor's cache (pinned references, `oci://…@sha256:…`),
    /// for `steps list`.
    pub fn pulled(&self) -> Vec<ComponentRef> {
        self.resolver
            .oci
            .cache()
            .refs()
            .iter()
            .filter_map(|r| ComponentRef::parse(r, std::path::Path::new("/")).ok())
            .collect()
    }

    /// Pulls (or finds in the cache) and verifies the OCI artifact `uses` names, as running it
    /// would: digest, layout and trust policy. For `step pull` and `steps show`.
    pub async fn fetch_oci(&self, uses: &ComponentRef) -> Result<meridian_oci::Fetched, String> {
        let ComponentRef::Oci { reference, sha256 } = uses else {
            return Err(format!("{uses} is not an OCI reference"));
        };
        let r = meridian_oci::OciRef::new(reference, sha256.as_ref());
        let settings = &self.resolver.oci;
        meridian_oci::fetch(
            &r,
            &settings.cache(),
            settings.policy.as_deref(),
            settings.allow_unpinned,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Pulls (or finds in the cache) the OCI artifact `uses` names and verifies it against
    /// `policy` (besides digest and layout): a workflow's own `trust-policy`, which adds to the
    /// executor's.
    pub async fn verify_oci_with(
        &self,
        uses: &ComponentRef,
        policy: &meridian_oci::policy::TrustPolicy,
    ) -> Result<(), String> {
        let ComponentRef::Oci { reference, sha256 } = uses else {
            return Ok(());
        };
        let r = meridian_oci::OciRef::new(reference, sha256.as_ref());
        let settings = &self.resolver.oci;
        meridian_oci::fetch(&r, &settings.cache(), Some(policy), settings.allow_unpinned)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Keeps each run's kv state where `source` says (the run's journal), so it outlives this
    /// process: compensation after a resume, or on another worker, sees what a step saved.
    pub fn set_kv_source(&self, source: KvSource) {
        *self.kv_source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// The compiled component for `uses` (compiling blocks: it runs on a blocking thread), the
    /// file's version as it is now: what a run's checks read before it starts.
    async fn component(&self, uses: &ComponentRef) -> Result<Arc<sb::StepComponent>, String> {
        self.resolver.forget_if_changed(uses);
        let r = self.resolver.clone();
        let uses = uses.clone();
        tokio::task::spawn_blocking(move || r.component(&uses))
            .await
            .map_err(|e| format!("loading the component panicked: {e}"))?
    }

    /// The manifest a step component declares.
    pub async fn manifest(&self, uses: &ComponentRef) -> Result<sb::Manifest, String> {
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

    /// Schemas of every step component the workflow uses (including compensation steps); a
    /// component that cannot be loaded maps to its error.
    pub async fn schemas_for(
        &self,
        wf: &Workflow,
    ) -> HashMap<ComponentRef, Result<StepSchema, String>> {
        let uses = wf.components();
        // Every component loads at once, each on a blocking thread (from the compile cache or an
        // OCI registry; compiles still take turns, each spread over every core by Cranelift).
        let manifests = futures::future::join_all(uses.iter().map(|u| self.manifest(u))).await;
        uses.into_iter()
            .zip(manifests)
            .map(|(u, m)| {
                let schema = m.map(|m| StepSchema {
                    input: m.input_schema,
                    output: m.output_schema,
                    grants_needed: m.needs,
                });
                (u.clone(), schema)
            })
            .collect()
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

impl OciSettings {
    fn cache(&self) -> meridian_oci::Cache {
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("meridian-cache"));
        meridian_oci::Cache::new(&dir)
    }
}

impl Resolver {
    /// Forgets `uses` if it is a component file that changed since it was loaded: called when
    /// a run starts (its checks, `prepare`), not between its steps, which load the run's pinned
    /// version (see the runner's `pins`).
    fn forget_if_changed(&self, uses: &ComponentRef) {
        let ComponentRef::Path { path, .. } = uses else {
            return;
        };
        let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(then) = stamps.get(uses) else {
            return;
        };
        if stamp_of(path).as_ref() != Some(then) {
            stamps.remove(uses);
            self.loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(uses);
            self.pins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(uses);
        }
    }

    /// For `uses` pinned (a run pins its files and tags to what its checks loaded, see the
    /// runner's `pins`): the component loaded unpinned with that very pin, now kept under
    /// `uses` too (the run's steps need not load it again).
    fn loaded_unpinned(&self, uses: &ComponentRef) -> Option<Arc<sb::StepComponent>> {
        let (unpinned, pin) = match uses {
            ComponentRef::Path {
                path,
                sha256: Some(d),
            } => (
                ComponentRef::Path {
                    path: path.clone(),
                    sha256: None,
                },
                format!("sha256:{d}"),
            ),
            ComponentRef::Oci {
                reference,
                sha256: Some(_),
            } => (
                ComponentRef::Oci {
                    reference: reference.clone(),
                    sha256: None,
                },
                uses.to_string(),
            ),
            _ => return None,
        };
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if pins.get(&unpinned) != Some(&pin) {
            return None;
        }
        let c = self.cached(&unpinned)?;
        pins.insert(uses.clone(), pin);
        drop(pins);
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uses.clone(), c.clone());
        Some(c)
    }

    /// The component for `uses` if it was loaded before.
    fn cached(&self, uses: &ComponentRef) -> Option<Arc<sb::StepComponent>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uses)
            .cloned()
    }

    fn component(&self, uses: &ComponentRef) -> Result<Arc<sb::StepComponent>, String> {
        if let Some(c) = self.cached(uses).or_else(|| self.loaded_unpinned(uses)) {
            return Ok(c);
        }
        let pin = uses.sha256().map(ToString::to_string);
        let mut fetched_as = None;
        let c = match uses {
            ComponentRef::Builtin { name, .. } => {
                let Some((_, bytes)) = meridian_artifacts::BUILTIN.iter().find(|(n, _)| n == name)
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
                    .load(bytes, pin.as_deref())
                    .map_err(|e| e.to_string())?
            }
            ComponentRef::Path { path, .. } => {
                // Resolving it here would mean against this process's working directory, which
                // on a queue worker is not the workflow's.
                if !path.is_absolute() {
                    return Err(format!(
                        "component path {} is relative; the workflow model resolves `uses:` against the workflow file's directory",
                        path.display()
                    ));
                }
                check_header(path)?;
                // Before the read: a change during it shows as a change at the next run.
                if let Some(st) = stamp_of(path) {
                    self.stamps
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(uses.clone(), st);
                }
                self.sandbox
                    .load_file(path, pin.as_deref())
                    .map_err(|e| e.to_string())?
            }
            ComponentRef::Oci { reference, sha256 } => {
                // The pin is the manifest's digest, checked by the fetch with the component's.
                let r = meridian_oci::OciRef::new(reference, sha256.as_ref());
                let fetched = meridian_oci::fetch_blocking(
                    &r,
                    &self.oci.cache(),
                    self.oci.policy.as_deref(),
                    self.oci.allow_unpinned,
                )
                .map_err(|e| e.to_string())?;
                fetched_as = Some(fetched.reference.to_string());
                self.sandbox
                    .load(&fetched.component, None)
                    .map_err(|e| format!("{r}: {e}"))?
            }
        };
        self.pins.lock().unwrap_or_else(|p| p.into_inner()).insert(
            uses.clone(),
            fetched_as.unwrap_or_else(|| format!("sha256:{}", c.digest())),
        );
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uses.clone(), c.clone());
        Ok(c)
    }
}

impl Executor for WasmExecutor {
    fn prepare(&self, uses: &ComponentRef) -> BoxFuture<'static, Result<(), StepError>> {
        let resolver = self.resolver.clone();
        let uses = uses.clone();
        Box::pin(async move {
            resolver.forget_if_changed(&uses);
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

    fn execute(&self, req: StepRequest) -> BoxFuture<'static, Result<StepResult, AttemptError>> {
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
            // The contract's promise (`sdk/wit`): data crossing into and out of a step is
            // checked against the schemas the step declares. Before the run, `validate` checks
            // `with:` as written; here the values are the evaluated ones.
            let manifest = sandbox
                .manifest(&component)
                .await
                .map_err(|e| StepError::Fatal(format!("describe failed: {e}")))?;
            let problems =
                meridian_model::schema::check_json(&manifest.input_schema, &req.input, "with");
            if !problems.is_empty() {
                return Err(StepError::InvalidInput(format!(
                    "the evaluated input does not match what `{}` accepts: {}",
                    req.uses,
                    problems.join("; ")
                ))
                .into());
            }
            let check_output = req.action == Action::Run && req.mode == Mode::Apply;
            let g = req.grants;
            let kv: Arc<dyn sb::KvStore> =
                Arc::new(sb::ScopedKv::new(kv, &req.step_id, g.kv.clone()));
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
                    tap: req.log.clone(),
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
                handle_limit: req.limits.handles,
            };
            let report = sandbox.execute(&component, call).await;
            match report.result {
                Ok(output) if check_output => {
                    let problems = meridian_model::schema::check_json(
                        &manifest.output_schema,
                        &output,
                        "outputs",
                    );
                    if problems.is_empty() {
                        Ok(StepResult {
                            output,
                            plan: report.plan,
                            logs: report.logs,
                        })
                    } else {
                        Err(AttemptError {
                            error: StepError::Fatal(format!(
                                "the step's output does not match the output schema `{}` \
                                 declares (a fault of the step component, not of the workflow): {}",
                                req.uses,
                                problems.join("; ")
                            )),
                            logs: report.logs,
                        })
                    }
                }
                Ok(output) => Ok(StepResult {
                    output,
                    plan: report.plan,
                    logs: report.logs,
                }),
                // What it logged before failing goes with the failure.
                Err(f) => Err(AttemptError {
                    error: map_failure(f),
                    logs: report.logs,
                }),
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
