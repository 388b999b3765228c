//! The Meridian workflow model: parse and validate workflow files, evaluate `${{ }}` expressions,
//! order steps as a DAG. It knows nothing of WebAssembly.

pub mod expr;
pub mod span;
pub mod workflow;

pub use span::{Span, Spanned};
pub use workflow::*;
