//! The canary prober: requests at a steady rate through the name clients use, resolved by the
//! GSLB's DNS server and kept for the answer's TTL as a client's resolver would; a fresh
//! connection per request. Client-observed downtime is from the first failed request to the
//! first success after which nothing failed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use tokio::sync::watch;

use super::now_ms;

/// What the prober needs, resolved (templates evaluated).
#[derive(Clone, Debug)]
pub struct ProberPlan {
    pub url: String,
    pub dns: Option<SocketAddr>,
    pub rate: u32,
    pub expect: Option<String>,
    pub timeout: Duration,
}

/// One request: when it was sent (Unix ms) and whether it succeeded.
#[derive(Debug, Default)]
pub(super) struct ProbeLog {
    samples: Vec<(u64, bool)>,
    first_error: Option<String>,
    setup_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct ProberFigures {
    pub requests_sent: u64,
    pub requests_failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure_at_ms: Option<u64>,
    /// The first success after which no request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lasting_success_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prober_first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prober_not_measured: Option<String>,
}

/// A resolver that asks one DNS server and keeps the answer for its TTL.
type Cached = Option<(String, Vec<IpAddr>, Instant)>;

#[derive(Debug, Clone)]
struct TtlResolver {
    server: SocketAddr,
    cache: Arc<Mutex<Cached>>,
}

impl Resolve for TtlResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let me = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let cached = me
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|(h, _, until)| *h == host && Instant::now() < *until)
                .map(|(_, ips, _)| ips);
            let ips = match cached {
                Some(ips) => ips,
                None => {
                    let (ips, ttl) = meridian_sandbox::dns_lookup(me.server, &host).await?;
                    let until = Instant::now() + ttl;
                    *me.cache.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((host, ips.clone(), until));
                    ips
                }
            };
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

fn client(plan: &ProberPlan) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(plan.timeout)
        .connect_timeout(plan.timeout)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(server) = plan.dns {
        b = b.dns_resolver(Arc::new(TtlResolver {
            server,
            cache: Arc::new(Mutex::new(None)),
        }));
    }
    b.build()
        .map_err(|e| format!("building the prober's HTTP client: {e}"))
}

/// The latest failure and success (Unix ms), shared with whoever waits for a lasting recovery.
pub(super) type Latest = Arc<Mutex<(Option<u64>, Option<u64>)>>;

/// Probes until `stop` turns true.
pub(super) async fn run(
    plan: ProberPlan,
    latest: Latest,
    mut stop: watch::Receiver<bool>,
) -> ProbeLog {
    let mut log = ProbeLog::default();
    let http = match client(&plan) {
        Ok(c) => c,
        Err(e) => {
            log.setup_error = Some(e);
            return log;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        let at = now_ms();
        let result = probe(&http, &plan).await;
        if let Err(e) = &result {
            log.first_error.get_or_insert_with(|| e.clone());
        }
        log.samples.push((at, result.is_ok()));
        let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
        if result.is_ok() {
            l.1 = Some(at);
        } else {
            l.0 = Some(at);
        }
    }
    log
}

/// One request, as the prober sends them (readiness asks once).
pub(super) async fn once(plan: &ProberPlan) -> Result<(), String> {
    probe(&client(plan)?, plan).await
}

async fn probe(http: &reqwest::Client, plan: &ProberPlan) -> Result<(), String> {
    let resp = http.get(&plan.url).send().await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        msg
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    if let Some(want) = &plan.expect {
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !body.contains(want.as_str()) {
            return Err(format!("the answer does not contain {want:?}"));
        }
    }
    Ok(())
}

pub(super) fn figures(log: ProbeLog) -> ProberFigures {
    let mut f = ProberFigures {
        requests_sent: log.samples.len() as u64,
        requests_failed: log.samples.iter().filter(|(_, ok)| !ok).count() as u64,
        prober_first_error: log.first_error,
        ..ProberFigures::default()
    };
    if let Some(e) = log.setup_error {
        f.prober_not_measured = Some(e);
        return f;
    }
    if !log.samples.iter().any(|(_, ok)| *ok) {
        f.prober_not_measured = Some(
            "no request ever succeeded: check `prober.url` and `prober.dns` (the service must answer before the fault)"
                .to_string(),
        );
        return f;
    }
    let (first_failure, lasting) = downtime(&log.samples);
    f.first_failure_at_ms = first_failure;
    f.lasting_success_at_ms = lasting;
    f.downtime_ms = match (first_failure, lasting) {
        (None, _) => Some(0),
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        (Some(_), None) => None,
    };
    if first_failure.is_some() && lasting.is_none() {
        f.prober_not_measured =
            Some("the service had not recovered for clients when the canaries stopped".to_string());
    }
    f
}

/// The first failure's time and the time of the first success after the last failure.
fn downtime(samples: &[(u64, bool)]) -> (Option<u64>, Option<u64>) {
    let Some(first) = samples.iter().position(|(_, ok)| !ok) else {
        return (None, None);
    };
    let last_fail = samples.iter().rposition(|(_, ok)| !ok).unwrap_or(first);
    (
        Some(samples[first].0),
        samples.get(last_fail + 1).map(|(at, _)| *at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtime_runs_from_the_first_failure_to_the_lasting_success() {
        let s = [
            (0, true),
            (100, false),
            (200, true),
            (300, false),
            (400, true),
            (500, true),
        ];
        assert_eq!(downtime(&s), (Some(100), Some(400)));
        assert_eq!(downtime(&[(0, true), (100, true)]), (None, None));
        assert_eq!(downtime(&[(0, true), (100, false)]), (Some(100), None));
        let log = ProbeLog {
            samples: s.to_vec(),
            ..ProbeLog::default()
        };
        let f = figures(log);
        assert_eq!(
            (f.requests_sent, f.requests_failed, f.downtime_ms),
            (6, 2, Some(300))
        );
    }

    #[test]
    fn a_prober_that_never_succeeded_measured_nothing() {
        let log = ProbeLog {
            samples: vec![(0, false), (100, false)],
            ..ProbeLog::default()
        };
        let f = figures(log);
        assert!(f.downtime_ms.is_none());
        assert!(f.prober_not_measured.unwrap().contains("prober.url"));
    }
}
