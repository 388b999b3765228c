//! Push and fetch through `oci-client`. Fetching is cache first: a pinned step whose manifest,
//! component and (when the policy asks) signature are cached needs no network.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::{Client, Reference};

use crate::policy::{Requirement, TrustPolicy};
use crate::{
    Cache, MANIFEST_MEDIA_TYPE, OciError, OciRef, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
    auth, sha256_digest, sign,
};

/// Components larger than this are refused before they are downloaded.
const MAX_COMPONENT_BYTES: i64 = 512 << 20;
/// Layer media types read as a component: the published layout's, and the one older tools
/// (`wasm-to-oci`, oci-client's constant) write.
const ACCEPTED_LAYER_TYPES: &[&str] = &[
    WASM_LAYER_MEDIA_TYPE,
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// What a push published.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pinned to the manifest digest: what to write in `uses:`.
    pub reference: OciRef,
    pub manifest_digest: String,
    pub component_digest: String,
    pub size: usize,
}

/// A verified step component.
#[derive(Clone)]
pub struct Fetched {
    /// Pinned to the manifest digest.
    pub reference: OciRef,
    pub manifest_digest: String,
    pub component_digest: String,
    pub component: Vec<u8>,
    /// The trusted key that signed it, when the policy asked for a signature.
    pub signed_by: Option<String>,
    /// The policy rule that applied, if any.
    pub rule: Option<String>,
    /// Nothing had to be downloaded.
    pub from_cache: bool,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("reference", &self.reference.to_string())
            .field("component_bytes", &self.component.len())
            .field("signed_by", &self.signed_by)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

fn client_for(registry: &str) -> Client {
    let protocol = if auth::is_insecure(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    })
}

fn registry_err<'a>(
    r: &'a OciRef,
    action: &'static str,
) -> impl FnOnce(OciDistributionError) -> OciError + 'a {
    move |source| match source {
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => OciError::DigestMismatch {
            // "the component", not "pulling the component of" (it read "for pulling … of of").
            what: action
                .trim_start_matches("pulling ")
                .trim_end_matches(" of"),
            reference: r.to_string(),
            expected,
            actual,
        },
        source => OciError::Registry {
            registry: r.registry.clone(),
            action,
            reference: r.to_string(),
            source,
        },
    }
}

/// A component-model binary: `\0asm`, version 0x0d, layer 1.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0, 0x01, 0]
}

/// Pushes `component` to `target` (its tag; a digest in `target` is ignored) as a Wasm OCI
/// artifact: one `application/wasm` layer, a `application/vnd.wasm.config.v0+json` config.
pub async fn push(component: &[u8], target: &OciRef) -> Result<Pushed, OciError> {
    if !is_component(component) {
        return Err(OciError::NotAComponent(format!(
            "the file pushed to {target}"
        )));
    }
    // What `fetch` refuses is not pushed (it was, and every pull of it then failed).
    if i64::try_from(component.len()).unwrap_or(i64::MAX) > MAX_COMPONENT_BYTES {
        return Err(OciError::NotAStep {
            reference: target.to_string(),
            why: format!(
                "the component is {} bytes (at most {MAX_COMPONENT_BYTES})",
                component.len()
            ),
        });
    }
    let client = client_for(&target.registry);
    let creds = auth::credentials(&target.registry);
    let tag_ref = OciRef {
        digest: None,
        ..target.clone()
    };
    let reference = tag_ref.to_client();
    client
        .store_auth_if_needed(reference.resolve_registry(), &creds)
        .await;
    let component_digest = sha256_digest(component);
    let config = serde_json::to_vec(&serde_json::json!({
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [component_digest],
    }))
    .expect("serializes");
    let config_digest = sha256_digest(&config);
    client
        .push_blob(&reference, component, &component_digest)
        .await
        .map_err(registry_err(target, "pushing the component to"))?;
    client
        .push_blob(&reference, &config, &config_digest)
        .await
        .map_err(registry_err(target, "pushing the config to"))?;
    let manifest = OciImageManifest {
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.into(),
            digest: component_digest.clone(),
            size: component.len() as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = serde_json::to_vec(&OciManifest::Image(manifest)).expect("serializes");
    let manifest_digest = sha256_digest(&body);
    client
        .push_manifest_raw(
            &reference,
            body,
            MANIFEST_MEDIA_TYPE.parse().expect("a valid header value"),
        )
        .await
        .map_err(registry_err(target, "pushing the manifest to"))?;
    Ok(Pushed {
        reference: tag_ref.pinned(&manifest_digest),
        manifest_digest,
        component_digest,
        size: component.len(),
    })
}

/// The manifest digest `r`'s tag points at now (asks the registry).
pub async fn resolve_tag(r: &OciRef) -> Result<String, OciError> {
    let client = client_for(&r.registry);
    let unpinned = OciRef {
        digest: None,
        ..r.clone()
    };
    let (body, _) = client
        .pull_manifest_raw(
            &unpinned.to_client(),
            &auth::credentials(&r.registry),
            &[MANIFEST_MEDIA_TYPE],
        )
        .await
        .map_err(registry_err(r, "resolving the tag of"))?;
    Ok(sha256_digest(&body))
}

/// The verified component `r` names. Pinned: from the cache when there, else pulled and
/// cached. Unpinned: refused unless `allow_unpinned` (then the tag is resolved now). The
/// `policy`'s signature requirement is checked before the bytes are returned.
pub async fn fetch(
    r: &OciRef,
    cache: &Cache,
    policy: Option<&TrustPolicy>,
    allow_unpinned: bool,
) -> Result<Fetched, OciError> {
    let r = match &r.digest {
        Some(_) => r.clone(),
        None if allow_unpinned => r.pinned(&resolve_tag(r).await?),
        None => {
            return Err(OciError::Unpinned {
                reference: r.to_string(),
            });
        }
    };
    let manifest_digest = r.digest.clone().expect("pinned above");
    let client = client_for(&r.registry);
    let creds = auth::credentials(&r.registry);
    let reference = r.to_client();
    let mut from_cache = true;
    // A registry the policy refuses is not asked for anything (its step used to be downloaded
    // whole first, then refused).
    if let Some(Requirement::Refused { rule }) = policy.map(|p| p.requirement(&r.scope())) {
        return Err(OciError::Untrusted {
            reference: r.scope(),
            digest: manifest_digest,
            rule,
            why: "no rule of the policy covers this registry or namespace".into(),
        });
    }

    let manifest_bytes = match cache.get(&manifest_digest)? {
        Some(b) => b,
        None => {
            from_cache = false;
            let (body, _) = client
                .pull_manifest_raw(&reference, &creds, &[MANIFEST_MEDIA_TYPE])
                .await
                .map_err(registry_err(&r, "pulling the manifest of"))?;
            check_digest("the manifest", &r, &manifest_digest, &body)?;
            cache.put(&manifest_digest, &body)?;
            body
        }
    };
    let layer = wasm_layer(&r, &manifest_bytes)?;
    // The signature, before the component is downloaded: it signs the manifest, which names
    // the component's digest.
    let (signed_by, rule) = match policy.map(|p| p.requirement(&r.scope())) {
        None => (None, None),
        Some(Requirement::Nothing { rule }) => (None, rule),
        Some(Requirement::Refused { rule }) => {
            return Err(OciError::Untrusted {
                reference: r.scope(),
                digest: manifest_digest,
                rule,
                why: "no rule of the policy covers this registry or namespace".into(),
            });
        }
        Some(Requirement::Signed { rule, keys }) => {
            let by = check_signature(&client, &creds, &r, cache, keys, &mut from_cache)
                .await
                .map_err(|why| OciError::Untrusted {
                    reference: r.scope(),
                    digest: manifest_digest.clone(),
                    rule: rule.clone(),
                    why,
                })?;
            (Some(by), Some(rule))
        }
    };
    let component = match cache.get(&layer.digest)? {
        Some(b) => b,
        None => {
            from_cache = false;
            // Read no more than the manifest declares (at most MAX_COMPONENT_BYTES): a
            // registry, or anything between, that sends more was held whole in memory (2 GB
            // for a layer declared 1 KB), its digest checked only afterwards.
            let declared = usize::try_from(layer.size).unwrap_or(0);
            let mut out = Capped {
                buf: Vec::with_capacity(declared),
                cap: declared,
            };
            client
                .pull_blob(&reference, &layer, &mut out)
                .await
                .map_err(registry_err(&r, "pulling the component of"))?;
            check_digest("the component", &r, &layer.digest, &out.buf)?;
            cache.put(&layer.digest, &out.buf)?;
            out.buf
        }
    };
    if !is_component(&component) {
        return Err(OciError::NotAComponent(r.to_string()));
    }
    // Best effort: the list of pulled steps is a convenience, the blobs are what matter.
    let _ = cache.record_ref(&r.to_string());
    Ok(Fetched {
        component_digest: layer.digest,
        reference: r,
        manifest_digest,
        component,
        signed_by,
        rule,
        from_cache,
    })
}

/// [`fetch`] from synchronous code running on a Tokio blocking thread (the sandbox's loader).
pub fn fetch_blocking(
    r: &OciRef,
    cache: &Cache,
    policy: Option<&TrustPolicy>,
    allow_unpinned: bool,
) -> Result<Fetched, OciError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| OciError::NoRuntime)?;
    handle.block_on(fetch(r, cache, policy, allow_unpinned))
}

fn check_digest(
    what: &'static str,
    r: &OciRef,
    expected: &str,
    bytes: &[u8],
) -> Result<(), OciError> {
    let actual = sha256_digest(bytes);
    if actual != expected {
        return Err(OciError::DigestMismatch {
            what,
            reference: r.to_string(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// The one Wasm layer of a step artifact's manifest.
fn wasm_layer(r: &OciRef, manifest: &[u8]) -> Result<OciDescriptor, OciError> {
    let not = |why: String| OciError::NotAStep {
        reference: r.to_string(),
        why,
    };
    let m: OciImageManifest = serde_json::from_slice(manifest)
        .map_err(|e| not(format!("its manifest is not an OCI image manifest ({e})")))?;
    if m.config.media_type != WASM_CONFIG_MEDIA_TYPE
        && m.config.media_type != oci_client::manifest::WASM_CONFIG_MEDIA_TYPE
    {
        return Err(not(format!(
            "config media type is {}, not {WASM_CONFIG_MEDIA_TYPE}",
            m.config.media_type
        )));
    }
    let [layer] = m.layers.as_slice() else {
        return Err(not(format!("{} layers, not one", m.layers.len())));
    };
    if !ACCEPTED_LAYER_TYPES.contains(&layer.media_type.as_str()) {
        return Err(not(format!(
            "layer media type is {}, not {WASM_LAYER_MEDIA_TYPE}",
            layer.media_type
        )));
    }
    if layer.size > MAX_COMPONENT_BYTES {
        return Err(not(format!(
            "the component is {} bytes (at most {MAX_COMPONENT_BYTES})",
            layer.size
        )));
    }
    Ok(layer.clone())
}

/// Checks the cached signature document, else the registry's; `Ok(key name)`.
async fn check_signature(
    client: &Client,
    creds: &oci_client::secrets::RegistryAuth,
    r: &OciRef,
    cache: &Cache,
    keys: &[(String, ed25519_dalek::VerifyingKey)],
    from_cache: &mut bool,
) -> Result<String, String> {
    let digest = r.digest.as_deref().expect("pinned");
    if let Some(doc) = cache.signature(digest)
        && let Ok(by) = sign::verify(&doc, keys, &r.scope(), digest)
    {
        return Ok(by);
    }
    *from_cache = false;
    let tag = sign::signature_tag(digest);
    let doc = match pull_signature(client, creds, &r.tag_in_repo(&tag)).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Err(format!("it is not signed (no {tag} in {})", r.scope())),
        Err(e) => return Err(format!("its signature {tag} could not be read: {e}")),
    };
    let by = sign::verify(&doc, keys, &r.scope(), digest)?;
    // Verified: keep it for offline runs (it is verified again on every use).
    cache
        .put_signature(digest, &doc)
        .map_err(|e| e.to_string())?;
    Ok(by)
}

/// The signature document tagged `sig_ref`, `None` when there is none.
async fn pull_signature(
    client: &Client,
    creds: &oci_client::secrets::RegistryAuth,
    sig_ref: &Reference,
) -> Result<Option<Vec<u8>>, OciDistributionError> {
    let (body, _) = match client
        .pull_manifest_raw(sig_ref, creds, &[MANIFEST_MEDIA_TYPE])
        .await
    {
        Ok(m) => m,
        Err(OciDistributionError::ImageManifestNotFoundError(_)) => return Ok(None),
        Err(OciDistributionError::RegistryError { envelope, .. })
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                )
            }) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let m: OciImageManifest = serde_json::from_slice(&body)
        .map_err(|e| OciDistributionError::ManifestParsingError(e.to_string()))?;
    let Some(layer) = m
        .layers
        .iter()
        .find(|l| l.media_type == sign::SIGNATURE_MEDIA_TYPE)
    else {
        return Ok(None);
    };
    let mut out = Vec::new();
    client.pull_blob(sig_ref, layer, &mut out).await?;
    Ok(Some(out))
}

/// Publishes `doc` as the signature artifact of `r` (pinned), tag `sha256-<hex>.sig`.
pub(crate) async fn publish_signature(r: &OciRef, doc: &[u8]) -> Result<(), OciError> {
    let client = client_for(&r.registry);
    let creds = auth::credentials(&r.registry);
    let tag = sign::signature_tag(r.digest.as_deref().expect("pinned"));
    let sig_ref = r.tag_in_repo(&tag);
    client
        .store_auth_if_needed(sig_ref.resolve_registry(), &creds)
        .await;
    let config = b"{}".to_vec();
    let config_digest = sha256_digest(&config);
    let doc_digest = sha256_digest(doc);
    client
        .push_blob(&sig_ref, doc, &doc_digest)
        .await
        .map_err(registry_err(r, "pushing the signature of"))?;
    client
        .push_blob(&sig_ref, &config, &config_digest)
        .await
        .map_err(registry_err(r, "pushing the signature of"))?;
    let manifest = OciImageManifest {
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: sign::SIGNATURE_CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: sign::SIGNATURE_MEDIA_TYPE.into(),
            digest: doc_digest,
            size: doc.len() as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = serde_json::to_vec(&OciManifest::Image(manifest)).expect("serializes");
    client
        .push_manifest_raw(
            &sig_ref,
            body,
            MANIFEST_MEDIA_TYPE.parse().expect("a valid header value"),
        )
        .await
        .map_err(registry_err(r, "pushing the signature manifest of"))?;
    Ok(())
}

/// Signs `r` (pinned) with `key` and publishes the signature next to it, keeping signatures
/// by other keys. Returns the key's id.
pub async fn sign_and_publish(
    r: &OciRef,
    key: &ed25519_dalek::SigningKey,
) -> Result<String, OciError> {
    let digest = r.digest.as_deref().ok_or_else(|| OciError::Unpinned {
        reference: r.to_string(),
    })?;
    let client = client_for(&r.registry);
    let creds = auth::credentials(&r.registry);
    // The artifact must exist: a signature for a digest nobody pushed helps no one.
    client
        .pull_manifest_raw(&r.to_client(), &creds, &[MANIFEST_MEDIA_TYPE])
        .await
        .map_err(registry_err(r, "reading the manifest of"))?;
    let existing = pull_signature(
        &client,
        &creds,
        &r.tag_in_repo(&sign::signature_tag(digest)),
    )
    .await
    .map_err(registry_err(r, "reading the signatures of"))?;
    let doc = sign::add_signature(existing.as_deref(), key, &r.scope(), digest)?;
    publish_signature(r, &doc).await?;
    Ok(sign::key_id(&key.verifying_key()))
}

/// A blob as it arrives, refused past `cap` bytes (what the manifest declared).
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.cap {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {} bytes the manifest declares",
                self.cap
            ))));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
