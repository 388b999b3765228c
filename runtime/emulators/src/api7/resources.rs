//! Gateway-group-scoped runtime resources under `/apisix/admin/*`: path parsing, list filters,
//! validation, writes with defaults and timestamps, and cascading deletes.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Access;
use super::defaults::{apply_defaults, defaults};
use super::reply::{Fail, error, list, parse_json, value};
use super::{Api7Cp, Group, Res};
use crate::apisix::schema::{check_upstream_value, id_string, is_auth_plugin};
use crate::clock::unix_now;
use crate::json::json_response;

/// A parsed `/apisix/admin/...` path: the resource type, the key within its table, and for
/// sub-resources the parent id (service or consumer).
struct Target {
    res: Res,
    id: Option<String>,
    parent: Option<String>,
}

fn parse_target(segs: &[&str]) -> Option<Target> {
    let one = |res| Target {
        res,
        id: segs.get(1).map(|s| (*s).to_owned()),
        parent: None,
    };
    match segs {
        ["services", sid, "upstreams", rest @ ..] if rest.len() <= 1 => Some(Target {
            res: Res::ServiceUpstreams,
            id: rest.first().map(|u| format!("{sid}/{u}")),
            parent: Some((*sid).to_owned()),
        }),
        ["consumers", user, "credentials", rest @ ..] if rest.len() <= 1 => Some(Target {
            res: Res::Credentials,
            id: rest.first().map(|c| format!("{user}/{c}")),
            parent: Some((*user).to_owned()),
        }),
        [res] | [res, _] => match *res {
            "services" => Some(one(Res::Services)),
            "routes" => Some(one(Res::Routes)),
            "stream_routes" => Some(one(Res::StreamRoutes)),
            "consumers" => Some(one(Res::Consumers)),
            "ssls" => Some(one(Res::Ssls)),
            "global_rules" => Some(one(Res::GlobalRules)),
            "plugin_metadata" => Some(one(Res::PluginMetadata)),
            _ => None,
        },
        _ => None,
    }
}

pub(super) async fn admin(
    State(cp): State<Api7Cp>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let access = req
        .extensions()
        .get::<Access>()
        .cloned()
        .unwrap_or(Access::Full);
    let method = req.method().clone();
    let body = match axum::body::to_bytes(req.into_body(), 8 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            );
        }
    };
    let gid = match access {
        Access::Group(g) => g,
        Access::Full => match q.get("gateway_group_id") {
            Some(g) => g.clone(),
            None => return error(StatusCode::BAD_REQUEST, "gateway_group_id is required"),
        },
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some(target) = parse_target(&segs) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let mut groups = cp.groups();
    let Some(group) = groups.get_mut(&gid) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    match (method, &target.id) {
        (Method::GET, None) => list_resources(group, &target, &q),
        (Method::GET, Some(id)) => match group.table(target.res).get(id) {
            Some(v) => value(&present(target.res, v)),
            None => error(
                StatusCode::NOT_FOUND,
                format!("{} not found", target.res.singular()),
            ),
        },
        (Method::PUT, Some(id)) => {
            let body = match parse_json(&body) {
                Ok(b) => b,
                Err(f) => return f.into_response(),
            };
            put_resource(group, &target, id, body)
        }
        (Method::DELETE, Some(id)) => delete_resource(group, &target, id),
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// What a read returns: SSL private keys are never sent back.
fn present(r: Res, v: &Value) -> Value {
    let mut v = v.clone();
    if r == Res::Ssls
        && let Some(m) = v.as_object_mut()
    {
        m.remove("key");
        m.remove("keys");
    }
    v
}

fn list_resources(group: &mut Group, t: &Target, q: &HashMap<String, String>) -> Response {
    let labels: Vec<(&str, &str)> = q
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("labels[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k, v.as_str()))
        })
        .collect();
    let parent_prefix = t.parent.as_ref().map(|p| format!("{p}/"));
    let items: Vec<(String, Value)> = group
        .table(t.res)
        .iter()
        .filter(|(k, _)| parent_prefix.as_deref().is_none_or(|p| k.starts_with(p)))
        .filter(|(_, v)| {
            q.get("service_id")
                .is_none_or(|s| v.get("service_id").map(id_string).as_deref() == Some(s))
        })
        .filter(|(_, v)| {
            labels.iter().all(|(k, want)| {
                v.get("labels")
                    .and_then(|l| l.get(*k))
                    .and_then(Value::as_str)
                    == Some(*want)
            })
        })
        .map(|(k, v)| (k.clone(), present(t.res, v)))
        .collect();
    if t.res == Res::PluginMetadata {
        return value(&Value::Object(items.into_iter().collect()));
    }
    list(&items.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
}

fn require_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, Fail> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fail::bad(format!("{field} is required")))
}

fn validate(group: &mut Group, t: &Target, id: &str, body: &mut Value) -> Result<(), Fail> {
    let bad = |m: String| Fail::bad(m);
    if !body.is_object() {
        return Err(bad("invalid request body: expected an object".into()));
    }
    let check_upstream = |up: &Value| -> Result<(), Fail> {
        let mut probe = up.clone();
        check_upstream_value(&mut probe)
            .map_err(|e| Fail::bad(format!("invalid upstream: {}", e.raw())))
    };
    match t.res {
        Res::Services => {
            require_str(body, "name")?;
            if let Some(ty) = body.get("type")
                && !matches!(ty.as_str(), Some("http" | "stream"))
            {
                return Err(bad("type must be one of: http, stream".into()));
            }
            if let Some(p) = body.get("path_prefix")
                && !p.as_str().is_some_and(|p| p.starts_with('/'))
            {
                return Err(bad("path_prefix must start with /".into()));
            }
            if let Some(up) = body.get("upstream") {
                check_upstream(up)?;
            }
        }
        Res::ServiceUpstreams => {
            require_str(body, "name")?;
            check_upstream(body)?;
        }
        Res::Routes | Res::StreamRoutes => {
            require_str(body, "name")?;
            let sid = require_str(body, "service_id")?.to_owned();
            if !group.table(Res::Services).contains_key(&sid) {
                return Err(bad(format!("service [{sid}] not found")));
            }
            if t.res == Res::Routes {
                let paths_ok = body
                    .get("paths")
                    .and_then(Value::as_array)
                    .is_some_and(|p| {
                        !p.is_empty()
                            && p.iter()
                                .all(|x| x.as_str().is_some_and(|s| s.starts_with('/')))
                    });
                if !paths_ok {
                    return Err(bad(
                        "paths must be a non-empty array of paths starting with /".into(),
                    ));
                }
            }
        }
        Res::Consumers => {
            if let Some(u) = body.get("username")
                && u.as_str() != Some(id)
            {
                return Err(bad("wrong username".into()));
            }
            if let Some(m) = body.as_object_mut() {
                m.insert("username".into(), json!(id));
            }
        }
        Res::Credentials => {
            let user = t.parent.as_deref().unwrap_or_default();
            if !group.table(Res::Consumers).contains_key(user) {
                return Err(Fail {
                    status: StatusCode::NOT_FOUND,
                    msg: "consumer not found".into(),
                });
            }
            let plugins = body.get("plugins").and_then(Value::as_object);
            let ok = plugins.is_some_and(|p| p.len() == 1 && p.keys().all(|k| is_auth_plugin(k)));
            if !ok {
                return Err(bad(
                    "plugins must hold exactly one authentication plugin".into()
                ));
            }
        }
        Res::Ssls => {
            let is_server = body.get("type").and_then(Value::as_str) != Some("client");
            require_str(body, "cert")?;
            require_str(body, "key")?;
            let has_snis = body
                .get("snis")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if is_server && !has_snis {
                return Err(bad("snis is required".into()));
            }
        }
        Res::GlobalRules => {
            if !body.get("plugins").is_some_and(Value::is_object) {
                return Err(bad("plugins is required".into()));
            }
        }
        Res::PluginMetadata => {}
    }
    Ok(())
}

fn put_resource(group: &mut Group, t: &Target, id: &str, mut body: Value) -> Response {
    let local_id = id.rsplit('/').next().unwrap_or(id).to_owned();
    if let Err(f) = validate(group, t, &local_id, &mut body) {
        return f.into_response();
    }
    if let Some(m) = body.as_object_mut() {
        if !matches!(t.res, Res::Consumers | Res::PluginMetadata) {
            m.insert("id".into(), json!(local_id));
        }
        if t.res == Res::ServiceUpstreams
            && let Some(sid) = &t.parent
        {
            m.insert("service_id".into(), json!(sid));
        }
    }
    apply_defaults(&mut body, &defaults(t.res));
    if t.res != Res::PluginMetadata {
        let now = unix_now();
        let created = group
            .table(t.res)
            .get(id)
            .and_then(|v| v.get("create_time").cloned())
            .unwrap_or_else(|| json!(now));
        if let Some(m) = body.as_object_mut() {
            m.insert("create_time".into(), created);
            m.insert("update_time".into(), json!(now));
        }
    }
    group.table(t.res).insert(id.to_owned(), body.clone());
    value(&present(t.res, &body))
}

fn delete_resource(group: &mut Group, t: &Target, id: &str) -> Response {
    if group.table(t.res).remove(id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("{} not found", t.res.singular()),
        );
    }
    match t.res {
        Res::Services => {
            for r in [Res::Routes, Res::StreamRoutes] {
                group
                    .table(r)
                    .retain(|_, v| v.get("service_id").map(id_string).as_deref() != Some(id));
            }
            let prefix = format!("{id}/");
            group
                .table(Res::ServiceUpstreams)
                .retain(|k, _| !k.starts_with(&prefix));
        }
        Res::Consumers => {
            let prefix = format!("{id}/");
            group
                .table(Res::Credentials)
                .retain(|k, _| !k.starts_with(&prefix));
        }
        _ => {}
    }
    json_response(StatusCode::OK, &json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = parse_target(&["services", "s1", "upstreams", "u1"]).unwrap();
        assert_eq!(t.res, Res::ServiceUpstreams);
        assert_eq!(t.id.as_deref(), Some("s1/u1"));
        let t = parse_target(&["consumers", "jack", "credentials"]).unwrap();
        assert_eq!(t.res, Res::Credentials);
        assert!(t.id.is_none());
        assert!(parse_target(&["upstreams"]).is_none());
    }
}
