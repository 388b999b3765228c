//! Errors: [`SandboxError`] for set-up and loading, [`StepFailure`] for a failed invocation.

use std::path::PathBuf;
use std::time::Duration;

/// Setting up the sandbox or loading a component failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The wasmtime engine could not be created with this configuration.
    #[error("creating the wasmtime engine: {0}")]
    Engine(String),
    /// The configuration is inconsistent.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// `expected_sha256` is not 64 hex characters.
    #[error(
        "invalid sha256 digest `{0}`: expected 64 hex characters, optionally prefixed by `sha256:`"
    )]
    BadDigest(String),
    /// The component's content does not match its pin.
    #[error(
        "component digest mismatch: expected sha256:{expected}, got sha256:{actual}; the component changed \
         since it was pinned: re-pin `uses:` after checking the new version"
    )]
    DigestMismatch {
        /// The pinned digest.
        expected: String,
        /// The digest of the bytes given.
        actual: String,
    },
    /// The component file could not be read.
    #[error("reading component {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a valid component, or Cranelift failed.
    #[error("compiling component sha256:{digest}: {message}")]
    Compile {
        /// Digest of the component.
        digest: String,
        /// wasmtime's error chain.
        message: String,
    },
    /// The component imports something the host does not provide, or lacks the step exports.
    #[error(
        "linking component sha256:{digest}: {message}; a step may import only meridian:step@0.2.0 \
         interfaces and WASI 0.2, and must export describe, run and compensate"
    )]
    Link {
        /// Digest of the component.
        digest: String,
        /// wasmtime's error chain.
        message: String,
    },
    /// The compile cache directory could not be used.
    #[error("compile cache {path}: {source}")]
    Cache {
        /// Directory or file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Why an invocation produced no output. Messages have secrets masked and say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    /// The step reported a transient failure; the retry policy applies.
    #[error("step failed (retryable): {0}")]
    Retryable(String),
    /// The step reported a permanent failure.
    #[error("step failed: {0}")]
    Fatal(String),
    /// The step rejected its `with:` input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The call ran past its timeout (epoch deadline for guest code, wall clock for host calls).
    #[error(
        "step timed out after {0:?}; raise the step's `timeout:` if it legitimately needs longer"
    )]
    Timeout(Duration),
    /// The guest tried to grow its memory past the cap.
    #[error(
        "step exceeded its memory limit of {}; raise the step's `limits.memory` or make it hold less data",
        human_bytes(*limit)
    )]
    OutOfMemory {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The guest trapped: a panic, a stack overflow, an out-of-bounds access, …
    #[error("step trapped: {0}")]
    Trap(String),
    /// The output JSON is larger than the call's `output_limit`.
    #[error(
        "step output is {size} bytes, over the {limit}-byte limit (the step's `limits.output`, at most 16 MiB); return less (put bulk data in files or kv)"
    )]
    OutputTooLarge {
        /// Output size, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The output (or a manifest schema) is not valid JSON.
    #[error("step returned invalid JSON: {0}")]
    InvalidOutput(String),
    /// A grant in the call is malformed (e.g. an unparsable HTTP allow pattern, a missing preopen dir).
    #[error("invalid grant: {0}")]
    Grant(String),
    /// The component could not be instantiated.
    #[error("instantiating the step: {0}")]
    Instantiate(String),
}

impl StepFailure {
    /// Whether the engine's retry policy may retry this failure: the step said so, or it timed
    /// out (a slow dependency). Traps, memory exhaustion and bad input are deterministic.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepFailure::Retryable(_) | StepFailure::Timeout(_))
    }
}

/// `33554432` as `32 MiB`; a size that is not a whole KiB or MiB in bytes.
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}
