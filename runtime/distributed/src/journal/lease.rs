//! Who drives what, by the database's clock: runs' leases (taken, renewed, released; the runs
//! whose lease lapsed), schedule ticks (claimed once among the servers sharing the journal) and
//! schedules' saved state (paused, failures).

use meridian_store::{RawSummary, ScheduleState};

use super::{PgJournal, read_summary};
use crate::DistError;

/// Claims schedule `$1`'s tick `$2` for `$3`; a tick already claimed is left as it is.
const CLAIM_TICK: &str = concat!(
    "INSERT INTO meridian.ticks (schedule, tick, claimed_by, claimed_at) VALUES ($1, $2, $3, ",
    now_ms!(),
    ") ON CONFLICT DO NOTHING"
);
/// Takes or renews a run's lease ($1 run, $2 owner, $3 ttl ms) by the database's clock, so
/// servers with skewed clocks agree on when a lease expired.
const LEASE_RUN: &str = concat!(
    "INSERT INTO meridian.leases (run_id, owner, expires_at) VALUES ($1, $2, ",
    now_ms!(),
    " + $3) ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
     WHERE meridian.leases.owner = excluded.owner OR meridian.leases.expires_at < ",
    now_ms!()
);
/// `LEASE_RUN` for many runs in one statement; answers the ids `$2` does not hold.
const RENEW_RUNS: &str = concat!(
    "WITH want AS (SELECT unnest($1::text[]) AS run_id),
     won AS (INSERT INTO meridian.leases (run_id, owner, expires_at)
             SELECT run_id, $2, ",
    now_ms!(),
    " + $3 FROM want
             ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE meridian.leases.owner = excluded.owner OR meridian.leases.expires_at < ",
    now_ms!(),
    "
             RETURNING run_id)
     SELECT run_id FROM want WHERE run_id NOT IN (SELECT run_id FROM won)"
);
/// Running runs without a live lease, with their options: whether a server started them (a
/// `trigger`) is read from the options in Rust, as `->>` refuses a text holding `\u0000`.
const ORPHANED: &str = concat!(
    "SELECT r.id, r.workflow, r.mode, r.status, r.created_at, r.finished_at, r.message,
            r.options::text
       FROM meridian.runs r LEFT JOIN meridian.leases l ON l.run_id = r.id
      WHERE r.status = 'running' AND (l.run_id IS NULL OR l.expires_at < ",
    now_ms!(),
    ")
      ORDER BY r.created_at, r.seq LIMIT $1"
);
const RELEASE_RUN: &str = "DELETE FROM meridian.leases WHERE run_id = $1 AND owner = $2";
/// Every schedule's saved state.
const SCHEDULES: &str =
    "SELECT schedule, paused, failures FROM meridian.schedules ORDER BY schedule";
/// Saves schedule `$1`'s state: paused `$2`, failures `$3`.
const SAVE_SCHEDULE: &str = concat!(
    "INSERT INTO meridian.schedules (schedule, paused, failures, updated_at) VALUES ($1, $2, $3, ",
    now_ms!(),
    ") ON CONFLICT (schedule) DO UPDATE SET paused = excluded.paused, failures = excluded.failures,
       updated_at = excluded.updated_at"
);
/// The owner of run `$1`'s lease while it has not expired.
const LEASE_HOLDER: &str = concat!(
    "SELECT owner FROM meridian.leases WHERE run_id = $1 AND expires_at >= ",
    now_ms!()
);

impl PgJournal {
    pub(super) fn lease_raw(&self, id: &str, by: &str, ttl_ms: i64) -> Result<bool, DistError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.call(true, move |s, _| {
            let (id, by) = (id.clone(), by.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(LEASE_RUN).await?;
                let n = c
                    .execute(&st, &[&id, &by, &ttl_ms])
                    .await
                    .map_err(DistError::db("lease a run"))?;
                Ok(n == 1)
            })
        })
    }

    pub(super) fn renew_raw(
        &self,
        ids: &[String],
        by: &str,
        ttl_ms: i64,
    ) -> Result<Vec<String>, DistError> {
        let (ids, by) = (ids.to_vec(), by.to_string());
        self.call(true, move |s, _| {
            let (ids, by) = (ids.clone(), by.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(RENEW_RUNS).await?;
                let rows = c
                    .query(&st, &[&ids, &by, &ttl_ms])
                    .await
                    .map_err(DistError::db("renew runs' leases"))?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })
        })
    }

    pub(super) fn orphaned_raw(&self, limit: i64) -> Result<Vec<RawSummary>, DistError> {
        self.call(true, move |s, _| {
            Box::pin(async move {
                let (c, st) = s.stmt(ORPHANED).await?;
                let rows = c
                    .query(&st, &[&limit])
                    .await
                    .map_err(DistError::db("list orphaned runs"))?;
                let by_server = |options: &str| {
                    serde_json::from_str::<serde_json::Value>(options)
                        .is_ok_and(|o| o.get("trigger").is_some_and(|t| !t.is_null()))
                };
                Ok(rows
                    .iter()
                    .filter(|r| by_server(r.get(7)))
                    .map(read_summary)
                    .collect())
            })
        })
    }

    pub(super) fn release_raw(&self, id: &str, by: &str) -> Result<(), DistError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.call(true, move |s, _| {
            let (id, by) = (id.clone(), by.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(RELEASE_RUN).await?;
                c.execute(&st, &[&id, &by])
                    .await
                    .map_err(DistError::db("release a run's lease"))?;
                Ok(())
            })
        })
    }

    pub(super) fn lease_holder_raw(&self, id: &str) -> Result<Option<String>, DistError> {
        let id = id.to_string();
        self.call(true, move |s, _| {
            let id = id.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(LEASE_HOLDER).await?;
                let row = c
                    .query_opt(&st, &[&id])
                    .await
                    .map_err(DistError::db("read a run's lease"))?;
                Ok(row.map(|r| r.get(0)))
            })
        })
    }

    pub(super) fn schedules_raw(&self) -> Result<Vec<ScheduleState>, DistError> {
        self.call(true, move |s, _| {
            Box::pin(async move {
                let (c, st) = s.stmt(SCHEDULES).await?;
                let rows = c
                    .query(&st, &[])
                    .await
                    .map_err(DistError::db("read the schedules' state"))?;
                Ok(rows
                    .iter()
                    .map(|r| ScheduleState {
                        schedule: r.get(0),
                        paused: r.get(1),
                        failures: r.get::<_, i32>(2).max(0) as u32,
                    })
                    .collect())
            })
        })
    }

    pub(super) fn save_schedule_raw(&self, state: &ScheduleState) -> Result<(), DistError> {
        let state = state.clone();
        self.call(true, move |s, _| {
            let state = state.clone();
            Box::pin(async move {
                let (c, st) = s.stmt(SAVE_SCHEDULE).await?;
                let failures = i32::try_from(state.failures).unwrap_or(i32::MAX);
                c.execute(&st, &[&state.schedule, &state.paused, &failures])
                    .await
                    .map_err(DistError::db("save a schedule's state"))?;
                Ok(())
            })
        })
    }

    pub(super) fn claim_tick_raw(
        &self,
        schedule: &str,
        tick: i64,
        by: &str,
    ) -> Result<bool, DistError> {
        let (schedule, by) = (schedule.to_string(), by.to_string());
        self.call(true, move |s, _| {
            let (schedule, by) = (schedule.clone(), by.clone());
            Box::pin(async move {
                let (c, st) = s.stmt(CLAIM_TICK).await?;
                let n = c
                    .execute(&st, &[&schedule, &tick, &by])
                    .await
                    .map_err(DistError::db("claim a schedule tick"))?;
                Ok(n == 1)
            })
        })
    }
}
