//! Routes, services and stream routes: the resources that lead traffic to an upstream, with the
//! properties they share and the references (`upstream_id`, `service_id`, `plugin_config_id`)
//! that must name stored resources.

use serde_json::{Map, Value, json};

use super::plugins::{HTTP_PLUGINS, STREAM_PLUGINS, check_plugins};
use super::primitives::{
    SResult, array_of, at_most_one, boolean, default, host_def, id_def, int_enum, integer, ip_def,
    labels_def, nested, object, one_of_required, opt, pattern, plugins_def, str_enum, string,
    timeout_def,
};
use super::upstream::{upstream_schema_value, upstream_semantics};
use super::{CheckError, Ctx, id_string};
use crate::apisix::store::Kind;

const HTTP_METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

pub(super) fn check_route(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
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

pub(super) fn check_service(obj: &mut Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), CheckError> {
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

pub(super) fn check_stream_route(
    obj: &mut Map<String, Value>,
    ctx: &Ctx<'_>,
) -> Result<(), CheckError> {
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
