//! The GSLB family: one input and one output schema for every DNS traffic-steering vendor.
//!
//! A workflow writes one `with:` block; `uses: gslb-route53`, `gslb-cloudflare` or
//! `gslb-powerdns` interprets it. The vendor connection lives under `provider.<vendor>`, and a
//! block may carry all three, so switching vendors is a one-line change of `uses:`.
//!
//! The routing decisions (which region leads after a failover, which weights a `set-weights`
//! leaves, what to undo, which regions DNS answers) are made here, once, so the vendors cannot
//! drift apart; the vendor crates only translate [`Desired`] to their API and read back a
//! [`RoutingState`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::StepError;

/// What the step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GslbAction {
    /// Create or update health checks and records so the provider matches `regions` and `policy`
    /// (the declared primary leads; declared weights apply). Idempotent: a second run changes nothing.
    #[default]
    Apply,
    /// Make `target_region` the answered region (failover: it becomes primary; weighted: it gets
    /// all the weight). The previous state is returned in `undo` for compensation.
    Failover,
    /// Change weights (policy `weighted`); regions missing from `weights` keep their current weight.
    SetWeights,
    /// Read only: report the active regions and their health.
    Status,
}

/// DNS record type of the steered name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RecordType {
    /// IPv4 addresses: every region endpoint must be an IPv4 address.
    #[default]
    A,
    /// IPv6 addresses: every region endpoint must be an IPv6 address.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// A host name: every region endpoint must be a host name.
    #[serde(rename = "CNAME")]
    Cname,
}

impl RecordType {
    /// The type as DNS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
        }
    }
}

/// How the provider chooses among regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingPolicy {
    /// Active/passive: the first healthy region in priority order answers.
    Failover,
    /// Active/active by weight (0–255 per region; 0 takes a region out).
    Weighted,
    /// Every healthy region answers, the closest one to the resolver first.
    Latency,
}

impl RoutingPolicy {
    /// The policy as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::Latency => "latency",
        }
    }
}

/// Protocol of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckType {
    /// HTTP GET of `path`; healthy on 2xx/3xx (vendor rules vary slightly).
    Http,
    /// HTTPS GET of `path`.
    #[default]
    Https,
    /// A TCP connection to `port`.
    Tcp,
}

impl HealthCheckType {
    /// The type as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
        }
    }
}

/// How the provider probes a region. Point it at the gateway's `/status/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Protocol (default https).
    #[serde(rename = "type", default)]
    pub kind: HealthCheckType,
    /// Port (default 80 for http, 443 for https; required for tcp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Request path for http/https (default `/status/ready`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Seconds between probes (default 10). Route 53 accepts 10 or 30 and rounds up to one of
    /// them; PowerDNS uses its server-wide `lua-health-checks-interval`.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval: u32,
    /// Consecutive failures before the region counts as down (default 3, 1–10).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_threshold: u32,
    /// Host header / SNI name for http(s) probes (default: the record name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn default_path() -> String {
    "/status/ready".to_owned()
}
fn default_interval() -> u32 {
    10
}
fn default_failure_threshold() -> u32 {
    3
}

impl HealthCheck {
    /// The port probed.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.kind {
            HealthCheckType::Http => 80,
            HealthCheckType::Https => 443,
            HealthCheckType::Tcp => 0,
        })
    }

    /// The URL an http(s) probe fetches for `host`, e.g. `https://api.example.com:443/status/ready`.
    pub fn url(&self, host: &str) -> String {
        format!(
            "{}://{}:{}{}",
            self.kind.as_str(),
            host,
            self.port(),
            self.path
        )
    }

    fn validate(&self, region: &str) -> Result<(), StepError> {
        let at = format!("regions[{region}].health_check");
        if self.kind == HealthCheckType::Tcp && self.port.is_none() {
            return Err(StepError::invalid(format!(
                "{at}: a tcp health check needs `port`"
            )));
        }
        if self.port == Some(0) {
            return Err(StepError::invalid(format!("{at}.port: must be 1-65535")));
        }
        if !self.path.starts_with('/')
            || self
                .path
                .chars()
                .any(|c| c.is_whitespace() || c == '\'' || c == '"')
        {
            return Err(StepError::invalid(format!(
                "{at}.path: `{}` must start with `/` and contain no spaces or quotes",
                self.path
            )));
        }
        if !(1..=3600).contains(&self.interval) {
            return Err(StepError::invalid(format!(
                "{at}.interval: {} is outside 1-3600 seconds",
                self.interval
            )));
        }
        if !(1..=10).contains(&self.failure_threshold) {
            return Err(StepError::invalid(format!(
                "{at}.failure_threshold: {} is outside 1-10",
                self.failure_threshold
            )));
        }
        if let Some(h) = self.host.as_ref().filter(|h| !is_hostname(h)) {
            return Err(StepError::invalid(format!(
                "{at}.host: `{h}` is not a host name"
            )));
        }
        Ok(())
    }
}

/// One region the record can send traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region name (letters, digits, `-`, `_`; e.g. `eu-west-1`). Used as the record's set
    /// identifier / pool name, so keep it stable.
    pub name: String,
    /// Where the region's gateways answer: an IPv4 address (type A), IPv6 address (AAAA) or a
    /// host name (CNAME).
    pub endpoint: String,
    /// Weight for policy `weighted`, 0–255 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 255))]
    pub weight: Option<u32>,
    /// The region that leads under policy `failover` (default: the first region).
    #[serde(default)]
    pub primary: bool,
    /// How the provider probes this region; without one the region always counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Latency-routing location where the vendor needs one (Route 53: the AWS region code;
    /// default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Region {
    /// The declared weight (default 1).
    pub fn declared_weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// Vendor connections. Each step reads only its own entry, so one block can serve all vendors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Used by `gslb-route53`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Provider>,
    /// Used by `gslb-cloudflare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareProvider>,
    /// Used by `gslb-powerdns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powerdns: Option<PowerDnsProvider>,
}

/// AWS Route 53 connection. Credentials are secret *names*, read through the secrets grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route53Provider {
    /// API endpoint (default `https://route53.amazonaws.com`; a moto server in the lab).
    #[serde(default = "default_r53_endpoint")]
    pub endpoint: String,
    /// Hosted zone id (`Z…` or `/hostedzone/Z…`); looked up by `zone` name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    /// Secret holding the access key id (default `AWS_ACCESS_KEY_ID`).
    #[serde(default = "default_r53_key_secret")]
    pub access_key_id_secret: String,
    /// Secret holding the secret access key (default `AWS_SECRET_ACCESS_KEY`).
    #[serde(default = "default_r53_secret_secret")]
    pub secret_access_key_secret: String,
    /// Secret holding a session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_secret: Option<String>,
    /// SigV4 signing region (default `us-east-1`, as Route 53 requires outside China).
    #[serde(default = "default_r53_region")]
    pub signing_region: String,
}

fn default_r53_endpoint() -> String {
    "https://route53.amazonaws.com".to_owned()
}
fn default_r53_key_secret() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}
fn default_r53_secret_secret() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}
fn default_r53_region() -> String {
    "us-east-1".to_owned()
}

/// Cloudflare Load Balancing connection (API v4, bearer token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudflareProvider {
    /// API base (default `https://api.cloudflare.com/client/v4`).
    #[serde(default = "default_cf_endpoint")]
    pub endpoint: String,
    /// Account that owns monitors and pools.
    pub account_id: String,
    /// Zone that holds the load balancer.
    pub zone_id: String,
    /// Secret holding the API token (default `CLOUDFLARE_API_TOKEN`).
    #[serde(default = "default_cf_token_secret")]
    pub api_token_secret: String,
    /// Proxy through Cloudflare (orange cloud); `ttl` applies only when false (default false).
    #[serde(default)]
    pub proxied: bool,
    /// Regions that run the health checks (e.g. `WEU`, `ENAM`); Cloudflare's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_regions: Option<Vec<String>>,
}

fn default_cf_endpoint() -> String {
    "https://api.cloudflare.com/client/v4".to_owned()
}
fn default_cf_token_secret() -> String {
    "CLOUDFLARE_API_TOKEN".to_owned()
}

/// How PowerDNS answers for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerDnsRecords {
    /// LUA records: `ifurlup` ordered failover / `pickwrandom` weights, health-checked by
    /// PowerDNS itself (needs `enable-lua-records`).
    #[default]
    Lua,
    /// Plain records switched by this step: the active region's endpoint only.
    Plain,
}

/// PowerDNS Authoritative HTTP API connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerDnsProvider {
    /// Webserver base URL, e.g. `http://127.0.0.1:8081`.
    pub endpoint: String,
    /// Server id in the API path (default `localhost`).
    #[serde(default = "default_pdns_server")]
    pub server_id: String,
    /// Secret holding the API key (default `PDNS_API_KEY`).
    #[serde(default = "default_pdns_key_secret")]
    pub api_key_secret: String,
    /// LUA (health-checked by PowerDNS) or plain records (default lua).
    #[serde(default)]
    pub records: PowerDnsRecords,
    /// Name servers for a zone this step creates (default `ns1.<zone>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Create the zone (kind Native) when it does not exist (default true).
    #[serde(default = "default_true")]
    pub create_zone: bool,
    /// Probe each region's health-check URL from the step to fill `status` (PowerDNS has no API
    /// for its own check results). Needs the endpoints in `grants.http`. Default false.
    #[serde(default)]
    pub probe_health: bool,
}

fn default_pdns_server() -> String {
    "localhost".to_owned()
}
fn default_pdns_key_secret() -> String {
    "PDNS_API_KEY".to_owned()
}
fn default_true() -> bool {
    true
}

/// The `with:` input of every `gslb-*` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GslbInput {
    /// What to do (default apply).
    #[serde(default)]
    pub action: GslbAction,
    /// DNS zone, e.g. `example.com` (trailing dot optional).
    pub zone: String,
    /// The steered name, inside `zone`, e.g. `api.example.com`.
    pub record: String,
    /// Record type (default A).
    #[serde(rename = "type", default)]
    pub record_type: RecordType,
    /// TTL in seconds (default 60).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: u32,
    /// Routing policy.
    pub policy: RoutingPolicy,
    /// The regions, in priority order for policy failover.
    pub regions: Vec<Region>,
    /// For action failover: the region that must answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_region: Option<String>,
    /// For action set-weights: new weights by region name (0–255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, u32>>,
    /// Vendor connections.
    pub provider: ProviderConfig,
    /// Wait until the change is live (Route 53: INSYNC; others: read back) (default true).
    #[serde(default = "default_true")]
    pub wait: bool,
    /// Upper bound for that wait, in milliseconds (default 120000).
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(max = 3_600_000))]
    pub timeout_ms: u64,
}

fn default_ttl() -> u32 {
    60
}
fn default_timeout_ms() -> u64 {
    120_000
}

/// A region's health as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passing its checks.
    Healthy,
    /// Failing its checks.
    Unhealthy,
    /// No check, or no report yet.
    Unknown,
}

/// The kind of a provider change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Made a new object.
    Create,
    /// Changed an existing object.
    Update,
    /// Removed an object.
    Delete,
}

/// One change made (or, in plan mode, intended) at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GslbChange {
    /// Create, update or delete.
    pub op: ChangeOp,
    /// What kind of provider object: `record`, `health-check`, `zone`, `monitor`, `pool`,
    /// `load-balancer`.
    pub kind: String,
    /// The object's name at the provider.
    pub name: String,
    /// A short human description of the new state.
    pub detail: String,
}

impl GslbChange {
    /// A change description.
    pub fn new(
        op: ChangeOp,
        kind: &str,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            op,
            kind: kind.to_owned(),
            name: name.into(),
            detail: detail.into(),
        }
    }
}

/// The state a failover or set-weights replaced; compensation restores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Undo {
    /// Policy failover: the region that led before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_region: Option<String>,
    /// Policy weighted: the weights before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, u32>>,
}

/// The output of every `gslb-*` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GslbOutput {
    /// Which step produced it: `route53`, `cloudflare`, `powerdns`.
    pub vendor: String,
    /// The action performed.
    pub action: GslbAction,
    /// The record, as an absolute name with trailing dot.
    pub record: String,
    /// The routing policy.
    pub policy: RoutingPolicy,
    /// Regions DNS answers with now (after the change), taking reported health into account.
    pub active: Vec<String>,
    /// Policy failover: the priority order now configured (first leads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Policy weighted: the weights now configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// Changes made, or intended in plan mode. Empty when the provider already matched.
    pub changes: Vec<GslbChange>,
    /// The provider's change id (Route 53), when a change was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    /// True when the provider confirmed the change is live (or nothing had to change).
    pub synced: bool,
    /// Health by region name.
    pub status: BTreeMap<String, Health>,
    /// What compensation restores (failover and set-weights only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
    /// True when the changes were recorded by plan mode, not applied.
    pub planned: bool,
}

impl GslbOutput {
    /// The output with what the vendor's `apply` did: the `changes` it made (or planned), whether
    /// the provider reports them `synced`, the `undo` state recorded before them, and whether
    /// plan mode only recorded them (`planned`).
    pub fn applied(
        mut self,
        changes: Vec<GslbChange>,
        synced: bool,
        undo: Option<Undo>,
        planned: bool,
    ) -> Self {
        self.changes = changes;
        self.synced = synced;
        self.undo = undo;
        self.planned = planned;
        self
    }
}

/// The routing a vendor reads back, in family terms. Empty fields mean "not configured yet".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingState {
    /// Failover priority, first leads (region names).
    pub order: Vec<String>,
    /// Weights by region name.
    pub weights: BTreeMap<String, u32>,
}

/// What the vendor must configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// Failover priority, first leads; every region appears once.
    Failover {
        /// Region names in priority order.
        order: Vec<String>,
    },
    /// A weight for every region.
    Weighted {
        /// Region name → weight.
        weights: BTreeMap<String, u32>,
    },
    /// Every region answers, nearest first.
    Latency,
}

impl Desired {
    /// The failover order, or empty.
    pub fn order(&self) -> &[String] {
        match self {
            Self::Failover { order } => order,
            _ => &[],
        }
    }

    /// The weights, or empty.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        match self {
            Self::Weighted { weights } => weights.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// The state this configuration amounts to.
    pub fn as_state(&self) -> RoutingState {
        RoutingState {
            order: self.order().to_vec(),
            weights: self.weights(),
        }
    }
}

/// The largest weight any vendor accepts (Route 53's limit).
pub const MAX_WEIGHT: u32 = 255;

impl GslbInput {
    /// Parses and validates a JSON input. Errors are invalid-input with the field path.
    pub fn from_json(json: &str) -> Result<Self, StepError> {
        let input: Self =
            serde_json::from_str(json).map_err(|e| StepError::invalid(format!("with: {e}")))?;
        input.validate()?;
        Ok(input)
    }

    /// The record as an absolute lower-case name with a trailing dot.
    pub fn fqdn(&self) -> String {
        absolute(&self.record)
    }

    /// The zone as an absolute lower-case name with a trailing dot.
    pub fn zone_fqdn(&self) -> String {
        absolute(&self.zone)
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The region that leads under policy failover after `apply`: the one marked `primary`, else
    /// the first.
    pub fn declared_primary(&self) -> &Region {
        self.regions
            .iter()
            .find(|r| r.primary)
            .unwrap_or(&self.regions[0])
    }

    /// The region names in declared order.
    pub fn region_names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }

    /// Checks everything that does not need the provider. Vendor-specific limits are checked by
    /// the vendor on top.
    pub fn validate(&self) -> Result<(), StepError> {
        let zone = self.zone_fqdn();
        if zone == "." || !is_hostname(zone.trim_end_matches('.')) {
            return Err(StepError::invalid(format!(
                "zone: `{}` is not a DNS name",
                self.zone
            )));
        }
        let fqdn = self.fqdn();
        if !is_hostname(fqdn.trim_end_matches('.')) {
            return Err(StepError::invalid(format!(
                "record: `{}` is not a DNS name",
                self.record
            )));
        }
        if fqdn != zone && !fqdn.ends_with(&format!(".{zone}")) {
            return Err(StepError::invalid(format!(
                "record: `{}` is not inside zone `{}`; use a name ending in .{}",
                self.record,
                self.zone,
                zone.trim_end_matches('.')
            )));
        }
        if !(1..=86400).contains(&self.ttl) {
            return Err(StepError::invalid(format!(
                "ttl: {} is outside 1-86400 seconds",
                self.ttl
            )));
        }
        if self.timeout_ms > 3_600_000 {
            return Err(StepError::invalid(format!(
                "timeout_ms: {} is more than one hour",
                self.timeout_ms
            )));
        }
        if self.regions.is_empty() {
            return Err(StepError::invalid(
                "regions: at least one region is required",
            ));
        }
        let mut names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        for r in &self.regions {
            if !is_region_name(&r.name) {
                return Err(StepError::invalid(format!(
                    "regions: name `{}` must be 1-63 letters, digits, `-` or `_`, starting with a letter or digit",
                    r.name
                )));
            }
            if !names.insert(r.name.as_str()) {
                return Err(StepError::invalid(format!(
                    "regions: `{}` is listed twice",
                    r.name
                )));
            }
            self.validate_endpoint(r)?;
            if !endpoints.insert(r.endpoint.to_ascii_lowercase()) {
                return Err(StepError::invalid(format!(
                    "regions[{}].endpoint: `{}` is used by another region; each region needs its own endpoint",
                    r.name, r.endpoint
                )));
            }
            if let Some(w) = r.weight.filter(|w| *w > MAX_WEIGHT) {
                return Err(StepError::invalid(format!(
                    "regions[{}].weight: {w} is above {MAX_WEIGHT}",
                    r.name
                )));
            }
            if let Some(hc) = &r.health_check {
                hc.validate(&r.name)?;
            }
        }
        if self.regions.iter().filter(|r| r.primary).count() > 1 {
            return Err(StepError::invalid(
                "regions: more than one region has `primary: true`",
            ));
        }
        match self.action {
            GslbAction::Failover => {
                let Some(target) = &self.target_region else {
                    return Err(StepError::invalid(
                        "target_region: required with action failover",
                    ));
                };
                if self.region(target).is_none() {
                    return Err(StepError::invalid(format!(
                        "target_region: `{target}` is not one of the regions ({})",
                        self.region_names().join(", ")
                    )));
                }
                if self.policy == RoutingPolicy::Latency {
                    return Err(StepError::invalid(
                        "action failover needs policy failover or weighted: latency routing answers every healthy region; \
                         take a region out with its health check, or use policy weighted and set-weights",
                    ));
                }
            }
            GslbAction::SetWeights => {
                if self.policy != RoutingPolicy::Weighted {
                    return Err(StepError::invalid(format!(
                        "action set-weights needs policy weighted (policy is {})",
                        self.policy.as_str()
                    )));
                }
                let Some(weights) = &self.weights else {
                    return Err(StepError::invalid(
                        "weights: required with action set-weights",
                    ));
                };
                for (name, w) in weights {
                    if self.region(name).is_none() {
                        return Err(StepError::invalid(format!(
                            "weights: `{name}` is not one of the regions ({})",
                            self.region_names().join(", ")
                        )));
                    }
                    if *w > MAX_WEIGHT {
                        return Err(StepError::invalid(format!(
                            "weights.{name}: {w} is above {MAX_WEIGHT}"
                        )));
                    }
                }
            }
            GslbAction::Apply | GslbAction::Status => {}
        }
        if self.policy == RoutingPolicy::Weighted
            && self.action == GslbAction::Apply
            && self.regions.iter().all(|r| r.declared_weight() == 0)
        {
            return Err(StepError::invalid(
                "regions: policy weighted needs at least one region with weight > 0",
            ));
        }
        Ok(())
    }

    fn validate_endpoint(&self, r: &Region) -> Result<(), StepError> {
        let ok = match self.record_type {
            RecordType::A => r.endpoint.parse::<Ipv4Addr>().is_ok(),
            RecordType::Aaaa => r.endpoint.parse::<Ipv6Addr>().is_ok(),
            RecordType::Cname => {
                r.endpoint.parse::<std::net::IpAddr>().is_err()
                    && is_hostname(r.endpoint.trim_end_matches('.'))
            }
        };
        if ok {
            return Ok(());
        }
        let want = match self.record_type {
            RecordType::A => "an IPv4 address",
            RecordType::Aaaa => "an IPv6 address",
            RecordType::Cname => "a host name",
        };
        Err(StepError::invalid(format!(
            "regions[{}].endpoint: `{}` must be {want} for a {} record",
            r.name,
            r.endpoint,
            self.record_type.as_str()
        )))
    }

    /// What the provider must end up with, given what it has now. Not for action status.
    pub fn desired(&self, current: &RoutingState) -> Result<Desired, StepError> {
        let declared_weights = || {
            self.regions
                .iter()
                .map(|r| (r.name.clone(), r.declared_weight()))
                .collect::<BTreeMap<_, _>>()
        };
        let declared_order = || {
            let primary = self.declared_primary().name.clone();
            let mut order = vec![primary.clone()];
            order.extend(
                self.regions
                    .iter()
                    .filter(|r| r.name != primary)
                    .map(|r| r.name.clone()),
            );
            order
        };
        match (self.action, self.policy) {
            (_, RoutingPolicy::Latency) => Ok(Desired::Latency),
            (GslbAction::Apply | GslbAction::Status, RoutingPolicy::Failover) => {
                Ok(Desired::Failover {
                    order: declared_order(),
                })
            }
            (GslbAction::Apply | GslbAction::Status, RoutingPolicy::Weighted) => {
                Ok(Desired::Weighted {
                    weights: declared_weights(),
                })
            }
            (GslbAction::Failover, RoutingPolicy::Failover) => {
                let target = self.target()?;
                // Keep the rest of the current order, so a failover moves one region only.
                let base = if self.is_complete_order(&current.order) {
                    current.order.clone()
                } else {
                    declared_order()
                };
                let mut order = vec![target.to_owned()];
                order.extend(base.into_iter().filter(|n| n != target));
                Ok(Desired::Failover { order })
            }
            (GslbAction::Failover, RoutingPolicy::Weighted) => {
                let target = self.target()?;
                let weights = self
                    .regions
                    .iter()
                    .map(|r| {
                        let w = if r.name == target {
                            r.declared_weight().max(1)
                        } else {
                            0
                        };
                        (r.name.clone(), w)
                    })
                    .collect();
                Ok(Desired::Weighted { weights })
            }
            (GslbAction::SetWeights, RoutingPolicy::Weighted) => {
                let set = self.weights.clone().unwrap_or_default();
                let weights: BTreeMap<String, u32> = self
                    .regions
                    .iter()
                    .map(|r| {
                        let w = set
                            .get(&r.name)
                            .or_else(|| current.weights.get(&r.name))
                            .copied()
                            .unwrap_or_else(|| r.declared_weight());
                        (r.name.clone(), w)
                    })
                    .collect();
                if weights.values().all(|w| *w == 0) {
                    return Err(StepError::invalid(
                        "weights: every region would have weight 0; keep at least one region above 0",
                    ));
                }
                Ok(Desired::Weighted { weights })
            }
            (GslbAction::SetWeights, RoutingPolicy::Failover) => Err(StepError::invalid(
                "action set-weights needs policy weighted",
            )),
        }
    }

    fn target(&self) -> Result<&str, StepError> {
        self.target_region
            .as_deref()
            .ok_or_else(|| StepError::invalid("target_region: required with action failover"))
    }

    fn is_complete_order(&self, order: &[String]) -> bool {
        order.len() == self.regions.len() && self.regions.iter().all(|r| order.contains(&r.name))
    }

    /// What compensation must restore, given the state read before the change.
    pub fn undo_for(&self, before: &RoutingState) -> Option<Undo> {
        match (self.action, self.policy) {
            (GslbAction::Failover, RoutingPolicy::Failover) => {
                before.order.first().map(|lead| Undo {
                    target_region: Some(lead.clone()),
                    weights: None,
                })
            }
            (GslbAction::Failover | GslbAction::SetWeights, RoutingPolicy::Weighted)
                if !before.weights.is_empty() =>
            {
                Some(Undo {
                    target_region: None,
                    weights: Some(before.weights.clone()),
                })
            }
            _ => None,
        }
    }

    /// The input that compensates this one, or `None` when there is nothing to undo (apply,
    /// status). Without a recorded `undo` a failover returns to the declared primary (failover)
    /// or the declared weights (weighted), which is the state `apply` establishes.
    pub fn compensation(&self, undo: Option<&Undo>) -> Option<GslbInput> {
        if !matches!(self.action, GslbAction::Failover | GslbAction::SetWeights) {
            return None;
        }
        let mut back = self.clone();
        back.weights = None;
        back.target_region = None;
        match (undo, self.policy) {
            (
                Some(Undo {
                    target_region: Some(t),
                    ..
                }),
                RoutingPolicy::Failover,
            ) => {
                back.action = GslbAction::Failover;
                back.target_region = Some(t.clone());
            }
            (
                Some(Undo {
                    weights: Some(w), ..
                }),
                RoutingPolicy::Weighted,
            ) => {
                back.action = GslbAction::SetWeights;
                back.weights = Some(
                    w.iter()
                        .filter(|(k, _)| self.region(k).is_some())
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                );
            }
            (_, RoutingPolicy::Failover) => {
                back.action = GslbAction::Failover;
                back.target_region = Some(self.declared_primary().name.clone());
            }
            (_, RoutingPolicy::Weighted) => {
                back.action = GslbAction::SetWeights;
                back.weights = Some(
                    self.regions
                        .iter()
                        .map(|r| (r.name.clone(), r.declared_weight()))
                        .collect(),
                );
            }
            (_, RoutingPolicy::Latency) => return None,
        }
        Some(back)
    }

    /// A vendor's `compensate`: runs [`compensation`](Self::compensation) through the vendor's
    /// `run`, or `Ok(None)` when there is nothing to undo.
    pub fn compensate_with(
        &self,
        undo: Option<&Undo>,
        run: impl FnOnce(&GslbInput) -> Result<GslbOutput, StepError>,
    ) -> Result<Option<GslbOutput>, StepError> {
        match self.compensation(undo) {
            Some(back) => run(&back).map(Some),
            None => Ok(None),
        }
    }

    /// The regions DNS answers with, given the configured routing and reported health:
    /// failover → the first region not known to be unhealthy; weighted → regions with weight > 0
    /// not known to be unhealthy; latency → every region not known to be unhealthy. When every
    /// candidate is unhealthy, providers keep answering with all candidates, and so does this.
    pub fn answered(&self, state: &RoutingState, status: &BTreeMap<String, Health>) -> Vec<String> {
        let up = |n: &String| status.get(n) != Some(&Health::Unhealthy);
        match self.policy {
            RoutingPolicy::Failover => {
                let lead = state.order.iter().find(|n| up(n)).or(state.order.first());
                lead.into_iter().cloned().collect()
            }
            RoutingPolicy::Weighted => {
                let positive: Vec<String> = self
                    .regions
                    .iter()
                    .filter(|r| state.weights.get(&r.name).copied().unwrap_or(0) > 0)
                    .map(|r| r.name.clone())
                    .collect();
                let healthy: Vec<String> = positive.iter().filter(|n| up(n)).cloned().collect();
                if healthy.is_empty() {
                    positive
                } else {
                    healthy
                }
            }
            RoutingPolicy::Latency => {
                let all = self.region_names();
                let healthy: Vec<String> = all.iter().filter(|n| up(n)).cloned().collect();
                if healthy.is_empty() { all } else { healthy }
            }
        }
    }

    /// Builds the output common to all vendors from the state after the step.
    pub fn output(
        &self,
        vendor: &str,
        after: &RoutingState,
        status: BTreeMap<String, Health>,
    ) -> GslbOutput {
        let active = self.answered(after, &status);
        GslbOutput {
            vendor: vendor.to_owned(),
            action: self.action,
            record: self.fqdn(),
            policy: self.policy,
            active,
            order: if self.policy == RoutingPolicy::Failover {
                after.order.clone()
            } else {
                Vec::new()
            },
            weights: if self.policy == RoutingPolicy::Weighted {
                after.weights.clone()
            } else {
                BTreeMap::new()
            },
            changes: Vec::new(),
            change_id: None,
            synced: true,
            status,
            undo: None,
            planned: false,
        }
    }
}

/// `name` lower-cased with exactly one trailing dot.
pub fn absolute(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Whether `s` (without trailing dot) is a plausible DNS host name: labels of 1-63 letters,
/// digits, `-` or `_`, not starting or ending with `-`, 253 characters at most.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_region_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(extra: serde_json::Value) -> GslbInput {
        let mut base = json!({
            "zone": "example.com",
            "record": "api.example.com",
            "policy": "failover",
            "regions": [
                {"name": "eu-west-1", "endpoint": "203.0.113.10", "health_check": {"type": "http", "port": 7085}},
                {"name": "us-east-1", "endpoint": "198.51.100.20", "weight": 3},
                {"name": "ap-south-1", "endpoint": "192.0.2.30"}
            ],
            "provider": {}
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn state(order: &[&str], weights: &[(&str, u32)]) -> RoutingState {
        RoutingState {
            order: order.iter().map(|s| s.to_string()).collect(),
            weights: weights.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn defaults_and_names() {
        let i = input(json!({}));
        i.validate().unwrap();
        assert_eq!(i.action, GslbAction::Apply);
        assert_eq!(i.ttl, 60);
        assert!(i.wait);
        assert_eq!(i.fqdn(), "api.example.com.");
        assert_eq!(i.zone_fqdn(), "example.com.");
        let hc = i.regions[0].health_check.as_ref().unwrap();
        assert_eq!(
            (
                hc.port(),
                hc.path.as_str(),
                hc.interval,
                hc.failure_threshold
            ),
            (7085, "/status/ready", 10, 3)
        );
        assert_eq!(
            hc.url("api.example.com"),
            "http://api.example.com:7085/status/ready"
        );
        assert_eq!(i.declared_primary().name, "eu-west-1");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = GslbInput::from_json(r#"{"zone":"a.b","record":"a.b","policy":"latency","regions":[],"provider":{},"bogus":1}"#)
            .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains("bogus")),
            "{e:?}"
        );
        let e = GslbInput::from_json(
            r#"{"zone":"a.b","record":"a.b","policy":"latency","regions":[],"provider":{"route53":{"zone":"x"}}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, StepError::InvalidInput(_)));
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!({"record": "api.other.org"}), "not inside zone"),
            (json!({"type": "AAAA"}), "must be an IPv6 address"),
            (json!({"type": "CNAME"}), "must be a host name"),
            (json!({"ttl": 0}), "ttl"),
            (json!({"action": "failover"}), "target_region: required"),
            (
                json!({"action": "failover", "target_region": "mars"}),
                "`mars` is not one of",
            ),
            (
                json!({"action": "set-weights", "weights": {"eu-west-1": 1}}),
                "needs policy weighted",
            ),
            (
                json!({"policy": "weighted", "action": "set-weights", "weights": {"eu-west-1": 300}}),
                "above 255",
            ),
            (
                json!({"policy": "latency", "action": "failover", "target_region": "eu-west-1"}),
                "latency routing",
            ),
            (json!({"regions": []}), "at least one region"),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1"}, {"name": "a", "endpoint": "192.0.2.2"}]}),
                "listed twice",
            ),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1"}, {"name": "b", "endpoint": "192.0.2.1"}]}),
                "used by another region",
            ),
            (
                json!({"regions": [{"name": "a b", "endpoint": "192.0.2.1"}]}),
                "must be 1-63",
            ),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1", "primary": true}, {"name": "b", "endpoint": "192.0.2.2", "primary": true}]}),
                "more than one",
            ),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1", "health_check": {"type": "tcp"}}]}),
                "needs `port`",
            ),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1", "health_check": {"path": "/a'b"}}]}),
                "no spaces or quotes",
            ),
            (
                json!({"regions": [{"name": "a", "endpoint": "192.0.2.1", "health_check": {"failure_threshold": 11}}]}),
                "failure_threshold",
            ),
            (
                json!({"policy": "weighted", "regions": [{"name": "a", "endpoint": "192.0.2.1", "weight": 0}]}),
                "weight > 0",
            ),
        ];
        for (extra, want) in cases {
            let e = input(extra.clone()).validate().unwrap_err();
            assert!(
                matches!(&e, StepError::InvalidInput(m) if m.contains(want)),
                "{extra}: {e:?}"
            );
        }
        let mut cname = input(json!({"type": "CNAME"}));
        for (i, r) in cname.regions.iter_mut().enumerate() {
            r.endpoint = format!("gw{i}.example.net");
        }
        cname.validate().unwrap();
    }

    #[test]
    fn apply_uses_declared_primary_and_weights() {
        let mut i = input(json!({}));
        i.regions[1].primary = true;
        assert_eq!(
            i.desired(&RoutingState::default()).unwrap(),
            Desired::Failover {
                order: vec!["us-east-1".into(), "eu-west-1".into(), "ap-south-1".into()]
            }
        );
        let w = input(json!({"policy": "weighted"}));
        assert_eq!(
            w.desired(&RoutingState::default()).unwrap().weights(),
            BTreeMap::from([
                ("ap-south-1".to_string(), 1),
                ("eu-west-1".to_string(), 1),
                ("us-east-1".to_string(), 3)
            ])
        );
        assert_eq!(
            input(json!({"policy": "latency"}))
                .desired(&RoutingState::default())
                .unwrap(),
            Desired::Latency
        );
    }

    #[test]
    fn failover_moves_only_the_target_and_records_undo() {
        let i = input(json!({"action": "failover", "target_region": "ap-south-1"}));
        let before = state(&["us-east-1", "eu-west-1", "ap-south-1"], &[]);
        assert_eq!(
            i.desired(&before).unwrap().order(),
            ["ap-south-1", "us-east-1", "eu-west-1"]
        );
        // An unknown or partial current order falls back to the declared one.
        assert_eq!(
            i.desired(&state(&["x"], &[])).unwrap().order(),
            ["ap-south-1", "eu-west-1", "us-east-1"]
        );
        let undo = i.undo_for(&before).unwrap();
        assert_eq!(undo.target_region.as_deref(), Some("us-east-1"));
        let back = i.compensation(Some(&undo)).unwrap();
        assert_eq!(
            (back.action, back.target_region.as_deref()),
            (GslbAction::Failover, Some("us-east-1"))
        );
        // Without a recorded undo, compensation returns to the declared primary.
        assert_eq!(
            i.compensation(None).unwrap().target_region.as_deref(),
            Some("eu-west-1")
        );
        assert!(input(json!({})).compensation(None).is_none());
    }

    #[test]
    fn weighted_failover_and_set_weights() {
        let i = input(
            json!({"policy": "weighted", "action": "failover", "target_region": "us-east-1"}),
        );
        let before = state(
            &[],
            &[("eu-west-1", 5), ("us-east-1", 3), ("ap-south-1", 1)],
        );
        assert_eq!(
            i.desired(&before).unwrap().weights(),
            BTreeMap::from([
                ("ap-south-1".to_string(), 0),
                ("eu-west-1".to_string(), 0),
                ("us-east-1".to_string(), 3)
            ])
        );
        let undo = i.undo_for(&before).unwrap();
        let back = i.compensation(Some(&undo)).unwrap();
        assert_eq!(back.action, GslbAction::SetWeights);
        assert_eq!(back.weights.as_ref().unwrap()["eu-west-1"], 5);
        assert_eq!(
            back.desired(&RoutingState::default()).unwrap().weights(),
            before.weights
        );

        let s = input(
            json!({"policy": "weighted", "action": "set-weights", "weights": {"eu-west-1": 0}}),
        );
        // Missing regions keep their current weight, else the declared one.
        let cur = state(&[], &[("us-east-1", 7)]);
        assert_eq!(
            s.desired(&cur).unwrap().weights(),
            BTreeMap::from([
                ("ap-south-1".to_string(), 1),
                ("eu-west-1".to_string(), 0),
                ("us-east-1".to_string(), 7)
            ])
        );
        let all_zero = input(json!({"policy": "weighted", "action": "set-weights",
            "weights": {"eu-west-1": 0, "us-east-1": 0, "ap-south-1": 0}}));
        assert!(matches!(
            all_zero.desired(&cur),
            Err(StepError::InvalidInput(_))
        ));
    }

    #[test]
    fn answered_follows_health() {
        let i = input(json!({}));
        let st = state(&["eu-west-1", "us-east-1", "ap-south-1"], &[]);
        let mut health = BTreeMap::new();
        assert_eq!(i.answered(&st, &health), ["eu-west-1"]);
        health.insert("eu-west-1".to_string(), Health::Unhealthy);
        assert_eq!(i.answered(&st, &health), ["us-east-1"]);
        health.insert("us-east-1".to_string(), Health::Unhealthy);
        health.insert("ap-south-1".to_string(), Health::Unhealthy);
        assert_eq!(i.answered(&st, &health), ["eu-west-1"]);

        let w = input(json!({"policy": "weighted"}));
        let st = state(
            &[],
            &[("eu-west-1", 0), ("us-east-1", 3), ("ap-south-1", 1)],
        );
        let health = BTreeMap::from([("ap-south-1".to_string(), Health::Unhealthy)]);
        assert_eq!(w.answered(&st, &health), ["us-east-1"]);
        let l = input(json!({"policy": "latency"}));
        assert_eq!(
            l.answered(&RoutingState::default(), &health),
            ["eu-west-1", "us-east-1"]
        );
    }

    #[test]
    fn schema_is_generated_and_output_round_trips() {
        let schema = serde_json::to_value(schemars::schema_for!(GslbInput)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for key in [
            "action",
            "zone",
            "record",
            "type",
            "ttl",
            "policy",
            "regions",
            "target_region",
            "weights",
            "provider",
            "wait",
            "timeout_ms",
        ] {
            assert!(props.contains_key(key), "schema lacks {key}");
        }
        assert_eq!(schema["additionalProperties"], json!(false));
        let i = input(json!({}));
        let out = i.output(
            "test",
            &state(&["eu-west-1", "us-east-1", "ap-south-1"], &[]),
            BTreeMap::new(),
        );
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["active"], json!(["eu-west-1"]));
        assert_eq!(v["record"], json!("api.example.com."));
        assert!(v.get("weights").is_none());
        let back: GslbOutput = serde_json::from_value(v).unwrap();
        assert_eq!(back, out);
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("api.example.com"));
        assert!(is_hostname("_acme.example.com"));
        assert!(!is_hostname("-a.example.com"));
        assert!(!is_hostname("a..b"));
        assert!(!is_hostname("a b"));
        assert_eq!(absolute("API.Example.com."), "api.example.com.");
    }
}
