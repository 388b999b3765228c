//! The drill verdict: what a run measured (step outputs named `rto_ms`, `rpo_ms`, `rpo_bytes`)
//! against the workflow's `drill:` targets.

use meridian_engine::RunReport;
use meridian_model::Workflow;
use serde::Serialize;
use serde_json::Value as Json;

/// One figure of a drill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillFigure {
    /// `RTO`, `RPO`, `RPO bytes`.
    pub name: &'static str,
    /// `ms` or `B`.
    pub unit: &'static str,
    pub achieved: Option<f64>,
    pub target: Option<f64>,
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

/// Every figure of a drill run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillVerdict {
    pub figures: Vec<DrillFigure>,
}

impl DrillVerdict {
    /// `None` when the workflow has no `drill:` block. RTO is always listed; the RPO figures
    /// when targeted or measured.
    pub fn judge(wf: &Workflow, r: &RunReport) -> Option<DrillVerdict> {
        Self::from_outputs(wf, &r.steps.iter().flat_map(|s| &s.legs).map(|l| &l.output))
    }

    /// The same from the legs' outputs (a journal's legs, for a run that ended elsewhere); a
    /// figure measured by several legs is taken from the last.
    pub fn from_outputs<'a, I>(wf: &Workflow, outputs: &I) -> Option<DrillVerdict>
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
        let mut figures = vec![DrillFigure {
            name: "RTO",
            unit: "ms",
            achieved: found("rto_ms"),
            target: drill.rto.map(|d| d.as_millis() as f64),
        }];
        let rpo = DrillFigure {
            name: "RPO",
            unit: "ms",
            achieved: found("rpo_ms"),
            target: drill.rpo.map(|d| d.as_millis() as f64),
        };
        if rpo.achieved.is_some() || rpo.target.is_some() {
            figures.push(rpo);
        }
        let bytes = DrillFigure {
            name: "RPO bytes",
            unit: "B",
            achieved: found("rpo_bytes"),
            target: drill.rpo_bytes.map(|b| b as f64),
        };
        if bytes.achieved.is_some() || bytes.target.is_some() {
            figures.push(bytes);
        }
        Some(DrillVerdict { figures })
    }
}
