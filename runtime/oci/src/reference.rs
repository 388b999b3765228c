//! `oci://HOST/NS/NAME[:TAG][@sha256:…]`.

use std::fmt;

use meridian_protocol::{ComponentRef, OCI_SCHEME, Sha256};

use crate::OciError;

/// A step artifact in a registry. `digest` is the manifest's (`sha256:<hex>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    /// `host[:port]`.
    pub registry: String,
    /// `ns/name` (one or more segments).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl OciRef {
    /// Parses `oci://…` (the scheme may be left out).
    pub fn parse(text: &str) -> Result<Self, OciError> {
        let text = text.trim();
        let with_scheme = if text.starts_with(OCI_SCHEME) {
            text.to_owned()
        } else {
            format!("{OCI_SCHEME}{text}")
        };
        match ComponentRef::parse(&with_scheme, std::path::Path::new("/")) {
            Ok(ComponentRef::Oci { reference, sha256 }) => {
                Ok(Self::new(&reference, sha256.as_ref()))
            }
            Err(e @ meridian_protocol::ComponentRefError::Oci(..)) => {
                Err(OciError::Unparsed(e.to_string()))
            }
            _ => Err(OciError::Reference(text.to_owned())),
        }
    }

    /// From the parts of a [`ComponentRef::Oci`] (already checked by its parser).
    pub fn new(reference: &str, sha256: Option<&Sha256>) -> Self {
        let (registry, path) = reference.split_once('/').unwrap_or((reference, ""));
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r.to_owned(), Some(t.to_owned())),
            None => (path.to_owned(), None),
        };
        OciRef {
            // Host names are case-insensitive: `LOCALHOST:5000` is `localhost:5000` (a policy
            // scope written in lower case matches it, and it is loopback, spoken to over HTTP).
            registry: registry.to_ascii_lowercase(),
            repository,
            tag,
            digest: sha256.map(|d| format!("sha256:{d}")),
        }
    }

    /// `registry/repository`: what trust-policy scopes match.
    pub fn scope(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same artifact pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> Self {
        OciRef {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// What the registry is asked for: the digest when pinned, else the tag (`latest` if none).
    pub(crate) fn to_client(&self) -> oci_client::Reference {
        match &self.digest {
            Some(d) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            None => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }

    /// Another tag in the same repository (signatures live at `sha256-<hex>.sig`).
    pub(crate) fn tag_in_repo(&self, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.into())
    }

    /// The hex of the digest, if pinned.
    pub fn digest_hex(&self) -> Option<&str> {
        self.digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{OCI_SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_display() {
        let d = "ab".repeat(32);
        let r = OciRef::parse(&format!(
            "oci://127.0.0.1:5000/acme/steps/notify:1.2@sha256:{d}"
        ))
        .unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "acme/steps/notify");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.digest_hex(), Some(d.as_str()));
        assert_eq!(r.scope(), "127.0.0.1:5000/acme/steps/notify");
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/acme/steps/notify:1.2@sha256:{d}")
        );
        let bare = OciRef::parse("registry.example.com/acme/notify").unwrap();
        assert_eq!(bare.tag, None);
        assert_eq!(bare.to_client().tag(), Some("latest"));
        assert!(OciRef::parse("oci://nohost").is_err());
        assert!(OciRef::parse("./x.wasm").is_err());
    }
}
