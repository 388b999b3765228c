//! The `meridian` schema: versioned by a migrations table, migrated under an advisory lock so any
//! number of coordinators and workers may start at once.

use tokio_postgres::Client;

use crate::DistError;
use crate::conn::Target;

/// Bump with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: i32 = 8;
/// The version that brought `idempotency_keys` (see [`carry_over_keys`]).
const KEYS_VERSION: i32 = 7;

/// `MRDN`: the advisory lock key held while migrating.
const MIGRATION_LOCK: i64 = 0x4D52_444E;

/// Index i takes the schema from version i to i + 1: (description, SQL).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "runs, events, legs, tasks",
        r#"
-- Same shape as the SQLite journal (meridian-store); times are milliseconds since the epoch,
-- taken from the database server's clock so that every machine agrees.
-- `json`, not `jsonb`: it keeps the text as written, so keys stay in the engine's order.
CREATE TABLE meridian.runs (
    id text PRIMARY KEY,
    workflow text NOT NULL,
    workflow_path text NOT NULL,
    workflow_sha256 text NOT NULL,
    mode text NOT NULL,
    status text NOT NULL,
    inputs json NOT NULL,
    options json NOT NULL,
    message text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    finished_at bigint,
    seq bigserial
);
CREATE INDEX runs_created ON meridian.runs (created_at, seq);
CREATE TABLE meridian.events (
    run_id text NOT NULL REFERENCES meridian.runs(id),
    seq bigint NOT NULL,
    at bigint NOT NULL,
    kind text NOT NULL,
    step text,
    body json NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX events_kind ON meridian.events (run_id, kind);
CREATE TABLE meridian.legs (
    run_id text NOT NULL REFERENCES meridian.runs(id),
    step text NOT NULL,
    leg text NOT NULL,
    outcome text NOT NULL,
    attempts integer NOT NULL,
    duration_ms bigint NOT NULL,
    output json NOT NULL,
    plan json NOT NULL,
    error json,
    PRIMARY KEY (run_id, step, leg)
);
-- The step queue. One row per (idempotency_key, attempt): a resumed coordinator re-attaches to
-- its row instead of queuing the attempt again.
--   state: ready → running (claimed, leased) → done (result written).
--   lease_epoch: bumped by every claim; a worker writes its result only while the epoch is still
--     the one it claimed, so a worker whose lease was taken over can never commit.
--   cancel: the coordinator stopped waiting (fail-fast, timeout, shutdown); a running worker stops.
--   sealed: input, grants and mask, encrypted under the task key whose fingerprint is key_id.
CREATE TABLE meridian.tasks (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step_id text NOT NULL,
    idempotency_key text NOT NULL,
    attempt integer NOT NULL,
    uses text NOT NULL,
    action text NOT NULL,
    mode text NOT NULL,
    request json NOT NULL,
    sealed bytea NOT NULL,
    key_id text NOT NULL,
    state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'running', 'done')),
    cancel boolean NOT NULL DEFAULT false,
    lease_owner text,
    lease_until timestamptz,
    lease_epoch bigint NOT NULL DEFAULT 0,
    claims integer NOT NULL DEFAULT 0,
    result json,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz,
    UNIQUE (idempotency_key, attempt)
);
-- Claims scan only open tasks, so the cost stays flat as finished history grows.
CREATE INDEX tasks_open ON meridian.tasks (id) WHERE state <> 'done';
CREATE INDEX tasks_run ON meridian.tasks (run_id);
"#,
    ),
    (
        "kv: each run's durable key-value state",
        r#"
CREATE TABLE meridian.kv (
    run_id text NOT NULL REFERENCES meridian.runs(id),
    key text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (run_id, key)
);
"#,
    ),
    (
        "ticks: schedule ticks claimed by one server each",
        r#"
CREATE TABLE meridian.ticks (
    schedule text NOT NULL,
    tick bigint NOT NULL,
    claimed_by text NOT NULL,
    claimed_at bigint NOT NULL,
    PRIMARY KEY (schedule, tick)
);
"#,
    ),
    (
        "runs_workflow: listings by workflow read one page",
        r#"
CREATE INDEX runs_workflow ON meridian.runs (workflow, created_at);
"#,
    ),
    (
        "leases: which server drives a run, until when",
        r#"
CREATE TABLE meridian.leases (
    run_id text PRIMARY KEY,
    owner text NOT NULL,
    expires_at bigint NOT NULL
);
"#,
    ),
    (
        "schedules: each schedule's pause and failures, across restarts and servers",
        r#"
CREATE TABLE meridian.schedules (
    schedule text PRIMARY KEY,
    paused text,
    failures integer NOT NULL,
    updated_at bigint NOT NULL
);
"#,
    ),
    (
        "idempotency_keys: one run per Idempotency-Key across servers",
        r#"
-- `key` is the key's JSON text (a key holds a NUL, which `text` cannot).
CREATE TABLE meridian.idempotency_keys (
    key text PRIMARY KEY,
    run_id text NOT NULL,
    request text NOT NULL,
    claimed_at bigint NOT NULL
);
"#,
    ),
    (
        "cancel_requests: runs someone asked to cancel, for the server that drives them",
        r#"
CREATE TABLE meridian.cancel_requests (
    run_id text PRIMARY KEY REFERENCES meridian.runs(id),
    why text NOT NULL,
    requested_at bigint NOT NULL
);
"#,
    ),
];

/// Makes sure the database holds the current schema: a cheap read when it does, else migrations
/// in one transaction under an advisory lock. Refuses a newer schema and a foreign `meridian`
/// schema. Uses a short-lived connection of its own.
pub(crate) async fn ensure(target: &Target) -> Result<(), DistError> {
    let mut client = target.connect().await?;
    ensure_on(&mut client, target).await
}

pub(crate) async fn ensure_on(client: &mut Client, target: &Target) -> Result<(), DistError> {
    if current_version(client, target).await? == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = client
        .transaction()
        .await
        .map_err(DistError::db("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(DistError::db("take the migration lock"))?;
    // Another process may have migrated while we waited for the lock.
    let from = current_version(&tx, target).await?.unwrap_or(0);
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS meridian;
         CREATE TABLE IF NOT EXISTS meridian.migrations (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(DistError::db("create the migrations table"))?;
    for (i, (description, sql)) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(DistError::db("migrate the schema"))?;
        if i as i32 + 1 == KEYS_VERSION && from > 0 {
            carry_over_keys(&tx).await?;
        }
        tx.execute(
            "INSERT INTO meridian.migrations (version, description) VALUES ($1, $2)",
            &[&(i as i32 + 1), description],
        )
        .await
        .map_err(DistError::db("record a migration"))?;
    }
    tx.commit()
        .await
        .map_err(DistError::db("commit the migration"))
}

/// Claims the keys that runs recorded before the journal kept claims, newest run first, so a
/// request retried across the upgrade finds its run. The request is what the run says of it:
/// its workflow and mode. (Read in Rust: `->>` refuses the NUL a key holds.)
async fn carry_over_keys(tx: &tokio_postgres::Transaction<'_>) -> Result<(), DistError> {
    let rows = tx
        .query(
            "SELECT id, workflow, mode, options::text, created_at FROM meridian.runs
              WHERE options::text LIKE '%idempotency_key%' ORDER BY created_at DESC",
            &[],
        )
        .await
        .map_err(DistError::db("read the runs' idempotency keys"))?;
    for r in rows {
        let options: String = r.get(3);
        let Ok(settings) = serde_json::from_str::<meridian_store::RunSettings>(&options) else {
            continue;
        };
        let Some(key) = settings.idempotency_key else {
            continue;
        };
        let (id, workflow, mode): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let request = serde_json::json!({ "workflow": workflow, "mode": mode }).to_string();
        tx.execute(
            "INSERT INTO meridian.idempotency_keys (key, run_id, request, claimed_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
            &[
                &crate::journal::keys::stored(&key),
                &id,
                &request,
                &r.get::<_, i64>(4),
            ],
        )
        .await
        .map_err(DistError::db("claim a run's idempotency key"))?;
    }
    Ok(())
}

/// The schema version, `None` when there is no `meridian` schema yet. Errors when the schema is
/// newer than ours or is not Meridian's.
async fn current_version<C: tokio_postgres::GenericClient>(
    client: &C,
    target: &Target,
) -> Result<Option<i32>, DistError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'meridian'),
                    to_regclass('meridian.migrations') IS NOT NULL,
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'meridian')",
            &[],
        )
        .await
        .map_err(DistError::db("read the schema catalog"))?;
    let (schema, migrations, relations): (bool, bool, i64) = (row.get(0), row.get(1), row.get(2));
    if !schema {
        return Ok(None);
    }
    if !migrations {
        if relations > 0 {
            return Err(DistError::Foreign {
                target: target.name.clone(),
                detail: format!("{relations} relations but no meridian.migrations table"),
            });
        }
        return Ok(None);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM meridian.migrations", &[])
        .await
        .map_err(DistError::db("read the schema version"))?
        .get(0);
    let v = v.unwrap_or(0);
    if v > SCHEMA_VERSION {
        return Err(DistError::TooNew {
            target: target.name.clone(),
            found: v,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Some(v))
}
