//! APISIX 3.x resource validation and default filling.
//!
//! APISIX validates every write with jsonschema and, as a side effect, injects the schema's
//! `default`s into the stored value — which is why a naive client that diffs what it wrote
//! against what it reads back always sees changes (domain.md §1.4, §2). This module reproduces
//! the part of `apisix/schema_def.lua` that matters for that behaviour and for the common
//! validation failures, with error messages in the jsonschema-for-Lua wording. It is not a full
//! schema: plugin configurations are only checked for being objects with a known plugin name.
//!
//! This file holds the entry points and the error type; one file per resource family
//! (`routes` for routes, services and stream routes, `upstream`, `ssl`, `consumers` for
//! consumers and credentials, `plugins` for the plugin lists and plugin-holding resources) and
//! `primitives` for the jsonschema building blocks they share.

mod consumers;
mod plugins;
mod primitives;
mod routes;
mod ssl;
mod upstream;

use serde_json::Value;

use super::store::{Kind, Store};
use crate::json::lua_type;
use consumers::{check_consumer, check_credential};
use plugins::{check_plugin_holder, check_proto};
use routes::{check_route, check_service, check_stream_route};
use ssl::check_ssl;
use upstream::check_upstream;

pub(crate) use plugins::{check_plugin_metadata_name, is_auth_plugin, plugin_names};
pub(crate) use upstream::check_upstream_value;

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

/// The string form of an id (`1` and `"1"` name the same resource).
pub(crate) fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
