//! The data plane: the status API and a minimal proxy over the stored routes.
//!
//! Matching follows APISIX's radixtree router for the common cases: a route matches on its
//! `uri`/`uris` (exact, or prefix when the pattern ends in `*`), `methods`, and `host`/`hosts`
//! (exact or `*.suffix`, falling back to the service's `hosts`); disabled routes (`status: 0`)
//! never match. Among matches the exact path wins, then the longest prefix, then the higher
//! `priority`. The upstream is the route's inline `upstream`, its `upstream_id`, or its
//! service's. Nodes (array or `{"host:port": weight}` form, weight 0 skipped) are tried by
//! priority group with smooth weighted round-robin inside a group; a connection failure or
//! timeout moves on to the next node, up to `retries` (default: node count − 1) times.
//!
//! Not emulated: `vars`, `remote_addrs`, `filter_func`, chash/least_conn/ewma balancing (all
//! treated as round-robin), TLS upstreams, WebSocket upgrades, and every plugin except
//! `proxy-rewrite` (`uri`, `host`, `method`, `headers`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::Apisix;
use super::schema::id_string;
use super::store::{Kind, Store};
use crate::json::json_response;

/// Proxied request bodies are buffered (so a retry can resend them) up to this size.
const MAX_PROXY_BODY: usize = 64 * 1024 * 1024;
/// nginx's default `proxy_connect_timeout` / `proxy_read_timeout`, in seconds.
const DEFAULT_TIMEOUT_SECS: f64 = 60.0;

pub(super) fn router(app: Apisix) -> Router {
    let server = app.inner.server.clone();
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        .fallback(proxy)
        .layer(axum::middleware::map_response(move |resp: Response| {
            let server = server.clone();
            async move { crate::http::with_server_header(resp, &server) }
        }))
        .with_state(app)
}

async fn status() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn ready(State(app): State<Apisix>) -> Response {
    if app.is_ready() {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": "worker id: 0 has not received configuration"}),
        )
    }
}

/// The nginx/APISIX error page for proxy failures.
fn error_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let body = format!(
        "<html>\n<head><title>{title}</title></head>\n<body>\n<center><h1>{title}</h1></center>\n\
         <hr><center>openresty</center>\n\
         <p><em>Powered by <a href=\"https://apisix.apache.org/\">APISIX</a>.</em></p></body>\n</html>\n"
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// One upstream node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    host: String,
    port: u16,
    weight: u32,
    priority: i64,
}

impl Node {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What a matched route resolves to, copied out of the store so the lock is released before
/// any network I/O.
struct Plan {
    balancer_key: String,
    scheme: String,
    pass_host: String,
    upstream_host: Option<String>,
    nodes: Vec<Node>,
    retries: Option<usize>,
    timeout: Duration,
    plugins: Map<String, Value>,
}

enum Resolve {
    NoRoute,
    NoUpstream,
    Plan(Box<Plan>),
}

/// How good a route match is: exact path, matched length, priority, then age (older wins).
type Rank = (bool, usize, i64, std::cmp::Reverse<u64>);

/// Smooth weighted round-robin state (nginx's algorithm) for one upstream's top-priority group.
#[derive(Debug, Default)]
pub(super) struct Balancer {
    signature: Vec<(String, u16, u32)>,
    current: Vec<i64>,
}

impl Balancer {
    /// Picks the next index among `nodes` (all of one priority), weighted by `weight`.
    fn pick(&mut self, nodes: &[&Node]) -> usize {
        let sig: Vec<(String, u16, u32)> = nodes
            .iter()
            .map(|n| (n.host.clone(), n.port, n.weight))
            .collect();
        if sig != self.signature {
            self.signature = sig;
            self.current = vec![0; nodes.len()];
        }
        let total: i64 = nodes.iter().map(|n| i64::from(n.weight)).sum();
        let mut best = 0;
        for (i, n) in nodes.iter().enumerate() {
            self.current[i] += i64::from(n.weight);
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        best
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(&suffix.to_ascii_lowercase()),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn str_list(v: &Value, many: &str, one: &str) -> Option<Vec<String>> {
    if let Some(Value::Array(a)) = v.get(many) {
        return Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        );
    }
    v.get(one)
        .and_then(Value::as_str)
        .map(|s| vec![s.to_owned()])
}

/// How well a route's uris match `path`: `(exact, matched length)`, or `None`.
fn uri_match(uris: &[String], path: &str) -> Option<(bool, usize)> {
    uris.iter()
        .filter_map(|u| match u.strip_suffix('*') {
            Some(prefix) if path.starts_with(prefix) => Some((false, prefix.len())),
            None if u == path => Some((true, u.len())),
            _ => None,
        })
        .max()
}

fn parse_nodes(up: &Value, scheme: &str) -> Vec<Node> {
    let default_port = if matches!(scheme, "https" | "grpcs") {
        443
    } else {
        80
    };
    let mut nodes = Vec::new();
    match up.get("nodes") {
        Some(Value::Array(items)) => {
            for n in items {
                let Some(host) = n.get("host").and_then(Value::as_str) else {
                    continue;
                };
                let port = n
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(default_port);
                nodes.push(Node {
                    host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                    port,
                    weight: n
                        .get("weight")
                        .and_then(Value::as_u64)
                        .and_then(|w| u32::try_from(w).ok())
                        .unwrap_or(0),
                    priority: n.get("priority").and_then(Value::as_i64).unwrap_or(0),
                });
            }
        }
        Some(Value::Object(map)) => {
            for (addr, w) in map {
                let (host, port) = match addr.rsplit_once(':') {
                    Some((h, p)) if !addr.ends_with(']') => {
                        (h, p.parse::<u16>().unwrap_or(default_port))
                    }
                    _ => (addr.as_str(), default_port),
                };
                nodes.push(Node {
                    host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                    port,
                    weight: w.as_u64().and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                    priority: 0,
                });
            }
        }
        _ => {}
    }
    nodes.retain(|n| n.weight > 0);
    nodes
}

fn timeout_of(v: Option<&Value>) -> Option<Duration> {
    let t = v?;
    let secs = |k: &str| {
        t.get(k)
            .and_then(Value::as_f64)
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
    };
    Duration::try_from_secs_f64(secs("connect") + secs("read")).ok()
}

fn resolve(store: &Store, method: &Method, host: &str, path: &str) -> Resolve {
    let mut best: Option<(Rank, &str, &Value)> = None;
    for (id, entry) in store.table(Kind::Routes) {
        let r = &entry.value;
        if r.get("status").and_then(Value::as_i64) == Some(0) {
            continue;
        }
        if let Some(Value::Array(methods)) = r.get("methods")
            && !methods.is_empty()
            && !methods.iter().any(|m| m.as_str() == Some(method.as_str()))
        {
            continue;
        }
        let service = r
            .get("service_id")
            .and_then(|s| store.get(Kind::Services, &id_string(s)))
            .map(|e| &e.value);
        let hosts = str_list(r, "hosts", "host")
            .or_else(|| service.and_then(|s| str_list(s, "hosts", "host")));
        if let Some(hosts) = hosts
            && !hosts.iter().any(|p| host_matches(p, host))
        {
            continue;
        }
        let Some(uris) = str_list(r, "uris", "uri") else {
            continue;
        };
        let Some((exact, len)) = uri_match(&uris, path) else {
            continue;
        };
        let priority = r.get("priority").and_then(Value::as_i64).unwrap_or(0);
        let rank = (exact, len, priority, std::cmp::Reverse(entry.created_index));
        if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
            best = Some((rank, id.as_str(), r));
        }
    }
    let Some((_, route_id, route)) = best else {
        return Resolve::NoRoute;
    };

    let service = route
        .get("service_id")
        .and_then(|s| store.get(Kind::Services, &id_string(s)))
        .map(|e| &e.value);
    let mut plugins = Map::new();
    let mut layers: Vec<&Value> = Vec::new();
    if let Some(s) = service {
        layers.push(s);
    }
    if let Some(pc) = route
        .get("plugin_config_id")
        .and_then(|p| store.get(Kind::PluginConfigs, &id_string(p)))
    {
        layers.push(&pc.value);
    }
    layers.push(route);
    for layer in layers {
        if let Some(Value::Object(p)) = layer.get("plugins") {
            plugins.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    let upstream_by_id = |v: &Value| {
        v.get("upstream_id").and_then(|u| {
            let uid = id_string(u);
            store
                .get(Kind::Upstreams, &uid)
                .map(|e| (format!("upstream/{uid}"), &e.value))
        })
    };
    let found = route
        .get("upstream")
        .map(|u| (format!("route/{route_id}"), u))
        .or_else(|| upstream_by_id(route))
        .or_else(|| {
            service.and_then(|s| {
                s.get("upstream")
                    .map(|u| (format!("service/{}", id_string(&s["id"])), u))
                    .or_else(|| upstream_by_id(s))
            })
        });
    let Some((balancer_key, up)) = found else {
        return Resolve::NoUpstream;
    };
    let scheme = up
        .get("scheme")
        .and_then(Value::as_str)
        .unwrap_or("http")
        .to_owned();
    let timeout = timeout_of(route.get("timeout"))
        .or_else(|| timeout_of(up.get("timeout")))
        .unwrap_or(Duration::from_secs_f64(2.0 * DEFAULT_TIMEOUT_SECS));
    Resolve::Plan(Box::new(Plan {
        balancer_key,
        nodes: parse_nodes(up, &scheme),
        scheme,
        pass_host: up
            .get("pass_host")
            .and_then(Value::as_str)
            .unwrap_or("pass")
            .to_owned(),
        upstream_host: up
            .get("upstream_host")
            .and_then(Value::as_str)
            .map(str::to_owned),
        retries: up
            .get("retries")
            .and_then(Value::as_u64)
            .and_then(|r| usize::try_from(r).ok()),
        timeout,
        plugins,
    }))
}

impl Apisix {
    /// The order in which to try `nodes`: the highest priority group first, starting with its
    /// weighted round-robin pick, then lower groups.
    fn attempt_order(&self, key: &str, nodes: &[Node]) -> Vec<Node> {
        let mut priorities: Vec<i64> = nodes.iter().map(|n| n.priority).collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();
        let mut order = Vec::with_capacity(nodes.len());
        for (gi, prio) in priorities.into_iter().enumerate() {
            let group: Vec<&Node> = nodes.iter().filter(|n| n.priority == prio).collect();
            let start = if gi == 0 {
                let mut balancers = super::lock(&self.inner.balancers);
                balancers.entry(key.to_owned()).or_default().pick(&group)
            } else {
                0
            };
            order.extend((0..group.len()).map(|i| group[(start + i) % group.len()].clone()));
        }
        order
    }
}

/// Request edits made by the `proxy-rewrite` plugin.
struct Rewrite {
    path_and_query: String,
    host: Option<String>,
    method: Option<Method>,
}

fn proxy_rewrite(conf: &Value, rw: &mut Rewrite, headers: &mut HeaderMap, query: Option<&str>) {
    if conf
        .get("_meta")
        .and_then(|m| m.get("disable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    if let Some(uri) = conf.get("uri").and_then(Value::as_str) {
        rw.path_and_query = match query {
            Some(q) => format!("{uri}?{q}"),
            None => uri.to_owned(),
        };
    }
    if let Some(h) = conf.get("host").and_then(Value::as_str) {
        rw.host = Some(h.to_owned());
    }
    if let Some(m) = conf.get("method").and_then(Value::as_str) {
        rw.method = Method::from_bytes(m.as_bytes()).ok();
    }
    let set = |headers: &mut HeaderMap, k: &str, v: &Value, append: bool| {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(name), Ok(val)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            if v.is_empty() {
                headers.remove(name);
            } else if append {
                headers.append(name, val);
            } else {
                headers.insert(name, val);
            }
        }
    };
    if let Some(Value::Object(h)) = conf.get("headers") {
        let structured = h.contains_key("set") || h.contains_key("add") || h.contains_key("remove");
        if structured {
            if let Some(Value::Object(add)) = h.get("add") {
                add.iter().for_each(|(k, v)| set(headers, k, v, true));
            }
            if let Some(Value::Object(s)) = h.get("set") {
                s.iter().for_each(|(k, v)| set(headers, k, v, false));
            }
            if let Some(Value::Array(rm)) = h.get("remove") {
                for name in rm.iter().filter_map(Value::as_str) {
                    headers.remove(name);
                }
            }
        } else {
            h.iter().for_each(|(k, v)| set(headers, k, v, false));
        }
    }
}

async fn proxy(State(app): State<Apisix>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let orig_host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let bare_host = match orig_host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
        _ => orig_host.as_str(),
    }
    .to_ascii_lowercase();
    let path = parts.uri.path().to_owned();

    let resolved = {
        let state = app.state();
        resolve(&state.store, &parts.method, &bare_host, &path)
    };
    let plan = match resolved {
        Resolve::NoRoute => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"error_msg": "404 Route Not Found"}),
            );
        }
        Resolve::NoUpstream => {
            tracing::warn!(%path, "matched route has no upstream");
            return error_page(StatusCode::BAD_GATEWAY);
        }
        Resolve::Plan(p) => p,
    };
    if plan.scheme != "http" {
        tracing::warn!(scheme = %plan.scheme, "the emulator proxies plain HTTP upstreams only");
        return error_page(StatusCode::BAD_GATEWAY);
    }
    if plan.nodes.is_empty() {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    }

    let mut headers = parts.headers.clone();
    crate::http::strip_hop_by_hop(&mut headers);
    let mut rw = Rewrite {
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
        host: None,
        method: None,
    };
    if let Some(conf) = plan.plugins.get("proxy-rewrite") {
        proxy_rewrite(conf, &mut rw, &mut headers, parts.uri.query());
    }
    if let Some(ip) = &client_ip {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.clone(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
        if let Ok(v) = HeaderValue::from_str(ip) {
            headers.insert("x-real-ip", v);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(&orig_host) {
        headers.insert("x-forwarded-host", v);
    }

    let body: Bytes = match axum::body::to_bytes(body, MAX_PROXY_BODY).await {
        Ok(b) => b,
        Err(_) => return error_page(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let method = rw.method.clone().unwrap_or(parts.method.clone());
    let order = app.attempt_order(&plan.balancer_key, &plan.nodes);
    let attempts = plan.retries.unwrap_or(order.len() - 1) + 1;
    let mut last_status = StatusCode::BAD_GATEWAY;
    for node in order.iter().cycle().take(attempts) {
        let mut h = headers.clone();
        let host_header = rw.host.clone().or_else(|| match plan.pass_host.as_str() {
            "node" => Some(if node.port == 80 {
                node.host.clone()
            } else {
                node.authority()
            }),
            "rewrite" => plan.upstream_host.clone(),
            _ => Some(orig_host.clone()),
        });
        if let Some(hh) = host_header
            && let Ok(v) = HeaderValue::from_str(&hh)
        {
            h.insert(header::HOST, v);
        }
        let uri = format!("http://{}{}", node.authority(), rw.path_and_query);
        let mut builder = axum::http::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .version(Version::HTTP_11);
        if let Some(hm) = builder.headers_mut() {
            *hm = h;
        }
        let Ok(upstream_req) = builder.body(Body::from(body.clone())) else {
            return error_page(StatusCode::BAD_GATEWAY);
        };
        match tokio::time::timeout(plan.timeout, app.inner.client.request(upstream_req)).await {
            Ok(Ok(resp)) => {
                let (mut rparts, incoming) = resp.into_parts();
                crate::http::strip_hop_by_hop(&mut rparts.headers);
                return Response::from_parts(rparts, Body::new(incoming));
            }
            Ok(Err(e)) => {
                tracing::debug!(node = %node.authority(), error = %e, "upstream attempt failed");
                last_status = StatusCode::BAD_GATEWAY;
            }
            Err(_) => {
                tracing::debug!(node = %node.authority(), "upstream attempt timed out");
                last_status = StatusCode::GATEWAY_TIMEOUT;
            }
        }
    }
    error_page(last_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, weight: u32, priority: i64) -> Node {
        Node {
            host: host.into(),
            port: 80,
            weight,
            priority,
        }
    }

    #[test]
    fn smooth_wrr_interleaves_by_weight() {
        let a = node("a", 5, 0);
        let b = node("b", 1, 0);
        let c = node("c", 1, 0);
        let group = [&a, &b, &c];
        let mut bal = Balancer::default();
        let picks: String = (0..7)
            .map(|_| group[bal.pick(&group)].host.clone())
            .collect();
        // nginx's documented sequence for weights 5/1/1.
        assert_eq!(picks, "aabacaa");
    }

    #[test]
    fn parses_both_node_forms_and_drops_zero_weight() {
        let arr = json!({"nodes": [{"host": "127.0.0.1", "port": 8080, "weight": 1}, {"host": "x", "weight": 0}]});
        assert_eq!(
            parse_nodes(&arr, "http"),
            vec![Node {
                host: "127.0.0.1".into(),
                port: 8080,
                weight: 1,
                priority: 0
            }]
        );
        let map = json!({"nodes": {"127.0.0.1:9000": 2, "example.com": 1, "[::1]:81": 1}});
        let mut got = parse_nodes(&map, "http");
        got.sort_by(|a, b| a.host.cmp(&b.host));
        assert_eq!(
            got[0],
            Node {
                host: "127.0.0.1".into(),
                port: 9000,
                weight: 2,
                priority: 0
            }
        );
        assert_eq!(
            got[1],
            Node {
                host: "::1".into(),
                port: 81,
                weight: 1,
                priority: 0
            }
        );
        assert_eq!(got[1].authority(), "[::1]:81");
        assert_eq!(got[2].port, 80);
    }

    #[test]
    fn uri_and_host_matching() {
        let uris = vec!["/anything/*".to_owned(), "/ip".to_owned()];
        assert_eq!(uri_match(&uris, "/ip"), Some((true, 3)));
        assert_eq!(uri_match(&uris, "/anything/x/y"), Some((false, 10)));
        assert_eq!(uri_match(&uris, "/ipx"), None);
        assert_eq!(uri_match(&["/*".to_owned()], "/"), Some((false, 1)));
        assert!(host_matches("*.foo.com", "a.foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(host_matches("API.example.com", "api.example.com"));
    }

    #[test]
    fn proxy_rewrite_edits_uri_host_and_headers() {
        let mut rw = Rewrite {
            path_and_query: "/anything/x?a=1".into(),
            host: None,
            method: None,
        };
        let mut h = HeaderMap::new();
        h.insert("x-drop", HeaderValue::from_static("1"));
        proxy_rewrite(
            &json!({"uri": "/get", "host": "up.example", "headers": {"set": {"x-new": "v"}, "remove": ["x-drop"]}}),
            &mut rw,
            &mut h,
            Some("a=1"),
        );
        assert_eq!(rw.path_and_query, "/get?a=1");
        assert_eq!(rw.host.as_deref(), Some("up.example"));
        assert_eq!(h.get("x-new").unwrap(), "v");
        assert!(h.get("x-drop").is_none());
    }
}
