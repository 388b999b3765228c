//! `drill-report`: turns the timestamps a drill measured into achieved RTO and RPO, compared
//! with the targets. The engine's drill summary reads `rto_ms`, `rpo_ms` and `rpo_bytes` from
//! step outputs; this step is where a workflow computes them (expressions have no arithmetic on
//! purpose).

use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs: when the fault happened (or was declared), when service was back, and what the
/// database step measured.
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
    /// Targets, from the workflow's `drill:` block or inputs.
    #[serde(default)]
    pub rto_target_ms: Option<u64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_bytes: Option<u64>,
    /// `true` when every target given was met.
    pub met: bool,
    /// One line per target: `RTO 1834ms <= 60000ms: met`.
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
    let mut met = true;
    let mut check = |name: &str, got: Option<u64>, target: Option<u64>, unit: &str| {
        if let (Some(g), Some(t)) = (got, target) {
            let ok = g <= t;
            met &= ok;
            verdicts.push(format!(
                "{name} {g}{unit} <= {t}{unit}: {}",
                if ok { "met" } else { "MISSED" }
            ));
        }
    };
    check("RTO", Some(rto), i.rto_target_ms, "ms");
    check("RPO", i.rpo_ms, i.rpo_target_ms, "ms");
    check("RPO", i.rpo_bytes, i.rpo_target_bytes, "B");
    Ok(Output {
        rto_ms: rto,
        rpo_ms: i.rpo_ms,
        rpo_bytes: i.rpo_bytes,
        met,
        verdicts,
    })
}

pub struct DrillReport;

impl Step for DrillReport {
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("drill-report", env!("CARGO_PKG_VERSION"))
            .description("Achieved RTO/RPO of a DR drill against its targets.")
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
            rto_target_ms: Some(60_000),
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
    fn rejects_time_travel() {
        assert!(report(&input(5, 4)).is_err());
    }
}
