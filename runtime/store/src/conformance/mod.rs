//! The journal conformance suite: what every [`Journal`] backend must do, run by the tests of
//! each (SQLite here, PostgreSQL in `meridian-distributed`). Each check panics with what differs.
//!
//! `open` must return a new handle to the same storage each time it is called (a reopened file,
//! a new connection), so the checks can tell durable state from what a handle cached.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::kv::{MAX_TOTAL_BYTES, MAX_VALUE_BYTES};
use meridian_protocol::{Event, Mode, Outcome, PlannedChange, RunStatus, StepError};
use serde_json::json;

use crate::{Journal, RunQuery, RunRecord, RunSettings, StoreError};

mod claims;
pub use claims::claim as key_claim;

/// Runs every check against fresh runs (ids made unique with `prefix`, so a database may hold
/// several runs of the suite). The prune check deletes every finished run in the storage, so
/// give the suite storage that no other test uses at the same time.
pub fn run_all(prefix: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    records_round_trip(&format!("{prefix}-rec"), open);
    unknown_runs_are_not_found(&format!("{prefix}-none"), open);
    events_project_to_legs_and_status(&format!("{prefix}-ev"), open);
    forgetting_legs_and_reopening(&format!("{prefix}-fg"), open);
    kv_is_durable_per_run_and_bounded(&format!("{prefix}-kv"), open);
    runs_are_listed_newest_first(&format!("{prefix}-ls"), open);
    queries_filter_and_page_in_the_store(&format!("{prefix}-q"), open);
    a_group_is_durable_and_lost_events_leave_no_gap(&format!("{prefix}-grp"), open);
    a_long_step_shows_while_it_runs(&format!("{prefix}-prog"), open);
    claims::a_tick_is_claimed_once(&format!("{prefix}-tick"), open);
    claims::a_key_is_claimed_once(&format!("{prefix}-key"), open);
    claims::a_cancel_request_reaches_the_driver(&format!("{prefix}-cancel"), open);
    a_run_is_leased_to_one_server(&format!("{prefix}-lease"), open);
    a_write_under_a_lost_lease_is_refused(&format!("{prefix}-fence"), open);
    a_kv_write_under_a_lost_lease_is_refused(&format!("{prefix}-kvfence"), open);
    orphaned_runs_are_the_unleased_running_ones_servers_started(&format!("{prefix}-orph"), open);
    a_schedules_state_is_kept(&format!("{prefix}-sched"), open);
    // Last: it deletes every finished run of the storage, the other checks' included.
    pruning_keeps_what_may_go_on(&format!("{prefix}-pr"), open);
}

/// A run record as the tests create it.
pub fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: "wf".into(),
        workflow_path: "/tmp/wf.yaml".into(),
        workflow_sha256: "abc".into(),
        mode: Mode::Plan,
        inputs: json!({"x": 1, "s": "***"}),
        settings: RunSettings {
            max_parallel: Some(3),
            approve: vec!["gate".into()],
            timeout: Some(Duration::from_secs(3)),
            raw_inputs: [("x".to_string(), "1".to_string())].into(),
            trigger: Some("schedule:wf#0".into()),
            idempotency_key: Some("alice\u{0}deploy-42".into()),
            secrets_file: Some("/etc/meridian/secrets.env".into()),
            components: [(
                "oci://127.0.0.1:5000/acme/greet:1.0".to_string(),
                format!(
                    "oci://127.0.0.1:5000/acme/greet:1.0@sha256:{}",
                    "ab".repeat(32)
                ),
            )]
            .into(),
        },
    }
}

fn records_round_trip(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    j.create_run(&record(id)).unwrap();
    assert!(
        j.create_run(&record(id)).is_err(),
        "a second run with the same id must be refused"
    );
    let (rec, summary) = open().run(id).unwrap();
    assert_eq!(rec, record(id));
    assert_eq!(summary.status, RunStatus::Running);
    assert_eq!(summary.mode, Mode::Plan);
    assert_eq!(summary.finished_at_ms, None);
}

fn unknown_runs_are_not_found(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    assert!(matches!(j.run(id), Err(StoreError::NoSuchRun(r)) if r == id));
    assert!(matches!(j.reopen_run(id), Err(StoreError::NoSuchRun(_))));
    assert!(j.events(id).unwrap().is_empty());
    assert!(j.legs(id).unwrap().is_empty());
}

fn leg(step: &str, leg: &str, outcome: Outcome, attempts: u32) -> Event {
    Event::LegFinished {
        step: step.into(),
        leg: leg.into(),
        outcome,
        attempts,
        duration: Duration::from_millis(12),
        output: json!({"v": attempts, "nested": {"k": [1, 2]}}),
        plan: vec![PlannedChange::Sql {
            connection: "db".into(),
            statement: "SELECT pg_promote()".into(),
            params: vec![json!(1)],
            reason: "writes".into(),
        }],
        error: (outcome == Outcome::Failure).then(|| StepError::Timeout(Duration::from_secs(2))),
    }
}

fn events_project_to_legs_and_status(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    j.create_run(&record(id)).unwrap();
    let events = vec![
        Event::RunStarted {
            run_id: id.into(),
            workflow: "wf".into(),
            mode: Mode::Plan,
            inputs: json!({}),
        },
        Event::ApprovalGranted {
            step: "gate".into(),
            by: "--approve".into(),
        },
        leg("deploy", "eu", Outcome::Failure, 1),
        // A leg finished again (a resumed run) replaces its row.
        leg("deploy", "eu", Outcome::Success, 2),
        leg("deploy", "us", Outcome::Success, 1),
        leg("check", "", Outcome::Failure, 3),
        Event::ApprovalGranted {
            step: "promote".into(),
            by: "ops".into(),
        },
        Event::RunFinished {
            status: RunStatus::Failed,
            duration: Duration::from_millis(40),
            message: "step check failed".into(),
        },
    ];
    let sink = j.sink(id).unwrap();
    for e in &events[..4] {
        sink.emit(e).unwrap();
    }
    // A sink opened later (a resume) continues the sequence.
    let sink = open().sink(id).unwrap();
    for e in &events[4..] {
        sink.emit(e).unwrap();
    }
    let j = open();
    let back = j.events(id).unwrap();
    assert_eq!(
        back.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        back.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        events,
        "events read back typed and equal"
    );
    let legs = j.legs(id).unwrap();
    let keys: Vec<(&str, &str, Outcome, u32)> = legs
        .iter()
        .map(|l| (l.step.as_str(), l.leg.as_str(), l.outcome, l.attempts))
        .collect();
    assert_eq!(
        keys,
        [
            ("check", "", Outcome::Failure, 3),
            ("deploy", "eu", Outcome::Success, 2),
            ("deploy", "us", Outcome::Success, 1),
        ]
    );
    assert_eq!(
        legs[0].error,
        Some(StepError::Timeout(Duration::from_secs(2)))
    );
    assert_eq!(legs[1].output, json!({"v": 2, "nested": {"k": [1, 2]}}));
    assert_eq!(legs[1].duration, Duration::from_millis(12));
    assert_eq!(legs[1].plan.len(), 1);
    assert_eq!(
        j.approvals(id).unwrap(),
        [
            ("gate".to_string(), "--approve".to_string()),
            ("promote".to_string(), "ops".to_string())
        ]
    );
    let (_, summary) = j.run(id).unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(summary.message.as_deref(), Some("step check failed"));
    assert!(summary.finished_at_ms.is_some());
}

fn forgetting_legs_and_reopening(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    j.create_run(&record(id)).unwrap();
    let sink = j.sink(id).unwrap();
    for e in [
        leg("a", "", Outcome::Success, 1),
        leg("b", "x", Outcome::Success, 1),
        leg("b", "y", Outcome::Success, 1),
        leg("c", "", Outcome::Success, 1),
        Event::RunFinished {
            status: RunStatus::Succeeded,
            duration: Duration::from_millis(1),
            message: "ok".into(),
        },
    ] {
        sink.emit(&e).unwrap();
    }
    j.forget_legs(id, &["b".into(), "c".into()]).unwrap();
    let steps: Vec<String> = open()
        .legs(id)
        .unwrap()
        .into_iter()
        .map(|l| l.step)
        .collect();
    assert_eq!(steps, ["a"]);
    j.reopen_run(id).unwrap();
    let (_, s) = open().run(id).unwrap();
    assert_eq!((s.status, s.finished_at_ms), (RunStatus::Running, None));
}

fn kv_is_durable_per_run_and_bounded(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let other = format!("{id}-other");
    let j = open();
    j.create_run(&record(id)).unwrap();
    j.create_run(&record(&other)).unwrap();
    let kv = j.kv(id);
    kv.set("fence/primary", b"fenced".to_vec()).unwrap();
    kv.set("gslb/before", b"eu".to_vec()).unwrap();
    kv.set("gslb/before", b"us".to_vec()).unwrap();
    kv.set("z", vec![0, 159, 146, 150]).unwrap();
    j.kv(&other).set("gslb/before", b"other".to_vec()).unwrap();
    // A new handle (a resumed runner, another worker) sees what was written.
    let kv = open().kv(id);
    assert_eq!(kv.get("gslb/before").unwrap(), Some(b"us".to_vec()));
    assert_eq!(kv.get("z").unwrap(), Some(vec![0, 159, 146, 150]));
    assert_eq!(kv.get("missing").unwrap(), None);
    assert_eq!(kv.keys("gslb/").unwrap(), ["gslb/before"]);
    assert_eq!(kv.keys("").unwrap(), ["fence/primary", "gslb/before", "z"]);
    assert!(kv.delete("fence/primary").unwrap());
    assert!(!kv.delete("fence/primary").unwrap());
    assert_eq!(open().kv(id).get("fence/primary").unwrap(), None);
    assert_eq!(
        open().kv(&other).get("gslb/before").unwrap(),
        Some(b"other".to_vec())
    );
    // The same limits as every kv store.
    assert!(kv.set("big", vec![0; MAX_VALUE_BYTES + 1]).is_err());
    let n = MAX_TOTAL_BYTES / MAX_VALUE_BYTES;
    for i in 0..n - 1 {
        kv.set(&format!("fill/{i:03}"), vec![1; MAX_VALUE_BYTES])
            .unwrap();
    }
    assert!(
        kv.set("fill/last", vec![1; MAX_VALUE_BYTES]).is_err(),
        "the run's total is bounded"
    );
    kv.set("fill/000", vec![2; MAX_VALUE_BYTES]).unwrap();
    assert_eq!(kv.get("fill/000").unwrap().map(|v| v[0]), Some(2));
}

fn runs_are_listed_newest_first(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    let ids: Vec<String> = (0..3).map(|i| format!("{id}-{i}")).collect();
    for r in &ids {
        j.create_run(&record(r)).unwrap();
    }
    let listed: Vec<String> = j.runs(3).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
}

/// `query_runs` filters by workflow, status, mode and time and pages, newest first, with the
/// total matching; the same answer as filtering the whole listing.
fn queries_filter_and_page_in_the_store(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    let workflow = format!("{id}-wf");
    let ids: Vec<String> = (0..5).map(|i| format!("{id}-{i}")).collect();
    for (i, r) in ids.iter().enumerate() {
        let mut rec = record(r);
        rec.workflow = workflow.clone();
        if i >= 3 {
            rec.mode = Mode::Apply;
        }
        j.create_run(&rec).unwrap();
        if i % 2 == 0 {
            j.sink(r)
                .unwrap()
                .emit(&finish(RunStatus::Succeeded))
                .unwrap();
        }
    }
    let base = RunQuery {
        workflow: Some(workflow.clone()),
        limit: 2,
        ..RunQuery::default()
    };
    let ids_of = |q: &RunQuery| -> (Vec<String>, usize) {
        let page = j.query_runs(q).unwrap();
        (page.runs.into_iter().map(|r| r.id).collect(), page.total)
    };
    assert_eq!(ids_of(&base), (vec![ids[4].clone(), ids[3].clone()], 5));
    let last = RunQuery {
        offset: 4,
        ..base.clone()
    };
    assert_eq!(ids_of(&last), (vec![ids[0].clone()], 5));
    let past = RunQuery {
        offset: 10,
        ..base.clone()
    };
    assert_eq!(ids_of(&past), (vec![], 5));
    let apply = RunQuery {
        mode: Some(Mode::Apply),
        limit: 10,
        ..base.clone()
    };
    assert_eq!(ids_of(&apply), (vec![ids[4].clone(), ids[3].clone()], 2));
    let done = RunQuery {
        status: Some(RunStatus::Succeeded),
        limit: 10,
        ..base.clone()
    };
    assert_eq!(
        ids_of(&done),
        (vec![ids[4].clone(), ids[2].clone(), ids[0].clone()], 3)
    );
    let later = RunQuery {
        since_ms: Some(crate::pending::now_ms() + 86_400_000),
        ..base.clone()
    };
    assert_eq!(ids_of(&later), (vec![], 0));
    // The same answer as the whole listing, filtered.
    let all: Vec<String> = j
        .runs(usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|r| done.matches(r))
        .map(|r| r.id)
        .collect();
    assert_eq!(all, ids_of(&done).0);
    // Read a page of 2 at a time, every match comes once, newest first.
    let every: Vec<String> = crate::query_all(&*j, base.clone())
        .map(|r| r.unwrap().id)
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(every, newest_first);
}

fn started(step: &str, attempt: u32) -> Event {
    Event::AttemptStarted {
        step: step.into(),
        leg: String::new(),
        attempt,
        idempotency_key: format!("r/{step}"),
        input: json!({"n": attempt}),
    }
}

/// A commit point makes the group it closes durable; events a killed runner held in memory
/// (here: a sink dropped after events that are not commit points) may be lost, and the next
/// sink's numbering continues after what is on disk, without a gap.
fn a_group_is_durable_and_lost_events_leave_no_gap(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    j.create_run(&record(id)).unwrap();
    let group = [
        started("a", 1),
        started("b", 1),
        leg("a", "", Outcome::Success, 1),
        leg("b", "", Outcome::Success, 1),
        Event::StepFinished {
            step: "a".into(),
            outcome: Outcome::Success,
            reason: None,
        },
    ];
    let sink = j.sink(id).unwrap();
    sink.emit_all(&group[..4]).unwrap();
    let back: Vec<Event> = open()
        .events(id)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        back,
        group[..4],
        "the whole group is durable once emit_all returns"
    );
    // Not commit points: a journal may hold them, and they go with the process.
    sink.emit(&group[4]).unwrap();
    sink.emit(&started("c", 1)).unwrap();
    drop(sink);
    let sink = open().sink(id).unwrap();
    sink.emit(&leg("c", "", Outcome::Success, 1)).unwrap();
    let back = open().events(id).unwrap();
    let seqs: Vec<i64> = back.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=back.len() as i64).collect::<Vec<_>>(), "no gap");
    assert_eq!(back.last().map(|e| e.event.kind()), Some("leg-finished"));
    let steps: Vec<String> = open()
        .legs(id)
        .unwrap()
        .into_iter()
        .map(|l| l.step)
        .collect();
    assert_eq!(steps, ["a", "b", "c"]);
}

/// Held events are written as progress once they waited [`crate::progress::PROGRESS_AFTER`]:
/// another reader sees a long step's attempt before its leg ends.
fn a_long_step_shows_while_it_runs(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    j.create_run(&record(id)).unwrap();
    let sink = j.sink(id).unwrap();
    sink.emit(&started("long", 1)).unwrap();
    let reader = open();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reader.events(id).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the attempt never showed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sink.emit(&leg("long", "", Outcome::Success, 1)).unwrap();
    let kinds: Vec<(i64, &str)> = reader
        .events(id)
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.event.kind()))
        .collect();
    assert_eq!(kinds, [(1, "attempt-started"), (2, "leg-finished")]);
}

/// A leg of `step` that succeeded in 1 ms with `{}` as its output (the store's own tests).
#[cfg(test)]
pub(crate) fn ok_leg(step: &str) -> Event {
    Event::LegFinished {
        step: step.into(),
        leg: String::new(),
        outcome: Outcome::Success,
        attempts: 1,
        duration: Duration::from_millis(1),
        output: json!({}),
        plan: vec![],
        error: None,
    }
}

pub(crate) fn finish(status: RunStatus) -> Event {
    Event::RunFinished {
        status,
        duration: Duration::from_millis(5),
        message: status.as_str().into(),
    }
}

/// `prune` deletes ended runs with everything they own, and never a run that may go on: one
/// running or interrupted (resumable) or waiting for an approval.
fn pruning_keeps_what_may_go_on(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    let [done, failed, waiting, running, reopened] =
        ["done", "failed", "waiting", "running", "reopened"].map(|k| format!("{id}-{k}"));
    for r in [&done, &failed, &waiting, &running, &reopened] {
        j.create_run(&record(r)).unwrap();
        let sink = j.sink(r).unwrap();
        sink.emit(&started("a", 1)).unwrap();
        sink.emit(&leg("a", "", Outcome::Success, 1)).unwrap();
        j.kv(r).set("k", b"v".to_vec()).unwrap();
    }
    for (r, status) in [
        (&done, RunStatus::Succeeded),
        (&failed, RunStatus::Failed),
        (&waiting, RunStatus::AwaitingApproval),
        (&reopened, RunStatus::Failed),
    ] {
        j.sink(r).unwrap().emit(&finish(status)).unwrap();
    }
    j.reopen_run(&reopened).unwrap();

    assert_eq!(
        j.prune(Duration::from_secs(3600)).unwrap(),
        0,
        "nothing finished an hour ago"
    );
    assert!(open().run(&done).is_ok());
    let pruned = open().prune(Duration::ZERO).unwrap();
    assert!(pruned >= 2, "{pruned}: done and failed at least");
    let j = open();
    for gone in [&done, &failed] {
        assert!(
            matches!(j.run(gone), Err(StoreError::NoSuchRun(_))),
            "{gone}"
        );
        assert!(j.events(gone).unwrap().is_empty(), "{gone}'s events");
        assert!(j.legs(gone).unwrap().is_empty(), "{gone}'s legs");
        assert_eq!(
            j.kv(gone).keys("").unwrap(),
            Vec::<String>::new(),
            "{gone}'s kv"
        );
    }
    for kept in [&waiting, &running, &reopened] {
        assert!(j.run(kept).is_ok(), "{kept} is kept");
        assert_eq!(j.legs(kept).unwrap().len(), 1, "{kept}'s legs");
        assert_eq!(
            j.kv(kept).get("k").unwrap(),
            Some(b"v".to_vec()),
            "{kept}'s kv"
        );
    }
    assert_eq!(
        j.check().unwrap(),
        Vec::<String>::new(),
        "a sound journal checks clean"
    );
}

/// A takeover pass's one query: running, started by a server, no live lease.
fn orphaned_runs_are_the_unleased_running_ones_servers_started(
    id: &str,
    open: &dyn Fn() -> Arc<dyn Journal>,
) {
    let j = open();
    let by_hand = |r: RunRecord| RunRecord {
        settings: RunSettings {
            trigger: None,
            ..r.settings
        },
        ..r
    };
    let ids = ["a", "by-hand", "leased", "ended"].map(|s| format!("{id}-{s}"));
    j.create_run(&record(&ids[0])).unwrap();
    j.create_run(&by_hand(record(&ids[1]))).unwrap();
    j.create_run(&record(&ids[2])).unwrap();
    j.create_run(&record(&ids[3])).unwrap();
    assert!(j.lease_run(&ids[2], "s1", Duration::from_secs(60)).unwrap());
    j.sink(&ids[3])
        .unwrap()
        .emit(&Event::RunFinished {
            status: RunStatus::Succeeded,
            duration: Duration::from_millis(1),
            message: "ok".into(),
        })
        .unwrap();
    let mine = |j: &Arc<dyn Journal>| -> Vec<String> {
        let runs = j.orphaned_runs(1_000).unwrap();
        runs.into_iter()
            .map(|r| r.id)
            .filter(|r| r.starts_with(id))
            .collect()
    };
    assert_eq!(mine(&j), [ids[0].clone()]);
    j.release_run(&ids[2], "s1").unwrap();
    assert_eq!(mine(&j), [ids[0].clone(), ids[2].clone()], "oldest first");
}

/// A schedule's pause and failures, saved by one journal, read by another (a restarted server,
/// or another server sharing the storage); saved again, replaced.
fn a_schedules_state_is_kept(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    use crate::ScheduleState;
    let ours = |j: &Arc<dyn Journal>| -> Vec<ScheduleState> {
        j.schedules()
            .unwrap()
            .into_iter()
            .filter(|s| s.schedule.starts_with(id))
            .collect()
    };
    let (a, b) = (open(), open());
    assert_eq!(ours(&b), []);
    let drill = ScheduleState {
        schedule: format!("{id}-drill#0"),
        paused: Some("paused by op1".into()),
        failures: 2,
    };
    let tick = ScheduleState {
        schedule: format!("{id}-tick#0"),
        paused: None,
        failures: 1,
    };
    a.save_schedule(&drill).unwrap();
    a.save_schedule(&tick).unwrap();
    assert_eq!(ours(&b), [drill.clone(), tick.clone()]);
    let resumed = ScheduleState {
        paused: None,
        failures: 0,
        ..drill
    };
    b.save_schedule(&resumed).unwrap();
    assert_eq!(ours(&open()), [resumed, tick]);
}

/// Eight servers race for one run's lease: one wins; its holder renews it, the others are
/// refused until it expires or is released, and then one of them takes it over.
fn a_run_is_leased_to_one_server(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    use std::time::Duration;
    let journals: Vec<Arc<dyn Journal>> = (0..8).map(|_| open()).collect();
    let ttl = Duration::from_millis(600);
    let start = Arc::new(std::sync::Barrier::new(journals.len()));
    let winners: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = journals
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    j.lease_run(id, &format!("server-{i}"), ttl).unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| h.join().unwrap().then_some(i))
            .collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    let holder = format!("server-{}", winners[0]);
    let other = format!("server-{}", (winners[0] + 1) % 8);
    assert!(journals[0].lease_run(id, &holder, ttl).unwrap(), "renewed");
    assert!(!journals[1].lease_run(id, &other, ttl).unwrap(), "held");
    assert_eq!(
        journals[5].lease_holder(id).unwrap().as_deref(),
        Some(holder.as_str())
    );
    assert_eq!(
        journals[5].lease_holder(&format!("{id}-never")).unwrap(),
        None
    );
    // Renewed with others in one round trip: a free run is taken, a held one reported lost.
    let free = format!("{id}-free");
    let both = [id.to_string(), free.clone()];
    assert_eq!(
        journals[0].renew_runs(&both, &holder, ttl).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        journals[1].renew_runs(&both, &other, ttl).unwrap(),
        both.to_vec()
    );
    assert_eq!(
        journals[1].renew_runs(&[], &other, ttl).unwrap(),
        Vec::<String>::new()
    );
    journals[0].release_run(&free, &holder).unwrap();
    // Another server's release does not free it; expiry does.
    journals[1].release_run(id, &other).unwrap();
    assert!(
        !journals[1].lease_run(id, &other, ttl).unwrap(),
        "still held"
    );
    std::thread::sleep(ttl + Duration::from_millis(300));
    assert_eq!(
        journals[1].lease_holder(id).unwrap(),
        None,
        "an expired lease has no holder"
    );
    assert!(
        journals[1].lease_run(id, &other, ttl).unwrap(),
        "taken over"
    );
    assert!(!journals[0].lease_run(id, &holder, ttl).unwrap(), "lost");
    // Released, it is free at once.
    journals[1].release_run(id, &other).unwrap();
    assert!(
        journals[2].lease_run(id, &holder, ttl).unwrap(),
        "free again"
    );
}

/// A server that stalled past its lease cannot write into the run another server took over,
/// even when it writes first (its next event would take the sequence number the new holder's
/// next one takes); the new holder's writes go on, until it lets the lease go.
fn a_write_under_a_lost_lease_is_refused(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let (j1, j2) = (open(), open());
    j1.create_run(&record(id)).unwrap();
    let ttl = Duration::from_millis(300);
    assert!(j1.lease_run(id, "s1", ttl).unwrap());
    let stalled = j1.fenced_sink(id, "s1").unwrap();
    stalled.emit(&leg("a", "", Outcome::Success, 1)).unwrap();
    std::thread::sleep(ttl + Duration::from_millis(200));
    assert!(j2.lease_run(id, "s2", ttl * 100).unwrap(), "taken over");
    let driving = j2.fenced_sink(id, "s2").unwrap();
    let refused = stalled
        .emit(&leg("b", "", Outcome::Success, 1))
        .expect_err("the stalled server's write");
    assert!(
        refused.to_string().contains("lost the run's lease to `s2`"),
        "{refused}"
    );
    driving.emit(&leg("c", "", Outcome::Success, 1)).unwrap();
    let steps = |j: &dyn Journal| -> Vec<String> {
        j.legs(id).unwrap().into_iter().map(|l| l.step).collect()
    };
    assert_eq!(steps(&*open()), ["a", "c"], "b was not kept");
    // Let go (the run ended, or waits for a person): its old holder's sink writes no more.
    j2.release_run(id, "s2").unwrap();
    let after = driving
        .emit(&leg("d", "", Outcome::Success, 1))
        .expect_err("a write after the release");
    assert!(after.to_string().contains("no longer holds"), "{after}");
    assert_eq!(steps(&*open()), ["a", "c"]);
}

/// The same for a run's kv state: a stalled server's step cannot overwrite (or delete) what the
/// step's new attempt saved on the server that took the run over. Reads and unfenced writes (a
/// `meridian run` without a server, a worker's) are not checked.
fn a_kv_write_under_a_lost_lease_is_refused(id: &str, open: &dyn Fn() -> Arc<dyn Journal>) {
    let (j1, j2) = (open(), open());
    j1.create_run(&record(id)).unwrap();
    let ttl = Duration::from_millis(300);
    assert!(j1.lease_run(id, "s1", ttl).unwrap());
    let stalled = j1.fenced_kv(id, "s1");
    stalled.set("step/a/vm", b"vm-1".to_vec()).unwrap();
    assert!(stalled.delete("step/a/vm").unwrap(), "the holder deletes");
    stalled.set("step/a/vm", b"vm-1".to_vec()).unwrap();
    std::thread::sleep(ttl + Duration::from_millis(200));
    assert!(j2.lease_run(id, "s2", ttl * 100).unwrap(), "taken over");
    let driving = j2.fenced_kv(id, "s2");
    driving.set("step/a/vm", b"vm-2".to_vec()).unwrap();
    let refused = stalled
        .set("step/a/vm", b"vm-1-late".to_vec())
        .expect_err("the stalled server's write");
    assert!(
        refused.to_string().contains("lost the run's lease to `s2`"),
        "{refused}"
    );
    let refused = stalled
        .delete("step/a/vm")
        .expect_err("the stalled server's delete");
    assert!(
        refused.to_string().contains("lost the run's lease to `s2`"),
        "{refused}"
    );
    let value = |j: &dyn Journal| j.kv(id).get("step/a/vm").unwrap();
    assert_eq!(value(&*open()).as_deref(), Some(&b"vm-2"[..]));
    assert_eq!(
        stalled.get("step/a/vm").unwrap().as_deref(),
        Some(&b"vm-2"[..]),
        "reads are not fenced"
    );
    j2.release_run(id, "s2").unwrap();
    let after = driving
        .set("step/a/vm", b"vm-3".to_vec())
        .expect_err("a write after the release");
    assert!(after.to_string().contains("no longer holds"), "{after}");
    open().kv(id).set("step/b/x", b"1".to_vec()).unwrap();
    assert_eq!(value(&*open()).as_deref(), Some(&b"vm-2"[..]));
}
