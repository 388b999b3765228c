//! An in-memory Admin API that behaves like APISIX 3.x where it matters to a sync: the
//! `{key, value}` wrapper, 201/200 on PUT, 404 `Key not found`, `Server: APISIX/x.y.z`, Lua's
//! `{}` for an empty list, schema defaults filled on write, timestamps added, SSL keys stored
//! encrypted, and referential checks (a route needs its service, a service its upstream; an
//! upstream or service still referenced cannot be deleted) so a wrong apply order fails here as
//! it would on a real gateway.
//!
//! The defaults are written out here independently of the crate's table, from APISIX's
//! schema_def.lua, so the idempotency tests do not compare the table with itself.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use meridian_sdk::http::{HttpError, Request, Response, Transport};
use serde_json::{Value, json};

pub(crate) const BASE: &str = "http://gw.test:9180";

#[derive(Default)]
pub(crate) struct Fake {
    /// collection → id → stored value
    pub(crate) store: RefCell<BTreeMap<String, BTreeMap<String, Value>>>,
    /// every non-GET request: (method, path without query)
    pub(crate) writes: RefCell<Vec<(String, String)>>,
    /// every request URL
    pub(crate) urls: RefCell<Vec<String>>,
    pub(crate) api_key: Option<String>,
    pub(crate) version: String,
    pub(crate) stream_mode: bool,
    /// API7 EE shapes (ADC's backend-api7): bare-value lists, inline service upstreams, named
    /// upstreams under `services/{id}/upstreams`, routes with `paths`, `/api/schema/core`.
    pub(crate) api7: bool,
    /// API7 EE: every /apisix/admin request must carry this `gateway_group_id`.
    pub(crate) gateway_group: Option<(String, String)>,
    /// Answer every request with this status (5xx tests).
    pub(crate) fail_with: Cell<Option<u16>>,
    /// Standalone document (APISIX ≥ 3.13 `/apisix/admin/configs`).
    pub(crate) standalone: RefCell<Option<Value>>,
    pub(crate) last_digest: RefCell<Option<String>>,
    pub(crate) clock: Cell<u64>,
}

impl Fake {
    pub(crate) fn apisix(version: &str) -> Fake {
        Fake {
            api_key: Some("secret-key".into()),
            version: version.into(),
            stream_mode: true,
            ..Fake::default()
        }
    }

    pub(crate) fn get(&self, coll: &str, id: &str) -> Option<Value> {
        self.store
            .borrow()
            .get(coll)
            .and_then(|m| m.get(id))
            .cloned()
    }

    pub(crate) fn count(&self, coll: &str) -> usize {
        self.store.borrow().get(coll).map_or(0, BTreeMap::len)
    }

    /// Stores a value as if written through the Admin API by someone else.
    pub(crate) fn seed(&self, coll: &str, id: &str, value: Value) {
        let mut v = value;
        fill_defaults(coll, &mut v);
        v["id"] = json!(id);
        self.store
            .borrow_mut()
            .entry(coll.into())
            .or_default()
            .insert(id.into(), v);
    }

    pub(crate) fn take_writes(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.writes.borrow_mut())
    }

    fn respond(&self, status: u16, body: Value) -> Response {
        #![allow(clippy::needless_pass_by_value)] // every caller builds the body inline
        Response {
            status,
            headers: vec![
                ("server".into(), format!("APISIX/{}", self.version)),
                ("content-type".into(), "application/json".into()),
            ],
            body: serde_json::to_vec(&body).unwrap(),
            recorded: false,
        }
    }

    fn not_found(&self) -> Response {
        self.respond(404, json!({"message": "Key not found"}))
    }

    fn bad(&self, msg: &str) -> Response {
        self.respond(400, json!({"error_msg": msg}))
    }

    fn exists(&self, coll: &str, id: &str) -> bool {
        self.get(coll, id).is_some()
    }

    fn referenced_by(&self, coll: &str, field: &str, id: &str) -> Option<String> {
        self.store
            .borrow()
            .get(coll)?
            .iter()
            .find(|(_, v)| v.get(field).and_then(Value::as_str) == Some(id))
            .map(|(k, _)| k.clone())
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segs.as_slice()) {
            ("GET", ["stream_routes"]) if !self.stream_mode => self.respond(
                403,
                json!({"error_msg": "stream mode is disabled, can not add stream routes"}),
            ),
            ("GET", ["consumers", user, "credentials"]) => {
                if !self.exists("consumers", user) {
                    return self.not_found();
                }
                let prefix = format!("{user}/");
                let items: Vec<(String, Value)> = self
                    .store
                    .borrow()
                    .get("credentials")
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                self.list(&format!("consumers/{user}/credentials"), items)
            }
            ("GET", [coll]) => {
                let items: Vec<(String, Value)> = self
                    .store
                    .borrow()
                    .get(*coll)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                self.list(coll, items)
            }
            ("PUT", ["consumers", user, "credentials", id]) => {
                if !self.exists("consumers", user) {
                    return self.bad(&format!("consumer {user} does not exist"));
                }
                self.store_put(
                    "credentials",
                    &format!("{user}/{id}"),
                    body.unwrap_or_default(),
                )
            }
            ("PUT", [coll, id]) => {
                let mut v = body.unwrap_or_default();
                if let Err(e) = self.validate(coll, id, &v) {
                    return self.bad(&e);
                }
                if *coll == "ssls" {
                    // APISIX stores keys encrypted and never returns them in plaintext
                    if let Some(k) = v.get("key").and_then(Value::as_str) {
                        v["key"] = json!(format!("encrypted:{}", k.len()));
                    }
                }
                self.store_put(coll, id, v)
            }
            ("DELETE", ["consumers", user, "credentials", id]) => {
                self.store_delete("credentials", &format!("{user}/{id}"))
            }
            ("DELETE", [coll, id]) => {
                if *coll == "upstreams" {
                    for c in ["services", "routes"] {
                        if let Some(by) = self.referenced_by(c, "upstream_id", id) {
                            return self.bad(&format!(
                                "can not delete this upstream, {} [{by}] is still using it now",
                                &c[..c.len() - 1]
                            ));
                        }
                    }
                }
                if *coll == "services"
                    && let Some(by) = self.referenced_by("routes", "service_id", id)
                {
                    return self.bad(&format!(
                        "can not delete this service directly, route [{by}] is still using it now"
                    ));
                }
                if *coll == "consumers" {
                    // credentials live under their consumer and go with it
                    let prefix = format!("{id}/");
                    if let Some(creds) = self.store.borrow_mut().get_mut("credentials") {
                        creds.retain(|k, _| !k.starts_with(&prefix));
                    }
                }
                self.store_delete(coll, id)
            }
            _ => self.respond(
                404,
                json!({"error_msg": format!("unsupported {method} {path}")}),
            ),
        }
    }

    fn validate(&self, coll: &str, id: &str, v: &Value) -> Result<(), String> {
        if !v.is_object() {
            return Err("invalid configuration: expected an object".into());
        }
        if let Some(body_id) = v.get("id").and_then(Value::as_str)
            && body_id != id
        {
            return Err("wrong route id".into());
        }
        match coll {
            "routes" => {
                if v.get("uris").is_none() && v.get("uri").is_none() {
                    return Err("invalid configuration: value should match only one schema, but matches none".into());
                }
                if let Some(s) = v.get("service_id").and_then(Value::as_str)
                    && !self.exists("services", s)
                {
                    return Err(format!(
                        "failed to fetch service info by service id [{s}], response code: 404"
                    ));
                }
            }
            "stream_routes" if !self.stream_mode => {
                return Err("stream mode is disabled, can not add stream routes".into());
            }
            "services" => {
                if let Some(u) = v.get("upstream_id").and_then(Value::as_str)
                    && !self.exists("upstreams", u)
                {
                    return Err(format!(
                        "failed to fetch upstream info by upstream id [{u}], response code: 404"
                    ));
                }
            }
            "upstreams" if v.get("nodes").is_none() && v.get("service_name").is_none() => {
                return Err(
                    "invalid configuration: value should match only one schema, but matches none"
                        .into(),
                );
            }
            "global_rules" if v.get("plugins").is_none() => {
                return Err("invalid configuration: property \"plugins\" is required".into());
            }
            _ => {}
        }
        Ok(())
    }

    fn list(&self, coll: &str, items: Vec<(String, Value)>) -> Response {
        if items.is_empty() {
            // lua-cjson encodes the empty Lua table as an object
            return self.respond(200, json!({"total": 0, "list": {}}));
        }
        let list: Vec<Value> = items
            .into_iter()
            .map(|(id, v)| json!({"key": format!("/apisix/{coll}/{id}"), "value": v, "createdIndex": 1, "modifiedIndex": 2}))
            .collect();
        self.respond(200, json!({"total": list.len(), "list": list}))
    }

    fn store_put(&self, coll: &str, id: &str, mut v: Value) -> Response {
        fill_defaults(coll, &mut v);
        let now = self.clock.get() + 1;
        self.clock.set(now);
        let prev = self.get(coll, id);
        v["create_time"] = prev
            .as_ref()
            .and_then(|p| p.get("create_time").cloned())
            .unwrap_or(json!(now));
        v["update_time"] = json!(now);
        if coll != "plugin_metadata" && coll != "consumers" {
            v["id"] = json!(id.rsplit('/').next().unwrap_or(id));
        }
        self.store
            .borrow_mut()
            .entry(coll.into())
            .or_default()
            .insert(id.into(), v.clone());
        let status = if prev.is_some() { 200 } else { 201 };
        self.respond(
            status,
            json!({"key": format!("/apisix/{coll}/{id}"), "value": v}),
        )
    }

    fn store_delete(&self, coll: &str, id: &str) -> Response {
        let removed = self
            .store
            .borrow_mut()
            .get_mut(coll)
            .and_then(|m| m.remove(id));
        match removed {
            Some(_) => self.respond(
                200,
                json!({"deleted": "1", "key": format!("/apisix/{coll}/{id}")}),
            ),
            None => self.not_found(),
        }
    }

    fn standalone_request(&self, req: &Request) -> Response {
        match req.method.as_str() {
            "GET" => match &*self.standalone.borrow() {
                Some(doc) => self.respond(200, doc.clone()),
                None => self.not_found(),
            },
            "PUT" => {
                let body = req.body.clone().unwrap_or_default();
                let digest = req.header_value("x-digest").map(str::to_string);
                let expected = sha1_smol::Sha1::from(&body).digest().to_string();
                if digest.as_deref() != Some(expected.as_str()) {
                    return self.bad("X-Digest does not match the body");
                }
                if self.last_digest.borrow().as_deref() == Some(expected.as_str()) {
                    return self.respond(200, json!({}));
                }
                let new: Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => return self.bad(&format!("invalid JSON: {e}")),
                };
                if let Some(old) = &*self.standalone.borrow() {
                    for (k, v) in old.as_object().unwrap() {
                        if k.ends_with("_conf_version") {
                            let (o, n) = (
                                v.as_u64().unwrap_or(0),
                                new.get(k).and_then(Value::as_u64).unwrap_or(0),
                            );
                            if n < o {
                                return self
                                    .bad(&format!("{k} must be greater than or equal to ({o})"));
                            }
                        }
                    }
                }
                *self.standalone.borrow_mut() = Some(new);
                *self.last_digest.borrow_mut() = Some(expected);
                self.respond(202, json!({}))
            }
            _ => self.respond(405, json!({})),
        }
    }
}

impl Transport for Fake {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        self.urls.borrow_mut().push(req.url.clone());
        let rest = req
            .url
            .strip_prefix(BASE)
            .ok_or_else(|| HttpError::Denied(req.url.clone()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if req.method != "GET" {
            self.writes
                .borrow_mut()
                .push((req.method.clone(), path.to_string()));
        }
        if let Some(status) = self.fail_with.get() {
            return Ok(self.respond(status, json!({"error_msg": "injected failure"})));
        }
        if let Some(key) = &self.api_key
            && req.header_value("x-api-key") != Some(key.as_str())
        {
            return Ok(self.respond(
                401,
                json!({"error_msg": "failed to check token", "description": "wrong key"}),
            ));
        }
        if path == "/api/version" {
            return Ok(self.respond(200, json!({"value": self.version})));
        }
        if path == "/api/gateway_groups" {
            let groups: Vec<Value> = self
                .gateway_group
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect();
            return Ok(self.respond(200, json!({"list": groups, "total": groups.len()})));
        }
        if path == "/api/schema/core" && self.api7 {
            let upstream = json!({"type": "object", "properties": {
                "type": {"type": "string", "default": "roundrobin"},
                "nodes": {"type": "array", "items": {"type": "object", "properties": {"priority": {"type": "integer", "default": 0}}}}}});
            return Ok(self.respond(200, json!({"value": {
                "service": {"type": "object", "properties": {"type": {"type": "string", "default": "http"}, "upstream": upstream}},
                "upstream": upstream,
                "route": {"type": "object", "properties": {"priority": {"type": "integer", "default": 0}}},
            }})));
        }
        if path == "/apisix/admin/configs" {
            return Ok(self.standalone_request(req));
        }
        let Some(admin) = path.strip_prefix("/apisix/admin/") else {
            return Ok(self.not_found());
        };
        if let Some((id, _)) = &self.gateway_group
            && query != format!("gateway_group_id={id}")
        {
            return Ok(self.bad("gateway_group_id is required"));
        }
        let body = req
            .body
            .as_ref()
            .map(|b| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null));
        if self.api7 {
            return Ok(self.api7_admin(&req.method, admin, body));
        }
        Ok(self.admin(&req.method, admin, body))
    }
}

impl Fake {
    /// The API7 EE control plane's gateway-group resources (shapes of ADC's backend-api7).
    fn api7_admin(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let bare_list =
            |items: Vec<Value>| self.respond(200, json!({"total": items.len(), "list": items}));
        let (coll, key, parent): (String, Option<String>, Option<String>) = match segs.as_slice() {
            ["services", sid, "upstreams", rest @ ..] => (
                "service_upstreams".into(),
                rest.first().map(|u| format!("{sid}/{u}")),
                Some((*sid).to_string()),
            ),
            ["consumers", u, "credentials", rest @ ..] => (
                "credentials".into(),
                rest.first().map(|c| format!("{u}/{c}")),
                Some((*u).to_string()),
            ),
            ["upstreams", ..] => return self.respond(404, json!({"error_msg": "not found"})),
            [c] => ((*c).to_string(), None, None),
            [c, id] => ((*c).to_string(), Some((*id).to_string()), None),
            _ => return self.not_found(),
        };
        match (method, key) {
            ("GET", None) => {
                let prefix = parent.map(|p| format!("{p}/"));
                let items: Vec<(String, Value)> = self
                    .store
                    .borrow()
                    .get(&coll)
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                if coll == "plugin_metadata" {
                    return self.respond(
                        200,
                        json!({"value": items.into_iter().collect::<serde_json::Map<_, _>>()}),
                    );
                }
                bare_list(
                    items
                        .into_iter()
                        .map(|(_, mut v)| {
                            if coll == "ssls" {
                                v.as_object_mut().unwrap().remove("key");
                            }
                            v
                        })
                        .collect(),
                )
            }
            ("PUT", Some(key)) => {
                let mut v = body.unwrap_or_default();
                match coll.as_str() {
                    "routes" => {
                        if v.get("paths")
                            .and_then(Value::as_array)
                            .is_none_or(Vec::is_empty)
                        {
                            return self
                                .bad("paths must be a non-empty array of paths starting with /");
                        }
                        let sid = v
                            .get("service_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !self.exists("services", sid) {
                            return self.bad(&format!("service [{sid}] not found"));
                        }
                    }
                    "services" => {
                        set(&mut v, "type", json!("http"));
                        if let Some(u) = v.get_mut("upstream") {
                            fill_defaults("upstreams", u);
                        }
                    }
                    "service_upstreams" => {
                        fill_defaults("upstreams", &mut v);
                        v["service_id"] = json!(parent.clone().unwrap_or_default());
                    }
                    "credentials"
                        if !self.exists("consumers", parent.as_deref().unwrap_or_default()) =>
                    {
                        return self.respond(404, json!({"error_msg": "consumer not found"}));
                    }
                    other => fill_defaults(other, &mut v),
                }
                let local = key.rsplit('/').next().unwrap_or(&key).to_string();
                if coll != "consumers" && coll != "plugin_metadata" {
                    v["id"] = json!(local);
                }
                self.store
                    .borrow_mut()
                    .entry(coll)
                    .or_default()
                    .insert(key, v.clone());
                self.respond(200, json!({"value": v}))
            }
            ("DELETE", Some(key)) => {
                let removed = self
                    .store
                    .borrow_mut()
                    .get_mut(&coll)
                    .and_then(|m| m.remove(&key));
                if removed.is_none() {
                    return self.respond(404, json!({"error_msg": "not found"}));
                }
                if coll == "services" {
                    // API7 deletes a service's routes and upstreams with it
                    let mut store = self.store.borrow_mut();
                    for c in ["routes", "stream_routes"] {
                        if let Some(m) = store.get_mut(c) {
                            m.retain(|_, v| {
                                v.get("service_id").and_then(Value::as_str) != Some(key.as_str())
                            });
                        }
                    }
                    if let Some(m) = store.get_mut("service_upstreams") {
                        m.retain(|k, _| !k.starts_with(&format!("{key}/")));
                    }
                }
                self.respond(200, json!({}))
            }
            _ => self.respond(405, json!({"error_msg": "method not allowed"})),
        }
    }
}

fn set(v: &mut Value, k: &str, d: Value) {
    if let Some(m) = v.as_object_mut() {
        m.entry(k).or_insert(d);
    }
}

/// APISIX schema defaults (apisix/schema_def.lua), filled on write.
fn fill_defaults(coll: &str, v: &mut Value) {
    fn upstream(u: &mut Value) {
        set(u, "type", json!("roundrobin"));
        set(u, "scheme", json!("http"));
        set(u, "pass_host", json!("pass"));
        set(u, "hash_on", json!("vars"));
        if let Some(nodes) = u.get_mut("nodes").and_then(Value::as_array_mut) {
            for n in nodes {
                set(n, "priority", json!(0));
            }
        }
        if let Some(k) = u.get_mut("keepalive_pool") {
            set(k, "size", json!(320));
            set(k, "idle_timeout", json!(60));
            set(k, "requests", json!(1000));
        }
        if let Some(a) = u.pointer_mut("/checks/active") {
            set(a, "type", json!("http"));
            set(a, "timeout", json!(1));
            set(a, "concurrency", json!(10));
            set(a, "http_path", json!("/"));
            set(a, "https_verify_certificate", json!(true));
            if let Some(h) = a.get_mut("healthy") {
                set(h, "interval", json!(1));
                set(h, "http_statuses", json!([200, 302]));
                set(h, "successes", json!(2));
            }
        }
    }
    match coll {
        "upstreams" => upstream(v),
        "routes" => {
            set(v, "priority", json!(0));
            set(v, "status", json!(1));
        }
        "ssls" => {
            set(v, "type", json!("server"));
            set(v, "status", json!(1));
        }
        _ => {}
    }
}

/// Plan mode as the sandbox does it: reads go through, writes are recorded and answered 202.
pub(crate) struct Recording<'a> {
    pub(crate) inner: &'a Fake,
    pub(crate) recorded: RefCell<Vec<(String, String)>>,
}

impl Transport for Recording<'_> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        if !req.is_mutating() {
            return self.inner.send(req);
        }
        self.recorded
            .borrow_mut()
            .push((req.method.clone(), req.url.clone()));
        Ok(Response::recorded())
    }
}
