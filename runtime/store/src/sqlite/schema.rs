//! The SQLite journal's schema: its marks and its migrations.

/// `MRDN` — marks the file as ours.
pub(super) const APPLICATION_ID: i64 = 0x4D52_444E;
/// Bump with a new entry in `MIGRATIONS`.
pub(super) const SCHEMA_VERSION: i64 = 8;
/// The version that brought `idempotency_keys`.
pub(super) const KEYS_VERSION: i64 = 7;

/// Migrations, index i takes the schema from version i to i + 1.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_path TEXT NOT NULL,
    workflow_sha256 TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    message TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX runs_created ON runs(created_at);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE legs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step TEXT NOT NULL,
    leg TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    output TEXT NOT NULL,
    plan TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, step, leg)
);
"#,
    r#"
CREATE TABLE kv (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (run_id, key)
);
"#,
    r#"
CREATE TABLE ticks (
    schedule TEXT NOT NULL,
    tick INTEGER NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (schedule, tick)
);
"#,
    // Listings by workflow (the API, the console, drill history) read one page through it.
    r#"
CREATE INDEX runs_workflow ON runs(workflow, created_at);
"#,
    // Which server drives a run, until when (see `Journal::lease_run`).
    r#"
CREATE TABLE leases (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    // Schedules' pauses and failure counts (see `Journal::save_schedule`).
    r#"
CREATE TABLE schedules (
    schedule TEXT PRIMARY KEY,
    paused TEXT,
    failures INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    // `Idempotency-Key` claims (see `Journal::claim_key`); the keys runs recorded before are
    // carried over by `keys::carry_over`.
    r#"
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    request TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
);
"#,
    // Runs someone asked to cancel (see `Journal::request_cancel`).
    r#"
CREATE TABLE cancel_requests (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    why TEXT NOT NULL,
    requested_at INTEGER NOT NULL
);
"#,
];
