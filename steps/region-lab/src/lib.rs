//! `region-lab`: the region family on the local lab (`meridian lab up`), through its control
//! API: `GET /status` (the lab state: every region's `status` `up|stopped|killed`, its gateway's
//! `serving`/`ready` and its PostgreSQL's `running`) and `POST /regions/{name}/start|stop|kill`
//! (which answers the new state).
//!
//! - `status`: one read.
//! - `kill` / `stop` / `start`: read, and only when the region is not already in the requested
//!   state, post the action; then check the answer shows that state. `killed_at_ms` /
//!   `stopped_at_ms` / `started_at_ms` is the host clock just before the request (so an RTO
//!   measured from it is never too short) and is remembered in the run's state, so a retry that
//!   finds the region already killed reports the same instant.
//! - `rebuild-standby` (with `from`): `POST /regions/{name}/rebuild-standby?from=<from>`, which
//!   stops the region's PostgreSQL, replaces its data with a pg_basebackup of `from` and starts
//!   it as a streaming standby of `from` (the answer is the new lab state; the region's gateway
//!   and `status` are left as they were, so `start` a killed region first). Idempotent-ish: the
//!   lab does not say which primary a standby follows, so a first request always rebuilds (a
//!   standby of a dead primary looks like any other standby); once this run has rebuilt the
//!   region from `from` (`rebuilt_at_ms` remembered in the run's state), a retry that finds it
//!   in recovery reports the same instant instead of copying the data again. A repeated rebuild
//!   in a new run re-copies the data and ends in the same state. The answer must show the region
//!   in recovery (`role: standby`), else the step fails retryable.
//! - `wait-ready`: polls `GET /status` every `poll_interval_ms` until the region is `up`, its
//!   gateway serves and answers `/status/ready` 200 (at least one data-plane instance ready, or
//!   `capacity` of them when given), and its PostgreSQL runs; `ready_at_ms` is when that was
//!   first seen (and `capacity_ready_at_ms` with `capacity`). Not ready within `timeout_ms` is a
//!   retryable error.
//! - `scale` (with `capacity`, optionally `min_capacity`): unless the region already runs
//!   `capacity` instances, `POST /regions/{name}/scale?instances=<capacity>` (new instances take
//!   the lab's start-up time, removed ones drain); then polls until `min_capacity` (default
//!   `capacity`) instances are ready. `scaled_at_ms` is the host clock just before the request,
//!   remembered for retries; `ready_at_ms` when `min_capacity` was first seen ready,
//!   `capacity_ready_at_ms` when all `capacity` were (absent when the step returned before).
//!
//! Plan mode: the posts are recorded by the host (202 `{}`), so the output reports the current
//! state with `planned: true`; `wait-ready` reads once instead of waiting.
//!
//! Cost: one or two HTTP requests per action, one per poll for `wait-ready`.

use std::time::Duration;

use meridian_families::region::{Memo, RegionAction, RegionInput, RegionOutput};
use meridian_families::{Env, StepError};
use meridian_sdk::http::{Request, Response, join_url, percent_encode};
use serde::Deserialize;

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "lab";

/// The actions this vendor supports.
pub const ACTIONS: [RegionAction; 8] = [
    RegionAction::Status,
    RegionAction::Start,
    RegionAction::Stop,
    RegionAction::Kill,
    RegionAction::WaitReady,
    RegionAction::RebuildStandby,
    RegionAction::Fault,
    RegionAction::Scale,
];

/// The lab state as `GET /status` answers it; only what this step reads, every field optional
/// so that additions to the lab do not break it.
#[derive(Debug, Deserialize)]
struct LabDoc {
    #[serde(default)]
    status: String,
    #[serde(default)]
    regions: Vec<LabRegion>,
}

#[derive(Debug, Deserialize)]
struct LabRegion {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    gateway: Option<LabGateway>,
    #[serde(default)]
    postgres: Option<LabPostgres>,
    /// Faults injected and not undone (absent from older labs).
    #[serde(default)]
    faults: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LabGateway {
    #[serde(default)]
    serving: bool,
    #[serde(default)]
    ready: bool,
    /// Data-plane instances the region should run (absent from older labs: one).
    #[serde(default)]
    capacity: Option<u32>,
    /// Data-plane instances ready.
    #[serde(default)]
    instances_ready: Option<u32>,
    #[serde(default)]
    instances: Vec<LabInstance>,
}

#[derive(Debug, Deserialize)]
struct LabInstance {
    #[serde(default)]
    ready_url: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Default, Deserialize)]
struct LabPostgres {
    #[serde(default)]
    running: bool,
    /// `pg_is_in_recovery()`; absent or null when the lab could not ask.
    #[serde(default)]
    in_recovery: Option<bool>,
}

impl LabRegion {
    fn ready(&self) -> bool {
        let gw = self.gateway.as_ref();
        self.status == "up"
            && gw.is_some_and(|g| g.serving && g.ready)
            && self.postgres.as_ref().is_some_and(|p| p.running)
    }

    /// What the region should run and what is ready: `(capacity, ready)`; a lab without
    /// instances in its state runs one per region.
    fn capacity(&self) -> (u32, u32) {
        let gw = self.gateway.as_ref();
        let ready_one = u32::from(gw.is_some_and(|g| g.serving && g.ready));
        (
            gw.and_then(|g| g.capacity).unwrap_or(1),
            gw.and_then(|g| g.instances_ready).unwrap_or(ready_one),
        )
    }

    /// Its PostgreSQL runs and answers that it is in recovery (a standby).
    fn is_standby(&self) -> bool {
        self.postgres
            .as_ref()
            .is_some_and(|p| p.running && p.in_recovery == Some(true))
    }

    /// One line for errors: what is not ready.
    fn describe(&self) -> String {
        let gw = self.gateway.as_ref();
        format!(
            "status {}, gateway serving {}, ready {}, postgres running {}",
            self.status,
            gw.is_some_and(|g| g.serving),
            gw.is_some_and(|g| g.ready),
            self.postgres.as_ref().is_some_and(|p| p.running)
        )
    }
}

impl LabDoc {
    fn region(&self, name: &str) -> Result<&LabRegion, StepError> {
        self.regions.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            StepError::fatal(format!(
                "the lab has no region `{name}` (regions: {}); check `region`",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

/// The control API client.
struct Lab<'a> {
    env: &'a Env<'a>,
    base: &'a str,
    timeout: Duration,
}

impl Lab<'_> {
    fn send(&self, method: &str, path: &str) -> Result<(String, Response), StepError> {
        let url = join_url(self.base, path);
        let req = Request::new(method, &url).timeout(self.timeout);
        let what = format!("lab {method} {path}");
        let resp = self.env.send(&what, req)?;
        if resp.recorded || resp.is_success() {
            return Ok((url, resp));
        }
        // The lab answers errors as {"error": "..."}.
        let detail = resp.error_message(&["error"]);
        Err(match resp.status {
            404 => StepError::fatal(format!("{what}: {detail}")),
            409 => StepError::retryable(format!("{what}: the lab is not ready: {detail}")),
            400 => StepError::fatal(format!("{what}: {detail}")),
            s => StepError::from_status(&what, s, &detail, "the lab control API (`control_url`)"),
        })
    }

    fn parse(url: &str, resp: &Response) -> Result<LabDoc, StepError> {
        serde_json::from_slice(&resp.body).map_err(|e| {
            StepError::fatal(format!(
                "{url} did not answer the lab state ({e}): {}; is `provider.lab.control_url` the lab's control API?",
                resp.snippet(200)
            ))
        })
    }

    fn status(&self) -> Result<LabDoc, StepError> {
        let (url, resp) = self.send("GET", "/status")?;
        Self::parse(&url, &resp)
    }

    /// Posts `action` (with its query, e.g. `rebuild-standby?from=us`) for `region`; `None`
    /// when plan mode recorded it instead.
    fn act(&self, region: &str, action: &str) -> Result<Option<LabDoc>, StepError> {
        let (url, resp) = self.send(
            "POST",
            &format!("/regions/{}/{action}", percent_encode(region, b"")),
        )?;
        if resp.recorded {
            return Ok(None);
        }
        Self::parse(&url, &resp).map(Some)
    }
}

/// Runs one region action against the lab. `plan` is the invocation's mode: in plan mode the
/// host records the posts and `wait-ready` does not wait.
pub fn run(
    env: &Env<'_>,
    memo: &dyn Memo,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    input.validate()?;
    input.require_action("region-lab", &ACTIONS)?;
    let cfg = input.provider.lab.as_ref().ok_or_else(|| {
        StepError::invalid(
            "provider.lab: region-lab needs `control_url`, the lab's control API (`meridian lab status` prints it)",
        )
    })?;
    let lab = Lab {
        env,
        base: &cfg.control_url,
        timeout: Duration::from_millis(input.timeout_ms.max(1_000)),
    };
    let mut out = match input.action {
        RegionAction::Kill => change(env, memo, &lab, input, "kill", &["killed"], plan),
        // A killed region is down too; stopping it gracefully is no longer possible or needed.
        RegionAction::Stop => change(env, memo, &lab, input, "stop", &["stopped", "killed"], plan),
        RegionAction::Start => change(env, memo, &lab, input, "start", &["up"], plan),
        RegionAction::WaitReady => wait_ready(env, &lab, input, plan),
        RegionAction::RebuildStandby => rebuild_standby(env, memo, &lab, input, plan),
        RegionAction::Fault => fault(env, memo, &lab, input),
        RegionAction::Scale => scale(env, memo, &lab, input, plan),
        _ => status(env, &lab, input),
    }?;
    out.planned |= plan;
    Ok(out)
}

fn fill(out: &mut RegionOutput, region: &LabRegion, now_ms: u64) {
    out.status = region.status.clone();
    out.ready = region.ready();
    out.observed_at_ms = now_ms;
    let (capacity, ready) = region.capacity();
    out.instances_ready = Some(ready);
    if matches!(out.action, RegionAction::Scale | RegionAction::WaitReady) {
        out.capacity = Some(capacity);
        out.data_planes = region
            .gateway
            .iter()
            .flat_map(|g| &g.instances)
            .map(|i| (i.ready_url.clone(), i.status == "ready"))
            .collect();
    }
}

fn status(env: &Env<'_>, lab: &Lab<'_>, input: &RegionInput) -> Result<RegionOutput, StepError> {
    let doc = lab.status()?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    fill(
        &mut out,
        doc.region(&input.region)?,
        env.clock.now_unix_ms(),
    );
    Ok(out)
}

fn change(
    env: &Env<'_>,
    memo: &dyn Memo,
    lab: &Lab<'_>,
    input: &RegionInput,
    verb: &str,
    done: &[&str],
    plan: bool,
) -> Result<RegionOutput, StepError> {
    let name = input.region.as_str();
    let key = format!("region-lab/{name}/{verb}_at_ms");
    let before = lab.status()?;
    let region = before.region(name)?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    // A region up with a fault still injected (`data-plane-down`, `replication-cut`) is not
    // started yet: the lab's start also clears its faults (a failback after such a drill
    // went on with the home region's data plane down).
    let faulted = verb == "start" && !region.faults.is_empty();
    let at = if done.contains(&region.status.as_str()) && !faulted {
        env.log.info(&format!(
            "region {name} is already {}; nothing to {verb}",
            region.status
        ));
        fill(&mut out, region, env.clock.now_unix_ms());
        memo.get(&key).and_then(|v| v.parse().ok())
    } else {
        let sent_at = env.clock.now_unix_ms();
        let line = format!("POST /regions/{name}/{verb}");
        match lab.act(name, verb)? {
            None => {
                // Plan mode: recorded, not sent; report the current state.
                out.planned = true;
                out.changed = true;
                out.changes.push(line);
                fill(&mut out, region, env.clock.now_unix_ms());
                return Ok(out);
            }
            Some(after) => {
                let now = env.clock.now_unix_ms();
                let region = after.region(name)?;
                if !done.contains(&region.status.as_str()) {
                    return Err(StepError::retryable(format!(
                        "the lab accepted {line} but reports region {name} as {}; check the lab's logs",
                        region.describe()
                    )));
                }
                fill(&mut out, region, now);
                out.changed = true;
                out.changes.push(line);
                if !plan {
                    memo.set(&key, &sent_at.to_string());
                }
                env.log.info(&format!(
                    "region {name}: {verb} done in {} ms",
                    now.saturating_sub(sent_at)
                ));
                Some(sent_at)
            }
        }
    };
    match verb {
        "kill" => out.killed_at_ms = at,
        "stop" => out.stopped_at_ms = at,
        _ => out.started_at_ms = at,
    }
    Ok(out)
}

/// Injects `input.fault` (`POST /regions/{name}/faults/{fault}`), unless this run already did
/// and the lab still shows it; then holds for `hold_ms`.
fn fault(
    env: &Env<'_>,
    memo: &dyn Memo,
    lab: &Lab<'_>,
    input: &RegionInput,
) -> Result<RegionOutput, StepError> {
    let name = input.region.as_str();
    let fault = input.fault.as_deref().unwrap_or_default();
    let key = format!("region-lab/{name}/fault/{fault}_at_ms");
    let before = lab.status()?;
    let region = before.region(name)?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    out.fault = Some(fault.to_owned());
    let remembered = memo.get(&key).and_then(|v| v.parse::<u64>().ok());
    if let Some(at) = remembered.filter(|_| region.faults.iter().any(|f| f == fault)) {
        env.log.info(&format!(
            "fault {fault} was injected into region {name} earlier in this run and is still in place"
        ));
        fill(&mut out, region, env.clock.now_unix_ms());
        out.fault_at_ms = Some(at);
        return Ok(out);
    }
    let path = match input.stale_ms {
        Some(ms) => format!("faults/{}?stale_ms={ms}", percent_encode(fault, b"")),
        None => format!("faults/{}", percent_encode(fault, b"")),
    };
    let line = format!("POST /regions/{name}/{path}");
    let sent_at = env.clock.now_unix_ms();
    let Some(after) = lab.act(name, &path)? else {
        out.planned = true;
        out.changed = true;
        out.changes.push(line);
        fill(&mut out, region, env.clock.now_unix_ms());
        return Ok(out);
    };
    let region = after.region(name)?;
    if !region.faults.iter().any(|f| f == fault) {
        return Err(StepError::retryable(format!(
            "the lab accepted {line} but does not list the fault on region {name} ({}); is the lab older than this step?",
            region.describe()
        )));
    }
    memo.set(&key, &sent_at.to_string());
    env.log.info(&format!(
        "region {name}: fault {fault} injected in {} ms",
        env.clock.now_unix_ms().saturating_sub(sent_at)
    ));
    if input.hold_ms > 0 {
        env.log
            .info(&format!("holding the fault for {} ms", input.hold_ms));
        env.clock.sleep_ms(input.hold_ms);
    }
    fill(&mut out, region, env.clock.now_unix_ms());
    out.changed = true;
    out.changes.push(line);
    out.fault_at_ms = Some(sent_at);
    if matches!(fault, "region-down" | "dns-stale") {
        out.killed_at_ms = Some(sent_at);
    }
    Ok(out)
}

fn rebuild_standby(
    env: &Env<'_>,
    memo: &dyn Memo,
    lab: &Lab<'_>,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    let name = input.region.as_str();
    // validate() guarantees `from` for this action; the fallback only keeps this total.
    let from = input
        .from
        .as_deref()
        .ok_or_else(|| StepError::invalid("from: rebuild-standby needs the region to copy from"))?;
    let key = format!("region-lab/{name}/rebuild-standby/{from}_at_ms");
    let before = lab.status()?;
    let region = before.region(name)?;
    // Fail on a misspelt source before touching anything (the lab would answer 400 too).
    before.region(from)?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    let remembered = memo.get(&key).and_then(|v| v.parse::<u64>().ok());
    if let Some(at) = remembered.filter(|_| region.is_standby()) {
        env.log.info(&format!(
            "region {name} was rebuilt from {from} earlier in this run and is a standby; not copying again"
        ));
        fill(&mut out, region, env.clock.now_unix_ms());
        out.role = Some(region.role.clone());
        out.rebuilt_at_ms = Some(at);
        return Ok(out);
    }
    let line = format!("POST /regions/{name}/rebuild-standby?from={from}");
    let sent_at = env.clock.now_unix_ms();
    let action = format!("rebuild-standby?from={}", percent_encode(from, b""));
    let Some(after) = lab.act(name, &action)? else {
        // Plan mode: recorded, not sent; report the current state.
        out.planned = true;
        out.changed = true;
        out.changes.push(line);
        fill(&mut out, region, env.clock.now_unix_ms());
        out.role = Some(region.role.clone());
        return Ok(out);
    };
    let now = env.clock.now_unix_ms();
    let region = after.region(name)?;
    if !region.is_standby() {
        return Err(StepError::retryable(format!(
            "the lab accepted {line} but region {name}'s PostgreSQL is not a running standby \
             (role {}, {}); check the lab's logs",
            region.role,
            region.describe()
        )));
    }
    fill(&mut out, region, now);
    out.role = Some(region.role.clone());
    out.changed = true;
    out.changes.push(line);
    out.rebuilt_at_ms = Some(sent_at);
    if !plan {
        memo.set(&key, &sent_at.to_string());
    }
    env.log.info(&format!(
        "region {name}: rebuilt as a standby of {from} in {} ms",
        now.saturating_sub(sent_at)
    ));
    Ok(out)
}

/// Scales the region's data planes to `capacity` (unless it already runs that many), then
/// waits for `min_capacity` ready instances.
fn scale(
    env: &Env<'_>,
    memo: &dyn Memo,
    lab: &Lab<'_>,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    let name = input.region.as_str();
    // validate() guarantees `capacity` for this action; the fallback only keeps this total.
    let capacity = input
        .capacity
        .ok_or_else(|| StepError::invalid("capacity: scale needs the instances to run"))?;
    let wanted = input.min_capacity.unwrap_or(capacity);
    let key = format!("region-lab/{name}/scale/{capacity}_at_ms");
    let before = lab.status()?;
    let region = before.region(name)?;
    let mut out = RegionOutput::new(VENDOR, input, env.clock.now_unix_ms());
    let (current, _) = region.capacity();
    let remembered = memo.get(&key).and_then(|v| v.parse::<u64>().ok());
    let scaled_at = if current == capacity {
        if remembered.is_none() {
            env.log.info(&format!(
                "region {name} already runs {capacity} data-plane instances; nothing to scale"
            ));
        }
        remembered
    } else {
        let line = format!("POST /regions/{name}/scale?instances={capacity}");
        let sent_at = env.clock.now_unix_ms();
        let Some(after) = lab.act(name, &format!("scale?instances={capacity}"))? else {
            out.planned = true;
            out.changed = true;
            out.changes.push(line);
            fill(&mut out, region, env.clock.now_unix_ms());
            return Ok(out);
        };
        let (now_capacity, _) = after.region(name)?.capacity();
        if now_capacity != capacity {
            return Err(StepError::retryable(format!(
                "the lab accepted {line} but reports region {name} at {now_capacity} instances; is the lab older than this step?"
            )));
        }
        out.changed = true;
        out.changes.push(line);
        if !plan {
            memo.set(&key, &sent_at.to_string());
        }
        env.log.info(&format!(
            "region {name}: scaling from {current} to {capacity} data-plane instances"
        ));
        Some(sent_at)
    };
    out.scaled_at_ms = scaled_at;
    let start = env.clock.now_unix_ms();
    let deadline = start.saturating_add(input.timeout_ms);
    loop {
        let now = env.clock.now_unix_ms();
        let last = match lab.status() {
            Ok(doc) => {
                // Read after the answer: an instance that turned ready while the status
                // request was in flight must not be dated before it was ready.
                let now = env.clock.now_unix_ms();
                let region = doc.region(name)?;
                fill(&mut out, region, now);
                let (_, ready) = region.capacity();
                if ready >= capacity && out.capacity_ready_at_ms.is_none() {
                    out.capacity_ready_at_ms = Some(now);
                }
                if ready >= wanted {
                    out.ready_at_ms = Some(now);
                    out.waited_ms = Some(now.saturating_sub(start));
                    env.log.info(&format!(
                        "region {name}: {ready} of {capacity} data-plane instances ready"
                    ));
                    return Ok(out);
                }
                format!("{ready} of {capacity} data-plane instances ready, waiting for {wanted}")
            }
            Err(e) if e.is_retryable() => e.message().to_owned(),
            Err(e) => return Err(e),
        };
        if plan {
            return Ok(out);
        }
        if now >= deadline {
            return Err(StepError::retryable(format!(
                "region {name} did not reach {wanted} ready data-plane instances within {} ms: {last}; \
                 raise timeout_ms if its instances start slowly",
                input.timeout_ms
            )));
        }
        env.clock
            .sleep_ms(input.poll_interval_ms.min(deadline - now));
    }
}

fn wait_ready(
    env: &Env<'_>,
    lab: &Lab<'_>,
    input: &RegionInput,
    plan: bool,
) -> Result<RegionOutput, StepError> {
    let start = env.clock.now_unix_ms();
    let deadline = start.saturating_add(input.timeout_ms);
    let mut out = RegionOutput::new(VENDOR, input, start);
    loop {
        let now = env.clock.now_unix_ms();
        let last = match lab.status() {
            Ok(doc) => {
                // Dated after the answer, as above.
                let now = env.clock.now_unix_ms();
                let region = doc.region(&input.region)?;
                fill(&mut out, region, now);
                let (_, ready) = region.capacity();
                let enough = input.capacity.is_none_or(|c| ready >= c);
                if out.ready && enough {
                    out.ready_at_ms = Some(now);
                    out.waited_ms = Some(now.saturating_sub(start));
                    if input.capacity.is_some() {
                        out.capacity_ready_at_ms = Some(now);
                    }
                    return Ok(out);
                }
                if doc.status != "ready" && !doc.status.is_empty() {
                    format!("the lab is {}", doc.status)
                } else if out.ready {
                    format!(
                        "{ready} of the {} data-plane instances waited for are ready",
                        input.capacity.unwrap_or(1)
                    )
                } else {
                    region.describe()
                }
            }
            // The control API may be busy (a region action holds it); keep polling until the
            // deadline, reporting the last failure if it never answers.
            Err(e) if e.is_retryable() => e.message().to_owned(),
            Err(e) => return Err(e),
        };
        if plan {
            // A plan reads once and goes on (an earlier step may start the region first), but
            // says what it read: `ready[us] success` alone read as "us is ready".
            env.log.warn(&format!(
                "region `{}` is not ready now ({last}); a run waits up to {} ms for it here",
                input.region, input.timeout_ms
            ));
            return Ok(out);
        }
        if now >= deadline {
            return Err(StepError::retryable(format!(
                "region {} is not ready after {} ms: {last}",
                input.region, input.timeout_ms
            )));
        }
        env.clock
            .sleep_ms(input.poll_interval_ms.min(deadline - now));
    }
}

meridian_families::region_step! {
    /// The step.
    #[derive(Debug)]
    RegionLab {
        manifest: meridian_sdk::ManifestInfo::new("region-lab", env!("CARGO_PKG_VERSION"))
            .description(
                "Runs and breaks regions of the local lab through its control API: status, start, stop, \
                 kill, wait-ready, rebuild-standby (failback), fault, scale (data-plane instances), with host-clock \
                 timestamps (killed_at_ms, ready_at_ms, capacity_ready_at_ms) for RTO and time to full capacity.",
            )
            .needs(meridian_sdk::GrantKind::Http, "`provider.lab.control_url` (scheme://host:port of the lab's control API)"),
        run: run,
    }
}

#[cfg(test)]
mod tests;
