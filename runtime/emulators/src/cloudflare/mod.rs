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

mod api;
mod envelope;
mod fields;
mod health;
mod load_balancers;
mod monitors;
mod pools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::http::HttpClient;
use envelope::CfError;
use health::Probe;

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

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical section
/// here leaves the state consistent, so the poison flag carries no information.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The three stored collections; the generic CRUD in `api` dispatches on it.
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
            .route(&format!("{lb}/monitors"), any(api::monitors))
            .route(&format!("{lb}/monitors/{{id}}"), any(api::monitor))
            .route(&format!("{lb}/pools"), any(api::pools))
            .route(&format!("{lb}/pools/{{id}}"), any(api::pool))
            .route(
                &format!("{lb}/pools/{{id}}/health"),
                get(health::pool_health),
            )
            .route("/client/v4/zones/{zone}/load_balancers", any(api::lbs))
            .route(
                "/client/v4/zones/{zone}/load_balancers/{id}",
                any(api::lb_one),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                api::auth,
            ))
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

    fn state(&self) -> MutexGuard<'_, CfState> {
        lock(&self.inner.state)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}
