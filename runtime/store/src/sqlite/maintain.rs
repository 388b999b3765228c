//! Keeping the SQLite journal: deleting old runs, checking the whole file on demand.

use std::time::Duration;

use rusqlite::params;

use super::SqliteStore;
use crate::StoreError;
use crate::pending::now_ms;

/// The runs `prune` may delete: ended (so not running or interrupted) and not waiting for an
/// approval, finished at or before `?1`.
const PRUNABLE: &str = "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at <= ?1
       AND status NOT IN ('running', 'awaiting-approval')";

/// How long claimed schedule ticks are kept (a week).
const TICKS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

impl SqliteStore {
    pub(super) fn prune_runs(&self, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(older_than.as_millis().min(i64::MAX as u128) as i64);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        for table in ["events", "legs", "kv", "leases", "cancel_requests"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run_id IN ({PRUNABLE})"),
                params![cutoff],
            )
            .map_err(|e| self.err(e))?;
        }
        let n = tx
            .execute(
                &format!("DELETE FROM runs WHERE id IN ({PRUNABLE})"),
                params![cutoff],
            )
            .map_err(|e| self.err(e))?;
        // Schedule ticks need remembering only while a server could still fire them.
        tx.execute(
            "DELETE FROM ticks WHERE claimed_at < ?1",
            params![now_ms() - TICKS_KEPT_MS],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM idempotency_keys WHERE claimed_at < ?1",
            params![now_ms() - super::keys::KEYS_KEPT_MS],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        // Maintenance is also when the WAL goes into the main file (commands leave it in place
        // at exit): a copy of `meridian.db` alone is then whole, and the WAL file small again.
        // A reader holding an old snapshot leaves part of it; that is not an error.
        // (A pragma that returns a row: `query_row` steps it to completion.)
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        Ok(n)
    }

    /// SQLite's full `integrity_check` and `foreign_key_check`, then every value read back.
    pub(super) fn check_file(&self) -> Result<Vec<String>, StoreError> {
        let mut problems: Vec<String> = self.with(|c| {
            let mut integrity = c.prepare("PRAGMA integrity_check")?;
            let rows = integrity.query_map([], |r| r.get::<_, String>(0))?;
            let mut found: Vec<String> = rows
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter(|l| l != "ok")
                .collect();
            let mut fk = c.prepare("PRAGMA foreign_key_check")?;
            let rows = fk.query_map([], |r| {
                Ok(format!(
                    "row {} of {} refers to a missing {}",
                    r.get::<_, i64>(1).unwrap_or_default(),
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(2)?
                ))
            })?;
            found.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
            Ok(found)
        })?;
        if problems.is_empty() {
            problems.extend(crate::check_values(self)?);
        }
        Ok(problems)
    }
}
