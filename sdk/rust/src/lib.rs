//! # meridian-sdk: write a Meridian workflow step as a WebAssembly component
//!
//! A step is a `cdylib` crate built for `wasm32-wasip2`. It declares typed input and output
//! (serde + schemars, so the engine can check `with:` before anything runs), implements [`Step`],
//! and calls [`export_step!`]:
//!
//! ```ignore
//! use meridian_sdk::{Ctx, Error, ManifestInfo, Step, JsonSchema};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Input { name: String }
//! #[derive(Serialize, JsonSchema)]
//! struct Output { greeting: String }
//!
//! struct Hello;
//! impl Step for Hello {
//!     type Input = Input;
//!     type Output = Output;
//!     fn manifest() -> ManifestInfo { ManifestInfo::new("hello", "0.1.0") }
//!     fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
//!         ctx.log.info("greeting");
//!         Ok(Output { greeting: format!("Hello, {}!", input.name) })
//!     }
//! }
//! meridian_sdk::export_step!(Hello);
//! ```
//!
//! Every external effect goes through the host: [`Ctx::http`], [`Ctx::sql`], [`Ctx::secret`],
//! [`Ctx::kv`], [`Ctx::log`], plus WASI files under granted preopens. The host enforces grants,
//! plan mode and secret masking, so step code does not have to.
//!
//! Step logic can be unit-tested on the build machine with [`testing::MockHost`] and
//! [`run_with`].

pub mod bindings;
mod ctx;
mod error;
#[doc(hidden)]
pub mod export;
mod host;
pub mod http;
mod manifest;
pub mod sql;
pub mod testing;

pub use ctx::{Ctx, Invocation, Kv, Log, Mode};
pub use error::{Error, ErrorKind};
pub use export::{compensate_with, run_with};
pub use host::{HostApi, Level, WitHost};
pub use manifest::{GrantKind, ManifestInfo, Need};
pub use schemars::{self, JsonSchema};
pub use serde;
pub use serde_json;

/// A workflow step. Implement it on a unit struct and pass the struct to [`export_step!`].
pub trait Step {
    /// The `with:` inputs; its JSON Schema is published by `describe`.
    type Input: serde::de::DeserializeOwned + JsonSchema;
    /// The outputs other steps read as `steps.<id>.outputs`.
    type Output: serde::Serialize + JsonSchema;

    /// Name, version, needs, plan/compensate support.
    fn manifest() -> ManifestInfo;

    /// Does the work. Return [`Error::retryable`] for transient failures so the engine's retry
    /// policy applies.
    fn run(ctx: &Ctx, input: Self::Input) -> Result<Self::Output, Error>;

    /// Undoes `run` when a later step fails and the workflow asks for compensation. The default
    /// does nothing; set [`ManifestInfo::supports_compensate`] when you override it.
    fn compensate(ctx: &Ctx, input: Self::Input) -> Result<(), Error> {
        let _ = (ctx, input);
        Ok(())
    }
}

/// Exports a [`Step`] implementation as the component's `describe`, `run` and `compensate`.
/// Use once per step crate, at the crate root.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod __meridian_step_export {
            #[allow(unused_imports)]
            use super::*;
            struct Export;
            impl $crate::bindings::Guest for Export {
                fn describe() -> $crate::bindings::meridian::step::types::Manifest {
                    $crate::export::describe::<$step>()
                }
                fn run(
                    inv: $crate::bindings::meridian::step::types::Invocation,
                ) -> ::core::result::Result<::std::string::String, $crate::bindings::meridian::step::types::StepError> {
                    $crate::export::run::<$step>(inv)
                }
                fn compensate(
                    inv: $crate::bindings::meridian::step::types::Invocation,
                ) -> ::core::result::Result<(), $crate::bindings::meridian::step::types::StepError> {
                    $crate::export::compensate::<$step>(inv)
                }
            }
            $crate::bindings::__export_meridian_step!(Export with_types_in $crate::bindings);
        }
    };
}
