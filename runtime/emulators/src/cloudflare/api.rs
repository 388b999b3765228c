//! The HTTP layer: authentication, account and zone checks, and the create/read/update/delete
//! handlers shared by the three collections.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::envelope::{
    CfError, CfResult, bad_identifier, finish, method_not_allowed, parse_body, success,
    success_list,
};
use super::load_balancers::{lb_pool_ids, normalize_lb};
use super::monitors::normalize_monitor;
use super::pools::normalize_pool;
use super::{CfState, Cloudflare, CloudflareZone, Coll, lock, str_of};
use crate::clock::rfc3339_now;
use crate::ids;

pub(super) async fn auth(State(cf): State<Cloudflare>, req: Request, next: Next) -> Response {
    if matches!(
        *req.method(),
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        lock(&cf.inner.log).push((req.method().to_string(), req.uri().path().to_owned()));
    }
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let legacy = match (h.get("x-auth-email"), h.get("x-auth-key")) {
        (Some(_), Some(k)) => k.to_str().ok(),
        _ => None,
    };
    match bearer.or(legacy) {
        None => CfError::new(
            StatusCode::UNAUTHORIZED,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        )
        .into_response(),
        Some(t) if t == cf.inner.cfg.token => next.run(req).await,
        Some(_) => {
            CfError::new(StatusCode::FORBIDDEN, 10000, "Authentication error").into_response()
        }
    }
}

pub(super) fn check_account(cf: &Cloudflare, account: &str, path: &str) -> Result<(), CfError> {
    if !ids::is_hex32(account) {
        return Err(bad_identifier(path));
    }
    if account != cf.inner.cfg.account_id {
        return Err(CfError::new(
            StatusCode::FORBIDDEN,
            9109,
            "Unauthorized to access requested resource",
        ));
    }
    Ok(())
}

fn check_zone<'a>(
    cf: &'a Cloudflare,
    zone: &str,
    path: &str,
) -> Result<&'a CloudflareZone, CfError> {
    if !ids::is_hex32(zone) {
        return Err(bad_identifier(path));
    }
    cf.inner
        .cfg
        .zones
        .iter()
        .find(|z| z.id == zone)
        .ok_or_else(|| {
            CfError::new(
                StatusCode::FORBIDDEN,
                9109,
                "Unauthorized to access requested resource",
            )
        })
}

pub(super) async fn monitors(
    State(cf): State<Cloudflare>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.collection(Coll::Monitors, None, &method, &path, &body)),
    )
}

pub(super) async fn monitor(
    State(cf): State<Cloudflare>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.item(Coll::Monitors, None, &id, &method, &path, &body)),
    )
}

pub(super) async fn pools(
    State(cf): State<Cloudflare>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.collection(Coll::Pools, None, &method, &path, &body)),
    )
}

pub(super) async fn pool(
    State(cf): State<Cloudflare>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_account(&cf, &account, &path)
            .and_then(|()| cf.item(Coll::Pools, None, &id, &method, &path, &body)),
    )
}

pub(super) async fn lbs(
    State(cf): State<Cloudflare>,
    Path(zone): Path<String>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_zone(&cf, &zone, &path)
            .cloned()
            .and_then(|z| cf.collection(Coll::Lbs, Some(&z), &method, &path, &body)),
    )
}

pub(super) async fn lb_one(
    State(cf): State<Cloudflare>,
    Path((zone, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (method, path, body) = split(req).await;
    finish(
        check_zone(&cf, &zone, &path)
            .cloned()
            .and_then(|z| cf.item(Coll::Lbs, Some(&z), &id, &method, &path, &body)),
    )
}

/// Method, path (with the query string: only list filters read it) and body of a request.
async fn split(req: Request) -> (Method, String, Bytes) {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let body = axum::body::to_bytes(req.into_body(), 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    (method, path, body)
}

impl Cloudflare {
    fn collection(
        &self,
        coll: Coll,
        zone: Option<&CloudflareZone>,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> CfResult {
        match *method {
            Method::GET => {
                let st = self.state();
                // `GET .../pools?monitor=<id>` lists the pools using that monitor.
                let monitor = path
                    .split_once('?')
                    .into_iter()
                    .flat_map(|(_, q)| q.split('&'))
                    .find_map(|kv| kv.strip_prefix("monitor="));
                let items = match coll {
                    Coll::Monitors => st.monitors.clone(),
                    Coll::Pools => st
                        .pools
                        .iter()
                        .filter(|p| monitor.is_none_or(|m| p["monitor"] == m))
                        .cloned()
                        .collect(),
                    Coll::Lbs => st
                        .lbs
                        .iter()
                        .filter(|(z, _)| zone.is_some_and(|zone| *z == zone.id))
                        .map(|(_, v)| v.clone())
                        .collect(),
                };
                Ok(success_list(&items))
            }
            Method::POST => {
                let input = parse_body(body)?;
                let mut st = self.state();
                let id = ids::hex32();
                let now = rfc3339_now();
                let v = normalize(&st, coll, zone, &id, input, &now, &now)?;
                match coll {
                    Coll::Monitors => st.monitors.push(v.clone()),
                    Coll::Pools => st.pools.push(v.clone()),
                    Coll::Lbs => st
                        .lbs
                        .push((zone.map(|z| z.id.clone()).unwrap_or_default(), v.clone())),
                }
                Ok(success(&v))
            }
            _ => Err(method_not_allowed()),
        }
    }

    fn item(
        &self,
        coll: Coll,
        zone: Option<&CloudflareZone>,
        id: &str,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> CfResult {
        if !ids::is_hex32(id) {
            return Err(bad_identifier(path));
        }
        let mut st = self.state();
        let current = find(&st, coll, zone, id).ok_or_else(|| CfError::not_found(coll.what()))?;
        match *method {
            Method::GET => Ok(success(&current)),
            Method::PUT | Method::PATCH => {
                let mut input = parse_body(body)?;
                if *method == Method::PATCH
                    && let Value::Object(old) = &current
                {
                    let mut merged = old.clone();
                    merged.extend(input);
                    input = merged;
                }
                let created = str_of(&current["created_on"]);
                let v = normalize(&st, coll, zone, id, input, &created, &rfc3339_now())?;
                replace(&mut st, coll, id, v.clone());
                Ok(success(&v))
            }
            Method::DELETE => {
                if let Some(users) = referenced_by(&st, coll, id) {
                    return Err(CfError::invalid(users));
                }
                match coll {
                    Coll::Monitors => st.monitors.retain(|m| m["id"] != id),
                    Coll::Pools => {
                        st.pools.retain(|p| p["id"] != id);
                        st.probes.retain(|(p, _), _| p != id);
                    }
                    Coll::Lbs => st.lbs.retain(|(_, l)| l["id"] != id),
                }
                Ok(success(&json!({"id": id})))
            }
            _ => Err(method_not_allowed()),
        }
    }
}

fn find(st: &CfState, coll: Coll, zone: Option<&CloudflareZone>, id: &str) -> Option<Value> {
    match coll {
        Coll::Monitors => st.monitors.iter().find(|m| m["id"] == id).cloned(),
        Coll::Pools => st.pools.iter().find(|p| p["id"] == id).cloned(),
        Coll::Lbs => st
            .lbs
            .iter()
            .find(|(z, l)| zone.is_some_and(|zone| *z == zone.id) && l["id"] == id)
            .map(|(_, l)| l.clone()),
    }
}

fn replace(st: &mut CfState, coll: Coll, id: &str, v: Value) {
    let slot = match coll {
        Coll::Monitors => st.monitors.iter_mut().find(|m| m["id"] == id),
        Coll::Pools => st.pools.iter_mut().find(|p| p["id"] == id),
        Coll::Lbs => st.lbs.iter_mut().map(|(_, l)| l).find(|l| l["id"] == id),
    };
    if let Some(slot) = slot {
        *slot = v;
    }
}

/// Why `id` cannot be deleted (a pool uses the monitor, a load balancer uses the pool).
fn referenced_by(st: &CfState, coll: Coll, id: &str) -> Option<String> {
    match coll {
        Coll::Monitors => {
            let users: Vec<String> = st
                .pools
                .iter()
                .filter(|p| p["monitor"] == id)
                .map(|p| str_of(&p["id"]))
                .collect();
            (!users.is_empty()).then(|| format!("monitor is referenced by pools {users:?}"))
        }
        Coll::Pools => {
            let users: Vec<String> = st
                .lbs
                .iter()
                .filter(|(_, l)| lb_pool_ids(l).contains(id))
                .map(|(_, l)| str_of(&l["id"]))
                .collect();
            (!users.is_empty()).then(|| format!("pool is referenced by load balancers {users:?}"))
        }
        Coll::Lbs => None,
    }
}

fn normalize(
    st: &CfState,
    coll: Coll,
    zone: Option<&CloudflareZone>,
    id: &str,
    input: Map<String, Value>,
    created_on: &str,
    modified_on: &str,
) -> Result<Value, CfError> {
    let mut v = match coll {
        Coll::Monitors => normalize_monitor(input)?,
        Coll::Pools => normalize_pool(st, input)?,
        Coll::Lbs => normalize_lb(st, zone, id, input)?,
    };
    v.insert("id".into(), json!(id));
    v.insert("created_on".into(), json!(created_on));
    v.insert("modified_on".into(), json!(modified_on));
    Ok(Value::Object(v))
}
