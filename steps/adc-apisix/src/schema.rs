//! The ADC declarative file format (ADC's `libs/sdk` Zod schema, see domain.md §1.1) as strict
//! serde types, and the semantic checks serde cannot express.
//!
//! Every struct denies unknown keys, as ADC's `strictObject` does. Plugin configurations are
//! loose objects (`plugins: {name: {...}}`), passed through unchanged. The checks in
//! [`validate`] report a path such as `services[0].routes[1].remote_addrs[0]`, which the loader
//! turns into `file:line:col` through the positioned YAML tree.

use std::net::IpAddr;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Number, Value as JsonValue};

use crate::yaml::Positioned;

/// `labels: {k: v | [v...]}`.
pub type Labels = IndexMap<String, LabelValue>;

/// A label value: a string, or a list that is sent to APISIX JSON-encoded (APISIX labels are
/// strings).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum LabelValue {
    One(String),
    Many(Vec<String>),
}

impl LabelValue {
    /// The string APISIX stores.
    pub fn to_apisix(&self) -> String {
        match self {
            LabelValue::One(s) => s.clone(),
            LabelValue::Many(v) => serde_json::to_string(v).unwrap_or_default(),
        }
    }
}

/// `plugins: {name: {config}}`; each config must be an object.
pub type Plugins = IndexMap<String, JsonMap<String, JsonValue>>;

/// One ADC file (all keys optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcFile {
    pub services: Option<Vec<Positioned<Service>>>,
    pub ssls: Option<Vec<Positioned<Ssl>>>,
    pub consumers: Option<Vec<Positioned<Consumer>>>,
    pub consumer_groups: Option<Vec<Positioned<ConsumerGroup>>>,
    pub global_rules: Option<IndexMap<String, Positioned<JsonMap<String, JsonValue>>>>,
    pub plugin_metadata: Option<IndexMap<String, Positioned<JsonMap<String, JsonValue>>>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    pub upstream: Option<Upstream>,
    pub upstreams: Option<Vec<Positioned<Upstream>>>,
    pub plugins: Option<Plugins>,
    /// API7 EE only; the APISIX backends ignore it (reported as a warning).
    pub path_prefix: Option<String>,
    /// API7 EE only; the APISIX backends ignore it (reported as a warning).
    pub strip_path_prefix: Option<bool>,
    pub hosts: Option<Vec<String>>,
    pub routes: Option<Vec<Positioned<Route>>>,
    pub stream_routes: Option<Vec<Positioned<StreamRoute>>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    pub hosts: Option<Vec<String>>,
    pub uris: Vec<String>,
    pub priority: Option<i64>,
    pub timeout: Option<Timeout>,
    pub vars: Option<Vec<JsonValue>>,
    pub methods: Option<Vec<Method>>,
    pub enable_websocket: Option<bool>,
    pub remote_addrs: Option<Vec<String>>,
    pub plugins: Option<Plugins>,
    pub filter_func: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
    Connect,
    Trace,
    Purge,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRoute {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    pub plugins: Option<Plugins>,
    pub remote_addr: Option<String>,
    pub server_addr: Option<String>,
    pub server_port: Option<u16>,
    pub sni: Option<String>,
}

/// An upstream: a service's default `upstream` (no `id`, its id is the service's) or one of its
/// named `upstreams` (`name` required, `id` optional).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    #[serde(rename = "type")]
    pub balancer: Option<Balancer>,
    pub hash_on: Option<String>,
    pub key: Option<String>,
    pub checks: Option<Checks>,
    pub nodes: Option<Vec<UpstreamNode>>,
    pub scheme: Option<Scheme>,
    pub retries: Option<u16>,
    pub retry_timeout: Option<Number>,
    pub timeout: Option<Timeout>,
    pub tls: Option<UpstreamTls>,
    pub keepalive_pool: Option<KeepalivePool>,
    pub pass_host: Option<PassHost>,
    pub upstream_host: Option<String>,
    pub service_name: Option<String>,
    pub discovery_type: Option<String>,
    pub discovery_args: Option<JsonMap<String, JsonValue>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balancer {
    Roundrobin,
    Chash,
    LeastConn,
    Ewma,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
    Grpc,
    Grpcs,
    Tcp,
    Tls,
    Udp,
    Kafka,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassHost {
    Pass,
    Node,
    Rewrite,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamNode {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonMap<String, JsonValue>>,
}

/// `{connect, send, read}` in seconds, all > 0.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    pub connect: Number,
    pub send: Number,
    pub read: Number,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeepalivePool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
}

/// Health checks. `passive` is only allowed with `active` (ADC and APISIX agree), so `active`
/// is required here.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    pub active: ActiveCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveCheck>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Http,
    Https,
    Tcp,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveCheck {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CheckType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_verify_certificate: Option<bool>,
    /// ADC's name; APISIX calls the field `req_headers`, which is what is sent.
    #[serde(
        rename(serialize = "req_headers"),
        skip_serializing_if = "Option::is_none"
    )]
    pub http_request_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<ActiveHealthy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<ActiveUnhealthy>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successes: Option<u8>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveUnhealthy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_failures: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_failures: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<u8>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveCheck {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CheckType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<PassiveHealthy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<PassiveUnhealthy>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successes: Option<u8>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveUnhealthy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_failures: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_failures: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<u8>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssl {
    pub id: Option<String>,
    pub labels: Option<Labels>,
    #[serde(rename = "type")]
    pub kind: Option<SslType>,
    pub snis: Vec<String>,
    pub certificates: Vec<Certificate>,
    pub client: Option<SslClient>,
    pub ssl_protocols: Option<Vec<SslProtocol>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SslType {
    Server,
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum SslProtocol {
    #[serde(rename = "TLSv1.1")]
    Tls11,
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub certificate: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SslClient {
    pub ca: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_mtls_uri_regex: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub username: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    pub plugins: Option<Plugins>,
    pub credentials: Option<Vec<Positioned<Credential>>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    #[serde(rename = "type")]
    pub kind: CredentialType,
    pub config: JsonMap<String, JsonValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialType {
    KeyAuth,
    BasicAuth,
    JwtAuth,
    HmacAuth,
}

impl CredentialType {
    /// The plugin name the credential configures.
    pub fn plugin(self) -> &'static str {
        match self {
            CredentialType::KeyAuth => "key-auth",
            CredentialType::BasicAuth => "basic-auth",
            CredentialType::JwtAuth => "jwt-auth",
            CredentialType::HmacAuth => "hmac-auth",
        }
    }
}

/// API7 EE only; the APISIX backends skip consumer groups (reported as a warning).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroup {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub labels: Option<Labels>,
    pub plugins: Plugins,
    pub consumers: Option<Vec<Positioned<Consumer>>>,
}

// ---------------------------------------------------------------------------------------------
// semantic checks

/// One step of a path into the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document, e.g. `services[0].routes[1].uris`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn idx(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A semantic problem at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub path: Path,
    pub message: String,
}

struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn err(&mut self, path: Path, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            message: message.into(),
        });
    }

    fn id(&mut self, path: &Path, id: Option<&String>) {
        if let Some(id) = id
            && !is_valid_id(id)
        {
            self.err(
                path.key("id"),
                format!("id `{id}` must be 1-256 characters of [a-zA-Z0-9-_.]"),
            );
        }
    }

    fn name(&mut self, path: &Path, key: &str, name: &str) {
        if name.is_empty() || name.len() > 64 * 1024 {
            self.err(
                path.key(key),
                format!("`{key}` must be 1 to 65536 characters long"),
            );
        }
    }

    fn description(&mut self, path: &Path, d: Option<&String>) {
        if d.is_some_and(|d| d.len() > 64 * 1024) {
            self.err(
                path.key("description"),
                "description must be at most 64 KiB",
            );
        }
    }

    fn non_empty_strings(
        &mut self,
        path: &Path,
        key: &str,
        list: Option<&Vec<String>>,
        min_items: usize,
    ) {
        let Some(list) = list else { return };
        if list.len() < min_items {
            self.err(
                path.key(key),
                format!("`{key}` needs at least {min_items} item(s)"),
            );
        }
        for (i, s) in list.iter().enumerate() {
            if s.is_empty() {
                self.err(path.key(key).idx(i), "must not be empty");
            }
        }
    }

    fn positive(&mut self, path: Path, n: &Number) {
        if n.as_f64().is_none_or(|v| v <= 0.0) {
            self.err(path, format!("must be greater than 0 (got {n})"));
        }
    }

    fn timeout(&mut self, path: &Path, t: Option<&Timeout>) {
        if let Some(t) = t {
            let p = path.key("timeout");
            self.positive(p.key("connect"), &t.connect);
            self.positive(p.key("send"), &t.send);
            self.positive(p.key("read"), &t.read);
        }
    }

    fn port(&mut self, path: Path, port: Option<u16>) {
        if port == Some(0) {
            self.err(path, "port must be between 1 and 65535");
        }
    }

    fn service(&mut self, path: &Path, s: &Service) {
        self.id(path, s.id.as_ref());
        self.name(path, "name", &s.name);
        self.description(path, s.description.as_ref());
        if s.routes.is_some() && s.stream_routes.is_some() {
            self.err(
                path.key("stream_routes"),
                "`routes` and `stream_routes` are mutually exclusive in one service: put the stream routes in a service of their own",
            );
        }
        if s.upstreams.is_some() && s.upstream.is_none() {
            self.err(
                path.key("upstreams"),
                "the default upstream must be set with `upstream` when extra upstreams are set with `upstreams`",
            );
        }
        if s.path_prefix.as_ref().is_some_and(|p| !p.starts_with('/')) {
            self.err(path.key("path_prefix"), "path_prefix must start with \"/\"");
        }
        self.non_empty_strings(path, "hosts", s.hosts.as_ref(), 0);
        if let Some(u) = &s.upstream {
            let p = path.key("upstream");
            if u.id.is_some() {
                self.err(
                    p.key("id"),
                    "a service's default `upstream` has no `id`: it always takes the service's id",
                );
            }
            self.upstream(&p, u);
        }
        for (i, u) in s.upstreams.iter().flatten().enumerate() {
            let p = path.key("upstreams").idx(i);
            self.id(&p, u.id.as_ref());
            match &u.name {
                Some(n) => self.name(&p, "name", n),
                None => self.err(
                    p.clone(),
                    "missing field `name`: every entry of `upstreams` needs a name",
                ),
            }
            self.upstream(&p, u);
        }
        for (i, r) in s.routes.iter().flatten().enumerate() {
            self.route(&path.key("routes").idx(i), r);
        }
        for (i, r) in s.stream_routes.iter().flatten().enumerate() {
            let p = path.key("stream_routes").idx(i);
            self.id(&p, r.id.as_ref());
            self.name(&p, "name", &r.name);
            self.description(&p, r.description.as_ref());
            self.port(p.key("server_port"), r.server_port);
            if r.sni.as_ref().is_some_and(String::is_empty) {
                self.err(p.key("sni"), "sni must not be empty");
            }
        }
    }

    fn upstream(&mut self, path: &Path, u: &Upstream) {
        if let Some(n) = &u.name {
            self.name(path, "name", n);
        }
        self.description(path, u.description.as_ref());
        let has_nodes = u.nodes.is_some();
        let discovery = u.discovery_type.is_some() || u.service_name.is_some();
        let full_discovery = u.discovery_type.is_some() && u.service_name.is_some();
        let valid = if has_nodes {
            !discovery
        } else {
            full_discovery
        };
        if !valid {
            self.err(
                path.clone(),
                "an upstream must either list `nodes` or use service discovery (`discovery_type` + `service_name`), not both",
            );
        }
        for (i, n) in u.nodes.iter().flatten().enumerate() {
            let p = path.key("nodes").idx(i);
            if n.host.is_empty() {
                self.err(p.key("host"), "host must not be empty");
            }
            self.port(p.key("port"), Some(n.port));
        }
        if let Some(rt) = &u.retry_timeout
            && rt.as_f64().is_none_or(|v| v < 0.0)
        {
            self.err(path.key("retry_timeout"), "retry_timeout must be >= 0");
        }
        self.timeout(path, u.timeout.as_ref());
        if let Some(k) = &u.keepalive_pool {
            let p = path.key("keepalive_pool");
            if k.size == Some(0) {
                self.err(p.key("size"), "size must be >= 1");
            }
            if k.requests == Some(0) {
                self.err(p.key("requests"), "requests must be >= 1");
            }
            if k.idle_timeout
                .as_ref()
                .is_some_and(|t| t.as_f64().is_none_or(|v| v < 0.0))
            {
                self.err(p.key("idle_timeout"), "idle_timeout must be >= 0");
            }
        }
        if u.upstream_host.as_ref().is_some_and(String::is_empty) {
            self.err(path.key("upstream_host"), "upstream_host must not be empty");
        }
        if let Some(c) = &u.checks {
            let p = path.key("checks");
            let a = &c.active;
            let pa = p.key("active");
            self.port(pa.key("port"), a.port);
            self.non_empty_strings(
                &pa,
                "http_request_headers",
                a.http_request_headers.as_ref(),
                1,
            );
            if let Some(h) = &a.healthy {
                let ph = pa.key("healthy");
                self.statuses(&ph, h.http_statuses.as_ref());
                self.count(ph.key("successes"), h.successes);
                self.interval(ph.key("interval"), h.interval);
            }
            if let Some(h) = &a.unhealthy {
                let ph = pa.key("unhealthy");
                self.statuses(&ph, h.http_statuses.as_ref());
                self.count(ph.key("http_failures"), h.http_failures);
                self.count(ph.key("tcp_failures"), h.tcp_failures);
                self.count(ph.key("timeouts"), h.timeouts);
                self.interval(ph.key("interval"), h.interval);
            }
            if let Some(pv) = &c.passive {
                let pp = p.key("passive");
                if let Some(h) = &pv.healthy {
                    self.statuses(&pp.key("healthy"), h.http_statuses.as_ref());
                    self.count(pp.key("healthy").key("successes"), h.successes);
                }
                if let Some(h) = &pv.unhealthy {
                    let ph = pp.key("unhealthy");
                    self.statuses(&ph, h.http_statuses.as_ref());
                    self.count(ph.key("http_failures"), h.http_failures);
                    self.count(ph.key("tcp_failures"), h.tcp_failures);
                    self.count(ph.key("timeouts"), h.timeouts);
                }
            }
        }
    }

    fn statuses(&mut self, path: &Path, s: Option<&Vec<u16>>) {
        let Some(s) = s else { return };
        if s.is_empty() {
            self.err(
                path.key("http_statuses"),
                "http_statuses needs at least 1 item",
            );
        }
        for (i, code) in s.iter().enumerate() {
            if !(200..=599).contains(code) {
                self.err(
                    path.key("http_statuses").idx(i),
                    format!("status {code} must be between 200 and 599"),
                );
            }
        }
    }

    fn count(&mut self, path: Path, n: Option<u8>) {
        if n.is_some_and(|n| !(1..=254).contains(&n)) {
            self.err(path, "must be between 1 and 254");
        }
    }

    fn interval(&mut self, path: Path, n: Option<u32>) {
        if n == Some(0) {
            self.err(path, "interval must be >= 1");
        }
    }

    fn route(&mut self, path: &Path, r: &Route) {
        self.id(path, r.id.as_ref());
        self.name(path, "name", &r.name);
        self.description(path, r.description.as_ref());
        if r.uris.is_empty() {
            self.err(path.key("uris"), "`uris` needs at least 1 item");
        }
        if r.methods.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                path.key("methods"),
                "`methods` must not be empty (omit it to match every method)",
            );
        }
        self.non_empty_strings(path, "hosts", r.hosts.as_ref(), 0);
        for (i, a) in r.remote_addrs.iter().flatten().enumerate() {
            if !is_ip_or_cidr(a) {
                self.err(
                    path.key("remote_addrs").idx(i),
                    format!("`{a}` is not an IP address or CIDR (IPv4 or IPv6)"),
                );
            }
        }
        self.timeout(path, r.timeout.as_ref());
    }

    fn ssl(&mut self, path: &Path, s: &Ssl) {
        self.id(path, s.id.as_ref());
        self.non_empty_strings(path, "snis", Some(&s.snis), 1);
        if s.certificates.is_empty() {
            self.err(
                path.key("certificates"),
                "SSL must contain at least one certificate",
            );
        }
        for (i, c) in s.certificates.iter().enumerate() {
            let p = path.key("certificates").idx(i);
            if !(is_secret_ref(&c.certificate) || (128..=64 * 1024).contains(&c.certificate.len()))
            {
                self.err(p.key("certificate"), "must be a PEM certificate (at least 128 characters) or a `$secret://` / `$env://` reference");
            }
            if !(is_secret_ref(&c.key) || (32..=64 * 1024).contains(&c.key.len())) {
                self.err(p.key("key"), "must be a PEM private key (at least 32 characters) or a `$secret://` / `$env://` reference");
            }
        }
        if let Some(c) = &s.client {
            let p = path.key("client");
            if !(is_secret_ref(&c.ca) || (128..=64 * 1024).contains(&c.ca.len())) {
                self.err(
                    p.key("ca"),
                    "must be a PEM CA certificate (at least 128 characters) or a secret reference",
                );
            }
            self.non_empty_strings(&p, "skip_mtls_uri_regex", c.skip_mtls_uri_regex.as_ref(), 1);
        }
        if s.ssl_protocols.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                path.key("ssl_protocols"),
                "`ssl_protocols` must not be empty",
            );
        }
    }

    fn consumer(&mut self, path: &Path, c: &Consumer) {
        self.name(path, "username", &c.username);
        self.description(path, c.description.as_ref());
        for (i, cred) in c.credentials.iter().flatten().enumerate() {
            let p = path.key("credentials").idx(i);
            self.id(&p, cred.id.as_ref());
            self.name(&p, "name", &cred.name);
            self.description(&p, cred.description.as_ref());
        }
    }
}

/// `^[a-zA-Z0-9-_.]+$`, 1 to 256 characters.
pub fn is_valid_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_secret_ref(s: &str) -> bool {
    s.starts_with("$secret://") || s.starts_with("$env://")
}

fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

/// The semantic checks of one file, in document order.
pub fn validate(file: &AdcFile) -> Vec<Issue> {
    let mut c = Checker { issues: Vec::new() };
    let root = Path::default();
    for (i, s) in file.services.iter().flatten().enumerate() {
        c.service(&root.key("services").idx(i), s);
    }
    for (i, s) in file.ssls.iter().flatten().enumerate() {
        c.ssl(&root.key("ssls").idx(i), s);
    }
    for (i, s) in file.consumers.iter().flatten().enumerate() {
        c.consumer(&root.key("consumers").idx(i), s);
    }
    for (i, g) in file.consumer_groups.iter().flatten().enumerate() {
        let p = root.key("consumer_groups").idx(i);
        c.id(&p, g.id.as_ref());
        c.name(&p, "name", &g.name);
        c.description(&p, g.description.as_ref());
        for (j, cons) in g.consumers.iter().flatten().enumerate() {
            c.consumer(&p.key("consumers").idx(j), cons);
        }
    }
    c.issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{self, Env};

    fn issues(text: &str) -> Vec<String> {
        let node = yaml::parse(text, &Env::new()).unwrap();
        let file: AdcFile = yaml::from_node(&node).unwrap();
        validate(&file)
            .into_iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect()
    }

    #[test]
    fn accepts_the_adc_docs_example() {
        let text = r#"
services:
  - name: httpbin-service
    labels: {deployment: production}
    upstream:
      name: Default Upstream
      scheme: http
      type: roundrobin
      nodes: [{host: httpbin.org, port: 80, weight: 100, priority: 0}]
      timeout: {connect: 60, send: 60, read: 60}
      pass_host: pass
    routes:
      - name: get-ip
        uris: [/ip]
        methods: [GET]
      - name: anything
        uris: [/anything/*]
        methods: [GET, POST]
        plugins:
          proxy-rewrite: {uri: /get}
consumers:
  - username: internal-user
    credentials:
      - name: primary-key
        type: key-auth
        config: {key: "abc"}
global_rules:
  prometheus: {_meta: {disable: false}, prefer_name: false}
"#;
        assert_eq!(issues(text), Vec::<String>::new());
    }

    #[test]
    fn service_constraints() {
        let text = r#"
services:
  - name: s
    upstreams: [{name: extra, nodes: [{host: a, port: 1, weight: 1}]}]
    routes: [{name: r, uris: [/]}]
    stream_routes: [{name: t}]
    path_prefix: api
"#;
        let got = issues(text);
        assert!(
            got.iter().any(|m| m.starts_with(
                "services[0].stream_routes: `routes` and `stream_routes` are mutually exclusive"
            )),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[0].upstreams: the default upstream must be set")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|m| m.starts_with("services[0].path_prefix")),
            "{got:?}"
        );
    }

    #[test]
    fn upstream_nodes_xor_discovery_and_ids() {
        let text = r#"
services:
  - name: s
    id: "bad id!"
    upstream:
      nodes: [{host: a, port: 1, weight: 1}]
      discovery_type: dns
      service_name: x
  - name: t
    upstream: {discovery_type: dns}
"#;
        let got = issues(text);
        assert!(
            got.contains(
                &"services[0].id: id `bad id!` must be 1-256 characters of [a-zA-Z0-9-_.]"
                    .to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.iter().any(
                |m| m.starts_with("services[0].upstream: an upstream must either list `nodes`")
            ),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[1].upstream: an upstream must either")),
            "{got:?}"
        );
    }

    #[test]
    fn route_fields() {
        let text = r#"
services:
  - name: s
    routes:
      - name: r
        uris: []
        methods: []
        remote_addrs: [10.0.0.0/8, "::1", 300.1.1.1, 10.0.0.0/40]
        timeout: {connect: 0, send: 1, read: 1}
"#;
        let got = issues(text);
        assert!(
            got.contains(&"services[0].routes[0].uris: `uris` needs at least 1 item".to_string()),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[0].routes[0].methods")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[0].routes[0].remote_addrs[2]")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[0].routes[0].remote_addrs[3]")),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|m| m.starts_with("services[0].routes[0].remote_addrs[0]")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("services[0].routes[0].timeout.connect")),
            "{got:?}"
        );
    }

    #[test]
    fn ssl_rules() {
        let text = r#"
ssls:
  - snis: []
    certificates: [{certificate: short, key: "$secret://vault/1/key"}]
"#;
        let got = issues(text);
        assert!(got.iter().any(|m| m.starts_with("ssls[0].snis")), "{got:?}");
        assert!(
            got.iter()
                .any(|m| m.starts_with("ssls[0].certificates[0].certificate")),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|m| m.starts_with("ssls[0].certificates[0].key")),
            "{got:?}"
        );
    }

    #[test]
    fn strict_enums_and_unknown_keys() {
        let bad = |t: &str| {
            let node = yaml::parse(t, &Env::new()).unwrap();
            yaml::from_node::<AdcFile>(&node).unwrap_err()
        };
        let e =
            bad("services:\n  - name: s\n    routes: [{name: r, uris: [/], methods: [FETCH]}]\n");
        assert!(e.message.contains("unknown variant `FETCH`"), "{e}");
        let e = bad("routes: []\n");
        assert!(e.message.contains("unknown field `routes`"), "{e}");
        assert_eq!(e.pos.unwrap().line, 1);
        let e = bad(
            "consumers:\n  - username: u\n    credentials: [{name: c, type: oauth, config: {}}]\n",
        );
        assert!(e.message.contains("unknown variant `oauth`"), "{e}");
        let e = bad(
            "services:\n  - name: s\n    upstream:\n      nodes: []\n      checks: {passive: {}}\n",
        );
        assert!(e.message.contains("missing field `active`"), "{e}");
    }

    #[test]
    fn label_values() {
        assert_eq!(LabelValue::One("a".into()).to_apisix(), "a");
        assert_eq!(
            LabelValue::Many(vec!["a".into(), "b".into()]).to_apisix(),
            r#"["a","b"]"#
        );
    }
}
