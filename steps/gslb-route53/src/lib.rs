//! `gslb-route53`: the GSLB family on AWS Route 53.
//!
//! Maps the family schema onto Route 53 routing-policy records, one record set per region with
//! the region name as `SetIdentifier`:
//! - policy failover → `Failover: PRIMARY` for the leading region, `SECONDARY` for the other
//!   (Route 53 failover takes exactly two regions); failover swaps the two in one atomic batch;
//! - policy weighted → `Weight` per region; failover/set-weights rewrite the weights;
//! - policy latency → `Region` (the region's `location`, default its name).
//!
//! The step owns the routing records (failover, weighted or latency) of its name and type: a
//! record whose set identifier is no longer a region of the input is deleted.
//!
//! Health checks are created with `CreateHealthCheck`. Their `CallerReference` says they are
//! Meridian's and whose: `meridian-<record>-<settings>-<time>`, where `<record>` hashes the zone,
//! name and type, `<settings>` the region and check settings. A check whose reference starts with
//! the wanted `meridian-<record>-<settings>-` is reused, so re-running never duplicates checks; the
//! time only keeps references unique, because Route 53 refuses a reference that a deleted check
//! had (reverting a setting would fail otherwise). A changed setting creates a new check, the
//! record moves to it, and the old one is deleted; so are the checks of removed regions, and any
//! other check of this record's that no region wants (left over by an interrupted run). Checks
//! made before references named their record (`meridian-<hash>`) are deleted when one of this
//! record's sets used them.
//!
//! Records are read first (`ListResourceRecordSets`) and only the ones that differ are sent, as
//! `UPSERT`, with a `DELETE` for each removed region, in one `ChangeResourceRecordSets` batch;
//! with `wait` the step polls `GetChange` until `INSYNC`, bounded by `timeout_ms`. Health checks
//! are deleted after that, when no record uses them any more. Requests are signed with SigV4
//! inside the component.
//!
//! Costs per run: one or two zone/record reads, one health-check listing when any region has a
//! check or any record uses one, at most one change batch, one status read per health check, the
//! `GetChange` polls, and one `DeleteHealthCheck` per check no longer used.

pub mod api;
pub mod sigv4;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet};

use meridian_families::gslb::{
    ChangeOp, Desired, GslbAction, GslbChange, GslbInput, GslbOutput, Health, HealthCheckType,
    Region, RoutingPolicy, RoutingState, Undo,
};
use meridian_families::{Env, StepError};
use sha2::{Digest, Sha256};

use crate::api::Client;
use crate::sigv4::Credentials;
use crate::xml::{Action, HealthCheck, HealthCheckConfig, RecordSet};

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "route53";

/// Prefix of the placeholder id of a health check that plan mode did not create.
const PLANNED: &str = "planned:";

/// How the `CallerReference` of every health check Meridian creates starts.
const MERIDIAN: &str = "meridian-";

/// Runs one GSLB action against Route 53. Idempotent: re-running with the same input changes
/// nothing once the provider matches.
pub fn run(env: &Env<'_>, input: &GslbInput) -> Result<GslbOutput, StepError> {
    input.validate()?;
    validate_for_route53(input)?;
    let cfg = input.provider.route53.as_ref().ok_or_else(|| {
        StepError::invalid("provider.route53: required by gslb-route53 (endpoint, hosted_zone_id, credential secret names)")
    })?;
    let creds = credentials(env, cfg)?;
    let hint = format!(
        "the secrets `{}` / `{}`",
        cfg.access_key_id_secret, cfg.secret_access_key_secret
    );
    let client = Client::new(
        *env,
        &cfg.endpoint,
        creds,
        &cfg.signing_region,
        &input.zone_fqdn(),
        &hint,
    );
    let zone_id = match &cfg.hosted_zone_id {
        Some(id) => id.trim().trim_start_matches("/hostedzone/").to_owned(),
        None => client.find_zone(&input.zone_fqdn())?,
    };
    let name = input.fqdn();
    let rtype = input.record_type.as_str();
    let listed = client.list_record_sets(&zone_id, &name, rtype)?;
    refuse_conflicts(&name, rtype, &listed)?;
    if rtype != "CNAME" {
        refuse_conflicts(
            &name,
            rtype,
            &client.list_record_sets(&zone_id, &name, "CNAME")?,
        )?;
    }
    let (current, removed) = split_records(input, listed);
    let before = state_of(&current);

    if input.action == GslbAction::Status {
        let ids = current
            .iter()
            .filter_map(|(r, rr)| Some((r.clone(), rr.health_check_id.clone()?)))
            .collect();
        let status = health(env, &client, input, &ids, true)?;
        return Ok(input.output(VENDOR, &before, status));
    }

    let desired = input.desired(&before)?;
    if let Desired::Failover { order } = &desired
        && input
            .region(&order[0])
            .is_some_and(|r| r.health_check.is_none())
    {
        env.log.warn(&format!(
            "region {} becomes PRIMARY without a health check: Route 53 will never fail over from it by itself",
            order[0]
        ));
    }
    let undo: Option<Undo> = input.undo_for(&before);
    let mut changes = Vec::new();
    let records = Records {
        zone_id: &zone_id,
        current: &current,
        removed: &removed,
    };
    let checks = ensure_health_checks(
        &client,
        &records,
        input,
        env.clock.now_unix_ms(),
        &mut changes,
    )?;
    let hc_ids = checks.ids;
    let mut planned = checks.planned;

    // Deletions first: in a failover pair, the removed region's PRIMARY must be gone before
    // another record takes that role.
    let mut batch = Vec::new();
    for rr in removed {
        changes.push(GslbChange::new(
            ChangeOp::Delete,
            "record",
            format!(
                "{name} {rtype} [{}]",
                rr.set_identifier.as_deref().unwrap_or_default()
            ),
            describe(&rr),
        ));
        batch.push((Action::Delete, rr));
    }
    for region in &input.regions {
        let want = record_for(input, region, &desired, hc_ids.get(&region.name));
        let existing = current.get(&region.name);
        if existing.is_some_and(|cur| same_record(cur, &want)) {
            continue;
        }
        let op = if existing.is_some() {
            ChangeOp::Update
        } else {
            ChangeOp::Create
        };
        changes.push(GslbChange::new(
            op,
            "record",
            format!("{name} {rtype} [{}]", region.name),
            describe(&want),
        ));
        batch.push((Action::Upsert, want));
    }

    let mut change_id = None;
    let mut synced = true;
    if !batch.is_empty() {
        let comment = format!(
            "meridian gslb-route53: {} {name}",
            action_name(input.action)
        );
        match client.change(&zone_id, &comment, &batch)? {
            None => {
                planned = true;
                synced = false;
            }
            Some(info) => {
                env.log.info(&format!(
                    "Route 53 change {} submitted ({})",
                    info.id, info.status
                ));
                synced = info.status == "INSYNC";
                if !synced && input.wait {
                    wait_insync(env, &client, &info.id, input.timeout_ms)?;
                    synced = true;
                }
                change_id = Some(info.id);
            }
        }
    }

    // Only now does no record use them (and, with `wait`, every Route 53 server knows it):
    // deleting a check that a record still uses makes that record fail over unpredictably.
    for (id, region) in &checks.unused {
        let label = match region {
            Some(r) => format!("{r} ({id})"),
            None => id.clone(),
        };
        match client.delete_health_check(id) {
            Ok(recorded) => {
                planned |= recorded;
                changes.push(GslbChange::new(
                    ChangeOp::Delete,
                    "health-check",
                    label,
                    format!("no record of {name} {rtype} uses it"),
                ));
            }
            // The routing change is made; a leftover check only costs money, and the next run
            // finds it again by its reference.
            Err(e) => env.log.warn(&format!(
                "health check {label} is no longer used but could not be deleted: {e}"
            )),
        }
    }

    let status = health(env, &client, input, &hc_ids, false)?;
    let mut out = input
        .output(VENDOR, &desired.as_state(), status)
        .applied(changes, synced, undo, planned);
    out.change_id = change_id;
    Ok(out)
}

/// Undoes a failover or set-weights: restores `undo` (recorded in the run's output), or the
/// declared primary / weights when none was recorded. `Ok(None)` when there is nothing to undo.
pub fn compensate(
    env: &Env<'_>,
    input: &GslbInput,
    undo: Option<&Undo>,
) -> Result<Option<GslbOutput>, StepError> {
    input.compensate_with(undo, |back| run(env, back))
}

fn action_name(a: GslbAction) -> &'static str {
    match a {
        GslbAction::Apply => "apply",
        GslbAction::Failover => "failover",
        GslbAction::SetWeights => "set-weights",
        GslbAction::Status => "status",
    }
}

fn validate_for_route53(input: &GslbInput) -> Result<(), StepError> {
    match input.policy {
        RoutingPolicy::Failover if input.regions.len() != 2 => Err(StepError::invalid(format!(
            "regions: Route 53 failover routing takes exactly two regions (one PRIMARY, one SECONDARY); got {}. \
             Use policy weighted for more regions",
            input.regions.len()
        ))),
        RoutingPolicy::Latency => {
            for r in &input.regions {
                let loc = r.location.as_deref().unwrap_or(&r.name);
                if !looks_like_aws_region(loc) {
                    return Err(StepError::invalid(format!(
                        "regions[{}].location: `{loc}` is not an AWS region code (like eu-west-1); Route 53 latency \
                         records need one — set `location`",
                        r.name
                    )));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn looks_like_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn credentials(
    env: &Env<'_>,
    cfg: &meridian_families::gslb::Route53Provider,
) -> Result<Credentials, StepError> {
    Ok(Credentials {
        access_key_id: env.secret(&cfg.access_key_id_secret, "AWS access key id")?,
        secret_access_key: env.secret(&cfg.secret_access_key_secret, "AWS secret access key")?,
        session_token: match &cfg.session_token_secret {
            Some(name) => Some(env.secret(name, "AWS session token")?),
            None => None,
        },
    })
}

/// Record sets at the managed name that Route 53 refuses routing-policy records beside: a CNAME
/// (nothing may share its name) or a record set of the managed type without a set identifier
/// (simple routing). Found in plan mode too: the moto emulator accepted both batches, so a plan
/// said nothing, while real Route 53 refuses them (`InvalidChangeBatch`), in the middle of a
/// failover.
fn refuse_conflicts(name: &str, rtype: &str, listed: &[RecordSet]) -> Result<(), StepError> {
    let Some(rr) = listed
        .iter()
        .find(|r| r.set_identifier.is_none() || (r.rtype == "CNAME" && rtype != "CNAME"))
    else {
        return Ok(());
    };
    let what = if rr.alias {
        "an alias".to_string()
    } else {
        format!("`{}`", rr.values.join(", "))
    };
    Err(StepError::invalid(
        if rr.rtype == "CNAME" && rtype != "CNAME" {
            format!(
                "{name} has a CNAME record ({what}): no other record may share a CNAME's name, so Route 53 refuses the {rtype} records this step manages; delete the CNAME, or point the step at another name"
            )
        } else {
            format!(
                "{name} {} already has a record set without a set identifier (simple routing: {what}): Route 53 refuses routing-policy records beside it; delete it (the step then creates the routing records), or point the step at another name",
                rr.rtype
            )
        },
    ))
}

/// Splits the record sets of the managed name and type into those of the input's regions (by set
/// identifier) and the routing records of regions no longer in the input, which are deleted.
/// Alias records and records of other routing policies are not the step's and are left alone.
fn split_records(
    input: &GslbInput,
    listed: Vec<RecordSet>,
) -> (BTreeMap<String, RecordSet>, Vec<RecordSet>) {
    let mut current = BTreeMap::new();
    let mut removed = Vec::new();
    for rr in listed {
        let Some(id) = rr.set_identifier.clone() else {
            continue;
        };
        if input.region(&id).is_some() {
            current.insert(id, rr);
        } else if !rr.alias && (rr.failover.is_some() || rr.weight.is_some() || rr.region.is_some())
        {
            removed.push(rr);
        }
    }
    (current, removed)
}

/// The family routing state implied by the records that exist.
fn state_of(current: &BTreeMap<String, RecordSet>) -> RoutingState {
    let with_role = |role: &str| {
        current
            .iter()
            .find(|(_, rr)| rr.failover.as_deref() == Some(role))
            .map(|(r, _)| r.clone())
    };
    let order = [with_role("PRIMARY"), with_role("SECONDARY")]
        .into_iter()
        .flatten()
        .collect();
    let weights = current
        .iter()
        .filter_map(|(r, rr)| Some((r.clone(), rr.weight?)))
        .collect();
    RoutingState { order, weights }
}

/// The health-check settings for a region, as Route 53 spells them.
fn health_check_config(input: &GslbInput, region: &Region) -> Option<HealthCheckConfig> {
    let hc = region.health_check.as_ref()?;
    let is_ip = region.endpoint.parse::<std::net::IpAddr>().is_ok();
    let record_host = input.fqdn().trim_end_matches('.').to_owned();
    let (ip_address, fqdn) = match (is_ip, hc.kind) {
        // Probe the address; for HTTP(S) the FQDN becomes the Host header / SNI.
        (true, HealthCheckType::Tcp) => (Some(region.endpoint.clone()), None),
        (true, _) => (
            Some(region.endpoint.clone()),
            Some(hc.host.clone().unwrap_or(record_host)),
        ),
        (false, _) => (None, Some(region.endpoint.trim_end_matches('.').to_owned())),
    };
    Some(HealthCheckConfig {
        ip_address,
        port: Some(hc.port()),
        kind: hc.kind.as_str().to_ascii_uppercase(),
        resource_path: (hc.kind != HealthCheckType::Tcp).then(|| hc.path.clone()),
        fqdn,
        // Route 53 probes every 10 or 30 seconds; round up to the nearer allowed value.
        request_interval: if hc.interval <= 10 { 10 } else { 30 },
        failure_threshold: hc.failure_threshold,
    })
}

/// `meridian-<record>-`: the start of the `CallerReference` of every health check Meridian
/// creates for this zone, name and type, so a check left behind can be told apart from the checks
/// of other records.
fn record_reference(zone_id: &str, input: &GslbInput) -> String {
    let key = format!(
        "{zone_id}|{}|{}",
        input.fqdn().to_ascii_lowercase(),
        input.record_type.as_str()
    );
    format!("{MERIDIAN}{}-", hex_digest(&key, 8))
}

/// `meridian-<record>-<settings>-`: the same for the same record, region and settings, different
/// as soon as a setting changes (a changed check is a new check).
fn reference_prefix(
    zone_id: &str,
    input: &GslbInput,
    region: &str,
    cfg: &HealthCheckConfig,
) -> String {
    let key = format!(
        "{region}|{:?}|{:?}|{}|{:?}|{:?}|{}|{}",
        cfg.ip_address,
        cfg.port,
        cfg.kind,
        cfg.resource_path,
        cfg.fqdn,
        cfg.request_interval,
        cfg.failure_threshold
    );
    format!(
        "{}{}-",
        record_reference(zone_id, input),
        hex_digest(&key, 10)
    )
}

/// The first `bytes` bytes of the SHA-256 of `key`, in hex.
fn hex_digest(key: &str, bytes: usize) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The health checks of one run.
struct Checks {
    /// The check each region's record uses, by region.
    ids: BTreeMap<String, String>,
    /// Whether any creation was only planned.
    planned: bool,
    /// Meridian's checks of this record that no region wants any more, with the region whose
    /// record used one; deleted once the records have moved off them.
    unused: Vec<(String, Option<String>)>,
}

/// The record sets found at the managed name and type.
struct Records<'a> {
    zone_id: &'a str,
    /// By region.
    current: &'a BTreeMap<String, RecordSet>,
    /// Of regions no longer in the input.
    removed: &'a [RecordSet],
}

/// Finds or creates the health check of every region that declares one, and finds the checks of
/// this record's that are no longer wanted. `now_ms` makes new references unique.
fn ensure_health_checks(
    client: &Client<'_>,
    records: &Records<'_>,
    input: &GslbInput,
    now_ms: u64,
    changes: &mut Vec<GslbChange>,
) -> Result<Checks, StepError> {
    let zone_id = records.zone_id;
    let wanted: Vec<(&Region, HealthCheckConfig)> = input
        .regions
        .iter()
        .filter_map(|r| Some((r, health_check_config(input, r)?)))
        .collect();
    // The check each existing record uses, with the record's set identifier.
    let used: BTreeMap<&str, &str> = records
        .current
        .values()
        .chain(records.removed)
        .filter_map(|rr| {
            Some((
                rr.health_check_id.as_deref()?,
                rr.set_identifier.as_deref()?,
            ))
        })
        .collect();
    let mut checks = Checks {
        ids: BTreeMap::new(),
        planned: false,
        unused: Vec::new(),
    };
    if wanted.is_empty() && used.is_empty() {
        // Nothing to find or clean up: skip the listing (and the permission it needs).
        return Ok(checks);
    }
    let existing = client.list_health_checks()?;
    for (region, cfg) in wanted {
        let prefix = reference_prefix(zone_id, input, &region.name, &cfg);
        if let Some(hc) = existing
            .iter()
            .find(|h| h.caller_reference.starts_with(&prefix))
        {
            checks.ids.insert(region.name.clone(), hc.id.clone());
            continue;
        }
        let detail = format!(
            "{} {}:{}{}",
            cfg.kind,
            cfg.ip_address
                .as_deref()
                .or(cfg.fqdn.as_deref())
                .unwrap_or_default(),
            cfg.port.unwrap_or_default(),
            cfg.resource_path.as_deref().unwrap_or_default()
        );
        // Unique per creation: Route 53 refuses a reference that a deleted check had.
        let reference = format!("{prefix}{now_ms:x}");
        let id = match client.create_health_check(&reference, &cfg)? {
            Some(id) => id,
            None => {
                checks.planned = true;
                format!("{PLANNED}{reference}")
            }
        };
        changes.push(GslbChange::new(
            ChangeOp::Create,
            "health-check",
            format!("{} ({id})", region.name),
            detail,
        ));
        checks.ids.insert(region.name.clone(), id);
    }
    let keep: BTreeSet<&str> = checks.ids.values().map(String::as_str).collect();
    let ours = record_reference(zone_id, input);
    checks.unused = unused_checks(&existing, &ours, &used, &keep);
    Ok(checks)
}

/// Meridian's checks that no region keeps: those whose reference names this record, and those
/// (of any Meridian reference, older ones included) that one of this record's sets used.
fn unused_checks(
    existing: &[HealthCheck],
    record_reference: &str,
    used: &BTreeMap<&str, &str>,
    keep: &BTreeSet<&str>,
) -> Vec<(String, Option<String>)> {
    existing
        .iter()
        .filter(|h| !keep.contains(h.id.as_str()))
        .filter(|h| {
            h.caller_reference.starts_with(record_reference)
                || (h.caller_reference.starts_with(MERIDIAN) && used.contains_key(h.id.as_str()))
        })
        .map(|h| {
            let region = used.get(h.id.as_str()).map(|r| (*r).to_owned());
            (h.id.clone(), region)
        })
        .collect()
}

/// The record set a region must have under `desired`.
fn record_for(
    input: &GslbInput,
    region: &Region,
    desired: &Desired,
    hc_id: Option<&String>,
) -> RecordSet {
    let mut rr = RecordSet {
        name: input.fqdn(),
        rtype: input.record_type.as_str().to_owned(),
        set_identifier: Some(region.name.clone()),
        ttl: Some(input.ttl),
        values: vec![region.endpoint.trim_end_matches('.').to_owned()],
        health_check_id: hc_id.cloned(),
        ..RecordSet::default()
    };
    match desired {
        Desired::Failover { order } => {
            let role = if order.first() == Some(&region.name) {
                "PRIMARY"
            } else {
                "SECONDARY"
            };
            rr.failover = Some(role.to_owned());
        }
        Desired::Weighted { weights } => {
            rr.weight = Some(weights.get(&region.name).copied().unwrap_or(0))
        }
        Desired::Latency => {
            rr.region = Some(
                region
                    .location
                    .clone()
                    .unwrap_or_else(|| region.name.clone()),
            )
        }
    }
    rr
}

fn same_record(a: &RecordSet, b: &RecordSet) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v
            .iter()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        v.sort();
        v
    };
    !a.alias
        && a.name.eq_ignore_ascii_case(&b.name)
        && a.rtype == b.rtype
        && a.set_identifier == b.set_identifier
        && a.weight == b.weight
        && a.region == b.region
        && a.failover == b.failover
        && a.ttl == b.ttl
        && norm(&a.values) == norm(&b.values)
        && a.health_check_id == b.health_check_id
}

fn describe(rr: &RecordSet) -> String {
    let mut s = format!("{} ttl {}", rr.values.join(","), rr.ttl.unwrap_or_default());
    if let Some(f) = &rr.failover {
        s.push_str(&format!(" failover {f}"));
    }
    if let Some(w) = rr.weight {
        s.push_str(&format!(" weight {w}"));
    }
    if let Some(r) = &rr.region {
        s.push_str(&format!(" latency {r}"));
    }
    if let Some(h) = &rr.health_check_id {
        s.push_str(&format!(" health-check {h}"));
    }
    s
}

/// Polls GetChange until INSYNC: 1 s, doubling to 10 s between polls, never past `timeout_ms`.
fn wait_insync(
    env: &Env<'_>,
    client: &Client<'_>,
    change_id: &str,
    timeout_ms: u64,
) -> Result<(), StepError> {
    let start = env.clock.now_unix_ms();
    let deadline = start.saturating_add(timeout_ms);
    let mut delay = 1_000u64;
    // The deadline bounds the loop; the count is a second guard against a clock that stands still.
    for _ in 0..10_000 {
        let now = env.clock.now_unix_ms();
        if now >= deadline {
            break;
        }
        env.clock.sleep_ms(delay.min(deadline - now));
        if client.get_change(change_id)?.status == "INSYNC" {
            env.log
                .info(&format!("Route 53 change {change_id} is INSYNC"));
            return Ok(());
        }
        delay = (delay * 2).min(10_000);
    }
    Err(StepError::retryable(format!(
        "Route 53 change {change_id} was submitted but is not INSYNC after {timeout_ms} ms; retrying the step is safe \
         (nothing is re-sent when the records already match) — or raise timeout_ms"
    )))
}

/// Health by region from the health checks in `ids`; regions without a check are unknown.
/// For actions other than status a failed read degrades to unknown with a warning, because the
/// change itself already succeeded.
fn health(
    env: &Env<'_>,
    client: &Client<'_>,
    input: &GslbInput,
    ids: &BTreeMap<String, String>,
    strict: bool,
) -> Result<BTreeMap<String, Health>, StepError> {
    let mut out = BTreeMap::new();
    for r in &input.regions {
        let h = match ids.get(&r.name) {
            Some(id) if !id.starts_with(PLANNED) => match client.health_status(id) {
                Ok(Some(true)) => Health::Healthy,
                Ok(Some(false)) => Health::Unhealthy,
                Ok(None) => Health::Unknown,
                Err(e) if !strict => {
                    env.log.warn(&format!("health of {} unknown: {e}", r.name));
                    Health::Unknown
                }
                Err(e) => return Err(e),
            },
            _ => Health::Unknown,
        };
        out.insert(r.name.clone(), h);
    }
    Ok(out)
}

meridian_families::gslb_step! {
    /// The `gslb-route53` component: the family schema in, the family output out; undo kept in
    /// the run's kv store (see `meridian_families::sdk`).
    GslbRoute53 {
        name: "gslb-route53",
        description: "GSLB on AWS Route 53: failover (PRIMARY/SECONDARY with health checks), weighted and latency records, SigV4-signed inside the component; failover and set-weights compensate back.",
        needs: &[
            (meridian_sdk::GrantKind::Http, "the URL in `provider.route53.endpoint` (default https://route53.amazonaws.com)"),
            (meridian_sdk::GrantKind::Secret, "the access key id named by `provider.route53.access_key_id_secret`"),
            (meridian_sdk::GrantKind::Secret, "the secret access key named by `provider.route53.secret_access_key_secret`"),
            (meridian_sdk::GrantKind::Secret, "the session token named by `provider.route53.session_token_secret`, when given"),
        ],
        run: run,
        compensate: compensate,
    }
}

#[cfg(test)]
mod tests;
