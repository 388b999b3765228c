//! The lease `meridian run`, `plan`, `resume` and `retry` hold on the run they drive.

use std::sync::Arc;

use crate::view;
use crate::{Exit, exit};

/// While this command drives a run, a lease in the journal says so: a server sharing the
/// journal neither takes the run over nor resumes it, another `meridian resume` of it is
/// refused, and a run a server or another process drives is refused here (two coordinators on
/// one run would both write its journal, and run its steps twice). Renewed every 5 s, given up
/// when dropped. A killed process cannot give it up: a lease held by a `meridian` process of
/// this machine that no longer runs is freed at once (its pid and start time are in the
/// lease's owner), so `resume` right after a kill works; a dead holder elsewhere is waited out
/// (15 s).
pub(crate) struct RunLease {
    journal: Arc<dyn meridian_store::Journal>,
    id: String,
    owner: String,
    renew: tokio::task::JoinHandle<()>,
}

impl RunLease {
    const TTL: std::time::Duration = std::time::Duration::from_secs(15);

    /// Who holds the lease: the run's journal writes are fenced with it.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// A new run's id and its lease, set in `launch`: held from before the run is recorded, so
    /// the run never looks interrupted (running, nobody's lease) while this process drives it.
    pub(crate) fn for_new_run(
        journal: Arc<dyn meridian_store::Journal>,
        launch: &mut meridian_runner::Launch,
    ) -> anyhow::Result<RunLease> {
        let id = meridian_runner::new_run_id();
        let lease = RunLease::take(journal, &id)?;
        launch.run_id = Some(id);
        launch.lease_owner = Some(lease.owner().to_string());
        Ok(lease)
    }

    /// The run this lease is on.
    pub(crate) fn run_id(&self) -> &str {
        &self.id
    }

    pub(crate) fn take(
        journal: Arc<dyn meridian_store::Journal>,
        id: &str,
    ) -> anyhow::Result<RunLease> {
        let owner = Owner::me().to_string();
        let store = |e: meridian_store::StoreError| Exit {
            code: exit::INTERNAL,
            message: format!("error: {e}"),
        };
        let mut held = journal.lease_run(id, &owner, Self::TTL).map_err(store)?;
        if !held {
            let holder = journal.lease_holder(id).map_err(store)?;
            if let Some(h) = holder.as_deref().filter(|h| holder_is_dead(h)) {
                // A killed `meridian` of this machine: its lease would hold the run for 15 s.
                journal.release_run(id, h).map_err(store)?;
            }
            held = journal.lease_run(id, &owner, Self::TTL).map_err(store)?;
            if !held {
                let who = match holder.as_deref().and_then(Owner::parse) {
                    Some(o) => format!(
                        "`meridian` process {} on {} (it holds the run's lease); wait until it ends, or stop it and resume the run",
                        o.pid, o.host
                    ),
                    None => "a server sharing this journal (it holds the run's lease); approve, cancel or watch it through that server (`--server URL`), or wait until it stops".to_string(),
                };
                return Err(Exit {
                    code: exit::INVALID,
                    message: format!("error: run {id} is being driven by {who}"),
                }
                .into());
            }
        }
        let renew = {
            let (journal, id, owner) = (journal.clone(), id.to_owned(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Self::TTL / 3).await;
                    // Off the runtime's thread: a journal commit waits for the disk.
                    let (j, i, o) = (journal.clone(), id.clone(), owner.clone());
                    let held =
                        tokio::task::spawn_blocking(move || j.lease_run(&i, &o, Self::TTL)).await;
                    if let Ok(Ok(false)) = held {
                        // This process stalled longer than a lease and a server took the run
                        // over: two drivers must never write one run, so this one stops as if
                        // killed (the journal is consistent at every commit point).
                        view::write_stderr(&format!(
                            "error: run {id} was taken over by a server sharing this journal (this process stalled longer than its {}s lease); stopping here\n",
                            Self::TTL.as_secs()
                        ));
                        std::process::exit(i32::from(exit::INTERNAL));
                    }
                }
            })
        };
        Ok(RunLease {
            journal,
            id: id.to_owned(),
            owner,
            renew,
        })
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.renew.abort();
        let _ = self.journal.release_run(&self.id, &self.owner);
    }
}

/// Whether a lease's holder is a `meridian` process of this machine that no longer runs (its
/// lease lasts until it expires, but nobody drives the run).
pub(crate) fn holder_is_dead(owner: &str) -> bool {
    Owner::parse(owner).is_some_and(|o| o.is_dead())
}

/// The owner a `meridian` process writes in the leases it takes:
/// `meridian-cli:HOST:PID:START`, START being the process's start time (clock ticks since boot,
/// Linux's `/proc/PID/stat`), so a pid reused by another process is not mistaken for the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    host: String,
    pid: u32,
    start: u64,
}

impl Owner {
    fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    fn parse(s: &str) -> Option<Owner> {
        let rest = s.strip_prefix("meridian-cli:")?;
        let mut it = rest.rsplitn(3, ':');
        let start = it.next()?.parse().ok()?;
        let pid = it.next()?.parse().ok()?;
        let host = it.next()?.to_string();
        Some(Owner { host, pid, start })
    }

    /// Known not to run any more: of this machine, and its pid gone, a zombie (killed, not yet
    /// reaped by its parent), or now another process's. Where that cannot be told (no
    /// `/proc`), never.
    fn is_dead(&self) -> bool {
        if self.host != hostname() || start_time(std::process::id()).is_none() {
            return false;
        }
        match stat(self.pid) {
            Some((state, start)) => start != self.start || matches!(state, 'Z' | 'X'),
            None => true,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "meridian-cli:{}:{}:{}", self.host, self.pid, self.start)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(':', "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Field 22 of `/proc/PID/stat`: the process's start time.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Fields 3 (state) and 22 (start time) of `/proc/PID/stat`, read after the command name
/// (which may hold spaces and parentheses).
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::Owner;

    #[test]
    fn an_owner_reads_back_and_only_a_gone_process_is_dead() {
        let me = Owner::me();
        assert_eq!(Owner::parse(&me.to_string()), Some(me.clone()));
        assert!(me.start > 0, "this test runs on Linux");
        assert!(!me.is_dead());
        // The same pid started at another time: the pid was reused.
        assert!(
            Owner {
                start: me.start + 1,
                ..me.clone()
            }
            .is_dead()
        );
        // A pid above Linux's maximum (2^22) never runs.
        assert!(
            Owner {
                pid: 5_000_000,
                ..me.clone()
            }
            .is_dead()
        );
        // Another machine's process cannot be judged from here.
        assert!(
            !Owner {
                host: "elsewhere".into(),
                pid: 5_000_000,
                ..me.clone()
            }
            .is_dead()
        );
        // Killed and not reaped yet (a zombie): dead, though its /proc entry is still there.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let it = Owner {
            pid,
            start: super::start_time(pid).unwrap(),
            ..me.clone()
        };
        assert!(!it.is_dead(), "it runs");
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while super::stat(pid).is_some_and(|(state, _)| state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(it.is_dead(), "a zombie is dead");
        child.wait().unwrap();
        assert!(it.is_dead(), "reaped");
        assert_eq!(Owner::parse("server-eu-1"), None);
        assert_eq!(
            Owner::parse("meridian-cli:1234"),
            None,
            "the format before hosts and start times"
        );
    }
}
