//! Runs someone asked to cancel, for the server that drives them (see
//! [`crate::Journal::request_cancel`]).

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::StoreError;
use crate::pending::now_ms;

impl SqliteStore {
    pub(super) fn request_cancel_row(&self, id: &str, why: &str) -> Result<(), StoreError> {
        let n = self.with(|c| {
            c.prepare_cached(
                "INSERT INTO cancel_requests (run_id, why, requested_at)
                 SELECT id, ?2, ?3 FROM runs WHERE id = ?1
                 ON CONFLICT (run_id) DO NOTHING",
            )?
            .execute(params![id, why, now_ms()])?;
            c.prepare_cached("SELECT count(*) FROM runs WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, i64>(0))
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    pub(super) fn cancel_request_rows(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT why FROM cancel_requests WHERE run_id = ?1")?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(why) = st
                    .query_row(params![id], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    found.push((id.clone(), why));
                }
            }
            Ok(found)
        })
    }
}
