//! `gslb-powerdns`: the GSLB family on a PowerDNS Authoritative server (HTTP API, `X-API-Key`).
//!
//! Mapping of the family schema (`provider.powerdns.records` chooses the flavour):
//! - `lua` (default; needs `enable-lua-records`), health-checked by PowerDNS itself:
//!   - policy failover → `LUA A "ifurlup('<url>', {{'<ip1>'}, {'<ip2>'}, …})"`: ordered failover
//!     sets, the first set with a live address answers; failover reorders the sets;
//!   - policy weighted → `LUA A "pickwrandom({{<w>, '<ip>'}, …})"` (regions with weight 0 are
//!     left out; PowerDNS does not health-check weighted picks);
//!   - policy latency → `ifurlup(…, {{all ips}}, {selector='pickclosest'})` (needs the GeoIP
//!     backend to be meaningful; without it PowerDNS picks among live addresses).
//! - `plain`: the step itself switches a plain A/AAAA/CNAME rrset to the active region's
//!   endpoint (failover) or to every region with weight > 0 (weighted; equal shares).
//!
//! The LUA URL is the regions' common http(s) health check (`<type>://<host>:<port><path>`);
//! PowerDNS probes every address with it at its server-wide `lua-health-checks-interval`.
//! PowerDNS 4.7 has no per-record failure threshold (`minimumFailures` is ignored: verified) and
//! `ifportup` has no ordered sets, so `failure_threshold` is not honoured and tcp checks are
//! refused for failover.
//!
//! The zone is created (kind Native) when missing. The rrset is read first and replaced only when
//! its content or TTL differ (and an rrset of the other flavour at the same name is deleted in
//! the same PATCH), so a re-run changes nothing. With `wait` the zone is read back.
//! Costs per run: one zone read (the whole zone: PowerDNS 4.7 cannot filter), at most one
//! create and one PATCH, one read-back, and with `probe_health` one GET per region.

use std::collections::BTreeMap;

use meridian_families::gslb::{
    ChangeOp, Desired, GslbAction, GslbChange, GslbInput, GslbOutput, Health, HealthCheck,
    HealthCheckType, PowerDnsProvider, PowerDnsRecords, RecordType, RoutingPolicy, RoutingState,
    Undo,
};
use meridian_families::{Env, StepError};
use meridian_sdk::http::{Request, Response, join_url};
use serde_json::{Value, json};

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "powerdns";

/// Runs one GSLB action against PowerDNS. Idempotent.
pub fn run(env: &Env<'_>, input: &GslbInput) -> Result<GslbOutput, StepError> {
    input.validate()?;
    let cfg = input.provider.powerdns.as_ref().ok_or_else(|| {
        StepError::invalid(
            "provider.powerdns: required by gslb-powerdns (endpoint, server_id, api_key_secret)",
        )
    })?;
    let check = validate_for_powerdns(env, input, cfg)?;
    let key = env.secret(&cfg.api_key_secret, "PowerDNS API key")?;
    let api = Api {
        env: *env,
        base: join_url(&cfg.endpoint, &format!("api/v1/servers/{}", cfg.server_id)),
        key,
        secret: &cfg.api_key_secret,
    };
    let zone = input.zone_fqdn();
    let name = input.fqdn();
    let rtype = input.record_type.as_str();
    let mut changes = Vec::new();
    let mut planned = false;

    let zone_json = match api.get_zone(&zone)? {
        Some(z) => z,
        None if input.action == GslbAction::Status || !cfg.create_zone => {
            return Err(StepError::fatal(format!(
                "PowerDNS zone `{zone}` does not exist on {}; create it, or run an action other than status with \
                 provider.powerdns.create_zone: true",
                cfg.endpoint
            )));
        }
        None => {
            let nameservers = if cfg.nameservers.is_empty() {
                vec![format!("ns1.{zone}")]
            } else {
                cfg.nameservers.clone()
            };
            let body = json!({"name": zone, "kind": "Native", "nameservers": nameservers});
            planned |= api
                .send("create zone", "POST", "zones", Some(&body))?
                .recorded;
            changes.push(GslbChange::new(
                ChangeOp::Create,
                "zone",
                &zone,
                format!("Native, NS {}", nameservers.join(",")),
            ));
            // The fresh zone has only SOA and NS at the apex; nothing at the record's name yet.
            json!({"rrsets": []})
        }
    };
    let rrset = |t: &str| -> Option<Value> {
        zone_json["rrsets"]
            .as_array()?
            .iter()
            .find(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                    && r["type"] == t
            })
            .cloned()
    };
    let lua_now = rrset("LUA");
    let plain_now = rrset(rtype);
    let before = state_of(input, lua_now.as_ref(), plain_now.as_ref());

    if input.action == GslbAction::Status {
        let status = probe(env, input, cfg, check.as_ref());
        return Ok(input.output(VENDOR, &before, status));
    }

    let desired = input.desired(&before)?;
    let undo: Option<Undo> = input.undo_for(&before);
    let (want_type, want_records) = records_for(input, cfg, &desired, check.as_ref());
    let (stale_type, stale) = if want_type == "LUA" {
        (rtype, plain_now.as_ref())
    } else {
        ("LUA", lua_now.as_ref())
    };
    let current = if want_type == "LUA" {
        lua_now.as_ref()
    } else {
        plain_now.as_ref()
    };

    let mut rrsets = Vec::new();
    if !same_rrset(current, input.ttl, &want_records) {
        rrsets.push(json!({
            "name": name, "type": want_type, "ttl": input.ttl, "changetype": "REPLACE",
            "records": want_records.iter().map(|c| json!({"content": c, "disabled": false})).collect::<Vec<_>>(),
        }));
        let op = if current.is_some() {
            ChangeOp::Update
        } else {
            ChangeOp::Create
        };
        changes.push(GslbChange::new(
            op,
            "record",
            format!("{name} {want_type}"),
            want_records.join(" | "),
        ));
    }
    if stale.is_some() {
        rrsets.push(json!({"name": name, "type": stale_type, "changetype": "DELETE"}));
        changes.push(GslbChange::new(
            ChangeOp::Delete,
            "record",
            format!("{name} {stale_type}"),
            "replaced by the other record flavour",
        ));
    }
    let mut synced = true;
    if !rrsets.is_empty() {
        let resp = api.send(
            "change records",
            "PATCH",
            &format!("zones/{zone}"),
            Some(&json!({"rrsets": rrsets})),
        )?;
        planned |= resp.recorded;
    }
    if planned {
        synced = false;
    } else if input.wait && !rrsets.is_empty() {
        // PowerDNS serves a change as soon as the PATCH returns (it purges its caches for the
        // zone); reading back confirms no concurrent writer replaced it.
        let back = api.get_zone(&zone)?.unwrap_or(Value::Null);
        let now = back["rrsets"].as_array().and_then(|a| {
            a.iter().find(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                    && r["type"] == want_type
            })
        });
        if !same_rrset(now, input.ttl, &want_records) {
            return Err(StepError::retryable(format!(
                "PowerDNS {name} {want_type}: the read-back differs from what was written; retrying is safe"
            )));
        }
    }

    let status = probe(env, input, cfg, check.as_ref());
    Ok(input
        .output(VENDOR, &desired.as_state(), status)
        .applied(changes, synced, undo, planned))
}

/// Undoes a failover or set-weights (see [`GslbInput::compensation`]).
pub fn compensate(
    env: &Env<'_>,
    input: &GslbInput,
    undo: Option<&Undo>,
) -> Result<Option<GslbOutput>, StepError> {
    input.compensate_with(undo, |back| run(env, back))
}

/// Checks the combinations PowerDNS can serve and returns the health check LUA records use.
fn validate_for_powerdns(
    env: &Env<'_>,
    input: &GslbInput,
    cfg: &PowerDnsProvider,
) -> Result<Option<HealthCheck>, StepError> {
    if cfg.endpoint.is_empty() || meridian_sdk::http::split_url(&cfg.endpoint).is_none() {
        return Err(StepError::invalid(format!(
            "provider.powerdns.endpoint: `{}` is not an http(s) URL like http://127.0.0.1:8081",
            cfg.endpoint
        )));
    }
    let mut checks: Vec<&HealthCheck> = input
        .regions
        .iter()
        .filter_map(|r| r.health_check.as_ref())
        .collect();
    checks.dedup();
    let common = match checks.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        _ => {
            if cfg.records == PowerDnsRecords::Lua {
                return Err(StepError::invalid(
                    "regions[*].health_check: LUA records probe every region with one URL, so the regions' health checks \
                     must be identical (or given on one region only)",
                ));
            }
            None
        }
    };
    match (cfg.records, input.policy) {
        (PowerDnsRecords::Lua, _) if input.record_type == RecordType::Cname => {
            Err(StepError::invalid(
                "type CNAME: PowerDNS LUA health checks work on addresses; use type A/AAAA, or provider.powerdns.records: plain",
            ))
        }
        (PowerDnsRecords::Lua, RoutingPolicy::Failover | RoutingPolicy::Latency) => match &common {
            None => Err(StepError::invalid(
                "regions[*].health_check: LUA failover needs an http/https health check (ifurlup); add one, or set \
                 provider.powerdns.records: plain to switch records without health checks",
            )),
            Some(hc) if hc.kind == HealthCheckType::Tcp => Err(StepError::invalid(
                "regions[*].health_check.type: tcp cannot order failover on PowerDNS 4.7 (ifportup has no ordered sets); \
                 use an http or https check",
            )),
            Some(_) => Ok(common),
        },
        (PowerDnsRecords::Lua, RoutingPolicy::Weighted) => {
            if common.is_some() {
                env.log.warn("PowerDNS pickwrandom records are not health-checked: weights apply even to a down region");
            }
            Ok(common)
        }
        (PowerDnsRecords::Plain, RoutingPolicy::Latency) => Err(StepError::invalid(
            "policy latency needs provider.powerdns.records: lua (pickclosest); plain records cannot steer by location",
        )),
        (PowerDnsRecords::Plain, _) => Ok(common),
    }
}

/// The rrset type and record contents a desired routing needs.
fn records_for(
    input: &GslbInput,
    cfg: &PowerDnsProvider,
    desired: &Desired,
    check: Option<&HealthCheck>,
) -> (String, Vec<String>) {
    let rtype = input.record_type.as_str();
    let endpoint = |region: &str| {
        input
            .region(region)
            .map(|r| r.endpoint.clone())
            .unwrap_or_default()
    };
    let url = || {
        let hc = check.cloned().unwrap_or_else(|| HealthCheck {
            kind: HealthCheckType::Http,
            port: None,
            path: "/".into(),
            interval: 10,
            failure_threshold: 3,
            host: None,
        });
        let host = hc
            .host
            .clone()
            .unwrap_or_else(|| input.fqdn().trim_end_matches('.').to_owned());
        hc.url(&host)
    };
    match (cfg.records, desired) {
        (PowerDnsRecords::Lua, Desired::Failover { order }) => {
            let sets: Vec<String> = order
                .iter()
                .map(|r| format!("{{'{}'}}", endpoint(r)))
                .collect();
            (
                "LUA".into(),
                vec![format!(
                    "{rtype} \"ifurlup('{}', {{{}}})\"",
                    url(),
                    sets.join(", ")
                )],
            )
        }
        (PowerDnsRecords::Lua, Desired::Latency) => {
            let all: Vec<String> = input
                .regions
                .iter()
                .map(|r| format!("'{}'", r.endpoint))
                .collect();
            (
                "LUA".into(),
                vec![format!(
                    "{rtype} \"ifurlup('{}', {{{{{}}}}}, {{selector='pickclosest'}})\"",
                    url(),
                    all.join(", ")
                )],
            )
        }
        (PowerDnsRecords::Lua, Desired::Weighted { weights }) => {
            let picks: Vec<String> = input
                .regions
                .iter()
                .filter_map(|r| {
                    let w = weights.get(&r.name).copied().unwrap_or(0);
                    (w > 0).then(|| format!("{{{w}, '{}'}}", r.endpoint))
                })
                .collect();
            (
                "LUA".into(),
                vec![format!("{rtype} \"pickwrandom({{{}}})\"", picks.join(", "))],
            )
        }
        (PowerDnsRecords::Plain, Desired::Failover { order }) => (
            rtype.into(),
            vec![plain_content(input, &endpoint(&order[0]))],
        ),
        (PowerDnsRecords::Plain, Desired::Weighted { weights }) => {
            let values = input
                .regions
                .iter()
                .filter(|r| weights.get(&r.name).copied().unwrap_or(0) > 0)
                .map(|r| plain_content(input, &r.endpoint))
                .collect();
            (rtype.into(), values)
        }
        // Refused by validate_for_powerdns; answering every region is the harmless reading.
        (PowerDnsRecords::Plain, Desired::Latency) => (
            rtype.into(),
            input
                .regions
                .iter()
                .map(|r| plain_content(input, &r.endpoint))
                .collect(),
        ),
    }
}

fn plain_content(input: &GslbInput, endpoint: &str) -> String {
    match input.record_type {
        // PowerDNS wants absolute names in CNAME content.
        RecordType::Cname => format!("{}.", endpoint.trim_end_matches('.').to_ascii_lowercase()),
        _ => endpoint.to_owned(),
    }
}

fn same_rrset(current: Option<&Value>, ttl: u32, want: &[String]) -> bool {
    let Some(cur) = current else { return false };
    let mut have: Vec<String> = cur["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["disabled"] != true)
                .filter_map(|r| r["content"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut want: Vec<String> = want.to_vec();
    have.sort();
    want.sort();
    cur["ttl"].as_u64() == Some(u64::from(ttl)) && have == want
}

/// The family routing state of the records PowerDNS has now.
fn state_of(input: &GslbInput, lua: Option<&Value>, plain: Option<&Value>) -> RoutingState {
    let region_of = |addr: &str| {
        input.regions.iter().find(|r| {
            r.endpoint
                .trim_end_matches('.')
                .eq_ignore_ascii_case(addr.trim_end_matches('.'))
        })
    };
    let contents = |rr: Option<&Value>| -> Vec<String> {
        rr.and_then(|r| r["records"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["content"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(content) = contents(lua).first() {
        if let Some(sets) = parse_ifurlup(content) {
            let order = sets
                .iter()
                .filter_map(|s| s.first())
                .filter_map(|ip| region_of(ip))
                .map(|r| r.name.clone())
                .collect();
            return RoutingState {
                order,
                weights: BTreeMap::new(),
            };
        }
        if let Some(picks) = parse_pickwrandom(content) {
            let mut weights: BTreeMap<String, u32> =
                input.regions.iter().map(|r| (r.name.clone(), 0)).collect();
            for (w, ip) in picks {
                if let Some(r) = region_of(&ip) {
                    weights.insert(r.name.clone(), w);
                }
            }
            return RoutingState {
                order: Vec::new(),
                weights,
            };
        }
        return RoutingState::default();
    }
    let present: Vec<&meridian_families::gslb::Region> = contents(plain)
        .iter()
        .filter_map(|c| region_of(c))
        .collect();
    if present.is_empty() {
        return RoutingState::default();
    }
    let weights = input
        .regions
        .iter()
        .map(|r| {
            let on = present.iter().any(|p| p.name == r.name);
            (
                r.name.clone(),
                if on { r.declared_weight().max(1) } else { 0 },
            )
        })
        .collect();
    RoutingState {
        order: present.iter().map(|r| r.name.clone()).collect(),
        weights,
    }
}

/// The single-quoted strings of the address table of an `ifurlup(url, {…})` call, grouped by
/// set. `None` when `content` is not such a call.
pub fn parse_ifurlup(content: &str) -> Option<Vec<Vec<String>>> {
    let rest = &content[content.find("ifurlup(")? + "ifurlup(".len()..];
    let rest = rest.trim_start().strip_prefix('\'')?;
    let rest = &rest[rest.find('\'')? + 1..];
    let table = outer_table(rest)?;
    // `{{'a'}, {'b', 'c'}}` (ordered sets) or `{'a', 'b'}` (one set).
    let inner = &table[1..table.len() - 1];
    let mut sets = Vec::new();
    if inner.trim_start().starts_with('{') {
        let mut s = inner;
        while let Some(t) = outer_table(s) {
            sets.push(quoted(t));
            s = &s[s.find(t)? + t.len()..];
        }
    } else {
        sets.push(quoted(inner));
    }
    Some(sets)
}

/// The `(weight, address)` pairs of a `pickwrandom({{w, 'a'}, …})` call.
pub fn parse_pickwrandom(content: &str) -> Option<Vec<(u32, String)>> {
    let rest = &content[content.find("pickwrandom(")? + "pickwrandom(".len()..];
    let table = outer_table(rest)?;
    let mut s = &table[1..table.len() - 1];
    let mut out = Vec::new();
    while let Some(t) = outer_table(s) {
        let body = &t[1..t.len() - 1];
        let (w, addr) = body.split_once(',')?;
        out.push((w.trim().parse().ok()?, quoted(addr).into_iter().next()?));
        s = &s[s.find(t)? + t.len()..];
    }
    Some(out)
}

/// The first balanced `{…}` in `s`, braces included.
fn outer_table(s: &str) -> Option<&str> {
    let start = s.find('{')?;
    let mut depth = 0usize;
    for (i, c) in s[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[start..=start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

fn quoted(s: &str) -> Vec<String> {
    s.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Probes each region's health-check URL when `probe_health` is on; unknown otherwise.
fn probe(
    env: &Env<'_>,
    input: &GslbInput,
    cfg: &PowerDnsProvider,
    check: Option<&HealthCheck>,
) -> BTreeMap<String, Health> {
    let mut out = BTreeMap::new();
    for r in &input.regions {
        let hc = r.health_check.as_ref().or(check);
        let h = match hc {
            Some(hc) if cfg.probe_health && hc.kind != HealthCheckType::Tcp => {
                let host = hc
                    .host
                    .clone()
                    .unwrap_or_else(|| input.fqdn().trim_end_matches('.').to_owned());
                let addr = if r.endpoint.contains(':') {
                    format!("[{}]", r.endpoint)
                } else {
                    r.endpoint.clone()
                };
                let url = hc.url(&addr);
                let req = Request::new("GET", url.clone()).header("host", host);
                match env.http.send(&req) {
                    Ok(resp) if resp.is_success() => Health::Healthy,
                    Ok(_) => Health::Unhealthy,
                    Err(meridian_sdk::http::HttpError::Denied(why)) => {
                        env.log.warn(&format!("cannot probe {url}: {why}; add it to grants.http or turn probe_health off"));
                        Health::Unknown
                    }
                    Err(_) => Health::Unhealthy,
                }
            }
            _ => Health::Unknown,
        };
        out.insert(r.name.clone(), h);
    }
    out
}

/// The PowerDNS HTTP API of one server.
struct Api<'a> {
    env: Env<'a>,
    base: String,
    key: String,
    secret: &'a str,
}

impl Api<'_> {
    fn send(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, StepError> {
        let url = join_url(&self.base, path);
        let mut req = Request::new(method, url.clone()).header("x-api-key", self.key.clone());
        if let Some(b) = body {
            req = req.json_value(b);
        }
        let what = format!("PowerDNS {what}");
        let resp = self.env.send(&what, req)?;
        if resp.is_success() {
            return Ok(resp);
        }
        let detail = resp.error_message(&["error"]);
        Err(match resp.status {
            422 => StepError::fatal(format!(
                "{what}: PowerDNS refused the records (422): {detail}"
            )),
            404 => StepError::fatal(format!(
                "{what}: {url} not found ({detail}); check provider.powerdns.endpoint and server_id"
            )),
            status => StepError::from_status(
                &what,
                status,
                &detail,
                &format!("the API key in secret `{}`", self.secret),
            ),
        })
    }

    /// The zone with its rrsets, or `None` when it does not exist.
    fn get_zone(&self, zone: &str) -> Result<Option<Value>, StepError> {
        let url = join_url(&self.base, &format!("zones/{zone}"));
        let req = Request::new("GET", url).header("x-api-key", self.key.clone());
        let what = format!("PowerDNS read zone {zone}");
        let resp = self.env.send(&what, req)?;
        match resp.status {
            // 404 with the server's zone list reachable means the zone is missing; 422 is what
            // some versions answer for an unknown zone id.
            404 | 422 => {
                // Tell a wrong endpoint/server id apart from a missing zone.
                self.send("read server", "GET", "", None)?;
                Ok(None)
            }
            s if (200..300).contains(&s) => {
                serde_json::from_slice(&resp.body).map(Some).map_err(|e| {
                    StepError::retryable(format!(
                        "{what}: the answer is not JSON ({e}); check provider.powerdns.endpoint"
                    ))
                })
            }
            status => Err(StepError::from_status(
                &what,
                status,
                &resp.snippet(300),
                &format!("the API key in secret `{}`", self.secret),
            )),
        }
    }
}

meridian_families::gslb_step! {
    /// The `gslb-powerdns` component: the family schema in, the family output out; undo kept in
    /// the run's kv store (see `meridian_families::sdk`).
    GslbPowerDns {
        name: "gslb-powerdns",
        description: "GSLB on PowerDNS Authoritative: LUA ifurlup ordered failover, pickwrandom weights or plain record switching through the HTTP API; creates the zone when missing; failover and set-weights compensate back.",
        needs: &[
            (
                meridian_sdk::GrantKind::Http,
                "the URL in `provider.powerdns.endpoint` (e.g. http://127.0.0.1:8081)",
            ),
            (meridian_sdk::GrantKind::Secret, "the API key named by `provider.powerdns.api_key_secret`"),
        ],
        run: run,
        compensate: compensate,
    }
}

#[cfg(test)]
mod tests;
