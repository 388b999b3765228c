//! Push webhooks: which git server sent it, whether its signature holds, which ref it moved.
//!
//! | server | signature header | scheme |
//! |---|---|---|
//! | GitHub, Gitea, Forgejo | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256 of the body |
//! | Gitea, Forgejo, Gogs | `X-Gitea-Signature` / `X-Gogs-Signature: <hex>` | HMAC-SHA256 of the body |
//! | GitLab | `X-Gitlab-Token: <secret>` | the secret itself |
//!
//! All comparisons are constant-time. A webhook only wakes the watcher: the commit and the files
//! it changed are always read from the repository itself, never trusted from the payload.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error(
        "no signature: send `X-Hub-Signature-256` (GitHub, Gitea, Forgejo), `X-Gitea-Signature` or `X-Gitlab-Token`, made with the workflow's webhook secret"
    )]
    Unsigned,
    #[error("the {header} header does not match the workflow's webhook secret")]
    BadSignature { header: &'static str },
    #[error("the payload is not a push event's JSON: {0}")]
    Payload(String),
}

/// A push, as far as the watcher cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The ref moved, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The commit it now points at, when the payload says.
    pub after: Option<String>,
}

impl Push {
    /// Whether the push moved `branch`.
    pub fn is_branch(&self, branch: &str) -> bool {
        self.git_ref == format!("refs/heads/{branch}") || self.git_ref == branch
    }
}

/// Checks the signature of a webhook with lower-case header names `headers` and `body` against
/// `secret`. Returns the header that proved it.
pub fn verify(
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
) -> Result<&'static str, WebhookError> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let hmac_ok = |hex_sig: &str| {
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    };
    if let Some(v) = get("x-hub-signature-256") {
        let hex_sig = v.strip_prefix("sha256=").unwrap_or("");
        return if hmac_ok(hex_sig) {
            Ok("X-Hub-Signature-256")
        } else {
            Err(WebhookError::BadSignature {
                header: "X-Hub-Signature-256",
            })
        };
    }
    for (name, shown) in [
        ("x-gitea-signature", "X-Gitea-Signature"),
        ("x-gogs-signature", "X-Gogs-Signature"),
    ] {
        if let Some(v) = get(name) {
            return if hmac_ok(v) {
                Ok(shown)
            } else {
                Err(WebhookError::BadSignature { header: shown })
            };
        }
    }
    if let Some(v) = get("x-gitlab-token") {
        // Constant-time: compare HMACs of both under a fixed key rather than the bytes.
        let digest = |s: &[u8]| {
            let mut m = Hmac::<Sha256>::new_from_slice(b"meridian-token-compare")
                .expect("HMAC takes any key length");
            m.update(s);
            m.finalize().into_bytes()
        };
        let expected = digest(secret.as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"meridian-token-compare")
            .expect("HMAC takes any key length");
        mac.update(v.as_bytes());
        return if mac.verify_slice(&expected).is_ok() {
            Ok("X-Gitlab-Token")
        } else {
            Err(WebhookError::BadSignature {
                header: "X-Gitlab-Token",
            })
        };
    }
    Err(WebhookError::Unsigned)
}

/// Reads `ref` and `after` of a push payload (GitHub, GitLab, Gitea, Forgejo and Gogs all send
/// these two fields).
pub fn parse_push(body: &[u8]) -> Result<Push, WebhookError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Payload(e.to_string()))?;
    let git_ref = v
        .get("ref")
        .and_then(|r| r.as_str())
        .ok_or_else(|| WebhookError::Payload("no `ref` field".into()))?
        .to_string();
    let after = v
        .get("after")
        .and_then(|a| a.as_str())
        .filter(|a| a.len() == 40 && a.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    Ok(Push { git_ref, after })
}

/// The event a server says it sent (`push`, `ping`, `Push Hook`, …), when it says.
pub fn event_kind(headers: &[(String, String)]) -> Option<&str> {
    [
        "x-github-event",
        "x-gitea-event",
        "x-gogs-event",
        "x-gitlab-event",
    ]
    .iter()
    .find_map(|h| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(h))
            .map(|(_, v)| v.as_str())
    })
}

/// Whether the event is a push (or not named at all, as generic senders do).
pub fn is_push(headers: &[(String, String)]) -> bool {
    match event_kind(headers) {
        None => true,
        Some(k) => k.eq_ignore_ascii_case("push") || k.eq_ignore_ascii_case("Push Hook"),
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_servers_signature_is_checked() {
        let body =
            br#"{"ref":"refs/heads/main","after":"0123456789012345678901234567890123456789"}"#;
        let sig = sign("s3cret", body);
        let github = h(&[("X-Hub-Signature-256", &format!("sha256={sig}"))]);
        assert_eq!(verify(&github, body, "s3cret"), Ok("X-Hub-Signature-256"));
        assert_eq!(
            verify(&github, body, "other"),
            Err(WebhookError::BadSignature {
                header: "X-Hub-Signature-256"
            })
        );
        let tampered =
            br#"{"ref":"refs/heads/prod","after":"0123456789012345678901234567890123456789"}"#;
        assert!(verify(&github, tampered, "s3cret").is_err());
        let gitea = h(&[("x-gitea-signature", &sig)]);
        assert_eq!(verify(&gitea, body, "s3cret"), Ok("X-Gitea-Signature"));
        let gitlab = h(&[("X-Gitlab-Token", "s3cret")]);
        assert_eq!(verify(&gitlab, body, "s3cret"), Ok("X-Gitlab-Token"));
        assert!(verify(&h(&[("X-Gitlab-Token", "s3cre")]), body, "s3cret").is_err());
        assert_eq!(verify(&[], body, "s3cret"), Err(WebhookError::Unsigned));
        assert!(verify(&h(&[("X-Hub-Signature-256", "sha256=zz")]), body, "s3cret").is_err());
    }

    #[test]
    fn push_payloads() {
        let p = parse_push(
            br#"{"ref":"refs/heads/main","after":"0123456789012345678901234567890123456789","commits":[]}"#,
        )
        .unwrap();
        assert!(p.is_branch("main") && !p.is_branch("dev"));
        assert_eq!(p.after.as_deref().map(str::len), Some(40));
        assert!(parse_push(b"not json").is_err());
        assert!(parse_push(br#"{"zen":"ping"}"#).is_err());
        assert!(is_push(&h(&[("X-GitHub-Event", "push")])));
        assert!(is_push(&h(&[("X-Gitlab-Event", "Push Hook")])));
        assert!(!is_push(&h(&[("X-GitHub-Event", "ping")])));
        assert!(is_push(&[]));
    }
}
