//! The database family: one input and one output schema for every replicated-database vendor.
//!
//! A workflow names *connections* (granted by the host from the workflow's `connections:`), never
//! DSNs, and asks for one of a few DR actions: read replication health (`status`), set up logical
//! replication (`setup-logical`), make an old primary refuse writes (`fence`), promote a standby
//! (`promote`) and prove a server takes writes (`verify-writable`). `db-postgres` implements it
//! for PostgreSQL; a managed-database vendor would map the same actions onto its API.
//!
//! Everything here is plain data plus validation: no I/O.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::StepError;

/// What the step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseAction {
    /// Read only: role, LSN, replicas, slots, subscriptions, lag and health of `connection`.
    Status,
    /// Create (or converge) the publication on the publisher and the subscription on the
    /// subscriber; refresh an existing subscription.
    SetupLogical,
    /// Make `connection` (the old primary) refuse writes; an unreachable server is not a failure.
    Fence,
    /// Promote `connection` (a standby) to primary.
    Promote,
    /// Write and read back a probe row on `connection`.
    VerifyWritable,
}

impl DatabaseAction {
    /// The action as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::SetupLogical => "setup-logical",
            Self::Fence => "fence",
            Self::Promote => "promote",
            Self::VerifyWritable => "verify-writable",
        }
    }
}

/// The `with:` input of every database-family step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseInput {
    /// What to do.
    pub action: DatabaseAction,
    /// The granted connection the action targets: the server to inspect (`status`), the old
    /// primary (`fence`), the standby (`promote`), the server to probe (`verify-writable`), and
    /// the publisher for `setup-logical` unless `primary` is set.
    pub connection: String,
    /// The connection of the primary / publisher. `status` of a standby uses it to measure the
    /// lag in bytes against the primary's current LSN; `promote` uses it (when reachable) to
    /// measure the RPO gap; `setup-logical` creates the publication there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The connection of the standby / subscriber (`setup-logical`: where the subscription is
    /// created). `fence`: the standby a failover promotes next; the fence is then not undone
    /// by compensation once that standby is a primary (two writable primaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// Publication name (`setup-logical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
    /// Subscription name (`setup-logical`; `promote` of a logical subscriber disables it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// Tables to publish (`table` or `schema.table`, exact names); absent means all tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// The conninfo string the *subscriber* uses to reach the publisher (it is stored in the
    /// subscriber, so it has to be a DSN). Provide it with a `${{ secrets.X }}` expression so it
    /// is masked; or use `publisher_dsn_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_dsn_for_subscriber: Option<String>,
    /// Name of a granted secret holding that conninfo string (alternative to the field above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_dsn_secret: Option<String>,
    /// `status`: fail (retryable) when the replication lag exceeds this many bytes.
    /// `promote`: refuse (retryable) while the standby is further behind a reachable old
    /// primary than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<u64>,
    /// `status` of a primary: fewer streaming replicas than this is unhealthy (default 0).
    #[serde(default)]
    pub min_replicas: u32,
    /// `status`: fail (fatal) unless the server has this role — a check before a failover
    /// that the server to promote is a standby at all (a fenced old primary is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_role: Option<Role>,
    /// `status`: fail (retryable) on any problem found (`problems`: a WAL receiver that does
    /// not stream, an inactive slot, too few replicas …), not only on a lag above
    /// `max_lag_bytes` (default false: the problems are reported, the step succeeds). Not in
    /// plan mode, where they are reported for `meridian ready` to judge.
    #[serde(default)]
    pub require_healthy: bool,
    /// `promote`: how long to wait for the promotion (default 60000). `status` with
    /// `max_lag_bytes`: keep polling this long for the lag to drop (default 0: check once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3_600_000))]
    pub wait_timeout_ms: Option<u64>,
    /// `promote`: when the old primary answers and the standby still streams from it, wait up to
    /// this long for the standby to receive everything the old primary wrote before promoting
    /// (default 5000; 0 promotes at once). Fence the old primary first so it stops moving: a
    /// planned failover then loses nothing. A standby that does not stream (replication cut) is
    /// promoted at once: waiting could not help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 600_000))]
    pub catch_up_ms: Option<u64>,
    /// `verify-writable`: the probe table, `table` or `schema.table` (default `meridian_probe`).
    #[serde(default = "default_probe_table")]
    pub probe_table: String,
}

fn default_probe_table() -> String {
    "meridian_probe".to_owned()
}

/// Default bound of a promotion wait.
pub const DEFAULT_PROMOTE_WAIT_MS: u64 = 60_000;

impl DatabaseInput {
    /// Parses and validates a JSON input. Errors are invalid-input with the field path.
    pub fn from_json(json: &str) -> Result<Self, StepError> {
        let input: Self =
            serde_json::from_str(json).map_err(|e| StepError::invalid(format!("with: {e}")))?;
        input.validate()?;
        Ok(input)
    }

    /// The publisher connection of `setup-logical`: `primary`, else `connection`.
    pub fn publisher(&self) -> &str {
        self.primary.as_deref().unwrap_or(&self.connection)
    }

    /// Checks everything that does not need a server: names, per-action required fields.
    pub fn validate(&self) -> Result<(), StepError> {
        non_empty("connection", &self.connection)?;
        for (field, value) in [
            ("primary", &self.primary),
            ("standby", &self.standby),
            ("publication", &self.publication),
            ("subscription", &self.subscription),
            ("publisher_dsn_secret", &self.publisher_dsn_secret),
        ] {
            if let Some(v) = value {
                non_empty(field, v)?;
            }
        }
        for (field, value) in [
            ("publication", &self.publication),
            ("subscription", &self.subscription),
        ] {
            if let Some(v) = value {
                check_object_name(field, v)?;
            }
        }
        if let Some(tables) = &self.tables {
            if tables.is_empty() {
                return Err(StepError::invalid(
                    "tables: an empty list publishes nothing; list tables or remove the field to publish all tables",
                ));
            }
            for (i, t) in tables.iter().enumerate() {
                split_qualified(t)
                    .map_err(|why| StepError::invalid(format!("tables[{i}]: {why}")))?;
            }
        }
        split_qualified(&self.probe_table)
            .map_err(|why| StepError::invalid(format!("probe_table: {why}")))?;
        if self.publisher_dsn_for_subscriber.is_some() && self.publisher_dsn_secret.is_some() {
            return Err(StepError::invalid(
                "publisher_dsn_for_subscriber and publisher_dsn_secret are both set; keep one",
            ));
        }
        if let Some(dsn) = &self.publisher_dsn_for_subscriber {
            if dsn.trim().is_empty() {
                return Err(StepError::invalid(
                    "publisher_dsn_for_subscriber: empty conninfo string",
                ));
            }
            if dsn.contains('\0') {
                return Err(StepError::invalid(
                    "publisher_dsn_for_subscriber: contains a NUL byte",
                ));
            }
        }
        if self.action == DatabaseAction::SetupLogical {
            let standby = self.standby.as_deref().ok_or_else(|| {
                StepError::invalid(
                    "standby: setup-logical needs the subscriber's connection name in `standby`",
                )
            })?;
            if self.publication.is_none() {
                return Err(StepError::invalid(
                    "publication: setup-logical needs a publication name",
                ));
            }
            if self.subscription.is_none() {
                return Err(StepError::invalid(
                    "subscription: setup-logical needs a subscription name",
                ));
            }
            if standby == self.publisher() {
                return Err(StepError::invalid(format!(
                    "standby: `{standby}` is also the publisher; the subscriber must be another server"
                )));
            }
        }
        if self.action == DatabaseAction::Promote
            && self.primary.as_deref() == Some(self.connection.as_str())
        {
            return Err(StepError::invalid(format!(
                "primary: `{}` is the connection being promoted; name the old primary (or leave it out)",
                self.connection
            )));
        }
        Ok(())
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), StepError> {
    if value.trim().is_empty() {
        return Err(StepError::invalid(format!("{field}: must not be empty")));
    }
    Ok(())
}

/// PostgreSQL truncates identifiers to 63 bytes; a longer name would silently match another.
const MAX_IDENT_BYTES: usize = 63;

fn check_object_name(field: &str, name: &str) -> Result<(), StepError> {
    check_ident(name).map_err(|why| StepError::invalid(format!("{field}: {why}")))
}

fn check_ident(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!("`{name}` is longer than {MAX_IDENT_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Splits `schema.table` or `table` into its parts, checking each is a usable name. Names are
/// taken literally (case-sensitive, no quoting); a name containing a dot cannot be expressed.
pub fn split_qualified(name: &str) -> Result<(Option<&str>, &str), String> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, name),
    };
    if table.contains('.') {
        return Err(format!(
            "`{name}` has more than one dot; write `schema.table`"
        ));
    }
    if let Some(s) = schema {
        check_ident(s)?;
    }
    check_ident(table)?;
    Ok((schema, table))
}

/// Whether the server is a primary (accepts writes unless fenced) or a standby (in recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not in recovery.
    Primary,
    /// In recovery (a physical standby).
    Standby,
}

/// How a replica is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationKind {
    /// WAL streaming to a standby.
    Physical,
    /// Logical decoding to a subscriber.
    Logical,
    /// No slot tells which (a physical standby without a slot, or a base backup).
    Unknown,
}

/// One connected replica as the primary sees it (PostgreSQL: a `pg_stat_replication` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaInfo {
    /// The replica's `application_name` (a subscription's name for logical replicas).
    pub name: String,
    /// Physical or logical.
    pub kind: ReplicationKind,
    /// Client address, if over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// `startup`, `catchup`, `streaming`, `backup` or `stopping`.
    pub state: String,
    /// `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// The replication slot it uses, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Last WAL position sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_lsn: Option<String>,
    /// Last WAL position replayed (applied) by the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// Bytes between the primary's current LSN and `replay_lsn` (or, while the replica has not
    /// reported a replay position yet, the last position it reported flushing, writing or being
    /// sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Seconds until recent WAL was written on the replica (absent once caught up and idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_lag_seconds: Option<f64>,
    /// Seconds until recent WAL was flushed on the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lag_seconds: Option<f64>,
    /// Seconds until recent WAL was replayed on the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_seconds: Option<f64>,
}

/// One replication slot on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotInfo {
    /// Slot name.
    pub name: String,
    /// Physical or logical.
    pub kind: ReplicationKind,
    /// Whether a consumer is connected. An inactive slot retains WAL on the primary.
    pub active: bool,
    /// The position the consumer confirmed (logical) or still needs (physical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// How far the consumer is behind, in bytes: from the current LSN to the confirmed position
    /// of a logical slot, or to the needed position of an *inactive* physical slot. An active
    /// physical slot's lag is its replica's (`replicas[].lag_bytes`): its needed position only
    /// moves at checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// WAL kept on the server for this slot, in bytes (current LSN minus `restart_lsn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<u64>,
    /// `reserved`, `extended`, `unreserved` or `lost` (WAL the slot needs was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
}

/// One subscription on the server (logical replication, subscriber side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionInfo {
    /// Subscription name.
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Whether its apply worker runs (a stopped worker usually means an apply conflict).
    pub worker_running: bool,
    /// Last WAL position received from the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_lsn: Option<String>,
    /// Last position reported back to the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_end_lsn: Option<String>,
    /// Seconds since the last message from the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_msg_age_seconds: Option<f64>,
    /// Tables not yet in state ready (still copying or syncing).
    pub tables_not_ready: u64,
    /// Apply errors since the statistics were reset (PostgreSQL 15+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_error_count: Option<u64>,
    /// Bytes between the publisher's current LSN and `latest_end_lsn`, when `primary` names
    /// the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
}

/// The WAL receiver of a standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WalReceiverInfo {
    /// `streaming`, `starting`, `waiting`, `restarting`, `stopping`, …
    pub status: String,
    /// The primary it streams from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_host: Option<String>,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_port: Option<u16>,
    /// The slot on the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Last position flushed to disk on the standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushed_lsn: Option<String>,
}

/// The output of every database-family step. Fields that an action does not produce are left
/// out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseOutput {
    /// The vendor step that produced this, e.g. `postgres`.
    pub vendor: String,
    /// The action that ran.
    pub action: DatabaseAction,
    /// The connection targeted.
    pub connection: String,
    /// True in plan mode: nothing was changed; `changes` lists what would be.
    pub planned: bool,
    /// Statements (or API calls) that changed something, or would in plan mode; connection
    /// strings are redacted.
    pub changes: Vec<String>,

    /// Primary or standby (status, promote, verify-writable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Whether the server is in recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_recovery: Option<bool>,
    /// Whether new transactions default to read-only (a fenced server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Current WAL position: the write position of a primary, the replay position of a standby;
    /// for promote, the new primary's position right after promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Timeline of a primary (it increases with each promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,

    /// status of a primary: connected replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaInfo>,
    /// status: replication slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotInfo>,
    /// status: subscriptions in the connected database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionInfo>,
    /// status of a standby: its WAL receiver (absent when it is not streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_receiver: Option<WalReceiverInfo>,
    /// status of a standby: last WAL position received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<String>,
    /// status of a standby: seconds since the last replayed transaction committed on the
    /// primary (grows while the primary is idle, so not a lag by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_delay_seconds: Option<f64>,
    /// status: the largest replication lag in bytes (see the step's docs for what is measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// status: the largest replication lag in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// status: no problem found and the lag within `max_lag_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// status: what makes it unhealthy, one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,

    /// setup-logical: the publication was created by this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication_created: Option<bool>,
    /// setup-logical: the subscription was created by this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_created: Option<bool>,
    /// setup-logical: an existing subscription was refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_refreshed: Option<bool>,
    /// setup-logical: tables in the publication (`schema.table`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,

    /// fence: the server now refuses writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<bool>,
    /// fence: the server answered. An unreachable old primary is fine: the region is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// fence: client sessions terminated so they reconnect read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_backends: Option<u64>,

    /// promote: this run promoted the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    /// promote: the server was already a primary; nothing was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already_primary: Option<bool>,
    /// promote: the last WAL position the standby had replayed when it was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_lsn: Option<String>,
    /// promote: the old primary's WAL position, if it was reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary_lsn: Option<String>,
    /// promote: bytes of WAL the old primary had that the new one did not (the RPO), when the
    /// old primary was reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_bytes: Option<u64>,
    /// promote: whether the standby had received all of the old primary's WAL when it was
    /// promoted (absent when the old primary did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up: Option<bool>,
    /// promote: the promotion was done by an earlier attempt of this run that did not finish
    /// (the runner was killed); the RPO is the one that attempt measured before promoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    /// promote: when the promotion completed, Unix milliseconds (host clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at_ms: Option<u64>,
    /// promote of a logical subscriber: its subscription was disabled so the old publisher can
    /// no longer overwrite it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_disabled: Option<bool>,

    /// verify-writable: a row was written and read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    /// verify-writable: the probe row's id (the invocation's idempotency key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_id: Option<String>,
    /// verify-writable: the probe row's timestamp as the server wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_at: Option<String>,
}

impl DatabaseOutput {
    /// An output for `action` on `connection` with nothing measured yet.
    pub fn new(vendor: &str, action: DatabaseAction, connection: &str) -> Self {
        Self {
            vendor: vendor.to_owned(),
            action,
            connection: connection.to_owned(),
            planned: false,
            changes: Vec::new(),
            role: None,
            in_recovery: None,
            read_only: None,
            lsn: None,
            timeline: None,
            replicas: Vec::new(),
            slots: Vec::new(),
            subscriptions: Vec::new(),
            wal_receiver: None,
            receive_lsn: None,
            replay_delay_seconds: None,
            lag_bytes: None,
            lag_seconds: None,
            healthy: None,
            problems: Vec::new(),
            publication_created: None,
            subscription_created: None,
            subscription_refreshed: None,
            tables: Vec::new(),
            fenced: None,
            reachable: None,
            terminated_backends: None,
            promoted: None,
            already_primary: None,
            replayed_lsn: None,
            old_primary_lsn: None,
            rpo_bytes: None,
            caught_up: None,
            resumed: None,
            promoted_at_ms: None,
            subscription_disabled: None,
            writable: None,
            probe_id: None,
            probe_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &serde_json::Value) -> Result<DatabaseInput, StepError> {
        DatabaseInput::from_json(&json.to_string())
    }

    #[test]
    fn minimal_status_input_takes_defaults() {
        let i = input(&serde_json::json!({"action": "status", "connection": "eu"})).unwrap();
        assert_eq!(i.action, DatabaseAction::Status);
        assert_eq!(i.probe_table, "meridian_probe");
        assert_eq!(i.min_replicas, 0);
        assert_eq!(i.wait_timeout_ms, None);
        assert_eq!(i.publisher(), "eu");
    }

    #[test]
    fn setup_logical_requires_names_and_a_distinct_subscriber() {
        let base = serde_json::json!({"action": "setup-logical", "connection": "eu"});
        let e = input(&base).unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("standby:")),
            "{e:?}"
        );
        let mut j = base;
        j["standby"] = "us".into();
        j["publication"] = "p".into();
        let e = input(&j).unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("subscription:")),
            "{e:?}"
        );
        j["subscription"] = "s".into();
        input(&j).unwrap();
        j["standby"] = "eu".into();
        let e = input(&j).unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains("also the publisher")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_names_and_fields_are_invalid_input() {
        let e = input(&serde_json::json!({"action": "status", "connection": "eu", "colour": 1}))
            .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains("unknown field `colour`")),
            "{e:?}"
        );
        let e = input(&serde_json::json!({"action": "fence", "connection": " "})).unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("connection:")),
            "{e:?}"
        );
        let e = input(&serde_json::json!({"action": "status", "connection": "eu", "tables": []}))
            .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("tables:")),
            "{e:?}"
        );
        let e = input(
            &serde_json::json!({"action": "status", "connection": "eu", "tables": ["a.b.c"]}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("tables[0]:")),
            "{e:?}"
        );
        let long = "x".repeat(64);
        let e = input(
            &serde_json::json!({"action": "status", "connection": "eu", "publication": long}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains("63 bytes")),
            "{e:?}"
        );
        let e = input(&serde_json::json!({
            "action": "setup-logical", "connection": "eu", "standby": "us", "publication": "p",
            "subscription": "s", "publisher_dsn_for_subscriber": "host=x", "publisher_dsn_secret": "DSN"
        }))
        .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.contains("keep one")),
            "{e:?}"
        );
        let e =
            input(&serde_json::json!({"action": "promote", "connection": "us", "primary": "us"}))
                .unwrap_err();
        assert!(
            matches!(&e, StepError::InvalidInput(m) if m.starts_with("primary:")),
            "{e:?}"
        );
    }

    #[test]
    fn qualified_names_split() {
        assert_eq!(split_qualified("t").unwrap(), (None, "t"));
        assert_eq!(split_qualified("s.T").unwrap(), (Some("s"), "T"));
        assert!(split_qualified(".t").is_err());
        assert!(split_qualified("s.").is_err());
    }

    #[test]
    fn output_leaves_out_what_an_action_did_not_measure() {
        let mut o = DatabaseOutput::new("postgres", DatabaseAction::Fence, "eu");
        o.fenced = Some(false);
        o.reachable = Some(false);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"vendor": "postgres", "action": "fence", "connection": "eu", "planned": false,
                               "changes": [], "fenced": false, "reachable": false})
        );
    }

    #[test]
    fn schema_names_the_actions() {
        let schema = serde_json::to_string(&schemars::schema_for!(DatabaseInput)).unwrap();
        for a in [
            "status",
            "setup-logical",
            "fence",
            "promote",
            "verify-writable",
        ] {
            assert!(
                schema.contains(&format!("\"{a}\"")),
                "{a} missing from {schema}"
            );
        }
    }
}
