//! The drill verdict: what a run measured against the workflow's `drill:` targets.
//!
//! Figures come from two places:
//! * step outputs named `rto_ms`, `capacity_ms` (time to full capacity), `rpo_ms` and
//!   `rpo_bytes` (a figure several legs report is taken from the last), e.g. `drill-report`'s;
//! * the host's canaries (the journal's `measured canary` record): rows written, found and lost,
//!   the time window of lost writes (the RPO in time when a writer runs), requests sent and
//!   failed, and the client-observed downtime.
//!
//! A figure with a target and no measurement is "not measured", and the drill's verdict is then
//! `incomplete`: never `met`.

use meridian_engine::RunReport;
use meridian_model::Workflow;
use serde::Serialize;
use serde_json::Value as Json;

/// One figure of a drill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillFigure {
    /// `RTO`, `Capacity` (time to full capacity), `RPO`, `RPO rows`, `RPO bytes`, `Downtime`,
    /// `Rows written`, …
    pub name: &'static str,
    /// `ms`, `B`, `rows` or `requests`.
    pub unit: &'static str,
    pub achieved: Option<f64>,
    pub target: Option<f64>,
    /// Why it was not measured, when it was not and the measurer said why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How one figure compares with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    Missed,
    /// A target and no measurement: the drill cannot claim it met the target.
    NotMeasured,
    /// Measured, but the workflow sets no target.
    NoTarget,
}

impl DrillFigure {
    pub fn verdict(&self) -> Verdict {
        match (self.achieved, self.target) {
            (Some(a), Some(t)) if a <= t => Verdict::Met,
            (Some(_), Some(_)) => Verdict::Missed,
            (None, _) => Verdict::NotMeasured,
            (Some(_), None) => Verdict::NoTarget,
        }
    }
}

/// The drill as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overall {
    /// Every target met.
    Met,
    /// At least one target missed.
    Missed,
    /// None missed, but a target had no measurement.
    Incomplete,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Met => "met",
            Overall::Missed => "missed",
            Overall::Incomplete => "incomplete",
        }
    }
}

/// Every figure of a drill run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillVerdict {
    pub figures: Vec<DrillFigure>,
    pub verdict: Overall,
}

/// How long the run waited at approval gates in all: from each gate's approval-required to the
/// answer (approved or rejected, possibly by a later `resume`). `None` when no gate was
/// answered.
pub fn approval_wait_ms(events: &[meridian_store::EventRecord]) -> Option<f64> {
    use meridian_protocol::Event;
    let mut asked: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut waited = None;
    for e in events {
        match &e.event {
            Event::ApprovalRequired { step, .. } => {
                asked.entry(step.as_str()).or_insert(e.at_ms);
            }
            Event::ApprovalGranted { step, .. } | Event::ApprovalRejected { step, .. } => {
                if let Some(at) = asked.remove(step.as_str()) {
                    *waited.get_or_insert(0.0) += (e.at_ms - at).max(0) as f64;
                }
            }
            _ => {}
        }
    }
    waited
}

impl DrillVerdict {
    /// `None` when the workflow has no `drill:` block. `canary`: the run's `measured canary`
    /// record, when the canaries reported.
    /// `approval_wait`: [`approval_wait_ms`] of the run's events.
    pub fn judge(
        wf: &Workflow,
        r: &RunReport,
        canary: Option<&Json>,
        approval_wait: Option<f64>,
    ) -> Option<DrillVerdict> {
        let outputs = r.steps.iter().flat_map(|s| &s.legs).map(|l| &l.output);
        Self::from_outputs(wf, &outputs, canary, approval_wait)
    }

    /// The same from the legs' outputs (a journal's legs, for a run that ended elsewhere).
    pub fn from_outputs<'a, I>(
        wf: &Workflow,
        outputs: &I,
        canary: Option<&Json>,
        approval_wait: Option<f64>,
    ) -> Option<DrillVerdict>
    where
        I: Iterator<Item = &'a Json> + Clone,
    {
        let drill = wf.drill.as_ref()?;
        let found = |key: &str| {
            outputs
                .clone()
                .filter_map(|o| o.get(key).and_then(Json::as_f64))
                .last()
        };
        let spec = drill.canary.as_ref();
        let (writer, prober) = (
            spec.is_some_and(|c| c.writer.is_some()),
            spec.is_some_and(|c| c.prober.is_some()),
        );
        let measured = |key: &str| canary.and_then(|c| c.get(key)).and_then(Json::as_f64);
        let why = |key: &str| {
            canary
                .and_then(|c| c.get(key))
                .and_then(Json::as_str)
                .map(str::to_string)
                .or_else(|| {
                    canary
                        .is_none()
                        .then(|| "the canaries did not report".to_string())
                })
        };
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as f64);
        let mut figures = vec![DrillFigure {
            name: "RTO",
            unit: "ms",
            achieved: found("rto_ms"),
            target: ms(drill.rto),
            note: None,
        }];
        let mut push = |f: DrillFigure, listed: bool| {
            if listed || f.achieved.is_some() || f.target.is_some() {
                figures.push(f);
            }
        };
        // Beside the RTO: when the recovered region ran at full capacity.
        push(
            DrillFigure {
                name: "Capacity",
                unit: "ms",
                achieved: found("capacity_ms"),
                target: ms(drill.capacity),
                note: None,
            },
            false,
        );
        // With a writer, the RPO in time is the window of writes users lost.
        let (rpo, rpo_note) = if writer {
            (measured("rpo_window_ms"), why("writer_not_measured"))
        } else {
            (found("rpo_ms"), None)
        };
        push(
            DrillFigure {
                name: "RPO",
                unit: "ms",
                achieved: rpo,
                target: ms(drill.rpo),
                note: rpo.is_none().then_some(rpo_note).flatten(),
            },
            writer,
        );
        let lost = measured("rows_lost");
        push(
            DrillFigure {
                name: "RPO rows",
                unit: "rows",
                achieved: lost,
                target: drill.rpo_rows.map(|r| r as f64),
                note: lost.is_none().then(|| why("writer_not_measured")).flatten(),
            },
            writer,
        );
        push(
            DrillFigure {
                name: "RPO bytes",
                unit: "B",
                achieved: found("rpo_bytes"),
                target: drill.rpo_bytes.map(|b| b as f64),
                note: None,
            },
            false,
        );
        let down = measured("downtime_ms");
        push(
            DrillFigure {
                name: "Downtime",
                unit: "ms",
                achieved: down,
                target: ms(drill.downtime),
                note: down.is_none().then(|| why("prober_not_measured")).flatten(),
            },
            prober,
        );
        let outage = measured("write_outage_ms");
        push(
            DrillFigure {
                name: "Write outage",
                unit: "ms",
                achieved: outage,
                target: ms(drill.write_outage),
                note: outage
                    .is_none()
                    .then(|| {
                        why("write_outage_not_measured").or_else(|| why("writer_not_measured"))
                    })
                    .flatten(),
            },
            false,
        );
        let info = [
            (writer, "Rows written", "rows", "rows_written"),
            (writer, "Rows found", "rows", "rows_found"),
            (prober, "Downtime, best client", "ms", "downtime_best_ms"),
            (prober, "Requests sent", "requests", "requests_sent"),
            (prober, "Requests failed", "requests", "requests_failed"),
        ];
        for (on, name, unit, key) in info {
            if on && let Some(v) = measured(key) {
                figures.push(DrillFigure {
                    name,
                    unit,
                    achieved: Some(v),
                    target: None,
                    note: None,
                });
            }
        }
        // A person's decision is part of a real failover's RTO; shown beside it, a missed RTO
        // says whether the systems or the wait for a person took the time.
        if let Some(w) = approval_wait {
            figures.push(DrillFigure {
                name: "Approval wait",
                unit: "ms",
                achieved: Some(w),
                target: None,
                note: None,
            });
        }
        let verdict = if figures.iter().any(|f| f.verdict() == Verdict::Missed) {
            Overall::Missed
        } else if figures
            .iter()
            .any(|f| f.target.is_some() && f.verdict() == Verdict::NotMeasured)
        {
            Overall::Incomplete
        } else {
            Overall::Met
        };
        Some(DrillVerdict { figures, verdict })
    }

    /// The verdict of a journaled run: its legs' outputs and its last `measured canary` record
    /// (a run that ended elsewhere, or was resumed).
    pub fn of_run(
        wf: &Workflow,
        legs: &[meridian_store::LegRecord],
        events: &[meridian_store::EventRecord],
    ) -> Option<DrillVerdict> {
        let canary = Self::canary_record(events);
        let outputs = legs.iter().map(|l| &l.output);
        Self::from_outputs(wf, &outputs, canary.as_ref(), approval_wait_ms(events))
    }

    /// The run's last `measured canary` record in a journal's events.
    fn canary_record(events: &[meridian_store::EventRecord]) -> Option<Json> {
        events.iter().rev().find_map(|e| match &e.event {
            meridian_protocol::Event::Measured { name, value } if name == crate::canary::REPORT => {
                Some(value.clone())
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_protocol::Event;
    use meridian_store::EventRecord;

    use super::approval_wait_ms;

    fn at(at_ms: i64, event: Event) -> EventRecord {
        EventRecord {
            seq: at_ms,
            at_ms,
            event,
        }
    }

    fn asked(step: &str) -> Event {
        Event::ApprovalRequired {
            step: step.into(),
            message: "go?".into(),
        }
    }

    #[test]
    fn approval_wait_adds_each_gate_from_its_question_to_its_answer() {
        assert_eq!(approval_wait_ms(&[]), None);
        // Asked, never answered (the run still waits): nothing waited to report yet.
        assert_eq!(approval_wait_ms(&[at(10, asked("promote"))]), None);
        let events = [
            at(100, asked("promote")),
            // A second run segment asks again; the wait counts from the first question.
            at(500, asked("promote")),
            at(
                73_800,
                Event::ApprovalGranted {
                    step: "promote".into(),
                    by: "--approve".into(),
                },
            ),
            at(80_000, asked("switch")),
            at(
                80_250,
                Event::ApprovalRejected {
                    step: "switch".into(),
                    by: "ops".into(),
                    comment: String::new(),
                },
            ),
        ];
        assert_eq!(approval_wait_ms(&events), Some(73_700.0 + 250.0));
    }
}
