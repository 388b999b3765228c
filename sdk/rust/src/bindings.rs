//! The guest side of the contract, generated from `sdk/wit` and nothing else.
//!
//! Step authors do not use this module directly: [`crate::Ctx`] wraps the imports and
//! [`crate::export_step!`] implements the exports. It is public because the `export_step!`
//! expansion in the step's crate has to name it.
#![allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]

wit_bindgen::generate!({
    world: "step",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "__export_meridian_step",
    default_bindings_module: "meridian_sdk::bindings",
    // `types` is shared by imports and exports; serde derives let the SDK log it in tests.
    generate_all,
});
