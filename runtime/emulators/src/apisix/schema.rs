//! APISIX 3.x resource validation and default filling.
//!
//! APISIX validates every write with jsonschema and, as a side effect, injects the schema's
//! `default`s into the stored value — which is why a naive client that diffs what it wrote
//! against what it reads back always sees changes (domain.md §1.4, §2). This module reproduces
//! the part of `apisix/schema_def.lua` that matters for that behaviour and for the common
//! validation failures, with error messages in the jsonschema-for-Lua wording. It is not a full
//! schema: plugin configurations are only checked for being objects with a known plugin name.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::store::{Kind, Store};
use crate::json::lua_type;

/// A validation failure, split the way APISIX reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckError {
    /// A jsonschema failure; the Admin API prefixes it with `invalid configuration: `.
    Schema(String),
    /// A semantic check after the schema (`missing key`, `unknown plugin [x]`, ...), sent as is.
    Plain(String),
}

impl CheckError {
    /// The `error_msg` the Admin API returns.
    pub(crate) fn admin_message(&self) -> String {
        match self {
            CheckError::Schema(s) => format!("invalid configuration: {s}"),
            CheckError::Plain(s) => s.clone(),
        }
    }

    /// The message without the Admin API prefix (the standalone flavour adds its own).
    pub(crate) fn raw(&self) -> &str {
        match self {
            CheckError::Schema(s) | CheckError::Plain(s) => s,
        }
    }
}

type SResult = Result<(), String>;

/// The plugins bundled with APISIX 3.12 (HTTP subsystem). Unknown names are rejected the way
/// APISIX rejects them, so a typo in a pushed configuration fails here as it would in production.
const HTTP_PLUGINS: &[&str] = &[
    "real-ip",
    "ai",
    "client-control",
    "proxy-control",
    "request-id",
    "zipkin",
    "ext-plugin-pre-req",
    "fault-injection",
    "mocking",
    "serverless-pre-function",
    "cors",
    "ip-restriction",
    "ua-restriction",
    "referer-restriction",
    "csrf",
    "uri-blocker",
    "request-validation",
    "chaitin-waf",
    "multi-auth",
    "openid-connect",
    "cas-auth",
    "authz-casbin",
    "authz-casdoor",
    "wolf-rbac",
    "ldap-auth",
    "hmac-auth",
    "basic-auth",
    "jwt-auth",
    "jwe-decrypt",
    "key-auth",
    "consumer-restriction",
    "attach-consumer-label",
    "forward-auth",
    "opa",
    "authz-keycloak",
    "proxy-cache",
    "body-transformer",
    "ai-prompt-template",
    "ai-prompt-decorator",
    "ai-prompt-guard",
    "ai-rag",
    "ai-rate-limiting",
    "ai-proxy-multi",
    "ai-proxy",
    "ai-aws-content-moderation",
    "ai-request-rewrite",
    "proxy-mirror",
    "proxy-rewrite",
    "workflow",
    "api-breaker",
    "limit-conn",
    "limit-count",
    "limit-req",
    "gzip",
    "server-info",
    "traffic-split",
    "redirect",
    "response-rewrite",
    "degraphql",
    "kafka-proxy",
    "grpc-transcode",
    "grpc-web",
    "http-dubbo",
    "public-api",
    "prometheus",
    "datadog",
    "lago",
    "loki-logger",
    "elasticsearch-logger",
    "echo",
    "loggly",
    "http-logger",
    "splunk-hec-logging",
    "skywalking-logger",
    "google-cloud-logging",
    "sls-logger",
    "tcp-logger",
    "kafka-logger",
    "rocketmq-logger",
    "syslog",
    "udp-logger",
    "file-logger",
    "clickhouse-logger",
    "tencent-cloud-cls",
    "inspect",
    "example-plugin",
    "aws-lambda",
    "azure-functions",
    "openwhisk",
    "openfunction",
    "serverless-post-function",
    "ext-plugin-post-req",
    "ext-plugin-post-resp",
    "brotli",
    "batch-requests",
    "node-status",
    "skywalking",
    "opentelemetry",
    "error-log-logger",
    "log-rotate",
    "dubbo-proxy",
    "gm",
];

/// Stream-subsystem plugins (for stream routes).
const STREAM_PLUGINS: &[&str] = &[
    "ip-restriction",
    "limit-conn",
    "mqtt-proxy",
    "syslog",
    "prometheus",
];

/// Plugins of type `auth`, the only ones allowed in consumer credentials.
const AUTH_PLUGINS: &[&str] = &[
    "key-auth",
    "basic-auth",
    "jwt-auth",
    "hmac-auth",
    "ldap-auth",
    "wolf-rbac",
    "multi-auth",
];

/// Whether `name` is a plugin of type `auth` (allowed in consumer credentials).
pub(crate) fn is_auth_plugin(name: &str) -> bool {
    AUTH_PLUGINS.contains(&name)
}

/// Validates an upstream object with APISIX's upstream schema and semantic checks, filling its
/// defaults. Shared with the API7 emulator, whose services embed APISIX upstreams.
pub(crate) fn check_upstream_value(v: &mut Value) -> Result<(), CheckError> {
    upstream_schema_value(v).map_err(CheckError::Schema)?;
    match v {
        Value::Object(m) => upstream_semantics(m),
        _ => Ok(()),
    }
}

/// The plugin names `GET /apisix/admin/plugins/list` reports.
pub(crate) fn plugin_names() -> Vec<&'static str> {
    let mut v = HTTP_PLUGINS.to_vec();
    v.sort_unstable();
    v
}

const HTTP_METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

/// Where reference checks (`upstream_id` exists, ...) look. `None` skips them, as the standalone
/// flavour's per-item validation does.
pub(crate) struct Ctx<'a> {
    pub(crate) store: Option<&'a Store>,
}

/// Validates `conf` as a resource of `kind` and fills APISIX's schema defaults into it.
pub(crate) fn check(kind: Kind, conf: &mut Value, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    let Value::Object(obj) = conf else {
        return Err(CheckError::Schema(format!(
            "wrong type: expected object, got {}",
            lua_type(conf)
        )));
    };
    match kind {
        Kind::Routes => check_route(obj, ctx),
        Kind::Services => check_service(obj, ctx),
        Kind::Upstreams => check_upstream(obj),
        Kind::Ssls => check_ssl(obj),
        Kind::Consumers => check_consumer(obj, ctx),
        Kind::Credentials => check_credential(obj),
        Kind::GlobalRules | Kind::PluginConfigs | Kind::ConsumerGroups => check_plugin_holder(obj),
        Kind::PluginMetadata => Ok(()),
        Kind::StreamRoutes => check_stream_route(obj, ctx),
        Kind::Protos => check_proto(obj),
    }
}

/// `PUT /plugin_metadata/{name}` only accepts bundled plugin names.
pub(crate) fn check_plugin_metadata_name(name: &str) -> Result<(), CheckError> {
    if HTTP_PLUGINS.contains(&name) || STREAM_PLUGINS.contains(&name) {
        Ok(())
    } else {
        Err(CheckError::Plain("invalid plugin name".into()))
    }
}

// ---------------------------------------------------------------------------------------------
// Resource checkers.

fn check_route(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    route_schema(obj).map_err(CheckError::Schema)?;
    if let Some(Value::Object(up)) = obj.get("upstream") {
        upstream_semantics(up)?;
    }
    check_refs(obj, ctx)?;
    check_plugins(obj.get("plugins"), HTTP_PLUGINS, "")?;
    Ok(())
}

fn route_schema(obj: &mut Map<String, Value>) -> SResult {
    common_props(obj)?;
    opt(obj, "uri", |v| string(v, 1, 4096))?;
    opt(obj, "uris", |v| array_of(v, 1, |i| string(i, 1, 4096)))?;
    opt(obj, "priority", |v| integer(v, None, None))?;
    opt(obj, "status", |v| int_enum(v, &[0, 1]))?;
    opt(obj, "methods", |v| {
        array_of(v, 0, |i| str_enum(i, HTTP_METHODS))
    })?;
    opt(obj, "host", host_def)?;
    opt(obj, "hosts", |v| array_of(v, 1, host_def))?;
    opt(obj, "remote_addr", ip_def)?;
    opt(obj, "remote_addrs", |v| array_of(v, 1, ip_def))?;
    opt(obj, "timeout", timeout_def)?;
    opt(obj, "vars", |v| array_of(v, 0, |_| Ok(())))?;
    opt(obj, "filter_func", |v| {
        string(v, 10, usize::MAX)?;
        pattern(v, "^function", |s| s.starts_with("function"))
    })?;
    opt(obj, "script", |v| string(v, 10, 102_400))?;
    for idf in ["service_id", "upstream_id", "plugin_config_id", "script_id"] {
        opt(obj, idf, id_def)?;
    }
    opt(obj, "enable_websocket", boolean)?;
    opt(obj, "service_protocol", |v| str_enum(v, &["grpc", "http"]))?;
    if let Some(up) = obj.get_mut("upstream") {
        nested("upstream", upstream_schema_value(up))?;
    }
    // allOf: exactly one of uri/uris; at most one of host/hosts and of remote_addr(s).
    one_of_required(obj, &["uri", "uris"]).map_err(|e| format!("allOf 1 failed: {e}"))?;
    at_most_one(obj, "host", "hosts").map_err(|e| format!("allOf 2 failed: {e}"))?;
    at_most_one(obj, "remote_addr", "remote_addrs").map_err(|e| format!("allOf 3 failed: {e}"))?;
    // anyOf: a route must lead somewhere.
    let targets = [
        "plugins",
        "upstream",
        "upstream_id",
        "service_id",
        "plugin_config_id",
        "script",
    ];
    if !targets.iter().any(|k| obj.contains_key(*k)) {
        return Err("object matches none of the required".into());
    }
    default(obj, "priority", json!(0));
    default(obj, "status", json!(1));
    Ok(())
}

fn check_service(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    (|| -> SResult {
        common_props(obj)?;
        opt(obj, "upstream_id", id_def)?;
        opt(obj, "enable_websocket", boolean)?;
        opt(obj, "hosts", |v| array_of(v, 1, host_def))?;
        opt(obj, "script", |v| string(v, 10, 102_400))?;
        if let Some(up) = obj.get_mut("upstream") {
            nested("upstream", upstream_schema_value(up))?;
        }
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    if let Some(Value::Object(up)) = obj.get("upstream") {
        upstream_semantics(up)?;
    }
    check_refs(obj, ctx)?;
    check_plugins(obj.get("plugins"), HTTP_PLUGINS, "")?;
    Ok(())
}

/// `check_upstream_conf` for a standalone upstream resource.
fn check_upstream(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    upstream_schema(obj).map_err(CheckError::Schema)?;
    upstream_semantics(obj)
}

fn upstream_schema_value(v: &mut Value) -> SResult {
    match v {
        Value::Object(m) => upstream_schema(m),
        other => Err(format!(
            "wrong type: expected object, got {}",
            lua_type(other)
        )),
    }
}

const UPSTREAM_PROPS: &[&str] = &[
    "create_time",
    "update_time",
    "nodes",
    "retries",
    "retry_timeout",
    "timeout",
    "tls",
    "keepalive_pool",
    "type",
    "checks",
    "hash_on",
    "key",
    "scheme",
    "labels",
    "discovery_type",
    "discovery_args",
    "pass_host",
    "upstream_host",
    "name",
    "desc",
    "service_name",
    "id",
];

fn upstream_schema(obj: &mut Map<String, Value>) -> SResult {
    if let Some(extra) = obj.keys().find(|k| !UPSTREAM_PROPS.contains(&k.as_str())) {
        return Err(format!("additional properties forbidden, found {extra}"));
    }
    opt(obj, "id", id_def)?;
    opt(obj, "name", |v| string(v, 1, 256))?;
    opt(obj, "desc", |v| string(v, 0, 256))?;
    opt(obj, "labels", labels_def)?;
    opt(obj, "create_time", |v| integer(v, None, None))?;
    opt(obj, "update_time", |v| integer(v, None, None))?;
    if let Some(nodes) = obj.get_mut("nodes") {
        nested("nodes", nodes_def(nodes))?;
    }
    opt(obj, "retries", |v| integer(v, Some(0), None))?;
    opt(obj, "retry_timeout", |v| number(v, Some(0.0), false))?;
    opt(obj, "timeout", timeout_def)?;
    opt(obj, "tls", |v| {
        let m = object(v)?;
        for k in ["client_cert", "client_key", "client_cert_id"] {
            if let Some(x) = m.get(k) {
                nested(k, string(x, 1, 64 * 1024))?;
            }
        }
        if let Some(x) = m.get("verify") {
            nested("verify", boolean(x))?;
        }
        Ok(())
    })?;
    if let Some(Value::Object(pool)) = obj.get_mut("keepalive_pool") {
        default(pool, "size", json!(320));
        default(pool, "idle_timeout", json!(60));
        default(pool, "requests", json!(1000));
    }
    opt(obj, "keepalive_pool", |v| {
        let m = object(v)?;
        nested("size", integer(&m["size"], Some(1), None))?;
        nested("idle_timeout", number(&m["idle_timeout"], Some(0.0), false))?;
        nested("requests", integer(&m["requests"], Some(1), None))
    })?;
    opt(obj, "type", |v| {
        str_enum(v, &["chash", "roundrobin", "ewma", "least_conn"])
    })?;
    if let Some(checks) = obj.get_mut("checks") {
        nested("checks", health_checker(checks))?;
    }
    opt(obj, "hash_on", |v| {
        str_enum(
            v,
            &["vars", "header", "cookie", "consumer", "vars_combinations"],
        )
    })?;
    opt(obj, "key", |v| string(v, 0, usize::MAX))?;
    opt(obj, "scheme", |v| {
        str_enum(
            v,
            &[
                "grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka",
            ],
        )
    })?;
    opt(obj, "discovery_type", |v| string(v, 0, usize::MAX))?;
    opt(obj, "discovery_args", |v| object(v).map(|_| ()))?;
    opt(obj, "service_name", |v| string(v, 1, 256))?;
    opt(obj, "pass_host", |v| {
        str_enum(v, &["pass", "node", "rewrite"])
    })?;
    opt(obj, "upstream_host", host_def)?;
    // oneOf: nodes, or service discovery.
    let by_nodes = obj.contains_key("nodes");
    let by_discovery = obj.contains_key("service_name") && obj.contains_key("discovery_type");
    match (by_nodes, by_discovery) {
        (false, false) => {
            return Err("value should match only one schema, but matches none".into());
        }
        (true, true) => {
            return Err(
                "value should match only one schema, but matches both schemas 1 and 2".into(),
            );
        }
        _ => {}
    }
    default(obj, "type", json!("roundrobin"));
    default(obj, "scheme", json!("http"));
    default(obj, "pass_host", json!("pass"));
    default(obj, "hash_on", json!("vars"));
    Ok(())
}

/// The checks `apisix.upstream.check_upstream_conf` makes after the schema.
fn upstream_semantics(obj: &Map<String, Value>) -> Result<(), CheckError> {
    if let Some(Value::Object(nodes)) = obj.get("nodes") {
        for addr in nodes.keys() {
            if let Some((_, port)) = addr.rsplit_once(':')
                && !addr.ends_with(']')
                && !port.parse::<u16>().is_ok_and(|p| p > 0)
            {
                return Err(CheckError::Plain(format!("invalid port {port}")));
            }
        }
    }
    if obj.get("pass_host").and_then(Value::as_str) == Some("rewrite")
        && obj
            .get("upstream_host")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(CheckError::Plain(
            "`upstream_host` can't be empty when `pass_host` is `rewrite`".into(),
        ));
    }
    if obj.get("type").and_then(Value::as_str) == Some("chash")
        && obj.get("hash_on").and_then(Value::as_str) != Some("consumer")
        && !obj.contains_key("key")
    {
        return Err(CheckError::Plain("missing key".into()));
    }
    Ok(())
}

fn nodes_def(v: &mut Value) -> SResult {
    const NONE: &str = "object matches none of the required";
    match v {
        Value::Object(m) => {
            for w in m.values() {
                if w.as_i64().is_none_or(|w| w < 0) {
                    return Err(NONE.into());
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                let Value::Object(n) = item else {
                    return Err(NONE.into());
                };
                let host_ok = n.get("host").is_some_and(|h| host_def(h).is_ok());
                let weight_ok = n
                    .get("weight")
                    .is_some_and(|w| w.as_i64().is_some_and(|w| w >= 0));
                let port_ok = n
                    .get("port")
                    .is_none_or(|p| p.as_i64().is_some_and(|p| (1..=65_535).contains(&p)));
                let prio_ok = n.get("priority").is_none_or(|p| p.as_i64().is_some());
                let meta_ok = n.get("metadata").is_none_or(Value::is_object);
                if !(host_ok && weight_ok && port_ok && prio_ok && meta_ok) {
                    return Err(NONE.into());
                }
                default(n, "priority", json!(0));
            }
            Ok(())
        }
        _ => Err(NONE.into()),
    }
}

fn health_checker(v: &mut Value) -> SResult {
    let Value::Object(m) = v else {
        return Err(format!("wrong type: expected object, got {}", lua_type(v)));
    };
    if let Some(extra) = m.keys().find(|k| *k != "active" && *k != "passive") {
        return Err(format!("additional properties forbidden, found {extra}"));
    }
    if !m.contains_key("active") {
        return Err("object matches none of the required".into());
    }
    if let Some(Value::Object(active)) = m.get_mut("active") {
        default(active, "type", json!("http"));
        default(active, "timeout", json!(1));
        default(active, "concurrency", json!(10));
        default(active, "http_path", json!("/"));
        default(active, "https_verify_certificate", json!(true));
        if let Some(Value::Object(h)) = active.get_mut("healthy") {
            default(h, "interval", json!(1));
            default(h, "http_statuses", json!([200, 302]));
            default(h, "successes", json!(2));
        }
        if let Some(Value::Object(u)) = active.get_mut("unhealthy") {
            default(u, "interval", json!(1));
            default(
                u,
                "http_statuses",
                json!([429, 404, 500, 501, 502, 503, 504, 505]),
            );
            default(u, "http_failures", json!(5));
            default(u, "tcp_failures", json!(2));
            default(u, "timeouts", json!(3));
        }
    }
    if let Some(Value::Object(passive)) = m.get_mut("passive") {
        default(passive, "type", json!("http"));
        if let Some(Value::Object(h)) = passive.get_mut("healthy") {
            default(
                h,
                "http_statuses",
                json!([
                    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                    306, 307, 308
                ]),
            );
            default(h, "successes", json!(5));
        }
        if let Some(Value::Object(u)) = passive.get_mut("unhealthy") {
            default(u, "http_statuses", json!([429, 500, 503]));
            default(u, "tcp_failures", json!(2));
            default(u, "timeouts", json!(7));
            default(u, "http_failures", json!(5));
        }
    }
    for (name, part) in m.iter() {
        let Value::Object(p) = part else {
            return Err(format!(
                "property \"{name}\" validation failed: wrong type: expected object, got {}",
                lua_type(part)
            ));
        };
        if let Some(t) = p.get("type") {
            nested(name, nested("type", str_enum(t, &["http", "https", "tcp"])))?;
        }
    }
    Ok(())
}

fn check_ssl(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    (|| -> SResult {
        opt(obj, "id", id_def)?;
        opt(obj, "labels", labels_def)?;
        opt(obj, "cert", cert_def)?;
        opt(obj, "key", key_def)?;
        opt(obj, "certs", |v| array_of(v, 0, cert_def))?;
        opt(obj, "keys", |v| array_of(v, 0, key_def))?;
        opt(obj, "sni", host_def)?;
        opt(obj, "snis", |v| array_of(v, 1, host_def))?;
        opt(obj, "status", |v| int_enum(v, &[0, 1]))?;
        opt(obj, "type", |v| str_enum(v, &["server", "client"]))?;
        opt(obj, "ssl_protocols", |v| {
            array_of(v, 0, |i| str_enum(i, &["TLSv1.1", "TLSv1.2", "TLSv1.3"]))
        })?;
        for t in [
            "exptime",
            "validity_start",
            "validity_end",
            "create_time",
            "update_time",
        ] {
            opt(obj, t, |v| integer(v, None, None))?;
        }
        if let Some(Value::Object(client)) = obj.get_mut("client") {
            default(client, "depth", json!(1));
        }
        opt(obj, "client", |v| {
            let m = object(v)?;
            match m.get("ca") {
                Some(ca) => nested("ca", cert_def(ca))?,
                None => return Err("property \"ca\" is required".into()),
            }
            nested("depth", integer(&m["depth"], Some(0), None))
        })?;
        let is_server = obj.get("type").and_then(Value::as_str) != Some("client");
        let has = |k: &str| obj.contains_key(k);
        if is_server {
            let a = has("sni") && has("key") && has("cert");
            let b = has("snis") && has("key") && has("cert");
            match (a, b) {
                (false, false) => {
                    return Err("value should match only one schema, but matches none".into());
                }
                (true, true) => {
                    return Err(
                        "value should match only one schema, but matches both schemas 1 and 2"
                            .into(),
                    );
                }
                _ => {}
            }
        } else if !(has("key") && has("cert")) {
            return Err("object matches none of the required".into());
        }
        default(obj, "type", json!("server"));
        default(obj, "status", json!(1));
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    let certs = obj
        .get("certs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if certs != keys {
        return Err(CheckError::Plain(
            "mismatched number of certs and keys".into(),
        ));
    }
    Ok(())
}

fn check_consumer(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    (|| -> SResult {
        match obj.get("username") {
            None => return Err("property \"username\" is required".into()),
            Some(u) => nested("username", {
                string(u, 1, 100)?;
                pattern(u, "^[a-zA-Z0-9_\\-]+$", |s| {
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
            })?,
        }
        opt(obj, "group_id", id_def)?;
        opt(obj, "desc", |v| string(v, 0, 256))?;
        opt(obj, "labels", labels_def)?;
        opt(obj, "plugins", plugins_def)?;
        for t in ["create_time", "update_time"] {
            opt(obj, t, |v| integer(v, None, None))?;
        }
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    if let (Some(store), Some(group)) = (ctx.store, obj.get("group_id")) {
        let gid = id_string(group);
        if store.get(Kind::ConsumerGroups, &gid).is_none() {
            return Err(CheckError::Plain(format!(
                "failed to fetch consumer group info by consumer group id [{gid}], response code: 404"
            )));
        }
    }
    check_plugins(
        obj.get("plugins"),
        HTTP_PLUGINS,
        "invalid plugins configuration: ",
    )
}

fn check_credential(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    (|| -> SResult {
        opt(obj, "id", id_def)?;
        opt(obj, "name", |v| string(v, 1, 256))?;
        opt(obj, "desc", |v| string(v, 0, 256))?;
        opt(obj, "labels", labels_def)?;
        opt(obj, "plugins", |v| {
            plugins_def(v)?;
            if object(v)?.len() > 1 {
                return Err("expect object to have at most 1 properties".into());
            }
            Ok(())
        })?;
        for t in ["create_time", "update_time"] {
            opt(obj, t, |v| integer(v, None, None))?;
        }
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    if let Some(Value::Object(plugins)) = obj.get("plugins") {
        for name in plugins.keys() {
            if !HTTP_PLUGINS.contains(&name.as_str()) {
                return Err(CheckError::Plain(format!(
                    "invalid plugins configuration: unknown plugin [{name}]"
                )));
            }
            if !AUTH_PLUGINS.contains(&name.as_str()) {
                return Err(CheckError::Plain(
                    "only supports auth type plugins in consumer credential".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Global rules, plugin configs and consumer groups: a required `plugins` map.
fn check_plugin_holder(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    (|| -> SResult {
        opt(obj, "id", id_def)?;
        opt(obj, "name", |v| string(v, 1, 256))?;
        opt(obj, "desc", |v| string(v, 0, 256))?;
        opt(obj, "labels", labels_def)?;
        for t in ["create_time", "update_time"] {
            opt(obj, t, |v| integer(v, None, None))?;
        }
        match obj.get("plugins") {
            None => Err("property \"plugins\" is required".into()),
            Some(p) => nested("plugins", plugins_def(p)),
        }
    })()
    .map_err(CheckError::Schema)?;
    check_plugins(obj.get("plugins"), HTTP_PLUGINS, "")
}

fn check_stream_route(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    (|| -> SResult {
        common_props(obj)?;
        opt(obj, "remote_addr", ip_def)?;
        opt(obj, "server_addr", ip_def)?;
        opt(obj, "server_port", |v| integer(v, Some(1), Some(65_535)))?;
        opt(obj, "sni", host_def)?;
        opt(obj, "upstream_id", id_def)?;
        opt(obj, "service_id", id_def)?;
        opt(obj, "protocol", |v| object(v).map(|_| ()))?;
        if let Some(up) = obj.get_mut("upstream") {
            nested("upstream", upstream_schema_value(up))?;
        }
        Ok(())
    })()
    .map_err(CheckError::Schema)?;
    check_refs(obj, ctx)?;
    check_plugins(obj.get("plugins"), STREAM_PLUGINS, "")
}

fn check_proto(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    (|| -> SResult {
        opt(obj, "id", id_def)?;
        opt(obj, "name", |v| string(v, 1, 256))?;
        opt(obj, "desc", |v| string(v, 0, 256))?;
        opt(obj, "labels", labels_def)?;
        match obj.get("content") {
            None => Err("property \"content\" is required".into()),
            Some(c) => nested("content", string(c, 1, 1024 * 1024)),
        }
    })()
    .map_err(CheckError::Schema)
}

/// Properties most resources share.
fn common_props(obj: &mut Map<String, Value>) -> SResult {
    opt(obj, "id", id_def)?;
    opt(obj, "name", |v| string(v, 1, 256))?;
    opt(obj, "desc", |v| string(v, 0, 256))?;
    opt(obj, "labels", labels_def)?;
    opt(obj, "plugins", plugins_def)?;
    for t in ["create_time", "update_time"] {
        opt(obj, t, |v| integer(v, None, None))?;
    }
    Ok(())
}

/// `upstream_id` / `service_id` / `plugin_config_id` must name stored resources.
fn check_refs(obj: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
    let Some(store) = ctx.store else {
        return Ok(());
    };
    let refs = [
        ("upstream_id", Kind::Upstreams, "upstream"),
        ("service_id", Kind::Services, "service"),
        ("plugin_config_id", Kind::PluginConfigs, "plugin config"),
    ];
    for (field, kind, what) in refs {
        if let Some(v) = obj.get(field) {
            let id = id_string(v);
            if store.get(kind, &id).is_none() {
                return Err(CheckError::Plain(format!(
                    "failed to fetch {what} info by {what} id [{id}], response code: 404"
                )));
            }
        }
    }
    Ok(())
}

/// Plugin names must be known and each configuration an object (with an object `_meta`).
fn check_plugins(plugins: Option<&Value>, known: &[&str], prefix: &str) -> Result<(), CheckError> {
    let Some(Value::Object(plugins)) = plugins else {
        return Ok(());
    };
    for (name, conf) in plugins {
        if !known.contains(&name.as_str()) {
            return Err(CheckError::Plain(format!(
                "{prefix}unknown plugin [{name}]"
            )));
        }
        let err = match conf {
            Value::Object(m) => match m.get("_meta") {
                Some(meta) if !meta.is_object() => Some(format!(
                    "property \"_meta\" validation failed: wrong type: expected object, got {}",
                    lua_type(meta)
                )),
                _ => None,
            },
            other => Some(format!(
                "wrong type: expected object, got {}",
                lua_type(other)
            )),
        };
        if let Some(err) = err {
            return Err(CheckError::Plain(format!(
                "{prefix}failed to check the configuration of plugin {name} err: {err}"
            )));
        }
    }
    Ok(())
}

/// The string form of an id (`1` and `"1"` name the same resource).
pub(crate) fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema primitives, reporting in the jsonschema-for-Lua wording.

fn default(obj: &mut Map<String, Value>, key: &str, v: Value) {
    obj.entry(key.to_owned()).or_insert(v);
}

fn nested(name: &str, r: SResult) -> SResult {
    r.map_err(|e| format!("property \"{name}\" validation failed: {e}"))
}

fn opt(obj: &Map<String, Value>, key: &str, f: impl Fn(&Value) -> SResult) -> SResult {
    match obj.get(key) {
        Some(v) => nested(key, f(v)),
        None => Ok(()),
    }
}

fn object(v: &Value) -> Result<&Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("wrong type: expected object, got {}", lua_type(v)))
}

fn string(v: &Value, min: usize, max: usize) -> SResult {
    let Value::String(s) = v else {
        return Err(format!("wrong type: expected string, got {}", lua_type(v)));
    };
    let n = s.chars().count();
    if n < min {
        return Err(format!(
            "string too short, expected at least {min}, got {n}"
        ));
    }
    if n > max {
        return Err(format!("string too long, expected at most {max}, got {n}"));
    }
    Ok(())
}

fn pattern(v: &Value, pat: &str, ok: impl Fn(&str) -> bool) -> SResult {
    let s = v.as_str().unwrap_or_default();
    if ok(s) {
        Ok(())
    } else {
        Err(format!("failed to match pattern \"{pat}\" with \"{s}\""))
    }
}

fn integer(v: &Value, min: Option<i64>, max: Option<i64>) -> SResult {
    let Some(n) = v.as_i64() else {
        let got = if v.is_number() { "number" } else { lua_type(v) };
        return Err(format!("wrong type: expected integer, got {got}"));
    };
    if let Some(min) = min
        && n < min
    {
        return Err(format!("expected {n} to be at least {min}"));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(format!("expected {n} to be at most {max}"));
    }
    Ok(())
}

fn number(v: &Value, min: Option<f64>, exclusive: bool) -> SResult {
    let Some(n) = v.as_f64() else {
        return Err(format!("wrong type: expected number, got {}", lua_type(v)));
    };
    if let Some(min) = min {
        if exclusive && n <= min {
            return Err(format!("expected {n} to be greater than {min}"));
        }
        if !exclusive && n < min {
            return Err(format!("expected {n} to be at least {min}"));
        }
    }
    Ok(())
}

fn boolean(v: &Value) -> SResult {
    if v.is_boolean() {
        Ok(())
    } else {
        Err(format!("wrong type: expected boolean, got {}", lua_type(v)))
    }
}

fn str_enum(v: &Value, allowed: &[&str]) -> SResult {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err("matches none of the enum values".into()),
    }
}

fn int_enum(v: &Value, allowed: &[i64]) -> SResult {
    match v.as_i64() {
        Some(n) if allowed.contains(&n) => Ok(()),
        _ => Err("matches none of the enum values".into()),
    }
}

fn array_of(v: &Value, min_items: usize, item: impl Fn(&Value) -> SResult) -> SResult {
    let Value::Array(items) = v else {
        return Err(format!("wrong type: expected array, got {}", lua_type(v)));
    };
    if items.len() < min_items {
        return Err(format!("expect array to have at least {min_items} items"));
    }
    for (i, x) in items.iter().enumerate() {
        item(x).map_err(|e| format!("failed to validate item {}: {e}", i + 1))?;
    }
    Ok(())
}

fn id_def(v: &Value) -> SResult {
    match v {
        Value::String(_) => {
            string(v, 1, 64)?;
            pattern(v, "^[a-zA-Z0-9-_.]+$", |s| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
        }
        Value::Number(_) => integer(v, Some(1), None),
        other => Err(format!(
            "wrong type: expected string, got {}",
            lua_type(other)
        )),
    }
}

fn host_def(v: &Value) -> SResult {
    string(v, 0, usize::MAX)?;
    pattern(v, "^\\*?[0-9a-zA-Z-._]+$", |s| {
        let body = s.strip_prefix('*').unwrap_or(s);
        !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    })
}

fn ip_def(v: &Value) -> SResult {
    string(v, 0, usize::MAX)?;
    let s = v.as_str().unwrap_or_default();
    let ok = match s.split_once('/') {
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
            (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
            _ => false,
        },
        None => s.parse::<IpAddr>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err("object matches none of the required".into())
    }
}

fn timeout_def(v: &Value) -> SResult {
    let m = object(v)?;
    for k in ["connect", "send", "read"] {
        match m.get(k) {
            None => return Err(format!("property \"{k}\" is required")),
            Some(x) => nested(k, number(x, Some(0.0), true))?,
        }
    }
    Ok(())
}

fn labels_def(v: &Value) -> SResult {
    let m = object(v)?;
    if m.len() > 16 {
        return Err("expect object to have at most 16 properties".into());
    }
    for (k, val) in m {
        let r = string(val, 1, 64)
            .and_then(|()| pattern(val, "^\\S+$", |s| !s.chars().any(char::is_whitespace)));
        r.map_err(|e| format!("failed to validate {k} (matching \".*\"): {e}"))?;
    }
    Ok(())
}

fn plugins_def(v: &Value) -> SResult {
    object(v).map(|_| ())
}

/// Certificates: a PEM of at least 128 characters, or a `$secret://` / `$env://` reference.
fn cert_def(v: &Value) -> SResult {
    if v.as_str().is_some_and(is_secret_ref) {
        return Ok(());
    }
    string(v, 128, 64 * 1024)
}

/// Private keys: at least 32 characters (domain.md §1.1), or a secret reference.
fn key_def(v: &Value) -> SResult {
    if v.as_str().is_some_and(is_secret_ref) {
        return Ok(());
    }
    string(v, 32, 64 * 1024)
}

fn is_secret_ref(s: &str) -> bool {
    s.starts_with("$secret://") || s.starts_with("$env://")
}

fn one_of_required(obj: &Map<String, Value>, keys: &[&str; 2]) -> SResult {
    match (obj.contains_key(keys[0]), obj.contains_key(keys[1])) {
        (true, false) | (false, true) => Ok(()),
        (false, false) => Err("value should match only one schema, but matches none".into()),
        (true, true) => {
            Err("value should match only one schema, but matches both schemas 1 and 2".into())
        }
    }
}

fn at_most_one(obj: &Map<String, Value>, a: &str, b: &str) -> SResult {
    if obj.contains_key(a) && obj.contains_key(b) {
        Err("value should match only one schema, but matches both schemas 2 and 3".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, mut v: Value) -> Result<Value, CheckError> {
        check(kind, &mut v, &Ctx { store: None })?;
        Ok(v)
    }

    #[test]
    fn route_gets_defaults_including_inline_upstream() {
        let v = run(
            Kind::Routes,
            json!({"uri": "/a", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}]}}),
        )
        .unwrap();
        assert_eq!(v["priority"], 0);
        assert_eq!(v["status"], 1);
        assert_eq!(v["upstream"]["type"], "roundrobin");
        assert_eq!(v["upstream"]["scheme"], "http");
        assert_eq!(v["upstream"]["pass_host"], "pass");
        assert_eq!(v["upstream"]["hash_on"], "vars");
        assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
    }

    #[test]
    fn route_without_uri_fails_like_apisix() {
        let e = run(Kind::Routes, json!({"upstream_id": "1"})).unwrap_err();
        assert_eq!(
            e.admin_message(),
            "invalid configuration: allOf 1 failed: value should match only one schema, but matches none"
        );
        let e = run(Kind::Routes, json!({"uri": "/a"})).unwrap_err();
        assert_eq!(e.raw(), "object matches none of the required");
    }

    #[test]
    fn upstream_needs_nodes_or_discovery() {
        let e = run(Kind::Upstreams, json!({"type": "roundrobin"})).unwrap_err();
        assert_eq!(
            e.admin_message(),
            "invalid configuration: value should match only one schema, but matches none"
        );
        assert!(
            run(
                Kind::Upstreams,
                json!({"service_name": "svc", "discovery_type": "dns"})
            )
            .is_ok()
        );
        let e = run(Kind::Upstreams, json!({"nodes": {"a:1": 1}, "bogus": 1})).unwrap_err();
        assert_eq!(e.raw(), "additional properties forbidden, found bogus");
    }

    #[test]
    fn upstream_semantic_checks() {
        let e = run(
            Kind::Upstreams,
            json!({"nodes": {"a:1": 1}, "type": "chash"}),
        )
        .unwrap_err();
        assert_eq!(e, CheckError::Plain("missing key".into()));
        let e = run(
            Kind::Upstreams,
            json!({"nodes": {"a:1": 1}, "pass_host": "rewrite"}),
        )
        .unwrap_err();
        assert!(e.raw().contains("upstream_host"));
        let e = run(Kind::Upstreams, json!({"nodes": {"a:99999": 1}})).unwrap_err();
        assert_eq!(e.raw(), "invalid port 99999");
    }

    #[test]
    fn type_errors_use_lua_wording() {
        let e = run(Kind::Routes, json!({"uri": 123, "plugins": {}})).unwrap_err();
        assert_eq!(
            e.raw(),
            "property \"uri\" validation failed: wrong type: expected string, got number"
        );
        let e = run(
            Kind::Consumers,
            json!({"username": "jack", "labels": {"env": ["a"]}}),
        )
        .unwrap_err();
        assert_eq!(
            e.admin_message(),
            "invalid configuration: property \"labels\" validation failed: failed to validate env (matching \".*\"): wrong type: expected string, got table"
        );
    }

    #[test]
    fn unknown_plugins_are_rejected() {
        let e = run(Kind::Routes, json!({"uri": "/", "plugins": {"nope": {}}})).unwrap_err();
        assert_eq!(e, CheckError::Plain("unknown plugin [nope]".into()));
        let e = run(Kind::Credentials, json!({"plugins": {"limit-count": {}}})).unwrap_err();
        assert_eq!(
            e.raw(),
            "only supports auth type plugins in consumer credential"
        );
    }

    #[test]
    fn ssl_defaults_and_requirements() {
        let cert = "C".repeat(200);
        let key = "K".repeat(64);
        let v = run(
            Kind::Ssls,
            json!({"snis": ["a.example.com"], "cert": cert, "key": key}),
        )
        .unwrap();
        assert_eq!(v["type"], "server");
        assert_eq!(v["status"], 1);
        let e = run(Kind::Ssls, json!({"sni": "foo.com"})).unwrap_err();
        assert_eq!(
            e.admin_message(),
            "invalid configuration: value should match only one schema, but matches none"
        );
    }

    #[test]
    fn health_check_defaults_fill_when_present() {
        let v = run(
            Kind::Upstreams,
            json!({"nodes": {"a:1": 1}, "checks": {"active": {"healthy": {}}}}),
        )
        .unwrap();
        assert_eq!(v["checks"]["active"]["http_path"], "/");
        assert_eq!(
            v["checks"]["active"]["healthy"]["http_statuses"],
            json!([200, 302])
        );
        let e = run(
            Kind::Upstreams,
            json!({"nodes": {"a:1": 1}, "checks": {"passive": {}}}),
        )
        .unwrap_err();
        assert!(e.raw().contains("object matches none of the required"));
    }
}
