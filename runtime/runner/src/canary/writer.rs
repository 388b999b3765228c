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

impl WriterPlan {
    /// The rows are counted where they were written (a drill without a database failover,
    /// the same server restarted): no promotion to look for.
    fn verifies_itself(&self) -> bool {
        self.verify == self.connection || self.verify_dsn == self.dsn
    }
}

/// What the writer saw while running.
#[derive(Debug, Default)]
pub(super) struct WriterLog {
    /// (seq, acknowledged at, Unix ms), in order, on whichever server took the writes.
    acked: Vec<(i64, u64)>,
    attempted: u64,
    failed: u64,
    first_error: Option<String>,
    last_error: Option<String>,
    /// Set when the writer could not even start (no table, no connection): nothing measured.
    setup_error: Option<String>,
    /// Write outages (Unix ms): from the sending of the first write refused after one was
    /// acknowledged to the
    /// first acknowledged again, on the server being written or on the verify connection (the
    /// promoted standby, which the writer then follows); the last one open while refusals go on.
    outages: Vec<(u64, Option<u64>)>,
    /// Whether the writes moved to the verify connection (it took one during an outage).
    followed: bool,
    /// During outages on the primary: how often the verify connection was tried, and why it
    /// refused last.
    other_tries: u64,
    other_refusal: Option<String>,
    /// Whether the verify connection was a standby (in recovery) when the writer started;
    /// `None` when it could not be asked.
    verify_was_standby: Option<bool>,
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
    /// The longest write outage: from the sending of the first write refused (or not answered
    /// in time) to the acknowledgement of the first accepted again (on
    /// the server being written, or on the verify connection once it takes writes): how long
    /// users could not write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_outage_ms: Option<u64>,
    /// How many write outages there were (a blip under load, then the failover's, is two).
    pub write_outages: u64,
    /// Whether the writes moved to the verify connection when it took one during an outage.
    pub writes_followed_failover: bool,
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
    // promotes): its first accepted write ends the outage, and the writes follow it there, as
    // an application that fails over would (writing on to the dead primary counted every later
    // tick as a failed write).
    // What the verify connection is before anything is broken: rows missing on a server that
    // was a primary already say nothing of a failover (a drill after a failback whose old
    // primary was never rebuilt reported them as lost).
    let mut other: Option<Client> = connect(&plan.verify_dsn, &plan.verify).await.ok();
    if let Some(c) = &other
        && !plan.verifies_itself()
    {
        log.verify_was_standby = in_recovery(c).await;
    }
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
        seq += 1;
        // An outage starts when its first refused write was sent, not when the refusal came
        // back: a primary that hangs answers only at the statement or connect timeout (1-2 s
        // that were left out of the outage).
        let sent_at = now_ms();
        // A server that cannot be reached refuses the write like one that answers "no": both
        // go through the outage bookkeeping below (a crashed primary is the common case).
        let written = if log.followed {
            write_other(&plan, &mut other, (&create, &insert), &run_id, seq).await
        } else {
            write_primary(&plan, &mut client, &insert, &run_id, seq).await
        };
        let in_outage = matches!(log.outages.last(), Some((_, None)));
        let accepted = match written {
            Ok(()) => true,
            Err(e) => {
                log.failed += 1;
                log.first_error.get_or_insert_with(|| e.clone());
                log.last_error = Some(e);
                if !in_outage {
                    if !log.acked.is_empty() {
                        log.outages.push((sent_at, None));
                    }
                    continue;
                }
                if log.followed {
                    continue;
                }
                // A fresh sequence number: the refused write may still commit on the old
                // primary and reach the standby before its promotion.
                seq += 1;
                log.other_tries += 1;
                match write_other(&plan, &mut other, (&create, &insert), &run_id, seq).await {
                    Ok(()) => {
                        log.followed = true;
                        true
                    }
                    Err(e) => {
                        log.other_refusal = Some(e);
                        false
                    }
                }
            }
        };
        if accepted {
            let at = now_ms();
            log.acked.push((seq, at));
            if let Some((_, end @ None)) = log.outages.last_mut() {
                *end = Some(at);
            }
        }
    }
    log
}

/// One write on the primary, reconnecting when its connection closed; why it was refused.
async fn write_primary(
    plan: &WriterPlan,
    client: &mut Client,
    insert: &str,
    run_id: &str,
    seq: i64,
) -> Result<(), String> {
    if client.is_closed() {
        *client = connect(&plan.dsn, &plan.connection).await?;
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run_id, &seq];
    match tokio::time::timeout(STATEMENT_TIMEOUT, client.execute(insert, &params)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(pg_error(&e)),
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> String {
    format!(
        "no acknowledgement within {} s",
        STATEMENT_TIMEOUT.as_secs()
    )
}

/// One write on the verify connection (connected on first use, again when closed); why it was
/// refused. A standby refuses it until it is promoted. A promoted standby that lacks the canary
/// table (created on the primary after replication stopped, it never arrived) gets it: a missing
/// table is not a refused write (the outage was reported as lasting past the drill while the
/// new primary took writes).
async fn write_other(
    plan: &WriterPlan,
    other: &mut Option<Client>,
    (create, insert): (&str, &str),
    run_id: &str,
    seq: i64,
) -> Result<(), String> {
    let c = match other {
        Some(c) if !c.is_closed() => c,
        _ => other.insert(connect(&plan.verify_dsn, &plan.verify).await?),
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run_id, &seq];
    match tokio::time::timeout(STATEMENT_TIMEOUT, c.execute(insert, &params)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            match tokio::time::timeout(STATEMENT_TIMEOUT, c.batch_execute(create)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(pg_error(&e)),
                Err(_) => return Err(timed_out()),
            }
            match tokio::time::timeout(STATEMENT_TIMEOUT, c.execute(insert, &params)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(pg_error(&e)),
                Err(_) => Err(timed_out()),
            }
        }
        Ok(Err(e)) => Err(pg_error(&e)),
        Err(_) => Err(timed_out()),
    }
}

/// A PostgreSQL error with the server's message ("db error" alone says nothing).
use meridian_pgtls::error_text as pg_error;

/// Counts this run's acknowledged rows on the verify connection and computes the figures.
pub(super) async fn figures(plan: &WriterPlan, run_id: &str, log: WriterLog) -> WriterFigures {
    let mut f = WriterFigures {
        rows_written: log.acked.len() as u64,
        writes_failed: log.failed,
        write_outage_ms: longest_outage(&log.outages, !log.acked.is_empty()),
        write_outages: log.outages.len() as u64,
        writes_followed_failover: log.followed,
        write_outage_not_measured: matches!(log.outages.last(), Some((_, None)))
            .then(|| still_refused(plan, &log)),
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
    if log.verify_was_standby == Some(false) {
        f.writer_not_measured = Some(format!(
            "`{}` was a primary already when the drill started, not a standby of `{}`: rows missing there say nothing of a failover (rebuild it as a standby first)",
            plan.verify, plan.connection
        ));
        return f;
    }
    let found = match found_rows(plan, run_id, !plan.verifies_itself()).await {
        Ok(Counted::StillStandby) => {
            f.writer_not_measured = Some(format!(
                "`{}` is still a standby (nothing promoted it): no failover happened, and the rows are on `{}`",
                plan.verify, plan.connection
            ));
            return f;
        }
        Ok(Counted::Rows(found)) => found,
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

/// The longest write outage. No write refused after the first acknowledged one: no outage
/// (zero). Refused and never accepted again while the canary ran: no figure (not a zero, nor
/// an earlier blip's).
fn longest_outage(outages: &[(u64, Option<u64>)], any_acked: bool) -> Option<u64> {
    match outages.last() {
        None => any_acked.then_some(0),
        Some((_, None)) => None,
        Some((_, Some(_))) => outages
            .iter()
            .filter_map(|(from, to)| to.map(|to| to.saturating_sub(*from)))
            .max(),
    }
}

/// Why the write outage has no figure, with what was refused last.
fn still_refused(plan: &WriterPlan, log: &WriterLog) -> String {
    let why = "writes were still refused when the canary stopped";
    let last = |e: &Option<String>| e.clone().unwrap_or_default();
    if log.followed {
        format!(
            "{why} (writing to `{}` since it took them; last refusal: {})",
            plan.verify,
            last(&log.last_error)
        )
    } else if log.other_tries > 0 {
        format!(
            "{why} (`{}` refused too, {} tries; last: {})",
            plan.verify,
            log.other_tries,
            last(&log.other_refusal)
        )
    } else {
        format!("{why} (`{}` not tried yet)", plan.verify)
    }
}

/// What the verify connection holds at the end.
enum Counted {
    /// This run's rows on it.
    Rows(BTreeSet<i64>),
    /// It is still in recovery: nothing was promoted.
    StillStandby,
}

/// `pg_is_in_recovery()`, or `None` when it does not answer.
async fn in_recovery(client: &Client) -> Option<bool> {
    let asked = client.query_one("SELECT pg_is_in_recovery()", &[]);
    match tokio::time::timeout(STATEMENT_TIMEOUT, asked).await {
        Ok(Ok(row)) => row.try_get::<_, bool>(0).ok(),
        _ => None,
    }
}

async fn found_rows(plan: &WriterPlan, run_id: &str, promoted: bool) -> Result<Counted, String> {
    let client = connect(&plan.verify_dsn, &plan.verify).await?;
    if promoted && in_recovery(&client).await == Some(true) {
        return Ok(Counted::StillStandby);
    }
    let sql = format!("SELECT seq FROM {} WHERE run_id = $1", plan.table);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&run_id];
    let read = tokio::time::timeout(Duration::from_secs(10), client.query(&sql, &params));
    match read.await {
        Ok(Ok(rows)) => Ok(Counted::Rows(
            rows.iter().map(|r| r.get::<_, i64>(0)).collect(),
        )),
        // The table never reached the new primary: none of the rows did.
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(Counted::Rows(BTreeSet::new()))
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

    #[test]
    fn the_longest_outage_counts_and_an_open_one_has_no_figure() {
        assert_eq!(longest_outage(&[], true), Some(0));
        assert_eq!(longest_outage(&[], false), None);
        // A blip under load, then the failover's: the failover's, not the first one's.
        let two = [(1_000, Some(1_200)), (5_000, Some(9_500))];
        assert_eq!(longest_outage(&two, true), Some(4_500));
        // Still refused at the end: no figure, whatever came before.
        let open = [(1_000, Some(1_200)), (5_000, None)];
        assert_eq!(longest_outage(&open, true), None);
    }
}
