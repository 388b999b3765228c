//! What happens during a run, as a stream of events. The live terminal view, `--json` output and
//! the durable journals are all consumers of this one stream, and a journaled event reads back
//! as the same typed [`Event`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::duration::{ms, opt_ms};
use crate::{Action, Mode, PlannedChange, StepError};

/// How a step (or one matrix leg of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Skipped,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "skipped" => Outcome::Skipped,
            "cancelled" => Outcome::Cancelled,
            other => return Err(format!("unknown outcome `{other}`")),
        })
    }
}

/// How a run ended (or that it is still going).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Started and not finished: in progress, or interrupted (a killed runner) and resumable.
    Running,
    Succeeded,
    Failed,
    /// Stopped before a step that needs approval; nothing hangs. Resume with `--approve STEP`.
    AwaitingApproval,
    TimedOut,
    Cancelled,
}

impl RunStatus {
    /// Every status, in the order a run meets them.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::AwaitingApproval,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::TimedOut => "timed-out",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has ended (every status but `running`).
    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "awaiting-approval" => RunStatus::AwaitingApproval,
            "timed-out" => RunStatus::TimedOut,
            "cancelled" => RunStatus::Cancelled,
            other => return Err(format!("unknown run status `{other}`")),
        })
    }
}

/// One thing that happened. Strings that could hold secrets are masked before an event is emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        workflow: String,
        mode: Mode,
        inputs: Json,
    },
    /// A step's condition was false, or a dependency did not succeed.
    StepSkipped {
        step: String,
        reason: String,
    },
    ApprovalGranted {
        step: String,
        by: String,
    },
    ApprovalRequired {
        step: String,
        message: String,
    },
    /// Somebody refused a step's approval gate: the step fails without running.
    ApprovalRejected {
        step: String,
        by: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        comment: String,
    },
    AttemptStarted {
        step: String,
        leg: String,
        attempt: u32,
        idempotency_key: String,
        input: Json,
    },
    AttemptFailed {
        step: String,
        leg: String,
        attempt: u32,
        error: StepError,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ms")]
        retry_in: Option<Duration>,
    },
    LegFinished {
        step: String,
        leg: String,
        outcome: Outcome,
        attempts: u32,
        /// From the first attempt's start to the end of the last one: time queued behind
        /// `max-parallel` or the run's parallelism is not included, nor is preparing the step.
        /// Waits between retries are: they are part of the leg's own work (the live view counts
        /// them too). A leg that ended before its first attempt (cancelled while queued, or its
        /// step failed to prepare) took zero.
        #[serde(with = "ms")]
        duration: Duration,
        output: Json,
        plan: Vec<PlannedChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    StepFinished {
        step: String,
        outcome: Outcome,
        /// Why a step that ran no leg ended so (a matrix that gave no legs, an input that did
        /// not evaluate): the journal's only record of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Compensation {
        step: String,
        leg: String,
        action: Action,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    RunFinished {
        status: RunStatus,
        #[serde(with = "ms")]
        duration: Duration,
        message: String,
    },
    /// What an attempt logged (`ctx.log`, stdout, stderr), masked and bounded (see
    /// [`crate::log::bound_lines`]): a successful attempt's before its leg's result, a failed
    /// one's before its failure.
    StepLog {
        step: String,
        leg: String,
        attempt: u32,
        lines: Vec<crate::LogLine>,
        /// The lines of the leg's compensation (its undo after the run failed), not of a run
        /// attempt: `attempt` counts the compensation's own attempts.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compensation: bool,
    },
    /// Something the host measured beside the steps (a drill's canaries): `name` says what
    /// (`canary-started`, `canary`), `value` holds the figures. Never written by a step.
    Measured {
        name: String,
        value: Json,
    },
}

impl Event {
    /// The event's name as serialised (`leg-finished`, …): the journals' `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run-started",
            Event::StepSkipped { .. } => "step-skipped",
            Event::ApprovalGranted { .. } => "approval-granted",
            Event::ApprovalRequired { .. } => "approval-required",
            Event::ApprovalRejected { .. } => "approval-rejected",
            Event::AttemptStarted { .. } => "attempt-started",
            Event::AttemptFailed { .. } => "attempt-failed",
            Event::LegFinished { .. } => "leg-finished",
            Event::StepFinished { .. } => "step-finished",
            Event::Compensation { .. } => "compensation",
            Event::RunFinished { .. } => "run-finished",
            Event::Measured { .. } => "measured",
            Event::StepLog { .. } => "step-log",
        }
    }

    /// Whether a journal must have this event, and every event emitted before it, on disk when
    /// [`EventSink::emit`] returns: a *commit point*.
    ///
    /// What resume reads back is exactly what these carry: the leg-finished records (a finished
    /// leg is never run again, and its outputs feed its dependents), the approvals (an approval
    /// given once stands), compensations (an undo is not repeated) and the run's end (status and
    /// message). The other events are history for `runs show`: an attempt needs no durable
    /// "started" record because its idempotency key is derived from (run, step, leg), so an
    /// interrupted attempt runs again under the same key whether or not its start was written;
    /// a step's finish and a skip are recomputed on resume from the legs and the conditions. So a
    /// journal may hold those in memory and write them with the next commit point, and a
    /// sequential step costs one durable commit instead of three.
    pub fn is_commit_point(&self) -> bool {
        match self {
            Event::LegFinished { .. }
            | Event::ApprovalGranted { .. }
            | Event::ApprovalRequired { .. }
            | Event::ApprovalRejected { .. }
            | Event::Compensation { .. }
            | Event::RunFinished { .. }
            | Event::Measured { .. } => true,
            Event::RunStarted { .. }
            | Event::StepSkipped { .. }
            | Event::AttemptStarted { .. }
            | Event::AttemptFailed { .. }
            | Event::StepFinished { .. }
            | Event::StepLog { .. } => false,
        }
    }

    /// The step the event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::RunStarted { .. } | Event::RunFinished { .. } | Event::Measured { .. } => None,
            Event::StepSkipped { step, .. }
            | Event::ApprovalGranted { step, .. }
            | Event::ApprovalRequired { step, .. }
            | Event::ApprovalRejected { step, .. }
            | Event::AttemptStarted { step, .. }
            | Event::AttemptFailed { step, .. }
            | Event::LegFinished { step, .. }
            | Event::StepFinished { step, .. }
            | Event::StepLog { step, .. }
            | Event::Compensation { step, .. } => Some(step),
        }
    }
}

/// Receives every event, in order, before the engine goes on.
///
/// # What is durable when `emit` returns
///
/// For a durable sink (a journal): when `emit` (or `emit_all`) returns `Ok` after receiving a
/// commit point ([`Event::is_commit_point`]: leg-finished, approval-granted, approval-required,
/// compensation, run-finished), that event and every event the sink received before it are on
/// disk. Any other event (run-started, attempt-started, attempt-failed, step-finished,
/// step-skipped) may be held in memory until the next commit point, and is lost if the process
/// dies before it: resume never needs one. The engine emits a run's last event, run-finished, as
/// a commit point, so nothing of a run that ended is left in memory.
///
/// A step's dependents start only after its leg-finished events were emitted, so they never
/// start before its result is written. Sinks that only show events (the terminal view,
/// `--json`) have nothing to make durable and show each event as it comes.
///
/// # Written, then durable: leg-finished groups
///
/// A journal may return from a group whose only commit points are leg-finished events once
/// they are *written* (a killed process loses none of them; the journal's readers see them),
/// and make them durable against a power cut or an OS crash moments later, in the background:
/// the next legs then start while the previous group's fsync is in flight.
/// [`EventSink::durable`] says when: it resolves once every commit point emitted before the call
/// is durable. The engine awaits it before anything that may act on the world starts (a leg
/// whose grants can change something: HTTP, SQL, a writable directory; a compensation), so no
/// step ever acts on a result that a power cut could take back: a leg that only computes may
/// run ahead, and reruns with its predecessor if the machine goes down first. Every other commit
/// point (approvals, compensations, a run's end) is durable, with everything before it, when
/// `emit` returns, as is everything a journal writes for a sink whose `durable` is the default.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event) -> Result<(), SinkError>;

    /// Several events, in order, received as one group: a journal writes them in one commit
    /// (one fsync) when any of them is a commit point. The engine hands over the legs that
    /// finished together this way, so concurrent legs share a commit.
    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        events.iter().try_for_each(|e| self.emit(e))
    }

    /// [`EventSink::emit_all`] with each event's JSON already made, by a fan-out that serialises
    /// an event once for every sink that needs its JSON (a journal's stored body, `--json`
    /// lines). Sinks that do not use JSON need not implement it.
    fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
        events.iter().try_for_each(|e| self.emit(e.event))
    }

    /// Resolves once every commit point emitted through this sink before the call is durable
    /// (see "Written, then durable" above). The default, for sinks whose commit points are
    /// durable when `emit` returns (or that keep nothing), is resolved already. A sink that
    /// wraps a journal must pass this on: it is what holds a step with effects back.
    fn durable(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What [`EventSink::durable`] returns: an error when the journal could not make its writes
/// durable (an fsync failed), after which nothing it wrote since its last durable point is known
/// to be on disk.
pub type Durable =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send + 'static>>;

/// An event with its JSON text (`serde_json::to_string(event)`), made once for every sink.
#[derive(Clone, Copy, Debug)]
pub struct Encoded<'a> {
    pub event: &'a Event,
    pub json: &'a str,
}

/// The JSON text of each event, in order: what [`Encoded`] borrows.
pub fn encode_all(events: &[Event]) -> Result<Vec<String>, SinkError> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).map_err(|err| SinkError(err.to_string())))
        .collect()
}

/// Pairs events with their JSON text from [`encode_all`].
pub fn pair<'a>(events: &'a [Event], json: &'a [String]) -> Vec<Encoded<'a>> {
    events
        .iter()
        .zip(json)
        .map(|(event, json)| Encoded { event, json })
        .collect()
}

/// A sink failed (e.g. the journal's disk is full). The run stops: carrying on unjournaled would
/// break the promise that a killed runner can resume.
#[derive(Debug, thiserror::Error)]
#[error("event sink failed: {0}")]
pub struct SinkError(pub String);

/// Fans events out to several sinks, in order (a journal first, so a view never shows an event
/// the journal refused). With more than one sink, each event is serialised once and handed to
/// every sink as [`Encoded`].
impl<T: EventSink + ?Sized> EventSink for Vec<std::sync::Arc<T>> {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.emit_all(std::slice::from_ref(event))
    }

    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        if let [one] = self.as_slice() {
            return one.emit_all(events);
        }
        let json = encode_all(events)?;
        self.emit_encoded(&pair(events, &json))
    }

    fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
        self.iter().try_for_each(|s| s.emit_encoded(events))
    }

    fn durable(&self) -> Durable {
        let waits: Vec<Durable> = self.iter().map(|s| s.durable()).collect();
        Box::pin(async move {
            for w in waits {
                w.await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_and_names_its_kind() {
        let events = vec![
            Event::RunStarted {
                run_id: "r".into(),
                workflow: "w".into(),
                mode: Mode::Plan,
                inputs: serde_json::json!({"a": 1}),
            },
            Event::AttemptFailed {
                step: "s".into(),
                leg: "eu".into(),
                attempt: 2,
                error: StepError::Timeout(Duration::from_millis(20)),
                retry_in: Some(Duration::from_millis(7)),
            },
            Event::LegFinished {
                step: "s".into(),
                leg: String::new(),
                outcome: Outcome::Failure,
                attempts: 3,
                duration: Duration::from_millis(12),
                output: Json::Null,
                plan: vec![PlannedChange::Sql {
                    connection: "db".into(),
                    statement: "DELETE FROM t".into(),
                    params: vec![],
                    reason: "writes".into(),
                }],
                error: Some(StepError::Fatal("boom".into())),
            },
            Event::RunFinished {
                status: RunStatus::AwaitingApproval,
                duration: Duration::from_millis(5),
                message: "m".into(),
            },
        ];
        for e in events {
            let j = serde_json::to_value(&e).unwrap();
            assert_eq!(j["event"], e.kind());
            assert_eq!(j.get("step").and_then(Json::as_str), e.step());
            assert_eq!(serde_json::from_value::<Event>(j).unwrap(), e);
        }
    }

    /// Remembers what each sink received and how: one call per group.
    #[derive(Default)]
    struct Calls(std::sync::Mutex<Vec<(usize, Option<String>)>>);
    impl EventSink for Calls {
        fn emit(&self, _event: &Event) -> Result<(), SinkError> {
            self.0.lock().unwrap().push((1, None));
            Ok(())
        }
        fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
            self.0.lock().unwrap().push((events.len(), None));
            Ok(())
        }
        fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
            let first = events.first().map(|e| e.json.to_string());
            self.0.lock().unwrap().push((events.len(), first));
            Ok(())
        }
    }

    #[test]
    fn a_fan_out_hands_groups_on_whole_and_serialises_once() {
        let a = std::sync::Arc::new(Calls::default());
        let b = std::sync::Arc::new(Calls::default());
        let fan = vec![a.clone(), b.clone()];
        let events = [
            Event::StepFinished {
                step: "s".into(),
                outcome: Outcome::Success,
                reason: None,
            },
            Event::RunFinished {
                status: RunStatus::Succeeded,
                duration: Duration::from_millis(1),
                message: "ok".into(),
            },
        ];
        fan.emit_all(&events).unwrap();
        let json = serde_json::to_string(&events[0]).unwrap();
        for sink in [&a, &b] {
            assert_eq!(*sink.0.lock().unwrap(), [(2, Some(json.clone()))]);
        }
        // A single sink gets the group as it is, with no JSON made for it.
        let one = vec![a.clone()];
        one.emit_all(&events).unwrap();
        assert_eq!(a.0.lock().unwrap().last(), Some(&(2, None)));
    }

    #[test]
    fn commit_points_are_what_resume_reads() {
        let leg = Event::LegFinished {
            step: "s".into(),
            leg: String::new(),
            outcome: Outcome::Success,
            attempts: 1,
            duration: Duration::ZERO,
            output: Json::Null,
            plan: vec![],
            error: None,
        };
        let started = Event::AttemptStarted {
            step: "s".into(),
            leg: String::new(),
            attempt: 1,
            idempotency_key: "r/s".into(),
            input: Json::Null,
        };
        assert!(leg.is_commit_point());
        assert!(!started.is_commit_point());
        assert!(
            Event::ApprovalGranted {
                step: "s".into(),
                by: "x".into()
            }
            .is_commit_point()
        );
        assert!(
            !Event::StepFinished {
                step: "s".into(),
                outcome: Outcome::Success,
                reason: None,
            }
            .is_commit_point()
        );
    }

    #[test]
    fn statuses_parse_back() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert!("done".parse::<RunStatus>().is_err());
    }
}
