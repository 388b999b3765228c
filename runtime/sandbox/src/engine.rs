//! Engine set-up in one place: async, epoch interruption with a fixed tick, the pooling
//! allocator (falling back to on-demand allocation when the address space cannot be reserved),
//! wasm stack limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::SandboxConfig;
use crate::cache::FunctionCache;
use crate::error::SandboxError;

/// Bytes of each table slot kept resident (memset) rather than decommitted when freed.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// Bytes at the bottom of each linear memory slot kept mapped when freed (see `pooling_config`):
/// a Rust guest's 1 MiB stack and its data and first heap pages.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Stack reserved for host frames on each async fiber, on top of the wasm stack.
const HOST_STACK_HEADROOM: usize = 1 << 20;

fn base_config(cfg: &SandboxConfig, functions: Option<&Arc<FunctionCache>>) -> Config {
    let mut c = Config::new();
    if let Some(f) = functions {
        // Only fails when the compiler is disabled, which it never is here.
        let _ = c.enable_incremental_compilation(f.clone());
    }
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(cfg.max_wasm_stack);
    c.async_stack_size(cfg.max_wasm_stack + HOST_STACK_HEADROOM);
    c.cranelift_opt_level(OptLevel::Speed);
    c.parallel_compilation(true);
    c
}

fn pooling_config(cfg: &SandboxConfig) -> PoolingAllocationConfig {
    let n = cfg.max_instances;
    let mut p = PoolingAllocationConfig::default();
    // A Rust step component holds one memory and a handful of small core instances (the main
    // module plus wit-component shims); leave room for components from other languages.
    p.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(16))
        .total_stacks(n)
        .max_memory_size(usize::try_from(cfg.max_memory_limit).unwrap_or(usize::MAX))
        // A step's tables are a page or two: zeroed with memset when its instance ends instead
        // of an madvise each, which costs a TLB shootdown across cores and a page fault at the
        // next instantiation (2 madvise calls and ~2 faults a step otherwise).
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    // Linear memories likewise, where the kernel (Linux 6.7+) can tell which pages a step
    // dirtied (`PAGEMAP_SCAN`): only those are restored, with memset, and the slot's pages stay
    // mapped, so the next instance of the same component takes no page fault on them. Measured
    // on a sequence of 2,000 no-op steps: 6.0 page faults and an madvise per step before, 2.0
    // and one ioctl after; 26 us less CPU per step. Without the scan the first
    // `MEMORY_KEEP_RESIDENT` bytes would be memset whole at every step (a guest's stack alone
    // is 1 MiB), so older kernels keep the madvise.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        p.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Yes);
    }
    p
}

/// Builds the engine; returns it and whether the pooling allocator is in use. With a function
/// cache, Cranelift compiles incrementally through it.
pub(crate) fn build(
    cfg: &SandboxConfig,
    functions: Option<&Arc<FunctionCache>>,
) -> Result<(Engine, bool), SandboxError> {
    if cfg.pooling {
        let mut c = base_config(cfg, functions);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(cfg)));
        match Engine::new(&c) {
            Ok(engine) => return Ok((engine, true)),
            // Typically a restricted virtual address space (ulimit -v, some containers).
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; falling back to on-demand allocation")
            }
        }
    }
    let engine = Engine::new(&base_config(cfg, functions))
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    Ok((engine, false))
}

/// Increments the engine's epoch every `tick` on a dedicated thread until dropped. At every tick
/// each running step compares the monotonic clock with its deadline, so a guest spinning
/// without host calls is stopped within one tick of its timeout, however late this thread
/// wakes. Cost: one thread waking every tick.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("meridian-epoch".into())
            .spawn(move || {
                // Parked rather than asleep, so that dropping the ticker wakes it at once
                // instead of waiting out the tick (a command's exit waited ~1 ms for it). An
                // early wake-up only makes a tick early: deadlines are read off the clock.
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| SandboxError::Engine(format!("starting the epoch thread: {e}")))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
