//! The resources the differ compares, in APISIX's vocabulary, and how an ADC configuration
//! becomes them ("local" state). Remote state is read into the same shape by `remote`.
//!
//! An ADC resource maps to one or two APISIX objects ([`Part`]s): a service is its default
//! upstream (`PUT /upstreams/{service id}`) plus the service object referring to it with
//! `upstream_id`, exactly as ADC's APISIX backend writes it (domain.md §1.5); every other resource
//! is one object. In the standalone flavour the service carries its upstream inline.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value as JsonValue, json};

use crate::ids;
use crate::load::{Config, ConfigError, ConfigErrors, Origin};
use crate::schema::{Labels, Plugins, Route, Scheme, Service, StreamRoute, Upstream};

/// The label ADC puts on a service's named upstreams to find their service again.
pub const UPSTREAM_SERVICE_LABEL: &str = "__ADC_UPSTREAM_SERVICE_ID";

/// ADC's resource types (the names `include_resource_types` / `exclude_resource_types` take).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Service,
    Route,
    StreamRoute,
    Upstream,
    Ssl,
    Consumer,
    ConsumerCredential,
    ConsumerGroup,
    GlobalRule,
    PluginMetadata,
    PluginConfig,
}

impl ResourceType {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Service => "service",
            ResourceType::Route => "route",
            ResourceType::StreamRoute => "stream_route",
            ResourceType::Upstream => "upstream",
            ResourceType::Ssl => "ssl",
            ResourceType::Consumer => "consumer",
            ResourceType::ConsumerCredential => "consumer_credential",
            ResourceType::ConsumerGroup => "consumer_group",
            ResourceType::GlobalRule => "global_rule",
            ResourceType::PluginMetadata => "plugin_metadata",
            ResourceType::PluginConfig => "plugin_config",
        }
    }

    /// Whether resources of this type carry labels (and so take part in label selection).
    pub fn has_labels(self) -> bool {
        !matches!(
            self,
            ResourceType::GlobalRule | ResourceType::PluginMetadata
        )
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which APISIX object of a resource a [`Part`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartRole {
    /// A service's default upstream, written before the service and deleted after it.
    Upstream,
    /// The resource's own object.
    Main,
}

/// One APISIX object: its Admin API path below `/apisix/admin/` and its body.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub role: PartRole,
    pub path: String,
    pub body: JsonValue,
}

/// A resource as the differ sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub rtype: ResourceType,
    pub id: String,
    /// ADC's display name: service/route name, `snis` joined by `,`, username, plugin name.
    pub name: String,
    /// The service id of a route, stream route or named upstream; the username of a credential.
    pub parent: Option<String>,
    /// APISIX labels (strings), for label selection.
    pub labels: BTreeMap<String, String>,
    /// Upstream part first, then the main part.
    pub parts: Vec<Part>,
    /// Where a local resource was defined (`None` for remote ones).
    pub origin: Option<Origin>,
}

impl Resource {
    /// The part with `role`.
    pub fn part(&self, role: PartRole) -> Option<&Part> {
        self.parts.iter().find(|p| p.role == role)
    }
}

/// Which API's object shapes to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// APISIX Admin API: a service refers to its upstream by `upstream_id` (domain.md §1.5).
    AdminApi,
    /// API7 EE (ADC's `backend-api7`): services carry their upstream inline and a `type`
    /// (`http`/`stream`), named upstreams live under `services/{id}/upstreams`, routes match
    /// `paths`.
    Api7,
    /// APISIX standalone document: services carry their upstream inline.
    Standalone,
}

/// What the local build needs besides the files.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub flavor: Flavor,
    /// Injected into every labelled resource; wins over a label of the same key in the file.
    pub selector: BTreeMap<String, String>,
    /// When set, `managed-by: <value>` is added to every labelled resource.
    pub managed_by: Option<String>,
}

/// The desired state: resources in file order, plus notes about ignored input.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub resources: Vec<Resource>,
    pub warnings: Vec<String>,
}

/// Turns a merged configuration into resources, with ids derived per ADC's rules.
///
/// Fails when two resources of one type end up with the same id (e.g. an explicit `id` equal to
/// another resource's derived one), naming both definitions.
pub fn build(config: &Config, opts: &BuildOptions) -> Result<Desired, ConfigErrors> {
    let mut b = Builder {
        opts,
        out: Desired::default(),
        ids: HashMap::new(),
        errors: Vec::new(),
    };
    for s in &config.services {
        b.service(&s.value, &s.origin);
    }
    for s in &config.ssls {
        let ssl = &s.value;
        let id = ssl.id.clone().unwrap_or_else(|| ids::ssl_id(&ssl.snis));
        let labels = b.labels(ssl.labels.as_ref());
        let mut body = JsonMap::new();
        body.insert("id".into(), json!(id));
        put_labels(&mut body, &labels);
        body.insert("status".into(), json!(1));
        put_opt(&mut body, "type", ssl.kind.as_ref());
        body.insert("snis".into(), json!(ssl.snis));
        if let Some(first) = ssl.certificates.first() {
            body.insert("cert".into(), json!(first.certificate));
            body.insert("key".into(), json!(first.key));
        }
        if ssl.certificates.len() > 1 {
            let rest = &ssl.certificates[1..];
            body.insert(
                "certs".into(),
                json!(rest.iter().map(|c| &c.certificate).collect::<Vec<_>>()),
            );
            body.insert(
                "keys".into(),
                json!(rest.iter().map(|c| &c.key).collect::<Vec<_>>()),
            );
        }
        put_opt(&mut body, "client", ssl.client.as_ref());
        put_opt(&mut body, "ssl_protocols", ssl.ssl_protocols.as_ref());
        let name = ssl.snis.join(",");
        b.push(
            ResourceType::Ssl,
            id.clone(),
            name,
            None,
            labels,
            vec![main(format!("ssls/{id}"), body)],
            &s.origin,
        );
    }
    for c in &config.consumers {
        let cons = &c.value;
        let labels = b.labels(cons.labels.as_ref());
        let mut body = JsonMap::new();
        body.insert("username".into(), json!(cons.username));
        put_opt(&mut body, "desc", cons.description.as_ref());
        put_labels(&mut body, &labels);
        put_opt(&mut body, "plugins", cons.plugins.as_ref());
        let u = &cons.username;
        b.push(
            ResourceType::Consumer,
            u.clone(),
            u.clone(),
            None,
            labels,
            vec![main(format!("consumers/{u}"), body)],
            &c.origin,
        );
        for cred in cons.credentials.iter().flatten() {
            let origin = Origin {
                file: c.origin.file.clone(),
                pos: cred.pos,
            };
            let id = cred
                .id
                .clone()
                .unwrap_or_else(|| ids::credential_id(u, &cred.name));
            let labels = b.labels(cred.labels.as_ref());
            let mut body = JsonMap::new();
            body.insert("id".into(), json!(id));
            body.insert("name".into(), json!(cred.name));
            put_opt(&mut body, "desc", cred.description.as_ref());
            put_labels(&mut body, &labels);
            body.insert("plugins".into(), json!({ cred.kind.plugin(): cred.config }));
            let parts = vec![main(format!("consumers/{u}/credentials/{id}"), body)];
            b.push(
                ResourceType::ConsumerCredential,
                id,
                cred.name.clone(),
                Some(u.clone()),
                labels,
                parts,
                &origin,
            );
        }
    }
    if let Some(g) = config.consumer_groups.first() {
        b.out.warnings.push(format!(
            "consumer_groups (first at {}) are an API7 EE feature this step does not sync; they were skipped",
            g.origin
        ));
    }
    for g in &config.global_rules {
        let (name, cfg) = &g.value;
        let body = json!({ "plugins": { name.as_str(): cfg } });
        let parts = vec![main(format!("global_rules/{name}"), body)];
        b.push(
            ResourceType::GlobalRule,
            name.clone(),
            name.clone(),
            None,
            BTreeMap::new(),
            parts,
            &g.origin,
        );
    }
    for m in &config.plugin_metadata {
        let (name, cfg) = &m.value;
        let parts = vec![main(
            format!("plugin_metadata/{name}"),
            JsonValue::Object(cfg.clone()),
        )];
        b.push(
            ResourceType::PluginMetadata,
            name.clone(),
            name.clone(),
            None,
            BTreeMap::new(),
            parts,
            &m.origin,
        );
    }
    if b.errors.is_empty() {
        Ok(b.out)
    } else {
        Err(ConfigErrors(b.errors))
    }
}

fn main(path: String, body: impl Into<JsonValue>) -> Part {
    Part {
        role: PartRole::Main,
        path,
        body: body.into(),
    }
}

struct Builder<'a> {
    opts: &'a BuildOptions,
    out: Desired,
    ids: HashMap<(ResourceType, String), Origin>,
    errors: Vec<ConfigError>,
}

impl Builder<'_> {
    fn labels(&self, own: Option<&Labels>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = own
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.to_apisix()))
            .collect();
        if let Some(m) = &self.opts.managed_by {
            out.insert("managed-by".into(), m.clone());
        }
        for (k, v) in &self.opts.selector {
            out.insert(k.clone(), v.clone());
        }
        out
    }

    // One argument per field of the resource it records; a builder struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        rtype: ResourceType,
        id: String,
        name: String,
        parent: Option<String>,
        labels: BTreeMap<String, String>,
        parts: Vec<Part>,
        origin: &Origin,
    ) {
        if let Some(first) = self.ids.get(&(rtype, id.clone())) {
            self.errors.push(ConfigError {
                file: origin.file.clone(),
                pos: Some(origin.pos),
                message: format!(
                    "{rtype} `{name}` gets the id `{id}`, already used by the {rtype} at {first}"
                ),
            });
            return;
        }
        self.ids.insert((rtype, id.clone()), origin.clone());
        self.out.resources.push(Resource {
            rtype,
            id,
            name,
            parent,
            labels,
            parts,
            origin: Some(origin.clone()),
        });
    }

    fn service(&mut self, s: &Service, origin: &Origin) {
        let sid = s.id.clone().unwrap_or_else(|| ids::service_id(&s.name));
        let api7 = self.opts.flavor == Flavor::Api7;
        if !api7 && (s.path_prefix.is_some() || s.strip_path_prefix.is_some()) {
            self.out.warnings.push(format!(
                "service `{}` ({origin}): path_prefix/strip_path_prefix are API7 EE only and were ignored",
                s.name
            ));
        }
        let labels = self.labels(s.labels.as_ref());
        let mut body = JsonMap::new();
        body.insert("id".into(), json!(sid));
        body.insert("name".into(), json!(s.name));
        put_opt(&mut body, "desc", s.description.as_ref());
        put_labels(&mut body, &labels);
        put_opt(&mut body, "plugins", s.plugins.as_ref());
        put_opt(&mut body, "hosts", s.hosts.as_ref());
        if api7 {
            put_opt(&mut body, "path_prefix", s.path_prefix.as_ref());
            put_opt(&mut body, "strip_path_prefix", s.strip_path_prefix.as_ref());
            let l4 = s.stream_routes.is_some()
                || s.upstream
                    .as_ref()
                    .and_then(|u| u.scheme)
                    .is_some_and(|sc| matches!(sc, Scheme::Tcp | Scheme::Tls | Scheme::Udp));
            body.insert("type".into(), json!(if l4 { "stream" } else { "http" }));
        }
        let mut parts = Vec::new();
        if let Some(u) = &s.upstream {
            // The default upstream is named after its service: a name written for it is not
            // kept, and renaming it changed nothing without a word.
            if let Some(n) = u.name.as_deref().filter(|n| *n != s.name) {
                self.out.warnings.push(format!(
                    "service `{}` ({origin}): its upstream's name `{n}` is not kept — a service's own upstream is named after the service (name it in `upstreams:` to keep a name)",
                    s.name
                ));
            }
            let mut ub = upstream_body(u, &self.labels(u.labels.as_ref()));
            // domain.md §1.5: the default upstream is written with the service's id and name
            ub.insert("name".into(), json!(s.name));
            match self.opts.flavor {
                Flavor::AdminApi => {
                    ub.insert("id".into(), json!(sid));
                    parts.push(Part {
                        role: PartRole::Upstream,
                        path: format!("upstreams/{sid}"),
                        body: ub.into(),
                    });
                    body.insert("upstream_id".into(), json!(sid));
                }
                Flavor::Api7 | Flavor::Standalone => {
                    body.insert("upstream".into(), ub.into());
                }
            }
        }
        parts.push(main(format!("services/{sid}"), body));
        self.push(
            ResourceType::Service,
            sid.clone(),
            s.name.clone(),
            None,
            labels,
            parts,
            origin,
        );

        let child_origin = |pos| Origin {
            file: origin.file.clone(),
            pos,
        };
        for r in s.routes.iter().flatten() {
            if api7
                && (r.hosts.is_some()
                    || r.remote_addrs.is_some()
                    || r.vars.is_some()
                    || r.filter_func.is_some())
            {
                self.out.warnings.push(format!(
                    "route `{}` ({}): hosts/remote_addrs/vars/filter_func are not API7 EE route fields and were ignored",
                    r.name,
                    child_origin(r.pos)
                ));
            }
            let (id, body, labels) = self.route(&s.name, &sid, r);
            let parts = vec![main(format!("routes/{id}"), body)];
            self.push(
                ResourceType::Route,
                id,
                r.name.clone(),
                Some(sid.clone()),
                labels,
                parts,
                &child_origin(r.pos),
            );
        }
        for r in s.stream_routes.iter().flatten() {
            let (id, body, labels) = self.stream_route(&s.name, &sid, r);
            let parts = vec![main(format!("stream_routes/{id}"), body)];
            self.push(
                ResourceType::StreamRoute,
                id,
                r.name.clone(),
                Some(sid.clone()),
                labels,
                parts,
                &child_origin(r.pos),
            );
        }
        for u in s.upstreams.iter().flatten() {
            let name = u.name.clone().unwrap_or_default();
            let id =
                u.id.clone()
                    .unwrap_or_else(|| ids::child_id(&s.name, &name));
            let mut labels = self.labels(u.labels.as_ref());
            // API7 ties a named upstream to its service by path; APISIX needs ADC's label
            let path = if api7 {
                format!("services/{sid}/upstreams/{id}")
            } else {
                labels.insert(UPSTREAM_SERVICE_LABEL.into(), sid.clone());
                format!("upstreams/{id}")
            };
            let mut ub = upstream_body(u, &labels);
            ub.insert("id".into(), json!(id));
            ub.insert("name".into(), json!(name));
            let parts = vec![main(path, ub)];
            self.push(
                ResourceType::Upstream,
                id,
                name,
                Some(sid.clone()),
                labels,
                parts,
                &child_origin(u.pos),
            );
        }
    }

    fn route(
        &self,
        service: &str,
        sid: &str,
        r: &Route,
    ) -> (String, JsonMap<String, JsonValue>, BTreeMap<String, String>) {
        let id =
            r.id.clone()
                .unwrap_or_else(|| ids::child_id(service, &r.name));
        let labels = self.labels(r.labels.as_ref());
        let mut body = JsonMap::new();
        body.insert("id".into(), json!(id));
        body.insert("name".into(), json!(r.name));
        put_opt(&mut body, "desc", r.description.as_ref());
        put_labels(&mut body, &labels);
        if self.opts.flavor == Flavor::Api7 {
            // ADC's backend-api7: `paths`, and no hosts/remote_addrs/vars/filter_func/status
            body.insert("paths".into(), json!(r.uris));
        } else {
            body.insert("uris".into(), json!(r.uris));
            put_opt(&mut body, "hosts", r.hosts.as_ref());
            put_opt(&mut body, "remote_addrs", r.remote_addrs.as_ref());
            put_opt(&mut body, "vars", r.vars.as_ref());
            put_opt(&mut body, "filter_func", r.filter_func.as_ref());
            body.insert("status".into(), json!(1));
        }
        put_opt(&mut body, "methods", r.methods.as_ref());
        body.insert("service_id".into(), json!(sid));
        put_opt(&mut body, "enable_websocket", r.enable_websocket.as_ref());
        put_plugins(&mut body, r.plugins.as_ref());
        put_opt(&mut body, "priority", r.priority.as_ref());
        put_opt(&mut body, "timeout", r.timeout.as_ref());
        (id, body, labels)
    }

    fn stream_route(
        &self,
        service: &str,
        sid: &str,
        r: &StreamRoute,
    ) -> (String, JsonMap<String, JsonValue>, BTreeMap<String, String>) {
        let id =
            r.id.clone()
                .unwrap_or_else(|| ids::child_id(service, &r.name));
        let labels = self.labels(r.labels.as_ref());
        let mut body = JsonMap::new();
        body.insert("id".into(), json!(id));
        body.insert("name".into(), json!(r.name));
        put_opt(&mut body, "desc", r.description.as_ref());
        put_labels(&mut body, &labels);
        put_plugins(&mut body, r.plugins.as_ref());
        put_opt(&mut body, "remote_addr", r.remote_addr.as_ref());
        put_opt(&mut body, "server_addr", r.server_addr.as_ref());
        put_opt(&mut body, "server_port", r.server_port.as_ref());
        if self.opts.flavor != Flavor::Api7 {
            put_opt(&mut body, "sni", r.sni.as_ref());
        }
        body.insert("service_id".into(), json!(sid));
        (id, body, labels)
    }
}

/// An ADC upstream as an APISIX upstream object (without id/name).
fn upstream_body(u: &Upstream, labels: &BTreeMap<String, String>) -> JsonMap<String, JsonValue> {
    let mut b = JsonMap::new();
    put_opt(&mut b, "desc", u.description.as_ref());
    put_labels(&mut b, labels);
    put_opt(&mut b, "type", u.balancer.as_ref());
    put_opt(&mut b, "hash_on", u.hash_on.as_ref());
    put_opt(&mut b, "key", u.key.as_ref());
    put_opt(&mut b, "checks", u.checks.as_ref());
    put_opt(&mut b, "nodes", u.nodes.as_ref());
    put_opt(&mut b, "scheme", u.scheme.as_ref());
    put_opt(&mut b, "retries", u.retries.as_ref());
    put_opt(&mut b, "retry_timeout", u.retry_timeout.as_ref());
    put_opt(&mut b, "timeout", u.timeout.as_ref());
    put_opt(&mut b, "tls", u.tls.as_ref());
    put_opt(&mut b, "keepalive_pool", u.keepalive_pool.as_ref());
    put_opt(&mut b, "pass_host", u.pass_host.as_ref());
    put_opt(&mut b, "upstream_host", u.upstream_host.as_ref());
    put_opt(&mut b, "service_name", u.service_name.as_ref());
    put_opt(&mut b, "discovery_type", u.discovery_type.as_ref());
    put_opt(&mut b, "discovery_args", u.discovery_args.as_ref());
    b
}

fn put_opt<T: Serialize>(body: &mut JsonMap<String, JsonValue>, key: &str, v: Option<&T>) {
    if let Some(v) = v {
        // Serialising the schema types cannot fail: they are plain data with string keys.
        if let Ok(v) = serde_json::to_value(v) {
            body.insert(key.into(), v);
        }
    }
}

fn put_plugins(body: &mut JsonMap<String, JsonValue>, plugins: Option<&Plugins>) {
    put_opt(body, "plugins", plugins);
}

fn put_labels(body: &mut JsonMap<String, JsonValue>, labels: &BTreeMap<String, String>) {
    if !labels.is_empty() {
        body.insert("labels".into(), json!(labels));
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
