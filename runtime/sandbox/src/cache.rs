//! The on-disk compile cache: `<dir>/<sha256 of the component>-<engine fingerprint>.cwasm`,
//! written with `Component::serialize`, read back with `Component::deserialize_file` (an mmap,
//! no compilation). The fingerprint changes with anything that makes compiled code
//! incompatible (wasmtime version, compiler settings, target), so a stale entry is simply
//! never looked up.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::SandboxError;

/// Feeds `Hash` output into SHA-256, so the fingerprint does not depend on the Rust release's
/// `DefaultHasher`.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// 16 hex characters identifying the engine's compiled-code compatibility.
pub(crate) fn fingerprint(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

pub(crate) struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
}

impl DiskCache {
    /// Creates the directory (mode 0700 on Unix: the files are executable code).
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, SandboxError> {
        let err = |source| SandboxError::Cache {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            fingerprint: fingerprint(engine),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.fingerprint))
    }

    /// The cached compiled component, if there is a usable one.
    #[allow(unsafe_code)]
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` requires a file produced by `Component::serialize` for a
        // compatible engine and not modified since. This sandbox wrote it (`store` below), under a
        // name keyed by the component's sha256 and the engine's compatibility fingerprint, via an
        // atomic rename, in a directory created 0700. wasmtime additionally checks the header and
        // engine compatibility and returns an error (handled below) on mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable compile-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `component` for `digest`, atomically.
    pub(crate) fn store(&self, digest: &str, component: &Component) -> Result<(), SandboxError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.path(digest);
        let err = |source| SandboxError::Cache {
            path: path.clone(),
            source,
        };
        let bytes = component.serialize().map_err(|e| SandboxError::Cache {
            path: path.clone(),
            source: std::io::Error::other(format!("{e:#}")),
        })?;
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
}
