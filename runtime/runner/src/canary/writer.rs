//! The canary writer: sequenced rows into the primary at a steady rate, each acknowledged or not;
//! afterwards the rows are counted on the new primary. A row that was acknowledged and is not
//! there is a write a user lost.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::now_ms;

/// What the writer needs, resolved (DSNs evaluated).
#[derive(Clone, Debug)]
pub struct WriterPlan {
    pub dsn: String,
    pub verify_dsn: String,
    /// Names of the connections, for messages (never the DSNs: they may hold passwords).
    pub connection: String,
    pub verify: String,
    pub rate: u32,
    pub table: String,
}

/// What the writer saw while running.
#[derive(Debug, Default)]
pub(super) struct WriterLog {
    /// (seq, acknowledged at, Unix ms), in order.
    acked: Vec<(i64, u64)>,
    attempted: u64,
    failed: u64,
    first_error: Option<String>,
    /// Set when the writer could not even start (no table, no connection): nothing measured.
    setup_error: Option<String>,
    /// The first write refused after one was acknowledged (Unix ms): the write outage's start.
    outage_from: Option<u64>,
    /// The first write acknowledged after that, on the primary or on the verify connection
    /// (the promoted standby): the write outage's end.
    outage_to: Option<u64>,
}

/// The writer's figures.
#[derive(Debug, Default, Serialize)]
pub(super) struct WriterFigures {
    pub rows_written: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_found: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_lost: Option<u64>,
    /// From the last acknowledged row the new primary has (before the first lost one) to the
    /// last acknowledged row it lacks: the span of time whose writes were lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_window_ms: Option<u64>,
    pub writes_failed: u64,
    /// From the first write refused to the first accepted again (on the old primary, or on the
    /// verify connection once it takes writes): how long users could not write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_outage_ms: Option<u64>,
    /// Why the write outage has no figure (writes were still refused when the canary stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_outage_not_measured: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_first_error: Option<String>,
    /// Why a figure could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_not_measured: Option<String>,
}

const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

async fn connect(dsn: &str, name: &str) -> Result<Client, String> {
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, meridian_pgtls::connect(dsn));
    match attempt.await {
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(format!("connecting to `{name}`: {e}")),
        Err(_) => Err(format!(
            "connecting to `{name}`: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Writes until `stop` turns true. Never fails: problems are in the log.
pub(super) async fn run(
    plan: WriterPlan,
    run_id: String,
    mut stop: watch::Receiver<bool>,
) -> WriterLog {
    let mut log = WriterLog::default();
    let mut client = match connect(&plan.dsn, &plan.connection).await {
        Ok(c) => c,
        Err(e) => {
            log.setup_error = Some(e);
            return log;
        }
    };
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} (run_id text NOT NULL, seq bigint NOT NULL, \
         written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run_id, seq))",
        plan.table
    );
    if let Err(e) = client.batch_execute(&create).await {
        log.setup_error = Some(format!(
            "creating the canary table {} on `{}`: {}",
            plan.table,
            plan.connection,
            pg_error(&e)
        ));
        return log;
    }
    let insert = format!("INSERT INTO {} (run_id, seq) VALUES ($1, $2)", plan.table);
    // During a write outage each tick also tries the verify connection (the standby a failover
    // promotes), with negative sequence numbers: its first accepted write ends the outage.
    let mut other: Option<Client> = None;
    let mut other_seq: i64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: i64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        log.attempted += 1;
        // A primary that cannot be reached refuses the write like one that answers "no": both
        // go through the outage bookkeeping below (a crashed primary is the common case).
        let reconnected = if client.is_closed() {
            connect(&plan.dsn, &plan.connection)
                .await
                .map(|c| client = c)
        } else {
            Ok(())
        };
        let accepted = match reconnected {
            Err(e) => {
                log.failed += 1;
                log.first_error.get_or_insert(e);
                false
            }
            Ok(()) => {
                seq += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run_id, &seq];
                let write =
                    tokio::time::timeout(STATEMENT_TIMEOUT, client.execute(&insert, &params));
                match write.await {
                    Ok(Ok(_)) => {
                        log.acked.push((seq, now_ms()));
                        true
                    }
                    Ok(Err(e)) => {
                        log.failed += 1;
                        log.first_error.get_or_insert_with(|| pg_error(&e));
                        false
                    }
                    Err(_) => {
                        log.failed += 1;
                        log.first_error
                            .get_or_insert_with(|| "no acknowledgement within 1 s".to_string());
                        false
                    }
                }
            }
        };
        if log.outage_to.is_some() {
            continue;
        }
        match (accepted, log.outage_from) {
            (false, None) if !log.acked.is_empty() => log.outage_from = Some(now_ms()),
            (true, Some(_)) => log.outage_to = Some(now_ms()),
            (false, Some(_)) => {
                other_seq -= 1;
                if try_other(&plan, &mut other, (&create, &insert), &run_id, other_seq).await {
                    log.outage_to = Some(now_ms());
                }
            }
            _ => {}
        }
    }
    log
}

/// One write on the verify connection (connected on first use, again when closed); whether it
/// was accepted. A standby refuses it until it is promoted. A promoted standby that lacks the
/// canary table (created on the primary after replication stopped, it never arrived) gets it:
/// a missing table is not a refused write (the outage was reported as lasting past the drill
/// while the new primary took writes).
async fn try_other(
    plan: &WriterPlan,
    other: &mut Option<Client>,
    (create, insert): (&str, &str),
    run_id: &str,
    seq: i64,
) -> bool {
    if other.as_ref().is_none_or(Client::is_closed) {
        *other = connect(&plan.verify_dsn, &plan.verify).await.ok();
    }
    let Some(c) = other.as_ref() else {
        return false;
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run_id, &seq];
    match tokio::time::timeout(STATEMENT_TIMEOUT, c.execute(insert, &params)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            let made = tokio::time::timeout(STATEMENT_TIMEOUT, c.batch_execute(create)).await;
            matches!(made, Ok(Ok(())))
                && matches!(
                    tokio::time::timeout(STATEMENT_TIMEOUT, c.execute(insert, &params)).await,
                    Ok(Ok(_))
                )
        }
        _ => false,
    }
}

/// A PostgreSQL error with the server's message ("db error" alone says nothing).
use meridian_pgtls::error_text as pg_error;

/// Counts this run's acknowledged rows on the verify connection and computes the figures.
pub(super) async fn figures(plan: &WriterPlan, run_id: &str, log: WriterLog) -> WriterFigures {
    let mut f = WriterFigures {
        rows_written: log.acked.len() as u64,
        writes_failed: log.failed,
        // No write refused after the first acknowledged one: no outage. Refused and never
        // accepted again while the canary ran: no figure (not a zero).
        write_outage_ms: match (log.outage_from, log.outage_to) {
            (None, _) if !log.acked.is_empty() => Some(0),
            (Some(from), Some(to)) => Some(to.saturating_sub(from)),
            _ => None,
        },
        write_outage_not_measured: (log.outage_from.is_some() && log.outage_to.is_none())
            .then(|| "writes were still refused when the canary stopped".to_string()),
        writer_first_error: log.first_error.clone(),
        ..WriterFigures::default()
    };
    if let Some(e) = log.setup_error {
        f.writer_not_measured = Some(e);
        return f;
    }
    if log.acked.is_empty() {
        f.writer_not_measured = Some(format!(
            "no write to `{}` was acknowledged, so nothing could be lost or kept",
            plan.connection
        ));
        return f;
    }
    let found = match found_rows(plan, run_id).await {
        Ok(found) => found,
        Err(e) => {
            f.writer_not_measured = Some(e);
            return f;
        }
    };
    let (lost, kept) = judge(&log.acked, &found);
    f.rows_found = Some(kept);
    f.rows_lost = Some(lost.len() as u64);
    f.rpo_window_ms = Some(window(&log.acked, &found, &lost, plan.rate));
    f
}

async fn found_rows(plan: &WriterPlan, run_id: &str) -> Result<BTreeSet<i64>, String> {
    let client = connect(&plan.verify_dsn, &plan.verify).await?;
    let sql = format!("SELECT seq FROM {} WHERE run_id = $1", plan.table);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&run_id];
    let read = tokio::time::timeout(Duration::from_secs(10), client.query(&sql, &params));
    match read.await {
        Ok(Ok(rows)) => Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect()),
        // The table never reached the new primary: none of the rows did.
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(BTreeSet::new())
        }
        Ok(Err(e)) => Err(format!(
            "counting the canary rows on `{}`: {}",
            plan.verify,
            pg_error(&e)
        )),
        Err(_) => Err(format!(
            "counting the canary rows on `{}`: no answer within 10 s",
            plan.verify
        )),
    }
}

/// The acknowledged rows missing from `found` (seq, ack time), and how many are there.
fn judge(acked: &[(i64, u64)], found: &BTreeSet<i64>) -> (Vec<(i64, u64)>, u64) {
    let lost: Vec<(i64, u64)> = acked
        .iter()
        .copied()
        .filter(|(s, _)| !found.contains(s))
        .collect();
    let kept = (acked.len() - lost.len()) as u64;
    (lost, kept)
}

/// The time span of lost writes: from the last kept acknowledgement before the first lost one
/// (or one write interval before it, when none was kept) to the last lost acknowledgement.
fn window(acked: &[(i64, u64)], found: &BTreeSet<i64>, lost: &[(i64, u64)], rate: u32) -> u64 {
    let (Some(first), Some(last)) = (lost.first(), lost.last()) else {
        return 0;
    };
    let interval = 1_000 / u64::from(rate.max(1));
    let kept_before = acked
        .iter()
        .filter(|(s, _)| *s < first.0 && found.contains(s))
        .map(|(_, at)| *at)
        .next_back()
        .unwrap_or(first.1.saturating_sub(interval));
    last.1.saturating_sub(kept_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_rows_and_their_window() {
        let acked = [(1, 1_000), (2, 1_050), (3, 1_100), (4, 1_150), (5, 1_200)];
        let found: BTreeSet<i64> = [1, 2, 3].into();
        let (lost, kept) = judge(&acked, &found);
        assert_eq!((lost.len(), kept), (2, 3));
        assert_eq!(window(&acked, &found, &lost, 20), 100);
        let all: BTreeSet<i64> = (1..=5).collect();
        let (lost, kept) = judge(&acked, &all);
        assert_eq!((lost.len(), kept), (0, 5));
        assert_eq!(window(&acked, &all, &lost, 20), 0);
        // Nothing kept at all: the window starts one interval before the first lost write.
        let none = BTreeSet::new();
        let (lost, _) = judge(&acked, &none);
        assert_eq!(window(&acked, &none, &lost, 20), 250);
    }
}
