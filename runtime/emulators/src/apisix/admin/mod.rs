//! The traditional Admin API: one dispatcher over `/apisix/admin/...`, mirroring `admin/init.lua`
//! and `admin/resource.lua` (token check, resource lookup, method check, body decode, handler).
//!
//! This file is the `init.lua` half: routing, the token check, body limits and the endpoints that
//! are not stored resources (`plugins`, `schema/validate`); [`resource`] runs the operations on
//! the stored resources.

mod resource;

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use super::schema::{self, Ctx};
use super::store::Kind;
use super::{Apisix, ApisixFlavor, standalone};
use crate::json::json_response;
use resource::{Reply, delete, get, patch, post, put};

/// APISIX refuses Admin API bodies over 1.5 MiB.
const MAX_BODY: usize = 1024 * 1024 * 3 / 2;

pub(super) fn router(app: Apisix) -> Router {
    let server = app.inner.server.clone();
    Router::new()
        .route("/apisix/admin", any(handle))
        .route("/apisix/admin/", any(handle))
        .route("/apisix/admin/{*rest}", any(handle))
        .fallback(|| async {
            json_response(
                StatusCode::NOT_FOUND,
                &json!({"error_msg": "404 Route Not Found"}),
            )
        })
        .layer(axum::middleware::map_response(move |resp: Response| {
            let server = server.clone();
            async move { crate::http::with_server_header(resp, &server) }
        }))
        .with_state(app)
}

type Args = HashMap<String, String>;

/// A parsed Admin API call, after authentication and body decoding.
struct Call<'a> {
    method: Method,
    kind: Kind,
    /// The consumer a credential belongs to (credentials only).
    consumer: Option<&'a str>,
    id: Option<&'a str>,
    sub_path: String,
    body: Option<Value>,
    args: Args,
}

async fn handle(State(app): State<Apisix>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    if matches!(
        method,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        app.record(method.as_str(), &path);
    }
    let segs: Vec<&str> = path
        .strip_prefix("/apisix/admin")
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();

    // `HEAD /apisix/admin` is ADC's ping for the standalone backend; APISIX answers it unchecked.
    if segs.is_empty() && method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let args = query_args(&parts.uri);
    if let Err(description) = check_token(&app, &parts.headers, &args) {
        return reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error_msg": "failed to check token", "description": description}),
        );
    }
    let Some(&resource) = segs.first() else {
        return reply(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"}));
    };
    let body = match read_body(body, &parts.headers).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };

    if app.inner.cfg.backend == ApisixFlavor::Standalone {
        return if resource == "configs" && segs.len() == 1 {
            standalone::handle(&app, &method, &parts.headers, &body)
        } else {
            unsupported_resource(resource)
        };
    }

    match resource {
        "plugins" => return plugins(&method, &segs),
        "schema" if segs.get(1) == Some(&"validate") && method == Method::POST => {
            return validate(segs.get(2).copied(), &body);
        }
        "stream_routes" if !app.inner.cfg.stream_mode => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"error_msg": "stream mode is disabled, can not add stream routes"}),
            );
        }
        _ => {}
    }

    let (kind, consumer, id, sub) =
        if resource == "consumers" && segs.get(2) == Some(&"credentials") {
            (
                Kind::Credentials,
                segs.get(1).copied(),
                segs.get(3).copied(),
                segs.get(4..).unwrap_or_default(),
            )
        } else {
            match Kind::from_segment(resource) {
                Some(k) => (
                    k,
                    None,
                    segs.get(1).copied(),
                    segs.get(2..).unwrap_or_default(),
                ),
                None => return unsupported_resource(resource),
            }
        };
    if !matches!(
        method,
        Method::GET | Method::PUT | Method::POST | Method::DELETE | Method::PATCH
    ) {
        return reply(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"}));
    }
    if !kind.allows(&method) {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error_msg": format!("not supported `{}` method for {}", method, kind.label())}),
        );
    }
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    &json!({
                        "error_msg": format!("invalid request body: {e}"),
                        "req_body": String::from_utf8_lossy(&body),
                    }),
                );
            }
        }
    };
    if let Some(ttl) = args.get("ttl")
        && ttl.parse::<f64>().is_err()
    {
        return reply(
            StatusCode::BAD_REQUEST,
            &json!({"error_msg": "invalid argument ttl: should be a number"}),
        );
    }
    let call = Call {
        method,
        kind,
        consumer,
        id,
        sub_path: sub.join("/"),
        body,
        args,
    };
    let mut state = app.state();
    let (status, body) = match call.method {
        Method::GET => get(&state, &call),
        Method::PUT => put(&mut state, &call),
        Method::POST => post(&mut state, &call),
        Method::DELETE => delete(&mut state, &call),
        _ => patch(&mut state, &call),
    };
    drop(state);
    match body {
        Reply::Json(v) => reply(status, &v),
        Reply::Text(t) => {
            let mut r = (status, t).into_response();
            r.headers_mut()
                .insert("X-API-VERSION", HeaderValue::from_static("v3"));
            r
        }
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let mut r = json_response(status, body);
    r.headers_mut()
        .insert("X-API-VERSION", HeaderValue::from_static("v3"));
    r
}

fn unsupported_resource(resource: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"error_msg": format!("Unsupported resource type: {resource}")}),
    )
}

fn query_args(uri: &Uri) -> Args {
    Query::<Args>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// `check_token` from `admin/init.lua`: the `api_key` argument, then the `X-API-KEY` header,
/// then the `X-API-KEY` cookie.
fn check_token(app: &Apisix, headers: &HeaderMap, args: &Args) -> Result<(), &'static str> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("x_api_key"))
        .map(|(_, v)| v.to_owned());
    let token = args
        .get("api_key")
        .cloned()
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or(cookie);
    match token {
        None => Err("missing apikey"),
        Some(t) if t == app.inner.cfg.api_key => Ok(()),
        Some(_) => Err("wrong apikey"),
    }
}

async fn read_body(body: Body, headers: &HeaderMap) -> Result<Bytes, Response> {
    let too_big = |size: String| {
        reply(
            StatusCode::BAD_REQUEST,
            &json!({"error_msg": format!(
                "invalid request body: request size {size} is greater than the maximum size {MAX_BODY} allowed"
            )}),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY
    {
        return Err(too_big(len.to_string()));
    }
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_big("(chunked)".to_owned()))
}

/// `/apisix/admin/plugins/list` (and `PUT /apisix/admin/plugins/reload`).
fn plugins(method: &Method, segs: &[&str]) -> Response {
    match (method, segs.get(1)) {
        (&Method::GET, Some(&"list")) => reply(StatusCode::OK, &json!(schema::plugin_names())),
        (&Method::PUT, Some(&"reload")) => (StatusCode::OK, "done").into_response(),
        _ => reply(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"})),
    }
}

/// `POST /apisix/admin/schema/validate/{resource}`: 200 with no body, or 400 `{error_msg}`.
fn validate(resource: Option<&str>, body: &Bytes) -> Response {
    let Some(kind) = resource.and_then(Kind::from_segment) else {
        return unsupported_resource(resource.unwrap_or_default());
    };
    let mut conf = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"error_msg": format!("invalid request body: {e}")}),
            );
        }
    };
    match schema::check(kind, &mut conf, &Ctx { store: None }) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => reply(StatusCode::BAD_REQUEST, &json!({"error_msg": e.raw()})),
    }
}
