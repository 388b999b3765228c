//! One run's durable kv state in `meridian.kv`.

use std::sync::Arc;

use futures::future::BoxFuture;
use meridian_protocol::KvStore;
use meridian_protocol::kv::{KvError, check_write};
use tokio_postgres::{Client, Statement};

use super::PgJournal;
use crate::DistError;

const KV_GET: &str = "SELECT value FROM meridian.kv WHERE run_id = $1 AND key = $2";
// The limit check and the write in one statement (one round trip, one commit): the row is
// written only when the run's total stays within the limit and, with a fence ($5, the owner of a
// fenced kv), while that owner holds the run's lease (its row locked `FOR SHARE`, as the
// journal's append does); the sizes and the lease check's answer come back either way.
const KV_SET: &str = concat!(
    "WITH ",
    fence_cte!("$5"),
    ",
     sizes AS (
       SELECT coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint AS total,
              coalesce(sum(octet_length(key) + octet_length(value)) FILTER (WHERE key = $2::text), 0)::bigint AS replaced
         FROM meridian.kv WHERE run_id = $1::text),
     ins AS (
       INSERT INTO meridian.kv (run_id, key, value) SELECT $1::text, $2::text, $3::bytea FROM sizes
        WHERE (SELECT ok FROM allowed)
          AND total - replaced + octet_length($2::text) + octet_length($3::bytea) <= $4::bigint
       ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1)
     SELECT total, replaced, (SELECT count(*) FROM ins), (SELECT ok FROM allowed) FROM sizes"
);
const KV_DELETE: &str = concat!(
    "WITH ",
    fence_cte!("$3"),
    ",
     del AS (
       DELETE FROM meridian.kv WHERE run_id = $1::text AND key = $2::text AND (SELECT ok FROM allowed)
       RETURNING 1)
     SELECT (SELECT ok FROM allowed), (SELECT count(*) FROM del)"
);
const KV_KEYS: &str = "SELECT key FROM meridian.kv WHERE run_id = $1 AND left(key, length($2)) = $2 ORDER BY key COLLATE \"C\"";

/// One run's kv state in `meridian.kv`, reached from any coordinator or worker: every write is
/// one statement (limit check included) and so one commit.
pub(super) struct PgKv {
    journal: PgJournal,
    run_id: String,
    /// Written only while this owner holds the run's lease.
    fence: Option<String>,
}

impl PgKv {
    pub(super) fn new(journal: &PgJournal, run_id: &str, fence: Option<&str>) -> PgKv {
        PgKv {
            journal: journal.clone(),
            run_id: run_id.to_string(),
            fence: fence.map(str::to_string),
        }
    }

    fn call<T: Send + 'static>(
        &self,
        sql: &'static str,
        key: &str,
        f: impl for<'a> Fn(&'a Client, Statement, String, String) -> BoxFuture<'a, Result<T, DistError>>
        + Send
        + Sync
        + 'static,
    ) -> Result<T, KvError> {
        let (run, key) = (self.run_id.clone(), key.to_string());
        let f = Arc::new(f);
        self.journal
            .call(true, move |s, _| {
                let (run, key, f) = (run.clone(), key.clone(), f.clone());
                Box::pin(async move {
                    let (c, st) = s.stmt(sql).await?;
                    f(c, st, run, key).await
                })
            })
            .map_err(|e| KvError::Store(e.to_string()))
    }

    /// The refusal of a fenced write: who holds the run's lease now, if anyone.
    fn refused(&self) -> KvError {
        let (run, owner) = (self.run_id.clone(), self.fence.clone().unwrap_or_default());
        let why = self.journal.call(false, move |s, _| {
            let (run, owner) = (run.clone(), owner.clone());
            Box::pin(async move { Ok(s.lease_lost(&run, &owner).await) })
        });
        KvError::Store(why.unwrap_or_else(|e| e).to_string())
    }
}

impl KvStore for PgKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.call(KV_GET, key, |c, st, run, key| {
            Box::pin(async move {
                let row = c
                    .query_opt(&st, &[&run, &key])
                    .await
                    .map_err(DistError::db("read kv"))?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            })
        })
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        // The size limits on key and value alone are checked before the round trip.
        check_write(key, &value, 0, 0)?;
        let value = Arc::new(value);
        let v = value.clone();
        let limit = meridian_protocol::kv::MAX_TOTAL_BYTES as i64;
        let fence = self.fence.clone();
        let (total, replaced, written, allowed) =
            self.call(KV_SET, key, move |c, st, run, key| {
                let (v, fence) = (v.clone(), fence.clone());
                Box::pin(async move {
                    let row = c
                        .query_one(&st, &[&run, &key, &v.as_slice(), &limit, &fence])
                        .await
                        .map_err(DistError::db("write kv"))?;
                    Ok((
                        row.get::<_, i64>(0),
                        row.get::<_, i64>(1),
                        row.get::<_, i64>(2),
                        row.get::<_, bool>(3),
                    ))
                })
            })?;
        if !allowed {
            return Err(self.refused());
        }
        if written == 0 {
            check_write(key, &value, total as usize, replaced as usize)?;
            return Err(KvError::Store("kv write refused".into()));
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, KvError> {
        let fence = self.fence.clone();
        let (allowed, deleted) = self.call(KV_DELETE, key, move |c, st, run, key| {
            let fence = fence.clone();
            Box::pin(async move {
                let row = c
                    .query_one(&st, &[&run, &key, &fence])
                    .await
                    .map_err(DistError::db("delete kv"))?;
                Ok((row.get::<_, bool>(0), row.get::<_, i64>(1)))
            })
        })?;
        if !allowed {
            return Err(self.refused());
        }
        Ok(deleted > 0)
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.call(KV_KEYS, prefix, |c, st, run, prefix| {
            Box::pin(async move {
                let rows = c
                    .query(&st, &[&run, &prefix])
                    .await
                    .map_err(DistError::db("list kv keys"))?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })
        })
    }
}
