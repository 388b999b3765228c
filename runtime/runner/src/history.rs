//! Drill history: each drill run's figures and verdict, and a summary over the last N drills
//! (`meridian drills list`, the server's drill page).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use meridian_model::Workflow;
use meridian_protocol::{Mode, RunStatus};
use meridian_store::{Journal, StoreError};
use serde::Serialize;

use crate::{DrillVerdict, Overall};

/// One drill run.
#[derive(Clone, Debug, Serialize)]
pub struct DrillRun {
    pub run: String,
    pub workflow: String,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `None` when the workflow file changed or is gone since (the figures cannot be judged
    /// against targets that may have changed).
    pub drill: Option<DrillVerdict>,
}

impl DrillRun {
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.drill
            .as_ref()?
            .figures
            .iter()
            .find(|f| f.name == name)?
            .achieved
    }
}

/// Over the drills listed.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub drills: usize,
    pub met: usize,
    pub missed: usize,
    pub incomplete: usize,
    /// Met / drills judged.
    pub pass_rate: Option<f64>,
    pub rto_p50_ms: Option<f64>,
    pub rto_p95_ms: Option<f64>,
    /// The longest time to full capacity.
    pub worst_capacity_ms: Option<f64>,
    pub worst_rows_lost: Option<f64>,
    pub worst_downtime_ms: Option<f64>,
}

/// Whether a drill's run in this state is a drill's result: it finished, and nobody cancelled
/// it (a run an operator stopped on purpose counted as an incomplete drill in the pass rate and
/// became a workflow's "last drill"); one going or waiting at a gate is not finished.
pub fn is_drill_result(status: RunStatus) -> bool {
    !matches!(
        status,
        RunStatus::Running | RunStatus::AwaitingApproval | RunStatus::Cancelled
    )
}

/// A run of drill workflow `workflow` that is going now, applied: waiting at a gate, or running
/// with a lease that has not expired and whose holder `dead` does not know to be gone (a
/// killed `meridian run` of this machine). Its id and holder, if any. Two drills at once break
/// the same region twice and each measures the other's failover: the second one reported "met"
/// with signed evidence for a promotion it found done already.
pub fn drill_going(
    journal: &dyn Journal,
    workflow: &str,
    dead: &dyn Fn(&str) -> bool,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    for status in [RunStatus::Running, RunStatus::AwaitingApproval] {
        let page = journal.query_runs(&meridian_store::RunQuery {
            workflow: Some(workflow.to_string()),
            status: Some(status),
            mode: Some(Mode::Apply),
            limit: 20,
            ..meridian_store::RunQuery::default()
        })?;
        for r in page.runs {
            let holder = journal.lease_holder(&r.id)?;
            let live = match &holder {
                Some(h) => !dead(h),
                None => status == RunStatus::AwaitingApproval,
            };
            if live {
                return Ok(Some((r.id, holder)));
            }
        }
    }
    Ok(None)
}

/// The last `last` finished drill runs (apply mode, workflows with a `drill:` block; a run
/// cancelled by an operator is not one), newest first; only `workflow`'s when given.
pub fn history(
    journal: &dyn Journal,
    workflow: Option<&str>,
    last: usize,
) -> Result<Vec<DrillRun>, StoreError> {
    let mut loaded: HashMap<(String, String), Option<Arc<Workflow>>> = HashMap::new();
    let mut out = Vec::new();
    // Applied runs (of `workflow`), a page at a time from the store's index, until `last`
    // drills are found or the history ends.
    let q = meridian_store::RunQuery {
        workflow: workflow.map(str::to_string),
        mode: Some(Mode::Apply),
        limit: 200,
        ..meridian_store::RunQuery::default()
    };
    for r in meridian_store::query_all(journal, q) {
        if out.len() >= last {
            break;
        }
        let r = r?;
        if !is_drill_result(r.status) {
            continue;
        }
        let (record, _) = journal.run(&r.id)?;
        let wf = loaded
            .entry((record.workflow_path.clone(), record.workflow_sha256.clone()))
            .or_insert_with(|| {
                crate::load(Path::new(&record.workflow_path))
                    .ok()
                    .filter(|l| l.sha256() == record.workflow_sha256)
                    .map(|l| l.workflow)
            })
            .clone();
        let Some(wf) = wf.filter(|w| w.drill.is_some()) else {
            continue;
        };
        let legs = journal.legs(&r.id)?;
        let events = journal.events(&r.id)?;
        let drill = DrillVerdict::of_run(&wf, &legs, &events);
        out.push(DrillRun {
            run: r.id,
            workflow: r.workflow,
            status: r.status,
            created_at_ms: r.created_at_ms,
            finished_at_ms: r.finished_at_ms,
            drill,
        });
    }
    Ok(out)
}

/// The drill of run `run_id` as the journal has it: `None` when its workflow has no `drill:`
/// block, or changed or went since (see [`DrillRun::drill`]).
pub fn of_run(journal: &dyn Journal, run_id: &str) -> Result<Option<DrillVerdict>, StoreError> {
    let (record, _) = journal.run(run_id)?;
    let Some(wf) = crate::load(Path::new(&record.workflow_path))
        .ok()
        .filter(|l| l.sha256() == record.workflow_sha256)
        .map(|l| l.workflow)
        .filter(|w| w.drill.is_some())
    else {
        return Ok(None);
    };
    let legs = journal.legs(run_id)?;
    let events = journal.events(run_id)?;
    Ok(DrillVerdict::of_run(&wf, &legs, &events))
}

/// Pass rate, RTO percentiles (nearest rank), the worst time to full capacity, rows lost and
/// downtime; the figures over complete drills (met or missed) only.
pub fn summarize(runs: &[DrillRun]) -> Summary {
    let mut s = Summary {
        drills: runs.len(),
        ..Summary::default()
    };
    for r in runs {
        match r.drill.as_ref().map(|d| d.verdict) {
            Some(Overall::Met) => s.met += 1,
            Some(Overall::Missed) => s.missed += 1,
            Some(Overall::Incomplete) | None => s.incomplete += 1,
        }
    }
    if s.drills > 0 {
        s.pass_rate = Some(s.met as f64 / s.drills as f64);
    }
    // Figures of complete drills only (met or missed): an incomplete one's are partial — a
    // resumed drill's RTO counts the time nobody drove it — and set the p95 on their own.
    let complete: Vec<&DrillRun> = runs
        .iter()
        .filter(|r| {
            r.drill
                .as_ref()
                .is_some_and(|d| d.verdict != Overall::Incomplete)
        })
        .collect();
    let mut rto: Vec<f64> = complete.iter().filter_map(|r| r.figure("RTO")).collect();
    rto.sort_by(f64::total_cmp);
    let rank = |p: f64| -> Option<f64> {
        if rto.is_empty() {
            return None;
        }
        let i = ((p * rto.len() as f64).ceil() as usize).clamp(1, rto.len()) - 1;
        Some(rto[i])
    };
    s.rto_p50_ms = rank(0.50);
    s.rto_p95_ms = rank(0.95);
    let worst = |name: &str| {
        complete
            .iter()
            .filter_map(|r| r.figure(name))
            .max_by(f64::total_cmp)
    };
    s.worst_capacity_ms = worst("Capacity");
    s.worst_rows_lost = worst("RPO rows");
    s.worst_downtime_ms = worst("Downtime");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DrillFigure;

    fn run(verdict: Overall, rto: f64, lost: Option<f64>) -> DrillRun {
        let mut figures = vec![DrillFigure {
            name: "RTO",
            unit: "ms",
            achieved: Some(rto),
            target: Some(60_000.0),
            note: None,
        }];
        if let Some(l) = lost {
            figures.push(DrillFigure {
                name: "RPO rows",
                unit: "rows",
                achieved: Some(l),
                target: Some(10.0),
                note: None,
            });
        }
        DrillRun {
            run: "r".into(),
            workflow: "w".into(),
            status: RunStatus::Succeeded,
            created_at_ms: 0,
            finished_at_ms: None,
            drill: Some(DrillVerdict { figures, verdict }),
        }
    }

    #[test]
    fn summary_counts_verdicts_and_takes_nearest_rank_percentiles() {
        let runs: Vec<DrillRun> = (1..=10)
            .map(|i| {
                let v = if i == 3 {
                    Overall::Missed
                } else if i == 7 {
                    Overall::Incomplete
                } else {
                    Overall::Met
                };
                run(
                    v,
                    f64::from(i) * 100.0,
                    (i % 2 == 0).then_some(f64::from(i)),
                )
            })
            .collect();
        let s = summarize(&runs);
        assert_eq!((s.drills, s.met, s.missed, s.incomplete), (10, 8, 1, 1));
        assert_eq!(s.pass_rate, Some(0.8));
        assert_eq!((s.rto_p50_ms, s.rto_p95_ms), (Some(500.0), Some(1000.0)));
        assert_eq!(s.worst_rows_lost, Some(10.0));
        assert_eq!(s.worst_capacity_ms, None);
        assert_eq!(s.worst_downtime_ms, None);
        assert_eq!(summarize(&[]), Summary::default());
        // An incomplete drill (resumed after a pause nobody drove) counts as a drill, not in
        // the figures.
        let mut more = runs.clone();
        more.push(run(Overall::Incomplete, 50_000.0, Some(99.0)));
        let s = summarize(&more);
        assert_eq!((s.drills, s.incomplete), (11, 2));
        assert_eq!(
            (s.rto_p95_ms, s.worst_rows_lost),
            (Some(1000.0), Some(10.0))
        );
    }
}
