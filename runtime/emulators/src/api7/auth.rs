//! Authentication: the access token opens everything, a gateway-group admin key only its
//! group's `/apisix/admin/*` resources. Also records mutating requests in the request log.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::reply::error;
use super::{Api7Cp, lock};

/// Who a request authenticated as.
#[derive(Clone, Debug)]
pub(super) enum Access {
    /// The access token: everything.
    Full,
    /// A gateway-group admin key: that group's runtime resources only.
    Group(String),
}

pub(super) async fn auth(State(cp): State<Api7Cp>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if matches!(
        method,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        lock(&cp.inner.log).push((method.to_string(), req.uri().path().to_owned()));
    }
    let key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let access = if key.is_empty() {
        None
    } else if key == cp.inner.cfg.token {
        Some(Access::Full)
    } else {
        cp.groups()
            .iter()
            .find(|(_, g)| g.admin_key.as_deref() == Some(key.as_str()))
            .map(|(id, _)| Access::Group(id.clone()))
    };
    let Some(access) = access else {
        return error(StatusCode::UNAUTHORIZED, "invalid api key");
    };
    if matches!(access, Access::Group(_)) && !req.uri().path().starts_with("/apisix/admin/") {
        return error(
            StatusCode::FORBIDDEN,
            "a gateway group admin key can only access its gateway group's resources",
        );
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}
