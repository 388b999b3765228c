//! Comparing a desired APISIX object with the stored one without spurious differences.
//!
//! The Admin API does not return what it was sent: it adds `create_time`/`update_time`, fills
//! schema defaults (`type: roundrobin`, `priority: 0`, …), never returns SSL keys in plaintext,
//! and Lua's JSON encoder cannot tell `[]` from `{}`. Before comparing, both sides are normalised
//! ([`normalize`]): server fields stripped, SSL keys dropped, empty top-level fields removed, and
//! the APISIX defaults of the object kind merged in (ADC's "default value table"). Numbers
//! compare by value (`60` equals `60.0`).
//!
//! Known limit: plugin schemas also have defaults, which APISIX fills into `plugins.<name>`.
//! They are version-specific and not tabled here; a plugin config that omits a defaulted field
//! shows that field in the update's `diff` on every run — write it into the file to settle it.
//!
//! Cost: clones of the two objects and a walk over them; no allocation beyond the diff list.

use serde::Serialize;
use serde_json::{Map as JsonMap, Value as JsonValue, json};

use crate::model::{PartRole, ResourceType};

/// A default-value template: a value filled in when absent, an object whose listed fields get
/// defaults only if the object itself exists (JSON-schema semantics), or one template applied to
/// every item of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum Tpl {
    Val(JsonValue),
    Obj(Vec<(String, Tpl)>),
    Each(Box<Tpl>),
}

fn obj(fields: Vec<(&str, Tpl)>) -> Tpl {
    Tpl::Obj(
        fields
            .into_iter()
            .map(|(k, t)| (k.to_string(), t))
            .collect(),
    )
}

impl Tpl {
    /// The defaults a JSON schema declares (`default` keywords under `properties` and `items`),
    /// as API7's `GET /api/schema/core` publishes them. `None` when the schema has none.
    pub fn from_schema(schema: &JsonValue) -> Option<Tpl> {
        if let Some(d) = schema.get("default") {
            return Some(Tpl::Val(d.clone()));
        }
        if let Some(props) = schema.get("properties").and_then(JsonValue::as_object) {
            let fields: Vec<(String, Tpl)> = props
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), Tpl::from_schema(v)?)))
                .collect();
            return (!fields.is_empty()).then_some(Tpl::Obj(fields));
        }
        let items = schema.get("items")?;
        Some(Tpl::Each(Box::new(Tpl::from_schema(items)?)))
    }
}

/// Where the default values come from: APISIX's (built in) plus, for API7 EE, those its
/// `/api/schema/core` publishes per resource type.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    extra: Vec<(ResourceType, PartRole, Tpl)>,
}

impl Defaults {
    /// APISIX's defaults only.
    pub fn apisix() -> Defaults {
        Defaults::default()
    }

    /// APISIX's defaults plus the `default`s of an API7 `/api/schema/core` body
    /// (`{"service": <schema>, "route": <schema>, …}`, possibly wrapped in `value`).
    pub fn with_schema_core(body: &JsonValue) -> Defaults {
        let body = body.get("value").unwrap_or(body);
        let mut extra = Vec::new();
        for (name, rtype, role) in [
            ("service", ResourceType::Service, PartRole::Main),
            ("route", ResourceType::Route, PartRole::Main),
            ("stream_route", ResourceType::StreamRoute, PartRole::Main),
            ("upstream", ResourceType::Upstream, PartRole::Main),
            ("upstream", ResourceType::Service, PartRole::Upstream),
            ("consumer", ResourceType::Consumer, PartRole::Main),
            (
                "consumer_credential",
                ResourceType::ConsumerCredential,
                PartRole::Main,
            ),
            ("ssl", ResourceType::Ssl, PartRole::Main),
            ("global_rule", ResourceType::GlobalRule, PartRole::Main),
            (
                "plugin_metadata",
                ResourceType::PluginMetadata,
                PartRole::Main,
            ),
        ] {
            if let Some(t) = body.get(name).and_then(Tpl::from_schema) {
                extra.push((rtype, role, t));
            }
        }
        Defaults { extra }
    }

    /// Fills every applicable default into `v` (the published ones first: they are the
    /// backend's own word).
    pub fn apply(&self, rtype: ResourceType, role: PartRole, v: &mut JsonValue) {
        for (t, r, tpl) in &self.extra {
            if *t == rtype && *r == role {
                apply_defaults(v, tpl);
            }
        }
        apply_defaults(v, &defaults_for(rtype, role));
    }
}

fn val(v: JsonValue) -> Tpl {
    Tpl::Val(v)
}

/// APISIX 3.x upstream defaults (apisix/schema_def.lua: upstream_schema, health_checker).
pub fn upstream_defaults() -> Tpl {
    let active = obj(vec![
        ("type", val(json!("http"))),
        ("timeout", val(json!(1))),
        ("concurrency", val(json!(10))),
        ("http_path", val(json!("/"))),
        ("https_verify_certificate", val(json!(true))),
        (
            "healthy",
            obj(vec![
                ("interval", val(json!(1))),
                ("http_statuses", val(json!([200, 302]))),
                ("successes", val(json!(2))),
            ]),
        ),
        (
            "unhealthy",
            obj(vec![
                ("interval", val(json!(1))),
                (
                    "http_statuses",
                    val(json!([429, 404, 500, 501, 502, 503, 504, 505])),
                ),
                ("http_failures", val(json!(5))),
                ("tcp_failures", val(json!(2))),
                ("timeouts", val(json!(3))),
            ]),
        ),
    ]);
    let passive = obj(vec![
        ("type", val(json!("http"))),
        (
            "healthy",
            obj(vec![
                (
                    "http_statuses",
                    val(json!([
                        200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
                        305, 306, 307, 308
                    ])),
                ),
                ("successes", val(json!(5))),
            ]),
        ),
        (
            "unhealthy",
            obj(vec![
                ("http_statuses", val(json!([429, 500, 503]))),
                ("tcp_failures", val(json!(2))),
                ("timeouts", val(json!(7))),
                ("http_failures", val(json!(5))),
            ]),
        ),
    ]);
    obj(vec![
        ("type", val(json!("roundrobin"))),
        ("scheme", val(json!("http"))),
        ("pass_host", val(json!("pass"))),
        ("hash_on", val(json!("vars"))),
        (
            "nodes",
            Tpl::Each(Box::new(obj(vec![("priority", val(json!(0)))]))),
        ),
        (
            "keepalive_pool",
            obj(vec![
                ("size", val(json!(320))),
                ("idle_timeout", val(json!(60))),
                ("requests", val(json!(1000))),
            ]),
        ),
        ("tls", obj(vec![("verify", val(json!(false)))])),
        (
            "checks",
            obj(vec![("active", active), ("passive", passive)]),
        ),
    ])
}

/// The defaults APISIX fills into an object of this kind.
pub fn defaults_for(rtype: ResourceType, role: PartRole) -> Tpl {
    if role == PartRole::Upstream {
        return upstream_defaults();
    }
    match rtype {
        ResourceType::Upstream => upstream_defaults(),
        // an inline upstream (standalone, or one written by another tool) gets the same defaults
        ResourceType::Service | ResourceType::StreamRoute => {
            obj(vec![("upstream", upstream_defaults())])
        }
        ResourceType::Route => obj(vec![
            ("priority", val(json!(0))),
            ("status", val(json!(1))),
            ("upstream", upstream_defaults()),
        ]),
        ResourceType::Ssl => obj(vec![
            ("type", val(json!("server"))),
            ("status", val(json!(1))),
            ("client", obj(vec![("depth", val(json!(1)))])),
        ]),
        _ => obj(vec![]),
    }
}

/// Fills the defaults of `tpl` into `v` where absent.
pub fn apply_defaults(v: &mut JsonValue, tpl: &Tpl) {
    match (tpl, v) {
        (Tpl::Obj(fields), JsonValue::Object(map)) => {
            for (k, sub) in fields {
                match sub {
                    Tpl::Val(d) => {
                        if map.get(k).is_none_or(JsonValue::is_null) {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    _ => {
                        if let Some(child) = map.get_mut(k) {
                            apply_defaults(child, sub);
                        }
                    }
                }
            }
        }
        (Tpl::Each(item), JsonValue::Array(items)) => {
            for it in items {
                apply_defaults(it, item);
            }
        }
        _ => {}
    }
}

/// Fields the server manages; never compared.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "create_time",
    "update_time",
    "modifiedIndex",
    "createdIndex",
];

/// The comparable form of an object: server fields, SSL keys and empty top-level fields removed,
/// and the kind's defaults merged in.
///
/// Defaults go into both sides: the Admin API returns them filled, so that side is unchanged,
/// while a backend that returns objects as written (the standalone document) or an older
/// gateway without some default still compares equal when the two mean the same to APISIX.
pub fn normalize(
    rtype: ResourceType,
    role: PartRole,
    body: &JsonValue,
    defaults: &Defaults,
) -> JsonValue {
    let mut v = body.clone();
    if let JsonValue::Object(map) = &mut v {
        strip(map);
        if let Some(JsonValue::Object(up)) = map.get_mut("upstream") {
            strip(up);
        }
        if rtype == ResourceType::Upstream {
            // API7 records the owning service on a named upstream; its path already says so
            map.remove("service_id");
        }
        if rtype == ResourceType::Ssl && role == PartRole::Main {
            // the Admin API never returns private keys in plaintext; a new key comes with a new
            // certificate, which is compared
            map.remove("key");
            map.remove("keys");
        }
        map.retain(|_, v| !is_empty(v));
    }
    defaults.apply(rtype, role, &mut v);
    v
}

fn strip(map: &mut JsonMap<String, JsonValue>) {
    for f in SERVER_FIELDS {
        map.remove(*f);
    }
}

fn is_empty(v: &JsonValue) -> bool {
    match v {
        JsonValue::Null => true,
        JsonValue::Array(a) => a.is_empty(),
        JsonValue::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Deep equality where numbers compare by value and `[]` equals `{}`.
pub fn json_eq(a: &JsonValue, b: &JsonValue) -> bool {
    match (a, b) {
        (JsonValue::Number(x), JsonValue::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (JsonValue::Array(x), JsonValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (JsonValue::Object(x), JsonValue::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (JsonValue::Array(x), JsonValue::Object(y))
        | (JsonValue::Object(y), JsonValue::Array(x)) => x.is_empty() && y.is_empty(),
        _ => a == b,
    }
}

/// One difference: `old` is the gateway's value, `new` the file's (absent = field missing).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Change {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<JsonValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<JsonValue>,
}

/// At most this many changes are listed per resource; the output stays readable and bounded.
pub const MAX_CHANGES: usize = 50;

/// Field names whose values are never shown in a diff (credentials, keys, passwords).
const SENSITIVE: &[&str] = &[
    "key",
    "keys",
    "password",
    "secret",
    "secret_key",
    "private_key",
    "client_key",
    "token",
    "access_key",
];

/// The differences between `local` (desired) and `remote` (stored), both normalised, with
/// sensitive values replaced by `"<redacted>"`.
pub fn json_diff(prefix: &str, local: &JsonValue, remote: &JsonValue, out: &mut Vec<Change>) {
    diff_inner(prefix, local, remote, false, out);
}

fn diff_inner(
    path: &str,
    local: &JsonValue,
    remote: &JsonValue,
    sensitive: bool,
    out: &mut Vec<Change>,
) {
    if out.len() >= MAX_CHANGES || json_eq(local, remote) {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (local, remote) {
        (JsonValue::Object(l), JsonValue::Object(r)) => {
            let mut keys: Vec<&String> = l
                .keys()
                .chain(r.keys().filter(|k| !l.contains_key(*k)))
                .collect();
            keys.sort();
            for k in keys {
                let s = sensitive || SENSITIVE.contains(&k.as_str());
                match (l.get(k), r.get(k)) {
                    (Some(a), Some(b)) => diff_inner(&join(k), a, b, s, out),
                    (a, b) => push(out, join(k), b, a, s),
                }
            }
        }
        (JsonValue::Array(l), JsonValue::Array(r)) if l.len() == r.len() => {
            for (i, (a, b)) in l.iter().zip(r).enumerate() {
                diff_inner(&format!("{path}[{i}]"), a, b, sensitive, out);
            }
        }
        _ => push(out, path.to_string(), Some(remote), Some(local), sensitive),
    }
}

fn push(
    out: &mut Vec<Change>,
    path: String,
    old: Option<&JsonValue>,
    new: Option<&JsonValue>,
    sensitive: bool,
) {
    if out.len() >= MAX_CHANGES {
        return;
    }
    let show = |v: Option<&JsonValue>| {
        v.map(|v| {
            if sensitive {
                json!("<redacted>")
            } else {
                v.clone()
            }
        })
    };
    out.push(Change {
        path,
        old: show(old),
        new: show(new),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_only_absent_fields_and_existing_objects() {
        let mut v = json!({"nodes": [{"host": "a", "port": 1, "weight": 1}, {"host": "b", "port": 1, "weight": 1, "priority": 5}],
                           "type": "chash", "checks": {"active": {"healthy": {}}}});
        apply_defaults(&mut v, &upstream_defaults());
        assert_eq!(v["type"], "chash", "explicit value kept");
        assert_eq!(v["scheme"], "http");
        assert_eq!(v["hash_on"], "vars");
        assert_eq!(v["nodes"][0]["priority"], 0);
        assert_eq!(v["nodes"][1]["priority"], 5);
        assert!(
            v.get("keepalive_pool").is_none(),
            "absent objects are not created"
        );
        assert!(v.get("tls").is_none());
        assert_eq!(v["checks"]["active"]["healthy"]["successes"], 2);
        assert!(v["checks"]["active"].get("unhealthy").is_none());
        assert!(v["checks"].get("passive").is_none());
    }

    #[test]
    fn normalize_strips_server_fields_and_ssl_keys() {
        let remote = json!({"id": "1", "create_time": 1, "update_time": 2, "cert": "C", "key": "encrypted", "snis": ["a"],
                            "type": "server", "status": 1, "labels": {}});
        let local = json!({"id": "1", "cert": "C", "key": "PLAINTEXT", "snis": ["a"], "status": 1});
        let l = normalize(
            ResourceType::Ssl,
            PartRole::Main,
            &local,
            &Defaults::apisix(),
        );
        let r = normalize(
            ResourceType::Ssl,
            PartRole::Main,
            &remote,
            &Defaults::apisix(),
        );
        assert!(json_eq(&l, &r), "{l} vs {r}");
        let changed = json!({"cert": "C2", "key": "x", "snis": ["a"]});
        assert!(!json_eq(
            &normalize(
                ResourceType::Ssl,
                PartRole::Main,
                &changed,
                &Defaults::apisix()
            ),
            &r
        ));
    }

    #[test]
    fn route_defaults_make_a_filled_remote_equal() {
        let local = json!({"id": "r", "uris": ["/"], "service_id": "s", "status": 1});
        let remote = json!({"id": "r", "uris": ["/"], "service_id": "s", "status": 1, "priority": 0, "create_time": 5});
        assert!(json_eq(
            &normalize(
                ResourceType::Route,
                PartRole::Main,
                &local,
                &Defaults::apisix()
            ),
            &normalize(
                ResourceType::Route,
                PartRole::Main,
                &remote,
                &Defaults::apisix()
            )
        ));
        // but a remote field that is not a default is a difference (e.g. set by hand)
        let drifted = json!({"id": "r", "uris": ["/"], "service_id": "s", "status": 1, "priority": 0, "hosts": ["x"]});
        assert!(!json_eq(
            &normalize(
                ResourceType::Route,
                PartRole::Main,
                &local,
                &Defaults::apisix()
            ),
            &normalize(
                ResourceType::Route,
                PartRole::Main,
                &drifted,
                &Defaults::apisix()
            )
        ));
    }

    #[test]
    fn api7_schema_core_defaults() {
        let core = json!({"value": {
            "service": {"type": "object", "properties": {
                "type": {"type": "string", "default": "http"},
                "upstream": {"type": "object", "properties": {
                    "nodes": {"type": "array", "items": {"type": "object", "properties": {"priority": {"type": "integer", "default": 0}}}}}},
                "name": {"type": "string"}}},
            "consumer": {"type": "object", "properties": {}}}});
        let d = Defaults::with_schema_core(&core);
        let mut v = json!({"name": "s", "upstream": {"nodes": [{"host": "a"}]}});
        d.apply(ResourceType::Service, PartRole::Main, &mut v);
        assert_eq!(v["type"], "http");
        assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
        assert_eq!(
            v["upstream"]["scheme"], "http",
            "APISIX's own defaults still apply"
        );
        assert_eq!(
            Tpl::from_schema(&json!({"type": "object", "properties": {"a": {"type": "string"}}})),
            None
        );
    }

    #[test]
    fn numbers_and_empty_containers() {
        assert!(json_eq(&json!({"t": 60}), &json!({"t": 60.0})));
        assert!(!json_eq(&json!({"t": 60}), &json!({"t": 61})));
        assert!(json_eq(&json!({"vars": []}), &json!({"vars": {}})));
        assert!(!json_eq(&json!([1]), &json!({"0": 1})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn diff_lists_paths_and_redacts_secrets() {
        let local = json!({"nodes": [{"host": "a", "port": 8080}], "plugins": {"key-auth": {"key": "new"}}, "name": "x"});
        let remote = json!({"nodes": [{"host": "a", "port": 80}], "plugins": {"key-auth": {"key": "old"}}, "desc": "d"});
        let mut out = Vec::new();
        json_diff("", &local, &remote, &mut out);
        let paths: Vec<&str> = out.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            ["desc", "name", "nodes[0].port", "plugins.key-auth.key"]
        );
        assert_eq!(
            out[0],
            Change {
                path: "desc".into(),
                old: Some(json!("d")),
                new: None
            }
        );
        assert_eq!(out[2].old, Some(json!(80)));
        assert_eq!(out[3].new, Some(json!("<redacted>")));
        assert_eq!(out[3].old, Some(json!("<redacted>")));
    }

    #[test]
    fn diff_is_bounded() {
        let local: JsonMap<String, JsonValue> =
            (0..200).map(|i| (format!("k{i}"), json!(i))).collect();
        let mut out = Vec::new();
        json_diff("", &JsonValue::Object(local), &json!({}), &mut out);
        assert_eq!(out.len(), MAX_CHANGES);
    }
}
