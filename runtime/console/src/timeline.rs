//! A run's story read from its journaled events: one lane per step or matrix leg, one bar per
//! attempt, the approval gates with who answered them and when, and the drill's fault and
//! recovery instants.

use std::collections::HashMap;
use std::time::Duration;

use meridian_protocol::{Action, Event, Outcome, PlannedChange, StepError};
use meridian_store::EventRecord;
use serde_json::Value as Json;

/// One attempt of a leg.
pub(crate) struct Attempt<'a> {
    pub n: u32,
    pub start: i64,
    pub end: Option<i64>,
    /// `running`, `success`, `failure`, `cancelled`, `skipped`.
    pub state: &'static str,
    pub error: Option<&'a StepError>,
}

/// How a leg finished.
pub(crate) struct Finished<'a> {
    pub outcome: Outcome,
    pub attempts: u32,
    pub duration: Duration,
    pub output: &'a Json,
    pub plan: &'a [PlannedChange],
    pub error: Option<&'a StepError>,
}

/// One compensation (undo) of a leg.
pub(crate) struct Undo<'a> {
    pub action: Action,
    pub outcome: Outcome,
    pub error: Option<&'a StepError>,
    pub at: i64,
}

/// A step without a matrix, or one leg of a matrix step.
pub(crate) struct Lane<'a> {
    pub step: &'a str,
    pub leg: &'a str,
    pub attempts: Vec<Attempt<'a>>,
    pub finished: Option<Finished<'a>>,
    /// Why it was skipped.
    pub skipped: Option<&'a str>,
    pub undo: Vec<Undo<'a>>,
    /// What its attempts logged: (attempt, when journaled, lines, of its compensation).
    pub logs: Vec<(u32, i64, &'a [meridian_protocol::LogLine], bool)>,
    /// Waiting at its approval gate.
    pub waiting: bool,
}

impl Lane<'_> {
    /// `pending`, `waiting`, `running`, `success`, `failure`, `skipped`, `cancelled`.
    pub(crate) fn state(&self) -> &'static str {
        if let Some(f) = &self.finished {
            f.outcome.as_str()
        } else if self.skipped.is_some() {
            "skipped"
        } else if self.waiting {
            "waiting"
        } else if self.attempts.last().is_some_and(|a| a.end.is_none()) {
            "running"
        } else if self.attempts.is_empty() {
            "pending"
        } else {
            // Between attempts (a retry's wait).
            "running"
        }
    }

    /// Time from the first attempt's start to the last one's end (or `now`).
    pub(crate) fn took(&self, now: i64) -> Option<i64> {
        if let Some(f) = &self.finished
            && !self.attempts.is_empty()
        {
            return Some(f.duration.as_millis() as i64);
        }
        let first = self.attempts.first()?;
        Some(self.attempts.last()?.end.unwrap_or(now) - first.start)
    }

    pub(crate) fn id(&self) -> String {
        meridian_protocol::display_id(self.step, self.leg)
    }
}

/// An approval gate and its answer.
pub(crate) struct Gate<'a> {
    pub step: &'a str,
    pub message: &'a str,
    pub asked_at: i64,
    pub answer: Option<Answer<'a>>,
}

pub(crate) struct Answer<'a> {
    pub approved: bool,
    pub by: &'a str,
    pub comment: &'a str,
    pub at: i64,
}

/// Everything the run page shows of the events.
pub(crate) struct Story<'a> {
    pub t0: i64,
    pub t_end: i64,
    pub lanes: Vec<Lane<'a>>,
    pub gates: Vec<Gate<'a>>,
    pub fault_at: Option<i64>,
    pub recovered_at: Option<i64>,
    pub last_seq: i64,
}

/// The first number found under one of `keys` in a JSON object.
fn number(v: &Json, keys: &[&str]) -> Option<i64> {
    keys.iter()
        .find_map(|k| v.get(k).and_then(Json::as_f64))
        .map(|f| f as i64)
}

impl<'a> Story<'a> {
    /// Reads the events; `steps` (the workflow's step ids, in file order) adds lanes for the
    /// steps that have not started; `now` ends the bars of attempts still going.
    pub(crate) fn read(events: &'a [EventRecord], steps: &'a [String], now: i64) -> Story<'a> {
        let t0 = events.first().map_or(now, |e| e.at_ms);
        let mut running = true;
        let mut lanes: Vec<Lane<'a>> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut gates: Vec<Gate<'a>> = Vec::new();
        let (mut fault_at, mut recovered_at, mut rto) = (None, None, None);
        let mut lane = |lanes: &mut Vec<Lane<'a>>, step: &'a str, leg: &'a str| -> usize {
            *index.entry((step, leg)).or_insert_with(|| {
                lanes.push(Lane {
                    step,
                    leg,
                    attempts: Vec::new(),
                    finished: None,
                    skipped: None,
                    undo: Vec::new(),
                    logs: Vec::new(),
                    waiting: false,
                });
                lanes.len() - 1
            })
        };
        for e in events {
            match &e.event {
                Event::RunStarted { .. } => running = true,
                Event::AttemptStarted {
                    step,
                    leg,
                    attempt,
                    input,
                    ..
                } => {
                    let i = lane(&mut lanes, step, leg);
                    lanes[i].waiting = false;
                    lanes[i].attempts.push(Attempt {
                        n: *attempt,
                        start: e.at_ms,
                        end: None,
                        state: "running",
                        error: None,
                    });
                    // drill-report's inputs name the fault and the recovery instants.
                    fault_at = number(input, &["fault_at_ms"]).or(fault_at);
                    recovered_at = number(input, &["recovered_at_ms"]).or(recovered_at);
                }
                Event::AttemptFailed {
                    step, leg, error, ..
                } => {
                    let i = lane(&mut lanes, step, leg);
                    if let Some(a) = lanes[i].attempts.last_mut()
                        && a.end.is_none()
                    {
                        a.end = Some(e.at_ms);
                        a.state = "failure";
                        a.error = Some(error);
                    }
                }
                Event::LegFinished {
                    step,
                    leg,
                    outcome,
                    attempts,
                    duration,
                    output,
                    plan,
                    error,
                } => {
                    let i = lane(&mut lanes, step, leg);
                    if let Some(a) = lanes[i].attempts.last_mut()
                        && a.end.is_none()
                    {
                        a.end = Some(e.at_ms);
                        a.state = outcome.as_str();
                        a.error = error.as_ref();
                    }
                    lanes[i].finished = Some(Finished {
                        outcome: *outcome,
                        attempts: *attempts,
                        duration: *duration,
                        output,
                        plan,
                        error: error.as_ref(),
                    });
                    fault_at = number(output, &["fault_at_ms", "killed_at_ms"]).or(fault_at);
                    recovered_at = number(output, &["recovered_at_ms"]).or(recovered_at);
                    rto = number(output, &["rto_ms"]).or(rto);
                }
                Event::StepSkipped { step, reason } => {
                    let i = lane(&mut lanes, step, "");
                    lanes[i].skipped = Some(reason);
                }
                Event::ApprovalRequired { step, message } => {
                    let i = lane(&mut lanes, step, "");
                    lanes[i].waiting = true;
                    if !gates.iter().any(|g| g.step == step && g.answer.is_none()) {
                        gates.push(Gate {
                            step,
                            message,
                            asked_at: e.at_ms,
                            answer: None,
                        });
                    }
                }
                Event::ApprovalGranted { step, by } => {
                    // The runner journals `name: comment`.
                    let (by, comment) = by.split_once(": ").unwrap_or((by, ""));
                    answer(&mut gates, step, e.at_ms, true, by, comment);
                    if let Some(l) = lanes
                        .iter_mut()
                        .find(|l| l.step == step && l.leg.is_empty())
                    {
                        l.waiting = false;
                    }
                }
                Event::ApprovalRejected { step, by, comment } => {
                    answer(&mut gates, step, e.at_ms, false, by, comment);
                    if let Some(l) = lanes
                        .iter_mut()
                        .find(|l| l.step == step && l.leg.is_empty())
                    {
                        l.waiting = false;
                    }
                }
                Event::Compensation {
                    step,
                    leg,
                    action,
                    outcome,
                    error,
                } => {
                    let i = lane(&mut lanes, step, leg);
                    lanes[i].undo.push(Undo {
                        action: *action,
                        outcome: *outcome,
                        error: error.as_ref(),
                        at: e.at_ms,
                    });
                }
                Event::RunFinished { .. } => running = false,
                Event::StepLog {
                    step,
                    leg,
                    attempt,
                    lines,
                    compensation,
                } => {
                    let i = lane(&mut lanes, step, leg);
                    lanes[i]
                        .logs
                        .push((*attempt, e.at_ms, lines, *compensation));
                }
                // The drill's canary figures are read through `DrillVerdict`.
                Event::StepFinished { .. } | Event::Measured { .. } => {}
            }
        }
        // Steps that have not started, in the workflow's order.
        for s in steps {
            if !lanes.iter().any(|l| l.step == s) {
                lane(&mut lanes, s, "");
            }
        }
        // Legs of one step side by side, in the order the steps first appeared.
        let mut order: Vec<&str> = Vec::new();
        for l in &lanes {
            if !order.contains(&l.step) {
                order.push(l.step);
            }
        }
        lanes.sort_by_key(|l| order.iter().position(|s| *s == l.step));
        let last = events.last().map_or(t0, |e| e.at_ms);
        let t_end = if running { last.max(now) } else { last };
        if recovered_at.is_none() {
            recovered_at = fault_at.zip(rto).map(|(f, r)| f + r);
        }
        if fault_at.is_none() {
            fault_at = recovered_at.zip(rto).map(|(r, d)| r - d);
        }
        // A fault shortly before the run started (the run was started because of it) is
        // part of the picture: the axis starts there.
        let t0 = match fault_at {
            Some(f) if f < t0 && t0 - f <= 600_000 => f,
            _ => t0,
        };
        Story {
            t0,
            t_end: t_end.max(t0 + 1),
            lanes,
            gates,
            fault_at,
            recovered_at,
            last_seq: events.last().map_or(0, |e| e.seq),
        }
    }

    /// The gates still waiting for an answer.
    pub(crate) fn waiting(&self) -> impl Iterator<Item = &Gate<'a>> {
        self.gates.iter().filter(|g| g.answer.is_none())
    }
}

fn answer<'a>(
    gates: &mut Vec<Gate<'a>>,
    step: &'a str,
    at: i64,
    approved: bool,
    by: &'a str,
    comment: &'a str,
) {
    let a = Answer {
        approved,
        by,
        comment,
        at,
    };
    match gates
        .iter_mut()
        .find(|g| g.step == step && g.answer.is_none())
    {
        Some(g) => g.answer = Some(a),
        // Approved before it was asked (`--approve STEP` on the command line).
        None => gates.push(Gate {
            step,
            message: "",
            asked_at: at,
            answer: Some(a),
        }),
    }
}
