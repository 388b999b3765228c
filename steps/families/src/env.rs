//! What step logic needs from its surroundings besides HTTP: secrets, a clock, a log.
//!
//! Inside a component these are the host's `secrets` and `log` interfaces and WASI clocks; in
//! host tests they are the simple implementations below.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_sdk::http::{Request, Response, Transport};

use crate::error::StepError;

/// Reads secret values by name. Only names granted to the step resolve.
pub trait Secrets {
    /// The value of secret `name`, or why it is unavailable.
    fn get(&self, name: &str) -> Result<String, String>;
}

/// Wall-clock time and sleeping, so polling loops can be tested without waiting.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;
    /// Blocks for `ms` milliseconds.
    fn sleep_ms(&self, ms: u64);
}

/// A sink for progress messages (the host tags them with run/step/attempt and masks secrets).
pub trait Log {
    /// An informational message.
    fn info(&self, msg: &str);
    /// Something the operator should look at; the step still goes on.
    fn warn(&self, msg: &str);
}

/// Everything a family step runs against. Cheap to build: four references.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// Outbound HTTP.
    pub http: &'a dyn Transport,
    /// Secret values by name.
    pub secrets: &'a dyn Secrets,
    /// Time and sleeping.
    pub clock: &'a dyn Clock,
    /// Progress messages.
    pub log: &'a dyn Log,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env { .. }")
    }
}

impl Env<'_> {
    /// Sends `req` and maps a transport failure to the step error every vendor reports for it
    /// ([`StepError::transport`], naming `what` and the request URL). Any HTTP status is `Ok`:
    /// what a status means is the vendor's to say.
    pub fn send(&self, what: &str, req: Request) -> Result<Response, StepError> {
        self.http
            .send(&req)
            .map_err(|e| StepError::transport(what, &req.url, e))
    }

    /// The secret `name`, or a fatal error telling the operator to grant it.
    pub fn secret(&self, name: &str, purpose: &str) -> Result<String, StepError> {
        match self.secrets.get(name) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(StepError::fatal(format!(
                "secret `{name}` ({purpose}) is empty"
            ))),
            Err(why) => Err(StepError::fatal(format!(
                "secret `{name}` ({purpose}) is not available: {why}; declare it under `secrets:` and grant it to this step"
            ))),
        }
    }
}

/// The real clock: `SystemTime` and `thread::sleep`, which on wasm32-wasip2 are WASI
/// `wall-clock` and `monotonic-clock` calls (the host's epoch deadline still bounds the step).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdClock;

impl Clock for StdClock {
    fn now_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Secrets from a map, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(pub BTreeMap<String, String>);

impl MapSecrets {
    /// A map from `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl Secrets for MapSecrets {
    fn get(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no secret named `{name}`"))
    }
}

/// A log that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLog;

impl Log for NoLog {
    fn info(&self, _msg: &str) {}
    fn warn(&self, _msg: &str) {}
}

/// A log that writes to stderr (captured into the step log inside a component).
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

impl Log for StderrLog {
    fn info(&self, msg: &str) {
        eprintln!("info: {msg}");
    }
    fn warn(&self, msg: &str) {
        eprintln!("warn: {msg}");
    }
}

/// A clock that never sleeps: `sleep_ms` advances its own time. Makes polling loops instant
/// and deterministic in unit tests.
#[derive(Debug, Default)]
pub struct FakeClock {
    now_ms: std::sync::atomic::AtomicU64,
}

impl FakeClock {
    /// A clock starting at `unix_ms`.
    pub fn at(unix_ms: u64) -> Self {
        Self {
            now_ms: std::sync::atomic::AtomicU64::new(unix_ms),
        }
    }
}

impl Clock for FakeClock {
    fn now_unix_ms(&self) -> u64 {
        self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn sleep_ms(&self, ms: u64) {
        self.now_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_secret_is_fatal_and_names_it() {
        let secrets = MapSecrets::from_pairs([("A", "1"), ("EMPTY", "")]);
        let http = crate::testing::FakeTransport::new(|_| unreachable!());
        let env = Env {
            http: &http,
            secrets: &secrets,
            clock: &StdClock,
            log: &NoLog,
        };
        assert_eq!(env.secret("A", "x").unwrap(), "1");
        let e = env.secret("B", "the API key").unwrap_err();
        assert!(
            matches!(&e, StepError::Fatal(m) if m.contains("`B`") && m.contains("the API key"))
        );
        assert!(matches!(env.secret("EMPTY", "x"), Err(StepError::Fatal(_))));
    }

    #[test]
    fn fake_clock_advances_on_sleep() {
        let c = FakeClock::at(1000);
        c.sleep_ms(250);
        assert_eq!(c.now_unix_ms(), 1250);
    }
}
