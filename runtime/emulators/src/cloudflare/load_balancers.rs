//! Load balancers: validation and defaults (`/zones/{zone}/load_balancers`), the pools one
//! references, and which pool it would answer with.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::envelope::CfError;
use super::fields::{bool_field, default, int_in, valid_address};
use super::health::{origin_health, pool_is_healthy};
use super::{CfState, Cloudflare, CloudflareZone, REGIONS, Resolution, str_of};

impl Cloudflare {
    /// What the load balancer named `hostname` would answer: the first healthy pool of
    /// `default_pools` (failover order, whatever the steering policy), else the fallback pool.
    /// `None` when no enabled load balancer has that name.
    pub fn resolve(&self, hostname: &str) -> Option<Resolution> {
        let st = self.state();
        let (_, lb) = st.lbs.iter().find(|(_, lb)| {
            lb["enabled"] == true
                && lb["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(hostname.trim_end_matches('.')))
        })?;
        let find_pool = |id: &Value| st.pools.iter().find(|p| p["id"] == *id);
        for pid in lb["default_pools"].as_array().into_iter().flatten() {
            if let Some(pool) = find_pool(pid)
                && pool_is_healthy(&st, pool)
            {
                let addresses = pool["origins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| origin_health(&st, pool, o).0)
                    .map(|o| str_of(&o["address"]))
                    .collect();
                return Some(Resolution {
                    load_balancer_id: str_of(&lb["id"]),
                    pool_id: str_of(&pool["id"]),
                    pool_name: str_of(&pool["name"]),
                    addresses,
                    fallback: false,
                });
            }
        }
        let pool = find_pool(&lb["fallback_pool"])?;
        Some(Resolution {
            load_balancer_id: str_of(&lb["id"]),
            pool_id: str_of(&pool["id"]),
            pool_name: str_of(&pool["name"]),
            addresses: pool["origins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["enabled"] == true)
                .map(|o| str_of(&o["address"]))
                .collect(),
            fallback: true,
        })
    }
}

pub(super) fn normalize_lb(
    st: &CfState,
    zone: Option<&CloudflareZone>,
    id: &str,
    mut m: Map<String, Value>,
) -> Result<Map<String, Value>, CfError> {
    let zone = zone.ok_or_else(|| CfError::invalid("missing zone"))?;
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let in_zone = name == zone.name || name.ends_with(&format!(".{}", zone.name));
    if name.is_empty() || !valid_address(&name) || !in_zone {
        return Err(CfError::invalid(format!("invalid hostname: {name}")));
    }
    if st
        .lbs
        .iter()
        .any(|(z, l)| *z == zone.id && l["name"] == name.as_str() && l["id"] != id)
    {
        return Err(CfError::new(
            StatusCode::BAD_REQUEST,
            1003,
            "value not unique: a load balancer with that name already exists",
        ));
    }
    m.insert("name".into(), json!(name));
    let pool_exists = |p: &Value| st.pools.iter().any(|x| x["id"] == *p);
    let defaults = m.get("default_pools").and_then(Value::as_array);
    let Some(defaults) = defaults.filter(|d| !d.is_empty()) else {
        return Err(CfError::invalid(
            "default_pools must contain at least one pool",
        ));
    };
    if let Some(p) = defaults.iter().find(|p| !pool_exists(p)) {
        return Err(CfError::invalid(format!("pool {p} not found")));
    }
    match m.get("fallback_pool") {
        Some(p) if pool_exists(p) => {}
        Some(p) => return Err(CfError::invalid(format!("pool {p} not found"))),
        None => return Err(CfError::invalid("fallback_pool is required")),
    }
    default(&mut m, "description", json!(""));
    default(&mut m, "ttl", json!(30));
    default(&mut m, "proxied", json!(false));
    default(&mut m, "enabled", json!(true));
    default(&mut m, "steering_policy", json!("off"));
    default(&mut m, "session_affinity", json!("none"));
    default(&mut m, "region_pools", json!({}));
    default(&mut m, "pop_pools", json!({}));
    default(&mut m, "country_pools", json!({}));
    default(
        &mut m,
        "adaptive_routing",
        json!({"failover_across_pools": false}),
    );
    default(
        &mut m,
        "location_strategy",
        json!({"mode": "pop", "prefer_ecs": "proximity"}),
    );
    default(&mut m, "random_steering", json!({"default_weight": 1}));
    m.insert("zone_name".into(), json!(zone.name));
    for k in ["proxied", "enabled"] {
        bool_field(&m, k)?;
    }
    int_in(&m, "ttl", 0, 86_400)?;
    const POLICIES: &[&str] = &[
        "off",
        "geo",
        "random",
        "dynamic_latency",
        "proximity",
        "least_outstanding_requests",
        "least_connections",
        "",
    ];
    if !m["steering_policy"]
        .as_str()
        .is_some_and(|p| POLICIES.contains(&p))
    {
        return Err(CfError::invalid("invalid steering_policy"));
    }
    if !matches!(
        m["session_affinity"].as_str(),
        Some("none" | "cookie" | "ip_cookie" | "header" | "")
    ) {
        return Err(CfError::invalid("invalid session_affinity"));
    }
    for map in ["region_pools", "pop_pools", "country_pools"] {
        let Some(entries) = m[map].as_object() else {
            return Err(CfError::invalid(format!("{map} must be an object")));
        };
        for (key, pools) in entries {
            if map == "region_pools" && !REGIONS.contains(&key.as_str()) {
                return Err(CfError::invalid(format!("invalid region {key}")));
            }
            let ok = pools
                .as_array()
                .is_some_and(|ps| ps.iter().all(pool_exists));
            if !ok {
                return Err(CfError::invalid(format!(
                    "{map}.{key} must list existing pools"
                )));
            }
        }
    }
    let rs = &m["random_steering"];
    let weight_ok = |w: &Value| w.as_f64().is_some_and(|w| (0.0..=1.0).contains(&w));
    if rs.get("default_weight").is_some_and(|w| !weight_ok(w)) {
        return Err(CfError::invalid(
            "random_steering.default_weight must be between 0 and 1",
        ));
    }
    if let Some(weights) = rs.get("pool_weights").and_then(Value::as_object) {
        for (p, w) in weights {
            if !pool_exists(&json!(p)) || !weight_ok(w) {
                return Err(CfError::invalid(format!(
                    "random_steering.pool_weights.{p} must name an existing pool with a weight between 0 and 1"
                )));
            }
        }
    }
    Ok(m)
}

/// Every pool id a load balancer mentions.
pub(super) fn lb_pool_ids(lb: &Value) -> HashSet<String> {
    let mut ids: HashSet<String> = lb["default_pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    ids.insert(str_of(&lb["fallback_pool"]));
    for map in ["region_pools", "pop_pools", "country_pools"] {
        for list in lb[map].as_object().into_iter().flat_map(|m| m.values()) {
            ids.extend(list.as_array().into_iter().flatten().map(str_of));
        }
    }
    if let Some(w) = lb["random_steering"]["pool_weights"].as_object() {
        ids.extend(w.keys().cloned());
    }
    ids
}
