//! What can go wrong between a `uses: oci://…` and the component bytes.

use std::path::PathBuf;

/// An OCI failure, worded for the person who wrote the workflow or runs the registry.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(
        "invalid OCI reference `{0}`: expected oci://HOST/NAMESPACE/NAME:TAG[@sha256:<64 hex digits>]"
    )]
    Reference(String),
    #[error(
        "{reference} names a tag without a digest; pin it as {reference}@sha256:<manifest digest> (`meridian step pull {reference}` prints it) or pass --allow-unpinned"
    )]
    Unpinned { reference: String },
    #[error("registry {registry}: {action} {reference} failed: {source}")]
    Registry {
        registry: String,
        action: &'static str,
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error(
        "digest mismatch for {what} of {reference}: expected {expected}, got {actual} (the registry or something between it and here served other bytes than the pinned ones)"
    )]
    DigestMismatch {
        what: &'static str,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{reference} is not a Wasm step artifact: {why}")]
    NotAStep { reference: String, why: String },
    #[error(
        "{0} is not a WebAssembly component (it must start with \\0asm and component version 0x0d)"
    )]
    NotAComponent(String),
    #[error("cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Policy(String),
    #[error("step {reference}@{digest} refused by the trust policy ({rule}): {why}")]
    Untrusted {
        reference: String,
        digest: String,
        rule: String,
        why: String,
    },
    #[error("the OCI client needs a Tokio runtime")]
    NoRuntime,
}
