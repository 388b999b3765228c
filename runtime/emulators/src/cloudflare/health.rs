//! Origin and pool health: forced states, real monitor probes against origins, and
//! `GET .../pools/{id}/health`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::api::check_account;
use super::envelope::{CfError, bad_identifier, finish, success};
use super::{CfState, Cloudflare, str_of};
use crate::http::HttpClient;
use crate::ids;

/// The result of one monitor run against one origin.
#[derive(Clone, Debug)]
pub(super) struct Probe {
    healthy: bool,
    rtt: Duration,
    failure_reason: String,
    response_code: u16,
}

impl Cloudflare {
    /// Forces the health of every origin with this address (in every pool), overriding probes —
    /// how tests and the lab make a region "fail" without stopping it.
    pub fn set_origin_health(&self, address: &str, healthy: bool) {
        self.state().overrides.insert(address.to_owned(), healthy);
    }

    /// Removes a forced health, so probes (or the healthy default) apply again.
    pub fn clear_origin_health(&self, address: &str) {
        self.state().overrides.remove(address);
    }

    /// Runs every enabled pool's monitor once against each enabled origin, concurrently, and
    /// records the results for the health endpoint. HTTP monitors send `method` to
    /// `http://<address>:<port or 80><path>` with the monitor's (and origin's) headers and
    /// expect `expected_codes` and `expected_body`; TCP monitors connect. Each origin gets
    /// `retries + 1` attempts of at most `timeout` seconds. Costs one task per origin.
    pub async fn probe_now(&self) {
        let jobs: Vec<(String, String, Value, Map<String, Value>)> = {
            let st = self.state();
            let mut jobs = Vec::new();
            for pool in st.pools.iter().filter(|p| p["enabled"] == true) {
                let Some(mon) = pool["monitor"]
                    .as_str()
                    .and_then(|m| st.monitors.iter().find(|x| x["id"] == m))
                else {
                    continue;
                };
                for origin in pool["origins"].as_array().into_iter().flatten() {
                    if origin["enabled"] != true {
                        continue;
                    }
                    let headers = origin
                        .get("header")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    jobs.push((
                        str_of(&pool["id"]),
                        str_of(&origin["address"]),
                        mon.clone(),
                        headers,
                    ));
                }
            }
            jobs
        };
        let mut set = tokio::task::JoinSet::new();
        for (pool_id, address, mon, origin_headers) in jobs {
            let client = self.inner.client.clone();
            set.spawn(async move {
                let probe = run_monitor(&client, &mon, &address, &origin_headers).await;
                (pool_id, address, probe)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((pool_id, address, Some(probe))) = done {
                self.state().probes.insert((pool_id, address), probe);
            }
        }
    }

    /// Spawns a task that calls [`Cloudflare::probe_now`] every `every` until aborted (abort the
    /// returned handle, e.g. on lab shutdown).
    pub fn spawn_prober(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let cf = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                cf.probe_now().await;
            }
        })
    }

    /// Whether a pool is healthy now; `None` for an unknown pool.
    pub fn pool_healthy(&self, pool_id: &str) -> Option<bool> {
        let st = self.state();
        let pool = st.pools.iter().find(|p| p["id"] == pool_id)?;
        Some(pool_is_healthy(&st, pool))
    }
}

/// `(healthy, rtt, failure_reason, response_code)` of one origin in one pool.
pub(super) fn origin_health(
    st: &CfState,
    pool: &Value,
    origin: &Value,
) -> (bool, Duration, String, u16) {
    if origin["enabled"] != true {
        return (false, Duration::ZERO, "Origin disabled".into(), 0);
    }
    let address = str_of(&origin["address"]);
    if let Some(&forced) = st.overrides.get(&address) {
        return if forced {
            (true, Duration::ZERO, "No failures".into(), 200)
        } else {
            (false, Duration::ZERO, "Marked unhealthy".into(), 0)
        };
    }
    match st.probes.get(&(str_of(&pool["id"]), address)) {
        Some(p) => (p.healthy, p.rtt, p.failure_reason.clone(), p.response_code),
        None => (true, Duration::ZERO, "No failures".into(), 200),
    }
}

pub(super) fn pool_is_healthy(st: &CfState, pool: &Value) -> bool {
    if pool["enabled"] != true {
        return false;
    }
    let healthy = pool["origins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| origin_health(st, pool, o).0)
        .count();
    let minimum = pool["minimum_origins"].as_u64().unwrap_or(1);
    u64::try_from(healthy).unwrap_or(u64::MAX) >= minimum
}

/// Whether `code` satisfies a Cloudflare `expected_codes` pattern (`200`, `2xx`, `20x`).
fn code_matches(expected: &str, code: u16) -> bool {
    let code = code.to_string();
    expected.len() == 3
        && expected
            .bytes()
            .zip(code.bytes())
            .all(|(e, c)| e == b'x' || e == b'X' || e == c)
}

/// Runs one monitor against one origin; `None` when the monitor type is not probed.
async fn run_monitor(
    client: &HttpClient,
    mon: &Value,
    address: &str,
    origin_headers: &Map<String, Value>,
) -> Option<Probe> {
    let ty = mon["type"].as_str().unwrap_or("http");
    let timeout = Duration::from_secs(mon["timeout"].as_u64().unwrap_or(5));
    let attempts = mon["retries"].as_u64().unwrap_or(0) + 1;
    let port = match mon["port"].as_u64().unwrap_or(0) {
        0 => 80,
        p => u16::try_from(p).unwrap_or(80),
    };
    let host = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let mut last = None;
    for _ in 0..attempts {
        let started = Instant::now();
        let probe = match ty {
            "http" => http_probe(client, mon, &host, origin_headers, timeout, started).await,
            "tcp" => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&host)).await {
                    Ok(Ok(_)) => Probe {
                        healthy: true,
                        rtt: started.elapsed(),
                        failure_reason: "No failures".into(),
                        response_code: 0,
                    },
                    Ok(Err(e)) => failed(format!("TCP connection failed: {e}")),
                    Err(_) => failed("TCP connection timed out".into()),
                }
            }
            _ => return None,
        };
        let healthy = probe.healthy;
        last = Some(probe);
        if healthy {
            break;
        }
    }
    last
}

fn failed(reason: String) -> Probe {
    Probe {
        healthy: false,
        rtt: Duration::ZERO,
        failure_reason: reason,
        response_code: 0,
    }
}

async fn http_probe(
    client: &HttpClient,
    mon: &Value,
    host: &str,
    origin_headers: &Map<String, Value>,
    timeout: Duration,
    started: Instant,
) -> Probe {
    let path = mon["path"].as_str().unwrap_or("/");
    let method = Method::from_bytes(mon["method"].as_str().unwrap_or("GET").as_bytes())
        .unwrap_or(Method::GET);
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"));
    let empty = Map::new();
    let mon_headers = mon["header"].as_object().unwrap_or(&empty);
    for (k, vals) in mon_headers.iter().chain(origin_headers.iter()) {
        for v in vals
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                req = req.header(n, v);
            }
        }
    }
    let Ok(req) = req.body(Body::empty()) else {
        return failed("invalid monitor request".into());
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(Body::new(resp.into_body()), 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => failed("HTTP timeout occurred".into()),
        Ok(Err(e)) => failed(format!("TCP connection failed: {e}")),
        Ok(Ok((status, body))) => {
            let expected = mon["expected_codes"].as_str().unwrap_or("200");
            let want_body = mon["expected_body"].as_str().unwrap_or_default();
            let rtt = started.elapsed();
            if !code_matches(expected, status) {
                Probe {
                    healthy: false,
                    rtt,
                    failure_reason: "HTTP response code does not match expected codes".into(),
                    response_code: status,
                }
            } else if !want_body.is_empty() && !String::from_utf8_lossy(&body).contains(want_body) {
                Probe {
                    healthy: false,
                    rtt,
                    failure_reason: "Response body does not match expected body".into(),
                    response_code: status,
                }
            } else {
                Probe {
                    healthy: true,
                    rtt,
                    failure_reason: "No failures".into(),
                    response_code: status,
                }
            }
        }
    }
}

pub(super) async fn pool_health(
    State(cf): State<Cloudflare>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    finish(check_account(&cf, &account, &path).and_then(|()| {
        if !ids::is_hex32(&id) {
            return Err(bad_identifier(&path));
        }
        let st = cf.state();
        let pool = st
            .pools
            .iter()
            .find(|p| p["id"] == id.as_str())
            .ok_or_else(|| CfError::not_found("pool"))?;
        if pool["monitor"].as_str().is_none() {
            return Err(CfError::new(
                StatusCode::BAD_REQUEST,
                1002,
                "Health info unavailable: the pool has no monitor",
            ));
        }
        let origins: Vec<Value> = pool["origins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let (healthy, rtt, reason, code) = origin_health(&st, pool, o);
                let mut m = Map::new();
                m.insert(
                    str_of(&o["address"]),
                    json!({
                        "healthy": healthy,
                        "rtt": format!("{:.1}ms", rtt.as_secs_f64() * 1000.0),
                        "failure_reason": reason,
                        "response_code": code,
                    }),
                );
                Value::Object(m)
            })
            .collect();
        let regions: Vec<String> = match pool["check_regions"].as_array() {
            Some(r) if !r.is_empty() => r.iter().map(str_of).collect(),
            _ => vec!["ALL_REGIONS".to_owned()],
        };
        let healthy = pool_is_healthy(&st, pool);
        let pop_health: Map<String, Value> = regions
            .into_iter()
            .map(|r| (r, json!({"healthy": healthy, "origins": origins})))
            .collect();
        Ok(success(&json!({"pool_id": id, "pop_health": pop_health})))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_codes_patterns() {
        assert!(code_matches("200", 200));
        assert!(!code_matches("200", 201));
        assert!(code_matches("2xx", 204));
        assert!(code_matches("20x", 204));
        assert!(!code_matches("2xx", 503));
    }
}
