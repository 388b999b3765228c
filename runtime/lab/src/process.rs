//! Process plumbing shared by every lab component: finding binaries, running helper commands as a
//! service user, and supervising long-running children in their own process group.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, User};

use crate::error::LabError;

/// The account a service runs as. When the harness runs as root, PostgreSQL (whose initdb refuses
/// root) and PowerDNS run as their Debian system users; otherwise everything runs as the caller.
#[derive(Debug, Clone)]
pub(crate) struct ServiceUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl ServiceUser {
    /// Returns the account `name` when we are root (we must drop to it), `None` when we are not
    /// (the service then runs as the calling user, which initdb accepts).
    pub(crate) fn for_service(name: &str, install: &str) -> Result<Option<ServiceUser>, LabError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match User::from_name(name) {
            Ok(Some(u)) => Ok(Some(ServiceUser {
                name: name.to_string(),
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            })),
            Ok(None) => Err(LabError::MissingBinary {
                name: format!("system user {name}"),
                install: install.to_string(),
            }),
            Err(e) => Err(LabError::io(
                format!("looking up user {name}"),
                std::io::Error::from(e),
            )),
        }
    }

    /// Makes `cmd` run as this user (supplementary groups are dropped by std when root sets a uid).
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
        cmd.env("USER", &self.name).env("LOGNAME", &self.name);
    }

    /// Hands `path` (not recursively) to this user.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), LabError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| LabError::io(format!("chown {} to {}", path.display(), self.name), e))
    }

    /// Hands `path` and everything below it to this user.
    pub(crate) fn chown_recursive(&self, path: &Path) -> Result<(), LabError> {
        self.chown(path)?;
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| LabError::io(format!("listing {}", path.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| LabError::io(format!("listing {}", path.display()), e))?;
                self.chown_recursive(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Checks that this user can traverse every ancestor of `dir`.
    ///
    /// Ancestors inside the system temp directory (where test scratch dirs live, created 0700 by
    /// `tempfile`) get the others-search bit added, which lets the service reach its own directory
    /// without making anything listable. Elsewhere we never change permissions of the caller's
    /// directories; we fail with the `chmod` to run instead.
    pub(crate) fn ensure_traversable(&self, dir: &Path) -> Result<(), LabError> {
        let temp = std::env::temp_dir();
        let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
        ancestors.reverse();
        for a in ancestors {
            if a.as_os_str().is_empty() {
                continue;
            }
            let meta = std::fs::metadata(a)
                .map_err(|e| LabError::io(format!("stat {}", a.display()), e))?;
            if self.can_search(&meta) {
                continue;
            }
            if a.starts_with(&temp) && a != temp {
                let mut perms = meta.permissions();
                perms.set_mode(perms.mode() | 0o001);
                std::fs::set_permissions(a, perms)
                    .map_err(|e| LabError::io(format!("chmod o+x {}", a.display()), e))?;
                continue;
            }
            return Err(LabError::Permission {
                user: self.name.clone(),
                path: a.to_path_buf(),
                hint: format!(
                    "run `chmod o+x {}` or choose a directory the {} user can reach (e.g. under /var/tmp)",
                    a.display(),
                    self.name
                ),
            });
        }
        Ok(())
    }

    fn can_search(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if meta.gid() == self.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

/// Finds `name` in `extra_dirs` first, then on `PATH`; otherwise fails naming `install`.
pub(crate) fn find_binary(
    name: &str,
    extra_dirs: &[PathBuf],
    install: &str,
) -> Result<PathBuf, LabError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    extra_dirs
        .iter()
        .chain(path_dirs.iter())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| LabError::MissingBinary {
            name: name.to_string(),
            install: install.to_string(),
        })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command for error messages: program and arguments, nothing else.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a short-lived helper command to completion and returns its stdout; a non-zero exit becomes
/// [`LabError::Command`] with the command's stderr. `stdin` is written to the command if given.
pub(crate) fn run_checked(mut cmd: Command, stdin: Option<&str>) -> Result<String, LabError> {
    use std::io::Write;
    let command = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("spawning `{command}`"), e))?;
    if let Some(input) = stdin {
        // Written from a thread so a command that fills its stdout pipe before reading all of its
        // stdin cannot deadlock against us.
        let mut pipe = child.stdin.take().expect("stdin was piped");
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("waiting for `{command}`"), e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `lines` lines of a log file (at most the last 8 KiB are read), for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(8192);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Opens (creating, appending) a log file as the current user. Children get it as stdout/stderr, so
/// a service user never needs write access to the log directory.
pub(crate) fn open_log(path: &Path) -> Result<File, LabError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabError::io(format!("creating {}", parent.display()), e))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LabError::io(format!("opening log {}", path.display()), e))
}

/// A long-running child process in its own process group, killed (group-wide) when dropped.
///
/// The group matters: moto_server is a shell shim around Python, and PostgreSQL forks a backend per
/// connection; signalling only the direct child could leave those behind.
#[derive(Debug)]
pub(crate) struct Supervised {
    what: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    pid: u32,
}

impl Supervised {
    /// Spawns `cmd` with stdin from /dev/null and stdout+stderr appended to `log`, as the leader of
    /// a new process group. `what` names it in errors ("postgres on 127.0.0.1:5432").
    pub(crate) fn spawn(
        what: impl Into<String>,
        mut cmd: Command,
        log: &Path,
    ) -> Result<Supervised, LabError> {
        let what = what.into();
        let out = open_log(log)?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io(format!("duplicating log handle {}", log.display()), e))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("spawning {what} (`{}`)", describe(&cmd)), e))?;
        Ok(Supervised {
            pid: child.id(),
            what,
            log: log.to_path_buf(),
            child: Mutex::new(Some(child)),
        })
    }

    /// The OS pid of the child (also its process-group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            None => None,
            Some(c) => c.try_wait().ok().flatten(),
        }
    }

    /// Whether the child is still running (false once it exited or was stopped).
    pub(crate) fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Stops the child: `sig` to the leader, up to `grace` to exit, then SIGKILL to the whole group.
    /// A final group SIGKILL also catches grandchildren the leader did not wait for. Idempotent.
    pub(crate) fn stop(&self, sig: Signal, grace: Duration) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = guard.take()?;
        drop(guard);
        let pgid = Pid::from_raw(self.pid as i32);
        let deadline = Instant::now() + grace;
        let _ = kill(pgid, sig);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The group id stays reserved while the leader is an unreaped zombie or alive, so this
        // kill cannot hit an unrelated group when the leader has not been reaped yet; after a
        // reap it only hits processes that stayed in our group (ESRCH otherwise).
        let _ = killpg(pgid, Signal::SIGKILL);
        if status.is_none() {
            status = child.wait().ok();
        }
        // Wait (bounded) until no process of the group is left: a PostgreSQL backend orphaned by a
        // killed postmaster keeps the shared memory attached for a moment, and a restart in that
        // window fails with "pre-existing shared memory block is still in use".
        let gone_by = Instant::now() + Duration::from_secs(5);
        while killpg(pgid, None).is_ok() && Instant::now() < gone_by {
            std::thread::sleep(Duration::from_millis(10));
        }
        status
    }

    /// Builds the "exited during start-up" error for this child.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> LabError {
        LabError::Exited {
            what: self.what.clone(),
            status,
            log: self.log.clone(),
            tail: log_tail(&self.log, 20),
        }
    }

    /// Polls `probe` every `every` until it returns true, the child exits (error with log tail) or
    /// `timeout` passes (error with log tail).
    pub(crate) fn wait_ready(
        &self,
        timeout: Duration,
        every: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), LabError> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.exit_status() {
                return Err(self.exited_error(st));
            }
            if probe() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(LabError::NotReady {
                    what: self.what.clone(),
                    waited: start.elapsed(),
                    log: self.log.clone(),
                    tail: log_tail(&self.log, 20),
                });
            }
            std::thread::sleep(every);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM, Duration::from_secs(5));
    }
}

/// Creates `dir` (and parents) if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

/// Makes `path` absolute against the current directory without touching the file system, so that
/// paths handed to services (which run with another cwd) stay valid.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(path).map_err(|e| LabError::io(format!("resolving {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_install_command() {
        let e =
            find_binary("meridian-no-such-tool", &[], "apt-get install -y nothing").unwrap_err();
        assert_eq!(
            e.to_string(),
            "meridian-no-such-tool not found: run `apt-get install -y nothing`"
        );
    }

    #[test]
    fn extra_dirs_are_searched_before_path() {
        let tmp = std::env::temp_dir().join(format!("meridian-lab-bin-{}", std::process::id()));
        create_dir(&tmp).unwrap();
        let tool = tmp.join("sh");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_binary("sh", std::slice::from_ref(&tmp), "x").unwrap(),
            tool
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn failing_command_reports_stderr_and_stdin_reaches_it() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "cat"]);
        assert_eq!(run_checked(ok, Some("hello")).unwrap(), "hello");
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo boom >&2; exit 3"]);
        match run_checked(bad, None) {
            Err(LabError::Command {
                stderr,
                status,
                command,
            }) => {
                assert_eq!(stderr, "boom");
                assert_eq!(status.code(), Some(3));
                assert!(command.starts_with("sh -c"), "{command}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn supervised_child_is_killed_with_its_group_on_drop() {
        let log = std::env::temp_dir().join(format!("meridian-lab-sup-{}.log", std::process::id()));
        let mut cmd = Command::new("sh");
        // A grandchild that ignores SIGTERM: only the group SIGKILL gets rid of it.
        cmd.args(["-c", "trap '' TERM; sleep 300 & echo started; wait"]);
        let sup = Supervised::spawn("sleeper", cmd, &log).unwrap();
        let pid = sup.pid();
        sup.wait_ready(Duration::from_secs(10), Duration::from_millis(20), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains("started"))
        })
        .unwrap();
        assert!(sup.is_running());
        let t = Instant::now();
        drop(sup);
        assert!(t.elapsed() < Duration::from_secs(30));
        // SIGKILL is asynchronous and the orphaned grandchild is reaped by init, so poll (bounded)
        // for live members of the group; zombies awaiting init's reaping do not count.
        let live_members = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    // "pid (comm) state ppid pgrp ..." — comm may contain spaces, so split after ')'.
                    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    f.first() != Some(&"Z") && f.get(2) == Some(&pid.to_string().as_str())
                })
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while live_members() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(live_members(), 0);
        assert!(log_tail(&log, 5).contains("started"));
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn early_exit_is_reported_with_the_log_tail() {
        let log =
            std::env::temp_dir().join(format!("meridian-lab-exit-{}.log", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'fatal: cannot bind'; exit 1"]);
        let sup = Supervised::spawn("failing", cmd, &log).unwrap();
        let e = sup
            .wait_ready(Duration::from_secs(10), Duration::from_millis(20), || false)
            .unwrap_err();
        assert!(
            matches!(&e, LabError::Exited { tail, .. } if tail.contains("fatal: cannot bind")),
            "{e}"
        );
        let _ = std::fs::remove_file(&log);
    }
}
