//! Cloudflare API v4 Load Balancing (domain.md §5): monitors, pools, pool health and load
//! balancers, in memory, under `/client/v4` (point a client's base URL at
//! `http://<addr>/client/v4`).
//!
//! * Auth: `Authorization: Bearer <token>` (or the legacy `X-Auth-Email` + `X-Auth-Key` pair
//!   carrying the same secret). Missing credentials are 401 (code 9106), a wrong token 403
//!   (code 10000), an account or zone the token cannot see 403 (code 9109).
//! * Envelope: `{"success", "errors": [{code, message}], "messages", "result"}`, lists add
//!   `result_info {page, per_page, count, total_count, total_pages}` (lists are not paginated:
//!   everything comes back on page 1, as Cloudflare does for these collections).
//! * Ids are 32 hex digits; a malformed id in a path is 404 code 7003, an unknown one 404 code
//!   1001. Validation failures are 400 code 1002 `"<reason>: validation failed"`, duplicate load
//!   balancer names 400 code 1003. Writes fill Cloudflare's defaults and stamp `created_on` /
//!   `modified_on`; `PUT` replaces, `PATCH` merges top-level fields.
//! * Health: `GET .../pools/{id}/health` reports, per check region, whether the pool is healthy
//!   (enabled origins that are healthy ≥ `minimum_origins`) and each origin's state. An origin's
//!   state is, in order: forced by [`Cloudflare::set_origin_health`], the last result of
//!   [`Cloudflare::probe_now`] (which really runs the pool's HTTP or TCP monitor against the
//!   origin), or healthy when never probed. [`Cloudflare::resolve`] answers which pool and
//!   addresses a load balancer would serve.
//!
//! Not emulated: monitor/pool previews, the bulk `PATCH .../pools`, load-balancer rules,
//! analytics, HTTPS monitor probes (the emulator has no TLS; such origins stay "never probed"),
//! and geo/latency steering — [`Cloudflare::resolve`] always applies failover order.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get};
use serde_json::{Map, Value, json};

use crate::clock::rfc3339_now;
use crate::http::HttpClient;
use crate::ids;
use crate::json::json_response;

/// A zone the emulated account owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudflareZone {
    /// The zone id (32 hex digits).
    pub id: String,
    /// The zone apex, e.g. `example.com`; load balancer names must be inside it.
    pub name: String,
}

/// How the emulated Cloudflare account is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudflareConfig {
    /// The API token accepted as `Authorization: Bearer <token>`.
    pub token: String,
    /// The only account id the token can use (32 hex digits).
    pub account_id: String,
    /// The zones the token can use.
    pub zones: Vec<CloudflareZone>,
}

impl Default for CloudflareConfig {
    /// A fixed token, account and one zone `lab.meridian.test`, so the lab and tests can share
    /// them without plumbing.
    fn default() -> Self {
        CloudflareConfig {
            token: "meridian-lab-cloudflare-token".into(),
            account_id: "01a7362d577a6c3019a474fd6f485823".into(),
            zones: vec![CloudflareZone {
                id: "023e105f4ecef8ad9ca31a8372d0c353".into(),
                name: "lab.meridian.test".into(),
            }],
        }
    }
}

/// Which pool, and which origin addresses, a load balancer would answer with right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The load balancer's id.
    pub load_balancer_id: String,
    /// The pool serving traffic.
    pub pool_id: String,
    /// That pool's name.
    pub pool_name: String,
    /// The healthy, enabled origin addresses of the pool (for the fallback pool: all enabled
    /// origins, since Cloudflare serves it regardless of health).
    pub addresses: Vec<String>,
    /// True when no default pool was healthy and the fallback pool answered.
    pub fallback: bool,
}

/// Check regions Cloudflare accepts for pools and `region_pools`.
const REGIONS: &[&str] = &[
    "WNAM",
    "ENAM",
    "WEU",
    "EEU",
    "NSAM",
    "SSAM",
    "OC",
    "ME",
    "NAF",
    "SAF",
    "SAS",
    "SEAS",
    "NEAS",
    "ALL_REGIONS",
];

/// The result of one monitor run against one origin.
#[derive(Clone, Debug)]
struct Probe {
    healthy: bool,
    rtt: Duration,
    failure_reason: String,
    response_code: u16,
}

#[derive(Default)]
struct CfState {
    monitors: Vec<Value>,
    pools: Vec<Value>,
    /// Load balancers with the zone they belong to.
    lbs: Vec<(String, Value)>,
    overrides: HashMap<String, bool>,
    probes: HashMap<(String, String), Probe>,
}

struct Inner {
    cfg: CloudflareConfig,
    state: Mutex<CfState>,
    log: Mutex<Vec<(String, String)>>,
    client: HttpClient,
}

/// One emulated Cloudflare account; cheap to clone.
#[derive(Clone)]
pub struct Cloudflare {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("account_id", &self.inner.cfg.account_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error to send in the envelope.
#[derive(Debug)]
struct CfError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl CfError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        CfError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(reason: impl std::fmt::Display) -> Self {
        CfError::new(
            StatusCode::BAD_REQUEST,
            1002,
            format!("{reason}: validation failed"),
        )
    }

    fn not_found(what: &str) -> Self {
        CfError::new(StatusCode::NOT_FOUND, 1001, format!("{what} not found"))
    }

    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({
                "success": false,
                "errors": [{"code": self.code, "message": self.message}],
                "messages": [],
                "result": null,
            }),
        )
    }
}

type CfResult = Result<Response, CfError>;

fn success(result: &Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn success_list(items: &[Value]) -> Response {
    let n = items.len();
    json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "errors": [],
            "messages": [],
            "result": items,
            "result_info": {"page": 1, "per_page": n.max(20), "count": n, "total_count": n, "total_pages": 1},
        }),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Coll {
    Monitors,
    Pools,
    Lbs,
}

impl Coll {
    fn what(self) -> &'static str {
        match self {
            Coll::Monitors => "monitor",
            Coll::Pools => "pool",
            Coll::Lbs => "load balancer",
        }
    }
}

impl Cloudflare {
    /// Creates an account with no monitors, pools or load balancers.
    pub fn new(cfg: CloudflareConfig) -> Self {
        Cloudflare {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(CfState::default()),
                log: Mutex::new(Vec::new()),
                client: crate::http::client(),
            }),
        }
    }

    /// The configuration this account was created with.
    pub fn config(&self) -> &CloudflareConfig {
        &self.inner.cfg
    }

    /// The API, rooted at `/client/v4`.
    pub fn router(&self) -> Router {
        let lb = "/client/v4/accounts/{account}/load_balancers";
        Router::new()
            .route(&format!("{lb}/monitors"), any(monitors))
            .route(&format!("{lb}/monitors/{{id}}"), any(monitor))
            .route(&format!("{lb}/pools"), any(pools))
            .route(&format!("{lb}/pools/{{id}}"), any(pool))
            .route(&format!("{lb}/pools/{{id}}/health"), get(pool_health))
            .route("/client/v4/zones/{zone}/load_balancers", any(lbs))
            .route("/client/v4/zones/{zone}/load_balancers/{id}", any(lb_one))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), auth))
            .fallback(|| async {
                CfError::new(StatusCode::NOT_FOUND, 7000, "No route for that URI").into_response()
            })
            .with_state(self.clone())
    }

    /// Everything stored: `{"monitors": [...], "pools": [...], "load_balancers": [...]}`.
    pub fn snapshot(&self) -> Value {
        let st = self.state();
        json!({
            "monitors": st.monitors,
            "pools": st.pools,
            "load_balancers": st.lbs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        })
    }

    /// Mutating requests seen so far, as `(method, path)`, whatever their outcome.
    pub fn request_log(&self) -> Vec<(String, String)> {
        lock(&self.inner.log).clone()
    }

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

    /// What the load balancer named `hostname` would answer: the first healthy pool of
    /// `default_pools` (failover order, whatever the steering policy), else the fallback pool.
    /// `None` when no enabled load balancer has that name.
    pub fn resolve(&self, hostname: &str) -> Option<Resolution> {
        let st = self.state();
        let (_, lb) = st.lbs.iter().find(|(_, lb)| {
            lb["enabled"] == true
                && lb["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(hostname.trim_end_matches('.')))
        })?;
        let find_pool = |id: &Value| st.pools.iter().find(|p| p["id"] == *id);
        for pid in lb["default_pools"].as_array().into_iter().flatten() {
            if let Some(pool) = find_pool(pid)
                && pool_is_healthy(&st, pool)
            {
                let addresses = pool["origins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| origin_health(&st, pool, o).0)
                    .map(|o| str_of(&o["address"]))
                    .collect();
                return Some(Resolution {
                    load_balancer_id: str_of(&lb["id"]),
                    pool_id: str_of(&pool["id"]),
                    pool_name: str_of(&pool["name"]),
                    addresses,
                    fallback: false,
                });
            }
        }
        let pool = find_pool(&lb["fallback_pool"])?;
        Some(Resolution {
            load_balancer_id: str_of(&lb["id"]),
            pool_id: str_of(&pool["id"]),
            pool_name: str_of(&pool["name"]),
            addresses: pool["origins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["enabled"] == true)
                .map(|o| str_of(&o["address"]))
                .collect(),
            fallback: true,
        })
    }

    fn state(&self) -> MutexGuard<'_, CfState> {
        lock(&self.inner.state)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `(healthy, rtt, failure_reason, response_code)` of one origin in one pool.
fn origin_health(st: &CfState, pool: &Value, origin: &Value) -> (bool, Duration, String, u16) {
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

fn pool_is_healthy(st: &CfState, pool: &Value) -> bool {
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

// ---------------------------------------------------------------------------------------------
// HTTP layer.

async fn auth(State(cf): State<Cloudflare>, req: Request, next: Next) -> Response {
    if matches!(
        *req.method(),
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        lock(&cf.inner.log).push((req.method().to_string(), req.uri().path().to_owned()));
    }
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let legacy = match (h.get("x-auth-email"), h.get("x-auth-key")) {
        (Some(_), Some(k)) => k.to_str().ok(),
        _ => None,
    };
    match bearer.or(legacy) {
        None => CfError::new(
            StatusCode::UNAUTHORIZED,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        )
        .into_response(),
        Some(t) if t == cf.inner.cfg.token => next.run(req).await,
        Some(_) => {
            CfError::new(StatusCode::FORBIDDEN, 10000, "Authentication error").into_response()
        }
    }
}

fn check_account(cf: &Cloudflare, account: &str, path: &str) -> Result<(), CfError> {
    if !ids::is_hex32(account) {
        return Err(bad_identifier(path));
    }
    if account != cf.inner.cfg.account_id {
        return Err(CfError::new(
            StatusCode::FORBIDDEN,
            9109,
            "Unauthorized to access requested resource",
        ));
    }
    Ok(())
}

fn check_zone<'a>(
    cf: &'a Cloudflare,
    zone: &str,
    path: &str,
) -> Result<&'a CloudflareZone, CfError> {
    if !ids::is_hex32(zone) {
        return Err(bad_identifier(path));
    }
    cf.inner
        .cfg
        .zones
        .iter()
        .find(|z| z.id == zone)
        .ok_or_else(|| {
            CfError::new(
                StatusCode::FORBIDDEN,
                9109,
                "Unauthorized to access requested resource",
            )
        })
}

fn bad_identifier(path: &str) -> CfError {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    CfError::new(
        StatusCode::NOT_FOUND,
        7003,
        format!("Could not route to {path}, perhaps your object identifier is invalid?"),
    )
}

fn method_not_allowed() -> CfError {
    CfError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        7001,
        "Method not allowed for this endpoint",
    )
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, CfError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CfError::invalid("request body must be a JSON object")),
        Err(e) => Err(CfError::invalid(format!(
            "malformed JSON in request body ({e})"
        ))),
    }
}

fn finish(r: CfResult) -> Response {
    r.unwrap_or_else(CfError::into_response)
}

async fn monitors(
    State(cf): State<Cloudflare>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.collection(Coll::Monitors, None, &method, &path, &body)),
    )
}

async fn monitor(
    State(cf): State<Cloudflare>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.item(Coll::Monitors, None, &id, &method, &path, &body)),
    )
}

async fn pools(
    State(cf): State<Cloudflare>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.collection(Coll::Pools, None, &method, &path, &body)),
    )
}

async fn pool(
    State(cf): State<Cloudflare>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.item(Coll::Pools, None, &id, &method, &path, &body)),
    )
}

async fn lbs(State(cf): State<Cloudflare>, Path(zone): Path<String>, req: Request) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_zone(&cf, &zone, &path)
            .cloned()
            .and_then(|z| cf.collection(Coll::Lbs, Some(&z), &method, &path, &body)),
    )
}

async fn lb_one(
    State(cf): State<Cloudflare>,
    Path((zone, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_zone(&cf, &zone, &path)
            .cloned()
            .and_then(|z| cf.item(Coll::Lbs, Some(&z), &id, &method, &path, &body)),
    )
}

async fn pool_health(
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

/// Method, path (with the query string: only list filters read it) and body of a request.
async fn split(req: Request) -> (Method, String, Bytes) {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let body = axum::body::to_bytes(req.into_body(), 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    (method, path, body)
}

impl Cloudflare {
    fn collection(
        &self,
        coll: Coll,
        zone: Option<&CloudflareZone>,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> CfResult {
        match *method {
            Method::GET => {
                let st = self.state();
                // `GET .../pools?monitor=<id>` lists the pools using that monitor.
                let monitor = path
                    .split_once('?')
                    .into_iter()
                    .flat_map(|(_, q)| q.split('&'))
                    .find_map(|kv| kv.strip_prefix("monitor="));
                let items = match coll {
                    Coll::Monitors => st.monitors.clone(),
                    Coll::Pools => st
                        .pools
                        .iter()
                        .filter(|p| monitor.is_none_or(|m| p["monitor"] == m))
                        .cloned()
                        .collect(),
                    Coll::Lbs => st
                        .lbs
                        .iter()
                        .filter(|(z, _)| zone.is_some_and(|zone| *z == zone.id))
                        .map(|(_, v)| v.clone())
                        .collect(),
                };
                Ok(success_list(&items))
            }
            Method::POST => {
                let input = parse_body(body)?;
                let mut st = self.state();
                let id = ids::hex32();
                let now = rfc3339_now();
                let v = normalize(&st, coll, zone, &id, input, &now, &now)?;
                match coll {
                    Coll::Monitors => st.monitors.push(v.clone()),
                    Coll::Pools => st.pools.push(v.clone()),
                    Coll::Lbs => st
                        .lbs
                        .push((zone.map(|z| z.id.clone()).unwrap_or_default(), v.clone())),
                }
                Ok(success(&v))
            }
            _ => Err(method_not_allowed()),
        }
    }

    fn item(
        &self,
        coll: Coll,
        zone: Option<&CloudflareZone>,
        id: &str,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> CfResult {
        if !ids::is_hex32(id) {
            return Err(bad_identifier(path));
        }
        let mut st = self.state();
        let current = find(&st, coll, zone, id).ok_or_else(|| CfError::not_found(coll.what()))?;
        match *method {
            Method::GET => Ok(success(&current)),
            Method::PUT | Method::PATCH => {
                let mut input = parse_body(body)?;
                if *method == Method::PATCH
                    && let Value::Object(old) = &current
                {
                    let mut merged = old.clone();
                    merged.extend(input);
                    input = merged;
                }
                let created = str_of(&current["created_on"]);
                let v = normalize(&st, coll, zone, id, input, &created, &rfc3339_now())?;
                replace(&mut st, coll, id, v.clone());
                Ok(success(&v))
            }
            Method::DELETE => {
                if let Some(users) = referenced_by(&st, coll, id) {
                    return Err(CfError::invalid(users));
                }
                match coll {
                    Coll::Monitors => st.monitors.retain(|m| m["id"] != id),
                    Coll::Pools => {
                        st.pools.retain(|p| p["id"] != id);
                        st.probes.retain(|(p, _), _| p != id);
                    }
                    Coll::Lbs => st.lbs.retain(|(_, l)| l["id"] != id),
                }
                Ok(success(&json!({"id": id})))
            }
            _ => Err(method_not_allowed()),
        }
    }
}

fn find(st: &CfState, coll: Coll, zone: Option<&CloudflareZone>, id: &str) -> Option<Value> {
    match coll {
        Coll::Monitors => st.monitors.iter().find(|m| m["id"] == id).cloned(),
        Coll::Pools => st.pools.iter().find(|p| p["id"] == id).cloned(),
        Coll::Lbs => st
            .lbs
            .iter()
            .find(|(z, l)| zone.is_some_and(|zone| *z == zone.id) && l["id"] == id)
            .map(|(_, l)| l.clone()),
    }
}

fn replace(st: &mut CfState, coll: Coll, id: &str, v: Value) {
    let slot = match coll {
        Coll::Monitors => st.monitors.iter_mut().find(|m| m["id"] == id),
        Coll::Pools => st.pools.iter_mut().find(|p| p["id"] == id),
        Coll::Lbs => st.lbs.iter_mut().map(|(_, l)| l).find(|l| l["id"] == id),
    };
    if let Some(slot) = slot {
        *slot = v;
    }
}

/// Why `id` cannot be deleted (a pool uses the monitor, a load balancer uses the pool).
fn referenced_by(st: &CfState, coll: Coll, id: &str) -> Option<String> {
    match coll {
        Coll::Monitors => {
            let users: Vec<String> = st
                .pools
                .iter()
                .filter(|p| p["monitor"] == id)
                .map(|p| str_of(&p["id"]))
                .collect();
            (!users.is_empty()).then(|| format!("monitor is referenced by pools {users:?}"))
        }
        Coll::Pools => {
            let users: Vec<String> = st
                .lbs
                .iter()
                .filter(|(_, l)| lb_pool_ids(l).contains(id))
                .map(|(_, l)| str_of(&l["id"]))
                .collect();
            (!users.is_empty()).then(|| format!("pool is referenced by load balancers {users:?}"))
        }
        Coll::Lbs => None,
    }
}

/// Every pool id a load balancer mentions.
fn lb_pool_ids(lb: &Value) -> HashSet<String> {
    let mut ids: HashSet<String> = lb["default_pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    ids.insert(str_of(&lb["fallback_pool"]));
    for map in ["region_pools", "pop_pools", "country_pools"] {
        for list in lb[map].as_object().into_iter().flat_map(|m| m.values()) {
            ids.extend(list.as_array().into_iter().flatten().map(str_of));
        }
    }
    if let Some(w) = lb["random_steering"]["pool_weights"].as_object() {
        ids.extend(w.keys().cloned());
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// Validation and defaults.

fn normalize(
    st: &CfState,
    coll: Coll,
    zone: Option<&CloudflareZone>,
    id: &str,
    input: Map<String, Value>,
    created_on: &str,
    modified_on: &str,
) -> Result<Value, CfError> {
    let mut v = match coll {
        Coll::Monitors => normalize_monitor(input)?,
        Coll::Pools => normalize_pool(st, input)?,
        Coll::Lbs => normalize_lb(st, zone, id, input)?,
    };
    v.insert("id".into(), json!(id));
    v.insert("created_on".into(), json!(created_on));
    v.insert("modified_on".into(), json!(modified_on));
    Ok(Value::Object(v))
}

fn default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_owned(), v);
    }
}

fn int_in(m: &Map<String, Value>, k: &str, lo: i64, hi: i64) -> Result<(), CfError> {
    match m.get(k) {
        None => Ok(()),
        Some(v) => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(CfError::invalid(format!(
                "{k} must be an integer between {lo} and {hi}"
            ))),
        },
    }
}

fn bool_field(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(CfError::invalid(format!("{k} must be a boolean"))),
    }
}

fn string_field(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(CfError::invalid(format!("{k} must be a string"))),
    }
}

/// `header` maps: header name to a list of values.
fn header_map(m: &Map<String, Value>, k: &str) -> Result<(), CfError> {
    match m.get(k) {
        None => Ok(()),
        Some(Value::Object(h))
            if h.values()
                .all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) =>
        {
            Ok(())
        }
        Some(_) => Err(CfError::invalid(format!(
            "{k} must map header names to arrays of strings"
        ))),
    }
}

fn normalize_monitor(mut m: Map<String, Value>) -> Result<Map<String, Value>, CfError> {
    const TYPES: &[&str] = &["http", "https", "tcp", "udp_icmp", "icmp_ping", "smtp"];
    default(&mut m, "type", json!("http"));
    let ty = m["type"].as_str().unwrap_or_default().to_owned();
    if !TYPES.contains(&ty.as_str()) {
        return Err(CfError::invalid(format!(
            "type must be one of {}",
            TYPES.join(", ")
        )));
    }
    let is_http = ty == "http" || ty == "https";
    if is_http {
        default(&mut m, "method", json!("GET"));
        default(&mut m, "path", json!("/"));
        let Some(codes) = m.get("expected_codes").and_then(Value::as_str) else {
            return Err(CfError::invalid(
                "expected_codes must be specified for HTTP and HTTPS monitors",
            ));
        };
        let valid = codes.len() == 3
            && codes.as_bytes()[0].is_ascii_digit()
            && codes
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'x' || b == b'X');
        if !valid {
            return Err(CfError::invalid(format!(
                "invalid expected_codes {codes:?}"
            )));
        }
        default(&mut m, "expected_body", json!(""));
        default(&mut m, "follow_redirects", json!(false));
        default(&mut m, "allow_insecure", json!(false));
        default(&mut m, "header", json!({}));
    } else if ty == "tcp" {
        default(&mut m, "method", json!("connection_established"));
    }
    default(&mut m, "port", json!(0));
    default(&mut m, "timeout", json!(5));
    default(&mut m, "retries", json!(2));
    default(&mut m, "interval", json!(60));
    default(&mut m, "consecutive_up", json!(0));
    default(&mut m, "consecutive_down", json!(0));
    default(&mut m, "probe_zone", json!(""));
    default(&mut m, "description", json!(""));
    int_in(&m, "port", 0, 65_535)?;
    int_in(&m, "timeout", 1, 10)?;
    int_in(&m, "retries", 0, 5)?;
    int_in(&m, "interval", 5, 3600)?;
    int_in(&m, "consecutive_up", 0, 100)?;
    int_in(&m, "consecutive_down", 0, 100)?;
    for k in [
        "method",
        "path",
        "expected_body",
        "probe_zone",
        "description",
    ] {
        string_field(&m, k)?;
    }
    for k in ["follow_redirects", "allow_insecure"] {
        bool_field(&m, k)?;
    }
    header_map(&m, "header")?;
    if m["timeout"].as_i64() >= m["interval"].as_i64() {
        return Err(CfError::invalid("timeout must be less than interval"));
    }
    Ok(m)
}

fn valid_address(a: &str) -> bool {
    a.parse::<IpAddr>().is_ok()
        || (!a.is_empty()
            && a.len() <= 253
            && a.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn normalize_pool(st: &CfState, mut m: Map<String, Value>) -> Result<Map<String, Value>, CfError> {
    let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(CfError::invalid("pool name is required"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CfError::invalid(format!(
            "pool name {name:?} may contain only alphanumerics, '-' and '_'"
        )));
    }
    default(&mut m, "description", json!(""));
    default(&mut m, "enabled", json!(true));
    default(&mut m, "minimum_origins", json!(1));
    default(&mut m, "notification_email", json!(""));
    default(&mut m, "origin_steering", json!({"policy": "random"}));
    bool_field(&m, "enabled")?;
    int_in(&m, "minimum_origins", 0, 100)?;
    string_field(&m, "description")?;
    string_field(&m, "notification_email")?;
    match m.get("monitor") {
        None | Some(Value::Null) => {}
        Some(Value::String(mon)) => {
            if !st.monitors.iter().any(|x| x["id"] == mon.as_str()) {
                return Err(CfError::invalid(format!("monitor {mon} not found")));
            }
        }
        Some(_) => return Err(CfError::invalid("monitor must be a monitor id")),
    }
    let Some(Value::Array(origins)) = m.get_mut("origins") else {
        return Err(CfError::invalid(
            "the origin list length must be in range [1, 0]",
        ));
    };
    if origins.is_empty() {
        return Err(CfError::invalid(
            "the origin list length must be in range [1, 0]",
        ));
    }
    for o in origins.iter_mut() {
        let Value::Object(o) = o else {
            return Err(CfError::invalid("origins must be objects"));
        };
        if o.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(CfError::invalid("origin name is required"));
        }
        let address = o.get("address").and_then(Value::as_str).unwrap_or_default();
        if !valid_address(address) {
            return Err(CfError::invalid(format!(
                "invalid origin address {address:?}"
            )));
        }
        default(o, "enabled", json!(true));
        default(o, "weight", json!(1));
        bool_field(o, "enabled")?;
        match o.get("weight").and_then(Value::as_f64) {
            Some(w) if (0.0..=1.0).contains(&w) => {}
            _ => return Err(CfError::invalid("origin weight must be between 0 and 1")),
        }
        header_map(o, "header")?;
    }
    if let Some(regions) = m.get("check_regions").filter(|v| !v.is_null()) {
        let ok = regions.as_array().is_some_and(|r| {
            r.iter()
                .all(|x| x.as_str().is_some_and(|s| REGIONS.contains(&s)))
        });
        if !ok {
            return Err(CfError::invalid("invalid check_regions"));
        }
    }
    if let Some(lat) = m.get("latitude")
        && !lat.as_f64().is_some_and(|l| (-90.0..=90.0).contains(&l))
    {
        return Err(CfError::invalid("latitude must be between -90 and 90"));
    }
    if let Some(lon) = m.get("longitude")
        && !lon.as_f64().is_some_and(|l| (-180.0..=180.0).contains(&l))
    {
        return Err(CfError::invalid("longitude must be between -180 and 180"));
    }
    let policy = m["origin_steering"]["policy"].as_str().unwrap_or_default();
    if !matches!(
        policy,
        "random" | "hash" | "least_outstanding_requests" | "least_connections"
    ) {
        return Err(CfError::invalid("invalid origin_steering policy"));
    }
    Ok(m)
}

fn normalize_lb(
    st: &CfState,
    zone: Option<&CloudflareZone>,
    id: &str,
    mut m: Map<String, Value>,
) -> Result<Map<String, Value>, CfError> {
    let zone = zone.ok_or_else(|| CfError::invalid("missing zone"))?;
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let in_zone = name == zone.name || name.ends_with(&format!(".{}", zone.name));
    if name.is_empty() || !valid_address(&name) || !in_zone {
        return Err(CfError::invalid(format!("invalid hostname: {name}")));
    }
    if st
        .lbs
        .iter()
        .any(|(z, l)| *z == zone.id && l["name"] == name.as_str() && l["id"] != id)
    {
        return Err(CfError::new(
            StatusCode::BAD_REQUEST,
            1003,
            "value not unique: a load balancer with that name already exists",
        ));
    }
    m.insert("name".into(), json!(name));
    let pool_exists = |p: &Value| st.pools.iter().any(|x| x["id"] == *p);
    let defaults = m.get("default_pools").and_then(Value::as_array);
    let Some(defaults) = defaults.filter(|d| !d.is_empty()) else {
        return Err(CfError::invalid(
            "default_pools must contain at least one pool",
        ));
    };
    if let Some(p) = defaults.iter().find(|p| !pool_exists(p)) {
        return Err(CfError::invalid(format!("pool {p} not found")));
    }
    match m.get("fallback_pool") {
        Some(p) if pool_exists(p) => {}
        Some(p) => return Err(CfError::invalid(format!("pool {p} not found"))),
        None => return Err(CfError::invalid("fallback_pool is required")),
    }
    default(&mut m, "description", json!(""));
    default(&mut m, "ttl", json!(30));
    default(&mut m, "proxied", json!(false));
    default(&mut m, "enabled", json!(true));
    default(&mut m, "steering_policy", json!("off"));
    default(&mut m, "session_affinity", json!("none"));
    default(&mut m, "region_pools", json!({}));
    default(&mut m, "pop_pools", json!({}));
    default(&mut m, "country_pools", json!({}));
    default(
        &mut m,
        "adaptive_routing",
        json!({"failover_across_pools": false}),
    );
    default(
        &mut m,
        "location_strategy",
        json!({"mode": "pop", "prefer_ecs": "proximity"}),
    );
    default(&mut m, "random_steering", json!({"default_weight": 1}));
    m.insert("zone_name".into(), json!(zone.name));
    for k in ["proxied", "enabled"] {
        bool_field(&m, k)?;
    }
    int_in(&m, "ttl", 0, 86_400)?;
    const POLICIES: &[&str] = &[
        "off",
        "geo",
        "random",
        "dynamic_latency",
        "proximity",
        "least_outstanding_requests",
        "least_connections",
        "",
    ];
    if !m["steering_policy"]
        .as_str()
        .is_some_and(|p| POLICIES.contains(&p))
    {
        return Err(CfError::invalid("invalid steering_policy"));
    }
    if !matches!(
        m["session_affinity"].as_str(),
        Some("none" | "cookie" | "ip_cookie" | "header" | "")
    ) {
        return Err(CfError::invalid("invalid session_affinity"));
    }
    for map in ["region_pools", "pop_pools", "country_pools"] {
        let Some(entries) = m[map].as_object() else {
            return Err(CfError::invalid(format!("{map} must be an object")));
        };
        for (key, pools) in entries {
            if map == "region_pools" && !REGIONS.contains(&key.as_str()) {
                return Err(CfError::invalid(format!("invalid region {key}")));
            }
            let ok = pools
                .as_array()
                .is_some_and(|ps| ps.iter().all(pool_exists));
            if !ok {
                return Err(CfError::invalid(format!(
                    "{map}.{key} must list existing pools"
                )));
            }
        }
    }
    let rs = &m["random_steering"];
    let weight_ok = |w: &Value| w.as_f64().is_some_and(|w| (0.0..=1.0).contains(&w));
    if rs.get("default_weight").is_some_and(|w| !weight_ok(w)) {
        return Err(CfError::invalid(
            "random_steering.default_weight must be between 0 and 1",
        ));
    }
    if let Some(weights) = rs.get("pool_weights").and_then(Value::as_object) {
        for (p, w) in weights {
            if !pool_exists(&json!(p)) || !weight_ok(w) {
                return Err(CfError::invalid(format!(
                    "random_steering.pool_weights.{p} must name an existing pool with a weight between 0 and 1"
                )));
            }
        }
    }
    Ok(m)
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

    #[test]
    fn monitor_defaults_and_validation() {
        let m = normalize_monitor(
            json!({"type": "http", "expected_codes": "200"})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m["method"], "GET");
        assert_eq!(m["path"], "/");
        assert_eq!(m["interval"], 60);
        assert_eq!(m["timeout"], 5);
        assert_eq!(m["retries"], 2);
        let tcp = normalize_monitor(json!({"type": "tcp"}).as_object().cloned().unwrap()).unwrap();
        assert_eq!(tcp["method"], "connection_established");
        let e = normalize_monitor(json!({"type": "http"}).as_object().cloned().unwrap())
            .err()
            .unwrap();
        assert_eq!(e.code, 1002);
        assert!(e.message.ends_with(": validation failed"));
    }

    #[test]
    fn pool_names_and_origins_are_checked() {
        let st = CfState::default();
        let bad = normalize_pool(
            &st,
            json!({"name": "eu west", "origins": [{"name": "a", "address": "127.0.0.1"}]})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert!(bad.is_err());
        let empty = normalize_pool(
            &st,
            json!({"name": "eu", "origins": []})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(
            empty.message,
            "the origin list length must be in range [1, 0]: validation failed"
        );
        let ok = normalize_pool(
            &st,
            json!({"name": "eu-west_1", "origins": [{"name": "a", "address": "127.0.0.2"}]})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok["origins"][0]["weight"], 1);
        assert_eq!(ok["origins"][0]["enabled"], true);
        assert_eq!(ok["minimum_origins"], 1);
    }
}
