//! `db-postgres`: the database family on PostgreSQL (≥ 12; verified SQL from domain.md §6).
//!
//! | action            | connection(s)                                   | effect |
//! |-------------------|-------------------------------------------------|--------|
//! | `status`          | `connection` (+ `primary` to measure lag across servers) | read only |
//! | `setup-logical`   | publisher `primary` (default `connection`), subscriber `standby` | CREATE/ALTER PUBLICATION, CREATE/ALTER SUBSCRIPTION |
//! | `fence`           | `connection` = old primary                      | ALTER SYSTEM read-only, reload, terminate sessions |
//! | `promote`         | `connection` = standby (+ `primary` for the RPO) | pg_promote |
//! | `verify-writable` | `connection`                                    | upsert into `meridian_probe` |
//!
//! The step reaches PostgreSQL only through the host's `sql` interface on connections granted
//! in the workflow (`grants.sql`); the only DSN it ever handles is the publisher conninfo that
//! `CREATE SUBSCRIPTION` must store in the subscriber, which it never logs or outputs.
//!
//! Every action is idempotent: each reads the catalog first and changes only what differs, and
//! `fence` / `promote` remember in the run's state what an earlier attempt did. In plan mode
//! the host records mutating statements instead of running them; functions that act even inside
//! a read-only transaction (`pg_promote`, `pg_reload_conf`, `pg_terminate_backend`) are not
//! called at all and appear in `changes` instead. Errors name the connection and what to check;
//! connection failures, timeouts and lag are retryable, refusals and bad input are not.
//! Compensation undoes `fence`; the other actions have nothing to undo.

mod fence;
mod logical;
mod pg;
mod probe;
mod promote;
mod status;

use meridian_families::database::{DatabaseAction, DatabaseInput, DatabaseOutput};
use meridian_families::{Clock, StdClock, StepError};
use meridian_sdk::{Ctx, Error, GrantKind, ManifestInfo, Step};

/// The `vendor` reported in outputs.
pub const VENDOR: &str = "postgres";

/// Runs `input` against the host behind `ctx`, sleeping and reading time through `clock`
/// (tests pass a fake clock so waits are instant).
pub fn execute(
    ctx: &Ctx,
    input: &DatabaseInput,
    clock: &dyn Clock,
) -> Result<DatabaseOutput, Error> {
    input.validate().map_err(to_sdk_error)?;
    match input.action {
        DatabaseAction::Status => status::run(ctx, input, clock),
        DatabaseAction::SetupLogical => logical::run(ctx, input),
        DatabaseAction::Fence => fence::run(ctx, input, clock),
        DatabaseAction::Promote => promote::run(ctx, input, clock),
        DatabaseAction::VerifyWritable => probe::run(ctx, input),
    }
}

/// Undoes `input`'s action where that means something (`fence`); a no-op for the others.
pub fn undo(ctx: &Ctx, input: &DatabaseInput, clock: &dyn Clock) -> Result<(), Error> {
    input.validate().map_err(to_sdk_error)?;
    match input.action {
        DatabaseAction::Fence => fence::compensate(ctx, input, clock),
        _ => Ok(()),
    }
}

/// The family error as the SDK's error, keeping its kind.
pub fn to_sdk_error(e: StepError) -> Error {
    match e {
        StepError::Retryable(m) => Error::retryable(m),
        StepError::Fatal(m) => Error::fatal(m),
        StepError::InvalidInput(m) => Error::invalid_input(m),
    }
}

/// The step.
#[derive(Debug)]
pub struct DbPostgres;

impl Step for DbPostgres {
    type Input = DatabaseInput;
    type Output = DatabaseOutput;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("db-postgres", env!("CARGO_PKG_VERSION"))
            .description(
                "PostgreSQL replication for DR: status and lag (physical and logical), setup-logical, \
                 fence the old primary, promote a standby (with RPO bytes), verify-writable. \
                 Compensation unfences.",
            )
            .needs(GrantKind::Sql, "`connection`, and `primary` / `standby` when the action uses them")
            .needs(GrantKind::Secret, "`publisher_dsn_secret`, when setup-logical takes the publisher conninfo from a secret")
            .supports_compensate(true)
    }

    fn run(ctx: &Ctx, input: DatabaseInput) -> Result<DatabaseOutput, Error> {
        execute(ctx, &input, &StdClock)
    }

    fn compensate(ctx: &Ctx, input: DatabaseInput) -> Result<(), Error> {
        undo(ctx, &input, &StdClock)
    }
}

meridian_sdk::export_step!(DbPostgres);

#[cfg(test)]
mod tests;
