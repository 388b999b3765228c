//! Consumers and their credentials: usernames, consumer-group references, and the rule that
//! credentials carry exactly one `auth` plugin.

use serde_json::{Map, Value};

use super::plugins::{AUTH_PLUGINS, HTTP_PLUGINS, check_plugins};
use super::primitives::{
    SResult, id_def, integer, labels_def, nested, object, opt, pattern, plugins_def, string,
};
use super::{CheckError, Ctx, id_string};
use crate::apisix::store::Kind;

pub(super) fn check_consumer(
    obj: &mut Map<String, Value>,
    ctx: &Ctx<'_>,
) -> Result<(), CheckError> {
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

pub(super) fn check_credential(obj: &mut Map<String, Value>) -> Result<(), CheckError> {
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
