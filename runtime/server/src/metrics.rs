//! `/metrics` in the Prometheus text format (version 0.0.4).
//!
//! Schedule lateness (how long after its due time a tick fired, measured when the scheduler
//! has claimed the tick, before the run starts) is exposed twice: the histogram
//! `meridian_schedule_lateness_seconds` over the server's life, and the summary
//! `meridian_schedule_lateness_recent_seconds` whose quantiles (0.5, 0.99, and 1 = the
//! largest) are nearest-rank quantiles of the last [`LATE_RECENT`] ticks fired; its `_sum` and
//! `_count` cover the server's life, as Prometheus summaries do.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use meridian_protocol::RunStatus;
use meridian_runner::DrillVerdict;

/// Upper bounds (seconds) of the step-duration histogram.
const STEP_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Upper bounds (seconds) of the schedule-lateness histogram.
const LATE_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// How many of the latest lateness samples the recent-lateness summary keeps.
pub const LATE_RECENT: usize = 4096;
/// The quantiles of the recent-lateness summary (1 is the largest sample).
const LATE_QUANTILES: [f64; 3] = [0.5, 0.99, 1.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn write(&self, out: &mut String, name: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.n);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.n);
    }
}

/// A drill's figures: name → (unit, achieved, target).
type Figures = BTreeMap<&'static str, (&'static str, Option<f64>, Option<f64>)>;

#[derive(Default)]
struct Inner {
    ended: BTreeMap<(String, &'static str), u64>,
    steps: Histogram,
    lateness: Histogram,
    /// The latest lateness samples (seconds), oldest first, at most [`LATE_RECENT`].
    recent_lateness: VecDeque<f64>,
    /// workflow → (figure name → (achieved, target)).
    drills: BTreeMap<String, Figures>,
    paused: BTreeMap<String, bool>,
    ready: BTreeMap<String, bool>,
    drift: BTreeMap<String, &'static str>,
    skipped: BTreeMap<String, u64>,
}

/// What the server counts while it runs.
#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    pub fn run_ended(&self, workflow: &str, status: RunStatus) {
        *self
            .0
            .lock()
            .unwrap()
            .ended
            .entry((workflow.to_string(), status.as_str()))
            .or_default() += 1;
    }

    pub fn step_finished(&self, d: Duration) {
        self.0
            .lock()
            .unwrap()
            .steps
            .observe(&STEP_BUCKETS, d.as_secs_f64());
    }

    pub fn schedule_fired(&self, late: Duration) {
        let late = late.as_secs_f64();
        let mut inner = self.0.lock().unwrap();
        inner.lateness.observe(&LATE_BUCKETS, late);
        if inner.recent_lateness.len() == LATE_RECENT {
            inner.recent_lateness.pop_front();
        }
        inner.recent_lateness.push_back(late);
    }

    /// Ticks a late scheduler passed over (not fired: there is no catch-up).
    pub fn ticks_skipped(&self, id: &str, n: u64) {
        *self
            .0
            .lock()
            .unwrap()
            .skipped
            .entry(id.to_string())
            .or_default() += n;
    }

    pub fn schedule_paused(&self, id: &str, paused: bool) {
        self.0.lock().unwrap().paused.insert(id.to_string(), paused);
    }

    pub fn drill(&self, workflow: &str, d: &DrillVerdict) {
        let mut inner = self.0.lock().unwrap();
        let figures = inner.drills.entry(workflow.to_string()).or_default();
        for f in &d.figures {
            figures.insert(f.name, (f.unit, f.achieved, f.target));
        }
    }

    /// The last readiness answer of a workflow.
    pub fn ready(&self, workflow: &str, ready: bool) {
        self.0
            .lock()
            .unwrap()
            .ready
            .insert(workflow.to_string(), ready);
    }

    /// The last drift answer of a workflow: `in-sync`, `drift` or `unknown`.
    pub fn drift(&self, workflow: &str, state: &'static str) {
        self.0
            .lock()
            .unwrap()
            .drift
            .insert(workflow.to_string(), state);
    }

    /// The exposition; `states` counts the journal's runs by state, `active` the runs this
    /// server drives now.
    pub fn render(
        &self,
        states: &BTreeMap<(&'static str, &'static str), u64>,
        active: usize,
    ) -> String {
        let inner = self.0.lock().unwrap();
        let mut out = String::new();
        out.push_str("# HELP meridian_runs Runs in the journal by state and mode (`plan`: a plan, or a server's readiness or drift check).\n# TYPE meridian_runs gauge\n");
        for ((state, mode), n) in states {
            let _ = writeln!(
                out,
                "meridian_runs{{state=\"{state}\",mode=\"{mode}\"}} {n}"
            );
        }
        out.push_str("# HELP meridian_runs_active Runs this server is driving now.\n# TYPE meridian_runs_active gauge\n");
        let _ = writeln!(out, "meridian_runs_active {active}");
        out.push_str("# HELP meridian_runs_ended_total Runs this server drove to an end, by workflow and state.\n# TYPE meridian_runs_ended_total counter\n");
        for ((wf, state), n) in &inner.ended {
            let _ = writeln!(
                out,
                "meridian_runs_ended_total{{workflow=\"{}\",state=\"{state}\"}} {n}",
                label(wf)
            );
        }
        out.push_str("# HELP meridian_step_duration_seconds Duration of finished step legs.\n# TYPE meridian_step_duration_seconds histogram\n");
        inner
            .steps
            .write(&mut out, "meridian_step_duration_seconds", &STEP_BUCKETS);
        out.push_str("# HELP meridian_schedule_lateness_seconds How late schedule ticks fired.\n# TYPE meridian_schedule_lateness_seconds histogram\n");
        inner.lateness.write(
            &mut out,
            "meridian_schedule_lateness_seconds",
            &LATE_BUCKETS,
        );
        let _ = writeln!(
            out,
            "# HELP meridian_schedule_lateness_recent_seconds How late the latest {LATE_RECENT} schedule ticks fired (nearest-rank quantiles; quantile 1 is the largest; sum and count since start).\n# TYPE meridian_schedule_lateness_recent_seconds summary"
        );
        let quantiles = nearest_rank(&inner.recent_lateness, &LATE_QUANTILES);
        for (q, v) in LATE_QUANTILES.iter().zip(quantiles) {
            let v = v.map_or("NaN".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "meridian_schedule_lateness_recent_seconds{{quantile=\"{q}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "meridian_schedule_lateness_recent_seconds_sum {}",
            inner.lateness.sum
        );
        let _ = writeln!(
            out,
            "meridian_schedule_lateness_recent_seconds_count {}",
            inner.lateness.n
        );
        out.push_str("# HELP meridian_schedule_ticks_skipped_total Ticks not fired because the scheduler was late.\n# TYPE meridian_schedule_ticks_skipped_total counter\n");
        for (id, n) in &inner.skipped {
            let _ = writeln!(
                out,
                "meridian_schedule_ticks_skipped_total{{schedule=\"{}\"}} {n}",
                label(id)
            );
        }
        out.push_str("# HELP meridian_schedule_paused Whether a schedule is paused.\n# TYPE meridian_schedule_paused gauge\n");
        for (id, p) in &inner.paused {
            let _ = writeln!(
                out,
                "meridian_schedule_paused{{schedule=\"{}\"}} {}",
                label(id),
                u8::from(*p)
            );
        }
        out.push_str("# HELP meridian_ready Whether the workflow was ready at its last readiness check.\n# TYPE meridian_ready gauge\n");
        for (wf, r) in &inner.ready {
            let _ = writeln!(
                out,
                "meridian_ready{{workflow=\"{}\"}} {}",
                label(wf),
                u8::from(*r)
            );
        }
        out.push_str("# HELP meridian_drift Whether the workflow's gateways differed from their ADC files at the last drift check (1 drift, 0 in sync, -1 unknown).\n# TYPE meridian_drift gauge\n");
        for (wf, state) in &inner.drift {
            let v = match *state {
                "drift" => 1,
                "in-sync" => 0,
                _ => -1,
            };
            let _ = writeln!(out, "meridian_drift{{workflow=\"{}\"}} {v}", label(wf));
        }
        out.push_str("# HELP meridian_drill_achieved Last drill's achieved figure per workflow (see unit).\n# TYPE meridian_drill_achieved gauge\n");
        let mut targets = String::new();
        for (wf, figures) in &inner.drills {
            for (name, (unit, achieved, target)) in figures {
                let unit = if *unit == "B" { "bytes" } else { unit };
                let labels = format!(
                    "workflow=\"{}\",figure=\"{name}\",unit=\"{unit}\"",
                    label(wf)
                );
                if let Some(a) = achieved {
                    let _ = writeln!(out, "meridian_drill_achieved{{{labels}}} {a}");
                }
                if let Some(t) = target {
                    let _ = writeln!(targets, "meridian_drill_target{{{labels}}} {t}");
                }
            }
        }
        out.push_str("# HELP meridian_drill_target The workflow's drill target per figure.\n# TYPE meridian_drill_target gauge\n");
        out.push_str(&targets);
        out
    }
}

/// Nearest-rank quantiles of `samples` (the smallest sample with at least `q` of them at or
/// below it); `None` each when there are none.
fn nearest_rank(samples: &VecDeque<f64>, quantiles: &[f64]) -> Vec<Option<f64>> {
    let mut sorted: Vec<f64> = samples.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    quantiles
        .iter()
        .map(|q| {
            let rank = (q * sorted.len() as f64).ceil() as usize;
            sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
        })
        .collect()
}

/// A label value: backslash, quote and newline escaped as the format requires.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.step_finished(Duration::from_millis(20));
        m.step_finished(Duration::from_secs(2));
        m.run_ended("a\"b", RunStatus::Failed);
        let text = m.render(
            &BTreeMap::from([(("failed", "apply"), 1), (("failed", "plan"), 3)]),
            0,
        );
        assert!(
            text.contains("meridian_runs{state=\"failed\",mode=\"plan\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("meridian_step_duration_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meridian_step_duration_seconds_bucket{le=\"5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("meridian_step_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("workflow=\"a\\\"b\",state=\"failed\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn recent_lateness_quantiles_cover_the_latest_ticks_only() {
        let m = Metrics::default();
        let empty = m.render(&BTreeMap::new(), 0);
        assert!(
            empty.contains("meridian_schedule_lateness_recent_seconds{quantile=\"0.5\"} NaN"),
            "{empty}"
        );
        // 100 slow ticks, then a full window of fast ones: 4096 ms down to 1 ms.
        for _ in 0..100 {
            m.schedule_fired(Duration::from_secs(60));
        }
        for i in (1..=LATE_RECENT as u64).rev() {
            m.schedule_fired(Duration::from_millis(i));
        }
        let text = m.render(&BTreeMap::new(), 0);
        for (q, v) in [("0.5", "2.048"), ("0.99", "4.056"), ("1", "4.096")] {
            let line =
                format!("meridian_schedule_lateness_recent_seconds{{quantile=\"{q}\"}} {v}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(
            text.contains("meridian_schedule_lateness_recent_seconds_count 4196\n"),
            "{text}"
        );
        // The histogram still counts every tick.
        assert!(
            text.contains("meridian_schedule_lateness_seconds_count 4196\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE meridian_schedule_lateness_recent_seconds summary\n"),
            "{text}"
        );
    }
}
