//! What a step's `uses:` names: a built-in step or a component file, either pinned by digest.
//! Parsed once by the workflow model — relative paths resolved against the workflow file's
//! directory there — and carried typed to whatever loads it (the local executor, a queue
//! worker on another machine), so no loader depends on its own working directory.
//!
//! Syntax: `hello`, `./steps/x.wasm`, `/abs/x.wasm`, and either form followed by
//! `@sha256:<64 hex digits>`. A reference that contains `/` or ends in `.wasm` is a path.
//! `oci://HOST/NS/NAME:TAG@sha256:<manifest digest>` names a step in an OCI registry (the tag
//! or the digest may be left out; without a digest it is unpinned).

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A step component reference. A [`ComponentRef::Path`] made by [`ComponentRef::parse`] is
/// absolute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ComponentRef {
    /// A step built into Meridian, by name (`hello`, `gslb-route53`).
    Builtin {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<Sha256>,
    },
    /// A component file.
    Path {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<Sha256>,
    },
    /// A step artifact in an OCI registry: `reference` is `HOST/NS/NAME[:TAG]` (no scheme), and
    /// `sha256` the digest of its manifest (the registry's content address, as `docker pull
    /// NAME@sha256:…` uses), not of the component bytes.
    Oci {
        reference: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<Sha256>,
    },
}

/// The scheme of a `uses:` that names an OCI artifact.
pub const OCI_SCHEME: &str = "oci://";

/// A content digest a component is pinned to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

/// Why a `uses:` text is not a component reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComponentRefError {
    #[error("`uses` is empty")]
    Empty,
    #[error("invalid digest `{0}`: expected `sha256:` and 64 hex digits")]
    Digest(String),
    #[error("invalid OCI reference `{0}`: {1}; expected oci://HOST/NAMESPACE/NAME:TAG[@sha256:…]")]
    Oci(String, &'static str),
}

impl ComponentRef {
    /// The built-in step `name`, unpinned.
    pub fn builtin(name: impl Into<String>) -> Self {
        ComponentRef::Builtin {
            name: name.into(),
            sha256: None,
        }
    }

    /// Parses `uses:` text; a relative path is resolved against `base` (which should be
    /// absolute: the workflow file's directory) and `.` components are dropped.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ComponentRefError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ComponentRefError::Empty);
        }
        // A pin is `@…` in the last path component; an `@` inside a directory name is not one.
        let (target, sha256) = match text.rsplit_once('@').filter(|(_, d)| !d.contains('/')) {
            Some((target, digest)) => (target, Some(Sha256::parse_pin(digest)?)),
            None => (text, None),
        };
        if target.is_empty() {
            return Err(ComponentRefError::Empty);
        }
        if let Some(rest) = target.strip_prefix(OCI_SCHEME) {
            return match oci_reference_problem(rest) {
                None => Ok(ComponentRef::Oci {
                    reference: rest.to_owned(),
                    sha256,
                }),
                Some(why) => Err(ComponentRefError::Oci(target.to_owned(), why)),
            };
        }
        Ok(if target.contains('/') || target.ends_with(".wasm") {
            ComponentRef::Path {
                path: resolve(base, Path::new(target)),
                sha256,
            }
        } else {
            ComponentRef::Builtin {
                name: target.to_owned(),
                sha256,
            }
        })
    }

    /// The digest the component is pinned to, if any.
    pub fn sha256(&self) -> Option<&Sha256> {
        match self {
            ComponentRef::Builtin { sha256, .. }
            | ComponentRef::Path { sha256, .. }
            | ComponentRef::Oci { sha256, .. } => sha256.as_ref(),
        }
    }

    /// The name of a built-in step; `None` for a path.
    pub fn builtin_name(&self) -> Option<&str> {
        match self {
            ComponentRef::Builtin { name, .. } => Some(name),
            ComponentRef::Path { .. } | ComponentRef::Oci { .. } => None,
        }
    }

    /// An OCI reference named by tag alone, with no digest to pin it.
    pub fn is_unpinned_oci(&self) -> bool {
        matches!(self, ComponentRef::Oci { sha256: None, .. })
    }
}

/// What is wrong with `HOST/…/NAME[:TAG]`, if anything: it needs a registry host (with an
/// optional port), at least one repository path segment of lower-case letters, digits and
/// `._-`, and an optional tag of at most 128 characters from `[A-Za-z0-9_.-]`.
fn oci_reference_problem(r: &str) -> Option<&'static str> {
    let Some((host, path)) = r.split_once('/') else {
        return Some("it names no repository after the registry host");
    };
    let (repo, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (path, None),
    };
    let host_ok = host
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '[')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Some("the registry host is not a host name or address (with an optional :PORT)");
    }
    if repo.is_empty() || repo.split('/').any(str::is_empty) {
        return Some("the repository has an empty path segment");
    }
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(
            "the repository has upper-case letters (registries take lower-case names only)",
        );
    }
    let repo_ok = repo.split('/').all(|seg| {
        seg.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    });
    if !repo_ok {
        return Some(
            "the repository may hold only lower-case letters, digits, `.`, `_`, `-` and `/`",
        );
    }
    let tag_ok = tag.is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    });
    if !tag_ok {
        return Some("the tag must be 1 to 128 letters, digits, `_`, `.` or `-`");
    }
    None
}

/// `path` as seen from `base`: itself when absolute, else joined to `base`; `.` components
/// dropped (`..` kept: it cannot be removed without asking the filesystem about symlinks).
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    base.join(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

impl fmt::Display for ComponentRef {
    /// As `uses:` would write it (a path as resolved).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentRef::Builtin { name, .. } => f.write_str(name)?,
            ComponentRef::Path { path, .. } => write!(f, "{}", path.display())?,
            ComponentRef::Oci { reference, .. } => write!(f, "{OCI_SCHEME}{reference}")?,
        }
        match self.sha256() {
            Some(d) => write!(f, "@sha256:{d}"),
            None => Ok(()),
        }
    }
}

impl Sha256 {
    /// 64 hex digits (any case).
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Sha256(out))
    }

    /// `sha256:<64 hex digits>`, as written after `@` in `uses:`.
    fn parse_pin(pin: &str) -> Result<Self, ComponentRefError> {
        pin.strip_prefix("sha256:")
            .and_then(Sha256::parse)
            .ok_or_else(|| ComponentRefError::Digest(pin.to_owned()))
    }
}

impl fmt::Display for Sha256 {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

serde_as_text!(Sha256, |hex: &str| Sha256::parse(hex)
    .ok_or("not 64 hex digits"));

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<ComponentRef, ComponentRefError> {
        ComponentRef::parse(text, Path::new("/flows"))
    }

    #[test]
    fn names_paths_and_pins() {
        assert_eq!(parse("hello"), Ok(ComponentRef::builtin("hello")));
        let pinned = parse(&format!("hello@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.builtin_name(), Some("hello"));
        assert_eq!(
            pinned.sha256().unwrap().to_string(),
            HEX.to_ascii_lowercase()
        );
        for (text, path) in [
            ("./x.wasm", "/flows/x.wasm"),
            ("x.wasm", "/flows/x.wasm"),
            ("steps/./x", "/flows/steps/x"),
            ("../x.wasm", "/flows/../x.wasm"),
            ("/abs/x.wasm", "/abs/x.wasm"),
            ("./a@b/x.wasm", "/flows/a@b/x.wasm"),
        ] {
            assert_eq!(
                parse(text),
                Ok(ComponentRef::Path {
                    path: path.into(),
                    sha256: None
                }),
                "{text}"
            );
        }
        let p = parse(&format!("./x.wasm@sha256:{HEX}")).unwrap();
        assert!(
            matches!(&p, ComponentRef::Path { path, sha256: Some(_) } if path == Path::new("/flows/x.wasm"))
        );
        assert_eq!(
            p.to_string(),
            format!("/flows/x.wasm@sha256:{}", HEX.to_ascii_lowercase())
        );
    }

    #[test]
    fn oci_references() {
        let r = parse(&format!(
            "oci://127.0.0.1:5000/acme/notify:1.0@sha256:{HEX}"
        ))
        .unwrap();
        assert!(
            matches!(&r, ComponentRef::Oci { reference, sha256: Some(_) } if reference == "127.0.0.1:5000/acme/notify:1.0")
        );
        assert!(!r.is_unpinned_oci());
        assert_eq!(
            r.to_string(),
            format!(
                "oci://127.0.0.1:5000/acme/notify:1.0@sha256:{}",
                HEX.to_ascii_lowercase()
            )
        );
        let tag = parse("oci://ghcr.io/acme/steps/notify:v2").unwrap();
        assert!(tag.is_unpinned_oci());
        assert_eq!(tag.to_string(), "oci://ghcr.io/acme/steps/notify:v2");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["kind"], "oci");
        assert_eq!(serde_json::from_value::<ComponentRef>(j).unwrap(), r);
        for bad in [
            "oci://",
            "oci://host",
            "oci://host/",
            "oci://host/Upper/x:1",
            "oci://host/ns/x:",
            "oci://host/ns//x:1",
        ] {
            assert!(
                matches!(parse(bad), Err(ComponentRefError::Oci(..))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        // The message says what is wrong, not only the shape expected.
        let upper = parse("oci://127.0.0.1:15000/ACME/Feat:1.0")
            .unwrap_err()
            .to_string();
        assert!(upper.contains("upper-case letters"), "{upper}");
        let empty = parse("oci://host/ns//x:1").unwrap_err().to_string();
        assert!(empty.contains("empty path segment"), "{empty}");
    }

    #[test]
    fn bad_references_are_explained() {
        assert_eq!(parse("  "), Err(ComponentRefError::Empty));
        assert_eq!(
            parse(&format!("@sha256:{HEX}")),
            Err(ComponentRefError::Empty)
        );
        for bad in [
            "hello@sha256:abc",
            "hello@md5:00",
            &format!("x@sha256:{}g", &HEX[1..]),
        ] {
            assert!(
                matches!(parse(bad), Err(ComponentRefError::Digest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_is_typed_and_checks_the_digest() {
        let r = parse(&format!("./x.wasm@sha256:{HEX}")).unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"kind": "path", "path": "/flows/x.wasm", "sha256": HEX.to_ascii_lowercase()})
        );
        assert_eq!(serde_json::from_value::<ComponentRef>(j).unwrap(), r);
        let b = serde_json::json!({"kind": "builtin", "name": "hello"});
        assert_eq!(
            serde_json::from_value::<ComponentRef>(b).unwrap(),
            ComponentRef::builtin("hello")
        );
        let bad = serde_json::json!({"kind": "builtin", "name": "hello", "sha256": "00"});
        assert!(serde_json::from_value::<ComponentRef>(bad).is_err());
    }
}
