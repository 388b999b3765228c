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

/// Without a tokens file every caller is `local` with every role, and only processes of this
/// machine may be that caller (the server then listens on loopback only). A web page elsewhere
/// can still make a browser send requests here: cross-site (`Origin` names the other page's
/// site; `Sec-Fetch-Site: cross-site`), or through DNS rebinding (a foreign name that resolves
/// to 127.0.0.1, so `Host` holds that name). Such a request is refused, with why; a request
/// without those headers (curl, `meridian --server`, a script) is not a browser's and passes.
pub(crate) fn local_caller(headers: &axum::http::HeaderMap) -> Result<(), String> {
    use axum::http::header;
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST).unwrap_or("");
    if !host.is_empty() && !loopback_authority(host) {
        return Err(format!(
            "`Host: {}` is not a loopback address: without a tokens file this server answers requests to 127.0.0.1, [::1] or localhost only (give it a tokens file to serve other names)",
            host.escape_debug()
        ));
    }
    if let Some(origin) = foreign_origin(headers) {
        return Err(format!(
            "a request from a web page of `{}` is refused: without a tokens file only this server's own pages may call it",
            origin.escape_debug()
        ));
    }
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return Err("a cross-site request from a web page is refused".into());
    }
    Ok(())
}

/// A form posted from this server's own pages, as far as the browser says: `Origin` (when
/// sent) is this server, and `Sec-Fetch-Site` is `same-origin` or `none` (typed, bookmarked).
/// For the sign-in form, which has no session (and so no CSRF token) to check yet: a page
/// elsewhere could sign a victim's browser in as the attacker ("login CSRF").
pub(crate) fn own_form(headers: &axum::http::HeaderMap) -> Result<(), String> {
    if let Some(origin) = foreign_origin(headers) {
        return Err(format!(
            "a sign-in posted from a page of `{}` is refused: sign in on this server's own page",
            origin.escape_debug()
        ));
    }
    let site = headers
        .get(axum::http::header::HeaderName::from_static(
            "sec-fetch-site",
        ))
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    match site {
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(format!(
            "a sign-in posted from another site ({}) is refused: sign in on this server's own page",
            other.escape_debug()
        )),
    }
}

/// The request's `Origin` when a browser sent one naming another site than `Host` (the page
/// that made the request is not this server's).
fn foreign_origin(headers: &axum::http::HeaderMap) -> Option<&str> {
    use axum::http::header;
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST).unwrap_or("");
    let origin = text(header::ORIGIN)?;
    let own = ["http://", "https://"]
        .iter()
        .any(|scheme| origin.strip_prefix(scheme) == Some(host));
    (!own).then_some(origin)
}

/// `host[:port]` naming this machine: `localhost` or a loopback IP (`[::1]` bracketed).
fn loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(h, _)| h),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod local_tests {
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_this_machines_callers_pass_without_tokens() {
        for ok in [
            headers(&[]),
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[("host", "localhost:8080")]),
            headers(&[("host", "[::1]:8080")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ] {
            assert_eq!(super::local_caller(&ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            (
                headers(&[("host", "evil.example:8080")]),
                "is not a loopback address",
            ),
            (
                headers(&[("host", "127.0.0.2.evil.example")]),
                "is not a loopback address",
            ),
            (
                headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ]),
                "from a web page of `http://evil.example`",
            ),
            (
                headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:3000"),
                ]),
                "is refused",
            ),
            (
                headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
                "is refused",
            ),
            (
                headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
                "cross-site",
            ),
        ] {
            let err = super::local_caller(&bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
