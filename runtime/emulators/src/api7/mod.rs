//! The API7 Enterprise control-plane subset that "deploy region" and ADC's `api7ee` backend use
//! (domain.md §1.6, §3; request shapes from ADC's `libs/backend-api7`).
//!
//! * Auth: `X-API-KEY` carrying the access token ([`Api7Config::token`]) or a gateway-group admin
//!   key (`a7adm-...`, issued by `PUT /api/gateway_groups/{id}/admin_key`), which is limited to
//!   its group's `/apisix/admin/*` resources. Anything else is 401 `{"error_msg": ...}`.
//!   `/api/status` and `/api/version` answer without a key.
//! * `/api/gateway_groups` list (`?search=` substring, `?name=` exact) and create, get / update /
//!   delete one, `POST .../instance_token` (`?only_token=true` returns the bare token),
//!   `PUT .../admin_key`, `GET .../instances`; a group `default` exists from the start.
//! * `GET /api/schema/core`: JSON schemas whose `default`s are exactly the defaults this emulator
//!   fills on write, so ADC-style "merge the backend defaults, then diff" is stable.
//! * Runtime resources under `/apisix/admin/*?gateway_group_id=<id>`: `services` (with
//!   `services/{id}/upstreams`), `routes` and `stream_routes` (`?service_id=` filter), `consumers`
//!   (with `consumers/{username}/credentials`), `ssls`, `global_rules`, `plugin_metadata`. Lists
//!   are `{list, total}` of bare values, single reads and writes `{value}`; `labels[k]=v`
//!   filters lists. Deleting a service deletes its routes, stream routes and upstreams.
//!
//! Left out (undocumented or unverified in the reference): login/password/license/user/token
//! bootstrap calls, service publishing and versions, consumer groups, `PATCH` (API7 is said to
//! use RFC 6902 JSON Patch, unverified), `POST /apisix/admin/configs/validate`, and the DP
//! Manager's data-plane protocol — use [`Api7Cp::register_instance`] to simulate a data plane
//! joining with its instance token.

// This file holds the public types, the shared state (gateway groups and their resource tables)
// and the router; `auth` checks keys, `groups` serves `/api/gateway_groups`, `resources` the
// gateway-group-scoped `/apisix/admin/*`, `defaults` the defaults filled on write and
// `/api/schema/core`, and `reply` the response shapes they share.

mod auth;
mod defaults;
mod groups;
mod reply;
mod resources;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post, put};
use serde_json::{Map, Value, json};

use crate::clock::unix_now;
use crate::ids;
use crate::json::json_response;
use auth::auth;
use defaults::schema_core;
use groups::{
    admin_key, create_group, delete_group, get_group, instance_token, instances, list_groups,
    update_group,
};
use resources::admin;

/// How the emulated API7 control plane is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api7Config {
    /// The access token (`POST /api/tokens` in a real installation) accepted in `X-API-KEY`.
    pub token: String,
    /// What `GET /api/version` reports.
    pub version: String,
}

impl Default for Api7Config {
    fn default() -> Self {
        Api7Config {
            token: "a7ee-meridian-lab-token".into(),
            version: "3.8.0".into(),
        }
    }
}

/// Errors from the emulator's in-process hooks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Api7Error {
    /// No gateway group issued the instance token a data plane presented.
    #[error("no gateway group has issued instance token {0:?}")]
    UnknownInstanceToken(String),
}

/// Gateway-group-scoped resource types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Res {
    Services,
    ServiceUpstreams,
    Routes,
    StreamRoutes,
    Consumers,
    Credentials,
    Ssls,
    GlobalRules,
    PluginMetadata,
}

impl Res {
    const ALL: [Res; 9] = [
        Res::Services,
        Res::ServiceUpstreams,
        Res::Routes,
        Res::StreamRoutes,
        Res::Consumers,
        Res::Credentials,
        Res::Ssls,
        Res::GlobalRules,
        Res::PluginMetadata,
    ];

    fn name(self) -> &'static str {
        match self {
            Res::Services => "services",
            Res::ServiceUpstreams => "service_upstreams",
            Res::Routes => "routes",
            Res::StreamRoutes => "stream_routes",
            Res::Consumers => "consumers",
            Res::Credentials => "credentials",
            Res::Ssls => "ssls",
            Res::GlobalRules => "global_rules",
            Res::PluginMetadata => "plugin_metadata",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Res::Services => "service",
            Res::ServiceUpstreams => "upstream",
            Res::Routes => "route",
            Res::StreamRoutes => "stream route",
            Res::Consumers => "consumer",
            Res::Credentials => "credential",
            Res::Ssls => "ssl",
            Res::GlobalRules => "global rule",
            Res::PluginMetadata => "plugin metadata",
        }
    }
}

#[derive(Debug)]
struct Group {
    value: Value,
    instance_tokens: Vec<String>,
    admin_key: Option<String>,
    instances: Vec<Value>,
    resources: BTreeMap<Res, BTreeMap<String, Value>>,
}

impl Group {
    fn new(id: &str, name: &str, description: &str, labels: &Value) -> Self {
        let now = unix_now();
        Group {
            value: json!({
                "id": id,
                "name": name,
                "description": description,
                "labels": labels,
                "type": "api7_gateway",
                "created_at": now,
                "updated_at": now,
            }),
            instance_tokens: Vec::new(),
            admin_key: None,
            instances: Vec::new(),
            resources: Res::ALL.into_iter().map(|r| (r, BTreeMap::new())).collect(),
        }
    }

    fn table(&mut self, r: Res) -> &mut BTreeMap<String, Value> {
        self.resources.entry(r).or_default()
    }
}

struct Inner {
    cfg: Api7Config,
    groups: Mutex<BTreeMap<String, Group>>,
    log: Mutex<Vec<(String, String)>>,
}

/// One emulated API7 EE control plane (Dashboard + DP Manager API); cheap to clone.
#[derive(Clone)]
pub struct Api7Cp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Api7Cp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api7Cp")
            .field("version", &self.inner.cfg.version)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Api7Cp {
    /// Creates a control plane holding only the `default` gateway group.
    pub fn new(cfg: Api7Config) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert(
            "default".to_owned(),
            Group::new("default", "default", "", &json!({})),
        );
        Api7Cp {
            inner: Arc::new(Inner {
                cfg,
                groups: Mutex::new(groups),
                log: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The configuration this control plane was created with.
    pub fn config(&self) -> &Api7Config {
        &self.inner.cfg
    }

    /// The control-plane API (Dashboard port 7080/7443 in a real installation).
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/gateway_groups", get(list_groups).post(create_group))
            .route(
                "/api/gateway_groups/{id}",
                get(get_group).put(update_group).delete(delete_group),
            )
            .route(
                "/api/gateway_groups/{id}/instance_token",
                post(instance_token),
            )
            .route("/api/gateway_groups/{id}/admin_key", put(admin_key))
            .route("/api/gateway_groups/{id}/instances", get(instances))
            .route("/api/schema/core", get(schema_core))
            .route("/apisix/admin/{*rest}", any(admin))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), auth));
        Router::new()
            .route(
                "/api/status",
                get(|| async { json_response(StatusCode::OK, &json!({"status": "ok"})) }),
            )
            .route("/api/version", get(version))
            .merge(api)
            .fallback(|| async {
                json_response(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"}))
            })
            .with_state(self.clone())
    }

    /// All gateway groups, as `GET /api/gateway_groups` lists them.
    pub fn gateway_groups(&self) -> Vec<Value> {
        lock(&self.inner.groups)
            .values()
            .map(|g| g.value.clone())
            .collect()
    }

    /// Every group with its resources: `{"<group id>": {"group": {...}, "services": {"<id>":
    /// value}, "routes": {...}, ..., "instances": [...]}}`.
    pub fn snapshot(&self) -> Value {
        let groups = lock(&self.inner.groups);
        let mut out = Map::new();
        for (id, g) in groups.iter() {
            let mut o = Map::new();
            o.insert("group".into(), g.value.clone());
            for (r, table) in &g.resources {
                o.insert(
                    r.name().into(),
                    Value::Object(table.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                );
            }
            o.insert("instances".into(), Value::Array(g.instances.clone()));
            out.insert(id.clone(), Value::Object(o));
        }
        Value::Object(out)
    }

    /// Mutating requests seen so far, as `(method, path)`, whatever their outcome.
    pub fn request_log(&self) -> Vec<(String, String)> {
        lock(&self.inner.log).clone()
    }

    /// Simulates a gateway (data plane) registering with the DP Manager using an instance token
    /// from `POST /api/gateway_groups/{id}/instance_token`. Returns the group id it joined; the
    /// instance then shows in `GET /api/gateway_groups/{id}/instances`.
    pub fn register_instance(&self, token: &str, hostname: &str) -> Result<String, Api7Error> {
        let mut groups = lock(&self.inner.groups);
        let Some((gid, group)) = groups
            .iter_mut()
            .find(|(_, g)| g.instance_tokens.iter().any(|t| t == token))
        else {
            return Err(Api7Error::UnknownInstanceToken(token.to_owned()));
        };
        let now = unix_now();
        group.instances.push(json!({
            "id": ids::uuid_v4(),
            "hostname": hostname,
            "gateway_group_id": gid,
            "status": "Healthy",
            "version": self.inner.cfg.version,
            "register_time": now,
            "last_heartbeat_time": now,
        }));
        Ok(gid.clone())
    }

    fn groups(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        lock(&self.inner.groups)
    }
}

async fn version(State(cp): State<Api7Cp>) -> Response {
    json_response(StatusCode::OK, &json!({"value": cp.inner.cfg.version}))
}
