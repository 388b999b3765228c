//! `Idempotency-Key` claims in the SQLite journal (see [`crate::Journal::claim_key`]).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::pending::now_ms;
use crate::{KeyClaim, ORPHAN_CLAIM, StoreError};

/// How long `prune` keeps a claim: a day, the longest a server remembers a key.
pub(super) const KEYS_KEPT_MS: i64 = 24 * 3600 * 1000;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl SqliteStore {
    /// The claim that holds `key`, else this one is written, in one immediate transaction (the
    /// file's write lock: processes sharing the file claim one at a time). Without an fsync,
    /// like a lease: the run's record, written next with one, makes the claim durable with it,
    /// and a claim lost to a power cut had no run to return.
    pub(super) fn claim_key_row(
        &self,
        key: &str,
        claim: &KeyClaim,
        ttl: Duration,
    ) -> Result<Option<KeyClaim>, StoreError> {
        let now = now_ms();
        let (expired, orphaned) = (now - ms(ttl), now - ms(ORPHAN_CLAIM));
        self.unsynced(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held = tx
                .prepare_cached(
                    "SELECT run_id, request, claimed_at FROM idempotency_keys k
                      WHERE key = ?1 AND claimed_at > ?2
                        AND (claimed_at > ?3 OR EXISTS (SELECT 1 FROM runs WHERE id = k.run_id))",
                )?
                .query_row(params![key, expired, orphaned], |r| {
                    Ok(KeyClaim {
                        run_id: r.get(0)?,
                        request: r.get(1)?,
                        claimed_at_ms: r.get(2)?,
                    })
                })
                .optional()?;
            if held.is_none() {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (key, run_id, request, claimed_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![key, claim.run_id, claim.request, now])?;
            }
            tx.commit()?;
            Ok(held)
        })
    }

    pub(super) fn release_key_row(&self, key: &str, run_id: &str) -> Result<(), StoreError> {
        self.unsynced(|conn| {
            conn.prepare_cached("DELETE FROM idempotency_keys WHERE key = ?1 AND run_id = ?2")?
                .execute(params![key, run_id])
                .map(drop)
        })
    }
}

/// Claims the keys that runs recorded before the journal kept claims (schema version 7), newest
/// run first, so a request retried across the upgrade still finds its run. The request is what
/// the run says of it: its workflow and mode (not the inputs the request gave).
pub(super) fn carry_over(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut runs = tx.prepare(
        "SELECT id, workflow, mode, options, created_at FROM runs
          WHERE options LIKE '%idempotency_key%' ORDER BY created_at DESC",
    )?;
    let mut claim = tx.prepare(
        "INSERT OR IGNORE INTO idempotency_keys (key, run_id, request, claimed_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut rows = runs.query([])?;
    while let Some(r) = rows.next()? {
        let options: String = r.get(3)?;
        let Ok(settings) = serde_json::from_str::<crate::RunSettings>(&options) else {
            continue; // `meridian runs check` reports an unreadable record
        };
        if let Some(key) = settings.idempotency_key {
            let (workflow, mode): (String, String) = (r.get(1)?, r.get(2)?);
            let request = serde_json::json!({ "workflow": workflow, "mode": mode }).to_string();
            claim.execute(params![
                key,
                r.get::<_, String>(0)?,
                request,
                r.get::<_, i64>(4)?
            ])?;
        }
    }
    Ok(())
}
