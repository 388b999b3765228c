//! The synchronous side of the lab used by the CLI and tests: `up`, `status`, `down` and region
//! actions, talking to the daemon over its control API and reading `lab.json`.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::error::LabError;
use crate::net::http_request;
use crate::process::{log_tail, open_log};
use crate::state::{LabConfig, LabState, LabStatus, Launcher, STATE_FILE};

/// How long `up` waits for the daemon to report `ready` (initdb, base backups and moto's Python
/// start-up on a shared 2-core machine).
const UP_TIMEOUT: Duration = Duration::from_secs(240);
/// How long `down` waits for the daemon to stop everything before killing what is left.
const DOWN_TIMEOUT: Duration = Duration::from_secs(90);

/// An action on one region through the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionAction {
    /// Bring the gateway and PostgreSQL back (a killed former primary comes back as it was);
    /// answers once PostgreSQL accepts connections and the data planes passed their start-up.
    Start,
    /// Graceful: the gateway reports not-ready and drains, PostgreSQL stops with `-m fast`.
    Stop,
    /// Crash: the gateway stops answering at once, PostgreSQL stops with `-m immediate`.
    Kill,
    /// Re-create the region's PostgreSQL as a standby of region `from` (pg_basebackup; its data is
    /// replaced).
    RebuildStandby {
        /// The region to copy from (normally the new primary).
        from: String,
    },
    /// Run `instances` data-plane instances behind the region's address: new ones take the
    /// lab's start-up time, removed ones drain (the answer comes at once; poll `status` for
    /// readiness).
    Scale {
        /// How many (0 to [`crate::MAX_DATA_PLANES`]).
        instances: u32,
    },
    /// Inject a named fault (see [`crate::Fault`]); `start` undoes it.
    Fault {
        fault: crate::Fault,
        /// `dns-stale`: how long the GSLB keeps answering the dead region (default 5 s).
        stale_ms: Option<u64>,
    },
}

impl RegionAction {
    fn path(&self, region: &str) -> String {
        match self {
            RegionAction::Start => format!("/regions/{region}/start"),
            RegionAction::Stop => format!("/regions/{region}/stop"),
            RegionAction::Kill => format!("/regions/{region}/kill"),
            RegionAction::RebuildStandby { from } => {
                format!("/regions/{region}/rebuild-standby?from={from}")
            }
            RegionAction::Scale { instances } => {
                format!("/regions/{region}/scale?instances={instances}")
            }
            RegionAction::Fault { fault, stale_ms } => match stale_ms {
                Some(ms) => format!("/regions/{region}/faults/{}?stale_ms={ms}", fault.as_str()),
                None => format!("/regions/{region}/faults/{}", fault.as_str()),
            },
        }
    }
}

/// Starts the lab in `cfg.dir` by spawning the daemon (`launcher`) detached in its own process
/// group, and waits (up to 4 minutes) until `lab.json` says `ready`. If a live daemon already
/// serves the directory, returns its state without starting anything. Leftovers of a lab that
/// died without `down` are killed first.
pub fn up(cfg: &LabConfig, launcher: &Launcher) -> Result<LabState, LabError> {
    let cfg = cfg.clone().validate()?;
    crate::process::create_dir(&cfg.dir)?;
    if let Ok(old) = LabState::read(&cfg.dir) {
        if let Ok(live) = control_get_status(&old) {
            return Ok(live);
        }
        kill_leftovers(&old)?;
    }
    remove_previous_lab(&cfg.dir)?;
    cfg.save()?;
    let state_file = cfg.dir.join(STATE_FILE);
    match std::fs::remove_file(&state_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LabError::io(
                format!("removing {}", state_file.display()),
                e,
            ));
        }
    }
    let log = cfg.dir.join("logs").join("daemon.log");
    let out = open_log(&log)?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("duplicating the daemon log handle", e))?;
    let mut cmd = Command::new(&launcher.exe);
    cmd.args(&launcher.args)
        .arg("--dir")
        .arg(&cfg.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own group: a Ctrl-C in the terminal of `lab up` does not reach the daemon.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        LabError::io(
            format!("spawning the lab daemon {}", launcher.exe.display()),
            e,
        )
    })?;
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Exited {
                what: "lab daemon".into(),
                status,
                log: log.clone(),
                tail: log_tail(&log, 30),
            });
        }
        if let Ok(state) = LabState::read(&cfg.dir) {
            match state.status {
                // `child` is dropped without waiting: the daemon lives on after `up` returns.
                LabStatus::Ready => return control_get_status(&state).or(Ok(state)),
                LabStatus::Failed | LabStatus::Stopped => {
                    // The daemon cleans up after a failed start and exits; reap it.
                    let marker = crate::daemon::daemon_marker(&cfg.dir);
                    let _ = wait_gone(state.daemon_pid, &marker, Duration::from_secs(60));
                    let _ = child.try_wait();
                    return Err(LabError::State(format!(
                        "lab start-up failed: {}\n(daemon log {}):\n{}",
                        state.error.as_deref().unwrap_or("unknown error"),
                        log.display(),
                        log_tail(&log, 30)
                    )));
                }
                _ => {}
            }
        }
        if start.elapsed() > UP_TIMEOUT {
            let _ = down(&cfg.dir);
            let _ = child.try_wait();
            return Err(LabError::NotReady {
                what: "lab daemon".into(),
                waited: start.elapsed(),
                log: log.clone(),
                tail: log_tail(&log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What an earlier lab in `dir` left once nothing of it runs: its PostgreSQL clusters and
/// PowerDNS database. A lab is built fresh on every `up` (new ports, new keys), and the daemon
/// refuses to initialize a cluster over an old one, so `up` after `down` (or after a crash) needs
/// them gone. Only the lab's own subdirectories go, and only in a directory that held a lab
/// (`config.json` or `lab.json`); `logs/` is kept.
fn remove_previous_lab(dir: &Path) -> Result<(), LabError> {
    if !dir.join(STATE_FILE).exists() && !dir.join(crate::state::CONFIG_FILE).exists() {
        return Ok(());
    }
    for sub in ["pg", "pdns"] {
        let path = dir.join(sub);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed the previous lab's data"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LabError::io(
                    format!(
                        "removing the previous lab's {} (remove it by hand, or use another --dir)",
                        path.display()
                    ),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// The lab's current state: live from the daemon when it answers, else what `lab.json` last said
/// with `status` set to `failed` and `error` explaining that the daemon does not answer (unless it
/// had stopped cleanly). Fails only when there is no `lab.json`.
pub fn status(dir: &Path) -> Result<LabState, LabError> {
    let dir = crate::process::absolute(dir)?;
    let mut state = LabState::read(&dir)?;
    match control_get_status(&state) {
        Ok(live) => Ok(live),
        Err(e) => {
            if state.status != LabStatus::Stopped {
                state.status = LabStatus::Failed;
                state.error = Some(format!(
                    "the lab daemon (pid {}) does not answer at {}: {e}; run `meridian lab down` to clean up",
                    state.daemon_pid, state.control_url
                ));
            }
            Ok(state)
        }
    }
}

/// Stops the lab: `POST /shutdown`, waits for the daemon to exit, then kills whatever process
/// recorded in `lab.json` is still alive (process-group SIGKILL), so nothing is left behind even
/// when the daemon had died. No lab in `dir` is not an error.
pub fn down(dir: &Path) -> Result<(), LabError> {
    let dir = crate::process::absolute(dir)?;
    let state = match LabState::read(&dir) {
        Ok(s) => s,
        Err(LabError::State(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Ok(addr) = control_addr(&state) {
        let _ = http_request(addr, "POST", "/shutdown", &[], None, Duration::from_secs(5));
    }
    let marker = crate::daemon::daemon_marker(&dir);
    let stopped = wait_gone(state.daemon_pid, &marker, DOWN_TIMEOUT);
    // Whatever the daemon wrote last plus what it knew before: either may list a process.
    let mut leftovers = state.clone();
    if let Ok(last) = LabState::read(&dir) {
        leftovers.processes.extend(last.processes);
    }
    kill_leftovers(&leftovers)?;
    if !stopped || LabState::read(&dir).is_ok_and(|s| s.status != LabStatus::Stopped) {
        let mut last = LabState::read(&dir).unwrap_or(state);
        last.status = LabStatus::Stopped;
        last.processes.clear();
        for r in &mut last.regions {
            if r.status == crate::state::RegionStatus::Up {
                r.status = crate::state::RegionStatus::Stopped;
            }
            r.postgres.running = false;
            r.gateway.ready = false;
        }
        last.write()?;
    }
    Ok(())
}

/// Performs `action` on region `region` and returns the lab's state afterwards.
pub fn region(dir: &Path, region: &str, action: &RegionAction) -> Result<LabState, LabError> {
    let dir = crate::process::absolute(dir)?;
    let state = LabState::read(&dir)?;
    let addr = control_addr(&state)?;
    // A stopped lab is said as such (its control API only answered "connection refused").
    if !process_alive(state.daemon_pid) {
        return Err(LabError::State(format!(
            "the lab in {} is not running (its daemon, pid {}, is gone): start it with `meridian lab up --dir {}`",
            dir.display(),
            state.daemon_pid,
            dir.display()
        )));
    }
    // Bounded by PostgreSQL's own limits: a 30 s stop grace plus a 90 s start.
    let r = http_request(
        addr,
        "POST",
        &action.path(region),
        &[],
        None,
        Duration::from_secs(180),
    )?;
    parse_state(&state.control_url, r.status, &r.body)
}

/// `GET /status` on the daemon that `state` names.
pub(crate) fn control_get_status(state: &LabState) -> Result<LabState, LabError> {
    let addr = control_addr(state)?;
    let r = http_request(addr, "GET", "/status", &[], None, Duration::from_secs(30))?;
    parse_state(&state.control_url, r.status, &r.body)
}

fn parse_state(url: &str, status: u16, body: &str) -> Result<LabState, LabError> {
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.to_string());
        return Err(if status == 400 || status == 404 {
            // The daemon's message is a `LabError::Invalid`'s already: said once.
            let msg = msg
                .strip_prefix("invalid lab request: ")
                .map_or(msg.clone(), str::to_string);
            LabError::Invalid(msg)
        } else {
            LabError::Http {
                url: url.to_string(),
                message: format!("{status}: {msg}"),
            }
        });
    }
    serde_json::from_str(body).map_err(|e| LabError::Http {
        url: url.to_string(),
        message: format!("malformed lab state: {e}"),
    })
}

fn control_addr(state: &LabState) -> Result<SocketAddr, LabError> {
    state
        .control_url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| LabError::State(format!("bad control_url {:?}", state.control_url)))
}

/// Whether `pid` is a live process (a zombie is not). Reaps it first when it is our own child
/// (tests that ran `up` in-process are the daemon's parent).
pub(crate) fn process_alive(pid: u32) -> bool {
    let p = Pid::from_raw(pid as i32);
    let _ = waitpid(p, Some(WaitPidFlag::WNOHANG));
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

fn cmdline_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
        })
        .unwrap_or(false)
}

/// Polls (20 ms) until `pid` is gone — or no longer has `marker` in its command line, i.e. the
/// pid was recycled — or `timeout` passes; returns whether it is gone.
fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) && cmdline_contains(pid, marker) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// SIGKILLs every recorded process that is still alive and still looks like itself (its command
/// line contains the recorded marker, so a recycled pid is left alone), group-wide for the
/// services, which lead their own process groups. Fails if one survives 10 s.
fn kill_leftovers(state: &LabState) -> Result<(), LabError> {
    let mut survivors = Vec::new();
    for p in &state.processes {
        if p.pid == std::process::id()
            || !process_alive(p.pid)
            || !cmdline_contains(p.pid, &p.cmdline_contains)
        {
            continue;
        }
        tracing::warn!(name = %p.name, pid = p.pid, "killing a leftover lab process");
        let pid = Pid::from_raw(p.pid as i32);
        if p.name == "daemon" {
            let _ = kill(pid, Signal::SIGKILL);
        } else {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
        if !wait_gone(p.pid, &p.cmdline_contains, Duration::from_secs(10)) {
            survivors.push(format!("{} (pid {})", p.name, p.pid));
        }
    }
    if survivors.is_empty() {
        Ok(())
    } else {
        Err(LabError::State(format!(
            "could not kill lab processes: {}",
            survivors.join(", ")
        )))
    }
}
