//! `drill-report`: turns the timestamps a drill measured into achieved RTO, time to full
//! capacity and RPO, compared with the targets. The engine's drill summary reads `rto_ms`,
//! `capacity_ms`, `rpo_ms` and `rpo_bytes` from
//! step outputs; this step is where a workflow computes them (expressions have no arithmetic on
//! purpose).

use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs: when the fault happened (or was declared), when service was back, when the region
/// reached full capacity, and what the database step measured.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Unix ms of the fault (e.g. `region-lab` kill's `at_ms`).
    pub fault_at_ms: u64,
    /// Unix ms when the standby answered through DNS and the data plane.
    pub recovered_at_ms: u64,
    /// WAL bytes not replicated at failover (from `db-postgres` promote), if measured.
    #[serde(default)]
    pub rpo_bytes: Option<u64>,
    /// Replication delay at failover in ms, if measured.
    #[serde(default)]
    pub rpo_ms: Option<u64>,
    /// Unix ms when the recovered region reached full capacity (e.g. `region-lab` wait-ready's
    /// or scale's `capacity_ready_at_ms`), if measured: the time to full capacity is measured
    /// from `fault_at_ms` to here (0 when it was already there at the fault).
    #[serde(default)]
    pub capacity_ready_at_ms: Option<u64>,
    /// Targets, from the workflow's `drill:` block or inputs.
    #[serde(default)]
    pub rto_target_ms: Option<u64>,
    /// Target of the time to full capacity.
    #[serde(default)]
    pub capacity_target_ms: Option<u64>,
    #[serde(default)]
    pub rpo_target_ms: Option<u64>,
    #[serde(default)]
    pub rpo_target_bytes: Option<u64>,
    /// Fail the step (and so the run) when a target is missed (default false: report only).
    #[serde(default)]
    pub enforce: bool,
}

/// Achieved values and verdicts.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Output {
    pub rto_ms: u64,
    /// Fault → full capacity, when `capacity_ready_at_ms` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_bytes: Option<u64>,
    /// `true` when every target given was met (a target without a measurement is not met).
    pub met: bool,
    /// `met`, `missed` (a target was missed) or `incomplete` (none missed, but a target had no
    /// measurement: the drill cannot claim it was met).
    pub verdict: String,
    /// One line per target: `RTO 1834ms <= 60000ms: met`, `RPO not measured (target 1024B)`.
    pub verdicts: Vec<String>,
}

/// Computes the report (pure, tested on the host).
pub fn report(i: &Input) -> Result<Output, Error> {
    if i.recovered_at_ms < i.fault_at_ms {
        return Err(Error::invalid_input(format!(
            "recovered_at_ms ({}) is before fault_at_ms ({}): check which step outputs feed them",
            i.recovered_at_ms, i.fault_at_ms
        )));
    }
    let rto = i.recovered_at_ms - i.fault_at_ms;
    let mut verdicts = Vec::new();
    let (mut missed, mut unmeasured) = (false, false);
    let mut check =
        |name: &str, got: Option<u64>, target: Option<u64>, unit: &str| match (got, target) {
            (Some(g), Some(t)) => {
                let ok = g <= t;
                missed |= !ok;
                verdicts.push(format!(
                    "{name} {g}{unit} <= {t}{unit}: {}",
                    if ok { "met" } else { "MISSED" }
                ));
            }
            (None, Some(t)) => {
                unmeasured = true;
                verdicts.push(format!(
                    "{name} not measured (target {t}{unit}): incomplete"
                ));
            }
            _ => {}
        };
    let capacity = i
        .capacity_ready_at_ms
        .map(|c| c.saturating_sub(i.fault_at_ms));
    check("RTO", Some(rto), i.rto_target_ms, "ms");
    check("Capacity", capacity, i.capacity_target_ms, "ms");
    check("RPO", i.rpo_ms, i.rpo_target_ms, "ms");
    check("RPO", i.rpo_bytes, i.rpo_target_bytes, "B");
    let verdict = match (missed, unmeasured) {
        (true, _) => "missed",
        (false, true) => "incomplete",
        (false, false) => "met",
    };
    Ok(Output {
        rto_ms: rto,
        capacity_ms: capacity,
        rpo_ms: i.rpo_ms,
        rpo_bytes: i.rpo_bytes,
        met: verdict == "met",
        verdict: verdict.to_owned(),
        verdicts,
    })
}

pub struct DrillReport;

impl Step for DrillReport {
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("drill-report", env!("CARGO_PKG_VERSION")).description(
            "Achieved RTO, time to full capacity and RPO of a DR drill against its targets.",
        )
    }

    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let out = report(&input)?;
        for v in &out.verdicts {
            ctx.log.info(v);
        }
        if input.enforce && !out.met {
            return Err(Error::fatal(format!(
                "drill missed its targets: {}",
                out.verdicts.join("; ")
            )));
        }
        Ok(out)
    }
}

meridian_sdk::export_step!(DrillReport);

#[cfg(test)]
mod tests {
    use super::*;

    fn input(fault: u64, rec: u64) -> Input {
        Input {
            fault_at_ms: fault,
            recovered_at_ms: rec,
            rpo_bytes: Some(0),
            rpo_ms: None,
            capacity_ready_at_ms: None,
            rto_target_ms: Some(60_000),
            capacity_target_ms: None,
            rpo_target_ms: None,
            rpo_target_bytes: Some(1024),
            enforce: false,
        }
    }

    #[test]
    fn computes_and_compares() {
        let out = report(&input(1_000, 3_500)).unwrap();
        assert_eq!(out.rto_ms, 2_500);
        assert!(out.met);
        assert_eq!(out.verdicts.len(), 2);
        let out = report(&input(0, 90_000)).unwrap();
        assert!(!out.met);
        assert!(out.verdicts[0].contains("MISSED"));
    }

    #[test]
    fn a_target_without_a_measurement_is_incomplete_never_met() {
        let mut i = input(1_000, 3_500);
        i.rpo_bytes = None;
        let out = report(&i).unwrap();
        assert!(!out.met);
        assert_eq!(out.verdict, "incomplete");
        assert!(
            out.verdicts[1].contains("not measured"),
            "{:?}",
            out.verdicts
        );
        // A missed target outranks a missing measurement.
        let mut i = input(0, 90_000);
        i.rpo_bytes = None;
        assert_eq!(report(&i).unwrap().verdict, "missed");
    }

    #[test]
    fn time_to_full_capacity_is_measured_from_the_fault() {
        let mut i = input(1_000, 3_500);
        i.capacity_ready_at_ms = Some(4_200);
        i.capacity_target_ms = Some(5_000);
        let out = report(&i).unwrap();
        assert_eq!((out.rto_ms, out.capacity_ms), (2_500, Some(3_200)));
        assert!(
            out.verdicts
                .contains(&"Capacity 3200ms <= 5000ms: met".to_owned())
        );
        // Full capacity before the fault (a standby kept at full size) counts as 0.
        i.capacity_ready_at_ms = Some(500);
        assert_eq!(report(&i).unwrap().capacity_ms, Some(0));
        // A target and no measurement: incomplete.
        i.capacity_ready_at_ms = None;
        let out = report(&i).unwrap();
        assert_eq!(
            (out.capacity_ms, out.verdict.as_str()),
            (None, "incomplete")
        );
        // Missed.
        i.capacity_ready_at_ms = Some(9_000);
        assert_eq!(report(&i).unwrap().verdict, "missed");
    }

    #[test]
    fn rejects_time_travel() {
        assert!(report(&input(5, 4)).is_err());
    }
}
