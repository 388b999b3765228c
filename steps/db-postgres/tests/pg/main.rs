//! db-postgres against real PostgreSQL 15: the step's logic (the same code the component runs)
//! through a host that executes its SQL on clusters this test starts (domain.md §6).
//!
//! `cargo test --target x86_64-unknown-linux-gnu --test pg` (from steps/db-postgres). Needs
//! /usr/lib/postgresql/15/bin; as root, PostgreSQL runs as user `postgres`.

mod cluster;
mod host;
mod logical;
mod physical;

use std::sync::Arc;

use db_postgres::{execute, undo};
use meridian_families::StdClock;
use meridian_families::database::{DatabaseInput, DatabaseOutput};

use crate::host::PgHost;

/// Runs one action; `step` names the invocation (its idempotency key is `test-run/<step>`).
pub(crate) fn act(
    host: &Arc<PgHost>,
    step: &str,
    args: serde_json::Value,
) -> Result<DatabaseOutput, meridian_sdk::Error> {
    let input: DatabaseInput = serde_json::from_value(args).expect("valid input");
    input.validate().expect("valid input");
    execute(&host.ctx(step), &input, &StdClock)
}

/// Compensates one action.
pub(crate) fn compensate(
    host: &Arc<PgHost>,
    step: &str,
    args: serde_json::Value,
) -> Result<(), meridian_sdk::Error> {
    let input: DatabaseInput = serde_json::from_value(args).expect("valid input");
    input.validate().expect("valid input");
    undo(&host.ctx(step), &input, &StdClock)
}
