//! Making leg commits durable in the background: the committer writes a round of finished legs
//! to the WAL without an fsync (`synchronous=NORMAL`) and returns, and this store's syncer
//! thread fsyncs the WAL behind it, so the run's next legs start while the disk flushes.
//!
//! # Why this keeps every guarantee a durable commit gave
//!
//! - **A killed process loses nothing.** The round is in the WAL (the kernel's page cache) when
//!   the engine hears back; only a power cut or an OS crash can lose what is not fsynced yet.
//! - **A power cut loses a suffix, never a hole.** SQLite's WAL frames carry cumulative
//!   checksums and recovery stops at the first frame that does not check, so what survives is
//!   every commit up to some point. A leg whose round was lost is an interrupted leg: it runs
//!   again under its idempotency key, derived from (run, step, leg), and so does every later leg
//!   whose round went with it.
//! - **No step acts on a result a power cut could take back.** [`Syncer::wait`] resolves once
//!   every round written before the call is fsynced, and the engine awaits it before a leg whose
//!   grants can change something starts (HTTP, SQL, a writable directory) and before a
//!   compensation (see `EventSink::durable`). What runs ahead is only what computes: it reruns,
//!   with the same inputs, if the machine goes down first.
//! - **Everything else is fsynced before the commit returns, as before**: a run's record,
//!   approvals, compensations, kv writes; a run's end waits for the rounds before it
//!   ([`Syncer::wait_blocking`]), so a run is never reported finished while its legs are not
//!   durable. A fully synced commit covers every round written before it ([`Syncer::covered`]).
//! - **Checkpoints stay safe**: under `synchronous=NORMAL` SQLite still fsyncs the WAL before
//!   copying it into the database and the database after, so a checkpoint never moves a page
//!   that is not durable.
//!
//! An fsync that fails ends the store's use for writes: every later commit and wait returns the
//! error (after a failed fsync Linux may have dropped the dirty pages, so nothing since the last
//! good one can be trusted to reach the disk).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use meridian_protocol::SinkError;
use meridian_protocol::event::Durable;
use tokio::sync::watch;

/// Rounds written and rounds durable, counted from the store's opening.
#[derive(Debug)]
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    wal: PathBuf,
    state: Mutex<State>,
    /// Wakes the syncer (work, stop) and blocking waiters (progress).
    turn: Condvar,
    /// What async waiters watch: the last durable round, or why none will be.
    mark: watch::Sender<Mark>,
    /// Tests hold this to stall the syncer before its next fsync, or make that fsync fail.
    #[cfg(test)]
    pub(super) stall: Mutex<Option<std::io::ErrorKind>>,
}

#[derive(Debug, Default)]
struct State {
    written: u64,
    durable: u64,
    failed: Option<Arc<str>>,
    stop: bool,
}

#[derive(Clone, Debug, Default)]
struct Mark {
    durable: u64,
    failed: Option<Arc<str>>,
}

impl Syncer {
    pub(super) fn new(wal: PathBuf) -> Syncer {
        Syncer {
            shared: Arc::new(Shared {
                wal,
                state: Mutex::default(),
                turn: Condvar::new(),
                mark: watch::Sender::new(Mark::default()),
                #[cfg(test)]
                stall: Mutex::default(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Why nothing more may be written: an earlier fsync failed.
    pub(super) fn failed(&self) -> Option<Arc<str>> {
        self.shared.lock().failed.clone()
    }

    /// A round was written without an fsync: the syncer flushes it.
    pub(super) fn written(&self) {
        let mut st = self.shared.lock();
        st.written += 1;
        drop(st);
        self.start();
        self.shared.turn.notify_all();
    }

    /// A fully synced commit just returned: every round written before it is durable.
    pub(super) fn covered(&self) {
        let mut st = self.shared.lock();
        if st.durable < st.written {
            st.durable = st.written;
            self.shared.publish(&st);
            drop(st);
            self.shared.turn.notify_all();
        }
    }

    /// Resolves once every round written so far is durable.
    pub(super) fn wait(&self) -> Durable {
        let need = self.shared.lock().written;
        let mut rx = self.shared.mark.subscribe();
        Box::pin(async move {
            let mark = rx
                .wait_for(|m| m.durable >= need || m.failed.is_some())
                .await
                .map_err(|_| {
                    SinkError("the journal was closed before its writes were durable".into())
                })?
                .clone();
            match mark.failed {
                Some(why) if mark.durable < need => Err(SinkError(why.to_string())),
                _ => Ok(()),
            }
        })
    }

    /// Blocks until every round written so far is durable.
    pub(super) fn wait_blocking(&self) -> Result<(), String> {
        let mut st = self.shared.lock();
        let need = st.written;
        while st.durable < need && st.failed.is_none() {
            st = self.shared.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match &st.failed {
            Some(why) if st.durable < need => Err(why.to_string()),
            _ => Ok(()),
        }
    }

    /// Rounds written and rounds durable (for tests).
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        let st = self.shared.lock();
        (st.written, st.durable)
    }

    /// Holding it stalls the syncer before its next fsync; an error kind set in it makes that
    /// fsync fail (for tests).
    #[cfg(test)]
    pub(super) fn stall(&self) -> std::sync::MutexGuard<'_, Option<std::io::ErrorKind>> {
        self.shared.stall.lock().unwrap()
    }

    fn start(&self) {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = std::thread::Builder::new()
                .name("journal-fsync".into())
                .spawn(move || shared.run())
                .ok();
            if thread.is_none() {
                // No thread (the process is out of them): fsync in line, as a full commit would.
                let target = self.shared.lock().written;
                let r = File::open(&self.shared.wal).and_then(|f| f.sync_data());
                self.shared.synced(target, r);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        self.mark.send_replace(Mark {
            durable: st.durable,
            failed: st.failed.clone(),
        });
    }

    fn synced(&self, target: u64, result: std::io::Result<()>) {
        let mut st = self.lock();
        match result {
            Ok(()) => st.durable = st.durable.max(target),
            Err(e) => {
                st.failed.get_or_insert_with(|| {
                    format!("fsync of {} failed: {e}", self.wal.display()).into()
                });
            }
        }
        self.publish(&st);
        drop(st);
        self.turn.notify_all();
    }

    /// The syncer: fsyncs the WAL whenever rounds wait for it, each fsync covering every round
    /// written before it began (rounds written meanwhile share the next one).
    fn run(&self) {
        // The WAL is not replaced while the store's connection is open (SQLite deletes it only
        // when the last connection closes; checkpoints restart it in place).
        let mut wal: Option<File> = None;
        loop {
            let target = {
                let mut st = self.lock();
                while st.durable >= st.written && !st.stop {
                    st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.durable >= st.written || st.failed.is_some() {
                    return;
                }
                st.written
            };
            #[cfg(test)]
            if let Some(kind) = *self.stall.lock().unwrap_or_else(|p| p.into_inner()) {
                self.synced(target, Err(kind.into()));
                continue;
            }
            let result = match &wal {
                Some(f) => f.sync_data(),
                None => File::open(&self.wal).and_then(|f| {
                    f.sync_data()?;
                    wal = Some(f);
                    Ok(())
                }),
            };
            self.synced(target, result);
        }
    }
}

impl Drop for Syncer {
    /// Flushes what is still waiting, then ends the thread.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.turn.notify_all();
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use meridian_protocol::{Event, EventSink, RunStatus};

    use crate::Journal;
    use crate::conformance::{ok_leg as leg, record};
    use crate::sqlite::SqliteStore;

    fn end() -> Event {
        crate::conformance::finish(RunStatus::Succeeded)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store.create_run(&record("r")).unwrap();
        (dir, store)
    }

    /// A leg's round returns once written (another connection reads it), before its fsync;
    /// `durable()` resolves once the syncer flushed it.
    #[test]
    fn a_legs_round_is_written_at_once_and_durable_behind() {
        let (_dir, store) = open();
        let syncer = &store.committer.syncer;
        let sink = store.sink("r").unwrap();
        let stall = syncer.stall();
        sink.emit(&leg("a")).unwrap();
        let other = SqliteStore::open(store.path()).unwrap();
        assert_eq!(
            other.legs("r").unwrap().len(),
            1,
            "written when emit returns"
        );
        assert_eq!(
            syncer.counts(),
            (1, 0),
            "not durable while the syncer is held"
        );
        let wait = sink.durable();
        drop(stall);
        block_on(wait).unwrap();
        assert_eq!(syncer.counts(), (1, 1));
    }

    /// A run's end waits for the legs before it to be durable: a run is never reported finished
    /// while its legs could still be lost.
    #[test]
    fn a_runs_end_waits_for_the_legs_before_it() {
        let (_dir, store) = open();
        let sink = store.sink("r").unwrap();
        let stall = store.committer.syncer.stall();
        sink.emit(&leg("a")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ender = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                sink.emit(&end()).unwrap();
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "the end was written before the leg was durable"
        );
        drop(stall);
        ender.join().unwrap();
        assert_eq!(store.committer.syncer.counts(), (1, 1));
    }

    /// A fully synced commit (an approval) covers the rounds written before it.
    #[test]
    fn a_full_commit_covers_the_rounds_before_it() {
        let (_dir, store) = open();
        let sink = store.sink("r").unwrap();
        let _stall = store.committer.syncer.stall();
        sink.emit(&leg("a")).unwrap();
        sink.emit(&Event::ApprovalGranted {
            step: "b".into(),
            by: "olga".into(),
        })
        .unwrap();
        assert_eq!(store.committer.syncer.counts(), (1, 1));
        block_on(sink.durable()).unwrap();
    }

    /// A failed fsync fails every wait for what it should have flushed, and every later write:
    /// nothing is reported durable that may not be.
    #[test]
    fn a_failed_fsync_refuses_what_follows() {
        let (_dir, store) = open();
        let sink: Arc<dyn EventSink> = store.sink("r").unwrap();
        let mut stall = store.committer.syncer.stall();
        *stall = Some(std::io::ErrorKind::StorageFull);
        sink.emit(&leg("a")).unwrap();
        let wait = sink.durable();
        drop(stall);
        let err = block_on(wait).unwrap_err().to_string();
        assert!(err.contains("fsync") && err.contains("m.db-wal"), "{err}");
        let err = sink.emit(&leg("b")).unwrap_err().to_string();
        assert!(
            err.contains("fsync") && err.contains("check the disk"),
            "{err}"
        );
        let err = sink.emit(&end()).unwrap_err().to_string();
        assert!(err.contains("fsync"), "{err}");
    }
}
