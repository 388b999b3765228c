//! The on-disk compile caches.
//!
//! - Whole components: `<dir>/<sha256 of the component>-<engine fingerprint>.cwasm`, written
//!   with `Component::serialize`, read back with `Component::deserialize_file` (an mmap, no
//!   compilation). The fingerprint changes with anything that makes compiled code incompatible
//!   (wasmtime version, compiler settings, target), so a stale entry is simply never looked up.
//! - Functions ([`FunctionCache`]): Cranelift's incremental compilation cache, so a component
//!   seen for the first time compiles only the functions no earlier component had.
//!
//! Neither grows without bound if pruned ([`DiskCache::prune`], `meridian cache prune`): a
//! compiled component's mtime is its last use (refreshed when it is loaded and at least a day
//! old, so a run pays no metadata write), an entry of another engine can never be loaded, and a
//! pack's mtime is its last write.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
        let modified = std::fs::metadata(&path).ok()?.modified().ok();
        // SAFETY: `deserialize_file` requires a file produced by `Component::serialize` for a
        // compatible engine and not modified since. This sandbox wrote it (`store` below), under a
        // name keyed by the component's sha256 and the engine's compatibility fingerprint, via an
        // atomic rename, in a directory created 0700. wasmtime additionally checks the header and
        // engine compatibility and returns an error (handled below) on mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                refresh_mtime(&path, modified);
                Some(c)
            }
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

/// How stale a used entry's mtime may get before a load refreshes it (one metadata write a day
/// per component, not one a run).
const REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A temporary file older than this belongs to a write that was interrupted (a write takes
/// seconds).
const LEFTOVER_AFTER: Duration = Duration::from_secs(3600);

/// Marks `path` used now when its mtime is older than [`REFRESH_AFTER`]; failures only make the
/// entry look older to `prune`.
fn refresh_mtime(path: &Path, modified: Option<SystemTime>) {
    let stale = modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age >= REFRESH_AFTER);
    if stale
        && let Err(e) = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()))
    {
        tracing::debug!(path = %path.display(), error = %e, "could not mark a compile-cache entry used");
    }
}

/// Why [`DiskCache::prune`] removes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PruneReason {
    /// A compiled component of another engine (another wasmtime, compiler settings or CPU
    /// features): it is never looked up again.
    OtherEngine,
    /// A compiled component not loaded for the given age.
    Unused,
    /// A function-cache pack not written for the given age.
    OldPack,
    /// What an interrupted write left behind.
    Leftover,
}

/// What [`DiskCache::prune`] removed (or, in a dry run, would remove) and what it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Each file removed, its size and why.
    pub removed: Vec<(PathBuf, u64, PruneReason)>,
    /// Compiled components and packs kept: how many, how many bytes.
    pub kept: (u64, u64),
    /// Files that could not be removed, with the error (the rest are still pruned).
    pub errors: Vec<(PathBuf, String)>,
}

impl DiskCache {
    /// Removes what this cache no longer needs: compiled components of another engine, compiled
    /// components not loaded and function packs not written for `older_than`, and temporary
    /// files of interrupted writes. Other files (pulled OCI steps under `oci/`) are left alone.
    /// With `dry_run`, reports what it would remove.
    pub(crate) fn prune(&self, older_than: Duration, dry_run: bool) -> Pruned {
        let mut out = Pruned::default();
        let now = SystemTime::now();
        let age = |m: &std::fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default()
        };
        let suffix = format!("-{}.cwasm", self.fingerprint);
        let mut visit = |dir: &Path, pack: bool| {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                let reason = if name.starts_with('.') && name.ends_with(".tmp") {
                    if age(&meta) < LEFTOVER_AFTER {
                        continue; // a write in progress
                    }
                    Some(PruneReason::Leftover)
                } else if pack && name.ends_with(".pack") {
                    Some(PruneReason::OldPack).filter(|_| age(&meta) >= older_than)
                } else if !pack && name.ends_with(".cwasm") {
                    if !name.ends_with(&suffix) {
                        Some(PruneReason::OtherEngine)
                    } else {
                        Some(PruneReason::Unused).filter(|_| age(&meta) >= older_than)
                    }
                } else {
                    continue;
                };
                let Some(reason) = reason else {
                    out.kept.0 += 1;
                    out.kept.1 += meta.len();
                    continue;
                };
                if !dry_run && let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        out.errors.push((path, e.to_string()));
                    }
                    continue;
                }
                out.removed.push((path, meta.len(), reason));
            }
        };
        visit(&self.dir, false);
        visit(&self.dir.join("functions"), true);
        out.removed.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// A file of `len` bytes last modified `age` ago.
    fn file(path: &Path, len: usize, age: Duration) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; len]).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        path.to_owned()
    }

    fn names(p: &Pruned) -> Vec<(String, PruneReason)> {
        p.removed
            .iter()
            .map(|(path, _, r)| (path.file_name().unwrap().to_string_lossy().into_owned(), *r))
            .collect()
    }

    #[test]
    fn prune_removes_what_cannot_or_was_not_used_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cache = DiskCache::open(d, &Engine::default()).unwrap();
        let fp = &cache.fingerprint;
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let fresh = file(&d.join(format!("{a}-{fp}.cwasm")), 100, DAY);
        file(&d.join(format!("{b}-{fp}.cwasm")), 200, 40 * DAY);
        file(
            &d.join(format!("{a}-0123456789abcdef.cwasm")),
            300,
            Duration::ZERO,
        );
        file(
            &d.join(format!(".{a}.1.0.tmp")),
            10,
            2 * 3600 * Duration::from_secs(1),
        );
        let writing = file(&d.join(format!(".{b}.2.0.tmp")), 10, Duration::from_secs(5));
        let new_pack = file(&d.join("functions/1-1.pack"), 1000, 2 * DAY);
        file(&d.join("functions/2-2.pack"), 2000, 31 * DAY);
        let pulled = file(&d.join("oci/blobs/sha256").join(&a), 50, 400 * DAY);
        let other = file(&d.join("notes.txt"), 5, 400 * DAY);

        let dry = cache.prune(30 * DAY, true);
        let want = vec![
            (
                format!("{a}-0123456789abcdef.cwasm"),
                PruneReason::OtherEngine,
            ),
            (format!("{b}-{fp}.cwasm"), PruneReason::Unused),
            ("2-2.pack".to_owned(), PruneReason::OldPack),
            (format!(".{a}.1.0.tmp"), PruneReason::Leftover),
        ];
        assert_eq!(names(&dry), want);
        assert_eq!(dry.kept, (2, 1100), "the fresh component and the new pack");
        assert!(
            dry.removed.iter().all(|(p, _, _)| p.exists()),
            "a dry run removes nothing"
        );
        assert_eq!(
            dry.removed.iter().map(|(_, n, _)| n).sum::<u64>(),
            300 + 200 + 2000 + 10
        );

        let done = cache.prune(30 * DAY, false);
        assert_eq!(names(&done), want);
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert!(done.removed.iter().all(|(p, _, _)| !p.exists()));
        for kept in [&fresh, &writing, &new_pack, &pulled, &other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(
            cache.prune(30 * DAY, false).removed.is_empty(),
            "nothing left to prune"
        );
    }

    #[test]
    fn loading_a_component_marks_it_used() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = DiskCache::open(dir.path(), &engine).unwrap();
        // The smallest component: its preamble (magic, version 0x0d, layer 1).
        let component = Component::from_binary(&engine, b"\0asm\x0d\0\x01\0").unwrap();
        let digest = "c".repeat(64);
        cache.store(&digest, &component).unwrap();
        let path = cache.path(&digest);
        let old = SystemTime::now() - 40 * DAY;
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();

        assert!(cache.load(&engine, &digest).is_some());
        let used = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > old + 39 * DAY, "the load did not refresh the mtime");
        assert!(cache.prune(30 * DAY, false).removed.is_empty());
        // A recent use is not rewritten at every load (no metadata write per run).
        let recent = SystemTime::now() - 3600 * Duration::from_secs(1);
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(recent)
            .unwrap();
        assert!(cache.load(&engine, &digest).is_some());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            recent
        );
        assert_eq!(
            names(&cache.prune(Duration::from_secs(60), false)),
            vec![(
                format!("{digest}-{}.cwasm", cache.fingerprint),
                PruneReason::Unused
            )]
        );
    }
}
