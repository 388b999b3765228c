//! Content-addressed storage of what was pulled: `<dir>/oci/blobs/sha256/<hex>` for manifests
//! and components, `<dir>/oci/signatures/<manifest hex>.json` for signature documents, and
//! `<dir>/oci/refs/<sha256 of the reference>` holding each pinned reference fetched (what
//! `meridian steps list` shows as pulled). Every
//! blob read is hashed again: a blob that no longer matches its name is removed and reported
//! missing, so it is fetched again (or refused when offline), never run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{OciError, sha256_digest};

/// The on-disk cache of OCI artifacts.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache under `dir` (the compile cache's directory): `dir/oci`.
    pub fn new(dir: &Path) -> Self {
        Cache {
            root: dir.join("oci"),
        }
    }

    /// Where the blob `sha256:<hex>` is kept.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| OciError::Reference(format!("digest {digest}")))?;
        Ok(self
            .root
            .join("blobs/sha256")
            .join(hex.to_ascii_lowercase()))
    }

    /// The blob's bytes if it is cached and still matches its digest.
    pub fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.blob_path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OciError::Cache { path, source }),
        };
        if sha256_digest(&bytes) != digest {
            // Changed on disk: never hand it out; fetch it again — and say so: a damaged disk
            // or a hand-edited cache is worth knowing of, and offline the registry's error
            // alone would hide why a cached step was fetched at all.
            tracing::warn!(
                "{} no longer matches its digest {digest} (changed on disk): removed from the cache; fetching it again",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Stores `bytes` as `digest` (atomically: a temp file renamed into place).
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, OciError> {
        let path = self.blob_path(digest)?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// The signature document cached for a manifest digest (verified by whoever reads it).
    pub fn signature(&self, manifest_digest: &str) -> Option<Vec<u8>> {
        std::fs::read(self.signature_path(manifest_digest)).ok()
    }

    /// Caches the signature document of a manifest digest.
    pub fn put_signature(&self, manifest_digest: &str, doc: &[u8]) -> Result<(), OciError> {
        write_atomic(&self.signature_path(manifest_digest), doc)
    }

    /// Remembers that `pinned` (`registry/ns/name:tag@sha256:…`) was fetched and verified.
    pub fn record_ref(&self, pinned: &str) -> Result<(), OciError> {
        let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(pinned.as_bytes()));
        let path = self.root.join("refs").join(name);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, pinned.as_bytes())
    }

    /// The pinned references fetched into this cache whose manifest is still cached, sorted.
    pub fn refs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("refs")) else {
            return Vec::new();
        };
        let mut refs: Vec<String> = entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter(|r| {
                r.rsplit_once('@')
                    .and_then(|(_, d)| self.blob_path(d).ok())
                    .is_some_and(|p| p.exists())
            })
            .collect();
        refs.sort();
        refs
    }

    fn signature_path(&self, manifest_digest: &str) -> PathBuf {
        let hex = manifest_digest.trim_start_matches("sha256:");
        self.root.join("signatures").join(format!("{hex}.json"))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let err = |source| OciError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let data = b"\0asm component bytes";
        let digest = sha256_digest(data);
        assert_eq!(cache.get(&digest).unwrap(), None);
        let path = cache.put(&digest, data).unwrap();
        assert_eq!(cache.get(&digest).unwrap().as_deref(), Some(&data[..]));
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(
            cache.get(&digest).unwrap(),
            None,
            "a changed blob is not handed out"
        );
        assert!(!path.exists(), "and it is removed");
        assert!(cache.get("sha256:xyz").is_err());
    }
}
