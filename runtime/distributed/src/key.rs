//! The task key: seals the secret-bearing part of a queued step request.
//!
//! A step request holds the evaluated `with:` input (which may interpolate secrets), the resolved
//! grants (SQL DSNs with passwords, secret values) and the run's mask list. Those travel through the
//! `meridian.tasks` table, and so through PostgreSQL's WAL, backups and any role that can read the
//! table. They are sealed with XChaCha20-Poly1305 under a 256-bit key shared by coordinators and
//! workers (`MERIDIAN_TASK_KEY`, 64 hex digits); the associated data binds each sealed blob to its
//! task (run, step, idempotency key, attempt, component, action, mode, limits, timeout), so a
//! database writer cannot move secrets to another task or point them at another component.
//!
//! Cost: one AEAD pass over the payload (≈ 1 GB/s in software), 41 bytes of overhead, a random
//! 192-bit nonce per seal (safe to draw at random for any practical number of tasks).
//!
//! What this does not protect: the integrity of results (a database writer can forge a result row)
//! and anything a coordinator or worker process holds in memory.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::DistError;

/// Environment variable the CLI reads the key from (`meridian run --store postgres://…` and
/// `meridian worker` must see the same value).
pub const TASK_KEY_ENV: &str = "MERIDIAN_TASK_KEY";

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// A 256-bit symmetric key. `Debug` prints only its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskKey([u8; 32]);

impl fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskKey({})", self.fingerprint())
    }
}

impl TaskKey {
    /// A fresh random key (from the thread's CSPRNG, seeded by the OS).
    pub fn generate() -> TaskKey {
        TaskKey(rand::random())
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<TaskKey, DistError> {
        let bytes = hex::decode(s.trim())
            .map_err(|e| DistError::Key(format!("expected 64 hex digits: {e}")))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            DistError::Key(format!(
                "expected 32 bytes (64 hex digits), got {}",
                b.len()
            ))
        })?;
        Ok(TaskKey(arr))
    }

    /// Reads [`TASK_KEY_ENV`]; the error says how to make a key.
    pub fn from_env() -> Result<TaskKey, DistError> {
        Self::from_env_value(std::env::var(TASK_KEY_ENV).ok())
    }

    fn from_env_value(value: Option<String>) -> Result<TaskKey, DistError> {
        match value {
            Some(v) => TaskKey::from_hex(&v).map_err(|e| match e {
                // Named once: `task key: MERIDIAN_TASK_KEY: task key: …` said it twice.
                DistError::Key(why) => DistError::Key(format!(
                    "{TASK_KEY_ENV}: {why}; create one with `openssl rand -hex 32` (or `meridian worker --new-key`)"
                )),
                other => other,
            }),
            None => Err(DistError::Key(format!(
                "{TASK_KEY_ENV} is not set; create one with `openssl rand -hex 32` and give the same value to the coordinator and every worker"
            ))),
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// 16 hex digits identifying the key without revealing it. Stored with every task: a worker
    /// only claims tasks sealed under its own key, so a misconfigured worker leaves them to others
    /// instead of failing them.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"meridian-task-key-id\0");
        h.update(self.0);
        hex::encode(&h.finalize()[..8])
    }

    /// `version ‖ nonce ‖ ciphertext+tag`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption fails only for plaintexts beyond 256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`seal`](Self::seal) produced with the same associated data.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, DistError> {
        if sealed.len() < 1 + NONCE_LEN + 16 {
            return Err(DistError::Key("sealed payload is truncated".into()));
        }
        if sealed[0] != SEAL_VERSION {
            return Err(DistError::Key(format!(
                "sealed payload has format version {}, expected {SEAL_VERSION}",
                sealed[0]
            )));
        }
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| {
                DistError::Key(
                    "sealed payload does not open: another key, or the task row was altered".into(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_key_and_aad() {
        let k = TaskKey::generate();
        let sealed = k.seal(b"password=hunter2", b"task-1");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open(&sealed, b"task-1").unwrap(), b"password=hunter2");
        assert!(k.open(&sealed, b"task-2").is_err(), "other associated data");
        assert!(
            TaskKey::generate().open(&sealed, b"task-1").is_err(),
            "other key"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(k.open(&flipped, b"task-1").is_err(), "altered ciphertext");
        assert!(k.open(&sealed[..10], b"task-1").is_err(), "truncated");
        // Two seals of the same plaintext differ (fresh nonce).
        assert_ne!(k.seal(b"x", b""), k.seal(b"x", b""));
    }

    #[test]
    fn hex_parsing_and_fingerprint() {
        let k = TaskKey::generate();
        let again = TaskKey::from_hex(&format!(" {}\n", k.to_hex())).unwrap();
        assert_eq!(k, again);
        assert_eq!(k.fingerprint(), again.fingerprint());
        assert_eq!(k.fingerprint().len(), 16);
        assert_ne!(k.fingerprint(), TaskKey::generate().fingerprint());
        assert!(!format!("{k:?}").contains(&k.to_hex()));
        assert!(TaskKey::from_hex("abcd").is_err());
        // The variable is named once, with how to make a key.
        let e = TaskKey::from_env_value(Some("abc".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(e.matches("task key").count(), 1, "{e}");
        assert!(
            e.contains("MERIDIAN_TASK_KEY: expected 64 hex digits")
                && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        assert!(TaskKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
