//! Readiness: would a failover work right now? `meridian ready WORKFLOW` runs the workflow in
//! plan mode (every step's real code, every change recorded instead of made, approval gates
//! approved: a plan changes nothing) and judges what the plan saw:
//!
//! * `plan`: every step planned without error — a provider that refuses the credentials, a DNS
//!   zone or record that is missing, an unreachable database all fail here, by step;
//! * `replication`: every database status reports healthy (the standby streams, no problem
//!   found), its lag is within the drill's `rpo-bytes` target, and a primary it reports has a
//!   standby streaming from it (after a failover the promoted standby is a primary alone:
//!   nothing to fail over to);
//! * `config`: the gateway configuration steps (`adc-apisix`) would change nothing: the regions
//!   already serve what the ADC files say;
//! * `service`: with a drill prober, one request through the GSLB name answers as clients need;
//! * `components`: every component is present, and every file component is pinned by sha256.

use std::time::Instant;

use meridian_engine::RunReport;
use meridian_model::{ComponentRef, Workflow};
use meridian_protocol::{Mode, Outcome};
use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::{Launch, Loaded, Runner, RunnerError};

/// One readiness rule's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub rule: &'static str,
    pub ok: bool,
    /// What was seen; for a failed rule, what is wrong and where.
    pub detail: String,
}

/// The answer of `meridian ready`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub workflow: String,
    /// The plan run that was judged (in the journal like any plan).
    pub run_id: String,
    pub ready: bool,
    pub took_ms: u64,
    pub checks: Vec<Check>,
}

impl Runner {
    /// Plans `wf` with `launch`'s inputs and secrets and judges the readiness rules.
    pub async fn ready(&self, wf: &Loaded, mut launch: Launch) -> Result<Readiness, RunnerError> {
        let started = Instant::now();
        as_plan(wf, &mut launch);
        let secrets = crate::secrets::load(&wf.workflow, launch.secrets_file.as_deref())?;
        let inputs = meridian_engine::inputs::resolve(&wf.workflow, &launch.raw_inputs)
            .map_err(RunnerError::Problems)?;
        let done = self.start(wf, launch).await?;
        let mut checks = Vec::new();
        checks.push(plan_check(&done.report));
        checks.extend(replication_checks(&wf.workflow, &done.report));
        checks.extend(config_checks(&wf.workflow, &done.report));
        if let Some(c) = service_check(&wf.workflow, &inputs, &secrets).await {
            checks.push(c);
        }
        checks.push(components_check(&wf.workflow));
        Ok(Readiness {
            workflow: wf.workflow.name.clone(),
            run_id: done.report.run_id.clone(),
            ready: checks.iter().all(|c| c.ok),
            took_ms: started.elapsed().as_millis() as u64,
            checks,
        })
    }
}

/// Makes `launch` a plan that judges what it saw: plan mode, every approval gate approved (a
/// plan changes nothing), nobody asked.
pub(crate) fn as_plan(wf: &Loaded, launch: &mut Launch) {
    launch.mode = Mode::Plan;
    launch.approver = None;
    // Every region is read: one that cannot be must not cancel the others' reads.
    launch.keep_going = true;
    launch.approve = wf
        .workflow
        .steps
        .iter()
        .filter(|s| s.approval.is_some())
        .map(|s| s.id.value.clone())
        .collect();
}

fn error_text(e: &meridian_protocol::StepError) -> String {
    meridian_protocol::text::for_terminal(&e.to_string(), "  ").into_owned()
}

fn plan_check(r: &RunReport) -> Check {
    let failed: Vec<String> = r
        .steps
        .iter()
        .flat_map(|s| s.legs.iter().map(move |l| (s, l)))
        .filter(|(_, l)| l.outcome == Outcome::Failure)
        .map(|(s, l)| match &l.error {
            Some(e) => format!("{}: {}", s.id, error_text(e)),
            None => format!("{}: failed", s.id),
        })
        .collect();
    Check {
        rule: "plan",
        ok: failed.is_empty(),
        detail: if failed.is_empty() {
            format!(
                "{} steps planned; providers accepted the credentials",
                r.steps.len()
            )
        } else {
            failed.join("; ")
        },
    }
}

fn outputs(r: &RunReport) -> impl Iterator<Item = (&str, &Json)> {
    r.steps
        .iter()
        .flat_map(|s| s.legs.iter().map(move |l| (s.id.as_str(), &l.output)))
}

fn replication_checks(wf: &Workflow, r: &RunReport) -> Vec<Check> {
    let target = wf.drill.as_ref().and_then(|d| d.rpo_bytes);
    outputs(r)
        .filter(|(_, o)| o.get("healthy").is_some() && o.get("role").is_some())
        .map(|(step, o)| replication_check(step, o, target))
        .collect()
}

/// One database status (`db-postgres status`'s output) judged for a failover.
fn replication_check(step: &str, o: &Json, target: Option<u64>) -> Check {
    let healthy = o["healthy"].as_bool().unwrap_or(false);
    let lag = o["lag_bytes"].as_u64();
    let problems: Vec<&str> = o["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    let over = matches!((lag, target), (Some(l), Some(t)) if l > t);
    // A primary nothing replicates from (a standby already promoted, a standby gone) leaves
    // nothing to fail over to, healthy as it is.
    let list = |k: &str| o[k].as_array().map_or(&[][..], Vec::as_slice);
    let streaming = list("replicas")
        .iter()
        .filter(|r| r["state"] == "streaming")
        .count()
        + list("subscriptions").len();
    let alone = o["role"] == "primary" && streaming == 0;
    let mut detail = format!(
        "{step}: {} {}, lag {}",
        o["role"].as_str().unwrap_or("?"),
        o["connection"].as_str().unwrap_or("?"),
        lag.map_or("unknown".to_string(), |l| format!("{l} B"))
    );
    if over {
        detail.push_str(&format!(
            " (above the drill's rpo-bytes {} B)",
            target.unwrap_or(0)
        ));
    }
    if alone {
        detail.push_str(": a primary no standby replicates from — nothing to fail over to");
    }
    if !problems.is_empty() {
        detail.push_str(&format!(": {}", problems.join("; ")));
    }
    Check {
        rule: "replication",
        ok: healthy && !over && !alone,
        detail: meridian_protocol::text::for_terminal(&detail, "  ").into_owned(),
    }
}

fn config_checks(wf: &Workflow, r: &RunReport) -> Vec<Check> {
    let adc: std::collections::HashSet<&str> = wf
        .steps
        .iter()
        .filter(|s| s.runs_builtin("adc-apisix"))
        .map(|s| s.id.value.as_str())
        .collect();
    r.steps
        .iter()
        .filter(|s| adc.contains(s.id.as_str()))
        .flat_map(|s| s.legs.iter().map(move |l| (s, l)))
        .filter(|(_, l)| l.outcome == Outcome::Success)
        .map(|(s, l)| Check {
            rule: "config",
            ok: l.plan.is_empty(),
            detail: if l.plan.is_empty() {
                format!("{}: the gateway already serves the ADC files", s.id)
            } else {
                format!(
                    "{}: the gateway differs from the ADC files ({} change{} to make)",
                    s.id,
                    l.plan.len(),
                    if l.plan.len() == 1 { "" } else { "s" }
                )
            },
        })
        .collect()
}

async fn service_check(
    wf: &Workflow,
    inputs: &serde_json::Map<String, Json>,
    secrets: &std::collections::BTreeMap<String, String>,
) -> Option<Check> {
    let run = serde_json::json!({"id": "ready", "workflow": wf.name, "mode": "plan"});
    let plan = match crate::canary::CanaryPlan::resolve(wf, inputs, secrets, run) {
        Ok(p) => p?.prober?,
        Err(e) => {
            return Some(Check {
                rule: "service",
                ok: false,
                detail: e,
            });
        }
    };
    let url = plan.url.clone();
    Some(match crate::canary::probe_once(plan).await {
        Ok(()) => Check {
            rule: "service",
            ok: true,
            detail: format!("{url} answers through the GSLB"),
        },
        Err(e) => Check {
            rule: "service",
            ok: false,
            detail: meridian_protocol::text::for_terminal(&format!("{url}: {e}"), "  ")
                .into_owned(),
        },
    })
}

fn components_check(wf: &Workflow) -> Check {
    let mut problems = Vec::new();
    for s in &wf.steps {
        match &s.component {
            None => problems.push(format!("{}: `uses` does not name a component", s.id.value)),
            Some(ComponentRef::Builtin { name, .. }) => {
                if meridian_artifacts::builtin(name).is_none() {
                    problems.push(format!("{}: no built-in step `{name}`", s.id.value));
                }
            }
            Some(ComponentRef::Path { path, sha256 }) => match std::fs::read(path) {
                Err(e) => problems.push(format!("{}: {}: {e}", s.id.value, path.display())),
                Ok(bytes) if sha256.is_none() => problems.push(format!(
                    "{}: {} is not pinned; pin it: `uses: {}@sha256:{}`",
                    s.id.value,
                    path.display(),
                    s.uses.value,
                    hex::encode(Sha256::digest(&bytes))
                )),
                Ok(_) => {}
            },
            Some(ComponentRef::Oci { reference, sha256 }) => {
                if sha256.is_none() {
                    problems.push(format!(
                        "{}: oci://{reference} is a tag, not pinned; `meridian step pull` prints the digest to pin",
                        s.id.value
                    ));
                }
            }
        }
    }
    Check {
        rule: "components",
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "{} steps: built in or pinned by sha256, all present",
                wf.steps.len()
            )
        } else {
            problems.join("; ")
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_primary_alone_is_not_ready_and_a_streaming_standby_is() {
        let standby =
            json!({"role": "standby", "connection": "standby", "healthy": true, "lag_bytes": 0});
        assert!(super::replication_check("check", &standby, Some(1024)).ok);
        // After a failover: the promoted standby, healthy, with nobody replicating from it.
        let promoted =
            json!({"role": "primary", "connection": "standby", "healthy": true, "replicas": []});
        let c = super::replication_check("check", &promoted, None);
        assert!(!c.ok, "{}", c.detail);
        assert!(c.detail.contains("nothing to fail over to"), "{}", c.detail);
        let primary = json!({"role": "primary", "connection": "primary", "healthy": true,
                             "replicas": [{"state": "streaming"}], "lag_bytes": 10});
        assert!(super::replication_check("check", &primary, Some(1024)).ok);
        assert!(
            !super::replication_check("check", &primary, Some(5)).ok,
            "lag above the target"
        );
    }
}
