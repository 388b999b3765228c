//! Step signatures: ed25519 over a small JSON payload naming the repository and the manifest
//! digest. Key files are PEM — PKCS#8 private keys and SPKI public keys, the same files
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write.
//!
//! The signature document (published as the one layer of the artifact tagged
//! `sha256-<manifest hex>.sig` in the step's repository, media type
//! [`SIGNATURE_MEDIA_TYPE`]) is
//! `{"payload": "<base64 payload>", "signatures": [{"keyid": "…", "sig": "<base64>"}]}` and the
//! payload, the bytes signed, is
//! `{"critical":{"identity":{"docker-reference":"HOST/NS/NAME"},"image":{"docker-manifest-digest":"sha256:…"},"type":"meridian step signature v1"}}`
//! (the shape of a cosign "simple signing" payload). Signing again with another key adds an
//! entry. A signature holds for the repository and the digest it names and nothing else.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::OciError;

/// Media type of the signature document layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.meridian.step.signature.v1+json";
/// Config media type of the signature artifact.
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str =
    "application/vnd.meridian.step.signature.config.v1+json";
const PAYLOAD_TYPE: &str = "meridian step signature v1";

/// The tag a manifest digest's signatures are published under.
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

#[derive(Serialize, Deserialize)]
struct Document {
    payload: String,
    signatures: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    keyid: String,
    sig: String,
}

/// A key's id: `ed25519:` and the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::Digest as _;
    format!(
        "ed25519:{}",
        &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..16]
    )
}

fn payload(scope: &str, manifest_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": scope},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": PAYLOAD_TYPE,
        }
    }))
    .expect("a JSON value serializes")
}

/// Reads a PKCS#8 PEM ed25519 private key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, OciError> {
    let pem = read_key(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        OciError::Key(format!(
            "{}: not an ed25519 private key in PKCS#8 PEM ({e}); make one with `meridian step keygen`",
            path.display()
        ))
    })
}

/// Reads an SPKI PEM ed25519 public key.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, OciError> {
    let pem = read_key(path)?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        OciError::Key(format!(
            "{}: not an ed25519 public key in PEM ({e}); `meridian step keygen` writes one next to the private key",
            path.display()
        ))
    })
}

fn read_key(path: &Path) -> Result<String, OciError> {
    std::fs::read_to_string(path).map_err(|e| OciError::Key(format!("{}: {e}", path.display())))
}

/// Writes a new key pair: `path` (private, mode 0600) and `path.pub`. Refuses to overwrite.
pub fn generate(path: &Path) -> Result<(PathBuf, VerifyingKey), OciError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| OciError::Key(e.to_string()))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| OciError::Key(e.to_string()))?;
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    let create = |p: &Path, mode: u32, text: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| OciError::Key(format!("{}: {e}", p.display())))
    };
    create(path, 0o600, &pem)?;
    create(&pub_path, 0o644, &public)?;
    Ok((pub_path, key.verifying_key()))
}

/// `existing` (a signature document, if the digest was signed before) with a signature by
/// `key` added (or replaced) for `scope` and `manifest_digest`.
pub fn add_signature(
    existing: Option<&[u8]>,
    key: &SigningKey,
    scope: &str,
    manifest_digest: &str,
) -> Result<Vec<u8>, OciError> {
    let payload = payload(scope, manifest_digest);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut doc = existing
        .and_then(|d| serde_json::from_slice::<Document>(d).ok())
        .filter(|d| b64.decode(&d.payload).is_ok_and(|p| p == payload))
        .unwrap_or(Document {
            payload: b64.encode(&payload),
            signatures: Vec::new(),
        });
    let id = key_id(&key.verifying_key());
    doc.signatures.retain(|e| e.keyid != id);
    doc.signatures.push(Entry {
        keyid: id,
        sig: b64.encode(key.sign(&payload).to_bytes()),
    });
    Ok(serde_json::to_vec_pretty(&doc).expect("serializes"))
}

/// Which of `keys` (name, key) signed `scope`@`manifest_digest` in `doc`; `Err` says why none.
pub fn verify(
    doc: &[u8],
    keys: &[(String, VerifyingKey)],
    scope: &str,
    manifest_digest: &str,
) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc: Document = serde_json::from_slice(doc)
        .map_err(|e| format!("the signature document is not readable ({e})"))?;
    let signed = b64
        .decode(&doc.payload)
        .map_err(|_| "the signature payload is not base64".to_owned())?;
    let mut tried = Vec::new();
    for entry in &doc.signatures {
        let Some((name, key)) = keys.iter().find(|(_, k)| key_id(k) == entry.keyid) else {
            tried.push(entry.keyid.clone());
            continue;
        };
        let sig = b64
            .decode(&entry.sig)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or_else(|| format!("the signature by {name} is malformed"))?;
        key.verify_strict(&signed, &sig).map_err(|_| {
            format!("the signature by {name} does not verify (tampered payload or signature)")
        })?;
        // The key signed these bytes: they must name this repository and digest.
        if signed != payload(scope, manifest_digest) {
            return Err(format!(
                "the signature by {name} is for another artifact, not {scope}@{manifest_digest}"
            ));
        }
        return Ok(name.clone());
    }
    Err(if tried.is_empty() {
        "the signature document holds no signatures".to_owned()
    } else {
        format!(
            "signed only by keys the policy does not trust ({})",
            tried.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.key");
        let (pub_path, vk) = generate(&path).unwrap();
        assert!(generate(&path).is_err(), "never overwrites a key");
        let sk = load_signing_key(&path).unwrap();
        assert_eq!(load_verifying_key(&pub_path).unwrap(), vk);
        let other = SigningKey::from_bytes(&[7; 32]);
        let digest = format!("sha256:{}", "ab".repeat(32));
        let scope = "127.0.0.1:5000/acme/notify";
        let doc = add_signature(None, &sk, scope, &digest).unwrap();
        let keys = vec![("acme.pub".to_owned(), vk)];
        assert_eq!(verify(&doc, &keys, scope, &digest), Ok("acme.pub".into()));
        // Another digest, another repository: refused.
        let other_digest = format!("sha256:{}", "cd".repeat(32));
        assert!(
            verify(&doc, &keys, scope, &other_digest)
                .unwrap_err()
                .contains("another artifact")
        );
        assert!(verify(&doc, &keys, "127.0.0.1:5000/evil/notify", &digest).is_err());
        // Signed by an untrusted key only.
        let doc2 = add_signature(None, &other, scope, &digest).unwrap();
        assert!(
            verify(&doc2, &keys, scope, &digest)
                .unwrap_err()
                .contains("does not trust")
        );
        // Both keys: the trusted one is found; signing twice with one key keeps one entry.
        let both = add_signature(Some(&doc2), &sk, scope, &digest).unwrap();
        let both = add_signature(Some(&both), &sk, scope, &digest).unwrap();
        let parsed: Document = serde_json::from_slice(&both).unwrap();
        assert_eq!(parsed.signatures.len(), 2);
        assert!(verify(&both, &keys, scope, &digest).is_ok());
        // A flipped byte in the signature.
        let mut d: Document = serde_json::from_slice(&doc).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(&d.signatures[0].sig).unwrap();
        raw[0] ^= 1;
        d.signatures[0].sig = b64.encode(raw);
        let tampered = serde_json::to_vec(&d).unwrap();
        assert!(
            verify(&tampered, &keys, scope, &digest)
                .unwrap_err()
                .contains("does not verify")
        );
    }

    #[test]
    fn openssl_style_keys_are_read() {
        // `openssl genpkey -algorithm ed25519` / `openssl pkey -pubout` output (RFC 8410 example key).
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, private).unwrap();
        let sk = load_signing_key(&p).unwrap();
        let public = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(
            load_signing_key(&p)
                .unwrap_err()
                .to_string()
                .contains("PKCS#8")
        );
    }
}
