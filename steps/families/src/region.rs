//! The region family: one input and one output schema for steps that run, break and wait for
//! a whole region (its gateways, its control plane, its database).
//!
//! `region-lab` drives the local lab's control API (start, stop, kill a region; wait until it
//! serves again) and `region-api7ee` bootstraps an API7 Enterprise gateway group and waits for
//! its data planes. Both report `ready` and Unix-millisecond timestamps taken from the host
//! clock, so a drill can compute its RTO from step outputs. Vendor connections live under
//! `provider.<vendor>`; a `with:` block may carry several, so swapping vendors is a change of
//! `uses:` only.
//!
//! Everything here is plain data plus validation: no I/O.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::StepError;

/// What the step does. Each vendor supports a subset; the others are invalid input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RegionAction {
    /// Read only: report the region's state and readiness.
    Status,
    /// Bring the region up (the lab: restart its processes).
    Start,
    /// Stop the region gracefully.
    Stop,
    /// Crash the region (the lab: gateways stop answering, PostgreSQL stops `-m immediate`).
    Kill,
    /// Wait, bounded by `timeout_ms`, until the region serves.
    WaitReady,
    /// Provision the region (API7: gateway group, data-plane token, admin key), then wait for
    /// its data planes.
    Deploy,
    /// Re-create the region's database as a streaming standby of region `from` (the lab:
    /// pg_basebackup from it; the region's own data is replaced). The first step of a failback.
    RebuildStandby,
    /// Inject the named `fault` into the region (a drill's way to break it; the lab:
    /// `region-down`, `db-down`, `data-plane-down`, `replication-cut`, `dns-stale`).
    Fault,
    /// Run `capacity` data-plane instances, then wait (bounded by `timeout_ms`) until
    /// `min_capacity` of them (default: all) are ready. The lab starts or drains instances; on
    /// API7 the platform scales the data planes and the step waits for them.
    Scale,
}

impl RegionAction {
    /// The action as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Kill => "kill",
            Self::WaitReady => "wait-ready",
            Self::Deploy => "deploy",
            Self::RebuildStandby => "rebuild-standby",
            Self::Fault => "fault",
            Self::Scale => "scale",
        }
    }
}

/// The local lab's control API (`meridian lab up` prints its URL; `lab.json` holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabProvider {
    /// Base URL, e.g. `http://127.0.0.1:7700`; must be covered by the step's `grants.http`.
    pub control_url: String,
}

/// An API7 Enterprise control plane and the gateway group of the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api7eeProvider {
    /// Control-plane (Dashboard) base URL, e.g. `https://cp.example.com:7443`.
    pub control_plane: String,
    /// Name of the granted secret holding the control-plane access token (`X-API-KEY`).
    pub token_secret: String,
    /// Gateway group name (default: the region name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_group: Option<String>,
    /// Status endpoint of each data plane, e.g. `http://10.0.0.5:7085` (`/status/ready` is
    /// appended unless the URL already ends with it).
    #[serde(default)]
    pub data_planes: Vec<String>,
    /// deploy: issue a gateway-group admin key (API7 keeps one per group, so this replaces the
    /// previous one; default true). Set false when another system holds the current key.
    #[serde(default = "default_true")]
    pub issue_admin_key: bool,
}

fn default_true() -> bool {
    true
}

/// Vendor connections; each step reads its own block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionProviders {
    /// For `region-lab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabProvider>,
    /// For `region-api7ee`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api7ee: Option<Api7eeProvider>,
}

/// The `with:` input of every region-family step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionInput {
    /// What to do.
    pub action: RegionAction,
    /// The region's name (the lab's region name; the default API7 gateway group name).
    pub region: String,
    /// Upper bound of every wait in milliseconds (default 60000). Keep it below the step's
    /// `timeout:` so the step reports what it waited for instead of being cut off.
    #[serde(default = "default_timeout_ms", alias = "wait_timeout_ms")]
    #[schemars(range(max = 3_600_000))]
    pub timeout_ms: u64,
    /// rebuild-standby: the region to copy from and follow (normally the current primary).
    /// Required by that action, refused by the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// fault: which fault to inject (required by that action, refused by the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// fault `dns-stale`: how long the GSLB keeps answering the broken region, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 120_000))]
    pub stale_ms: Option<u64>,
    /// fault: how long to wait after injecting before the step succeeds, in ms (default 0): the
    /// time a real outage goes unnoticed before anyone reacts. The fault instant is still
    /// `fault_at_ms`.
    #[serde(default)]
    #[schemars(range(max = 600_000))]
    pub hold_ms: u64,
    /// scale: the data-plane instances the region should run (its full capacity; required).
    /// wait-ready: how many data planes must be ready (default: the lab's one, API7's all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1024))]
    pub capacity: Option<u32>,
    /// scale: how many instances must be ready before the step succeeds (default: `capacity`).
    /// A failover that may move traffic to a region before it reached full capacity says so
    /// here; a later `wait-ready` with `capacity` reports when the rest is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1024))]
    pub min_capacity: Option<u32>,
    /// Pause between readiness polls in milliseconds (default 500).
    #[serde(default = "default_poll_ms")]
    #[schemars(range(min = 10, max = 60_000))]
    pub poll_interval_ms: u64,
    /// Vendor connections.
    #[serde(default)]
    pub provider: RegionProviders,
}

/// A region name goes into URL paths and queries: not empty, no `/`, no control character.
fn check_region_name(field: &str, name: &str) -> Result<(), StepError> {
    if name.trim().is_empty() {
        return Err(StepError::invalid(format!("{field}: must not be empty")));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(StepError::invalid(format!(
            "{field}: `{name}` contains `/` or a control character"
        )));
    }
    Ok(())
}

fn default_timeout_ms() -> u64 {
    60_000
}
fn default_poll_ms() -> u64 {
    500
}

impl RegionInput {
    /// Parses and validates a JSON input. Errors are invalid-input with the field path.
    pub fn from_json(json: &str) -> Result<Self, StepError> {
        let input: Self =
            serde_json::from_str(json).map_err(|e| StepError::invalid(format!("with: {e}")))?;
        input.validate()?;
        Ok(input)
    }

    /// Checks what does not need the vendor: the region names and the bounds.
    pub fn validate(&self) -> Result<(), StepError> {
        check_region_name("region", &self.region)?;
        match (self.action, self.from.as_deref()) {
            (RegionAction::RebuildStandby, None) => {
                return Err(StepError::invalid(
                    "from: rebuild-standby needs the region to copy from (the current primary)",
                ));
            }
            (RegionAction::RebuildStandby, Some(from)) => {
                check_region_name("from", from)?;
                if from == self.region {
                    return Err(StepError::invalid(format!(
                        "from: region `{from}` cannot be rebuilt from itself; name the current primary"
                    )));
                }
            }
            (_, Some(_)) => {
                return Err(StepError::invalid(format!(
                    "from: only rebuild-standby takes `from`, not `{}`",
                    self.action.as_str()
                )));
            }
            (_, None) => {}
        }
        match (self.action, self.fault.as_deref()) {
            (RegionAction::Fault, None) => {
                return Err(StepError::invalid(
                    "fault: the fault action needs the fault to inject, e.g. `fault: region-down`",
                ));
            }
            (RegionAction::Fault, Some(f)) => check_region_name("fault", f)?,
            (_, Some(_)) => {
                return Err(StepError::invalid(format!(
                    "fault: only the fault action takes `fault`, not `{}`",
                    self.action.as_str()
                )));
            }
            (_, None) => {}
        }
        match (self.action, self.capacity, self.min_capacity) {
            (RegionAction::Scale, None, _) => {
                return Err(StepError::invalid(
                    "capacity: scale needs the data-plane instances the region should run, e.g. `capacity: 3`",
                ));
            }
            (RegionAction::Scale, Some(c), Some(m)) if m > c => {
                return Err(StepError::invalid(format!(
                    "min_capacity: {m} is more than capacity {c}; the step cannot wait for more instances than it asks for"
                )));
            }
            (RegionAction::Scale, Some(_), _) => {}
            (RegionAction::WaitReady, _, None) => {}
            (RegionAction::WaitReady, _, Some(_)) => {
                return Err(StepError::invalid(
                    "min_capacity: only scale takes `min_capacity`; give wait-ready the `capacity` to wait for",
                ));
            }
            (_, None, None) => {}
            (a, _, _) => {
                return Err(StepError::invalid(format!(
                    "capacity: only scale and wait-ready take `capacity` or `min_capacity`, not `{}`",
                    a.as_str()
                )));
            }
        }
        if self.capacity.is_some_and(|c| c > 1024) || self.min_capacity.is_some_and(|c| c > 1024) {
            return Err(StepError::invalid("capacity: at most 1024 data planes"));
        }
        if self.hold_ms > 600_000 || self.stale_ms.is_some_and(|s| s > 120_000) {
            return Err(StepError::invalid(
                "hold_ms (at most 600000) or stale_ms (at most 120000) is too large",
            ));
        }
        if self.timeout_ms > 3_600_000 {
            return Err(StepError::invalid(
                "timeout_ms: more than one hour; split the wait into retries",
            ));
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err(StepError::invalid(
                "poll_interval_ms: must be between 10 and 60000",
            ));
        }
        Ok(())
    }

    /// Fails with invalid input unless the action is one of `supported` (for vendor `vendor`).
    pub fn require_action(
        &self,
        vendor: &str,
        supported: &[RegionAction],
    ) -> Result<(), StepError> {
        if supported.contains(&self.action) {
            return Ok(());
        }
        let names: Vec<&str> = supported.iter().map(|a| a.as_str()).collect();
        Err(StepError::invalid(format!(
            "action: `{}` is not supported by {vendor}; use one of {}",
            self.action.as_str(),
            names.join(", ")
        )))
    }
}

/// The output of every region-family step. Vendor-specific fields are left out of the JSON
/// when the vendor does not produce them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegionOutput {
    /// The vendor step, e.g. `lab` or `api7ee`.
    pub vendor: String,
    /// The action that ran.
    pub action: RegionAction,
    /// The region.
    pub region: String,
    /// The region's state in the vendor's words (lab: its region status; api7ee: `ready`,
    /// `not-ready`, `missing` or `planned`).
    pub status: String,
    /// Whether the region serves.
    pub ready: bool,
    /// Whether this run changed the region (false when it already was in the requested state;
    /// in plan mode: whether it would).
    pub changed: bool,
    /// True in plan mode: nothing was changed; mutating requests were recorded, not sent.
    pub planned: bool,
    /// When `status` was observed, Unix milliseconds (host clock).
    pub observed_at_ms: u64,
    /// kill: when the region was killed (the lab's timestamp when it reports one, else the host
    /// clock just before the request, so an RTO computed from it is never too short).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_at_ms: Option<u64>,
    /// stop: when the region was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<u64>,
    /// start: when the start was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// fault: the fault injected and when (host clock just before the request; remembered for
    /// retries, so a retry that finds the fault in place reports the first instant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_at_ms: Option<u64>,
    /// rebuild-standby: when the rebuild was requested (host clock; remembered for retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_at_ms: Option<u64>,
    /// rebuild-standby: the region's database role after the action (`standby`, `primary`),
    /// as the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// scale: when the scale was requested (host clock; remembered for retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_at_ms: Option<u64>,
    /// scale / wait-ready: the data-plane instances the region runs (lab: what it was scaled
    /// to; API7: the data planes waited for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// scale / wait-ready: data-plane instances ready when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_ready: Option<u32>,
    /// scale / wait-ready: when `capacity` instances were first seen ready (full capacity); a
    /// drill's time to full capacity is measured to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_ready_at_ms: Option<u64>,
    /// wait-ready / deploy: when readiness was first observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<u64>,
    /// wait-ready / deploy: how long the step waited for readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// Readiness of each data plane, by status URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data_planes: BTreeMap<String, bool>,
    /// api7ee: the gateway group's id (absent in plan mode when the group would be created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_group_id: Option<String>,
    /// api7ee: the gateway group was created by this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_group_created: Option<bool>,
    /// api7ee: a data-plane instance token was issued (its value is never output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_token_issued: Option<bool>,
    /// api7ee: says whether a gateway-group admin key exists; never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key_secret_hint: Option<String>,
    /// api7ee: gateway instances registered with the control plane for the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u64>,
    /// What changed (or would, in plan mode), one line each.
    pub changes: Vec<String>,
}

impl RegionOutput {
    /// An output for `input` from `vendor`, status unknown, observed at `now_ms`.
    pub fn new(vendor: &str, input: &RegionInput, now_ms: u64) -> Self {
        Self {
            vendor: vendor.to_owned(),
            action: input.action,
            region: input.region.clone(),
            status: "unknown".to_owned(),
            ready: false,
            changed: false,
            planned: false,
            observed_at_ms: now_ms,
            killed_at_ms: None,
            stopped_at_ms: None,
            started_at_ms: None,
            rebuilt_at_ms: None,
            fault: None,
            fault_at_ms: None,
            role: None,
            scaled_at_ms: None,
            capacity: None,
            instances_ready: None,
            capacity_ready_at_ms: None,
            ready_at_ms: None,
            waited_ms: None,
            data_planes: BTreeMap::new(),
            gateway_group_id: None,
            gateway_group_created: None,
            instance_token_issued: None,
            admin_key_secret_hint: None,
            instances: None,
            changes: Vec::new(),
        }
    }
}

/// Small per-run memory for region steps: what an earlier attempt of the same run did (for
/// example when it killed a region), so a retry reports the same timestamps instead of
/// inventing new ones. Inside a component it is the host's per-run kv store.
pub trait Memo {
    /// The value stored under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key`; a failure only loses the memory, so it is not reported.
    fn set(&self, key: &str, value: &str);
}

/// A [`Memo`] in memory, for tests and tools.
#[derive(Debug, Default)]
pub struct MapMemo(pub std::sync::Mutex<BTreeMap<String, String>>);

impl Memo for MapMemo {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }
    fn set(&self, key: &str, value: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), value.to_owned());
    }
}

/// A [`Memo`] over the host's per-run kv store.
#[derive(Clone, Copy)]
pub struct KvMemo<'a>(pub &'a meridian_sdk::Ctx);

impl Memo for KvMemo<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.kv().get(key).and_then(|v| String::from_utf8(v).ok())
    }
    fn set(&self, key: &str, value: &str) {
        if let Err(e) = self.0.kv().set(key, value.as_bytes()) {
            self.0.log.warn(&format!(
                "could not remember `{key}` for retries: {}",
                e.message()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_alias() {
        let i = RegionInput::from_json(
            r#"{"action":"wait-ready","region":"eu","wait_timeout_ms":5000}"#,
        )
        .unwrap();
        assert_eq!((i.timeout_ms, i.poll_interval_ms), (5000, 500));
        assert_eq!(i.provider, RegionProviders::default());
        let i = RegionInput::from_json(
            r#"{"action":"deploy","region":"eu","provider":{"api7ee":{"control_plane":"http://cp","token_secret":"T"}}}"#,
        )
        .unwrap();
        let p = i.provider.api7ee.unwrap();
        assert!(p.issue_admin_key);
        assert!(p.data_planes.is_empty());
        assert_eq!(p.gateway_group, None);
        let i = RegionInput::from_json(r#"{"action":"rebuild-standby","region":"eu","from":"us"}"#)
            .unwrap();
        assert_eq!(
            (i.action.as_str(), i.from.as_deref()),
            ("rebuild-standby", Some("us"))
        );
    }

    #[test]
    fn invalid_inputs_name_the_field() {
        for (json, prefix) in [
            (r#"{"action":"kill","region":""}"#, "region:"),
            (r#"{"action":"kill","region":"a/b"}"#, "region:"),
            (
                r#"{"action":"kill","region":"eu","poll_interval_ms":1}"#,
                "poll_interval_ms:",
            ),
            (
                r#"{"action":"kill","region":"eu","timeout_ms":4000000}"#,
                "timeout_ms:",
            ),
            (
                r#"{"action":"explode","region":"eu"}"#,
                "with: unknown variant `explode`",
            ),
            (
                r#"{"action":"kill","region":"eu","provider":{"lab":{"url":"x"}}}"#,
                "with: unknown field `url`",
            ),
            (r#"{"action":"rebuild-standby","region":"eu"}"#, "from:"),
            (
                r#"{"action":"rebuild-standby","region":"eu","from":"eu"}"#,
                "from: region `eu` cannot be rebuilt from itself",
            ),
            (
                r#"{"action":"rebuild-standby","region":"eu","from":"u/s"}"#,
                "from:",
            ),
            (
                r#"{"action":"kill","region":"eu","from":"us"}"#,
                "from: only rebuild-standby",
            ),
            (
                r#"{"action":"scale","region":"eu"}"#,
                "capacity: scale needs",
            ),
            (
                r#"{"action":"scale","region":"eu","capacity":2,"min_capacity":3}"#,
                "min_capacity: 3 is more than capacity 2",
            ),
            (
                r#"{"action":"kill","region":"eu","capacity":2}"#,
                "capacity: only scale and wait-ready",
            ),
            (
                r#"{"action":"wait-ready","region":"eu","capacity":2,"min_capacity":1}"#,
                "min_capacity: only scale",
            ),
            (
                r#"{"action":"scale","region":"eu","capacity":5000}"#,
                "capacity: at most 1024",
            ),
        ] {
            let e = RegionInput::from_json(json).unwrap_err();
            assert!(
                matches!(&e, StepError::InvalidInput(m) if m.starts_with(prefix)),
                "{json}: {e:?}"
            );
        }
    }

    #[test]
    fn unsupported_action_lists_the_supported_ones() {
        let i = RegionInput::from_json(r#"{"action":"kill","region":"eu"}"#).unwrap();
        let e = i
            .require_action(
                "region-api7ee",
                &[RegionAction::Deploy, RegionAction::Status],
            )
            .unwrap_err();
        assert_eq!(
            e,
            StepError::invalid(
                "action: `kill` is not supported by region-api7ee; use one of deploy, status"
            )
        );
        i.require_action("region-lab", &[RegionAction::Kill])
            .unwrap();
    }

    #[test]
    fn output_skips_vendor_fields_it_lacks() {
        let i = RegionInput::from_json(r#"{"action":"status","region":"eu"}"#).unwrap();
        let v = serde_json::to_value(RegionOutput::new("lab", &i, 7)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"vendor": "lab", "action": "status", "region": "eu", "status": "unknown",
                               "ready": false, "changed": false, "planned": false, "observed_at_ms": 7,
                               "changes": []})
        );
    }
}
