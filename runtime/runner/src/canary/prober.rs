//! The canary prober: several clients, each sending requests at a steady rate through the name
//! users use, resolved by the GSLB's DNS server and kept for the answer's TTL as a client's
//! resolver would; a fresh connection per request. Real clients resolved at different moments,
//! so their cached answers expire at different moments: client i of N keeps its first answer
//! for (i + 1)/N of its TTL, spreading the clients evenly across the TTL cycle. A client's
//! downtime is from its first failed request to its first success after which nothing failed;
//! the drill's downtime is the worst client's (one client's was wherever it happened to be in
//! the cycle).

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
    /// How many clients probe, each at `rate`.
    pub clients: u32,
}

/// Each client's requests: when each was sent (Unix ms) and whether it succeeded.
#[derive(Debug, Default)]
pub(super) struct ProbeLog {
    clients: Vec<Vec<(u64, bool)>>,
    first_error: Option<String>,
    setup_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct ProberFigures {
    pub requests_sent: u64,
    pub requests_failed: u64,
    /// The worst client's downtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// The best client's, when several probed: the spread is the DNS TTL's share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_best_ms: Option<u64>,
    /// Each client's downtime in client order (`null`: it had not recovered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub downtime_by_client_ms: Vec<Option<u64>>,
    /// Any client's first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure_at_ms: Option<u64>,
    /// The last client's first success after which none of its requests failed.
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
    /// The share of its TTL the first answer is kept for (the client's place in the cycle).
    first: Arc<Mutex<Option<f64>>>,
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
                    let share = me.first.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let until = Instant::now() + ttl.mul_f64(share.unwrap_or(1.0));
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

/// A client whose first answer is kept for `share` of its TTL.
fn client(plan: &ProberPlan, share: f64) -> Result<reqwest::Client, String> {
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
            first: Arc::new(Mutex::new(Some(share))),
        }));
    }
    b.build()
        .map_err(|e| format!("building the prober's HTTP client: {e}"))
}

/// The latest failure and success (Unix ms), shared with whoever waits for a lasting recovery.
pub(super) type Latest = Arc<Mutex<(Option<u64>, Option<u64>)>>;

/// Probes with every client until `stop` turns true.
pub(super) async fn run(plan: ProberPlan, latest: Latest, stop: watch::Receiver<bool>) -> ProbeLog {
    let n = plan.clients.max(1);
    let mut http = Vec::with_capacity(n as usize);
    for i in 0..n {
        match client(&plan, f64::from(i + 1) / f64::from(n)) {
            Ok(c) => http.push(c),
            Err(e) => {
                return ProbeLog {
                    setup_error: Some(e),
                    ..ProbeLog::default()
                };
            }
        }
    }
    let first_error = Mutex::new(None);
    let each = http
        .iter()
        .map(|h| probe_until(h, &plan, &latest, &first_error, stop.clone()));
    ProbeLog {
        clients: futures::future::join_all(each).await,
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        setup_error: None,
    }
}

/// One client's requests at the plan's rate until `stop` turns true.
async fn probe_until(
    http: &reqwest::Client,
    plan: &ProberPlan,
    latest: &Latest,
    first_error: &Mutex<Option<String>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(u64, bool)> {
    let mut samples = Vec::new();
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
        let result = probe(http, plan).await;
        if let Err(e) = &result {
            first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.clone());
        }
        samples.push((at, result.is_ok()));
        let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
        if result.is_ok() {
            l.1 = Some(at);
        } else {
            l.0 = Some(at);
        }
    }
    samples
}

/// One request, as the prober sends them (readiness asks once).
pub(super) async fn once(plan: &ProberPlan) -> Result<(), String> {
    probe(&client(plan, 1.0)?, plan).await
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
    let all = log.clients.iter().flatten();
    let mut f = ProberFigures {
        requests_sent: all.clone().count() as u64,
        requests_failed: all.clone().filter(|(_, ok)| !ok).count() as u64,
        prober_first_error: log.first_error,
        ..ProberFigures::default()
    };
    if let Some(e) = log.setup_error {
        f.prober_not_measured = Some(e);
        return f;
    }
    if !all.clone().any(|(_, ok)| *ok) {
        f.prober_not_measured = Some(
            "no request ever succeeded: check `prober.url` and `prober.dns` (the service must answer before the fault)"
                .to_string(),
        );
        return f;
    }
    // Each client that sent anything: (first failure, lasting success).
    let spans: Vec<(Option<u64>, Option<u64>)> = log
        .clients
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| downtime(c))
        .collect();
    f.downtime_by_client_ms = spans
        .iter()
        .map(|span| match *span {
            (None, _) => Some(0),
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            (Some(_), None) => None,
        })
        .collect();
    f.first_failure_at_ms = spans.iter().filter_map(|s| s.0).min();
    let recovered = f.downtime_by_client_ms.iter().all(Option::is_some);
    if recovered {
        f.lasting_success_at_ms = spans.iter().filter_map(|s| s.1).max();
        f.downtime_ms = f.downtime_by_client_ms.iter().flatten().max().copied();
        if f.downtime_by_client_ms.len() > 1 {
            f.downtime_best_ms = f.downtime_by_client_ms.iter().flatten().min().copied();
        }
    } else {
        f.prober_not_measured = Some(
            "the service had not recovered for every client when the canaries stopped".to_string(),
        );
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
            clients: vec![s.to_vec()],
            ..ProbeLog::default()
        };
        let f = figures(log);
        assert_eq!(
            (f.requests_sent, f.requests_failed, f.downtime_ms),
            (6, 2, Some(300))
        );
    }

    /// The drill's downtime is the worst client's: one whose cached answer expired late waited
    /// longer than one that moved early; one that never failed counts 0, and one that had not
    /// recovered leaves the figure unmeasured.
    #[test]
    fn the_downtime_is_the_worst_clients() {
        let early = vec![(0, true), (100, false), (200, true), (300, true)];
        let late = vec![
            (0, true),
            (100, false),
            (200, false),
            (300, false),
            (400, true),
        ];
        let lucky = vec![(0, true), (150, true)];
        let f = figures(ProbeLog {
            clients: vec![early.clone(), late, lucky],
            ..ProbeLog::default()
        });
        assert_eq!(f.downtime_by_client_ms, [Some(100), Some(300), Some(0)]);
        assert_eq!((f.downtime_ms, f.downtime_best_ms), (Some(300), Some(0)));
        assert_eq!(
            (f.first_failure_at_ms, f.lasting_success_at_ms),
            (Some(100), Some(400))
        );
        assert_eq!((f.requests_sent, f.requests_failed), (11, 4));
        let stuck = vec![(0, true), (100, false)];
        let f = figures(ProbeLog {
            clients: vec![early, stuck],
            ..ProbeLog::default()
        });
        assert_eq!(f.downtime_ms, None);
        assert!(f.prober_not_measured.unwrap().contains("every client"));
    }

    #[test]
    fn a_prober_that_never_succeeded_measured_nothing() {
        let log = ProbeLog {
            clients: vec![vec![(0, false), (100, false)]],
            ..ProbeLog::default()
        };
        let f = figures(log);
        assert!(f.downtime_ms.is_none());
        assert!(f.prober_not_measured.unwrap().contains("prober.url"));
    }
}
