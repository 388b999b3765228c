//! `mode: dump`: the gateway's state written back in ADC's file format (ADC's `ToADC`).
//!
//! An `id` is kept only where it differs from the one ADC would derive, so a dumped file synced
//! back matches the same objects (what `adc dump --with-id` is for) without noise.
//!
//! Secrets are not copied into the output (which the engine journals): SSL private keys are not
//! returned by the Admin API anyway, and the secret fields of consumer credentials and of
//! authentication plugins on consumers, and an upstream's `tls.client_key`, are written as
//! `"<redacted>"`. Put the real values (or `${ENV}` references) back before syncing such a file.

use serde_json::{Map as JsonMap, Value as JsonValue, json};

use crate::ids;
use crate::model::{PartRole, Resource, ResourceType, UPSTREAM_SERVICE_LABEL};

/// The ADC configuration (as JSON) describing `remote`.
pub fn to_adc(remote: &[Resource]) -> JsonValue {
    let body = |r: &Resource| {
        r.part(PartRole::Main)
            .map(|p| p.body.clone())
            .unwrap_or_else(|| json!({}))
    };
    let children = |t: ResourceType, sid: &str| {
        remote
            .iter()
            .filter(move |r| r.rtype == t && r.parent.as_deref() == Some(sid))
            .collect::<Vec<_>>()
    };
    let mut services = Vec::new();
    for s in remote.iter().filter(|r| r.rtype == ResourceType::Service) {
        let b = body(s);
        let mut out = JsonMap::new();
        keep_id(&mut out, &s.id, &ids::service_id(&s.name));
        out.insert("name".into(), json!(s.name));
        copy(
            &b,
            &mut out,
            &[
                ("desc", "description"),
                ("labels", "labels"),
                ("plugins", "plugins"),
                ("hosts", "hosts"),
            ],
        );
        let inline = s
            .part(PartRole::Upstream)
            .map(|p| p.body.clone())
            .or_else(|| b.get("upstream").cloned());
        if let Some(u) = inline {
            out.insert("upstream".into(), upstream(&u, false));
        }
        let named: Vec<JsonValue> = children(ResourceType::Upstream, &s.id)
            .into_iter()
            .map(|u| {
                let mut v = upstream(&body(u), true);
                if let JsonValue::Object(m) = &mut v {
                    let derived = ids::child_id(&s.name, &u.name);
                    if u.id != derived {
                        m.insert("id".into(), json!(u.id));
                    }
                }
                v
            })
            .collect();
        if !named.is_empty() {
            out.insert("upstreams".into(), named.into());
        }
        let routes: Vec<JsonValue> = children(ResourceType::Route, &s.id)
            .into_iter()
            .map(|r| route(r, &s.name, &body(r)))
            .collect();
        if !routes.is_empty() {
            out.insert("routes".into(), routes.into());
        }
        let streams: Vec<JsonValue> = children(ResourceType::StreamRoute, &s.id)
            .into_iter()
            .map(|r| stream_route(r, &s.name, &body(r)))
            .collect();
        if !streams.is_empty() {
            out.insert("stream_routes".into(), streams.into());
        }
        services.push(JsonValue::Object(out));
    }
    let mut ssls = Vec::new();
    for s in remote.iter().filter(|r| r.rtype == ResourceType::Ssl) {
        let b = body(s);
        let mut out = JsonMap::new();
        let snis: Vec<String> = match (
            b.get("snis").and_then(JsonValue::as_array),
            b.get("sni").and_then(JsonValue::as_str),
        ) {
            (Some(a), _) => a
                .iter()
                .filter_map(JsonValue::as_str)
                .map(str::to_string)
                .collect(),
            (None, Some(one)) => vec![one.to_string()],
            _ => Vec::new(),
        };
        keep_id(&mut out, &s.id, &ids::ssl_id(&snis));
        copy(&b, &mut out, &[("labels", "labels"), ("type", "type")]);
        out.insert("snis".into(), json!(snis));
        let mut certs =
            vec![json!({"certificate": b.get("cert").cloned().unwrap_or(JsonValue::Null)})];
        for c in b
            .get("certs")
            .and_then(JsonValue::as_array)
            .into_iter()
            .flatten()
        {
            certs.push(json!({"certificate": c}));
        }
        out.insert("certificates".into(), certs.into());
        copy(
            &b,
            &mut out,
            &[("client", "client"), ("ssl_protocols", "ssl_protocols")],
        );
        ssls.push(JsonValue::Object(out));
    }
    let mut consumers = Vec::new();
    for c in remote.iter().filter(|r| r.rtype == ResourceType::Consumer) {
        let b = body(c);
        let mut out = JsonMap::new();
        out.insert("username".into(), json!(c.id));
        copy(
            &b,
            &mut out,
            &[
                ("desc", "description"),
                ("labels", "labels"),
                ("plugins", "plugins"),
            ],
        );
        let creds: Vec<JsonValue> = remote
            .iter()
            .filter(|r| {
                r.rtype == ResourceType::ConsumerCredential
                    && r.parent.as_deref() == Some(c.id.as_str())
            })
            .filter_map(|r| {
                let cb = body(r);
                let (kind, config) = cb.get("plugins")?.as_object()?.iter().next()?;
                let mut o = JsonMap::new();
                keep_id(&mut o, &r.id, &ids::credential_id(&c.id, &r.name));
                o.insert("name".into(), json!(r.name));
                copy(
                    &cb,
                    &mut o,
                    &[("desc", "description"), ("labels", "labels")],
                );
                o.insert("type".into(), json!(kind));
                let mut config = config.clone();
                redact(&mut config);
                o.insert("config".into(), config);
                Some(JsonValue::Object(o))
            })
            .collect();
        if !creds.is_empty() {
            out.insert("credentials".into(), creds.into());
        }
        if let Some(JsonValue::Object(plugins)) = out.get_mut("plugins") {
            for (name, cfg) in plugins.iter_mut() {
                if AUTH_PLUGINS.contains(&name.as_str()) {
                    redact(cfg);
                }
            }
        }
        consumers.push(JsonValue::Object(out));
    }
    let mut global_rules = JsonMap::new();
    for g in remote
        .iter()
        .filter(|r| r.rtype == ResourceType::GlobalRule)
    {
        if let Some(p) = body(g).get("plugins").and_then(JsonValue::as_object) {
            global_rules.extend(p.clone());
        }
    }
    let mut plugin_metadata = JsonMap::new();
    for m in remote
        .iter()
        .filter(|r| r.rtype == ResourceType::PluginMetadata)
    {
        let mut b = body(m);
        if let JsonValue::Object(o) = &mut b {
            o.remove("id");
        }
        plugin_metadata.insert(m.id.clone(), b);
    }
    let mut doc = JsonMap::new();
    for (k, v) in [
        ("services", JsonValue::from(services)),
        ("ssls", ssls.into()),
        ("consumers", consumers.into()),
        ("global_rules", global_rules.into()),
        ("plugin_metadata", plugin_metadata.into()),
    ] {
        if !v.as_array().is_some_and(Vec::is_empty) && !v.as_object().is_some_and(JsonMap::is_empty)
        {
            doc.insert(k.into(), v);
        }
    }
    JsonValue::Object(doc)
}

/// Plugins whose consumer-side configuration holds the consumer's credentials.
const AUTH_PLUGINS: &[&str] = &["key-auth", "basic-auth", "jwt-auth", "hmac-auth"];

/// Fields of an authentication configuration that hold secrets.
const SECRET_FIELDS: &[&str] = &[
    "key",
    "password",
    "secret",
    "secret_key",
    "private_key",
    "public_key_secret",
];

/// Replaces the secret fields of an authentication configuration.
fn redact(cfg: &mut JsonValue) {
    if let JsonValue::Object(m) = cfg {
        for (k, v) in m.iter_mut() {
            if SECRET_FIELDS.contains(&k.as_str()) && v.is_string() {
                *v = json!("<redacted>");
            }
        }
    }
}

fn keep_id(out: &mut JsonMap<String, JsonValue>, id: &str, derived: &str) {
    if id != derived {
        out.insert("id".into(), json!(id));
    }
}

fn copy(from: &JsonValue, to: &mut JsonMap<String, JsonValue>, fields: &[(&str, &str)]) {
    for (src, dst) in fields {
        if let Some(v) = from.get(*src)
            && !(v.is_null() || v.as_object().is_some_and(JsonMap::is_empty))
        {
            to.insert((*dst).to_string(), v.clone());
        }
    }
}

fn upstream(u: &JsonValue, named: bool) -> JsonValue {
    let mut out = JsonMap::new();
    if named {
        copy(u, &mut out, &[("name", "name")]);
    }
    copy(u, &mut out, &[("desc", "description")]);
    if let Some(labels) = u.get("labels").and_then(JsonValue::as_object) {
        let mut l = labels.clone();
        l.remove(UPSTREAM_SERVICE_LABEL);
        if !l.is_empty() {
            out.insert("labels".into(), l.into());
        }
    }
    for k in [
        "type",
        "hash_on",
        "key",
        "scheme",
        "retries",
        "retry_timeout",
        "timeout",
        "tls",
        "keepalive_pool",
        "pass_host",
        "upstream_host",
        "service_name",
        "discovery_type",
        "discovery_args",
    ] {
        copy(u, &mut out, &[(k, k)]);
    }
    if let Some(JsonValue::Object(tls)) = out.get_mut("tls")
        && tls.get("client_key").is_some_and(JsonValue::is_string)
    {
        tls.insert("client_key".into(), json!("<redacted>"));
    }
    if let Some(mut checks) = u.get("checks").cloned() {
        if let Some(h) = checks
            .pointer_mut("/active")
            .and_then(JsonValue::as_object_mut)
            && let Some(v) = h.remove("req_headers")
        {
            h.insert("http_request_headers".into(), v);
        }
        out.insert("checks".into(), checks);
    }
    match u.get("nodes") {
        // the hash form `{"host:port": weight}`
        Some(JsonValue::Object(m)) => {
            let default_port = match u.get("scheme").and_then(JsonValue::as_str) {
                Some("https" | "grpcs") => 443,
                _ => 80,
            };
            let nodes: Vec<JsonValue> = m
                .iter()
                .map(|(hp, w)| {
                    let (host, port) = match hp.rsplit_once(':') {
                        Some((h, p)) if p.parse::<u16>().is_ok() => {
                            (h.to_string(), p.parse::<u16>().unwrap_or(default_port))
                        }
                        _ => (hp.clone(), default_port),
                    };
                    json!({"host": host, "port": port, "weight": w})
                })
                .collect();
            out.insert("nodes".into(), nodes.into());
        }
        Some(n @ JsonValue::Array(_)) => {
            out.insert("nodes".into(), n.clone());
        }
        _ => {}
    }
    JsonValue::Object(out)
}

fn route(r: &Resource, service: &str, b: &JsonValue) -> JsonValue {
    let mut out = JsonMap::new();
    keep_id(&mut out, &r.id, &ids::child_id(service, &r.name));
    out.insert("name".into(), json!(r.name));
    copy(
        b,
        &mut out,
        &[("desc", "description"), ("labels", "labels")],
    );
    let one_or_many = |one: &str, many: &str| {
        b.get(many)
            .cloned()
            .or_else(|| b.get(one).map(|v| json!([v])))
    };
    // APISIX: `uri`/`uris`; API7 EE: `paths`
    if let Some(v) = one_or_many("uri", "uris").or_else(|| b.get("paths").cloned()) {
        out.insert("uris".into(), v);
    }
    if let Some(v) = one_or_many("host", "hosts") {
        out.insert("hosts".into(), v);
    }
    if let Some(v) = one_or_many("remote_addr", "remote_addrs") {
        out.insert("remote_addrs".into(), v);
    }
    for k in [
        "methods",
        "vars",
        "filter_func",
        "enable_websocket",
        "plugins",
        "priority",
        "timeout",
    ] {
        copy(b, &mut out, &[(k, k)]);
    }
    JsonValue::Object(out)
}

fn stream_route(r: &Resource, service: &str, b: &JsonValue) -> JsonValue {
    let mut out = JsonMap::new();
    keep_id(&mut out, &r.id, &ids::child_id(service, &r.name));
    out.insert("name".into(), json!(r.name));
    copy(
        b,
        &mut out,
        &[("desc", "description"), ("labels", "labels")],
    );
    for k in [
        "plugins",
        "remote_addr",
        "server_addr",
        "server_port",
        "sni",
    ] {
        copy(b, &mut out, &[(k, k)]);
    }
    JsonValue::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;
    use std::collections::BTreeMap;

    fn res(
        rtype: ResourceType,
        id: &str,
        name: &str,
        parent: Option<&str>,
        parts: Vec<Part>,
    ) -> Resource {
        Resource {
            rtype,
            id: id.into(),
            name: name.into(),
            parent: parent.map(str::to_string),
            labels: BTreeMap::new(),
            parts,
            origin: None,
        }
    }

    fn main(body: JsonValue) -> Part {
        Part {
            role: PartRole::Main,
            path: String::new(),
            body,
        }
    }

    #[test]
    fn dump_shapes() {
        let sid = ids::service_id("web");
        let remote = vec![
            res(
                ResourceType::Service,
                &sid,
                "web",
                None,
                vec![
                    Part {
                        role: PartRole::Upstream,
                        path: String::new(),
                        body: json!({"id": sid, "nodes": {"a:8080": 1, "b": 2}, "type": "roundrobin",
                                     "checks": {"active": {"req_headers": ["X: y"]}}}),
                    },
                    main(
                        json!({"id": sid, "name": "web", "desc": "d", "upstream_id": sid, "create_time": 1}),
                    ),
                ],
            ),
            res(
                ResourceType::Route,
                "7",
                "ip",
                Some(&sid),
                vec![main(
                    json!({"uri": "/ip", "service_id": sid, "priority": 0}),
                )],
            ),
            res(
                ResourceType::GlobalRule,
                "1",
                "cors",
                None,
                vec![main(json!({"plugins": {"cors": {}}}))],
            ),
            res(
                ResourceType::Consumer,
                "u",
                "u",
                None,
                vec![main(json!({"username": "u"}))],
            ),
            res(
                ResourceType::ConsumerCredential,
                &ids::credential_id("u", "k"),
                "k",
                Some("u"),
                vec![main(
                    json!({"name": "k", "plugins": {"key-auth": {"key": "x"}}}),
                )],
            ),
        ];
        let d = to_adc(&remote);
        let s = &d["services"][0];
        assert!(s.get("id").is_none(), "derived ids are not written");
        assert_eq!(s["description"], "d");
        assert_eq!(
            s["upstream"]["nodes"],
            json!([{"host": "a", "port": 8080, "weight": 1}, {"host": "b", "port": 80, "weight": 2}])
        );
        assert_eq!(
            s["upstream"]["checks"]["active"]["http_request_headers"],
            json!(["X: y"])
        );
        assert_eq!(
            s["routes"][0],
            json!({"id": "7", "name": "ip", "uris": ["/ip"], "priority": 0})
        );
        assert_eq!(d["global_rules"], json!({"cors": {}}));
        assert_eq!(
            d["consumers"][0]["credentials"][0],
            json!({"name": "k", "type": "key-auth", "config": {"key": "<redacted>"}})
        );
        assert!(d.get("ssls").is_none());
    }
}
