//! The on-disk compile caches.
//!
//! - Whole components: `<dir>/<sha256 of the component>-<engine fingerprint>.cwasm`, written
//!   with `Component::serialize`, read back with `Component::deserialize_file` (an mmap, no
//!   compilation). The fingerprint changes with anything that makes compiled code incompatible
//!   (wasmtime version, compiler settings, target), so a stale entry is simply never looked up.
//! - Functions ([`FunctionCache`]): Cranelift's incremental compilation cache, so a component
//!   seen for the first time compiles only the functions no earlier component had.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

/// Cranelift's incremental compilation cache on disk: each process appends the functions it
/// compiles to a pack file of its own (`<dir>/<pid>-<nanos>.pack`: entries of key length, value
/// length, key, value), and the packs are read into memory the first time a compile looks a
/// function up (never on a run whose components are all in the component cache). The key is
/// Cranelift's: the function's body with the functions it calls abstracted away, the target
/// ISA and flags, the compiler's version. Steps share most of their code (the standard library,
/// serde, the SDK), so a new component — another step, or a new version of one — compiles only
/// the functions no earlier component had. A torn or unreadable pack ends where it is torn, and
/// a value Cranelift cannot read is compiled again.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    dir: PathBuf,
    /// Every pack's entries plus what this process compiled (up to [`FRESH_BYTES`]).
    known: Mutex<Option<std::collections::HashMap<Vec<u8>, Vec<u8>>>>,
    fresh_bytes: AtomicU64,
    pack: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

/// Most bytes of freshly compiled functions kept in memory for later compiles of this process
/// (a long-running server compiling many components keeps the rest on disk only).
const FRESH_BYTES: u64 = 64 << 20;

impl FunctionCache {
    /// The cache in `dir` (created 0700 on the first write, like the component cache).
    pub(crate) fn new(dir: PathBuf) -> FunctionCache {
        FunctionCache {
            dir,
            known: Mutex::new(None),
            fresh_bytes: AtomicU64::new(0),
            pack: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Every entry of every pack in the directory; torn tails are ignored.
    fn read_packs(&self) -> std::collections::HashMap<Vec<u8>, Vec<u8>> {
        let mut all = std::collections::HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return all;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "pack") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let mut at = 0usize;
            let u32_at = |i: usize| -> Option<usize> {
                Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
            };
            while let (Some(k), Some(v)) = (u32_at(at), u32_at(at + 4)) {
                let key = at + 8;
                let value = key + k;
                let Some(end) = value.checked_add(v).filter(|e| *e <= bytes.len()) else {
                    break;
                };
                all.insert(bytes[key..value].to_vec(), bytes[value..end].to_vec());
                at = end;
            }
        }
        all
    }

    /// Appends an entry to this process's pack, opening it on first use.
    fn append(&self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut pack = self
            .pack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pack.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
            }
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("{}-{nanos}.pack", std::process::id());
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.dir.join(name))?;
            *pack = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        }
        let w = pack.as_mut().expect("opened above");
        let len = |n: usize| u32::try_from(n).map_err(std::io::Error::other);
        w.write_all(&len(key.len())?.to_le_bytes())?;
        w.write_all(&len(value.len())?.to_le_bytes())?;
        w.write_all(key)?;
        w.write_all(value)
    }

    /// Writes out what is buffered (at the end of a compile, and when dropped).
    pub(crate) fn flush(&self) {
        use std::io::Write as _;
        if let Some(w) = self
            .pack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            && let Err(e) = w.flush()
        {
            tracing::warn!(error = %e, "could not write the function cache; continuing without it");
        }
    }
}

impl Drop for FunctionCache {
    fn drop(&mut self) {
        self.flush();
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = known
            .get_or_insert_with(|| self.read_packs())
            .get(key)
            .cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found.map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let written = self.append(key, &value).is_ok();
        let size = (key.len() + value.len()) as u64;
        if self.fresh_bytes.fetch_add(size, Ordering::Relaxed) + size <= FRESH_BYTES {
            let mut known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(known) = known.as_mut() {
                known.insert(key.to_vec(), value);
            }
        }
        written
    }
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
