//! # meridian-oci: step components shipped through OCI registries
//!
//! - [`OciRef`]: `oci://HOST/NS/NAME[:TAG][@sha256:…]`, the digest being the manifest's.
//! - [`push`] / [`fetch`]: the published Wasm OCI artifact layout — one `application/wasm`
//!   layer, config media type `application/vnd.wasm.config.v0+json` — through `oci-client`,
//!   credentials from the docker config file or the environment ([`auth`]).
//! - [`Cache`]: manifests, components and signatures by digest under the cache directory;
//!   every read is checked against its digest, so a pinned step runs offline once pulled and a
//!   file changed in the cache is never run.
//! - [`sign`]: ed25519 signatures over the manifest digest, published next to the artifact as
//!   the tag `sha256-<hex>.sig` (cosign's place for them, Meridian's own documented payload).
//! - [`policy`]: the trust policy — which keys must have signed steps of which registries and
//!   namespaces.

mod cache;
mod error;
mod reference;
mod registry;

pub mod auth;
pub mod policy;
pub mod sign;
#[doc(hidden)]
pub mod testkit;

pub use cache::Cache;
pub use error::OciError;
pub use reference::OciRef;
pub use registry::{Fetched, Pushed, fetch, fetch_blocking, push, resolve_tag, sign_and_publish};

/// Media type of the component layer (Wasm OCI artifact layout).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Config media type of a Wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Manifest media type pushed (OCI image manifest).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
