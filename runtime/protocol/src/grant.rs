//! The capabilities a step can be granted, as one enum shared by the workflow's `grants:` block,
//! validation and the sandbox; the WIT contract has the same enum (`grant-kind`), which the
//! sandbox maps to this one when it reads a step's `describe`.

use serde::{Deserialize, Serialize};

/// A kind of capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    /// Outbound HTTP to origins matching a pattern.
    Http,
    /// A named SQL connection.
    Sql,
    /// A preopened directory.
    Fs,
    /// A named secret's value.
    Secret,
    /// The DNS server host names resolve through.
    Dns,
}

impl GrantKind {
    /// Every kind, in the order the workflow reference lists them.
    pub const ALL: [GrantKind; 5] = [
        GrantKind::Http,
        GrantKind::Sql,
        GrantKind::Fs,
        GrantKind::Secret,
        GrantKind::Dns,
    ];

    /// The word a step's `describe` uses: `http`, `sql`, `fs`, `secret`, `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Http => "http",
            GrantKind::Sql => "sql",
            GrantKind::Fs => "fs",
            GrantKind::Secret => "secret",
            GrantKind::Dns => "dns",
        }
    }

    /// The key under a workflow step's `grants:` (`secrets` is plural there, like the
    /// workflow's top-level `secrets:` list).
    pub fn yaml_key(self) -> &'static str {
        match self {
            GrantKind::Secret => "secrets",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for GrantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability a step declares it needs: the kind and what of it (a URL, a connection name, a
/// path, a secret name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    pub kind: GrantKind,
    /// URL, connection name, path or secret name; may be prose ("the probed URL") when the
    /// step cannot know it before it sees its input.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_secret_is_singular() {
        for k in GrantKind::ALL {
            let json = serde_json::to_value(k).unwrap();
            assert_eq!(json, serde_json::json!(k.as_str()));
            assert_eq!(serde_json::from_value::<GrantKind>(json).unwrap(), k);
        }
        assert!(serde_json::from_value::<GrantKind>(serde_json::json!("secrets")).is_err());
        assert_eq!(GrantKind::Secret.yaml_key(), "secrets");
    }
}
