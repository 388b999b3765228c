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

/// Longest a step waits in all, within one attempt, for servers that answer 429 with a
/// `Retry-After`; a longer wait is left to the step's `retry:` backoff.
pub const THROTTLE_WAIT_MS: u64 = 20_000;

/// How many times a request answered 429 with a `Retry-After` is sent again within one attempt.
pub const THROTTLE_RESENDS: u32 = 2;

impl Env<'_> {
    /// Sends `req` and maps a transport failure to the step error every vendor reports for it
    /// ([`StepError::transport`], naming `what` and the request URL). Any HTTP status is `Ok`:
    /// what a status means is the vendor's to say.
    ///
    /// A 429 (too many requests: the server did not act on it, so sending it again is safe,
    /// whatever the method) with a `Retry-After` the server is waited for and the request sent
    /// again, up to [`THROTTLE_RESENDS`] times and [`THROTTLE_WAIT_MS`] in all (Cloudflare
    /// answers its rate limit so): the step's `retry:` backoff, which knows nothing of the
    /// server's answer, retried too early and spent its attempts. A longer wait, or a 429
    /// without the header, is the step's to report, as before.
    pub fn send(&self, what: &str, req: Request) -> Result<Response, StepError> {
        let mut waited = 0u64;
        let mut resends = 0;
        loop {
            let resp = self
                .http
                .send(&req)
                .map_err(|e| StepError::transport(what, &req.url, e))?;
            if resp.status != 429 || resends == THROTTLE_RESENDS {
                return Ok(resp);
            }
            let Some(wait) = resp
                .header("retry-after")
                .and_then(|v| retry_after_ms(v, self.clock.now_unix_ms()))
            else {
                return Ok(resp);
            };
            if waited.saturating_add(wait) > THROTTLE_WAIT_MS {
                self.log.warn(&format!(
                    "{what}: throttled (HTTP 429); the server asks to wait {}s (Retry-After), longer than a step waits within one attempt ({}s): the step's `retry:` decides when it tries again",
                    wait.div_ceil(1000),
                    THROTTLE_WAIT_MS / 1000
                ));
                return Ok(resp);
            }
            self.log.info(&format!(
                "{what}: throttled (HTTP 429); waiting {} ms as the server's Retry-After asks, then sending again",
                wait
            ));
            self.clock.sleep_ms(wait);
            waited += wait;
            resends += 1;
        }
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

/// A `Retry-After` value as milliseconds from `now_ms`: delay-seconds, or an HTTP-date
/// (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`; a date already past is 0). `None` for
/// anything else, which is ignored.
fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = imf_fixdate_ms(v)?;
    Some(at.saturating_sub(now_ms))
}

/// Milliseconds since the Unix epoch of an IMF-fixdate (RFC 9110 §5.6.7).
fn imf_fixdate_ms(v: &str) -> Option<u64> {
    let mut parts = v.split_ascii_whitespace();
    let (_day, dd, mon, yyyy, hms, gmt) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if gmt != "GMT" || parts.next().is_some() {
        return None;
    }
    let day: u64 = dd.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == mon)? as u64
        + 1;
    let year: u64 = yyyy.parse().ok().filter(|y| *y >= 1970)?;
    let mut t = hms.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if t.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let (y, mp) = if month > 2 {
        (year, month - 3)
    } else {
        (year - 1, month + 9)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 24 + h) * 60 + m) * 60_000 + sec * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTransport;

    fn throttled(retry_after: Option<&str>) -> Response {
        let mut r = Response::new(429, "slow down");
        if let Some(v) = retry_after {
            r.headers.push(("retry-after".into(), v.into()));
        }
        r
    }

    /// Sends one GET through `send` over `answers` (in order, the last repeated); returns the
    /// final status, the requests sent and the milliseconds the clock moved.
    fn send_over(answers: Vec<Response>) -> (u16, usize, u64) {
        let sent = std::cell::Cell::new(0);
        let http = FakeTransport::new(|_| {
            let n = sent.replace(sent.get() + 1);
            Ok(answers[n.min(answers.len() - 1)].clone())
        });
        let clock = FakeClock::at(1_000_000);
        let env = Env {
            http: &http,
            secrets: &MapSecrets::from_pairs([]),
            clock: &clock,
            log: &NoLog,
        };
        let resp = env
            .send(
                "set weights",
                Request::new("GET", "http://api.example/zones"),
            )
            .unwrap();
        (
            resp.status,
            http.requests().len(),
            clock.now_unix_ms() - 1_000_000,
        )
    }

    #[test]
    fn a_429_with_retry_after_is_waited_for_and_sent_again() {
        let ok = Response::new(200, "{}");
        assert_eq!(
            send_over(vec![throttled(Some("2")), ok.clone()]),
            (200, 2, 2_000)
        );
        // At most THROTTLE_RESENDS times; then the 429 is the step's to report.
        assert_eq!(send_over(vec![throttled(Some("1"))]), (429, 3, 2_000));
        // The server's date, not a count of seconds (3 s after the fake clock's start).
        assert_eq!(
            send_over(vec![
                throttled(Some("Thu, 01 Jan 1970 00:16:43 GMT")),
                ok.clone()
            ]),
            (200, 2, 3_000)
        );
    }

    #[test]
    fn a_429_without_a_usable_retry_after_or_asking_too_long_is_returned_at_once() {
        assert_eq!(send_over(vec![throttled(None)]), (429, 1, 0));
        assert_eq!(send_over(vec![throttled(Some("soon"))]), (429, 1, 0));
        assert_eq!(send_over(vec![throttled(Some("120"))]), (429, 1, 0));
        // 503 is not resent: the server may have acted on it.
        let mut busy = Response::new(503, "");
        busy.headers.push(("retry-after".into(), "1".into()));
        assert_eq!(send_over(vec![busy]), (503, 1, 0));
    }

    #[test]
    fn http_dates_read_as_unix_time() {
        assert_eq!(
            imf_fixdate_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(imf_fixdate_ms("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(imf_fixdate_ms("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        // A date already past means now.
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 900_000_000_000),
            Some(0)
        );
    }

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
