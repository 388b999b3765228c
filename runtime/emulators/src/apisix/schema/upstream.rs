//! Upstreams: the upstream schema (nodes or service discovery, health checks, keepalive pool)
//! with its defaults, and the semantic checks `check_upstream_conf` makes after it. Routes,
//! services and stream routes embed the same schema for inline upstreams.

use serde_json::{Map, Value, json};

use super::CheckError;
use super::primitives::{
    SResult, boolean, default, host_def, id_def, integer, labels_def, nested, number, object, opt,
    str_enum, string, timeout_def,
};
use crate::json::lua_type;

/// Validates an upstream object with APISIX's upstream schema and semantic checks, filling its
/// defaults. Shared with the API7 emulator, whose services embed APISIX upstreams.
pub(crate) fn check_upstream_value(v: &mut Value) -> Result<(), CheckError> {
    upstream_schema_value(v).map_err(CheckError::Schema)?;
    match v {
        Value::Object(m) => upstream_semantics(m),
        _ => Ok(()),
    }
}

/// `check_upstream_conf` for a standalone upstream resource.
pub(super) fn check_upstream(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
    upstream_schema(obj).map_err(CheckError::Schema)?;
    upstream_semantics(obj)
}

pub(super) fn upstream_schema_value(v: &mut Value) -> SResult {
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
pub(super) fn upstream_semantics(obj: &Map<String, Value>) -> Result<(), CheckError> {
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
