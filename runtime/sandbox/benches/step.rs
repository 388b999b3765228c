//! Per-step overhead of the sandbox, against raw wasmtime as the baseline.
//!
//! - `raw_wasmtime_instantiate_call`: pooling allocator + `InstancePre`, a fresh store and
//!   instance per iteration, WASI context, `run` of the noop guest. What wasmtime itself costs.
//! - `sandbox_invoke_noop`: `Sandbox::invoke` of the same guest with default (deny-all)
//!   capabilities: instantiation plus our per-call bookkeeping (caps, masking, logs, limits).
//! - `cold_start_cached`: a new `Sandbox` on a warm compile cache + `load_file` + first
//!   `invoke`: what a fresh `meridian` process pays before its first step.
//!
//! Run: `cargo bench -p meridian-sandbox -- --quick` (or without `--quick` for tighter numbers).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meridian_sandbox::bindings::StepPre;
use meridian_sandbox::bindings::meridian::step::types::{
    Invocation as WitInvocation, Mode as WitMode,
};
use meridian_sandbox::{Call, Capabilities, Invocation, Mode, Sandbox, SandboxConfig};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn invocation() -> Invocation {
    Invocation {
        run_id: "bench".into(),
        step_id: "noop".into(),
        attempt: 1,
        idempotency_key: "bench/noop".into(),
        mode: Mode::Apply,
        input: serde_json::json!({}),
    }
}

fn raw_wasmtime(c: &mut Criterion) {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).expect("engine");
    let component = Component::from_file(&engine, meridian_artifacts::NOOP).expect("compile noop");
    let mut linker = Linker::<RawState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    // The noop guest never calls the meridian imports; traps stand in for them.
    linker
        .define_unknown_imports_as_traps(&component)
        .expect("stub imports");
    let pre = StepPre::new(linker.instantiate_pre(&component).expect("instantiate_pre"))
        .expect("step exports");
    let inv = WitInvocation {
        run_id: "bench".into(),
        step_id: "noop".into(),
        attempt: 1,
        idempotency_key: "bench/noop".into(),
        mode: WitMode::Apply,
        input: "{}".into(),
    };
    let rt = runtime();
    c.bench_function("raw_wasmtime_instantiate_call", |b| {
        b.iter(|| {
            rt.block_on(async {
                let state = RawState {
                    wasi: WasiCtxBuilder::new().build(),
                    table: ResourceTable::new(),
                };
                let mut store = Store::new(&engine, state);
                let step = pre
                    .instantiate_async(&mut store)
                    .await
                    .expect("instantiate");
                black_box(
                    step.call_run(&mut store, &inv)
                        .await
                        .expect("call")
                        .expect("run"),
                )
            })
        });
    });
}

fn sandbox_invoke(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let noop = sandbox
        .load_file(Path::new(meridian_artifacts::NOOP), None)
        .expect("load noop");
    let rt = runtime();
    c.bench_function("sandbox_invoke_noop", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    sandbox
                        .invoke(&noop, Call::run(invocation(), Capabilities::default()))
                        .await
                        .expect("invoke"),
                )
            })
        });
    });
}

fn cold_start(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SandboxConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    // Warm the on-disk cache once, as a previous `meridian` run would have.
    Sandbox::new(cfg.clone())
        .expect("sandbox")
        .load_file(Path::new(meridian_artifacts::NOOP), None)
        .expect("load");
    let rt = runtime();
    c.bench_function("cold_start_cached", |b| {
        b.iter(|| {
            let sandbox = Sandbox::new(cfg.clone()).expect("sandbox");
            let noop = sandbox
                .load_file(Path::new(meridian_artifacts::NOOP), None)
                .expect("load");
            assert_eq!(sandbox.stats().compiled, 0, "the cache must be hit");
            rt.block_on(async {
                black_box(
                    sandbox
                        .invoke(&noop, Call::run(invocation(), Capabilities::default()))
                        .await
                        .expect("invoke"),
                )
            })
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = raw_wasmtime, sandbox_invoke, cold_start
}
criterion_main!(benches);
