//! Bearer tokens and roles. The tokens file holds SHA-256 hashes, never tokens:
//!
//! ```toml
//! [[token]]
//! name = "alice"                   # journaled with every approval she gives
//! roles = ["operator", "approver"] # viewer is implied; operator starts and cancels runs
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! (`printf %s "$TOKEN" | sha256sum` makes the hash.)

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a caller may do.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Starts and cancels runs; pauses, resumes and triggers schedules.
    Operator,
    /// Approves and rejects approval gates.
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Identity {
    pub fn may(&self, role: Role) -> bool {
        role == Role::Viewer || self.roles.contains(&role)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    roles: Vec<Role>,
    sha256: String,
}

/// The tokens a server accepts.
pub struct Tokens(Vec<(Identity, [u8; 32])>);

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = Vec::new();
        for t in file.token {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(t.sha256.trim(), &mut hash).map_err(|_| {
                format!(
                    "{}: token `{}`: sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
                    path.display(),
                    t.name
                )
            })?;
            out.push((
                Identity {
                    name: t.name,
                    roles: t.roles,
                },
                hash,
            ));
        }
        if out.is_empty() {
            return Err(format!(
                "{}: no [[token]] entries; nobody could call the server",
                path.display()
            ));
        }
        Ok(Tokens(out))
    }

    /// The identity a bearer token belongs to. Compares every hash in full (no early exit).
    pub fn identify(&self, token: &str) -> Option<Identity> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (id, hash) in &self.0 {
            let diff = hash
                .iter()
                .zip(h.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(id.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_hash_and_roles_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let hash = hex::encode(Sha256::digest(b"s3cret"));
        std::fs::write(
            &path,
            format!("[[token]]\nname = \"alice\"\nroles = [\"approver\"]\nsha256 = \"{hash}\"\n"),
        )
        .unwrap();
        let t = Tokens::load(&path).unwrap();
        let alice = t.identify("s3cret").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.may(Role::Approver) && alice.may(Role::Viewer));
        assert!(!alice.may(Role::Operator));
        assert!(t.identify("s3cre").is_none());

        std::fs::write(&path, "[[token]]\nname = \"bob\"\nsha256 = \"xyz\"\n").unwrap();
        let e = Tokens::load(&path).err().unwrap();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
