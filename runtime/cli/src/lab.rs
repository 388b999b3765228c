//! `meridian lab …`: the local multi-region lab (see the `meridian-lab` crate).

use std::fmt::Write as _;
use std::path::Path;

use meridian_lab::{LabConfig, LabState, Launcher, RegionAction};
use serde_json::{Value as Json, json};

use crate::cli::LabCmd;
use crate::out::outln;
use crate::{Exit, exit};

pub fn run(cmd: LabCmd, json_out: bool) -> anyhow::Result<u8> {
    let fail = |e: meridian_lab::LabError| {
        anyhow::Error::new(Exit {
            // A request the lab cannot take (an unknown region, a bad count) is a usage error.
            code: match e {
                meridian_lab::LabError::Invalid(_) => exit::INVALID,
                _ => exit::FAILED,
            },
            message: format!("error: {e}"),
        })
    };
    match cmd {
        LabCmd::Daemon { dir } => {
            meridian_lab::daemon_main(&dir).map_err(fail)?;
            Ok(exit::OK)
        }
        LabCmd::Up {
            regions,
            dir,
            with_moto,
            capacity,
        } => {
            let mut cfg = LabConfig::new(&dir);
            cfg.regions = regions;
            cfg.with_moto = with_moto;
            capacity.apply(&mut cfg);
            let exe = std::env::current_exe()?;
            let state =
                meridian_lab::up(&cfg, &Launcher::new(exe, ["lab", "daemon"])).map_err(fail)?;
            // `up` on a lab that runs answers with that lab: flags asking for another one are
            // not applied, and said so.
            let running: Vec<&str> = state.regions.iter().map(|r| r.name.as_str()).collect();
            if running != cfg.regions {
                crate::out::err(&format!(
                    "warning: the lab in {} already runs with regions {}; --regions {} and the other flags apply to a new lab only (`meridian lab down --dir {}` first)\n",
                    dir.display(),
                    running.join(","),
                    cfg.regions.join(","),
                    dir.display()
                ));
            }
            write_workflow_files(&state)?;
            print_state(&state, json_out)?;
            Ok(exit::OK)
        }
        LabCmd::Status { dir } => {
            let state = meridian_lab::status(&dir).map_err(fail)?;
            print_state(&state, json_out)?;
            // Scripts and health checks read the exit code: anything down is a failure.
            let problems = state.problems();
            if problems.is_empty() {
                return Ok(exit::OK);
            }
            let mut message = format!("error: the lab in {} is not healthy:", dir.display());
            for p in &problems {
                message.push_str("\n  ");
                message.push_str(p);
            }
            let only_two_primaries = problems.iter().all(|p| p.contains("regions are primary"));
            message.push_str(match state.status {
                meridian_lab::LabStatus::Stopped | meridian_lab::LabStatus::Failed => {
                    "\n  = help: `meridian lab up` starts it again"
                }
                // Every region runs: starting one changes nothing (the command is above).
                _ if only_two_primaries => "",
                _ => {
                    "\n  = help: `meridian lab region NAME start` brings a region back; \
                     `meridian lab down` then `meridian lab up` starts a fresh lab"
                }
            });
            Err(Exit {
                code: exit::FAILED,
                message,
            }
            .into())
        }
        LabCmd::Down { dir } => {
            meridian_lab::down(&dir).map_err(fail)?;
            if !json_out {
                outln!("lab in {} stopped; nothing left running", dir.display())?;
            }
            Ok(exit::OK)
        }
        LabCmd::Region {
            name,
            action,
            from,
            instances,
            stale_ms,
            dir,
        } => {
            let action = match (action.as_str(), from) {
                ("scale", _) => match instances {
                    Some(instances) => RegionAction::Scale { instances },
                    None => return Err(Exit::invalid("error: scale needs --instances N")),
                },
                (fault, _) if meridian_lab::Fault::NAMES.contains(&fault) => RegionAction::Fault {
                    fault: fault.parse().map_err(fail)?,
                    stale_ms,
                },
                ("kill", _) => RegionAction::Kill,
                ("stop", _) => RegionAction::Stop,
                ("start", _) => RegionAction::Start,
                ("rebuild-standby", Some(from)) => RegionAction::RebuildStandby { from },
                ("rebuild-standby", None) => {
                    return Err(Exit::invalid("error: rebuild-standby needs --from REGION"));
                }
                (other, _) => {
                    return Err(Exit::invalid(format!(
                        "error: unknown region action `{other}` (kill, stop, start, rebuild-standby, scale, or a fault: {})",
                        meridian_lab::Fault::NAMES.join(", ")
                    )));
                }
            };
            let state = meridian_lab::region(&dir, &name, &action).map_err(fail)?;
            print_state(&state, json_out)?;
            Ok(exit::OK)
        }
    }
}

/// Writes `<dir>/inputs.json` (workflow inputs describing this lab, for `--inputs-file`) and
/// `<dir>/secrets.env` (its keys, for `--secrets-file`), so the packaged workflows run against the
/// lab without copying ports by hand.
fn write_workflow_files(state: &LabState) -> anyhow::Result<()> {
    let first = state.regions.first();
    let second = state.regions.get(1);
    let dns = state.dns.as_ref();
    let region = |r: Option<&meridian_lab::RegionState>| -> Json {
        match r {
            Some(r) => json!({
                "name": r.name,
                "ip": r.ip.to_string(),
                "dsn": r.postgres.dsn,
                "admin_url": r.gateway.admin_url,
                "data_plane_url": r.gateway.data_plane_url,
                "ready_url": r.gateway.ready_url,
            }),
            None => Json::Null,
        }
    };
    let mut inputs = serde_json::Map::new();
    inputs.insert("lab_control_url".into(), json!(state.control_url));
    if let (Some(p), Some(s)) = (first, second) {
        inputs.insert("primary_region".into(), json!(p.name));
        inputs.insert("standby_region".into(), json!(s.name));
        inputs.insert("primary_dsn".into(), json!(p.postgres.dsn));
        inputs.insert("standby_dsn".into(), json!(s.postgres.dsn));
        inputs.insert("primary_ip".into(), json!(p.ip.to_string()));
        inputs.insert("standby_ip".into(), json!(s.ip.to_string()));
        inputs.insert("primary_admin_url".into(), json!(p.gateway.admin_url));
        inputs.insert("standby_admin_url".into(), json!(s.gateway.admin_url));
        inputs.insert(
            "primary_data_plane_url".into(),
            json!(p.gateway.data_plane_url),
        );
        inputs.insert(
            "standby_data_plane_url".into(),
            json!(s.gateway.data_plane_url),
        );
        // What the standby runs while it waits (`--standby-capacity`): a failback scales the
        // region that served meanwhile back down to it.
        inputs.insert(
            "standby_idle_capacity".into(),
            json!(s.gateway.capacity.max(1)),
        );
    }
    // Every region serves its data plane, and its upstream, on the same port of its own IP.
    if let Some(p) = first {
        if let Some(port) = port_of(&p.gateway.data_plane_url) {
            inputs.insert("data_plane_port".into(), json!(port));
        }
        if let Some(port) = port_of(&p.upstream_url) {
            inputs.insert("upstream_port".into(), json!(port));
        }
    }
    inputs.insert(
        "admin_urls".into(),
        state
            .regions
            .iter()
            .map(|r| (r.name.clone(), json!(r.gateway.admin_url)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    inputs.insert(
        "region_ips".into(),
        state
            .regions
            .iter()
            .map(|r| (r.name.clone(), json!(r.ip.to_string())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    inputs.insert(
        "region_names".into(),
        json!(
            state
                .regions
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        ),
    );
    inputs.insert(
        "regions".into(),
        Json::Array(state.regions.iter().map(|r| region(Some(r))).collect()),
    );
    // The GSLB's view of the regions, for steps that take the whole list (`regions:`).
    inputs.insert(
        "gslb_regions".into(),
        Json::Array(
            state
                .regions
                .iter()
                .map(|r| json!({"name": r.name, "endpoint": r.ip.to_string()}))
                .collect(),
        ),
    );
    inputs.insert(
        "admin_key_secrets".into(),
        state
            .regions
            .iter()
            .map(|r| (r.name.clone(), json!(admin_key_secret(&r.name))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    // Every region serves at weight 1 under active-active.
    inputs.insert(
        "weights".into(),
        state
            .regions
            .iter()
            .map(|r| (r.name.clone(), json!(1)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    // Full capacity: what the primary runs; a failover scales the standby up to it.
    if let Some(p) = first {
        inputs.insert("standby_capacity".into(), json!(p.gateway.capacity.max(1)));
    }
    if let Some(d) = dns {
        inputs.insert("dns_server".into(), json!(d.server));
        inputs.insert("dns_zone".into(), json!(d.zone));
        inputs.insert("dns_record".into(), json!(d.api_record));
        inputs.insert("api_host".into(), json!(d.api_record.trim_end_matches('.')));
        inputs.insert("pdns_api_url".into(), json!(d.api_url));
    }
    if let Some(m) = &state.moto {
        inputs.insert("route53_endpoint".into(), json!(m.url));
    }
    let path = state.dir.join("inputs.json");
    std::fs::write(&path, serde_json::to_string_pretty(&Json::Object(inputs))?)?;
    let mut secrets =
        String::from("# Secrets of the local lab, for `meridian run --secrets-file`.\n");
    if let Some(d) = dns {
        writeln!(secrets, "PDNS_API_KEY={}", d.api_key)?;
    }
    for r in &state.regions {
        writeln!(
            secrets,
            "{}={}",
            admin_key_secret(&r.name),
            r.gateway.admin_key
        )?;
    }
    // The packaged multi-region workflows declare the keys of three regions (eu, us, ap) and a
    // declared secret must have a value: a region this lab does not run gets a key that no
    // gateway of the lab accepts.
    for name in PACKAGED_REGIONS {
        if state.region(name).is_none() {
            writeln!(
                secrets,
                "# no region {name} in this lab: a key nothing accepts, for the workflows that declare it\n{}={}",
                admin_key_secret(name),
                unused_key()
            )?;
        }
    }
    if let (Some(p), Some(s)) = (first, second) {
        writeln!(secrets, "PRIMARY_ADMIN_KEY={}", p.gateway.admin_key)?;
        writeln!(secrets, "STANDBY_ADMIN_KEY={}", s.gateway.admin_key)?;
    }
    // Keys: readable by the owner only.
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(state.dir.join("secrets.env"))?;
    f.write_all(secrets.as_bytes())?;
    Ok(())
}

/// The regions whose admin-key secrets the packaged multi-region workflows declare.
const PACKAGED_REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// The secret holding region `name`'s Admin API key: `ADMIN_KEY_<NAME>`.
fn admin_key_secret(name: &str) -> String {
    format!("ADMIN_KEY_{}", name.to_uppercase().replace('-', "_"))
}

/// 32 hex digits from the process's randomly keyed hasher: a key no lab gateway was given.
fn unused_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        write!(out, "{:016x}", h.finish()).unwrap_or_default();
    }
    out
}

/// The port of `http://host:port[/…]`.
fn port_of(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let authority = rest.split('/').next()?;
    authority.rsplit(':').next()?.parse().ok()
}

fn print_state(state: &LabState, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        outln!("{}", serde_json::to_string_pretty(state)?)?;
        return Ok(());
    }
    // The lab's own state (it started), and what is down in it now.
    let problems = state.problems();
    let health = match problems.len() {
        0 => String::new(),
        n => format!(
            " — {n} problem{}: {}",
            if n == 1 { "" } else { "s" },
            problems.join("; ")
        ),
    };
    // "Ready" is the lab's own start-up state: with something down it reads as a contradiction.
    let status = match (state.status, problems.is_empty()) {
        (meridian_lab::LabStatus::Ready, false) => "Degraded".to_string(),
        (s, _) => format!("{s:?}"),
    };
    outln!("lab {status} in {}{health}", state.dir.display())?;
    outln!("  control API  {}", state.control_url)?;
    for r in &state.regions {
        outln!(
            "  region {:<6} {:<8} {:?}  ip {}  postgres :{} ({})  admin {}  data plane {} ({}/{} instances ready){}",
            r.name,
            r.role,
            r.status,
            r.ip,
            r.postgres.port,
            if r.postgres.running { "up" } else { "down" },
            r.gateway.admin_url,
            r.gateway.data_plane_url,
            r.gateway.instances_ready,
            r.gateway.capacity,
            if r.gateway.ready { "" } else { " (not ready)" }
        )?;
        // Faults injected and not undone (`lab region NAME start` clears them).
        if !r.faults.is_empty() {
            let faults: Vec<&str> = r.faults.iter().map(|f| f.as_str()).collect();
            outln!("                faults: {}", faults.join(", "))?;
        }
    }
    if let Some(d) = &state.dns {
        outln!(
            "  dns          {} zone {}  {} → {:?}  {} → {:?}",
            d.server,
            d.zone,
            d.api_record,
            d.api_answer,
            d.failover_record,
            d.failover_answer
        )?;
    }
    if let Some(m) = &state.moto {
        outln!("  route53      {}", m.url)?;
    }
    outln!("  logs         {}", state.logs_dir.display())?;
    let inputs = Path::new(&state.dir).join("inputs.json");
    if inputs.exists() {
        outln!(
            "  workflows    --inputs-file {} --secrets-file {}",
            inputs.display(),
            state.dir.join("secrets.env").display()
        )?;
    }
    Ok(())
}
