//! `Idempotency-Key` claims by the database's clock (see [`meridian_store::Journal::claim_key`]).
//! A key is stored as its JSON text: keys are namespaced by the caller with a NUL, which a
//! PostgreSQL `text` cannot hold.

use meridian_store::KeyClaim;

use super::PgJournal;
use crate::DistError;

/// Takes key `$1` for run `$2` with request `$3` unless a claim holds it: one made within the
/// time to live (`$4` ms) whose run is recorded or is younger than `$5` ms. Returns a row when
/// this statement took the key. A concurrent claim of the same key waits for the other
/// transaction and then sees its row (`ON CONFLICT` reads the latest version).
const CLAIM_KEY: &str = concat!(
    "INSERT INTO meridian.idempotency_keys AS k (key, run_id, request, claimed_at)
     VALUES ($1, $2, $3, ",
    now_ms!(),
    ") ON CONFLICT (key) DO UPDATE
       SET run_id = excluded.run_id, request = excluded.request, claimed_at = excluded.claimed_at
     WHERE k.claimed_at <= ",
    now_ms!(),
    " - $4 OR (k.claimed_at <= ",
    now_ms!(),
    " - $5 AND NOT EXISTS (SELECT 1 FROM meridian.runs r WHERE r.id = k.run_id))
     RETURNING run_id"
);
/// The claim that holds key `$1`.
const HELD_KEY: &str =
    "SELECT run_id, request, claimed_at FROM meridian.idempotency_keys WHERE key = $1";
const RELEASE_KEY: &str = "DELETE FROM meridian.idempotency_keys WHERE key = $1 AND run_id = $2";

/// How a key is stored: its JSON text.
pub(crate) fn stored(key: &str) -> String {
    serde_json::Value::from(key).to_string()
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl PgJournal {
    /// One round trip when the key is new; two when it is held (the holder's claim is read by
    /// a second statement, whose snapshot sees the row the first one conflicted with). A key
    /// released between the two is claimed again, a bounded number of times.
    pub(super) fn claim_key_raw(
        &self,
        key: &str,
        claim: &KeyClaim,
        ttl: std::time::Duration,
    ) -> Result<Option<KeyClaim>, DistError> {
        let (key, claim) = (stored(key), claim.clone());
        let (ttl, orphan) = (ms(ttl), ms(meridian_store::ORPHAN_CLAIM));
        self.call(true, move |s, _| {
            let (key, claim) = (key.clone(), claim.clone());
            Box::pin(async move {
                for _ in 0..3 {
                    let (c, st) = s.stmt(CLAIM_KEY).await?;
                    let took = c
                        .query_opt(&st, &[&key, &claim.run_id, &claim.request, &ttl, &orphan])
                        .await
                        .map_err(DistError::db("claim an idempotency key"))?;
                    if took.is_some() {
                        return Ok(None);
                    }
                    let (c, st) = s.stmt(HELD_KEY).await?;
                    let held = c
                        .query_opt(&st, &[&key])
                        .await
                        .map_err(DistError::db("read an idempotency key's claim"))?;
                    match held {
                        // Our own claim, committed before a connection failure hid the answer
                        // (this is the retry): taken.
                        Some(r) if r.get::<_, String>(0) == claim.run_id => return Ok(None),
                        Some(r) => {
                            return Ok(Some(KeyClaim {
                                run_id: r.get(0),
                                request: r.get(1),
                                claimed_at_ms: r.get(2),
                            }));
                        }
                        None => continue,
                    }
                }
                Err(DistError::Contended(
                    "an idempotency key was released three times while it was being claimed".into(),
                ))
            })
        })
    }

    pub(super) fn release_key_raw(&self, key: &str, run_id: &str) -> Result<(), DistError> {
        let (key, run_id) = (stored(key), run_id.to_string());
        self.call(true, move |s, _| {
            let (key, run_id) = (key.clone(), run_id.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(RELEASE_KEY).await?;
                c.execute(&st, &[&key, &run_id])
                    .await
                    .map_err(DistError::db("release an idempotency key"))?;
                Ok(())
            })
        })
    }
}
