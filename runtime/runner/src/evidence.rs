//! Signed drill evidence: what an auditor needs to trust a drill's result without trusting the
//! machine it ran on.
//!
//! An evidence file is JSON: `{"format", "record", "signature"}`. The record holds the workflow
//! file's sha256, every component's digest, the inputs (masked, as journaled), the approvals
//! with who gave them, every event of the run with a SHA-256 hash chain over them, and the drill's
//! figures and verdicts. The signature is Ed25519 over the record's compact JSON, made with the
//! runner's key (`<state dir>/evidence.key`, PKCS#8, created on first use, readable by its owner
//! only). Verification needs only the public key: it recomputes the chain from the events and
//! checks the signature; a changed byte anywhere in the record fails with what did not match.
//!
//! Hashed and signed is the record's *canonical* JSON ([`canonical`]): object keys sorted, and a
//! number with no fractional part written as an integer (`1797.0` as `1797`). The tools an
//! auditor pipes a file through rewrite exactly these (jq 1.6 prints `1797.0` as `1797`, `jq -S`
//! sorts keys), and a reformatted file used to fail as "an event was changed". Files exported
//! before this form are still verified by their bytes as written.

use std::path::{Path, PathBuf};

use meridian_store::Journal;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::DrillVerdict;

/// The `format` of an evidence file.
pub const FORMAT: &str = "meridian-evidence/1";
/// The key file in the state directory.
pub const KEY_FILE: &str = "evidence.key";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0}")]
    Store(#[from] meridian_store::StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
}

/// The runner's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pub path: PathBuf,
}

impl SigningKey {
    /// Loads `<state_dir>/evidence.key`, creating it (mode 0600) when missing.
    pub fn load_or_create(state_dir: &Path) -> Result<SigningKey, EvidenceError> {
        let path = state_dir.join(KEY_FILE);
        let io = |what: String| move |source| EvidenceError::Io { what, source };
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| EvidenceError::Key("generating an Ed25519 key failed".into()))?;
                std::fs::create_dir_all(state_dir)
                    .map_err(io(format!("creating {}", state_dir.display())))?;
                write_private(&path, doc.as_ref())
                    .map_err(io(format!("writing {}", path.display())))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| {
            EvidenceError::Key(format!(
                "{} is not an Ed25519 PKCS#8 key ({e}); move it away to make a new key",
                path.display()
            ))
        })?;
        Ok(SigningKey { pair, path })
    }

    /// The public key, hex: what a verifier needs.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The chain over a run's events: `h0 = sha256("meridian-evidence-chain")`,
/// `h(i) = sha256(h(i-1) || canonical compact JSON of event i)`; the last hash, hex.
pub fn chain(events: &[Json]) -> String {
    chain_of(events, |e| serde_json::to_vec(&canonical(e)))
}

/// The chain as files exported before the canonical form hashed it (each event as written).
fn legacy_chain(events: &[Json]) -> String {
    chain_of(events, serde_json::to_vec)
}

fn chain_of(events: &[Json], bytes: impl Fn(&Json) -> serde_json::Result<Vec<u8>>) -> String {
    let mut h: [u8; 32] = Sha256::digest(b"meridian-evidence-chain").into();
    for e in events {
        let mut d = Sha256::new();
        d.update(h);
        d.update(bytes(e).unwrap_or_default());
        h = d.finalize().into();
    }
    hex::encode(h)
}

/// Integers above this are not exact as doubles: kept as they are.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// `v` in the form that is hashed and signed: object keys sorted (recursively), and a float
/// with no fractional part (within ±2^53) as an integer.
pub fn canonical(v: &Json) -> Json {
    match v {
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < EXACT => Json::from(f as i64),
            _ => v.clone(),
        },
        Json::Array(a) => Json::Array(a.iter().map(canonical).collect()),
        Json::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&o[k])))
                    .collect(),
            )
        }
        _ => v.clone(),
    }
}

/// Builds the signed evidence of run `id`.
pub fn export(journal: &dyn Journal, id: &str, key: &SigningKey) -> Result<Json, EvidenceError> {
    let (record, summary) = journal.run(id)?;
    let records = journal.events(id)?;
    let legs = journal.legs(id)?;
    let events: Vec<Json> = records
        .iter()
        .map(|e| json!({"seq": e.seq, "at_ms": e.at_ms, "event": e.event}))
        .collect();
    let approvals: Vec<Json> = journal
        .approvals(id)?
        .into_iter()
        .map(|(step, by)| json!({"step": step, "by": by}))
        .collect();
    // The workflow as it is now, only when it is still the file the run used.
    let loaded = crate::load(Path::new(&record.workflow_path))
        .ok()
        .filter(|l| l.sha256() == record.workflow_sha256);
    let components: Vec<Json> = match &loaded {
        Some(l) => l
            .workflow
            .steps
            .iter()
            .map(|s| {
                let digest = s.component.as_ref().and_then(component_digest);
                json!({"step": s.id.value, "uses": s.uses.value, "sha256": digest})
            })
            .collect(),
        None => Vec::new(),
    };
    let drill = loaded
        .as_ref()
        .and_then(|l| DrillVerdict::of_run(&l.workflow, &legs, &records));
    let body = json!({
        "run": record.id,
        "workflow": record.workflow,
        "workflow_path": record.workflow_path,
        "workflow_sha256": record.workflow_sha256,
        "workflow_file_unchanged": loaded.is_some(),
        "mode": record.mode,
        "status": summary.status,
        "created_at_ms": summary.created_at_ms,
        "finished_at_ms": summary.finished_at_ms,
        "inputs": record.inputs,
        "components": components,
        "approvals": approvals,
        "drill": drill,
        "events_chain": chain(&events),
        "events": events,
    });
    // The file carries the canonical form itself: it verifies as written and as reformatted.
    let body = canonical(&body);
    let bytes = serde_json::to_vec(&body).map_err(|e| EvidenceError::Invalid(e.to_string()))?;
    let sig = key.pair.sign(&bytes);
    Ok(json!({
        "format": FORMAT,
        "record": body,
        "signature": {
            "alg": "ed25519",
            "public_key": key.public_hex(),
            "value": hex::encode(sig.as_ref()),
        },
    }))
}

fn component_digest(c: &meridian_protocol::ComponentRef) -> Option<String> {
    use meridian_protocol::ComponentRef;
    let bytes: Vec<u8> = match c {
        ComponentRef::Builtin { name, .. } => meridian_artifacts::builtin(name)?.to_vec(),
        ComponentRef::Path { path, .. } => std::fs::read(path).ok()?,
        // An OCI step is pinned by its manifest digest (the manifest names the layer's).
        ComponentRef::Oci { sha256, .. } => return sha256.map(|d| d.to_string()),
    };
    Some(hex::encode(Sha256::digest(&bytes)))
}

/// What a verified file says.
#[derive(Debug)]
pub struct Verified {
    pub run: String,
    pub workflow: String,
    pub events: usize,
    pub public_key: String,
    pub drill_verdict: Option<String>,
}

/// Checks an evidence file against a trusted public key (hex): the format, the event chain and
/// the signature. Every failure says what did not match.
pub fn verify(text: &str, trusted_public_hex: &str) -> Result<Verified, EvidenceError> {
    let bad = |m: String| EvidenceError::Invalid(m);
    let doc: Json = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "not an evidence file: invalid JSON at line {} column {} ({e})",
            e.line(),
            e.column()
        ))
    })?;
    // A key written twice verified as the last value while a reader sees the first: a figure
    // edited to `"achieved": 99, "achieved": 160` passed as untouched.
    crate::json_keys::no_duplicate_keys(text).map_err(|e| {
        bad(format!(
            "{e}: a reader and the verifier would see different values; the file was edited after it was exported"
        ))
    })?;
    if doc["format"] != FORMAT {
        return Err(bad(format!(
            "not an evidence file of format {FORMAT} (format is {})",
            doc["format"]
        )));
    }
    let record = &doc["record"];
    let events = record["events"]
        .as_array()
        .ok_or_else(|| bad("the record has no events".into()))?;
    let head = chain(events);
    // A file exported before the canonical form: its chain and signature are over the bytes as
    // written (and it verifies only as written).
    let legacy = record["events_chain"] != head.as_str()
        && record["events_chain"] == legacy_chain(events).as_str();
    if record["events_chain"] != head.as_str() && !legacy {
        return Err(bad(format!(
            "the event chain does not match: the record says {}, its {} events hash to {head}; an event was changed, added or removed",
            record["events_chain"],
            events.len()
        )));
    }
    let trusted = hex::decode(trusted_public_hex.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            bad(format!(
                "`{trusted_public_hex}` is not an Ed25519 public key (64 hex digits)"
            ))
        })?;
    let sig = doc["signature"]["value"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| bad("the file has no signature".into()))?;
    let signed = if legacy {
        record.clone()
    } else {
        canonical(record)
    };
    let bytes = serde_json::to_vec(&signed).map_err(|e| bad(e.to_string()))?;
    UnparsedPublicKey::new(&ED25519, &trusted)
        .verify(&bytes, &sig)
        .map_err(|_| {
            let signer = doc["signature"]["public_key"].as_str().unwrap_or("?");
            if signer != hex::encode(&trusted) {
                bad(format!(
                    "the signature does not verify with the trusted key {}: the file says it was signed by {signer}",
                    hex::encode(&trusted)
                ))
            } else {
                bad("the signature does not match the record: the record was changed after it was signed".into())
            }
        })?;
    Ok(Verified {
        run: record["run"].as_str().unwrap_or_default().to_string(),
        workflow: record["workflow"].as_str().unwrap_or_default().to_string(),
        events: events.len(),
        public_key: hex::encode(&trusted),
        drill_verdict: record["drill"]["verdict"].as_str().map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &SigningKey) -> String {
        let events = [json!({"seq": 1, "event": {"event": "x", "rto_ms": 1797.0}})];
        let body = canonical(&json!({"run": "r1", "workflow": "w", "events": events,
            "events_chain": chain(&events), "drill": {"verdict": "met", "rto_ms": 1797.0, "rate": 0.5}}));
        let sig = key.pair.sign(&serde_json::to_vec(&body).unwrap());
        serde_json::to_string_pretty(&json!({"format": FORMAT, "record": body,
            "signature": {"alg": "ed25519", "public_key": key.public_hex(), "value": hex::encode(sig.as_ref())}}))
        .unwrap()
    }

    #[test]
    fn a_changed_byte_fails_and_an_untouched_file_passes_with_only_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.public_hex(), again.public_hex(), "the key is kept");
        let text = signed(&key);
        let ok = verify(&text, &key.public_hex()).unwrap();
        assert_eq!((ok.run.as_str(), ok.events), ("r1", 1));
        let tampered = text.replace("\"met\"", "\"mat\"");
        let e = verify(&tampered, &key.public_hex())
            .unwrap_err()
            .to_string();
        assert!(e.contains("changed after it was signed"), "{e}");
        let tampered = text.replace("\"x\"", "\"y\"");
        let e = verify(&tampered, &key.public_hex())
            .unwrap_err()
            .to_string();
        assert!(e.contains("event chain"), "{e}");
        // A figure written twice: the verifier kept the signed (last) value and passed the file
        // while a reader saw the first.
        let doubled = text.replacen(
            "\"verdict\": \"met\"",
            "\"verdict\": \"missed\", \"verdict\": \"met\"",
            1,
        );
        assert_ne!(doubled, text);
        let e = verify(&doubled, &key.public_hex()).unwrap_err().to_string();
        assert!(e.contains("`verdict` appears twice"), "{e}");
        let other = SigningKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let e = verify(&text, &other.public_hex()).unwrap_err().to_string();
        assert!(e.contains("trusted key"), "{e}");
    }

    /// What jq does to a file (floats with no fraction as integers, keys sorted with `-S`,
    /// other whitespace) leaves it verifying; it failed as "an event was changed".
    #[test]
    fn a_reformatted_file_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let doc: Json = serde_json::from_str(&signed(&key)).unwrap();
        // As jq 1.6 writes it: 1797.0 → 1797 (the canonical form has it so already), keys
        // sorted the other way round, one line.
        fn reversed(v: &Json) -> Json {
            match v {
                Json::Object(o) => {
                    let mut keys: Vec<&String> = o.keys().collect();
                    keys.sort_by(|a, b| b.cmp(a));
                    Json::Object(
                        keys.into_iter()
                            .map(|k| (k.clone(), reversed(&o[k])))
                            .collect(),
                    )
                }
                Json::Array(a) => Json::Array(a.iter().map(reversed).collect()),
                _ => v.clone(),
            }
        }
        let text = serde_json::to_string(&reversed(&doc)).unwrap();
        assert!(text.contains("\"rto_ms\":1797,"), "{text}");
        verify(&text, &key.public_hex()).unwrap();
        // A float written with its `.0` again (another tool's choice) verifies too.
        let text = text.replace("\"rto_ms\":1797,", "\"rto_ms\":1797.0,");
        verify(&text, &key.public_hex()).unwrap();
        // And a change still fails.
        let text = text.replace("0.5", "0.25");
        let e = verify(&text, &key.public_hex()).unwrap_err().to_string();
        assert!(e.contains("changed after it was signed"), "{e}");
    }

    /// A file exported before the canonical form (signed over its bytes as written) verifies.
    #[test]
    fn a_file_of_the_earlier_form_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let events = [json!({"seq": 1, "event": {"rto_ms": 5.0, "event": "x"}})];
        let body = json!({"run": "r1", "workflow": "w", "events": events,
            "events_chain": legacy_chain(&events)});
        let sig = key.pair.sign(&serde_json::to_vec(&body).unwrap());
        let text = serde_json::to_string_pretty(&json!({"format": FORMAT, "record": body,
            "signature": {"alg": "ed25519", "public_key": key.public_hex(), "value": hex::encode(sig.as_ref())}}))
        .unwrap();
        verify(&text, &key.public_hex()).unwrap();
        let e = verify(&text.replace("\"w\"", "\"v\""), &key.public_hex())
            .unwrap_err()
            .to_string();
        assert!(e.contains("changed after it was signed"), "{e}");
    }
}
