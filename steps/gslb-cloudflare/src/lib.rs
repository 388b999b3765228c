//! `gslb-cloudflare`: the GSLB family on Cloudflare Load Balancing (API v4).
//!
//! Mapping of the family schema:
//! - one **monitor** per region with a `health_check` (found again by its description
//!   `meridian:<record>:<region>`); Cloudflare's minimum probe interval is 60 s on most plans,
//!   so shorter intervals are raised to 60 (with a warning);
//! - one **pool** per region, named `<record with dashes>-<region>`, holding one origin (the
//!   region endpoint) and the region's monitor;
//! - one **load balancer** named after the record, with `default_pools` in priority order:
//!   policy failover → `steering_policy: off` (failover in `default_pools` order; failover
//!   reorders the list, the fallback pool is the last one); weighted → `random` steering with
//!   `random_steering.pool_weights` = weight / 255 (Cloudflare weights are 0–1; /255 keeps the
//!   family's 0–255 weights exact when read back); latency → `dynamic_latency`.
//!
//! Every object is read first and only created (POST) or patched (PATCH, which leaves fields
//! this step does not own untouched) when it differs, so a re-run changes nothing. Status reads
//! `pools/{id}/health`. Costs per run: three list calls, one call per object that differs, one
//! read-back of the load balancer with `wait`, and one health read per monitored pool.

pub mod api;

use std::collections::BTreeMap;

use meridian_families::gslb::{
    ChangeOp, CloudflareProvider, Desired, GslbAction, GslbChange, GslbInput, GslbOutput, Health,
    HealthCheck, HealthCheckType, MAX_WEIGHT, Region, RoutingState, Undo,
};
use meridian_families::{Env, StepError};
use serde_json::{Value, json};

use crate::api::Client;

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "cloudflare";

/// Prefix of placeholder ids for objects that plan mode did not create.
const PLANNED: &str = "planned:";

/// Cloudflare's smallest monitor interval on non-enterprise plans, in seconds.
pub const MIN_INTERVAL: u32 = 60;

/// Runs one GSLB action against Cloudflare. Idempotent.
pub fn run(env: &Env<'_>, input: &GslbInput) -> Result<GslbOutput, StepError> {
    input.validate()?;
    let cfg = input.provider.cloudflare.as_ref().ok_or_else(|| {
        StepError::invalid("provider.cloudflare: required by gslb-cloudflare (account_id, zone_id, api_token_secret)")
    })?;
    for (field, value) in [("account_id", &cfg.account_id), ("zone_id", &cfg.zone_id)] {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StepError::invalid(format!(
                "provider.cloudflare.{field}: `{value}` is not a Cloudflare id"
            )));
        }
    }
    let token = env.secret(&cfg.api_token_secret, "Cloudflare API token")?;
    let client = Client::new(*env, &cfg.endpoint, token, &cfg.api_token_secret);
    let account = format!("accounts/{}/load_balancers", cfg.account_id);
    let lbs_path = format!("zones/{}/load_balancers", cfg.zone_id);
    let lb_name = input.fqdn().trim_end_matches('.').to_owned();

    let all_pools = client.list("list pools", &format!("{account}/pools"))?;
    let mut pools: BTreeMap<String, Value> = BTreeMap::new();
    for r in &input.regions {
        let name = pool_name(input, r);
        if let Some(p) = all_pools.iter().find(|p| p["name"] == name.as_str()) {
            pools.insert(r.name.clone(), p.clone());
        }
    }
    let lbs = client.list("list load balancers", &lbs_path)?;
    let lb = lbs.into_iter().find(|l| l["name"] == lb_name.as_str());
    let pool_ids: BTreeMap<String, String> = pools
        .iter()
        .filter_map(|(r, p)| Some((r.clone(), p["id"].as_str()?.to_owned())))
        .collect();
    let before = state_of(input, lb.as_ref(), &pool_ids);

    if input.action == GslbAction::Status {
        let status = health(env, &client, &account, input, &pools, true)?;
        return Ok(input.output(VENDOR, &before, status));
    }

    let desired = input.desired(&before)?;
    let undo: Option<Undo> = input.undo_for(&before);
    let mut changes = Vec::new();
    let mut planned = false;

    // Monitors, one per region with a health check.
    let mut monitor_ids: BTreeMap<String, String> = BTreeMap::new();
    if input.regions.iter().any(|r| r.health_check.is_some()) {
        let monitors = client.list("list monitors", &format!("{account}/monitors"))?;
        for r in &input.regions {
            let Some(hc) = &r.health_check else { continue };
            if hc.interval < MIN_INTERVAL {
                env.log.warn(&format!(
                    "region {}: Cloudflare monitors probe at most every {MIN_INTERVAL} s; interval {} raised to {MIN_INTERVAL}",
                    r.name, hc.interval
                ));
            }
            let want = monitor_body(input, r, hc);
            let existing = monitors
                .iter()
                .find(|m| m["description"] == want["description"]);
            let detail = format!(
                "{} :{}{}",
                hc.kind.as_str(),
                hc.port(),
                if hc.kind == HealthCheckType::Tcp {
                    ""
                } else {
                    &hc.path
                }
            );
            let id = upsert(
                &client,
                &mut changes,
                &mut planned,
                Object {
                    kind: "monitor",
                    name: &r.name,
                    detail: &detail,
                    collection: &format!("{account}/monitors"),
                    existing,
                    want: &want,
                },
            )?;
            monitor_ids.insert(r.name.clone(), id);
        }
    }

    // Pools, one per region.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for r in &input.regions {
        let want = pool_body(input, cfg, r, monitor_ids.get(&r.name));
        let name = pool_name(input, r);
        let id = upsert(
            &client,
            &mut changes,
            &mut planned,
            Object {
                kind: "pool",
                name: &name,
                detail: &format!("origin {}", r.endpoint),
                collection: &format!("{account}/pools"),
                existing: pools.get(&r.name),
                want: &want,
            },
        )?;
        ids.insert(r.name.clone(), id);
    }

    // The load balancer.
    let want = lb_body(input, cfg, &desired, &ids);
    let lb_id = upsert(
        &client,
        &mut changes,
        &mut planned,
        Object {
            kind: "load-balancer",
            name: &lb_name,
            detail: &describe_lb(input, &desired),
            collection: &lbs_path,
            existing: lb.as_ref(),
            want: &want,
        },
    )?;

    let mut synced = !planned;
    if input.wait && !planned {
        // Cloudflare applies a change when the call returns; reading it back confirms that
        // nothing (another writer, a partial failure) left the balancer different.
        let back = client.call(
            "read back load balancer",
            "GET",
            &format!("{lbs_path}/{lb_id}"),
            None,
        )?;
        if !back.as_ref().is_some_and(|b| subset_eq(&want, b)) {
            return Err(StepError::retryable(format!(
                "Cloudflare load balancer {lb_name}: the read-back does not match what was written; retrying is safe"
            )));
        }
        synced = true;
    }

    let all: BTreeMap<String, Value> = ids
        .iter()
        .map(|(r, id)| {
            let mut pool = pools.get(r).cloned().unwrap_or_else(|| json!({}));
            pool["id"] = json!(id);
            if let Some(m) = monitor_ids.get(r) {
                pool["monitor"] = json!(m);
            }
            (r.clone(), pool)
        })
        .collect();
    let status = health(env, &client, &account, input, &all, false)?;
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

/// The pool name of a region: the record's labels and the region joined by `-` (Cloudflare pool
/// names allow only letters, digits, `-` and `_`).
pub fn pool_name(input: &GslbInput, region: &Region) -> String {
    let raw = format!("{}-{}", input.fqdn().trim_end_matches('.'), region.name);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn monitor_body(input: &GslbInput, region: &Region, hc: &HealthCheck) -> Value {
    let description = format!(
        "meridian:{}:{}",
        input.fqdn().trim_end_matches('.'),
        region.name
    );
    let interval = hc.interval.max(MIN_INTERVAL);
    let mut m = json!({
        "description": description,
        "type": hc.kind.as_str(),
        "port": hc.port(),
        "interval": interval,
        "timeout": 5,
        "retries": 1,
        "consecutive_down": hc.failure_threshold,
        "consecutive_up": 1,
    });
    if hc.kind == HealthCheckType::Tcp {
        m["method"] = json!("connection_established");
    } else {
        let host = hc
            .host
            .clone()
            .unwrap_or_else(|| input.fqdn().trim_end_matches('.').to_owned());
        m["method"] = json!("GET");
        m["path"] = json!(hc.path);
        m["expected_codes"] = json!("2xx");
        m["follow_redirects"] = json!(false);
        m["allow_insecure"] = json!(false);
        m["header"] = json!({"Host": [host]});
    }
    m
}

fn pool_body(
    input: &GslbInput,
    cfg: &CloudflareProvider,
    region: &Region,
    monitor: Option<&String>,
) -> Value {
    let mut p = json!({
        "name": pool_name(input, region),
        "description": format!("meridian gslb {} region {}", input.fqdn(), region.name),
        "enabled": true,
        "minimum_origins": 1,
        "origins": [{"name": region.name, "address": region.endpoint.trim_end_matches('.'), "enabled": true, "weight": 1}],
    });
    if let Some(m) = monitor {
        p["monitor"] = json!(m);
    }
    if let Some(cr) = &cfg.check_regions {
        p["check_regions"] = json!(cr);
    }
    p
}

fn lb_body(
    input: &GslbInput,
    cfg: &CloudflareProvider,
    desired: &Desired,
    ids: &BTreeMap<String, String>,
) -> Value {
    let id = |r: &String| ids.get(r).cloned().unwrap_or_default();
    let declared: Vec<String> = input.regions.iter().map(|r| id(&r.name)).collect();
    let (default_pools, fallback, steering) = match desired {
        Desired::Failover { order } => {
            let pools: Vec<String> = order.iter().map(id).collect();
            let last = pools.last().cloned().unwrap_or_default();
            (pools, last, "off")
        }
        Desired::Weighted { weights } => {
            let heaviest = input
                .regions
                .iter()
                .max_by_key(|r| {
                    (
                        weights.get(&r.name).copied().unwrap_or(0),
                        std::cmp::Reverse(r.name.clone()),
                    )
                })
                .map(|r| id(&r.name))
                .unwrap_or_default();
            (declared, heaviest, "random")
        }
        Desired::Latency => {
            let last = declared.last().cloned().unwrap_or_default();
            (declared, last, "dynamic_latency")
        }
    };
    let mut lb = json!({
        "name": input.fqdn().trim_end_matches('.'),
        "description": format!("meridian gslb {} ({})", input.fqdn(), input.policy.as_str()),
        "enabled": true,
        "proxied": cfg.proxied,
        "default_pools": default_pools,
        "fallback_pool": fallback,
        "steering_policy": steering,
    });
    if !cfg.proxied {
        lb["ttl"] = json!(input.ttl);
    }
    if let Desired::Weighted { weights } = desired {
        let pool_weights: serde_json::Map<String, Value> = weights
            .iter()
            .map(|(r, w)| (id(r), json!(to_cloudflare_weight(*w))))
            .collect();
        lb["random_steering"] = json!({"default_weight": 1, "pool_weights": pool_weights});
    }
    lb
}

/// Family weight (0–255) → Cloudflare pool weight (0–1, four decimals). Exact on the way back.
pub fn to_cloudflare_weight(w: u32) -> f64 {
    (f64::from(w.min(MAX_WEIGHT)) / f64::from(MAX_WEIGHT) * 10_000.0).round() / 10_000.0
}

/// Cloudflare pool weight → family weight.
pub fn from_cloudflare_weight(w: f64) -> u32 {
    (w.clamp(0.0, 1.0) * f64::from(MAX_WEIGHT)).round() as u32
}

fn describe_lb(input: &GslbInput, desired: &Desired) -> String {
    match desired {
        Desired::Failover { order } => {
            format!("steering off, failover order {}", order.join(" > "))
        }
        Desired::Weighted { weights } => format!(
            "steering random, weights {}",
            weights
                .iter()
                .map(|(r, w)| format!("{r}={w}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Desired::Latency => format!(
            "steering dynamic_latency over {}",
            input.region_names().join(",")
        ),
    }
}

/// The family routing state of an existing load balancer.
fn state_of(
    input: &GslbInput,
    lb: Option<&Value>,
    pool_ids: &BTreeMap<String, String>,
) -> RoutingState {
    let Some(lb) = lb else {
        return RoutingState::default();
    };
    let region_of = |pool: &str| {
        pool_ids
            .iter()
            .find(|(_, id)| id.as_str() == pool)
            .map(|(r, _)| r.clone())
    };
    let order = lb["default_pools"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| region_of(p.as_str()?)).collect())
        .unwrap_or_default();
    let mut weights = BTreeMap::new();
    if lb["steering_policy"] == "random" {
        let default = lb["random_steering"]["default_weight"]
            .as_f64()
            .unwrap_or(1.0);
        for r in &input.regions {
            let Some(id) = pool_ids.get(&r.name) else {
                continue;
            };
            let w = lb["random_steering"]["pool_weights"][id.as_str()]
                .as_f64()
                .unwrap_or(default);
            weights.insert(r.name.clone(), from_cloudflare_weight(w));
        }
    }
    RoutingState { order, weights }
}

/// A provider object to find-or-create-or-patch.
struct Object<'a> {
    kind: &'static str,
    name: &'a str,
    detail: &'a str,
    collection: &'a str,
    existing: Option<&'a Value>,
    want: &'a Value,
}

/// Creates `obj` when missing, patches it when it differs, and returns its id (a placeholder
/// when plan mode recorded the creation).
fn upsert(
    client: &Client<'_>,
    changes: &mut Vec<GslbChange>,
    planned: &mut bool,
    obj: Object<'_>,
) -> Result<String, StepError> {
    match obj.existing {
        Some(have) => {
            let id = have["id"].as_str().unwrap_or_default().to_owned();
            if !subset_eq(obj.want, have) {
                let what = format!("update {} {}", obj.kind, obj.name);
                if client
                    .call(
                        &what,
                        "PATCH",
                        &format!("{}/{id}", obj.collection),
                        Some(obj.want),
                    )?
                    .is_none()
                {
                    *planned = true;
                }
                changes.push(GslbChange::new(
                    ChangeOp::Update,
                    obj.kind,
                    obj.name,
                    obj.detail,
                ));
            }
            Ok(id)
        }
        None => {
            let what = format!("create {} {}", obj.kind, obj.name);
            let id = match client.call(&what, "POST", obj.collection, Some(obj.want))? {
                Some(created) => created["id"].as_str().map(str::to_owned).ok_or_else(|| {
                    StepError::retryable(format!("Cloudflare {what}: the answer has no result.id"))
                })?,
                None => {
                    *planned = true;
                    format!("{PLANNED}{}:{}", obj.kind, obj.name)
                }
            };
            changes.push(GslbChange::new(
                ChangeOp::Create,
                obj.kind,
                obj.name,
                obj.detail,
            ));
            Ok(id)
        }
    }
}

/// Whether every field of `want` is present in `have` with the same value (objects compared as
/// subsets, arrays element-wise, numbers numerically). Fields the API adds are ignored.
pub fn subset_eq(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| subset_eq(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| subset_eq(a, b))
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-6,
            _ => a == b,
        },
        _ => want == have,
    }
}

/// Health by region from `pools/{id}/health`: healthy when most reporting PoPs see the pool
/// healthy; unknown without a monitor, without reports, or for planned pools.
fn health(
    env: &Env<'_>,
    client: &Client<'_>,
    account: &str,
    input: &GslbInput,
    pools: &BTreeMap<String, Value>,
    strict: bool,
) -> Result<BTreeMap<String, Health>, StepError> {
    let mut out = BTreeMap::new();
    for r in &input.regions {
        let pool = pools.get(&r.name);
        let id = pool.and_then(|p| p["id"].as_str()).unwrap_or_default();
        let monitored = pool.is_some_and(|p| p["monitor"].as_str().is_some_and(|m| !m.is_empty()));
        let h = if id.is_empty() || id.starts_with(PLANNED) || !monitored {
            Health::Unknown
        } else {
            match client.call(
                &format!("pool health {}", r.name),
                "GET",
                &format!("{account}/pools/{id}/health"),
                None,
            ) {
                Ok(result) => pop_health(result.as_ref()),
                Err(e) if !strict || e.message().contains("not found") => {
                    env.log.warn(&format!("health of {} unknown: {e}", r.name));
                    Health::Unknown
                }
                Err(e) => return Err(e),
            }
        };
        out.insert(r.name.clone(), h);
    }
    Ok(out)
}

fn pop_health(result: Option<&Value>) -> Health {
    let Some(pops) = result.and_then(|r| r["pop_health"].as_object()) else {
        return Health::Unknown;
    };
    let reports: Vec<bool> = pops
        .values()
        .filter_map(|p| p["healthy"].as_bool())
        .collect();
    if reports.is_empty() {
        Health::Unknown
    } else if reports.iter().filter(|h| **h).count() * 2 > reports.len() {
        Health::Healthy
    } else {
        Health::Unhealthy
    }
}

meridian_families::gslb_step! {
    /// The `gslb-cloudflare` component: the family schema in, the family output out; undo kept
    /// in the run's kv store (see `meridian_families::sdk`).
    GslbCloudflare {
        name: "gslb-cloudflare",
        description: "GSLB on Cloudflare Load Balancing: one monitor and pool per region and a load balancer (failover order, random-steering weights or dynamic latency); failover and set-weights compensate back.",
        needs: &[
            (meridian_sdk::GrantKind::Http, "the URL in `provider.cloudflare.endpoint` (default https://api.cloudflare.com/client/v4)"),
            (meridian_sdk::GrantKind::Secret, "the API token named by `provider.cloudflare.api_token_secret`"),
        ],
        run: run,
        compensate: compensate,
    }
}

#[cfg(test)]
mod tests;
