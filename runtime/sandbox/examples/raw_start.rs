//! The baseline of the start-up benchmark: a whole process that does what raw wasmtime must do
//! to run one step — load a precompiled component from disk, link WASI, instantiate it in a
//! fresh store, call its `run` — and nothing else (no workflow, no journal, no output).
//! `scripts/bench-journal --only startup` times it beside `meridian run` of a 1-step workflow.
//!
//! ```text
//! raw_start precompile COMPONENT.wasm OUT.cwasm   # once: compile with this build's wasmtime
//! raw_start run OUT.cwasm                         # what is timed
//! ```

use std::process::ExitCode;

use meridian_sandbox::bindings::StepPre;
use meridian_sandbox::bindings::meridian::step::types::{Invocation, Mode};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn engine() -> wasmtime::Result<Engine> {
    Engine::new(&Config::new())
}

fn precompile(wasm: &str, out: &str) -> wasmtime::Result<()> {
    let bytes = std::fs::read(wasm)?;
    std::fs::write(out, engine()?.precompile_component(&bytes)?)?;
    Ok(())
}

#[allow(unsafe_code)]
fn run(cwasm: &str) -> wasmtime::Result<()> {
    let engine = engine()?;
    // SAFETY: the file was written by `precompile` above with this build's wasmtime.
    let component = unsafe { Component::deserialize_file(&engine, cwasm)? };
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // A no-op guest never calls the meridian imports; traps stand in for them.
    linker.define_unknown_imports_as_traps(&component)?;
    let pre = StepPre::new(linker.instantiate_pre(&component)?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let state = State {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        let step = pre.instantiate_async(&mut store).await?;
        let inv = Invocation {
            run_id: "raw".into(),
            step_id: "noop".into(),
            attempt: 1,
            idempotency_key: "raw/noop".into(),
            mode: Mode::Apply,
            input: "{}".into(),
        };
        step.call_run(&mut store, &inv)
            .await?
            .map_err(|e| wasmtime::format_err!("the step failed: {e:?}"))?;
        Ok(())
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["precompile", wasm, out] => precompile(wasm, out),
        ["run", cwasm] => run(cwasm),
        _ => {
            eprintln!(
                "usage: raw_start precompile COMPONENT.wasm OUT.cwasm | raw_start run OUT.cwasm"
            );
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_start: {e:#}");
            ExitCode::FAILURE
        }
    }
}
