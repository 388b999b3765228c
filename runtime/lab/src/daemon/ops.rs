//! What the control API does to a region: start, stop, kill, faults, rebuild-standby.

use std::sync::Arc;
use std::time::Duration;

use super::{Lab, slot_name};
use crate::error::LabError;
use crate::faults::{Fault, cut_replication, restore_replication};
use crate::gateway::blocking;
use crate::pdns::Pdns;
use crate::pg::{PgCluster, StopMode};
use crate::state::{API_RECORD, RegionStatus, ZONE};

impl Lab {
    /// "kill" / "stop" / "start" of one region.
    pub(super) async fn region_op(&mut self, idx: usize, action: &str) -> Result<(), LabError> {
        // The other regions' clusters: a start checks whether one of them is a primary now.
        let others: Vec<_> = (0..self.regions.len())
            .filter(|&i| i != idx)
            .map(|i| self.regions[i].pg.clone())
            .collect();
        let r = &mut self.regions[idx];
        let pg = r.pg.clone();
        match action {
            "kill" => {
                r.gateway.stop(false).await;
                blocking(move || {
                    pg.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stop(StopMode::Immediate);
                    Ok(())
                })
                .await?;
                r.status = RegionStatus::Killed;
            }
            "stop" => {
                r.gateway.stop(true).await;
                blocking(move || {
                    pg.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stop(StopMode::Fast);
                    Ok(())
                })
                .await?;
                r.status = RegionStatus::Stopped;
            }
            "start" => {
                if let Some(task) = self.stale_dns.take() {
                    task.abort();
                }
                let r = &mut self.regions[idx];
                let conninfo = r.saved_conninfo.take();
                let name = r.name.clone();
                blocking(move || {
                    let mut pg = pg.lock().unwrap_or_else(|p| p.into_inner());
                    // An old primary brought back after a failover starts fenced (read-only
                    // from its first connection): it started writable, took writes beside the
                    // promoted one, and its rebuild as a standby then threw them away.
                    let another_primary = others.iter().any(|o| {
                        let o = o.lock().unwrap_or_else(|p| p.into_inner());
                        o.is_running() && o.is_in_recovery().ok() == Some(false)
                    });
                    if another_primary && !pg.is_standby_on_disk() {
                        pg.fence_on_disk()?;
                        tracing::warn!(
                            region = %name,
                            "another region is primary: this one starts fenced (default_transaction_read_only); rebuild it as a standby"
                        );
                    }
                    pg.start()?;
                    if let Some(c) = conninfo {
                        restore_replication(&pg, &c)?;
                    }
                    Ok(())
                })
                .await?;
                r.gateway.start().await?;
                r.status = RegionStatus::Up;
                r.faults.clear();
                // A cut of this region's standbys is undone with it.
                let cut: Vec<usize> = (0..self.regions.len())
                    .filter(|&i| i != idx && self.regions[i].saved_conninfo.is_some())
                    .collect();
                for i in cut {
                    self.restore_standby(i).await?;
                }
            }
            other => {
                return Err(LabError::Invalid(format!(
                    "unknown region action {other:?}: use start, stop, kill, rebuild-standby or scale"
                )));
            }
        }
        Ok(())
    }

    /// Puts back the `primary_conninfo` a `replication-cut` took from region `idx`.
    async fn restore_standby(&mut self, idx: usize) -> Result<(), LabError> {
        let r = &mut self.regions[idx];
        let Some(conninfo) = r.saved_conninfo.take() else {
            return Ok(());
        };
        let pg = r.pg.clone();
        blocking(move || {
            let pg = pg.lock().unwrap_or_else(|p| p.into_inner());
            restore_replication(&pg, &conninfo)
        })
        .await?;
        r.faults.retain(|f| *f != Fault::ReplicationCut);
        Ok(())
    }

    /// Injects `fault` into region `idx` (see [`crate::faults`]).
    pub(super) async fn inject(
        &mut self,
        idx: usize,
        fault: Fault,
        stale_ms: u64,
    ) -> Result<(), LabError> {
        match fault {
            Fault::RegionDown => self.region_op(idx, "kill").await?,
            Fault::DbDown => {
                let pg = self.regions[idx].pg.clone();
                blocking(move || {
                    pg.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stop(StopMode::Immediate);
                    Ok(())
                })
                .await?;
            }
            Fault::DataPlaneDown => self.regions[idx].gateway.stop(false).await,
            Fault::ReplicationCut => {
                // The region's own stream when it is a standby, else every standby's.
                let mut standby = Vec::with_capacity(self.regions.len());
                for i in 0..self.regions.len() {
                    standby.push(self.standby_at(i).await);
                }
                let targets: Vec<usize> = if standby[idx] {
                    vec![idx]
                } else {
                    (0..standby.len()).filter(|&i| standby[i]).collect()
                };
                let cut_any = !targets.is_empty();
                for i in targets {
                    let pg = self.regions[i].pg.clone();
                    let saved = blocking(move || {
                        cut_replication(&pg.lock().unwrap_or_else(|p| p.into_inner()))
                    })
                    .await?;
                    let r = &mut self.regions[i];
                    if let Some(c) = saved {
                        r.saved_conninfo = Some(c);
                    }
                    if !r.faults.contains(&Fault::ReplicationCut) {
                        r.faults.push(Fault::ReplicationCut);
                    }
                }
                if !cut_any {
                    return Err(LabError::Invalid(format!(
                        "replication-cut: region {} has no running standby to cut",
                        self.regions[idx].name
                    )));
                }
            }
            Fault::DnsStale => {
                self.region_op(idx, "kill").await?;
                let pdns = self
                    .pdns
                    .clone()
                    .ok_or_else(|| LabError::State("the GSLB (PowerDNS) is not running".into()))?;
                let ip = self.regions[idx].ip.to_string();
                if let Some(old) = self.stale_dns.take() {
                    old.abort();
                }
                self.stale_dns = Some(tokio::spawn(hold_dns(pdns, ip, stale_ms)));
            }
        }
        let r = &mut self.regions[idx];
        if !r.faults.contains(&fault) {
            r.faults.push(fault);
        }
        Ok(())
    }

    /// Whether region `idx`'s PostgreSQL runs as a standby.
    async fn standby_at(&self, idx: usize) -> bool {
        let pg = self.regions[idx].pg.clone();
        blocking(move || {
            let pg = pg.lock().unwrap_or_else(|p| p.into_inner());
            Ok(pg.is_running() && pg.is_in_recovery().unwrap_or(false))
        })
        .await
        .unwrap_or(false)
    }

    /// Re-creates region `idx`'s cluster as a standby of region `from` (pg_basebackup from it).
    pub(super) async fn rebuild_standby(
        &mut self,
        idx: usize,
        from: usize,
    ) -> Result<(), LabError> {
        if idx == from {
            return Err(LabError::Invalid(
                "a region cannot be rebuilt from itself".into(),
            ));
        }
        // A rebuild throws the region's data away: never that of a running primary clients are
        // sent to. Following a hint that named the regions the wrong way round wiped the serving
        // primary and left no database taking writes. (A dead region DNS still names may be
        // rebuilt: its data is what a failover left behind.)
        if let Some(pdns) = self.pdns.clone() {
            let target = self.regions[idx].pg.clone();
            let ip = self.regions[idx].ip.to_string();
            let answer = ip.clone();
            let serving_primary = blocking(move || {
                let serving = api_answer(&pdns).as_deref() == Some(answer.as_str());
                let pg = target.lock().unwrap_or_else(|p| p.into_inner());
                Ok(serving && pg.is_running() && pg.is_in_recovery().ok() == Some(false))
            })
            .await
            .unwrap_or(false);
            if serving_primary {
                let (name, other) = (&self.regions[idx].name, &self.regions[from].name);
                return Err(LabError::Invalid(format!(
                    "region {name} is a running primary, and the one clients are sent to ({API_RECORD} answers {ip}): rebuilding it would replace its data with {other}'s; rebuild the old primary instead (`meridian lab region {other} rebuild-standby --from {name}`), or fail over to {other} first"
                )));
            }
        }
        let source = self.regions[from].pg.clone();
        let source_port = self.regions[from].pg_port;
        let r = &mut self.regions[idx];
        let (pg, dir, log, port, slot) = (
            r.pg.clone(),
            r.pg_dir.clone(),
            r.pg_log.clone(),
            r.pg_port,
            slot_name(&r.name),
        );
        let from_name = self.regions[from].name.clone();
        blocking(move || {
            if !source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_running()
            {
                return Err(LabError::Invalid(format!(
                    "region {from_name}'s PostgreSQL is not running; start it first"
                )));
            }
            let mut guard = pg.lock().unwrap_or_else(|p| p.into_inner());
            guard.stop(StopMode::Fast);
            let fresh = PgCluster::standby_from_port(source_port, &dir, port, &slot, Some(&log))?;
            let _old = std::mem::replace(&mut *guard, fresh);
            Ok(())
        })
        .await?;
        let r = &mut self.regions[idx];
        r.last_role = "standby".into();
        // A fresh copy streams from its new primary: a cut of its old stream is gone with it
        // (the marker outlived the fault in lab.json).
        r.faults.retain(|f| *f != Fault::ReplicationCut);
        r.saved_conninfo = None;
        Ok(())
    }
}

/// Keeps the `api` record on `ip` for `stale_ms`: a GSLB whose answers lag behind the truth.
pub(super) async fn hold_dns(pdns: Arc<Pdns>, ip: String, stale_ms: u64) {
    let until = tokio::time::Instant::now() + Duration::from_millis(stale_ms);
    // What somebody else wrote during the window: published when it ends, as a slow GSLB
    // would propagate it.
    let mut wanted: Option<String> = None;
    while tokio::time::Instant::now() < until {
        let (p, held) = (pdns.clone(), ip.clone());
        let seen = blocking(move || {
            let now = api_answer(&p);
            if now.as_deref() != Some(held.as_str()) {
                p.replace_rrset(ZONE, API_RECORD, "A", 5, &[&held])?;
            }
            Ok(now)
        })
        .await;
        if let Ok(Some(now)) = seen
            && now != ip
        {
            wanted = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(w) = wanted {
        let _ = blocking(move || pdns.replace_rrset(ZONE, API_RECORD, "A", 5, &[&w])).await;
    }
    tracing::info!("dns-stale window over");
}

/// The `api` record's first address as PowerDNS stores it (its API, not a DNS query).
fn api_answer(pdns: &Pdns) -> Option<String> {
    let (status, body) = pdns
        .api(
            "GET",
            &format!("/api/v1/servers/localhost/zones/{ZONE}"),
            None,
        )
        .ok()?;
    if status != 200 {
        return None;
    }
    let zone: serde_json::Value = serde_json::from_str(&body).ok()?;
    zone["rrsets"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == API_RECORD && r["type"] == "A")?["records"][0]["content"]
        .as_str()
        .map(str::to_string)
}
