//! [`Sandbox`]: loads step components (digest-pinned, compile-cached) and invokes them, one
//! fresh instance per call, under the call's capabilities and limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::meridian::step::types as wit;
use crate::bindings::{Step, StepPre};
use crate::cache::{DiskCache, FunctionCache, Pruned};
use crate::engine::{self, Ticker};
use crate::error::{SandboxError, StepFailure};
use crate::failure::{classify, shadow_stack_size};
use crate::state::StoreState;
use crate::stdio::Capture;
use crate::types::{Call, Manifest, Outcome, Report};

mod per_call;
use meridian_protocol::Masker;
use meridian_protocol::{Action, GrantKind, GrantRequest, Level, LogLine, LogSource, Mode};

/// How the sandbox is set up. `Default` is what the engine should use unless it has a reason.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Directory of the compile cache; `None` keeps compiled code in memory only (every new
    /// `Sandbox` recompiles, ~0.5–2 s per step component on 2 cores).
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast instantiation, reserves virtual address space up front;
    /// falls back to on-demand allocation if the reservation fails).
    pub pooling: bool,
    /// Steps running at once; further `invoke`s wait for a slot. Also sizes the pool.
    pub max_instances: u32,
    /// Host handles the steps running at once may hold in all: each step reserves its
    /// `Call::handle_limit` before it starts and waits while the total is taken, so steps
    /// together stay below the process's file-descriptor limit however they behave.
    pub max_handles: u32,
    /// Largest `Call::memory_limit` accepted, in bytes.
    pub max_memory_limit: u64,
    /// Epoch tick: timeout granularity for guest code. Each tick wakes one thread.
    pub epoch_tick: Duration,
    /// Wasm stack per call, in bytes; deeper recursion traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Time limit for `describe`.
    pub describe_timeout: Duration,
    /// Bytes of stdout and of stderr kept per call (the rest is dropped, counted in the log).
    pub stdio_capture_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            max_instances: 64,
            max_handles: 16_384,
            max_memory_limit: 1 << 30,
            epoch_tick: Duration::from_millis(2),
            max_wasm_stack: 512 << 10,
            describe_timeout: Duration::from_secs(10),
            stdio_capture_bytes: 64 << 10,
        }
    }
}

/// Counters proving what the sandbox did, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Components compiled with Cranelift.
    pub compiled: u64,
    /// Components loaded from the on-disk cache without compiling.
    pub cache_hits: u64,
    /// `load` calls answered from memory (same digest loaded before by this sandbox).
    pub memory_hits: u64,
    /// `describe`, `run` and `compensate` calls that instantiated the component.
    pub instantiations: u64,
    /// Functions whose compiled code came from the function cache while compiling components.
    pub functions_reused: u64,
    /// Functions compiled (looked up in the function cache and not found).
    pub functions_compiled: u64,
}

#[derive(Default)]
struct Counters {
    compiled: AtomicU64,
    cache_hits: AtomicU64,
    memory_hits: AtomicU64,
    instantiations: AtomicU64,
}

/// A loaded, linked step component, ready to instantiate (`InstancePre`). Cheap to share.
pub struct StepComponent {
    digest: String,
    size: usize,
    pre: StepPre<StoreState>,
    manifest: tokio::sync::OnceCell<Manifest>,
    /// The shadow stack's size in linear memory (the initial `__stack_pointer` of Rust and C
    /// guests), when the component has one: named in the message of a stack overflow.
    shadow_stack: Option<u32>,
}

impl StepComponent {
    /// Hex sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size of the component binary, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl std::fmt::Debug for StepComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepComponent")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreState>,
    pooling: bool,
    cache: Option<DiskCache>,
    /// Cranelift's incremental cache (with a cache directory).
    functions: Option<Arc<FunctionCache>>,
    /// Held while a component compiles.
    compiling: Mutex<()>,
    components: Mutex<HashMap<String, Arc<StepComponent>>>,
    http_client: OnceLock<Result<reqwest::Client, String>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// [`SandboxConfig::max_handles`], reserved per call.
    handles: Arc<tokio::sync::Semaphore>,
    counters: Counters,
    cfg: SandboxConfig,
    _ticker: Ticker,
}

/// The wasmtime host for steps. Create one per process and share it (`Clone` is cheap).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("pooling", &self.inner.pooling)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The WIT's grant kind as the protocol's: the same five, matched exhaustively so that a kind
/// added to the contract cannot be forgotten here.
fn grant_kind(k: wit::GrantKind) -> GrantKind {
    match k {
        wit::GrantKind::Http => GrantKind::Http,
        wit::GrantKind::Sql => GrantKind::Sql,
        wit::GrantKind::Fs => GrantKind::Fs,
        wit::GrantKind::Secret => GrantKind::Secret,
        wit::GrantKind::Dns => GrantKind::Dns,
    }
}

/// Normalises a pinned digest: optional `sha256:` prefix, case-insensitive hex.
fn normalize_digest(d: &str) -> Result<String, SandboxError> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(SandboxError::BadDigest(d.to_owned()))
    }
}

impl Sandbox {
    /// Builds the engine, linker and epoch thread, and opens the compile cache.
    /// Cost: a few milliseconds (address-space reservation for the pool).
    pub fn new(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        if cfg.max_instances == 0 {
            return Err(SandboxError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        if cfg.epoch_tick.is_zero() {
            return Err(SandboxError::Config("epoch_tick must be positive".into()));
        }
        if cfg.max_memory_limit > 1 << 32 {
            return Err(SandboxError::Config(
                "max_memory_limit is above the 4 GiB of a 32-bit wasm memory".into(),
            ));
        }
        // Functions are cached beside the components (`<cache>/functions`).
        let functions = cfg
            .cache_dir
            .as_deref()
            .map(|d| Arc::new(FunctionCache::new(d.join("functions"))));
        let (engine, pooling) = engine::build(&cfg, functions.as_ref())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("linking WASI: {e:#}")))?;
        refuse_symlinks(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("linking WASI: {e:#}")))?;
        Step::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(format!("linking meridian:step: {e:#}")))?;
        let cache = cfg
            .cache_dir
            .as_deref()
            .map(|d| DiskCache::open(d, &engine))
            .transpose()?;
        let ticker = Ticker::start(engine.clone(), cfg.epoch_tick)?;
        let permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_instances as usize));
        let handles = Arc::new(tokio::sync::Semaphore::new(cfg.max_handles as usize));
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                pooling,
                cache,
                functions,
                compiling: Mutex::default(),
                components: Mutex::default(),
                http_client: OnceLock::new(),
                permits,
                handles,
                counters: Counters::default(),
                cfg,
                _ticker: ticker,
            }),
        })
    }

    /// Prunes the on-disk compile cache: compiled components of another engine, compiled
    /// components not loaded and function packs not written for `older_than`, leftovers of
    /// interrupted writes (see [`Pruned`]). `None` when the sandbox has no cache directory.
    /// With `dry_run`, only reports. Safe beside running processes: an entry removed under one
    /// stays mapped where it is loaded and is compiled again where it is needed next.
    pub fn prune_cache(&self, older_than: std::time::Duration, dry_run: bool) -> Option<Pruned> {
        self.inner
            .cache
            .as_ref()
            .map(|c| c.prune(older_than, dry_run))
    }

    /// Whether the pooling allocator is in use (false after a fallback).
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            compiled: c.compiled.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            instantiations: c.instantiations.load(Ordering::Relaxed),
            functions_reused: self
                .inner
                .functions
                .as_ref()
                .map_or(0, |f| f.hits.load(Ordering::Relaxed)),
            functions_compiled: self
                .inner
                .functions
                .as_ref()
                .map_or(0, |f| f.misses.load(Ordering::Relaxed)),
        }
    }

    /// Loads a component: checks the pin, then memory, then the disk cache, and compiles only
    /// when all miss. Blocking: compiling takes ~0.5–2 s; call from `spawn_blocking` in async code.
    pub fn load(
        &self,
        bytes: &[u8],
        expected_sha256: Option<&str>,
    ) -> Result<Arc<StepComponent>, SandboxError> {
        let digest = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = expected_sha256 {
            let expected = normalize_digest(expected)?;
            if expected != digest {
                return Err(SandboxError::DigestMismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let inner = &self.inner;
        if let Some(c) = inner
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
        {
            inner.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(c));
        }
        let component = match inner
            .cache
            .as_ref()
            .and_then(|c| c.load(&inner.engine, &digest))
        {
            Some(c) => {
                inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(digest = %digest, "component loaded from the compile cache");
                c
            }
            None => {
                // One component at a time: Cranelift already spreads a component's functions
                // over every core, and a component compiled after another finds the functions
                // they share in the function cache instead of compiling them twice at once.
                let _one_at_a_time = inner
                    .compiling
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let started = Instant::now();
                let c =
                    Component::new(&inner.engine, bytes).map_err(|e| SandboxError::Compile {
                        digest: digest.clone(),
                        message: format!("{e:#}"),
                    })?;
                inner.counters.compiled.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = &inner.functions {
                    f.flush();
                }
                tracing::info!(digest = %digest, elapsed = ?started.elapsed(), "component compiled");
                if let Some(cache) = &inner.cache
                    && let Err(e) = cache.store(&digest, &c)
                {
                    tracing::warn!(error = %e, "could not write the compile cache; continuing without it");
                }
                c
            }
        };
        let link = |e: wasmtime::Error| SandboxError::Link {
            digest: digest.clone(),
            message: format!("{e:#}"),
        };
        let pre =
            StepPre::new(inner.linker.instantiate_pre(&component).map_err(link)?).map_err(link)?;
        let loaded = Arc::new(StepComponent {
            digest: digest.clone(),
            size: bytes.len(),
            pre,
            manifest: tokio::sync::OnceCell::new(),
            shadow_stack: shadow_stack_size(bytes),
        });
        let mut map = inner
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Arc::clone(map.entry(digest).or_insert(loaded)))
    }

    /// [`Sandbox::load`] from a file.
    pub fn load_file(
        &self,
        path: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<Arc<StepComponent>, SandboxError> {
        let bytes = std::fs::read(path).map_err(|source| SandboxError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load(&bytes, expected_sha256)
    }

    /// The step's manifest (`describe` export), computed once per component and cached.
    pub async fn describe(&self, c: &StepComponent) -> Result<Manifest, StepFailure> {
        self.manifest(c).await.cloned()
    }

    /// [`Sandbox::describe`] without the copy (the host checks every step's input and output
    /// against it).
    pub async fn manifest<'c>(&self, c: &'c StepComponent) -> Result<&'c Manifest, StepFailure> {
        c.manifest
            .get_or_try_init(|| self.describe_uncached(c))
            .await
    }

    async fn describe_uncached(&self, c: &StepComponent) -> Result<Manifest, StepFailure> {
        let timeout = self.inner.cfg.describe_timeout;
        let call = Call {
            timeout,
            ..Call::run(
                crate::Invocation {
                    run_id: String::new(),
                    step_id: String::new(),
                    attempt: 0,
                    idempotency_key: String::new(),
                    mode: Mode::Apply,
                    input: serde_json::Value::Null,
                },
                crate::Capabilities::default(),
            )
        };
        let _permit = self.acquire().await?;
        let (mut store, _, stderr) = self.new_store(&call, Arc::new(Masker::default()))?;
        self.inner
            .counters
            .instantiations
            .fetch_add(1, Ordering::Relaxed);
        let fut = async {
            let instance = c
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (true, e))?;
            instance
                .call_describe(&mut store)
                .await
                .map_err(|e| (false, e))
        };
        let m = match tokio::time::timeout(timeout, fut).await {
            Err(_) => return Err(StepFailure::Timeout(timeout)),
            Ok(Err((instantiating, e))) => {
                let exceeded = store.data().limiter.exceeded;
                return Err(classify(
                    &e,
                    instantiating,
                    exceeded,
                    &call,
                    &stderr.take().0,
                    &Masker::default(),
                    c.shadow_stack,
                ));
            }
            Ok(Ok(m)) => m,
        };
        let schema = |what: &str, s: &str| {
            serde_json::from_str(s).map_err(|e| {
                StepFailure::InvalidOutput(format!("describe: {what} is not JSON: {e}"))
            })
        };
        Ok(Manifest {
            input_schema: schema("input-schema", &m.input_schema)?,
            output_schema: schema("output-schema", &m.output_schema)?,
            name: m.name,
            version: m.version,
            description: m.description,
            needs: m
                .needs
                .into_iter()
                .map(|g| GrantRequest {
                    kind: grant_kind(g.kind),
                    detail: g.detail,
                })
                .collect(),
            supports_plan: m.supports_plan,
            supports_compensate: m.supports_compensate,
        })
    }

    /// Runs `call` on a fresh instance of `c`; success or failure as a `Result`.
    pub async fn invoke(&self, c: &StepComponent, call: Call) -> Result<Outcome, StepFailure> {
        self.execute(c, call).await.into_outcome()
    }

    /// Runs `call` on a fresh instance of `c` and returns everything it produced, including the
    /// logs and plan of a failed call.
    pub async fn execute(&self, c: &StepComponent, call: Call) -> Report {
        let started = Instant::now();
        let masker = Arc::new(Masker::new(
            call.caps
                .secrets
                .values()
                .map(String::as_str)
                .chain(call.caps.mask.iter().map(String::as_str)),
        ));
        let permit = match self.acquire_for(&call).await {
            Ok(p) => p,
            Err(e) => {
                return Report {
                    result: Err(e),
                    plan: Vec::new(),
                    logs: Vec::new(),
                    elapsed: started.elapsed(),
                };
            }
        };
        let (mut store, stdout, stderr) = match self.new_store(&call, Arc::clone(&masker)) {
            Ok(s) => s,
            Err(e) => {
                return Report {
                    result: Err(e),
                    plan: Vec::new(),
                    logs: Vec::new(),
                    elapsed: started.elapsed(),
                };
            }
        };
        // Dropped with this future before the call ends (the caller's cancel or timeout): what
        // the guest printed goes to the log tap then; a call that ends logs it below.
        let mut on_drop = StdioOnDrop {
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            tap: call.caps.log.tap.clone(),
            masker: Arc::clone(&masker),
            armed: true,
        };
        self.inner
            .counters
            .instantiations
            .fetch_add(1, Ordering::Relaxed);
        let inv = wit::Invocation {
            run_id: call.invocation.run_id.clone(),
            step_id: call.invocation.step_id.clone(),
            attempt: call.invocation.attempt,
            idempotency_key: call.invocation.idempotency_key.clone(),
            mode: match call.invocation.mode {
                Mode::Apply => wit::Mode::Apply,
                Mode::Plan => wit::Mode::Plan,
            },
            input: call.invocation.input.to_string(),
        };
        let action = call.action;
        let fut = async {
            let instance = c
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (true, e))?;
            match action {
                Action::Run => instance
                    .call_run(&mut store, &inv)
                    .await
                    .map_err(|e| (false, e)),
                Action::Compensate => instance
                    .call_compensate(&mut store, &inv)
                    .await
                    .map(|r| r.map(|()| String::new()))
                    .map_err(|e| (false, e)),
            }
        };
        // The epoch deadline stops guest code; this wall-clock bound stops waits in host calls.
        let outcome = tokio::time::timeout(call.timeout, fut).await;
        drop(permit);
        on_drop.armed = false;

        let (stderr_text, stderr_dropped) = stderr.take();
        let (stdout_text, stdout_dropped) = stdout.take();
        let exceeded = store.data().limiter.exceeded;
        let result = match outcome {
            Err(_) => Err(StepFailure::Timeout(call.timeout)),
            Ok(Err((instantiating, e))) => Err(classify(
                &e,
                instantiating,
                exceeded,
                &call,
                &stderr_text,
                &masker,
                c.shadow_stack,
            )),
            Ok(Ok(Err(step_error))) => Err(match step_error {
                wit::StepError::Retryable(m) => StepFailure::Retryable(masker.mask_string(m)),
                wit::StepError::Fatal(m) => StepFailure::Fatal(masker.mask_string(m)),
                wit::StepError::InvalidInput(m) => StepFailure::InvalidInput(masker.mask_string(m)),
            }),
            Ok(Ok(Ok(_))) if action == Action::Compensate => Ok(serde_json::Value::Null),
            Ok(Ok(Ok(json))) => parse_output(&json, call.output_limit, &masker),
        };

        let host = &mut store.data_mut().host;
        for (text, dropped, level, source) in [
            (stdout_text, stdout_dropped, Level::Info, LogSource::Stdout),
            (stderr_text, stderr_dropped, Level::Warn, LogSource::Stderr),
        ] {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                host.push_log(level, source, line, Vec::new());
            }
            if dropped > 0 {
                let note =
                    format!("{dropped} more bytes of {source:?} were dropped (capture limit)")
                        .to_lowercase();
                host.push_log(Level::Warn, LogSource::Host, &note, Vec::new());
            }
        }
        if let Err(e) = &result {
            let c = &host.log_ctx;
            tracing::warn!(target: "meridian::step", run = %c.run_id, step = %c.step_id, attempt = c.attempt, error = %e, "step failed");
        }
        host.finish_log();
        let logs = host.log_ctx.tap.take();
        let plan = std::mem::take(&mut host.plan);
        Report {
            result,
            plan,
            logs,
            elapsed: started.elapsed(),
        }
    }
}

/// What the guest wrote to stdout and stderr, for the log tap of an invocation dropped before
/// it ended: masked, a line each, as a finished invocation logs them.
struct StdioOnDrop {
    stdout: Capture,
    stderr: Capture,
    tap: meridian_protocol::LogTap,
    masker: Arc<Masker>,
    armed: bool,
}

impl Drop for StdioOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for (capture, level, source) in [
            (&self.stdout, Level::Info, LogSource::Stdout),
            (&self.stderr, Level::Warn, LogSource::Stderr),
        ] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                self.tap.push(LogLine {
                    level,
                    source,
                    message: self.masker.mask(line).into_owned(),
                    fields: Vec::new(),
                });
            }
            if dropped > 0 {
                self.tap.push(LogLine {
                    level: Level::Warn,
                    source: LogSource::Host,
                    message: format!(
                        "{dropped} more bytes of {source:?} were dropped (capture limit)"
                    )
                    .to_lowercase(),
                    fields: Vec::new(),
                });
            }
        }
    }
}

fn parse_output(json: &str, limit: u64, masker: &Masker) -> Result<serde_json::Value, StepFailure> {
    let size = json.len() as u64;
    if size > limit {
        return Err(StepFailure::OutputTooLarge { size, limit });
    }
    let mut v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| StepFailure::InvalidOutput(masker.mask_string(e.to_string())))?;
    masker.mask_json_mut(&mut v);
    Ok(v)
}

/// A step may not create symbolic links: a relative link in a writable preopen could point out
/// of it (`../../etc/passwd`), and the host tools that read the directory afterwards would
/// follow it. WASI's `symlink-at` answers `not-permitted`; every other filesystem call is
/// wasmtime-wasi's.
fn refuse_symlinks(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::bindings::filesystem::types::{Descriptor, ErrorCode};
    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:filesystem/types@0.2.12")?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |_store, (_dir, _old, _new): (Resource<Descriptor>, String, String)| {
            Box::new(async move { Ok((Err::<(), ErrorCode>(ErrorCode::NotPermitted),)) })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::panic_message;

    #[test]
    fn every_wit_grant_kind_maps_to_the_protocol_kind_of_its_name() {
        use wit::GrantKind as W;
        let all = [W::Http, W::Sql, W::Fs, W::Secret, W::Dns];
        let mapped: Vec<GrantKind> = all.into_iter().map(grant_kind).collect();
        assert_eq!(mapped, GrantKind::ALL);
        for k in all {
            assert_eq!(
                format!("{k:?}").to_lowercase(),
                format!("grantkind::{}", grant_kind(k))
            );
        }
    }

    #[test]
    fn digests_are_normalised() {
        let d = "A".repeat(64);
        assert_eq!(
            normalize_digest(&format!("sha256:{d}")).unwrap(),
            "a".repeat(64)
        );
        assert!(matches!(
            normalize_digest("sha256:abc"),
            Err(SandboxError::BadDigest(_))
        ));
        assert!(matches!(
            normalize_digest(&"g".repeat(64)),
            Err(SandboxError::BadDigest(_))
        ));
    }

    #[test]
    fn panic_report_extraction() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:27:9:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:27:9: boom")
        );
        assert_eq!(panic_message("nothing"), None);
    }

    #[test]
    fn output_limits_and_masking() {
        let m = Masker::new(["tok"]);
        assert_eq!(
            parse_output(r#"{"a":"xtoky"}"#, 100, &m).unwrap(),
            serde_json::json!({"a": "x***y"})
        );
        assert_eq!(
            parse_output("[1,2,3]", 3, &m),
            Err(StepFailure::OutputTooLarge { size: 7, limit: 3 })
        );
        assert!(matches!(
            parse_output("{", 100, &m),
            Err(StepFailure::InvalidOutput(_))
        ));
    }
}
