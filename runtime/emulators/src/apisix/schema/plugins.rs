//! The plugins bundled with APISIX and the checks that involve them: plugin names and
//! configurations, plugin metadata names, and the resources that exist to carry plugins (global
//! rules, plugin configs, consumer groups) or plugin data (protos, for `grpc-transcode`).

use serde_json::{Map, Value};

use super::CheckError;
use super::primitives::{SResult, id_def, integer, labels_def, nested, opt, plugins_def, string};
use crate::json::lua_type;

/// The plugins bundled with APISIX 3.12 (HTTP subsystem). Unknown names are rejected the way
/// APISIX rejects them, so a typo in a pushed configuration fails here as it would in production.
pub(super) const HTTP_PLUGINS: &[&str] = &[
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
pub(super) const STREAM_PLUGINS: &[&str] = &[
    "ip-restriction",
    "limit-conn",
    "mqtt-proxy",
    "syslog",
    "prometheus",
];

/// Plugins of type `auth`, the only ones allowed in consumer credentials.
pub(super) const AUTH_PLUGINS: &[&str] = &[
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

/// The plugin names `GET /apisix/admin/plugins/list` reports.
pub(crate) fn plugin_names() -> Vec<&'static str> {
    let mut v = HTTP_PLUGINS.to_vec();
    v.sort_unstable();
    v
}

/// `PUT /plugin_metadata/{name}` only accepts bundled plugin names.
pub(crate) fn check_plugin_metadata_name(name: &str) -> Result<(), CheckError> {
    if HTTP_PLUGINS.contains(&name) || STREAM_PLUGINS.contains(&name) {
        Ok(())
    } else {
        Err(CheckError::Plain("invalid plugin name".into()))
    }
}

/// Global rules, plugin configs and consumer groups: a required `plugins` map.
pub(super) fn check_plugin_holder(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
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

pub(super) fn check_proto(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
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

/// Plugin names must be known and each configuration an object (with an object `_meta`).
pub(super) fn check_plugins(
    plugins: Option<&Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), CheckError> {
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
