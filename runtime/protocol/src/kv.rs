//! Per-run key-value state: what a step keeps so that its compensation can undo it (the state a
//! record had before a GSLB switch, whether a primary was fenced). It lives in the run's journal,
//! so it survives a killed runner and follows a run to whichever worker takes it over.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Total size (keys plus values) one run's store may hold.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// The store could not do what was asked. The text goes back to the step (for `set`) or ends
/// the step with a host error (for reads, which the WIT declares infallible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A size limit; the message names it.
    #[error("{0}")]
    Limit(String),
    /// The backing journal failed.
    #[error("kv store: {0}")]
    Store(String),
}

/// Checks one write against the limits, given the run's current total and the size of the
/// entry it replaces (0 when new). Every [`KvStore`] applies the same rule through this.
pub fn check_write(
    key: &str,
    value: &[u8],
    current_total: usize,
    replaced: usize,
) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Limit(format!(
            "kv key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Limit(format!(
            "kv value is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    if current_total.saturating_sub(replaced) + key.len() + value.len() > MAX_TOTAL_BYTES {
        return Err(KvError::Limit(format!(
            "kv store is full ({MAX_TOTAL_BYTES} bytes per run)"
        )));
    }
    Ok(())
}

/// Per-run key/value state. Implementations are called from the sandbox's async host functions:
/// they must not block for long (a durable store commits one small transaction per write).
pub trait KvStore: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores a value, durably before it returns for a journal-backed store.
    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    /// Removes a key; returns whether it existed.
    fn delete(&self, key: &str) -> Result<bool, KvError>;
    /// Keys starting with `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError>;
}

/// One step's view of a run's kv: its own keys live under `step/<step>/`, and a key `NS/…` whose
/// namespace `NS` the step was granted (`grants.kv`) under `shared/NS/…`. A step without a grant
/// cannot read or overwrite what another step stored.
pub struct ScopedKv {
    inner: std::sync::Arc<dyn KvStore>,
    own: String,
    shared: Vec<String>,
}

impl ScopedKv {
    /// `step` is the step id; a matrix leg's brackets are dropped, so the legs of one step
    /// share its namespace (as they share its code).
    pub fn new(inner: std::sync::Arc<dyn KvStore>, step: &str, shared: Vec<String>) -> ScopedKv {
        let step = step.split('[').next().unwrap_or(step);
        ScopedKv {
            inner,
            own: format!("step/{step}/"),
            shared,
        }
    }

    fn map(&self, key: &str) -> String {
        match key.split_once('/') {
            Some((ns, _)) if self.shared.iter().any(|s| s == ns) => format!("shared/{key}"),
            _ => format!("{}{key}", self.own),
        }
    }
}

impl KvStore for ScopedKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(&self.map(key))
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.inner.set(&self.map(key), value)
    }

    fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.inner.delete(&self.map(key))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mapped = self.map(prefix);
        let strip = if mapped.starts_with("shared/") {
            "shared/".len()
        } else {
            self.own.len()
        };
        Ok(self
            .inner
            .keys(&mapped)?
            .into_iter()
            .map(|k| k[strip..].to_string())
            .collect())
    }
}

/// An in-memory [`KvStore`]: for tests and for runs without a journal.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryKv {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-updated.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KvStore for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map().get(key).cloned())
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut map = self.map();
        let current: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        let replaced = map.get(key).map_or(0, |v| key.len() + v.len());
        check_write(key, &value, current, replaced)?;
        map.insert(key.to_owned(), value);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.map().remove(key).is_some())
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .map()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_kv_keeps_steps_apart_and_shares_granted_namespaces() {
        let run: std::sync::Arc<dyn KvStore> = std::sync::Arc::new(MemoryKv::default());
        let a = ScopedKv::new(run.clone(), "a", vec!["handoff".into()]);
        let b = ScopedKv::new(run.clone(), "b[eu]", vec![]);
        let c = ScopedKv::new(run.clone(), "c", vec!["handoff".into()]);
        a.set("token", b"secret".to_vec()).unwrap();
        a.set("handoff/url", b"u".to_vec()).unwrap();
        assert_eq!(b.get("token").unwrap(), None, "another step's key");
        assert_eq!(b.get("handoff/url").unwrap(), None, "not granted");
        b.set("token", b"mine".to_vec()).unwrap();
        assert_eq!(a.get("token").unwrap().unwrap(), b"secret");
        assert_eq!(c.get("handoff/url").unwrap().unwrap(), b"u");
        assert_eq!(a.keys("").unwrap(), ["token"]);
        assert_eq!(c.keys("handoff/").unwrap(), ["handoff/url"]);
        let b_other_leg = ScopedKv::new(run, "b[us]", vec![]);
        assert_eq!(b_other_leg.get("token").unwrap().unwrap(), b"mine");
    }

    #[test]
    fn memory_kv_prefix_and_limit() {
        let kv = MemoryKv::default();
        kv.set("a/1", b"x".to_vec()).unwrap();
        kv.set("a/2", b"y".to_vec()).unwrap();
        kv.set("b/1", b"z".to_vec()).unwrap();
        assert_eq!(kv.keys("a/").unwrap(), vec!["a/1", "a/2"]);
        assert!(kv.delete("a/1").unwrap());
        assert!(!kv.delete("a/1").unwrap());
        assert!(kv.set("k", vec![0; MAX_VALUE_BYTES + 1]).is_err());
        assert!(kv.set(&"k".repeat(MAX_KEY_BYTES + 1), vec![]).is_err());
        // 64 values of 1 MiB fill the store; replacing one counts only the difference.
        for i in 0..63 {
            kv.set(&format!("big/{i:02}"), vec![0; MAX_VALUE_BYTES])
                .unwrap();
        }
        assert!(kv.set("big/63", vec![0; MAX_VALUE_BYTES]).is_err());
        kv.set("big/00", vec![1; MAX_VALUE_BYTES]).unwrap();
    }
}
