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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde_json::{Map, Value, json};

use crate::apisix::schema::{check_upstream_value, id_string, is_auth_plugin};
use crate::clock::unix_now;
use crate::ids;
use crate::json::json_response;

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

/// Who a request authenticated as.
#[derive(Clone, Debug)]
enum Access {
    /// The access token: everything.
    Full,
    /// A gateway-group admin key: that group's runtime resources only.
    Group(String),
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

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, &json!({"error_msg": msg.into()}))
}

/// An error reply carried through `Result`s (small, unlike a whole `Response`).
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    msg: String,
}

impl Fail {
    fn bad(msg: impl Into<String>) -> Self {
        Fail {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.status, self.msg)
    }
}

fn value(v: &Value) -> Response {
    json_response(StatusCode::OK, &json!({"value": v}))
}

fn list(items: &[Value]) -> Response {
    let total = items.len();
    json_response(StatusCode::OK, &json!({"list": items, "total": total}))
}

async fn auth(State(cp): State<Api7Cp>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if matches!(
        method,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        lock(&cp.inner.log).push((method.to_string(), req.uri().path().to_owned()));
    }
    let key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let access = if key.is_empty() {
        None
    } else if key == cp.inner.cfg.token {
        Some(Access::Full)
    } else {
        cp.groups()
            .iter()
            .find(|(_, g)| g.admin_key.as_deref() == Some(key.as_str()))
            .map(|(id, _)| Access::Group(id.clone()))
    };
    let Some(access) = access else {
        return error(StatusCode::UNAUTHORIZED, "invalid api key");
    };
    if matches!(access, Access::Group(_)) && !req.uri().path().starts_with("/apisix/admin/") {
        return error(
            StatusCode::FORBIDDEN,
            "a gateway group admin key can only access its gateway group's resources",
        );
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

async fn version(State(cp): State<Api7Cp>) -> Response {
    json_response(StatusCode::OK, &json!({"value": cp.inner.cfg.version}))
}

async fn list_groups(
    State(cp): State<Api7Cp>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let items = cp
        .groups()
        .values()
        .filter(|g| {
            let name = g.value["name"].as_str().unwrap_or_default();
            q.get("search").is_none_or(|s| name.contains(s.as_str()))
                && q.get("name").is_none_or(|n| name == n)
        })
        .map(|g| g.value.clone())
        .collect::<Vec<_>>();
    list(&items)
}

/// Validates a gateway-group body; returns `(name, description, labels)`.
fn group_fields(body: &Value) -> Result<(String, String, Value), Fail> {
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Err(Fail::bad("name is required"));
    };
    let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
    if !labels.is_object() {
        return Err(Fail::bad("labels must be an object"));
    }
    Ok((
        name.to_owned(),
        body.get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        labels,
    ))
}

fn parse_json(body: &[u8]) -> Result<Value, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail::bad(format!("invalid request body: {e}")))
}

async fn create_group(State(cp): State<Api7Cp>, body: axum::body::Bytes) -> Response {
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let (name, description, labels) = match group_fields(&body) {
        Ok(f) => f,
        Err(f) => return f.into_response(),
    };
    let mut groups = cp.groups();
    if groups.values().any(|g| g.value["name"] == name.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("gateway group name [{name}] already exists"),
        );
    }
    let id = ids::uuid_v4();
    let g = Group::new(&id, &name, &description, &labels);
    let v = g.value.clone();
    groups.insert(id, g);
    value(&v)
}

async fn get_group(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().get(&id) {
        Some(g) => value(&g.value),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}

async fn update_group(
    State(cp): State<Api7Cp>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let (name, description, labels) = match group_fields(&body) {
        Ok(f) => f,
        Err(f) => return f.into_response(),
    };
    let mut groups = cp.groups();
    if groups
        .iter()
        .any(|(gid, g)| *gid != id && g.value["name"] == name.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("gateway group name [{name}] already exists"),
        );
    }
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    if let Some(m) = g.value.as_object_mut() {
        m.insert("name".into(), json!(name));
        m.insert("description".into(), json!(description));
        m.insert("labels".into(), labels);
        m.insert("updated_at".into(), json!(unix_now()));
    }
    value(&g.value)
}

async fn delete_group(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().remove(&id) {
        Some(_) => json_response(StatusCode::OK, &json!({})),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}

async fn instance_token(
    State(cp): State<Api7Cp>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut groups = cp.groups();
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    let token = ids::token("a7ee-");
    g.instance_tokens.push(token.clone());
    if q.get("only_token").map(String::as_str) == Some("true") {
        return (StatusCode::OK, token).into_response();
    }
    value(&json!({"token_plain_text": token}))
}

async fn admin_key(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    let mut groups = cp.groups();
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    let key = ids::token("a7adm-");
    g.admin_key = Some(key.clone());
    value(&json!({"key": key}))
}

async fn instances(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().get(&id) {
        Some(g) => list(&g.instances),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}

/// The defaults this emulator fills, per resource type; `/api/schema/core` is derived from it.
fn defaults(r: Res) -> Value {
    let upstream = json!({
        "type": "roundrobin",
        "scheme": "http",
        "pass_host": "pass",
        "hash_on": "vars",
        "nodes": [{"priority": 0}],
    });
    match r {
        Res::Services => json!({"type": "http", "upstream": upstream}),
        Res::ServiceUpstreams => upstream,
        Res::Routes => json!({"priority": 0}),
        Res::Ssls => json!({"type": "server", "status": 1}),
        _ => json!({}),
    }
}

/// Fills `defaults` into `v`: absent scalars are inserted, present objects are descended into,
/// and a one-element array of an object applies that object to every element.
fn apply_defaults(v: &mut Value, defaults: &Value) {
    let (Value::Object(target), Value::Object(defs)) = (v, defaults) else {
        return;
    };
    for (k, d) in defs {
        match (target.get_mut(k), d) {
            (None, Value::Object(_) | Value::Array(_)) => {}
            (None, scalar) => {
                target.insert(k.clone(), scalar.clone());
            }
            (Some(sub @ Value::Object(_)), Value::Object(_)) => apply_defaults(sub, d),
            (Some(Value::Array(items)), Value::Array(item_defaults)) => {
                if let Some(item_def) = item_defaults.first() {
                    items.iter_mut().for_each(|i| apply_defaults(i, item_def));
                }
            }
            _ => {}
        }
    }
}

/// A JSON schema carrying `defaults` as `default`s, in the shape ADC's extractor reads.
fn schema_of(defaults: &Value) -> Value {
    match defaults {
        Value::Object(m) => json!({
            "type": "object",
            "properties": m.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect::<Map<_, _>>(),
        }),
        Value::Array(items) => json!({
            "type": "array",
            "items": items.first().map_or_else(|| json!({}), schema_of),
        }),
        Value::String(_) => json!({"type": "string", "default": defaults}),
        Value::Bool(_) => json!({"type": "boolean", "default": defaults}),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            json!({"type": "integer", "default": defaults})
        }
        _ => json!({"type": "number", "default": defaults}),
    }
}

async fn schema_core() -> Response {
    let mut out = Map::new();
    for (name, r) in [
        ("service", Res::Services),
        ("route", Res::Routes),
        ("stream_route", Res::StreamRoutes),
        ("upstream", Res::ServiceUpstreams),
        ("consumer", Res::Consumers),
        ("consumer_credential", Res::Credentials),
        ("ssl", Res::Ssls),
    ] {
        out.insert(name.into(), schema_of(&defaults(r)));
    }
    value(&Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// Gateway-group-scoped runtime resources.

/// A parsed `/apisix/admin/...` path: the resource type, the key within its table, and for
/// sub-resources the parent id (service or consumer).
struct Target {
    res: Res,
    id: Option<String>,
    parent: Option<String>,
}

fn parse_target(segs: &[&str]) -> Option<Target> {
    let one = |res| Target {
        res,
        id: segs.get(1).map(|s| (*s).to_owned()),
        parent: None,
    };
    match segs {
        ["services", sid, "upstreams", rest @ ..] if rest.len() <= 1 => Some(Target {
            res: Res::ServiceUpstreams,
            id: rest.first().map(|u| format!("{sid}/{u}")),
            parent: Some((*sid).to_owned()),
        }),
        ["consumers", user, "credentials", rest @ ..] if rest.len() <= 1 => Some(Target {
            res: Res::Credentials,
            id: rest.first().map(|c| format!("{user}/{c}")),
            parent: Some((*user).to_owned()),
        }),
        [res] | [res, _] => match *res {
            "services" => Some(one(Res::Services)),
            "routes" => Some(one(Res::Routes)),
            "stream_routes" => Some(one(Res::StreamRoutes)),
            "consumers" => Some(one(Res::Consumers)),
            "ssls" => Some(one(Res::Ssls)),
            "global_rules" => Some(one(Res::GlobalRules)),
            "plugin_metadata" => Some(one(Res::PluginMetadata)),
            _ => None,
        },
        _ => None,
    }
}

async fn admin(
    State(cp): State<Api7Cp>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let access = req
        .extensions()
        .get::<Access>()
        .cloned()
        .unwrap_or(Access::Full);
    let method = req.method().clone();
    let body = match axum::body::to_bytes(req.into_body(), 8 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            );
        }
    };
    let gid = match access {
        Access::Group(g) => g,
        Access::Full => match q.get("gateway_group_id") {
            Some(g) => g.clone(),
            None => return error(StatusCode::BAD_REQUEST, "gateway_group_id is required"),
        },
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some(target) = parse_target(&segs) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let mut groups = cp.groups();
    let Some(group) = groups.get_mut(&gid) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    match (method, &target.id) {
        (Method::GET, None) => list_resources(group, &target, &q),
        (Method::GET, Some(id)) => match group.table(target.res).get(id) {
            Some(v) => value(&present(target.res, v)),
            None => error(
                StatusCode::NOT_FOUND,
                format!("{} not found", target.res.singular()),
            ),
        },
        (Method::PUT, Some(id)) => {
            let body = match parse_json(&body) {
                Ok(b) => b,
                Err(f) => return f.into_response(),
            };
            put_resource(group, &target, id, body)
        }
        (Method::DELETE, Some(id)) => delete_resource(group, &target, id),
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// What a read returns: SSL private keys are never sent back.
fn present(r: Res, v: &Value) -> Value {
    let mut v = v.clone();
    if r == Res::Ssls
        && let Some(m) = v.as_object_mut()
    {
        m.remove("key");
        m.remove("keys");
    }
    v
}

fn list_resources(group: &mut Group, t: &Target, q: &HashMap<String, String>) -> Response {
    let labels: Vec<(&str, &str)> = q
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("labels[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k, v.as_str()))
        })
        .collect();
    let parent_prefix = t.parent.as_ref().map(|p| format!("{p}/"));
    let items: Vec<(String, Value)> = group
        .table(t.res)
        .iter()
        .filter(|(k, _)| parent_prefix.as_deref().is_none_or(|p| k.starts_with(p)))
        .filter(|(_, v)| {
            q.get("service_id")
                .is_none_or(|s| v.get("service_id").map(id_string).as_deref() == Some(s))
        })
        .filter(|(_, v)| {
            labels.iter().all(|(k, want)| {
                v.get("labels")
                    .and_then(|l| l.get(*k))
                    .and_then(Value::as_str)
                    == Some(*want)
            })
        })
        .map(|(k, v)| (k.clone(), present(t.res, v)))
        .collect();
    if t.res == Res::PluginMetadata {
        return value(&Value::Object(items.into_iter().collect()));
    }
    list(&items.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
}

fn require_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, Fail> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fail::bad(format!("{field} is required")))
}

fn validate(group: &mut Group, t: &Target, id: &str, body: &mut Value) -> Result<(), Fail> {
    let bad = |m: String| Fail::bad(m);
    if !body.is_object() {
        return Err(bad("invalid request body: expected an object".into()));
    }
    let check_upstream = |up: &Value| -> Result<(), Fail> {
        let mut probe = up.clone();
        check_upstream_value(&mut probe)
            .map_err(|e| Fail::bad(format!("invalid upstream: {}", e.raw())))
    };
    match t.res {
        Res::Services => {
            require_str(body, "name")?;
            if let Some(ty) = body.get("type")
                && !matches!(ty.as_str(), Some("http" | "stream"))
            {
                return Err(bad("type must be one of: http, stream".into()));
            }
            if let Some(p) = body.get("path_prefix")
                && !p.as_str().is_some_and(|p| p.starts_with('/'))
            {
                return Err(bad("path_prefix must start with /".into()));
            }
            if let Some(up) = body.get("upstream") {
                check_upstream(up)?;
            }
        }
        Res::ServiceUpstreams => {
            require_str(body, "name")?;
            check_upstream(body)?;
        }
        Res::Routes | Res::StreamRoutes => {
            require_str(body, "name")?;
            let sid = require_str(body, "service_id")?.to_owned();
            if !group.table(Res::Services).contains_key(&sid) {
                return Err(bad(format!("service [{sid}] not found")));
            }
            if t.res == Res::Routes {
                let paths_ok = body
                    .get("paths")
                    .and_then(Value::as_array)
                    .is_some_and(|p| {
                        !p.is_empty()
                            && p.iter()
                                .all(|x| x.as_str().is_some_and(|s| s.starts_with('/')))
                    });
                if !paths_ok {
                    return Err(bad(
                        "paths must be a non-empty array of paths starting with /".into(),
                    ));
                }
            }
        }
        Res::Consumers => {
            if let Some(u) = body.get("username")
                && u.as_str() != Some(id)
            {
                return Err(bad("wrong username".into()));
            }
            if let Some(m) = body.as_object_mut() {
                m.insert("username".into(), json!(id));
            }
        }
        Res::Credentials => {
            let user = t.parent.as_deref().unwrap_or_default();
            if !group.table(Res::Consumers).contains_key(user) {
                return Err(Fail {
                    status: StatusCode::NOT_FOUND,
                    msg: "consumer not found".into(),
                });
            }
            let plugins = body.get("plugins").and_then(Value::as_object);
            let ok = plugins.is_some_and(|p| p.len() == 1 && p.keys().all(|k| is_auth_plugin(k)));
            if !ok {
                return Err(bad(
                    "plugins must hold exactly one authentication plugin".into()
                ));
            }
        }
        Res::Ssls => {
            let is_server = body.get("type").and_then(Value::as_str) != Some("client");
            require_str(body, "cert")?;
            require_str(body, "key")?;
            let has_snis = body
                .get("snis")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if is_server && !has_snis {
                return Err(bad("snis is required".into()));
            }
        }
        Res::GlobalRules => {
            if !body.get("plugins").is_some_and(Value::is_object) {
                return Err(bad("plugins is required".into()));
            }
        }
        Res::PluginMetadata => {}
    }
    Ok(())
}

fn put_resource(group: &mut Group, t: &Target, id: &str, mut body: Value) -> Response {
    let local_id = id.rsplit('/').next().unwrap_or(id).to_owned();
    if let Err(f) = validate(group, t, &local_id, &mut body) {
        return f.into_response();
    }
    if let Some(m) = body.as_object_mut() {
        if !matches!(t.res, Res::Consumers | Res::PluginMetadata) {
            m.insert("id".into(), json!(local_id));
        }
        if t.res == Res::ServiceUpstreams
            && let Some(sid) = &t.parent
        {
            m.insert("service_id".into(), json!(sid));
        }
    }
    apply_defaults(&mut body, &defaults(t.res));
    if t.res != Res::PluginMetadata {
        let now = unix_now();
        let created = group
            .table(t.res)
            .get(id)
            .and_then(|v| v.get("create_time").cloned())
            .unwrap_or_else(|| json!(now));
        if let Some(m) = body.as_object_mut() {
            m.insert("create_time".into(), created);
            m.insert("update_time".into(), json!(now));
        }
    }
    group.table(t.res).insert(id.to_owned(), body.clone());
    value(&present(t.res, &body))
}

fn delete_resource(group: &mut Group, t: &Target, id: &str) -> Response {
    if group.table(t.res).remove(id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("{} not found", t.res.singular()),
        );
    }
    match t.res {
        Res::Services => {
            for r in [Res::Routes, Res::StreamRoutes] {
                group
                    .table(r)
                    .retain(|_, v| v.get("service_id").map(id_string).as_deref() != Some(id));
            }
            let prefix = format!("{id}/");
            group
                .table(Res::ServiceUpstreams)
                .retain(|k, _| !k.starts_with(&prefix));
        }
        Res::Consumers => {
            let prefix = format!("{id}/");
            group
                .table(Res::Credentials)
                .retain(|k, _| !k.starts_with(&prefix));
        }
        _ => {}
    }
    json_response(StatusCode::OK, &json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_nested_objects_and_array_items() {
        let mut v =
            json!({"name": "s", "upstream": {"nodes": [{"host": "a", "port": 1, "weight": 1}]}});
        apply_defaults(&mut v, &defaults(Res::Services));
        assert_eq!(v["type"], "http");
        assert_eq!(v["upstream"]["type"], "roundrobin");
        assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
        let mut bare = json!({"name": "s"});
        apply_defaults(&mut bare, &defaults(Res::Services));
        assert!(
            bare.get("upstream").is_none(),
            "absent objects are not created"
        );
    }

    #[test]
    fn schema_core_carries_the_same_defaults() {
        let s = schema_of(&defaults(Res::Services));
        assert_eq!(s["properties"]["type"]["default"], "http");
        assert_eq!(
            s["properties"]["upstream"]["properties"]["nodes"]["items"]["properties"]["priority"]["default"],
            0
        );
    }

    #[test]
    fn targets_parse() {
        let t = parse_target(&["services", "s1", "upstreams", "u1"]).unwrap();
        assert_eq!(t.res, Res::ServiceUpstreams);
        assert_eq!(t.id.as_deref(), Some("s1/u1"));
        let t = parse_target(&["consumers", "jack", "credentials"]).unwrap();
        assert_eq!(t.res, Res::Credentials);
        assert!(t.id.is_none());
        assert!(parse_target(&["upstreams"]).is_none());
    }
}
