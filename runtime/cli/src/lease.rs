//! The lease `meridian resume` and `retry` hold on the run they drive.

use std::sync::Arc;

use crate::view;
use crate::{Exit, exit};

/// While this command drives a run, a lease in the journal says so: a server sharing the
/// journal neither takes the run over nor resumes it, and a run a server drives is refused
/// here (two coordinators on one run would both write its journal). Renewed every 5 s, given up
/// when dropped.
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

    pub(crate) fn take(
        journal: Arc<dyn meridian_store::Journal>,
        id: &str,
    ) -> anyhow::Result<RunLease> {
        let owner = format!("meridian-cli:{}", std::process::id());
        let held = journal.lease_run(id, &owner, Self::TTL).map_err(|e| Exit {
            code: exit::INTERNAL,
            message: format!("error: {e}"),
        })?;
        if !held {
            return Err(Exit {
                code: exit::INVALID,
                message: format!(
                    "error: run {id} is being driven by a server sharing this journal (it holds the run's lease); approve, cancel or watch it through that server (`--server URL`), or wait until it stops"
                ),
            }
            .into());
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
