//! Runs someone asked to cancel, for the server that drives them (see
//! [`meridian_store::Journal::request_cancel`]).

use super::PgJournal;
use crate::DistError;

/// Records why run `$1` is to be cancelled (`$2`); the first request stands. Answers a row
/// when the run exists.
const REQUEST_CANCEL: &str = concat!(
    "WITH run AS (SELECT id FROM meridian.runs WHERE id = $1),
     ins AS (INSERT INTO meridian.cancel_requests (run_id, why, requested_at)
             SELECT id, $2, ",
    now_ms!(),
    " FROM run ON CONFLICT (run_id) DO NOTHING)
     SELECT id FROM run"
);
/// The requests for the runs of `$1`.
const CANCEL_REQUESTS: &str =
    "SELECT run_id, why FROM meridian.cancel_requests WHERE run_id = ANY($1::text[])";

impl PgJournal {
    pub(super) fn request_cancel_raw(&self, id: &str, why: &str) -> Result<(), DistError> {
        let (id, why) = (id.to_string(), why.to_string());
        self.call(true, move |s, _| {
            let (id, why) = (id.clone(), why.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(REQUEST_CANCEL).await?;
                let found = c
                    .query_opt(&st, &[&id, &why])
                    .await
                    .map_err(DistError::db("request a run's cancellation"))?;
                match found {
                    Some(_) => Ok(()),
                    None => Err(DistError::NoSuchRun(id)),
                }
            })
        })
    }

    pub(super) fn cancel_requests_raw(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, DistError> {
        let ids = ids.to_vec();
        self.call(true, move |s, _| {
            let ids = ids.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(CANCEL_REQUESTS).await?;
                let rows = c
                    .query(&st, &[&ids])
                    .await
                    .map_err(DistError::db("read cancellation requests"))?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
        })
    }
}
