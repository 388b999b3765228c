//! Progress: events held for the next commit point (an attempt's start, a retry's failure) are
//! written once they have waited [`PROGRESS_AFTER`], so `runs show` in another process sees a
//! long step running instead of nothing until its leg ends.
//!
//! Steps that finish sooner never pay for it: their events go out with the leg's commit. The
//! write is history only, like the held events themselves (see the crate docs): the SQLite
//! journal writes it without an fsync, and resume reads none of it.
//!
//! One thread per process does it for every run journal made with
//! [`RunSink::with_progress`](crate::pending::RunSink::with_progress), started with the first.
//! It holds the runs and their backends weakly (a finished run's journal, and the file or
//! connection behind it, go away when their owners drop them), sleeps until the oldest held
//! event is due (at most [`PROGRESS_AFTER`] while a run is watched, a second while none is),
//! and lives as long as the process.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::pending::{CommitRows, PendingEvents};

/// How long an event waits for its commit point before it is written as progress.
pub const PROGRESS_AFTER: Duration = Duration::from_millis(100);

type Watched = (Weak<PendingEvents>, Weak<dyn CommitRows>);

#[derive(Default)]
struct Watcher {
    runs: Mutex<Vec<Watched>>,
    wake: Condvar,
}

static WATCHER: OnceLock<Arc<Watcher>> = OnceLock::new();

/// Writes `pending`'s held events through `backend` once they have waited long enough, for as
/// long as both live. Without the thread (it could not be started), events simply wait for
/// their commit point.
pub(crate) fn watch(pending: &Arc<PendingEvents>, backend: &Arc<dyn CommitRows>) {
    let watcher = WATCHER.get_or_init(|| {
        let w = Arc::new(Watcher::default());
        let run = w.clone();
        let _ = std::thread::Builder::new()
            .name("meridian-journal-progress".into())
            .spawn(move || run.run());
        w
    });
    let mut runs = watcher.runs.lock().unwrap_or_else(|p| p.into_inner());
    runs.push((Arc::downgrade(pending), Arc::downgrade(backend)));
    watcher.wake.notify_one();
}

impl Watcher {
    fn run(&self) {
        loop {
            let live: Vec<(Arc<PendingEvents>, Arc<dyn CommitRows>)> = {
                let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
                runs.retain(|(p, b)| p.strong_count() > 0 && b.strong_count() > 0);
                if runs.is_empty() {
                    drop(self.wake.wait_timeout(runs, Duration::from_secs(1)));
                    continue;
                }
                runs.iter()
                    .filter_map(|(p, b)| Some((p.upgrade()?, b.upgrade()?)))
                    .collect()
            };
            let mut next = Instant::now() + PROGRESS_AFTER;
            for (pending, backend) in live {
                if let Some(due) =
                    pending.flush_held(PROGRESS_AFTER, |rows| backend.commit_rows(rows))
                {
                    next = next.min(due);
                }
            }
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
}
