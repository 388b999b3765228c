//! The operations on stored resources, after `admin/resource.lua`: get and list (with the
//! `v3_adapter` filters and pagination), put, post, delete (with the reference checks) and patch
//! (whole or by sub-path), with the id, timestamp and schema checks every write goes through.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Args, Call};
use crate::apisix::State as ApisixState;
use crate::apisix::schema::{self, Ctx};
use crate::apisix::store::{Entry, Kind, Store};
use crate::clock::unix_now;
use crate::json::merge_patch;

pub(super) enum Reply {
    Json(Value),
    Text(&'static str),
}

pub(super) type Outcome = (StatusCode, Reply);

fn ok(status: StatusCode, v: Value) -> Outcome {
    (status, Reply::Json(v))
}

fn err(status: StatusCode, msg: impl Into<String>) -> Outcome {
    ok(status, json!({"error_msg": msg.into()}))
}

fn key_not_found() -> Outcome {
    ok(StatusCode::NOT_FOUND, json!({"message": "Key not found"}))
}

/// The id a resource is stored under (credentials are keyed below their consumer).
fn store_id(call: &Call<'_>, id: &str) -> String {
    match call.consumer {
        Some(c) => format!("{c}/credentials/{id}"),
        None => id.to_owned(),
    }
}

fn node(kind: Kind, id: &str, value: &Value, created: u64, modified: u64) -> Value {
    json!({
        "key": Store::key(kind, id),
        "value": value,
        "createdIndex": created,
        "modifiedIndex": modified,
    })
}

pub(super) fn get(state: &ApisixState, call: &Call<'_>) -> Outcome {
    let store = &state.store;
    if let Some(id) = call.id {
        let sid = store_id(call, id);
        return match store.get(call.kind, &sid) {
            Some(e) => {
                let mut v = e.value.clone();
                if call.kind == Kind::Ssls
                    && let Some(m) = v.as_object_mut()
                {
                    // APISIX never returns the private key of a single SSL.
                    m.remove("key");
                }
                ok(
                    StatusCode::OK,
                    node(call.kind, &sid, &v, e.created_index, e.modified_index),
                )
            }
            None => key_not_found(),
        };
    }
    let prefix = call.consumer.map(|c| format!("{c}/credentials/"));
    let mut items: Vec<(&String, &Entry)> = store
        .table(call.kind)
        .iter()
        .filter(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
        .filter(|(_, e)| list_filter(&e.value, &call.args))
        .collect();
    let total = items.len();
    let page = call.args.get("page").and_then(|p| p.parse::<usize>().ok());
    let page_size = call
        .args
        .get("page_size")
        .and_then(|p| p.parse::<usize>().ok());
    if let (Some(page), Some(size)) = (page, page_size) {
        if !(10..=500).contains(&size) {
            return (
                StatusCode::BAD_REQUEST,
                Reply::Text("page_size must be between 10 and 500"),
            );
        }
        items.sort_by_key(|(_, e)| e.created_index);
        let from = page.max(1).saturating_sub(1).saturating_mul(size);
        items = items.into_iter().skip(from).take(size).collect();
    }
    let list: Vec<Value> = items
        .into_iter()
        .map(|(id, e)| node(call.kind, id, &e.value, e.created_index, e.modified_index))
        .collect();
    ok(StatusCode::OK, json!({"total": total, "list": list}))
}

/// The list filters of `v3_adapter.filter`: `name`, `label`, `uri`, and (≥3.13) `filter`.
/// APISIX matches `name` and `uri` as regular expressions; the emulator matches substrings,
/// which agrees for the literal names and paths clients filter by.
fn list_filter(v: &Value, args: &Args) -> bool {
    if let Some(name) = args.get("name")
        && !v
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.contains(name.as_str()))
    {
        return false;
    }
    if let Some(label) = args.get("label") {
        let labels = v.get("labels").and_then(Value::as_object);
        let hit = match label.split_once(':') {
            Some((k, want)) => labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .is_some_and(|x| x == want),
            None => labels.is_some_and(|l| l.contains_key(label.as_str())),
        };
        if !hit {
            return false;
        }
    }
    if let Some(uri) = args.get("uri") {
        let single = v
            .get("uri")
            .and_then(Value::as_str)
            .is_some_and(|u| u.contains(uri.as_str()));
        let many = v.get("uris").and_then(Value::as_array).is_some_and(|us| {
            us.iter()
                .filter_map(Value::as_str)
                .any(|u| u.contains(uri.as_str()))
        });
        if !single && !many {
            return false;
        }
    }
    if let Some(filter) = args.get("filter") {
        for cond in filter.split('&') {
            if let Some((k, want)) = cond.split_once('=')
                && v.get(k).map(schema::id_string).as_deref() != Some(want)
            {
                return false;
            }
        }
    }
    true
}

/// APISIX refuses client-supplied timestamps on writes (`check_forbidden_properties`).
fn forbidden_properties(conf: &Value) -> Option<String> {
    const FORBIDDEN: [&str; 2] = ["create_time", "update_time"];
    for f in FORBIDDEN {
        if conf.get(f).is_some() {
            return Some(format!("the property is forbidden:  {f}"));
        }
    }
    for parent in ["upstream", "plugins"] {
        for f in FORBIDDEN {
            if conf.get(parent).and_then(|p| p.get(f)).is_some() {
                return Some(format!("the property is forbidden:  {parent}.{f}"));
            }
        }
    }
    None
}

/// Stands in for APISIX's AES encryption of SSL private keys: stored keys are never plaintext,
/// so a client comparing them with what it sent sees a difference, as with a real APISIX.
fn encrypt_key(v: &mut Value) {
    if let Value::String(s) = v
        && !s.starts_with("$secret://")
        && !s.starts_with("$env://")
    {
        *s = format!("emulated-aes:{}", hex::encode(s.as_bytes()));
    }
}

fn encrypt_ssl_keys(conf: &mut Value) {
    if let Some(k) = conf.get_mut("key") {
        encrypt_key(k);
    }
    if let Some(Value::Array(keys)) = conf.get_mut("keys") {
        keys.iter_mut().for_each(encrypt_key);
    }
}

/// The id / timestamp / schema checks every write goes through (`resource:check_conf`).
/// Returns the id the resource is stored under.
fn check_conf(
    store: &Store,
    call: &Call<'_>,
    conf: &mut Value,
    need_id: bool,
    allow_time: bool,
) -> Result<String, Outcome> {
    let kind = call.kind;
    let label = kind.label();
    let mut id = call.id.map(str::to_owned);
    if !kind.has_natural_key() {
        if id.is_none() {
            id = conf.get("id").map(schema::id_string);
        }
        match (&id, need_id) {
            (None, true) => {
                return Err(err(StatusCode::BAD_REQUEST, format!("missing {label} id")));
            }
            (Some(_), false) => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("wrong {label} id, do not need it"),
                ));
            }
            _ => {}
        }
        if let (Some(id), Some(body_id)) = (&id, conf.get("id"))
            && schema::id_string(body_id) != *id
        {
            return Err(err(StatusCode::BAD_REQUEST, format!("wrong {label} id")));
        }
        if let (Some(id), Some(m)) = (&id, conf.as_object_mut()) {
            m.insert("id".into(), Value::String(id.clone()));
        }
    }
    if !allow_time && let Some(msg) = forbidden_properties(conf) {
        return Err(err(StatusCode::BAD_REQUEST, msg));
    }
    if kind == Kind::PluginMetadata {
        let Some(name) = call.id else {
            return Err(err(StatusCode::BAD_REQUEST, "missing plugin name"));
        };
        schema::check_plugin_metadata_name(name)
            .map_err(|e| err(StatusCode::BAD_REQUEST, e.admin_message()))?;
    }
    schema::check(kind, conf, &Ctx { store: Some(store) })
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.admin_message()))?;
    if kind == Kind::Consumers {
        let username = conf
            .get("username")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if call.id.is_some_and(|u| u != username) {
            return Err(err(StatusCode::BAD_REQUEST, "wrong username"));
        }
        return Ok(username);
    }
    Ok(id.unwrap_or_default())
}

pub(super) fn put(state: &mut ApisixState, call: &Call<'_>) -> Outcome {
    let Some(mut conf) = call.body.clone() else {
        return err(StatusCode::BAD_REQUEST, "missing configurations");
    };
    let id = match check_conf(&state.store, call, &mut conf, true, false) {
        Ok(id) => id,
        Err(o) => return o,
    };
    let sid = store_id(call, &id);
    if call.kind == Kind::Credentials {
        let consumer = call.consumer.unwrap_or_default();
        if state.store.get(Kind::Consumers, consumer).is_none() {
            return err(StatusCode::NOT_FOUND, "consumer not found");
        }
    }
    if call.kind == Kind::Ssls {
        encrypt_ssl_keys(&mut conf);
    }
    if call.kind == Kind::PluginMetadata {
        if let Some(m) = conf.as_object_mut() {
            m.insert("id".into(), Value::String(id.clone()));
        }
    } else {
        let now = unix_now();
        let created = state
            .store
            .get(call.kind, &sid)
            .and_then(|e| e.value.get("create_time").cloned())
            .unwrap_or_else(|| json!(now));
        if let Some(m) = conf.as_object_mut() {
            m.insert("create_time".into(), created);
            m.insert("update_time".into(), json!(now));
        }
    }
    let created = state.store.put(call.kind, &sid, conf.clone());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(
        status,
        json!({"key": Store::key(call.kind, &sid), "value": conf}),
    )
}

pub(super) fn post(state: &mut ApisixState, call: &Call<'_>) -> Outcome {
    let Some(mut conf) = call.body.clone() else {
        return err(StatusCode::BAD_REQUEST, "missing configurations");
    };
    if let Err(o) = check_conf(&state.store, call, &mut conf, false, false) {
        return o;
    }
    if call.kind == Kind::Ssls {
        encrypt_ssl_keys(&mut conf);
    }
    // `etcd.push`: bump the revision with a write to /gen_id and use it, zero-padded, as the id.
    let id = format!("{:020}", state.store.next_revision());
    let now = unix_now();
    if let Some(m) = conf.as_object_mut() {
        m.insert("id".into(), Value::String(id.clone()));
        m.insert("create_time".into(), json!(now));
        m.insert("update_time".into(), json!(now));
    }
    state.store.put(call.kind, &id, conf.clone());
    ok(
        StatusCode::CREATED,
        json!({"key": Store::key(call.kind, &id), "value": conf}),
    )
}

pub(super) fn delete(state: &mut ApisixState, call: &Call<'_>) -> Outcome {
    let Some(id) = call.id else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("missing {} id", call.kind.label()),
        );
    };
    if call.args.get("force").map(String::as_str) != Some("true")
        && let Some(msg) = still_referenced(&state.store, call.kind, id)
    {
        return err(StatusCode::BAD_REQUEST, msg);
    }
    if call.kind == Kind::Consumers {
        state.store.delete_credentials_of(id);
    }
    let sid = store_id(call, id);
    if state.store.delete(call.kind, &sid) {
        ok(
            StatusCode::OK,
            json!({"deleted": "1", "key": Store::key(call.kind, &sid)}),
        )
    } else {
        key_not_found()
    }
}

/// The `delete_checker`s: a resource still referenced by another cannot be deleted without
/// `?force=true`.
fn still_referenced(store: &Store, kind: Kind, id: &str) -> Option<String> {
    let user = |k: Kind, field: &str| -> Option<String> {
        store
            .table(k)
            .iter()
            .find(|(_, e)| e.value.get(field).map(schema::id_string).as_deref() == Some(id))
            .map(|(uid, _)| uid.clone())
    };
    match kind {
        Kind::Upstreams => user(Kind::Routes, "upstream_id")
            .map(|r| format!("can not delete this upstream, route [{r}] is still using it now"))
            .or_else(|| {
                user(Kind::Services, "upstream_id").map(|s| {
                    format!("can not delete this upstream, service [{s}] is still using it now")
                })
            })
            .or_else(|| {
                user(Kind::StreamRoutes, "upstream_id").map(|s| {
                    format!(
                        "can not delete this upstream, stream_route [{s}] is still using it now"
                    )
                })
            }),
        Kind::Services => user(Kind::Routes, "service_id")
            .map(|r| {
                format!("can not delete this service directly, route [{r}] is still using it now")
            })
            .or_else(|| {
                user(Kind::StreamRoutes, "service_id").map(|s| {
                    format!(
                        "can not delete this service directly, stream_route [{s}] is still using it now"
                    )
                })
            }),
        Kind::PluginConfigs => user(Kind::Routes, "plugin_config_id").map(|r| {
            format!("can not delete this plugin config, route [{r}] is still using it now")
        }),
        Kind::ConsumerGroups => user(Kind::Consumers, "group_id").map(|c| {
            format!("can not delete this consumer group, consumer [{c}] is still using it now")
        }),
        _ => None,
    }
}

pub(super) fn patch(state: &mut ApisixState, call: &Call<'_>) -> Outcome {
    let Some(id) = call.id else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("missing {} id", call.kind.label()),
        );
    };
    let Some(mut conf) = call.body.clone() else {
        return err(StatusCode::BAD_REQUEST, "missing new configuration");
    };
    if call.sub_path.is_empty() && !conf.is_object() {
        return err(StatusCode::BAD_REQUEST, "invalid configuration");
    }
    let sid = store_id(call, id);
    let Some(old) = state.store.get(call.kind, &sid) else {
        return key_not_found();
    };
    let mut value = old.value.clone();
    let now = unix_now();
    if call.sub_path.is_empty() {
        if call.kind == Kind::Ssls {
            encrypt_ssl_keys(&mut conf);
        }
        merge_patch(&mut value, &conf);
        if conf.get("update_time").is_none()
            && let Some(m) = value.as_object_mut()
        {
            m.insert("update_time".into(), json!(now));
        }
    } else {
        if call.kind == Kind::Ssls {
            match call.sub_path.as_str() {
                "key" => encrypt_key(&mut conf),
                "keys" => {
                    if let Value::Array(keys) = &mut conf {
                        keys.iter_mut().for_each(encrypt_key);
                    }
                }
                _ => {}
            }
        }
        if let Err(msg) = patch_sub_path(&mut value, &call.sub_path, conf) {
            return err(StatusCode::BAD_REQUEST, msg);
        }
        if let Some(m) = value.as_object_mut() {
            m.insert("update_time".into(), json!(now));
        }
    }
    if let Err(o) = check_conf(&state.store, call, &mut value, true, true) {
        return o;
    }
    state.store.put(call.kind, &sid, value.clone());
    ok(
        StatusCode::OK,
        json!({"key": Store::key(call.kind, &sid), "value": value}),
    )
}

/// `core.table.patch`: replaces the attribute at `a/b/c`, creating missing parents.
fn patch_sub_path(value: &mut Value, sub_path: &str, new: Value) -> Result<(), String> {
    let segs: Vec<&str> = sub_path.split('/').collect();
    let (last, parents) = segs.split_last().unwrap_or((&"", &[]));
    let mut cur = value;
    for (i, seg) in parents.iter().enumerate() {
        let Value::Object(m) = cur else {
            return Err(format!("invalid sub-path: /{}", segs[..i].join("/")));
        };
        cur = m
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let Value::Object(m) = cur else {
        return Err(format!("invalid sub-path: /{sub_path}"));
    };
    m.insert((*last).to_owned(), new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_path_patch_creates_parents_and_rejects_scalars() {
        let mut v = json!({"upstream": {"nodes": {"a:1": 1}}, "uri": "/x"});
        patch_sub_path(&mut v, "upstream/nodes", json!({"b:2": 1})).unwrap();
        assert_eq!(v["upstream"]["nodes"], json!({"b:2": 1}));
        patch_sub_path(&mut v, "plugins/proxy-rewrite", json!({"uri": "/y"})).unwrap();
        assert_eq!(v["plugins"]["proxy-rewrite"]["uri"], "/y");
        assert!(patch_sub_path(&mut v, "uri/deeper", json!(1)).is_err());
    }

    #[test]
    fn forbidden_properties_match_apisix_wording() {
        assert_eq!(
            forbidden_properties(&json!({"create_time": 1})).unwrap(),
            "the property is forbidden:  create_time"
        );
        assert_eq!(
            forbidden_properties(&json!({"upstream": {"update_time": 1}})).unwrap(),
            "the property is forbidden:  upstream.update_time"
        );
        assert!(forbidden_properties(&json!({"uri": "/"})).is_none());
    }

    #[test]
    fn list_filters() {
        let v = json!({"name": "get-ip", "labels": {"env": "prod"}, "uris": ["/ip"], "service_id": "s1"});
        let args = |pairs: &[(&str, &str)]| -> Args {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(list_filter(&v, &args(&[("name", "get")])));
        assert!(!list_filter(&v, &args(&[("name", "post")])));
        assert!(list_filter(&v, &args(&[("label", "env")])));
        assert!(list_filter(&v, &args(&[("label", "env:prod")])));
        assert!(!list_filter(&v, &args(&[("label", "env:dev")])));
        assert!(list_filter(&v, &args(&[("uri", "/ip")])));
        assert!(list_filter(&v, &args(&[("filter", "service_id=s1")])));
        assert!(!list_filter(&v, &args(&[("filter", "service_id=s2")])));
    }
}
