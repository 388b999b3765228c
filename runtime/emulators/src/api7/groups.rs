//! `/api/gateway_groups`: list, create, read, update and delete groups, and issue their
//! instance tokens and admin keys; list the data-plane instances that joined a group.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::reply::{Fail, error, list, parse_json, value};
use super::{Api7Cp, Group};
use crate::clock::unix_now;
use crate::ids;
use crate::json::json_response;

pub(super) async fn list_groups(
    State(cp): State<Api7Cp>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let items = cp
        .groups()
        .values()
        .filter(|g| {
            let name = g.value["name"].as_str().unwrap_or_default();
            q.get("search").is_none_or(|s| name.contains(s.as_str()))
                && q.get("name").is_none_or(|n| name == n)
        })
        .map(|g| g.value.clone())
        .collect::<Vec<_>>();
    list(&items)
}

/// Validates a gateway-group body; returns `(name, description, labels)`.
fn group_fields(body: &Value) -> Result<(String, String, Value), Fail> {
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Err(Fail::bad("name is required"));
    };
    let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
    if !labels.is_object() {
        return Err(Fail::bad("labels must be an object"));
    }
    Ok((
        name.to_owned(),
        body.get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        labels,
    ))
}

pub(super) async fn create_group(State(cp): State<Api7Cp>, body: axum::body::Bytes) -> Response {
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let (name, description, labels) = match group_fields(&body) {
        Ok(f) => f,
        Err(f) => return f.into_response(),
    };
    let mut groups = cp.groups();
    if groups.values().any(|g| g.value["name"] == name.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("gateway group name [{name}] already exists"),
        );
    }
    let id = ids::uuid_v4();
    let g = Group::new(&id, &name, &description, &labels);
    let v = g.value.clone();
    groups.insert(id, g);
    value(&v)
}

pub(super) async fn get_group(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().get(&id) {
        Some(g) => value(&g.value),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}

pub(super) async fn update_group(
    State(cp): State<Api7Cp>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let (name, description, labels) = match group_fields(&body) {
        Ok(f) => f,
        Err(f) => return f.into_response(),
    };
    let mut groups = cp.groups();
    if groups
        .iter()
        .any(|(gid, g)| *gid != id && g.value["name"] == name.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("gateway group name [{name}] already exists"),
        );
    }
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    if let Some(m) = g.value.as_object_mut() {
        m.insert("name".into(), json!(name));
        m.insert("description".into(), json!(description));
        m.insert("labels".into(), labels);
        m.insert("updated_at".into(), json!(unix_now()));
    }
    value(&g.value)
}

pub(super) async fn delete_group(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().remove(&id) {
        Some(_) => json_response(StatusCode::OK, &json!({})),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}

pub(super) async fn instance_token(
    State(cp): State<Api7Cp>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut groups = cp.groups();
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    let token = ids::token("a7ee-");
    g.instance_tokens.push(token.clone());
    if q.get("only_token").map(String::as_str) == Some("true") {
        return (StatusCode::OK, token).into_response();
    }
    value(&json!({"token_plain_text": token}))
}

pub(super) async fn admin_key(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    let mut groups = cp.groups();
    let Some(g) = groups.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "gateway group not found");
    };
    let key = ids::token("a7adm-");
    g.admin_key = Some(key.clone());
    value(&json!({"key": key}))
}

pub(super) async fn instances(State(cp): State<Api7Cp>, Path(id): Path<String>) -> Response {
    match cp.groups().get(&id) {
        Some(g) => list(&g.instances),
        None => error(StatusCode::NOT_FOUND, "gateway group not found"),
    }
}
