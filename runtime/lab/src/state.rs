//! The lab's configuration (`config.json`) and its published state (`lab.json`).

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Name of the state file the daemon keeps current in the lab directory.
pub const STATE_FILE: &str = "lab.json";
/// Name of the configuration file `up` writes for the daemon.
pub const CONFIG_FILE: &str = "config.json";
/// The DNS zone the lab serves.
pub const ZONE: &str = "lab.meridian.test.";
/// The record answering the active region's data-plane IP (switched by GSLB workflows).
pub const API_RECORD: &str = "api.lab.meridian.test.";
/// The LUA `ifurlup` record that fails over by itself over the regions' `/status/ready`.
pub const FAILOVER_RECORD: &str = "failover.lab.meridian.test.";
/// Path of the lab route seeded on every gateway; it proxies to the region's upstream service.
pub const REGION_ROUTE: &str = "/lab/region";

/// The data-plane flags of `lab up`, shared by `meridian lab up` and `meridian-lab up`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CapacityArgs {
    /// Data-plane instances of the primary region (its full capacity), 1-16.
    #[arg(long, default_value_t = 1)]
    pub capacity: u32,
    /// Data-plane instances of each standby region (its minimum capacity); default: --capacity.
    #[arg(long)]
    pub standby_capacity: Option<u32>,
    /// How long a data-plane instance started later (scale-up, region start) takes to become
    /// ready, in ms.
    #[arg(long, default_value_t = DEFAULT_INSTANCE_START_MS)]
    pub instance_start_ms: u64,
}

impl CapacityArgs {
    /// Writes the flags into `cfg`.
    pub fn apply(&self, cfg: &mut LabConfig) {
        cfg.capacity = self.capacity;
        cfg.standby_capacity = self.standby_capacity;
        cfg.instance_start_ms = self.instance_start_ms;
    }
}

/// What `meridian lab up` asks for. Written to `<dir>/config.json` for the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabConfig {
    /// The lab directory (absolute once loaded): state file, data and `logs/`.
    pub dir: PathBuf,
    /// Region names in order; the first is the primary. Lower-case letters, digits and `-`.
    pub regions: Vec<String>,
    /// Whether to start moto (the Route 53 API).
    #[serde(default)]
    pub with_moto: bool,
    /// Port of the control API on 127.0.0.1; `None` picks a free one.
    #[serde(default)]
    pub control_port: Option<u16>,
    /// Data-plane instances of the first region (the primary) at start: its full capacity.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Data-plane instances of every other region (the standbys) at start: their minimum
    /// capacity; `None` is `capacity`.
    #[serde(default)]
    pub standby_capacity: Option<u32>,
    /// How long a data-plane instance started after `up` (scale-up, a region's restart) takes
    /// to become ready, in ms.
    #[serde(default = "default_instance_start_ms")]
    pub instance_start_ms: u64,
}

fn default_capacity() -> u32 {
    1
}

/// The default start-up time of a data-plane instance: an APISIX process starting its workers
/// and receiving its configuration.
pub const DEFAULT_INSTANCE_START_MS: u64 = 1_000;

/// The longest start-up time the lab accepts (a drill measures, it does not wait for hours).
pub const MAX_INSTANCE_START_MS: u64 = 120_000;

fn default_instance_start_ms() -> u64 {
    DEFAULT_INSTANCE_START_MS
}

impl LabConfig {
    /// A configuration for `dir` with regions `eu, us` and no moto.
    pub fn new(dir: impl Into<PathBuf>) -> LabConfig {
        LabConfig {
            dir: dir.into(),
            regions: vec!["eu".into(), "us".into()],
            with_moto: false,
            control_port: None,
            capacity: 1,
            standby_capacity: None,
            instance_start_ms: DEFAULT_INSTANCE_START_MS,
        }
    }

    /// The data-plane instances region `index` starts with.
    pub fn capacity_of(&self, index: usize) -> u32 {
        if index == 0 {
            self.capacity
        } else {
            self.standby_capacity.unwrap_or(self.capacity)
        }
    }

    /// Checks the region list (1–8 unique names of `[a-z0-9-]`, starting with a letter) and makes
    /// `dir` absolute.
    pub fn validate(mut self) -> Result<LabConfig, LabError> {
        if self.regions.is_empty() || self.regions.len() > 8 {
            return Err(LabError::Invalid(format!(
                "the lab needs 1 to 8 regions, got {}",
                self.regions.len()
            )));
        }
        for (i, r) in self.regions.iter().enumerate() {
            let ok = r.len() <= 32
                && r.starts_with(|c: char| c.is_ascii_lowercase())
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(LabError::Invalid(format!(
                    "region name {r:?}: use 1-32 lower-case letters, digits and -, starting with a letter"
                )));
            }
            if self.regions[..i].contains(r) {
                return Err(LabError::Invalid(format!("region {r:?} listed twice")));
            }
        }
        let max = crate::dataplanes::MAX_DATA_PLANES;
        if self.capacity == 0 || self.capacity > max {
            return Err(LabError::Invalid(format!(
                "capacity: the primary runs 1 to {max} data planes, not {}",
                self.capacity
            )));
        }
        if let Some(s) = self.standby_capacity.filter(|s| *s > max) {
            return Err(LabError::Invalid(format!(
                "standby capacity: at most {max} data planes, not {s}"
            )));
        }
        if self.instance_start_ms > MAX_INSTANCE_START_MS {
            return Err(LabError::Invalid(format!(
                "instance start-up time: at most {MAX_INSTANCE_START_MS} ms, not {}",
                self.instance_start_ms
            )));
        }
        self.dir = crate::process::absolute(&self.dir)?;
        Ok(self)
    }

    /// Reads `<dir>/config.json` (what the daemon does first).
    pub fn load(dir: &Path) -> Result<LabConfig, LabError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
        let cfg: LabConfig = serde_json::from_str(&text)
            .map_err(|e| LabError::State(format!("{}: {e}", path.display())))?;
        cfg.validate()
    }

    /// Writes `<dir>/config.json`.
    pub(crate) fn save(&self) -> Result<(), LabError> {
        write_json_atomic(&self.dir.join(CONFIG_FILE), self)
    }
}

/// The loopback IP of the region at `index` (0 → 127.0.0.2, 1 → 127.0.0.3, …), so DNS answers
/// tell regions apart without any network configuration (all of 127/8 is local on Linux).
pub fn region_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + index as u8)
}

/// How to start the daemon process: `<exe> <args…> --dir <lab dir>`.
///
/// For the `meridian` binary that is `Launcher::new(current_exe, ["lab", "daemon"])`; the
/// subcommand then calls [`daemon_main`](crate::daemon_main).
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The executable.
    pub exe: PathBuf,
    /// Arguments before `--dir <dir>`.
    pub args: Vec<OsString>,
}

impl Launcher {
    /// A launcher running `exe args… --dir <dir>`.
    pub fn new<I, S>(exe: impl Into<PathBuf>, args: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Launcher {
            exe: exe.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// Overall state of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabStatus {
    /// The daemon is starting components.
    Starting,
    /// Everything started; the control API answers.
    Ready,
    /// Shutting down.
    Stopping,
    /// Shut down cleanly.
    Stopped,
    /// Start-up failed (see `error`), or the daemon died without shutting down.
    Failed,
}

/// What was last done to a region through the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionStatus {
    /// Gateway serving and PostgreSQL running.
    Up,
    /// Stopped gracefully (gateway drained, PostgreSQL `-m fast`).
    Stopped,
    /// Killed (gateway gone at once, PostgreSQL `-m immediate`).
    Killed,
}

/// PostgreSQL of one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgState {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// DSN of the `api7` database (trust auth, user postgres).
    pub dsn: String,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// The server log.
    pub log: PathBuf,
    /// The postmaster's pid while it runs.
    pub pid: Option<u32>,
    /// Whether the postmaster runs.
    pub running: bool,
    /// `pg_is_in_recovery()` (true on a standby); `None` when it could not be asked.
    pub in_recovery: Option<bool>,
}

/// The APISIX emulator of one region (served in the daemon process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayState {
    /// Admin API base URL (`…/apisix/admin/...`), on the region's IP.
    pub admin_url: String,
    /// The `X-API-KEY` of the Admin API.
    pub admin_key: String,
    /// Data-plane base URL on the region's IP (also serves `/status/ready`).
    pub data_plane_url: String,
    /// `<data_plane_url>/status/ready`.
    pub ready_url: String,
    /// Whether the admin and data-plane listeners are up.
    pub serving: bool,
    /// Whether `/status/ready` answers 200 (when serving): the gateway is ready and at least one
    /// data-plane instance is.
    pub ready: bool,
    /// Data-plane instances the region should run (what it was started or scaled to).
    #[serde(default)]
    pub capacity: u32,
    /// Data-plane instances ready now.
    #[serde(default)]
    pub instances_ready: u32,
    /// The data-plane instances behind `data_plane_url`.
    #[serde(default)]
    pub instances: Vec<crate::dataplanes::InstanceState>,
}

/// One region of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    /// Region name.
    pub name: String,
    /// The region's loopback IP (data plane, admin API and upstream bind to it).
    pub ip: Ipv4Addr,
    /// `primary` or `standby`, from `pg_is_in_recovery()` when PostgreSQL answers, else from
    /// the last known value.
    pub role: String,
    /// What was last done to the region.
    pub status: RegionStatus,
    /// Its PostgreSQL cluster.
    pub postgres: PgState,
    /// Its gateway emulator.
    pub gateway: GatewayState,
    /// The region's upstream service (answers `{"region": "<name>"}` on any path).
    pub upstream_url: String,
    /// Faults injected into the region and not yet undone by `start` (`region-down`, `db-down`,
    /// `data-plane-down`, `replication-cut`, `dns-stale`).
    #[serde(default)]
    pub faults: Vec<String>,
}

/// The PowerDNS GSLB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsState {
    /// `127.0.0.1:<port>` (UDP and TCP).
    pub server: String,
    /// `lab.meridian.test.`
    pub zone: String,
    /// `api.lab.meridian.test.` (an A record set to the first region's IP at start).
    pub api_record: String,
    /// `failover.lab.meridian.test.` (LUA ifurlup over the regions in order).
    pub failover_record: String,
    /// PowerDNS HTTP API base URL.
    pub api_url: String,
    /// Its `X-API-Key`.
    pub api_key: String,
    /// pdns_server's pid.
    pub pid: u32,
    /// Whether pdns_server is still running (the daemon does not restart it).
    pub running: bool,
    /// What the api record answered when the state was taken.
    pub api_answer: Vec<String>,
    /// What the failover record answered when the state was taken.
    pub failover_answer: Vec<String>,
}

/// moto (Route 53 API), when started with `--with-moto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotoState {
    /// Endpoint URL for an AWS client (any credentials).
    pub url: String,
    /// moto_server's pid.
    pub pid: u32,
    /// Whether moto_server is still running.
    pub running: bool,
}

/// A process the lab started, recorded so `down` can kill it even when the daemon died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// What it is (`daemon`, `postgres eu`, `pdns`, `moto`).
    pub name: String,
    /// Its pid, which is also its process-group id except for the daemon.
    pub pid: u32,
    /// A string its command line contains, checked before killing (guards against pid reuse).
    pub cmdline_contains: String,
}

/// Everything a workflow or operator needs to talk to the lab: `<dir>/lab.json` and the answer of
/// `GET /status` on the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// Overall status.
    pub status: LabStatus,
    /// Why start-up failed, when it did.
    pub error: Option<String>,
    /// The lab directory.
    pub dir: PathBuf,
    /// Where every log is.
    pub logs_dir: PathBuf,
    /// The daemon's pid.
    pub daemon_pid: u32,
    /// The control API (`GET /status`, `POST /regions/{name}/start|stop|kill`,
    /// `POST /regions/{name}/rebuild-standby?from=<region>`,
    /// `POST /regions/{name}/scale?instances=<n>`, `POST /shutdown`).
    pub control_url: String,
    /// Regions in configuration order.
    pub regions: Vec<RegionState>,
    /// The GSLB, once started.
    pub dns: Option<DnsState>,
    /// moto, when asked for.
    pub moto: Option<MotoState>,
    /// Every process the lab started (for `down`).
    pub processes: Vec<ProcessEntry>,
}

impl LabState {
    /// What is not up, one line each: the lab itself when not `ready` (with its error), then per
    /// region a region stopped or killed, PostgreSQL not running, the gateway not ready, then
    /// moto not running. Empty when everything runs.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.status != LabStatus::Ready {
            let status = format!("{:?}", self.status).to_lowercase();
            out.push(match &self.error {
                Some(e) => format!("the lab is {status}: {e}"),
                None => format!("the lab is {status}"),
            });
            // A lab that is not running has nothing else to report.
            if matches!(self.status, LabStatus::Stopped | LabStatus::Failed) {
                return out;
            }
        }
        for r in &self.regions {
            if r.status != RegionStatus::Up {
                let status = format!("{:?}", r.status).to_lowercase();
                out.push(format!("region {} is {status}", r.name));
            }
            if !r.postgres.running {
                out.push(format!("region {}: PostgreSQL is not running", r.name));
            }
            if !r.gateway.ready {
                out.push(format!("region {}: the gateway is not ready", r.name));
            }
        }
        if let Some(m) = &self.moto
            && !m.running
        {
            out.push("moto (Route 53) is not running".to_string());
        }
        // Two writable-looking primaries: after a failover the old one must be fenced or
        // rebuilt as a standby (`meridian lab region NAME rebuild-standby`).
        let primaries: Vec<&str> = self
            .regions
            .iter()
            .filter(|r| r.role == "primary" && r.postgres.running)
            .map(|r| r.name.as_str())
            .collect();
        // The region clients are sent to: the one whose IP the GSLB's api record answers.
        let serving = self.dns.as_ref().and_then(|d| {
            self.regions
                .iter()
                .find(|r| d.api_answer.iter().any(|a| *a == r.ip.to_string()))
        });
        if primaries.len() > 1 {
            // The example names the serving region as the one to copy from: the other is the
            // old primary (in region order it could name them the wrong way round, and a
            // rebuild throws the rebuilt region's data away).
            let example = serving
                .filter(|s| primaries.contains(&s.name.as_str()))
                .and_then(|s| {
                    let old = primaries.iter().find(|p| **p != s.name)?;
                    Some(format!(
                        " (here: `meridian lab region {old} rebuild-standby --from {}`, as clients are sent to {})",
                        s.name, s.name
                    ))
                })
                .unwrap_or_default();
            out.push(format!(
                "{} regions are primary ({}): no standby replicates, and a write to the wrong one is lost on failback; rebuild the old primary as a standby of the one that serves: `meridian lab region OLD rebuild-standby --from NEW`{example}",
                primaries.len(),
                primaries.join(", "),
            ));
        }
        // Clients sent to a region that cannot serve them: an outage, whatever else is up.
        if let Some(s) = serving {
            let ip = &s.ip;
            if s.status != RegionStatus::Up || !s.gateway.ready {
                out.push(format!(
                    "clients are sent to region {} (the GSLB answers {ip}), which does not serve: fail over (active-passive-failover.yaml) or `meridian lab region {} start`",
                    s.name, s.name
                ));
            } else if s.role == "standby" {
                out.push(format!(
                    "clients are sent to region {} (the GSLB answers {ip}), whose database is a standby: writes fail; fail over or fail back so that DNS names the primary",
                    s.name
                ));
            }
        }
        out
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&RegionState> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Reads `<dir>/lab.json`.
    pub fn read(dir: &Path) -> Result<LabState, LabError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::State(format!(
                    "no lab in {} (no {STATE_FILE}); start one with `meridian lab up`",
                    dir.display()
                ))
            } else {
                LabError::io(format!("reading {}", path.display()), e)
            }
        })?;
        serde_json::from_str(&text).map_err(|e| LabError::State(format!("{}: {e}", path.display())))
    }

    /// Writes `<dir>/lab.json` atomically (readers never see half a file).
    pub(crate) fn write(&self) -> Result<(), LabError> {
        write_json_atomic(&self.dir.join(STATE_FILE), self)
    }
}

/// Writes JSON to a temporary file beside `path` and renames it over `path`.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| LabError::State(format!("serializing {}: {e}", path.display())))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    std::fs::write(&tmp, text + "\n")
        .map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        LabError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_bad_region_lists() {
        let bad = |regions: &[&str]| {
            let mut c = LabConfig::new("/tmp/x");
            c.regions = regions.iter().map(|s| s.to_string()).collect();
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(&[]).contains("1 to 8"));
        assert!(bad(&["eu", "eu"]).contains("twice"));
        assert!(bad(&["EU"]).contains("lower-case"));
        assert!(bad(&["1eu"]).contains("starting with a letter"));
        assert!(bad(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]).contains("1 to 8"));
        let ok = LabConfig::new("rel/dir").validate().unwrap();
        assert!(ok.dir.is_absolute());
        assert_eq!(ok.regions, vec!["eu", "us"]);
    }

    #[test]
    fn region_ips_start_at_127_0_0_2() {
        assert_eq!(region_ip(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(region_ip(7), Ipv4Addr::new(127, 0, 0, 9));
    }

    #[test]
    fn config_round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("meridian-lab-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = LabConfig::new(&dir);
        cfg.regions = vec!["eu-west".into(), "us".into(), "ap".into()];
        cfg.with_moto = true;
        cfg.save().unwrap();
        assert_eq!(LabConfig::load(&dir).unwrap(), cfg);
        let missing = LabState::read(&dir).unwrap_err().to_string();
        assert!(missing.contains("meridian lab up"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn problems_name_what_is_down() {
        let pg = PgState {
            port: 1,
            dsn: String::new(),
            data_dir: PathBuf::new(),
            log: PathBuf::new(),
            pid: None,
            running: true,
            in_recovery: Some(false),
        };
        let gw = GatewayState {
            admin_url: String::new(),
            admin_key: String::new(),
            data_plane_url: String::new(),
            ready_url: String::new(),
            serving: true,
            ready: true,
            capacity: 1,
            instances_ready: 1,
            instances: Vec::new(),
        };
        let region = |name: &str| RegionState {
            name: name.into(),
            ip: region_ip(0),
            role: "primary".into(),
            status: RegionStatus::Up,
            postgres: pg.clone(),
            gateway: gw.clone(),
            upstream_url: String::new(),
            faults: Vec::new(),
        };
        let mut st = LabState {
            status: LabStatus::Ready,
            error: None,
            dir: PathBuf::from("/lab"),
            logs_dir: PathBuf::from("/lab/logs"),
            daemon_pid: 1,
            control_url: String::new(),
            regions: vec![region("eu"), region("us")],
            dns: None,
            moto: None,
            processes: vec![],
        };
        // Both primary: after a failover, the old primary not yet rebuilt as a standby.
        let two = st.problems();
        assert_eq!(two.len(), 1, "{two:?}");
        assert!(
            two[0].starts_with("2 regions are primary (eu, us)"),
            "{two:?}"
        );
        // With the GSLB on us, the example rebuilds eu from us, whatever the regions' order
        // (it named them in region order: following it wiped the serving primary).
        st.regions[1].ip = region_ip(1);
        let dns = |answer: Ipv4Addr| DnsState {
            server: String::new(),
            zone: String::new(),
            api_record: String::new(),
            failover_record: String::new(),
            api_url: String::new(),
            api_key: String::new(),
            pid: 1,
            running: true,
            api_answer: vec![answer.to_string()],
            failover_answer: vec![],
        };
        st.dns = Some(dns(region_ip(1)));
        let two = st.problems();
        assert!(
            two[0].ends_with("(here: `meridian lab region eu rebuild-standby --from us`, as clients are sent to us)"),
            "{two:?}"
        );
        st.dns = Some(dns(region_ip(0)));
        st.regions[1].role = "standby".into();
        assert!(st.problems().is_empty());
        // Clients sent to a standby's region: writes fail.
        st.dns = Some(dns(region_ip(1)));
        assert_eq!(st.problems().len(), 1);
        assert!(st.problems()[0].contains("whose database is a standby"));
        st.dns = Some(dns(region_ip(0)));
        st.regions[0].status = RegionStatus::Killed;
        st.regions[0].postgres.running = false;
        st.regions[0].gateway.ready = false;
        assert_eq!(
            st.problems(),
            [
                "region eu is killed",
                "region eu: PostgreSQL is not running",
                "region eu: the gateway is not ready",
                "clients are sent to region eu (the GSLB answers 127.0.0.2), which does not serve: fail over (active-passive-failover.yaml) or `meridian lab region eu start`"
            ]
        );
        st.status = LabStatus::Failed;
        st.error = Some("the lab daemon (pid 1) does not answer at /Lab".into());
        assert_eq!(
            st.problems(),
            ["the lab is failed: the lab daemon (pid 1) does not answer at /Lab"]
        );
        st.status = LabStatus::Stopped;
        st.error = None;
        assert_eq!(st.problems(), ["the lab is stopped"]);
    }
}
