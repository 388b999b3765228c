//! Claims that exactly one of many processes sharing a journal must win: schedule ticks and
//! `Idempotency-Key`s.

use std::sync::Arc;
use std::time::Duration;

use crate::{Journal, KeyClaim};

/// `f(i, journal)` on every journal at once (each its own thread, started together); the
/// results in the journals' order.
fn race<T: Send>(
    journals: &[Arc<dyn Journal>],
    f: impl Fn(usize, &dyn Journal) -> T + Sync,
) -> Vec<T> {
    let start = std::sync::Barrier::new(journals.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = journals
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let (start, f) = (&start, &f);
                scope.spawn(move || {
                    start.wait();
                    f(i, &**j)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Eight claimants (each its own connection, as separate servers would be) race for each of
/// five ticks: exactly one wins each.
pub(super) fn a_tick_is_claimed_once(schedule: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let journals: Vec<Arc<dyn Journal>> = (0..8).map(|_| open()).collect();
    for tick in 0..5i64 {
        let won = race(&journals, |i, j| {
            j.claim_tick(schedule, 1_000 * tick, &format!("server-{i}"))
                .unwrap()
        });
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "tick {tick} of {schedule}"
        );
    }
    // A batch: what was claimed loses, the rest wins, in order.
    let batch = [
        (schedule.to_string(), 4_000),
        (schedule.to_string(), 9_000),
        (format!("{schedule}-c"), 4_000),
    ];
    assert_eq!(
        journals[2].claim_ticks(&batch, "z").unwrap(),
        [false, true, true]
    );
    assert_eq!(journals[3].claim_ticks(&batch, "w").unwrap(), [false; 3]);
    // Another schedule's tick at the same time is its own.
    assert!(
        journals[0]
            .claim_tick(&format!("{schedule}-b"), 0, "x")
            .unwrap()
    );
    assert!(
        !journals[1]
            .claim_tick(&format!("{schedule}-b"), 0, "y")
            .unwrap()
    );
}

/// A key's claim for `run_id` asking `request`, as the tests make them.
pub fn claim(run_id: &str, request: &str) -> KeyClaim {
    KeyClaim {
        run_id: run_id.into(),
        request: request.into(),
        claimed_at_ms: 0,
    }
}

/// Eight claimants race for one new key (as servers given one retried request at once would):
/// one takes it and the seven others are answered that claim. A key is namespaced text that
/// may hold a NUL; a released key is free again; a claim whose run never appeared in the
/// journal holds for [`crate::ORPHAN_CLAIM`], a claim past its time to live is replaced.
pub(super) fn a_key_is_claimed_once(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let day = Duration::from_secs(24 * 3600);
    let journals: Vec<Arc<dyn Journal>> = (0..8).map(|_| open()).collect();
    let key = format!("alice\u{0}{id}");
    let answers = race(&journals, |i, j| {
        j.claim_key(
            &key,
            &claim(&format!("{id}-{i}"), &format!("request {i}")),
            day,
        )
        .unwrap()
    });
    let winner = answers.iter().position(Option::is_none);
    let Some(winner) = winner else {
        panic!("nobody took the key: {answers:?}")
    };
    for (i, a) in answers.iter().enumerate().filter(|(i, _)| *i != winner) {
        let held = a.as_ref().unwrap_or_else(|| panic!("{i} took the key too"));
        assert_eq!(held.run_id, format!("{id}-{winner}"));
        assert_eq!(held.request, format!("request {winner}"));
        assert!(held.claimed_at_ms > 0, "{held:?}");
    }
    // The same key under another caller's name is another key.
    assert_eq!(
        open()
            .claim_key(&format!("bob\u{0}{id}"), &claim("other", "r"), day)
            .unwrap(),
        None
    );
    // The run is recorded: its claim holds past ORPHAN_CLAIM too (asked with a ttl that
    // long, every claim is past it: only the time to live frees a recorded run's key).
    let won = format!("{id}-{winner}");
    journals[0].create_run(&super::record(&won)).unwrap();
    let again = open().claim_key(&key, &claim("late", "r"), day).unwrap();
    assert_eq!(again.map(|c| c.run_id), Some(won.clone()));
    assert_eq!(
        open()
            .claim_key(&key, &claim("after-a-day", "r"), Duration::ZERO)
            .unwrap(),
        None,
        "a claim past its time to live is replaced"
    );
    // Released by the run that claimed it (not by another): free for the next request.
    open().release_key(&key, "someone-else").unwrap();
    let held = open().claim_key(&key, &claim("x", "r"), day).unwrap();
    assert_eq!(held.map(|c| c.run_id).as_deref(), Some("after-a-day"));
    open().release_key(&key, "after-a-day").unwrap();
    assert_eq!(
        open().claim_key(&key, &claim("fresh", "r"), day).unwrap(),
        None
    );
    // "fresh" never became a run: within ORPHAN_CLAIM its claim holds (its record may be on
    // the way); each backend's own tests age a claim past it.
    let held = open().claim_key(&key, &claim("y", "r"), day).unwrap();
    assert_eq!(held.map(|c| c.run_id).as_deref(), Some("fresh"));
}

/// A cancellation asked of a run through any handle is found by the run's driver through its
/// own; the first request's reason stands; an unknown run is an error; a resumed cancelled run
/// forgets it; a request goes when its run is pruned (the suite's last check prunes this run).
pub(super) fn a_cancel_request_reaches_the_driver(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let driver = open();
    driver.create_run(&super::record(id)).unwrap();
    let mine = [id.to_string(), format!("{id}-other")];
    assert_eq!(driver.cancel_requests(&mine).unwrap(), []);
    open().request_cancel(id, "alice asked").unwrap();
    open().request_cancel(id, "bob asked").unwrap();
    assert_eq!(
        driver.cancel_requests(&mine).unwrap(),
        [(id.to_string(), "alice asked".to_string())]
    );
    assert_eq!(driver.cancel_requests(&[]).unwrap(), []);
    let e = open()
        .request_cancel(&format!("{id}-none"), "x")
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // Reopened while running (a takeover): the request stands.
    open().reopen_run(id).unwrap();
    assert_eq!(driver.cancel_requests(&mine).unwrap().len(), 1);
    // Cancelled, then resumed: the request asked of the earlier invocation goes.
    let cancelled = super::finish(meridian_protocol::RunStatus::Cancelled);
    driver.sink(id).unwrap().emit(&cancelled).unwrap();
    open().reopen_run(id).unwrap();
    assert_eq!(driver.cancel_requests(&mine).unwrap(), []);
    open().request_cancel(id, "carol asked").unwrap();
    driver.sink(id).unwrap().emit(&cancelled).unwrap();
}
