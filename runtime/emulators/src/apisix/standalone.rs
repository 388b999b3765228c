//! API-driven standalone mode (APISIX ≥ 3.13, domain.md §1.7): `GET`/`PUT /apisix/admin/configs`
//! replaces the whole configuration at once.
//!
//! Semantics follow `apisix/admin/standalone.lua` and its `t/admin/standalone.spec.ts`:
//! * `GET` returns `{<type>_conf_version: n, ..., <type>: [...]}` exactly as last pushed (no
//!   defaults filled), JSON or YAML by `Accept`, with `X-Last-Modified` (and `X-Digest` when the
//!   last push carried one).
//! * `PUT` answers 202. Per type, an explicit `<type>_conf_version` lower than the current one is
//!   a 400, an equal one leaves that type untouched, a greater one replaces it; without one every
//!   type is replaced and its version bumped by one. Items that keep the `modifiedIndex` of the
//!   item with the same id are not re-applied. A push whose `X-Digest` equals the last one is
//!   skipped entirely.
//! * Items are validated with the same schema as the Admin API; the first failure is 400
//!   `invalid <type> at index <i>, err: <reason>`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Apisix;
use super::schema::{self, Ctx};
use super::store::Kind;
use crate::clock::unix_now;
use crate::json::json_response;

/// The resource types of a standalone configuration, in the order `GET` lists them.
const TYPES: [&str; 12] = [
    "routes",
    "services",
    "upstreams",
    "ssls",
    "consumers",
    "global_rules",
    "plugin_metadata",
    "stream_routes",
    "plugin_configs",
    "consumer_groups",
    "protos",
    "secrets",
];

/// The last configuration pushed, per type, with its version.
#[derive(Debug)]
pub(super) struct StandaloneState {
    versions: BTreeMap<&'static str, i64>,
    items: BTreeMap<&'static str, Vec<Value>>,
    last_digest: Option<String>,
    last_modified: Option<i64>,
}

impl StandaloneState {
    pub(super) fn new() -> Self {
        StandaloneState {
            versions: TYPES.iter().map(|t| (*t, 0)).collect(),
            items: BTreeMap::new(),
            last_digest: None,
            last_modified: None,
        }
    }

    fn dump(&self) -> Value {
        let mut out = Map::new();
        for t in TYPES {
            out.insert(format!("{t}_conf_version"), json!(self.versions[t]));
        }
        for t in TYPES {
            if let Some(items) = self.items.get(t).filter(|i| !i.is_empty()) {
                out.insert(t.to_owned(), Value::Array(items.clone()));
            }
        }
        Value::Object(out)
    }
}

fn bad_request(msg: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error_msg": msg.into()}))
}

pub(super) fn handle(app: &Apisix, method: &Method, headers: &HeaderMap, body: &Bytes) -> Response {
    match *method {
        Method::GET => get(app, headers),
        Method::PUT => put(app, headers, body),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"})),
    }
}

fn get(app: &Apisix, headers: &HeaderMap) -> Response {
    let state = app.state();
    let sa = &state.standalone;
    let dump = sa.dump();
    let wants_yaml = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("application/yaml"));
    let mut resp = if wants_yaml {
        match serde_yaml_ng::to_string(&dump) {
            Ok(y) => {
                let mut r = (StatusCode::OK, y).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/yaml"),
                );
                r
            }
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error_msg": format!("failed to encode yaml: {e}")}),
            ),
        }
    } else {
        json_response(StatusCode::OK, &dump)
    };
    if let Some(ts) = sa.last_modified
        && let Ok(v) = HeaderValue::from_str(&ts.to_string())
    {
        resp.headers_mut().insert("X-Last-Modified", v);
    }
    if let Some(d) = &sa.last_digest
        && let Ok(v) = HeaderValue::from_str(d)
    {
        resp.headers_mut().insert("X-Digest", v);
    }
    resp
}

/// The pushed configuration, or the `error_msg` of the 400 to answer.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    if body.is_empty() {
        return Err("invalid request body: empty request body".into());
    }
    let is_yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/yaml"));
    let parsed: Result<Value, String> = if is_yaml {
        std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_yaml_ng::from_str::<Value>(s).map_err(|e| e.to_string()))
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("invalid request body: invalid yaml request body".into()),
        Err(e) => Err(format!("invalid request body: {e}")),
    }
}

/// The store kind and id of one pushed item.
fn kind_and_id(t: &str, item: &Value, index: usize) -> Option<(Kind, String)> {
    let id_of = |v: &Value| {
        v.get("id")
            .map(schema::id_string)
            .unwrap_or_else(|| index.to_string())
    };
    if t == "consumers" {
        let id = item.get("id").map(schema::id_string);
        return match id {
            Some(id) if id.contains("/credentials/") => Some((Kind::Credentials, id)),
            _ => Some((
                Kind::Consumers,
                item.get("username")
                    .and_then(Value::as_str)
                    .map_or_else(|| index.to_string(), str::to_owned),
            )),
        };
    }
    Kind::from_segment(t).map(|k| (k, id_of(item)))
}

fn put(app: &Apisix, headers: &HeaderMap, body: &Bytes) -> Response {
    let conf = match parse_body(headers, body) {
        Ok(v) => v,
        Err(msg) => return bad_request(msg),
    };
    let digest = headers
        .get("X-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = app.state();
    if digest.is_some() && digest == state.standalone.last_digest {
        return StatusCode::ACCEPTED.into_response();
    }

    // Decide, per type, the new version and whether its items are replaced.
    let mut plan: Vec<(&'static str, i64, bool)> = Vec::new();
    for t in TYPES {
        let cur = state.standalone.versions[t];
        match conf.get(format!("{t}_conf_version")) {
            None => plan.push((t, cur + 1, true)),
            Some(v) => {
                let Some(n) = v.as_i64() else {
                    return bad_request(format!("{t}_conf_version must be a number"));
                };
                if n < cur {
                    return bad_request(format!(
                        "{t}_conf_version must be greater than or equal to ({cur})"
                    ));
                }
                plan.push((t, n, n > cur));
            }
        }
    }

    // Validate every replaced type before applying anything.
    let mut staged: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for &(t, _, replace) in &plan {
        if !replace {
            continue;
        }
        let items = match conf.get(t) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => {
                return bad_request(format!(
                    "invalid {t} at index 0, err: wrong type: expected array, got {}",
                    crate::json::lua_type(other)
                ));
            }
        };
        for (i, item) in items.iter().enumerate() {
            if t == "secrets" {
                continue;
            }
            let Some((kind, _)) = kind_and_id(t, item, i) else {
                continue;
            };
            let mut probe = item.clone();
            if let Some(m) = probe.as_object_mut() {
                m.remove("modifiedIndex");
                // A credential's id is its path below the consumer (`jack/credentials/a`).
                if kind == Kind::Credentials {
                    m.remove("id");
                }
            }
            if let Err(e) = schema::check(kind, &mut probe, &Ctx { store: None }) {
                return bad_request(format!("invalid {t} at index {i}, err: {}", e.raw()));
            }
        }
        // An item whose modifiedIndex did not move keeps its previous content.
        let old = state.standalone.items.get(t).cloned().unwrap_or_default();
        let merged = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let Some(mi) = item.get("modifiedIndex") else {
                    return item;
                };
                let id = kind_and_id(t, &item, i).map(|(_, id)| id);
                old.iter()
                    .enumerate()
                    .find(|(j, o)| {
                        kind_and_id(t, o, *j).map(|(_, id)| id) == id
                            && o.get("modifiedIndex") == Some(mi)
                    })
                    .map_or(item.clone(), |(_, o)| o.clone())
            })
            .collect();
        staged.push((t, merged));
    }

    for (t, version, _) in plan {
        state.standalone.versions.insert(t, version);
    }
    for (t, items) in staged {
        let mut per_kind: BTreeMap<Kind, Vec<(String, Value)>> = BTreeMap::new();
        if let Some(k) = Kind::from_segment(t) {
            per_kind.insert(k, Vec::new());
        }
        if t == "consumers" {
            per_kind.insert(Kind::Credentials, Vec::new());
        }
        for (i, item) in items.iter().enumerate() {
            if let Some((kind, id)) = kind_and_id(t, item, i) {
                per_kind.entry(kind).or_default().push((id, item.clone()));
            }
        }
        for (kind, entries) in per_kind {
            state.store.replace_table(kind, entries);
        }
        state.standalone.items.insert(t, items);
    }
    state.standalone.last_digest = digest;
    state.standalone.last_modified = Some(unix_now());
    StatusCode::ACCEPTED.into_response()
}
