//! Reading the gateway's current state into [`Resource`]s (domain.md §1.5 "Dump").
//!
//! APISIX Admin API: one `GET` per collection (plus one per consumer for
//! credentials on APISIX ≥ 3.11). A service's default upstream is the upstream its `upstream_id`
//! names; named upstreams carry ADC's `__ADC_UPSTREAM_SERVICE_ID` label. Objects outside ADC's
//! model are left alone and reported: routes without (or with a missing) service, upstreams no
//! ADC service owns, plugin configs, consumer groups.
//!
//! API7 EE: the same collections scoped by `gateway_group_id`, in ADC's `backend-api7` shapes.
//!
//! Standalone flavour: one `GET /apisix/admin/configs` returns the whole document.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map as JsonMap, Value as JsonValue};

use crate::client::{Client, check};
use crate::compare::Defaults;
use crate::error::SyncError;
use crate::model::{Part, PartRole, Resource, ResourceType, UPSTREAM_SERVICE_LABEL};

/// A gateway version `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// What ADC assumes when the server does not say (newest behaviour).
    pub const UNKNOWN: Version = Version(999, 999, 999);

    /// Parses `3.12.0`, `3.12`, `APISIX/3.12.0`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.rsplit('/').next().unwrap_or(s);
        let mut it = s.split(['.', '-']).map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next().and_then(Result::ok).unwrap_or(0);
        let patch = it.next().and_then(Result::ok).unwrap_or(0);
        Some(Version(major, minor, patch))
    }

    /// From a `Server: APISIX/3.12.0` header.
    pub fn from_server_header(h: Option<&str>) -> Version {
        h.filter(|h| h.to_ascii_uppercase().starts_with("APISIX/"))
            .and_then(Version::parse)
            .unwrap_or(Version::UNKNOWN)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Version::UNKNOWN {
            f.write_str("unknown")
        } else {
            write!(f, "{}.{}.{}", self.0, self.1, self.2)
        }
    }
}

/// The gateway's state.
#[derive(Clone, Debug)]
pub struct RemoteState {
    pub resources: Vec<Resource>,
    pub version: Version,
    /// Objects found but left alone.
    pub warnings: Vec<String>,
}

/// An id as a string (APISIX accepts integer ids too).
fn id_str(v: Option<&JsonValue>) -> Option<String> {
    match v? {
        JsonValue::String(s) => Some(s.clone()),
        JsonValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn labels_of(v: &JsonValue) -> BTreeMap<String, String> {
    v.get("labels")
        .and_then(JsonValue::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_field(v: &JsonValue, k: &str) -> Option<String> {
    v.get(k).and_then(JsonValue::as_str).map(str::to_string)
}

/// `(id, value)` pairs of an Admin API list response. Empty lists may come back as `{}`
/// (Lua's JSON encoder), which is accepted.
pub fn list_values(body: &JsonValue) -> Vec<(String, JsonValue)> {
    let Some(list) = body.get("list").and_then(JsonValue::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|item| {
            let value = item.get("value")?.clone();
            let key_id = item
                .get("key")
                .and_then(JsonValue::as_str)
                .and_then(|k| k.rsplit('/').next())
                .map(str::to_string);
            let id = id_str(value.get("id")).or(key_id)?;
            Some((id, value))
        })
        .collect()
}

fn resource(
    rtype: ResourceType,
    id: String,
    name: String,
    parent: Option<String>,
    parts: Vec<Part>,
) -> Resource {
    let labels = parts
        .iter()
        .find(|p| p.role == PartRole::Main)
        .map(|p| labels_of(&p.body))
        .unwrap_or_default();
    Resource {
        rtype,
        id,
        name,
        parent,
        labels,
        parts,
        origin: None,
    }
}

fn main_part(path: String, body: JsonValue) -> Part {
    Part {
        role: PartRole::Main,
        path,
        body,
    }
}

/// Reads the APISIX Admin API state. The version comes from the `Server` header of the first
/// response; credentials are read from 3.11 on.
pub fn fetch_admin(client: &Client<'_>) -> Result<RemoteState, SyncError> {
    let first = client.get("/apisix/admin/services")?;
    let version = Version::from_server_header(first.header("server"));
    let services = list_values(&parse_json(client, "/apisix/admin/services", &first.body)?);
    let upstreams = list("upstreams", client)?;
    let routes = list("routes", client)?;
    let ssls = list("ssls", client)?;
    let consumers = list("consumers", client)?;
    let global_rules = list("global_rules", client)?;
    let mut warnings = Vec::new();
    // Both answer 4xx on gateways without the feature (stream mode off, ADC issue #251; old
    // APISIX without plugin_metadata listing): treated as empty, like ADC.
    let stream_routes = list_optional("stream_routes", client, &mut warnings)?;
    let plugin_metadata = list_optional("plugin_metadata", client, &mut warnings)?;

    let mut out = Vec::new();
    let upstream_by_id: BTreeMap<&str, &JsonValue> =
        upstreams.iter().map(|(id, v)| (id.as_str(), v)).collect();
    let service_ids: HashSet<&str> = services.iter().map(|(id, _)| id.as_str()).collect();
    let mut owned_upstreams = HashSet::new();
    for (id, v) in &services {
        let mut parts = Vec::new();
        if let Some(uid) = id_str(v.get("upstream_id"))
            && let Some(u) = upstream_by_id.get(uid.as_str())
        {
            parts.push(Part {
                role: PartRole::Upstream,
                path: format!("upstreams/{uid}"),
                body: (*u).clone(),
            });
            owned_upstreams.insert(uid);
        }
        parts.push(main_part(format!("services/{id}"), v.clone()));
        let name = str_field(v, "name").unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::Service,
            id.clone(),
            name,
            None,
            parts,
        ));
    }
    let mut foreign_upstreams = 0;
    for (id, v) in &upstreams {
        if owned_upstreams.contains(id) {
            continue;
        }
        match labels_of(v).get(UPSTREAM_SERVICE_LABEL) {
            Some(sid) if service_ids.contains(sid.as_str()) => {
                let name = str_field(v, "name").unwrap_or_else(|| id.clone());
                let parts = vec![main_part(format!("upstreams/{id}"), v.clone())];
                out.push(resource(
                    ResourceType::Upstream,
                    id.clone(),
                    name,
                    Some(sid.clone()),
                    parts,
                ));
            }
            _ => foreign_upstreams += 1,
        }
    }
    let mut orphans = 0;
    for (rtype, coll, items) in [
        (ResourceType::Route, "routes", &routes),
        (ResourceType::StreamRoute, "stream_routes", &stream_routes),
    ] {
        for (id, v) in items {
            match id_str(v.get("service_id")) {
                Some(sid) if service_ids.contains(sid.as_str()) => {
                    let name = str_field(v, "name")
                        .or_else(|| labels_of(v).get("__ADC_NAME").cloned())
                        .unwrap_or_else(|| id.clone());
                    let parts = vec![main_part(format!("{coll}/{id}"), v.clone())];
                    out.push(resource(rtype, id.clone(), name, Some(sid), parts));
                }
                _ => orphans += 1,
            }
        }
    }
    for (id, v) in &ssls {
        let snis = v
            .get("snis")
            .and_then(JsonValue::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(JsonValue::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .or_else(|| str_field(v, "sni"))
            .unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::Ssl,
            id.clone(),
            snis,
            None,
            vec![main_part(format!("ssls/{id}"), v.clone())],
        ));
    }
    for (key_id, v) in &consumers {
        let username = str_field(v, "username").unwrap_or_else(|| key_id.clone());
        let parts = vec![main_part(format!("consumers/{username}"), v.clone())];
        out.push(resource(
            ResourceType::Consumer,
            username.clone(),
            username.clone(),
            None,
            parts,
        ));
        if version >= Version(3, 11, 0) {
            let path = format!("/apisix/admin/consumers/{username}/credentials");
            let resp = client.request("GET", &path, None, &[])?;
            if resp.status == 404 {
                continue;
            }
            let resp = check("GET", &client.url(&path), resp)?;
            for (cid, cv) in list_values(&parse_json(client, &path, &resp.body)?) {
                let name = str_field(&cv, "name").unwrap_or_else(|| cid.clone());
                let parts = vec![main_part(
                    format!("consumers/{username}/credentials/{cid}"),
                    cv,
                )];
                out.push(resource(
                    ResourceType::ConsumerCredential,
                    cid,
                    name,
                    Some(username.clone()),
                    parts,
                ));
            }
        }
    }
    for (id, v) in &global_rules {
        let name = v
            .get("plugins")
            .and_then(JsonValue::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| id.clone());
        let parts = vec![main_part(format!("global_rules/{id}"), v.clone())];
        out.push(resource(
            ResourceType::GlobalRule,
            id.clone(),
            name,
            None,
            parts,
        ));
    }
    for (id, v) in &plugin_metadata {
        let parts = vec![main_part(format!("plugin_metadata/{id}"), v.clone())];
        out.push(resource(
            ResourceType::PluginMetadata,
            id.clone(),
            id.clone(),
            None,
            parts,
        ));
    }
    if orphans > 0 {
        warnings.push(format!("{orphans} route(s)/stream route(s) without an existing service were left alone (outside ADC's model)"));
    }
    if foreign_upstreams > 0 {
        warnings.push(format!(
            "{foreign_upstreams} upstream(s) not owned by an ADC service were left alone"
        ));
    }
    Ok(RemoteState {
        resources: out,
        version,
        warnings,
    })
}

fn parse_json(client: &Client<'_>, path: &str, body: &[u8]) -> Result<JsonValue, SyncError> {
    serde_json::from_slice(body).map_err(|e| SyncError::Protocol {
        url: client.url(path),
        message: format!("body is not JSON: {e}"),
    })
}

fn list(collection: &str, client: &Client<'_>) -> Result<Vec<(String, JsonValue)>, SyncError> {
    let path = format!("/apisix/admin/{collection}");
    let resp = client.get(&path)?;
    Ok(list_values(&parse_json(client, &path, &resp.body)?))
}

fn list_optional(
    collection: &str,
    client: &Client<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, JsonValue)>, SyncError> {
    let path = format!("/apisix/admin/{collection}");
    let resp = client.request("GET", &path, None, &[])?;
    if (400..500).contains(&resp.status) && resp.status != 401 {
        warnings.push(format!(
            "GET {path} answered HTTP {} (feature off on this gateway?): no {collection} read, none will be deleted",
            resp.status
        ));
        return Ok(Vec::new());
    }
    let resp = check("GET", &client.url(&path), resp)?;
    Ok(list_values(&parse_json(client, &path, &resp.body)?))
}

/// Items of an API7 list response: `{list: [value, …], total}` of bare values (a `{key, value}`
/// wrapper, as APISIX sends, is unwrapped too).
fn api7_items(body: &JsonValue) -> Vec<JsonValue> {
    let Some(list) = body.get("list").and_then(JsonValue::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|i| match (i.get("key"), i.get("value")) {
            (Some(_), Some(v)) => v.clone(),
            _ => i.clone(),
        })
        .collect()
}

fn api7_list(
    client: &Client<'_>,
    path: &str,
    optional: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<JsonValue>, SyncError> {
    let resp = client.request("GET", path, None, &[])?;
    if optional && (400..500).contains(&resp.status) && resp.status != 401 {
        if resp.status != 404 {
            warnings.push(format!(
                "GET {path} answered HTTP {}: treated as empty",
                resp.status
            ));
        }
        return Ok(Vec::new());
    }
    let resp = check("GET", &client.url(path), resp)?;
    Ok(api7_items(&parse_json(client, path, &resp.body)?))
}

/// Reads an API7 EE gateway group (ADC's `backend-api7` shapes, domain.md §1.6): services with
/// their upstream inline, named upstreams under `services/{id}/upstreams`, routes by `service_id`.
/// Also returns the default values the control plane publishes at `/api/schema/core` (APISIX's
/// built-in table alone when it does not answer).
pub fn fetch_api7(
    client: &Client<'_>,
    version: Version,
) -> Result<(RemoteState, Defaults), SyncError> {
    let mut warnings = Vec::new();
    let schema = client.request("GET", "/api/schema/core", None, &[])?;
    let defaults = match serde_json::from_slice::<JsonValue>(&schema.body) {
        Ok(body) if schema.status == 200 => Defaults::with_schema_core(&body),
        _ => {
            warnings.push(format!(
                "GET /api/schema/core answered HTTP {}: using APISIX's default values",
                schema.status
            ));
            Defaults::apisix()
        }
    };
    let id_of = |v: &JsonValue, alt: &str| id_str(v.get("id")).or_else(|| id_str(v.get(alt)));
    let mut out = Vec::new();
    let services = api7_list(client, "/apisix/admin/services", false, &mut warnings)?;
    let mut service_ids = HashSet::new();
    for v in services {
        let Some(id) = id_of(&v, "service_id") else {
            continue;
        };
        let name = str_field(&v, "name").unwrap_or_else(|| id.clone());
        service_ids.insert(id.clone());
        out.push(resource(
            ResourceType::Service,
            id.clone(),
            name,
            None,
            vec![main_part(format!("services/{id}"), v)],
        ));
        for u in api7_list(
            client,
            &format!("/apisix/admin/services/{id}/upstreams"),
            true,
            &mut warnings,
        )? {
            let Some(uid) = id_str(u.get("id")) else {
                continue;
            };
            let uname = str_field(&u, "name").unwrap_or_else(|| uid.clone());
            let parts = vec![main_part(format!("services/{id}/upstreams/{uid}"), u)];
            out.push(resource(
                ResourceType::Upstream,
                uid,
                uname,
                Some(id.clone()),
                parts,
            ));
        }
    }
    let mut orphans = 0;
    for (rtype, coll, alt, optional) in [
        (ResourceType::Route, "routes", "route_id", false),
        (
            ResourceType::StreamRoute,
            "stream_routes",
            "stream_route_id",
            true,
        ),
    ] {
        for v in api7_list(
            client,
            &format!("/apisix/admin/{coll}"),
            optional,
            &mut warnings,
        )? {
            let Some(id) = id_of(&v, alt) else { continue };
            match id_str(v.get("service_id")).filter(|s| service_ids.contains(s)) {
                Some(sid) => {
                    let name = str_field(&v, "name").unwrap_or_else(|| id.clone());
                    out.push(resource(
                        rtype,
                        id.clone(),
                        name,
                        Some(sid),
                        vec![main_part(format!("{coll}/{id}"), v)],
                    ));
                }
                None => orphans += 1,
            }
        }
    }
    for v in api7_list(client, "/apisix/admin/ssls", false, &mut warnings)? {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        let name = v
            .get("snis")
            .and_then(JsonValue::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(JsonValue::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::Ssl,
            id.clone(),
            name,
            None,
            vec![main_part(format!("ssls/{id}"), v)],
        ));
    }
    for v in api7_list(client, "/apisix/admin/consumers", false, &mut warnings)? {
        let Some(u) = str_field(&v, "username") else {
            continue;
        };
        out.push(resource(
            ResourceType::Consumer,
            u.clone(),
            u.clone(),
            None,
            vec![main_part(format!("consumers/{u}"), v)],
        ));
        for c in api7_list(
            client,
            &format!("/apisix/admin/consumers/{u}/credentials"),
            true,
            &mut warnings,
        )? {
            let Some(cid) = id_str(c.get("id")) else {
                continue;
            };
            let name = str_field(&c, "name").unwrap_or_else(|| cid.clone());
            let parts = vec![main_part(format!("consumers/{u}/credentials/{cid}"), c)];
            out.push(resource(
                ResourceType::ConsumerCredential,
                cid,
                name,
                Some(u.clone()),
                parts,
            ));
        }
    }
    for v in api7_list(client, "/apisix/admin/global_rules", false, &mut warnings)? {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        let name = v
            .get("plugins")
            .and_then(JsonValue::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::GlobalRule,
            id.clone(),
            name,
            None,
            vec![main_part(format!("global_rules/{id}"), v)],
        ));
    }
    // plugin metadata comes back as one map `{value: {plugin: config}}` (or as a list)
    let path = "/apisix/admin/plugin_metadata";
    let resp = client.request("GET", path, None, &[])?;
    if resp.status != 404 {
        let resp = check("GET", &client.url(path), resp)?;
        let body = parse_json(client, path, &resp.body)?;
        let entries: Vec<(String, JsonValue)> =
            match body.get("value").and_then(JsonValue::as_object) {
                Some(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                None => api7_items(&body)
                    .into_iter()
                    .filter_map(|v| Some((id_str(v.get("id"))?, v)))
                    .collect(),
            };
        for (id, v) in entries {
            out.push(resource(
                ResourceType::PluginMetadata,
                id.clone(),
                id.clone(),
                None,
                vec![main_part(format!("plugin_metadata/{id}"), v)],
            ));
        }
    }
    if orphans > 0 {
        warnings.push(format!(
            "{orphans} route(s)/stream route(s) without an existing service were left alone"
        ));
    }
    Ok((
        RemoteState {
            resources: out,
            version,
            warnings,
        },
        defaults,
    ))
}

/// The standalone document and the resources in it.
#[derive(Clone, Debug)]
pub struct StandaloneState {
    pub state: RemoteState,
    /// The whole document as fetched (`{}` when the gateway has none yet).
    pub doc: JsonMap<String, JsonValue>,
}

/// Collections of the standalone document that hold ADC resources.
pub const STANDALONE_COLLECTIONS: &[&str] = &[
    "routes",
    "services",
    "upstreams",
    "ssls",
    "consumers",
    "global_rules",
    "plugin_metadata",
    "stream_routes",
];

/// `GET /apisix/admin/configs` (APISIX ≥ 3.13 API-driven standalone). 404 means no config yet.
pub fn fetch_standalone(client: &Client<'_>) -> Result<StandaloneState, SyncError> {
    let path = "/apisix/admin/configs";
    let resp = client.request("GET", path, None, &[])?;
    let version = Version::from_server_header(resp.header("server"));
    let doc = if resp.status == 404
        || (resp.status == 200 && resp.body.iter().all(u8::is_ascii_whitespace))
    {
        JsonMap::new()
    } else {
        let resp = check("GET", &client.url(path), resp)?;
        match parse_json(client, path, &resp.body)? {
            JsonValue::Object(m) => m,
            _ => {
                return Err(SyncError::Protocol {
                    url: client.url(path),
                    message: "the config is not a JSON object".into(),
                });
            }
        }
    };
    let state = standalone_resources(&doc, version);
    Ok(StandaloneState { state, doc })
}

/// The ADC resources of a standalone document. Credentials live in `consumers` with ids
/// `<username>/credentials/<id>`.
pub fn standalone_resources(doc: &JsonMap<String, JsonValue>, version: Version) -> RemoteState {
    let items = |k: &str| {
        doc.get(k)
            .and_then(JsonValue::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let services = items("services");
    let service_ids: HashSet<String> = services
        .iter()
        .filter_map(|v| id_str(v.get("id")))
        .collect();
    for v in services {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        let name = str_field(&v, "name").unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::Service,
            id.clone(),
            name,
            None,
            vec![main_part(format!("services/{id}"), v)],
        ));
    }
    for v in items("upstreams") {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        if let Some(sid) = labels_of(&v)
            .get(UPSTREAM_SERVICE_LABEL)
            .filter(|s| service_ids.contains(*s))
            .cloned()
        {
            let name = str_field(&v, "name").unwrap_or_else(|| id.clone());
            out.push(resource(
                ResourceType::Upstream,
                id.clone(),
                name,
                Some(sid),
                vec![main_part(format!("upstreams/{id}"), v)],
            ));
        }
    }
    let mut orphans = 0;
    for (rtype, coll) in [
        (ResourceType::Route, "routes"),
        (ResourceType::StreamRoute, "stream_routes"),
    ] {
        for v in items(coll) {
            let Some(id) = id_str(v.get("id")) else {
                continue;
            };
            match id_str(v.get("service_id")).filter(|s| service_ids.contains(s)) {
                Some(sid) => {
                    let name = str_field(&v, "name").unwrap_or_else(|| id.clone());
                    out.push(resource(
                        rtype,
                        id.clone(),
                        name,
                        Some(sid),
                        vec![main_part(format!("{coll}/{id}"), v)],
                    ));
                }
                None => orphans += 1,
            }
        }
    }
    for v in items("ssls") {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        let name = v
            .get("snis")
            .and_then(JsonValue::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(JsonValue::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::Ssl,
            id.clone(),
            name,
            None,
            vec![main_part(format!("ssls/{id}"), v)],
        ));
    }
    for v in items("consumers") {
        if let Some(u) = str_field(&v, "username") {
            out.push(resource(
                ResourceType::Consumer,
                u.clone(),
                u.clone(),
                None,
                vec![main_part(format!("consumers/{u}"), v)],
            ));
        } else if let Some((u, cid)) = id_str(v.get("id"))
            .as_deref()
            .and_then(|i| i.split_once("/credentials/"))
        {
            let name = str_field(&v, "name").unwrap_or_else(|| cid.to_string());
            let parts = vec![main_part(
                format!("consumers/{u}/credentials/{cid}"),
                v.clone(),
            )];
            out.push(resource(
                ResourceType::ConsumerCredential,
                cid.to_string(),
                name,
                Some(u.to_string()),
                parts,
            ));
        }
    }
    for v in items("global_rules") {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        let name = v
            .get("plugins")
            .and_then(JsonValue::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| id.clone());
        out.push(resource(
            ResourceType::GlobalRule,
            id.clone(),
            name,
            None,
            vec![main_part(format!("global_rules/{id}"), v)],
        ));
    }
    for v in items("plugin_metadata") {
        let Some(id) = id_str(v.get("id")) else {
            continue;
        };
        out.push(resource(
            ResourceType::PluginMetadata,
            id.clone(),
            id.clone(),
            None,
            vec![main_part(format!("plugin_metadata/{id}"), v)],
        ));
    }
    if orphans > 0 {
        warnings.push(format!(
            "{orphans} route(s)/stream route(s) without an existing service were left alone"
        ));
    }
    RemoteState {
        resources: out,
        version,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        assert_eq!(
            Version::from_server_header(Some("APISIX/3.12.0")),
            Version(3, 12, 0)
        );
        assert_eq!(
            Version::from_server_header(Some("openresty")),
            Version::UNKNOWN
        );
        assert_eq!(Version::from_server_header(None), Version::UNKNOWN);
        assert_eq!(Version::parse("3.11"), Some(Version(3, 11, 0)));
        assert!(Version(3, 7, 0) < Version(3, 11, 0));
        assert_eq!(Version(3, 2, 1).to_string(), "3.2.1");
    }

    #[test]
    fn list_values_accepts_lua_empty_objects_and_key_ids() {
        assert!(list_values(&json!({"total": 0, "list": {}})).is_empty());
        let v = list_values(&json!({"total": 2, "list": [
            {"key": "/apisix/routes/7", "value": {"uri": "/"}},
            {"key": "/apisix/routes/x", "value": {"id": 8, "uri": "/"}}]}));
        assert_eq!(v[0].0, "7");
        assert_eq!(v[1].0, "8");
    }

    #[test]
    fn standalone_credentials_and_plugin_metadata() {
        let doc = json!({
            "consumers": [{"username": "jack"}, {"id": "jack/credentials/c1", "name": "k", "plugins": {"key-auth": {"key": "x"}}}],
            "plugin_metadata": [{"id": "http-logger", "log_format": {}}],
            "routes": [{"id": "r", "uris": ["/"], "service_id": "missing"}],
        });
        let s = standalone_resources(doc.as_object().unwrap(), Version::UNKNOWN);
        let kinds: Vec<(ResourceType, &str, Option<&str>)> = s
            .resources
            .iter()
            .map(|r| (r.rtype, r.id.as_str(), r.parent.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ResourceType::Consumer, "jack", None),
                (ResourceType::ConsumerCredential, "c1", Some("jack")),
                (ResourceType::PluginMetadata, "http-logger", None),
            ]
        );
        assert_eq!(s.warnings.len(), 1);
    }
}
