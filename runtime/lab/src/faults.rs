//! Faults the lab injects by name, so a drill can break a region the way regions break:
//! `POST /regions/{name}/faults/{fault}` on the control API (`?stale_ms=` for `dns-stale`), undone
//! by `POST /regions/{name}/start`.
//!
//! | fault             | what breaks                                                              |
//! |-------------------|--------------------------------------------------------------------------|
//! | `region-down`     | all of the region: gateways stop answering, PostgreSQL `-m immediate`    |
//! | `db-down`         | only the region's PostgreSQL (`-m immediate`); its gateways keep serving |
//! | `data-plane-down` | only the region's gateways; its PostgreSQL keeps running                 |
//! | `replication-cut` | the standbys of the region (or the region itself when it is a standby)   |
//! |                   | stop receiving WAL while every server stays up: they fall behind         |
//! | `dns-stale`       | `region-down`, and the GSLB keeps answering the dead region's address    |
//! |                   | for `stale_ms` (default 5000), whatever is written to the record         |
//!
//! `replication-cut` empties the standby's `primary_conninfo` (`ALTER SYSTEM`, reload: PostgreSQL
//! 13+ stops the WAL receiver) and waits until `pg_stat_wal_receiver` is empty, so when the
//! control API answers, the standby no longer receives anything. `start` puts the saved
//! conninfo back. `dns-stale` checks the `api` record every 20 ms and puts the dead region's
//! address back whenever something else was written; what was written last is published when
//! the window ends, as a GSLB that propagates slowly would. A query in the few milliseconds
//! between a workflow's write and the re-assertion can see the new answer (a client that
//! resolves once per TTL, like the drill's prober, keeps the stale one).

use std::str::FromStr;
use std::time::Duration;

use crate::error::LabError;
use crate::pg::PgCluster;

/// A fault the lab knows how to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    RegionDown,
    DbDown,
    DataPlaneDown,
    ReplicationCut,
    DnsStale,
}

impl Fault {
    /// Every fault, as the control API and `region-lab` spell it.
    pub const NAMES: [&'static str; 5] = [
        "region-down",
        "db-down",
        "data-plane-down",
        "replication-cut",
        "dns-stale",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::RegionDown => "region-down",
            Fault::DbDown => "db-down",
            Fault::DataPlaneDown => "data-plane-down",
            Fault::ReplicationCut => "replication-cut",
            Fault::DnsStale => "dns-stale",
        }
    }
}

impl FromStr for Fault {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Fault, LabError> {
        Ok(match s {
            "region-down" => Fault::RegionDown,
            "db-down" => Fault::DbDown,
            "data-plane-down" => Fault::DataPlaneDown,
            "replication-cut" => Fault::ReplicationCut,
            "dns-stale" => Fault::DnsStale,
            other => {
                return Err(LabError::Invalid(format!(
                    "unknown fault {other:?}: use one of {}",
                    Fault::NAMES.join(", ")
                )));
            }
        })
    }
}

/// Default `dns-stale` window.
pub(crate) const DEFAULT_STALE_MS: u64 = 5_000;
/// Longest `dns-stale` window the lab accepts.
pub(crate) const MAX_STALE_MS: u64 = 120_000;

/// Stops `standby`'s WAL receiver; returns the `primary_conninfo` to restore. `None` when the
/// server is not a standby (nothing to cut). Blocking.
pub(crate) fn cut_replication(standby: &PgCluster) -> Result<Option<String>, LabError> {
    if !standby.is_running() || !standby.is_in_recovery()? {
        return Ok(None);
    }
    let conninfo = standby.psql("SHOW primary_conninfo;")?;
    if conninfo.is_empty() {
        // Already cut (by an earlier request): keep what the first cut saved.
        return Ok(None);
    }
    standby.psql("ALTER SYSTEM SET primary_conninfo = '';")?;
    standby.psql("SELECT pg_reload_conf();")?;
    wait_receiver(standby, false)?;
    Ok(Some(conninfo))
}

/// Puts `conninfo` back as `standby`'s `primary_conninfo` and waits until it streams again.
pub(crate) fn restore_replication(standby: &PgCluster, conninfo: &str) -> Result<(), LabError> {
    let quoted = conninfo.replace('\'', "''");
    standby.psql(&format!("ALTER SYSTEM SET primary_conninfo = '{quoted}';"))?;
    standby.psql("SELECT pg_reload_conf();")?;
    wait_receiver(standby, true)
}

/// Polls `pg_stat_wal_receiver` until a receiver is (`want`) or is not there; 10 s bound.
fn wait_receiver(pg: &PgCluster, want: bool) -> Result<(), LabError> {
    let expected = if want { "1" } else { "0" };
    let sql = "SELECT count(*) FROM pg_stat_wal_receiver;";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = pg.psql(sql)?;
        if got == expected {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(LabError::State(format!(
                "the standby on port {} still reports {got} WAL receiver(s) 10 s after changing primary_conninfo; see its log",
                pg.port
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known() {
        for n in Fault::NAMES {
            assert_eq!(Fault::from_str(n).unwrap().as_str(), n);
        }
        let e = Fault::from_str("meteor").unwrap_err().to_string();
        assert!(e.contains("meteor") && e.contains("replication-cut"), "{e}");
    }
}
