//! The host side of the step contract, generated from `sdk/wit` and nothing else.
#![allow(missing_docs, unreachable_pub, clippy::all)]

wasmtime::component::bindgen!({
    world: "step",
    path: "../../sdk/wit",
    // Host functions are async (HTTP and SQL do I/O on tokio) and may trap (a host invariant
    // broken by the guest, e.g. log flooding, ends the call).
    imports: { default: async | trappable },
    exports: { default: async },
});
