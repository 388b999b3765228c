//! Progress: events held for the next commit point (an attempt's start, a retry's failure) are
//! written once they have waited [`PROGRESS_AFTER`], without an fsync, so `runs show` in another
//! process sees a long step running instead of nothing until its leg ends.
//!
//! Steps that finish sooner never pay for it: their events go out with the leg's commit, as
//! before. The write is history only, like the held events themselves (see the crate docs): a kill
//! loses nothing that reached the WAL, a power cut can lose it, and resume reads neither.
//!
//! One thread per store does it, started with the first run's journal. It holds the store and
//! the runs weakly, so it keeps no file open: it sleeps until the oldest held event is due (at
//! most [`PROGRESS_AFTER`] while a run is live, a second while none is) and ends once the store
//! is dropped.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::SqliteStore;
use super::commit::Committer;
use crate::pending::PendingEvents;

/// How long an event waits for its commit point before it is written as progress.
pub(super) const PROGRESS_AFTER: Duration = Duration::from_millis(100);

/// The runs whose held events the progress thread watches.
#[derive(Debug, Default)]
pub(super) struct Progress {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    runs: Vec<(String, Weak<PendingEvents>)>,
    thread: bool,
    /// Tests that count what waits for a commit point turn progress off.
    off: bool,
}

/// The store as the progress thread holds it: weakly.
struct WeakStore {
    conn: Weak<Mutex<Connection>>,
    committer: Weak<Committer>,
    progress: Weak<Progress>,
    path: PathBuf,
}

impl WeakStore {
    fn upgrade(&self) -> Option<SqliteStore> {
        Some(SqliteStore {
            conn: self.conn.upgrade()?,
            committer: self.committer.upgrade()?,
            progress: self.progress.upgrade()?,
            path: self.path.clone(),
        })
    }
}

impl SqliteStore {
    /// Writes `pending`'s events of `run_id` as progress once they have waited long enough.
    pub(super) fn watch_progress(&self, run_id: &str, pending: &Arc<PendingEvents>) {
        let mut st = self
            .progress
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.runs.push((run_id.to_string(), Arc::downgrade(pending)));
        if !st.thread {
            let weak = WeakStore {
                conn: Arc::downgrade(&self.conn),
                committer: Arc::downgrade(&self.committer),
                progress: Arc::downgrade(&self.progress),
                path: self.path.clone(),
            };
            // Without the thread, held events simply wait for their commit point.
            st.thread = std::thread::Builder::new()
                .name("meridian-journal-progress".into())
                .spawn(move || watch(&weak))
                .is_ok();
        }
        self.progress.wake.notify_one();
    }

    /// Held events wait for their commit point however long it takes (for tests of holding).
    #[cfg(test)]
    pub(super) fn no_progress(&self) {
        self.progress.state.lock().unwrap().off = true;
    }
}

fn watch(store: &WeakStore) {
    loop {
        let Some(progress) = store.progress.upgrade() else {
            return;
        };
        let runs: Vec<(String, Arc<PendingEvents>)> = {
            let mut st = progress.state.lock().unwrap_or_else(|p| p.into_inner());
            st.runs.retain(|(_, w)| w.strong_count() > 0);
            if st.runs.is_empty() || st.off {
                // Bounded, to notice the store going away.
                drop(progress.wake.wait_timeout(st, Duration::from_secs(1)));
                continue;
            }
            st.runs
                .iter()
                .filter_map(|(id, w)| Some((id.clone(), w.upgrade()?)))
                .collect()
        };
        drop(progress);
        let mut next = Instant::now() + PROGRESS_AFTER;
        for (id, pending) in runs {
            let Some(s) = store.upgrade() else {
                return;
            };
            if let Some(due) = pending.flush_held(PROGRESS_AFTER, |rows| s.commit_rows(&id, rows)) {
                next = next.min(due);
            }
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use meridian_protocol::{Event, EventSink, Outcome};

    use super::*;
    use crate::Journal;
    use crate::conformance::record;

    /// A step still running after [`PROGRESS_AFTER`] shows in the file another process reads,
    /// and its leg's commit continues the numbering after the rows written early.
    #[test]
    fn a_long_running_attempt_is_visible_to_another_reader_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store.create_run(&record("r")).unwrap();
        let sink = store.journal("r").unwrap();
        sink.emit(&Event::AttemptStarted {
            step: "long".into(),
            leg: String::new(),
            attempt: 1,
            idempotency_key: "r/long".into(),
            input: serde_json::json!({}),
        })
        .unwrap();
        let reader = SqliteStore::open(store.path()).unwrap();
        let kinds = |s: &SqliteStore| -> Vec<(i64, &'static str)> {
            let events = s.events("r").unwrap();
            events.iter().map(|e| (e.seq, e.event.kind())).collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while kinds(&reader).is_empty() {
            assert!(Instant::now() < deadline, "the attempt never showed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(kinds(&reader), [(1, "attempt-started")]);
        assert_eq!(sink.held(), 0);
        sink.emit(&Event::LegFinished {
            step: "long".into(),
            leg: String::new(),
            outcome: Outcome::Success,
            attempts: 1,
            duration: Duration::from_millis(150),
            output: serde_json::json!({}),
            plan: vec![],
            error: None,
        })
        .unwrap();
        assert_eq!(
            kinds(&reader),
            [(1, "attempt-started"), (2, "leg-finished")]
        );
        assert_eq!(reader.legs("r").unwrap().len(), 1);
    }
}
