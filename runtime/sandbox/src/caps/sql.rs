//! The `sql` capability: tokio-postgres on named connections only (TCP with TLS as the
//! connection string's `sslmode` says, or a Unix socket), typed values both ways, a
//! `statement_timeout` that ends every statement before the call's deadline, and plan mode.
//!
//! The statement timeout: a statement must end a tenth of the call's time before the call's
//! deadline, so a slow query comes back to the step as a `timeout` error it can handle instead
//! of the whole call being stopped. A session's `statement_timeout` counts from each statement's
//! start, so one value set at connect would let a statement started late run past the deadline;
//! the session's value is lowered (one `SET`) before a statement whose start leaves less than it
//! (by more than a hundredth of the call's time). Connecting is bounded by the time left too.
//!
//! Plan mode: `query` and `execute` run inside `BEGIN READ ONLY … ROLLBACK`, so PostgreSQL
//! itself refuses writes; a statement it refuses as a write (SQLSTATE 25006, or 25001 for
//! statements that cannot run in a transaction block, like `VACUUM`) is recorded as a planned
//! change and answered with 0 rows. Some server functions act even inside a read-only
//! transaction (`pg_promote()` on a standby, `pg_terminate_backend()`, replication-slot
//! functions, …): statements naming one of [`PLAN_DENY`] are recorded without being sent.
//! Limitation: a user-defined function that calls one of these internally is not detected.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;

use super::pg::{self, Param, Raw};
use crate::bindings::meridian::step::sql::{Error as SqlError, Rows, Value};
use meridian_protocol::PlannedChange;

/// Server functions with effects that a read-only transaction does not prevent. A statement
/// whose text mentions one of them (anywhere, case-insensitively) is recorded, not run, in plan
/// mode. `copy` covers `COPY … TO/FROM PROGRAM` and server-side files.
pub(crate) const PLAN_DENY: &[&str] = &[
    "pg_promote",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    "pg_logical_emit_message",
    "pg_log_backend_memory_contexts",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "pg_file_write",
    "pg_file_unlink",
    "pg_file_rename",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "copy",
];

/// Largest result (sum of the values' wire sizes) one query may return to a guest; larger
/// results fail with SQLSTATE 54000 (program_limit_exceeded) instead of filling host memory.
pub(crate) const MAX_RESULT_BYTES: usize = 16 << 20;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Conn {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    /// The session's `statement_timeout`, as last set.
    timeout: Duration,
}

/// One invocation's SQL grant and its open connections (closed when this is dropped).
pub(crate) struct SqlCap {
    dsns: BTreeMap<String, String>,
    conns: HashMap<String, Conn>,
    /// When every statement must have ended: the call's deadline less a tenth of its time.
    statements_end: Instant,
    /// How far past `statements_end` a statement may be allowed to run before the session's
    /// timeout is set again (a hundredth of the call's time): without it every statement would
    /// pay a `SET`, the time left having shrunk since the last one.
    slack: Duration,
}

impl Drop for SqlCap {
    fn drop(&mut self) {
        for (_, conn) in self.conns.drain() {
            conn.task.abort();
        }
    }
}

/// The first [`PLAN_DENY`] name mentioned in `statement`.
pub(crate) fn plan_denied(statement: &str) -> Option<&'static str> {
    let lower = statement.to_ascii_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find_map(|token| PLAN_DENY.iter().find(|d| **d == token).copied())
}

fn db_error(e: &tokio_postgres::Error) -> SqlError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
            return SqlError::Timeout;
        }
        return SqlError::Db((db.code().code().to_owned(), db.message().to_owned()));
    }
    let msg = meridian_pgtls::error_text(e);
    if e.is_closed() {
        SqlError::Connect(msg)
    } else {
        // Parameter conversion failures (see `pg::encode`) land here.
        SqlError::Unsupported(msg)
    }
}

/// SQLSTATEs meaning "this would write" in a read-only transaction.
fn is_write_refusal(e: &SqlError) -> bool {
    matches!(e, SqlError::Db((code, _)) if code == "25006" || code == "25001")
}

impl SqlCap {
    /// The grant `dsns` for a call of `timeout` that ends at `deadline`.
    pub(crate) fn new(
        dsns: BTreeMap<String, String>,
        deadline: Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            dsns,
            conns: HashMap::new(),
            statements_end: deadline.checked_sub(timeout / 10).unwrap_or(deadline),
            slack: timeout / 100,
        }
    }

    /// What a statement started now may take: the time left until [`Self::statements_end`].
    fn budget(&self) -> Result<Duration, SqlError> {
        let left = self
            .statements_end
            .saturating_duration_since(Instant::now());
        // PostgreSQL reads 0 as "no timeout": under a millisecond left is already too late.
        if left < Duration::from_millis(1) {
            return Err(SqlError::Timeout);
        }
        Ok(left)
    }

    /// The connection `name`, opened on first use, with a statement timeout that ends a
    /// statement started now by [`Self::statements_end`] (give or take [`Self::slack`]).
    async fn client(&mut self, name: &str) -> Result<&mut tokio_postgres::Client, SqlError> {
        if !self.conns.contains_key(name) {
            let Some(dsn) = self.dsns.get(name) else {
                return Err(SqlError::Denied(format!(
                    "connection `{name}` is not granted to this step; add it to the step's grants.sql"
                )));
            };
            // Bounded by the time left too, so a slow server is a `connect` error the step can
            // handle rather than the attempt being stopped.
            let limit = CONNECT_TIMEOUT.min(self.budget()?);
            let connect = meridian_pgtls::connect(dsn);
            let (client, connection) = match tokio::time::timeout(limit, connect).await {
                Err(_) => {
                    return Err(SqlError::Connect(format!(
                        "connecting to `{name}` took longer than {limit:?}"
                    )));
                }
                Ok(Err(e)) => {
                    return Err(SqlError::Connect(format!("connecting to `{name}`: {e}")));
                }
                Ok(Ok(pair)) => pair,
            };
            let task = tokio::spawn(async move {
                // Errors surface on the client's next call; nothing to do with them here.
                let _ = connection.await;
            });
            let budget = self.budget()?;
            let set = format!(
                "SET statement_timeout = {}; SET application_name = 'meridian-step'",
                budget.as_millis()
            );
            // On failure the client is dropped, and the connection's task ends with it.
            client.batch_execute(&set).await.map_err(|e| db_error(&e))?;
            let conn = Conn {
                client,
                task,
                timeout: budget,
            };
            self.conns.insert(name.to_owned(), conn);
        }
        let budget = self.budget()?;
        let conn = self.conns.get_mut(name).expect("inserted above");
        if conn.timeout > budget + self.slack {
            let set = format!("SET statement_timeout = {}", budget.as_millis());
            conn.client
                .batch_execute(&set)
                .await
                .map_err(|e| db_error(&e))?;
            conn.timeout = budget;
        }
        Ok(&mut conn.client)
    }

    /// `sql.query`. Returns the rows and, in plan mode when the statement was not run, the
    /// planned change (unmasked).
    pub(crate) async fn query(
        &mut self,
        connection: &str,
        statement: &str,
        params: &[Value],
        plan: bool,
    ) -> Result<(Rows, Option<PlannedChange>), SqlError> {
        let empty = Rows {
            columns: Vec::new(),
            rows: Vec::new(),
        };
        if plan && let Some(f) = plan_denied(statement) {
            return Ok((
                empty,
                Some(record(connection, statement, params, deny_reason(f))),
            ));
        }
        let client = self.client(connection).await?;
        let result = if plan {
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(|e| db_error(&e))?;
            let r = run_query(&tx, statement, params).await;
            // Nothing to keep from a plan; a failed rollback closes with the connection anyway.
            let _ = tx.rollback().await;
            r
        } else {
            run_query(&*client, statement, params).await
        };
        match result {
            Err(e) if plan && is_write_refusal(&e) => Ok((
                empty,
                Some(record(connection, statement, params, refusal_reason(&e))),
            )),
            r => r.map(|rows| (rows, None)),
        }
    }

    /// `sql.execute`. Returns rows affected and, in plan mode when the statement was refused as
    /// a write, the planned change.
    pub(crate) async fn execute(
        &mut self,
        connection: &str,
        statement: &str,
        params: &[Value],
        plan: bool,
    ) -> Result<(u64, Option<PlannedChange>), SqlError> {
        if plan && let Some(f) = plan_denied(statement) {
            return Ok((
                0,
                Some(record(connection, statement, params, deny_reason(f))),
            ));
        }
        let client = self.client(connection).await?;
        let result = if plan {
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(|e| db_error(&e))?;
            let r = run_execute(&tx, statement, params).await;
            let _ = tx.rollback().await;
            r
        } else {
            run_execute(&*client, statement, params).await
        };
        match result {
            Err(e) if plan && is_write_refusal(&e) => Ok((
                0,
                Some(record(connection, statement, params, refusal_reason(&e))),
            )),
            r => r.map(|n| (n, None)),
        }
    }
}

fn deny_reason(f: &str) -> String {
    format!(
        "mentions `{f}`, which acts on the server even inside a read-only transaction; not sent in plan mode"
    )
}

fn refusal_reason(e: &SqlError) -> String {
    match e {
        SqlError::Db((code, msg)) => {
            format!("PostgreSQL refused it in a read-only transaction (SQLSTATE {code}: {msg})")
        }
        _ => "refused in a read-only transaction".into(),
    }
}

fn record(connection: &str, statement: &str, params: &[Value], reason: String) -> PlannedChange {
    PlannedChange::Sql {
        connection: connection.to_owned(),
        statement: statement.to_owned(),
        params: params.iter().map(pg::value_to_json).collect(),
        reason,
    }
}

async fn prepare<C: tokio_postgres::GenericClient>(
    client: &C,
    statement: &str,
    params: &[Value],
) -> Result<tokio_postgres::Statement, SqlError> {
    let stmt = client.prepare(statement).await.map_err(|e| db_error(&e))?;
    if stmt.params().len() != params.len() {
        return Err(SqlError::Unsupported(format!(
            "the statement has {} placeholder(s) but {} parameter(s) were given",
            stmt.params().len(),
            params.len()
        )));
    }
    Ok(stmt)
}

async fn run_query<C: tokio_postgres::GenericClient>(
    client: &C,
    statement: &str,
    params: &[Value],
) -> Result<Rows, SqlError> {
    let stmt = prepare(client, statement, params).await?;
    let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let stream = client
        .query_raw(&stmt, refs.iter().copied())
        .await
        .map_err(|e| db_error(&e))?;
    futures::pin_mut!(stream);
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut out = Vec::new();
    let mut total = 0usize;
    // Streamed and counted, so a `SELECT *` of a big table stops at the limit instead of being
    // buffered whole in the host.
    while let Some(row) = futures::TryStreamExt::try_next(&mut stream)
        .await
        .map_err(|e| db_error(&e))?
    {
        let mut values = Vec::with_capacity(columns.len());
        for (i, col) in stmt.columns().iter().enumerate() {
            let raw: Raw<'_> = row
                .try_get(i)
                .map_err(|e| SqlError::Unsupported(e.to_string()))?;
            total += raw.0.map_or(0, <[u8]>::len) + 8;
            values.push(pg::decode(col.name(), col.type_(), raw.0).map_err(SqlError::Unsupported)?);
        }
        if total > MAX_RESULT_BYTES {
            return Err(SqlError::Db((
                "54000".into(),
                format!(
                    "result larger than {MAX_RESULT_BYTES} bytes (host limit); add LIMIT or select fewer columns"
                ),
            )));
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

async fn run_execute<C: tokio_postgres::GenericClient>(
    client: &C,
    statement: &str,
    params: &[Value],
) -> Result<u64, SqlError> {
    let stmt = prepare(client, statement, params).await?;
    let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    client.execute(&stmt, &refs).await.map_err(|e| db_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_matches_whole_tokens() {
        assert_eq!(
            plan_denied("SELECT pg_promote(wait => true)"),
            Some("pg_promote")
        );
        assert_eq!(
            plan_denied("select \"PG_TERMINATE_BACKEND\"(123)"),
            Some("pg_terminate_backend")
        );
        assert_eq!(
            plan_denied("DO $$ BEGIN PERFORM pg_reload_conf(); END $$"),
            Some("pg_reload_conf")
        );
        assert_eq!(plan_denied("COPY t TO PROGRAM 'x'"), Some("copy"));
        assert_eq!(
            plan_denied("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()"),
            None
        );
        assert_eq!(plan_denied("SELECT my_pg_promote_wrapper()"), None);
        assert_eq!(plan_denied("SELECT * FROM copy_history"), None);
    }
}
