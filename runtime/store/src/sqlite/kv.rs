//! One run's durable kv state in the SQLite journal.

use meridian_protocol::KvStore;
use meridian_protocol::kv::{KvError, check_write};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;

/// One run's kv state in the `kv` table: every write is its own durable transaction, so a value
/// a step saved before it was killed is there for its compensation after a resume.
pub(super) struct SqliteKv {
    store: SqliteStore,
    run_id: String,
    /// Written only while this owner holds the run's lease.
    fence: Option<String>,
}

impl SqliteKv {
    pub(super) fn new(store: &SqliteStore, run_id: &str, fence: Option<&str>) -> SqliteKv {
        SqliteKv {
            store: store.clone(),
            run_id: run_id.to_string(),
            fence: fence.map(str::to_string),
        }
    }

    fn fail(&self, e: rusqlite::Error) -> KvError {
        KvError::Store(self.store.err(e).to_string())
    }

    /// Refuses a fenced write whose owner lost the run's lease; call after taking the write
    /// lock (an immediate transaction), so a takeover commits before the check or after the
    /// write.
    fn fence(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), KvError> {
        let Some(owner) = &self.fence else {
            return Ok(());
        };
        match super::commit::lease_lost(tx, &self.run_id, owner).map_err(|e| self.fail(e))? {
            Some(why) => Err(KvError::Store(why)),
            None => Ok(()),
        }
    }
}

impl KvStore for SqliteKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let conn = self.store.lock();
        conn.prepare_cached("SELECT value FROM kv WHERE run_id=?1 AND key=?2")
            .and_then(|mut st| {
                st.query_row(params![self.run_id, key], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.fail(e))
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut conn = self.store.lock();
        // Immediate: the write lock first. This transaction reads (the run's total) before it
        // writes, and a read snapshot another process writes past cannot be upgraded: SQLite
        // answers "database is locked" at once, without waiting.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.fail(e))?;
        self.fence(&tx)?;
        let (total, replaced): (i64, i64) = tx
            .prepare_cached(
                "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),
                        coalesce(sum(CASE WHEN key=?2 THEN length(CAST(key AS BLOB)) + length(value) END), 0)
                 FROM kv WHERE run_id=?1",
            )
            .and_then(|mut st| {
                st.query_row(params![self.run_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
            })
            .map_err(|e| self.fail(e))?;
        check_write(key, &value, total as usize, replaced as usize)?;
        tx.prepare_cached("INSERT OR REPLACE INTO kv (run_id, key, value) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![self.run_id, key, value]))
            .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))
    }

    fn delete(&self, key: &str) -> Result<bool, KvError> {
        let mut conn = self.store.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.fail(e))?;
        self.fence(&tx)?;
        let n = tx
            .prepare_cached("DELETE FROM kv WHERE run_id=?1 AND key=?2")
            .and_then(|mut st| st.execute(params![self.run_id, key]))
            .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(n > 0)
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let conn = self.store.lock();
        let mut stmt = conn
            .prepare_cached("SELECT key FROM kv WHERE run_id=?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![self.run_id, prefix], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }
}
