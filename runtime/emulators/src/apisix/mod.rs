//! The Apache APISIX 3.x emulator: Admin API, API-driven standalone config API and data plane.
//!
//! Behaviour follows the APISIX Admin API documentation, cross-checked against the
//! APISIX sources (`apisix/admin/*.lua`, `apisix/core/etcd.lua`, `apisix/schema_def.lua`):
//!
//! * `X-API-KEY` header, `api_key` query argument or `X-API-KEY` cookie; otherwise 401
//!   `{"error_msg":"failed to check token","description":"missing apikey"|"wrong apikey"}`.
//! * Single resources read back as the etcd node `{key, value, createdIndex, modifiedIndex}`,
//!   lists as `{total, list}`; a missing key is 404 `{"message":"Key not found"}`.
//! * `PUT` answers 201 when the key is new and 200 when it replaced one; the body is `{key, value}`.
//!   `POST` generates a 20-digit id from the etcd revision. `PATCH` merges. `DELETE` answers
//!   `{"deleted":"1","key":...}`, or 404, or 400 when the resource is still referenced.
//! * Writes get `create_time` / `update_time` and the schema defaults (see [`schema`]).
//! * `stream_routes` answer 400 `stream mode is disabled, can not add stream routes` unless
//!   [`ApisixConfig::stream_mode`] is set — APISIX's own answer; ADC issue #251 reported a 403, which
//!   came from a different backend, so the source code wins here.
//! * Every response carries `Server: APISIX/<version>` (ADC reads the version from it).

mod admin;
mod data_plane;
pub(crate) mod schema;
mod standalone;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::HeaderValue;
use serde_json::{Map, Value};

use crate::http::HttpClient;
use store::{Kind, Store};

/// Which Admin API the emulator exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApisixFlavor {
    /// Traditional APISIX backed by etcd: per-resource `/apisix/admin/<type>/<id>` endpoints.
    #[default]
    Apisix,
    /// API-driven standalone (APISIX ≥ 3.13): only `GET`/`PUT /apisix/admin/configs`, which
    /// replaces the whole configuration at once (domain.md §1.7).
    Standalone,
}

/// How an emulated APISIX instance is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApisixConfig {
    /// The admin key (`deployment.admin.admin_key[0].key`) every Admin API call must present.
    pub api_key: String,
    /// The version reported in `Server: APISIX/<version>`, e.g. `"3.12.0"`.
    pub version: String,
    /// Whether stream proxying is enabled (`apisix.proxy_mode` includes `stream`); without it
    /// `/apisix/admin/stream_routes` answers 400.
    pub stream_mode: bool,
    /// Traditional Admin API or API-driven standalone.
    pub backend: ApisixFlavor,
}

impl Default for ApisixConfig {
    /// APISIX's well-known default admin key, version 3.12.0, stream mode off, traditional.
    fn default() -> Self {
        ApisixConfig {
            api_key: "edd1c9f034335f136f87ad84b625c8f1".into(),
            version: "3.12.0".into(),
            stream_mode: false,
            backend: ApisixFlavor::Apisix,
        }
    }
}

/// One emulated APISIX instance: shared state behind an `Arc`, cheap to clone. The admin and
/// data-plane routers returned by [`Apisix::admin_router`] and [`Apisix::data_plane_router`]
/// share it, so configuration written through one is served by the other at once.
#[derive(Clone)]
pub struct Apisix {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Apisix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apisix")
            .field("version", &self.inner.cfg.version)
            .field("backend", &self.inner.cfg.backend)
            .field("ready", &self.inner.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: ApisixConfig,
    server: HeaderValue,
    state: Mutex<State>,
    ready: AtomicBool,
    log: Mutex<Vec<(String, String)>>,
    client: HttpClient,
    /// Smooth weighted round-robin state per upstream (see `data_plane`).
    balancers: Mutex<HashMap<String, data_plane::Balancer>>,
}

struct State {
    store: Store,
    standalone: standalone::StandaloneState,
}

impl Apisix {
    /// Creates an instance with an empty configuration, ready (`/status/ready` answers 200).
    pub fn new(cfg: ApisixConfig) -> Self {
        let server = HeaderValue::from_str(&format!("APISIX/{}", cfg.version))
            .unwrap_or_else(|_| HeaderValue::from_static("APISIX"));
        Apisix {
            inner: Arc::new(Inner {
                cfg,
                server,
                state: Mutex::new(State {
                    store: Store::new(),
                    standalone: standalone::StandaloneState::new(),
                }),
                ready: AtomicBool::new(true),
                log: Mutex::new(Vec::new()),
                client: crate::http::client(),
                balancers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration this instance was created with.
    pub fn config(&self) -> &ApisixConfig {
        &self.inner.cfg
    }

    /// The Admin API (`/apisix/admin/...`), normally served on port 9180.
    pub fn admin_router(&self) -> Router {
        admin::router(self.clone())
    }

    /// The data plane: the proxy for stored routes plus the status API (`/status`,
    /// `/status/ready`), normally on ports 9080 and 7085.
    pub fn data_plane_router(&self) -> Router {
        data_plane::router(self.clone())
    }

    /// Flips `/status/ready` between 200 `{"status":"ok"}` and 503 (as when a worker has not
    /// received its configuration) — how tests and the lab simulate a sick region.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/status/ready` currently answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Every stored resource, as `{"routes": {"<id>": value, ...}, "services": {...}, ...}` with
    /// one key per resource type (credentials keyed `<username>/credentials/<id>`). Values are
    /// exactly what the Admin API stores, defaults and timestamps included.
    pub fn snapshot(&self) -> Value {
        let state = self.state();
        let mut out = Map::new();
        for kind in Kind::ALL {
            let table: Map<String, Value> = state
                .store
                .table(kind)
                .iter()
                .map(|(id, e)| (id.clone(), e.value.clone()))
                .collect();
            out.insert(kind.segment().to_owned(), Value::Object(table));
        }
        Value::Object(out)
    }

    /// The mutating Admin API requests seen so far, as `(method, path)` in arrival order,
    /// whatever their outcome — so a test can assert that a second, idempotent sync sent nothing.
    pub fn request_log(&self) -> Vec<(String, String)> {
        lock(&self.inner.log).clone()
    }

    /// Forgets the request log (the stored configuration is kept).
    pub fn clear_request_log(&self) {
        lock(&self.inner.log).clear();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn record(&self, method: &str, path: &str) {
        lock(&self.inner.log).push((method.to_owned(), path.to_owned()));
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical section
/// here leaves the state consistent, so the poison flag carries no information.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
