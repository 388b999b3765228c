//! What can go wrong between a `uses: oci://…` and the component bytes.

use std::path::PathBuf;

/// An OCI failure, worded for the person who wrote the workflow or runs the registry.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(
        "invalid OCI reference `{0}`: expected oci://HOST/NAMESPACE/NAME:TAG[@sha256:<64 hex digits>]"
    )]
    Reference(String),
    /// What the reference parser said (`invalid OCI reference …: the repository has upper-case
    /// letters …`).
    #[error("{0}")]
    Unparsed(String),
    #[error(
        "{reference} names a tag without a digest; pin it as {reference}@sha256:<manifest digest> (`meridian step pull {reference}` prints it) or pass --allow-unpinned"
    )]
    Unpinned { reference: String },
    #[error(
        "registry {registry}: {action} {reference} failed: {}",
        explain(source)
    )]
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

/// A registry error in words a person can act on: the HTTP client's own message ("error
/// sending request for url (…)", "error decoding response body") names neither the cause
/// (connection refused, a stall) nor what to do; its chain of causes does.
fn explain(e: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    let E::RequestError(r) = e else {
        return e.to_string();
    };
    let mut causes = Vec::new();
    let mut next = std::error::Error::source(r);
    while let Some(c) = next {
        let text = c.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        next = c.source();
    }
    let why = if causes.is_empty() {
        r.to_string()
    } else {
        causes.join(": ")
    };
    if r.is_timeout() {
        format!("the registry stopped answering (timed out: {why})")
    } else if r.is_connect() {
        format!("cannot connect ({why}); is the registry up, and is its address right?")
    } else if r.is_body() || r.is_decode() {
        format!("the connection broke while the registry was sending ({why})")
    } else {
        format!("{r} ({why})")
    }
}
