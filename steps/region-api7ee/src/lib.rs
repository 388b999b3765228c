//! `region-api7ee`: the region family on API7 Enterprise (domain.md §3): a region is a gateway
//! group on the control plane plus the data planes that serve it.
//!
//! - `deploy`: find the gateway group by exact name (`GET /api/gateway_groups?name=`), create it
//!   when missing (`POST /api/gateway_groups`), issue a data-plane instance token
//!   (`POST …/{id}/instance_token`) and, unless `issue_admin_key: false`, a gateway-group admin
//!   key (`PUT …/{id}/admin_key`), count the registered instances (`GET …/{id}/instances`),
//!   then wait until every data plane's `/status/ready` answers 200. Secret values (the token,
//!   the key) are read to check the control plane issued them and never logged or output; the
//!   output only says they exist. Token and key are issued once per run: a retry of the step
//!   does not issue them again (API7 keeps one admin key per group, so each issue replaces the
//!   previous key).
//! - `status`: the same reads without creating or issuing anything, and one readiness probe per
//!   data plane.
//! - `wait-ready`: only the data-plane wait (no control-plane call); with `capacity`, until that
//!   many of the listed data planes answer ready (default: all of them).
//! - `scale` (with `capacity`, optionally `min_capacity`): API7's control plane does not run
//!   data planes — the platform does (a Kubernetes Deployment's replicas, an autoscaling group) —
//!   so the step reads the group's registered instances and waits until `min_capacity` (default
//!   `capacity`) of the listed data planes answer ready; `capacity_ready_at_ms` is when
//!   `capacity` of them did.
//!
//! The access token is sent as `X-API-KEY`; 401/403 are fatal and name the secret. Not ready
//! within `timeout_ms` is a retryable error listing each data plane's last answer.
//!
//! Plan mode: the control plane's `POST`/`PUT` are recorded by the host and answer 202 `{}`, so
//! a group that would be created has no id yet: the calls that need it are listed in `changes`
//! and the data planes are probed once instead of waited for.
//!
//! Cost (deploy): 3–5 control-plane requests plus one request per data plane per poll.

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_families::region::{Api7eeProvider, Memo, RegionAction, RegionInput, RegionOutput};
use meridian_families::{Env, StepError};
use meridian_sdk::http::{Request, Response, join_url, percent_encode, split_url};
use serde_json::{Value, json};

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "api7ee";

/// The actions this vendor supports.
pub const ACTIONS: [RegionAction; 4] = [
    RegionAction::Deploy,
    RegionAction::Status,
    RegionAction::WaitReady,
    RegionAction::Scale,
];

/// Upper bound of one data-plane probe.
const PROBE_TIMEOUT_MS: u64 = 5_000;
/// Upper bound of one control-plane request.
const CP_TIMEOUT_MS: u64 = 30_000;

/// Runs one region action against API7. `plan` is the invocation's mode.
pub fn run(
    env: &Env<'_>,
    memo: &dyn Memo,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    input.validate()?;
    input.require_action("region-api7ee", &ACTIONS)?;
    let cfg = input.provider.api7ee.as_ref().ok_or_else(|| {
        StepError::invalid(
            "provider.api7ee: region-api7ee needs `control_plane` (URL) and `token_secret` (the secret holding the access token)",
        )
    })?;
    validate(cfg, input)?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    out.planned = plan;
    if input.action != RegionAction::WaitReady {
        let group = cfg.gateway_group.as_deref().unwrap_or(&input.region);
        let cp = ControlPlane {
            env,
            base: &cfg.control_plane,
            token: env.secret(&cfg.token_secret, "the API7 control-plane access token")?,
            hint: format!("the access token in secret `{}`", cfg.token_secret),
        };
        let id = if input.action == RegionAction::Deploy {
            bootstrap(&cp, memo, cfg, group, plan, &mut out)?
        } else {
            let id = cp.find_group(group)?;
            if id.is_none() {
                out.status = "missing".to_owned();
            }
            id
        };
        if let Some(id) = &id {
            out.gateway_group_id = Some(id.clone());
            out.instances = cp.instances(id);
        }
        if id.is_none() && input.action == RegionAction::Status {
            probe_all(env, cfg, &mut out);
            out.ready = false;
            return Ok(out);
        }
    }
    // Creating the group or issuing a token or key is a change (a planned one in plan mode).
    out.changed = !out.changes.is_empty();
    let waits = input.action != RegionAction::Status && !plan;
    wait_for_data_planes(env, cfg, input, waits, &mut out)?;
    if out.gateway_group_id.is_none() && input.action == RegionAction::Deploy {
        out.status = "planned".to_owned();
    }
    Ok(out)
}

fn validate(cfg: &Api7eeProvider, input: &RegionInput) -> Result<(), StepError> {
    let action = input.action;
    if split_url(&cfg.control_plane).is_none_or(|u| !matches!(u.scheme, "http" | "https")) {
        return Err(StepError::invalid(format!(
            "provider.api7ee.control_plane: `{}` is not an http(s) URL",
            cfg.control_plane
        )));
    }
    if cfg.token_secret.trim().is_empty() {
        return Err(StepError::invalid(
            "provider.api7ee.token_secret: name the secret holding the access token",
        ));
    }
    if cfg
        .gateway_group
        .as_deref()
        .is_some_and(|g| g.trim().is_empty())
    {
        return Err(StepError::invalid(
            "provider.api7ee.gateway_group: must not be empty",
        ));
    }
    for (i, dp) in cfg.data_planes.iter().enumerate() {
        if split_url(dp).is_none_or(|u| !matches!(u.scheme, "http" | "https")) {
            return Err(StepError::invalid(format!(
                "provider.api7ee.data_planes[{i}]: `{dp}` is not an http(s) URL of a data plane's status endpoint"
            )));
        }
    }
    if cfg.data_planes.is_empty() && action != RegionAction::Status {
        return Err(StepError::invalid(
            "provider.api7ee.data_planes: list the status endpoint of every data plane of the region (e.g. http://10.0.0.5:7085)",
        ));
    }
    if let Some(c) = input
        .capacity
        .filter(|c| *c as usize > cfg.data_planes.len())
    {
        return Err(StepError::invalid(format!(
            "capacity: {c} data planes to wait for, but provider.api7ee.data_planes lists {}; list the status endpoint of every data plane the region runs at that capacity",
            cfg.data_planes.len()
        )));
    }
    Ok(())
}

/// The control-plane API client.
struct ControlPlane<'a> {
    env: &'a Env<'a>,
    base: &'a str,
    token: String,
    /// What to check when the token is refused.
    hint: String,
}

impl ControlPlane<'_> {
    /// Sends a request; `Ok(None)` when plan mode recorded it.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, StepError> {
        let mut req = Request::new(method, join_url(self.base, path))
            .header("X-API-KEY", &self.token)
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json_value(b);
        }
        req = req.timeout(Duration::from_millis(CP_TIMEOUT_MS));
        // The path without the query, and never the token: this goes into errors and logs.
        let what = format!("API7 {method} {}", path.split('?').next().unwrap_or(path));
        let resp = self.env.send(&what, req)?;
        if resp.recorded {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(cp_error(&what, &resp, &self.hint));
        }
        serde_json::from_slice(&resp.body).map(Some).map_err(|e| {
            StepError::fatal(format!(
                "{what}: the answer is not JSON ({e}): {}; is `control_plane` the API7 Dashboard's API?",
                resp.snippet(200)
            ))
        })
    }

    /// The id of the gateway group named exactly `name`.
    fn find_group(&self, name: &str) -> Result<Option<String>, StepError> {
        let path = format!("/api/gateway_groups?name={}", percent_encode(name, b""));
        let list = self.call("GET", &path, None)?.unwrap_or_default();
        // `name=` may match loosely on a real control plane; only an exact name counts.
        Ok(list["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"].as_str() == Some(name))
            .and_then(|g| id_of(&g["id"])))
    }

    /// Registered gateway instances of group `id`; `None` (logged) when the list is unavailable.
    fn instances(&self, id: &str) -> Option<u64> {
        match self.call(
            "GET",
            &format!("/api/gateway_groups/{}/instances", percent_encode(id, b"")),
            None,
        ) {
            Ok(Some(v)) => v["total"]
                .as_u64()
                .or_else(|| v["list"].as_array().map(|l| l.len() as u64)),
            Ok(None) => None,
            Err(e) => {
                self.env.log.warn(&format!(
                    "could not list the gateway group's instances: {}",
                    e.message()
                ));
                None
            }
        }
    }
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A control-plane error: the message from the body (`error_msg` / `message`), classified.
fn cp_error(what: &str, resp: &Response, hint: &str) -> StepError {
    let detail = resp.error_message(&["error_msg", "message"]);
    match resp.status {
        404 => StepError::fatal(format!("{what}: not found: {detail}")),
        s => StepError::from_status(what, s, &detail, hint),
    }
}

/// `deploy`'s control-plane part; returns the group id (`None` when plan mode would create it).
fn bootstrap(
    cp: &ControlPlane<'_>,
    memo: &dyn Memo,
    cfg: &Api7eeProvider,
    group: &str,
    plan: bool,
    out: &mut RegionOutput,
) -> Result<Option<String>, StepError> {
    let id = match cp.find_group(group)? {
        Some(id) => {
            out.gateway_group_created = Some(false);
            id
        }
        None => {
            let body = json!({"name": group, "description": "managed by meridian region-api7ee",
                              "labels": {"managed-by": "meridian"}});
            out.changes.push(format!("create gateway group `{group}`"));
            match cp.call("POST", "/api/gateway_groups", Some(&body)) {
                Ok(None) => {
                    out.gateway_group_created = Some(true);
                    out.changes
                        .push("issue a data-plane instance token for the new group".to_owned());
                    if cfg.issue_admin_key {
                        out.changes
                            .push("issue a gateway-group admin key for the new group".to_owned());
                    }
                    return Ok(None);
                }
                Ok(Some(created)) => {
                    out.gateway_group_created = Some(true);
                    id_of(&created["value"]["id"]).ok_or_else(|| {
                        StepError::fatal(format!(
                            "API7 POST /api/gateway_groups answered without value.id: {created}"
                        ))
                    })?
                }
                // Created concurrently (or by an attempt whose answer was lost): use it.
                Err(StepError::Fatal(m)) if m.contains("already exists") => {
                    out.changes.pop();
                    out.gateway_group_created = Some(false);
                    cp.find_group(group)?.ok_or_else(|| {
                        StepError::retryable(format!("gateway group `{group}`: {m}"))
                    })?
                }
                Err(e) => return Err(e),
            }
        }
    };
    let enc = percent_encode(&id, b"");

    let token_key = format!("region-api7ee/{id}/instance_token");
    if memo.get(&token_key).is_some() {
        out.instance_token_issued = Some(true);
    } else {
        let answer = cp.call(
            "POST",
            &format!("/api/gateway_groups/{enc}/instance_token"),
            None,
        )?;
        out.changes
            .push("issue a data-plane instance token".to_owned());
        if let Some(v) = answer {
            let issued = v["value"]["token_plain_text"]
                .as_str()
                .is_some_and(|t| !t.is_empty());
            if !issued {
                return Err(StepError::fatal(
                    "API7 POST …/instance_token answered without value.token_plain_text; check the control plane's version",
                ));
            }
            memo.set(&token_key, "issued");
        }
        out.instance_token_issued = Some(!plan);
    }

    if cfg.issue_admin_key {
        let key_key = format!("region-api7ee/{id}/admin_key");
        if memo.get(&key_key).is_some() {
            out.admin_key_secret_hint =
                Some("a gateway-group admin key was issued by an earlier attempt of this run; its value is withheld".into());
        } else {
            let answer = cp.call("PUT", &format!("/api/gateway_groups/{enc}/admin_key"), None)?;
            out.changes
                .push("issue a gateway-group admin key (replaces the previous one)".to_owned());
            match answer {
                Some(v) => {
                    if v["value"]["key"].as_str().is_none_or(str::is_empty) {
                        return Err(StepError::fatal(
                            "API7 PUT …/admin_key answered without value.key",
                        ));
                    }
                    memo.set(&key_key, "issued");
                    out.admin_key_secret_hint = Some(
                        "a gateway-group admin key was issued; its value is withheld: issue a new one through the control plane where it is needed"
                            .into(),
                    );
                }
                None => {
                    out.admin_key_secret_hint = Some("an admin key would be issued (plan)".into())
                }
            }
        }
    } else {
        out.admin_key_secret_hint = Some("not issued by this step (issue_admin_key: false)".into());
    }
    Ok(Some(id))
}

/// `url` as a readiness URL: `/status/ready` appended unless it is already there.
fn ready_url(url: &str) -> String {
    if url.trim_end_matches('/').ends_with("/status/ready") {
        url.to_owned()
    } else {
        join_url(url, "/status/ready")
    }
}

/// Probes every data plane once; returns the last answer of those not ready.
fn probe_all(
    env: &Env<'_>,
    cfg: &Api7eeProvider,
    out: &mut RegionOutput,
) -> BTreeMap<String, String> {
    let mut not_ready = BTreeMap::new();
    for dp in &cfg.data_planes {
        let url = ready_url(dp);
        let req = Request::new("GET", &url).timeout(Duration::from_millis(PROBE_TIMEOUT_MS));
        let answer = match env.http.send(&req) {
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(format!("HTTP {} {}", r.status, r.snippet(120))),
            Err(e) => Some(e.to_string()),
        };
        out.data_planes.insert(dp.clone(), answer.is_none());
        if let Some(a) = answer {
            not_ready.insert(url, a);
        }
    }
    not_ready
}

/// Probes the data planes until all answer 200 (when `wait`), bounded by `timeout_ms`.
fn wait_for_data_planes(
    env: &Env<'_>,
    cfg: &Api7eeProvider,
    input: &RegionInput,
    wait: bool,
    out: &mut RegionOutput,
) -> Result<(), StepError> {
    let start = env.clock.now_unix_ms();
    let deadline = start.saturating_add(input.timeout_ms);
    let all = cfg.data_planes.len() as u32;
    // Full capacity, and what must be ready before the step succeeds.
    let full = input.capacity.unwrap_or(all);
    let needed = input.min_capacity.unwrap_or(full);
    if input.capacity.is_some() {
        out.capacity = Some(full);
    }
    loop {
        let not_ready = probe_all(env, cfg, out);
        let now = env.clock.now_unix_ms();
        out.observed_at_ms = now;
        let ready = all - not_ready.len() as u32;
        if input.capacity.is_some() {
            out.instances_ready = Some(ready);
            if ready >= full && out.capacity_ready_at_ms.is_none() {
                out.capacity_ready_at_ms = Some(now);
            }
        }
        if ready >= needed && !cfg.data_planes.is_empty() {
            out.ready = true;
            out.status = "ready".to_owned();
            out.ready_at_ms = Some(now);
            out.waited_ms = Some(now.saturating_sub(start));
            return Ok(());
        }
        out.ready = false;
        out.status = "not-ready".to_owned();
        if !wait {
            return Ok(());
        }
        if now >= deadline {
            let list: Vec<String> = not_ready.iter().map(|(u, a)| format!("{u}: {a}")).collect();
            return Err(StepError::retryable(format!(
                "data planes of region {} not ready after {} ms ({ready} of {all} ready, {needed} needed): {}",
                input.region,
                input.timeout_ms,
                list.join("; ")
            )));
        }
        env.clock
            .sleep_ms(input.poll_interval_ms.min(deadline - now));
    }
}

meridian_families::region_step! {
    /// The step.
    #[derive(Debug)]
    RegionApi7ee {
        manifest: meridian_sdk::ManifestInfo::new("region-api7ee", env!("CARGO_PKG_VERSION"))
            .description(
                "Bootstraps a region on API7 Enterprise (gateway group, data-plane instance token, admin key) \
                 through the control plane, then waits for every data plane's /status/ready; status, \
                 wait-ready and scale (wait for `capacity` data planes the platform scaled) read only.",
            )
            .needs(meridian_sdk::GrantKind::Http, "`provider.api7ee.control_plane` and every `provider.api7ee.data_planes` URL")
            .needs(meridian_sdk::GrantKind::Secret, "`provider.api7ee.token_secret`"),
        run: run,
    }
}

#[cfg(test)]
mod tests;
