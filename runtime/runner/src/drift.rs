//! Drift: does every region's gateway still serve what the ADC files say? `meridian drift
//! WORKFLOW` plans the workflow (every `adc-apisix` leg reads its region's live configuration
//! and diffs it against the files — for a workflow with `on.git`, the files of the branch head)
//! and reports, per region, each object that differs. A non-empty diff is drift: something
//! changed a gateway behind Meridian's back, or a commit is not synced yet.

use std::time::Instant;

use meridian_engine::RunReport;
use meridian_model::Workflow;
use meridian_protocol::Outcome;
use serde::Serialize;
use serde_json::Value as Json;

use crate::{Launch, Loaded, Runner, RunnerError};

/// The answer of `meridian drift`.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    pub workflow: String,
    /// The plan run that was judged (in the journal like any plan).
    pub run_id: String,
    /// The commit the gateways were compared with (workflows with `on.git`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `in-sync`, `drift`, or `unknown` when some region could not be read.
    pub state: DriftState,
    pub took_ms: u64,
    pub regions: Vec<RegionDrift>,
    /// Legs that could not compare (the gateway unreachable, a bad file), by step and leg.
    pub errors: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftState {
    InSync,
    Drift,
    Unknown,
}

impl DriftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in-sync",
            DriftState::Drift => "drift",
            DriftState::Unknown => "unknown",
        }
    }
}

/// One region's gateway (one `adc-apisix` leg).
#[derive(Clone, Debug, Serialize)]
pub struct RegionDrift {
    pub step: String,
    /// The leg's key: the region for a matrix over regions, `""` without a matrix.
    pub leg: String,
    /// The Admin API compared.
    pub server: String,
    pub objects: Vec<ObjectDrift>,
}

/// One object that differs between a gateway and the files.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectDrift {
    /// `missing` (in the files, not on the gateway), `extra` (on the gateway only) or
    /// `changed`.
    pub kind: &'static str,
    pub resource_type: String,
    pub name: String,
    /// For `changed`: the fields that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Runner {
    /// Plans `wf` (approval gates approved: a plan changes nothing) and reports every
    /// `adc-apisix` leg's differences.
    pub async fn drift(
        &self,
        wf: &Loaded,
        mut launch: Launch,
        commit: Option<String>,
    ) -> Result<Drift, RunnerError> {
        let started = Instant::now();
        crate::ready::as_plan(wf, &mut launch);
        let done = self.start(wf, launch).await?;
        let mut d = judge(&wf.workflow, &done.report);
        d.commit = commit;
        d.took_ms = started.elapsed().as_millis() as u64;
        Ok(d)
    }
}

/// The drift a plan run saw. Several `adc-apisix` steps reading the same Admin API (a diff step
/// and a sync step) count once.
pub fn judge(wf: &Workflow, r: &RunReport) -> Drift {
    let mut regions: Vec<RegionDrift> = Vec::new();
    let mut errors = Vec::new();
    let adc_steps: Vec<_> = wf
        .steps
        .iter()
        .filter(|s| s.runs_builtin("adc-apisix"))
        .collect();
    for s in &adc_steps {
        let Some(rep) = r.step(&s.id.value) else {
            errors.push(format!("{}: did not run ({})", s.id.value, r.message));
            continue;
        };
        for l in &rep.legs {
            let name = if l.key.is_empty() {
                rep.id.clone()
            } else {
                format!("{} [{}]", rep.id, l.key)
            };
            match l.outcome {
                Outcome::Success => {}
                Outcome::Skipped => continue,
                _ => {
                    let why = l.error.as_ref().map_or_else(
                        || "failed".to_string(),
                        |e| {
                            meridian_protocol::text::for_terminal(&e.to_string(), "  ").into_owned()
                        },
                    );
                    errors.push(format!("{name}: {why}"));
                    continue;
                }
            }
            let server = l.output["server"].as_str().unwrap_or_default().to_string();
            if regions
                .iter()
                .any(|g| g.server == server && !server.is_empty())
            {
                continue;
            }
            regions.push(RegionDrift {
                step: rep.id.clone(),
                leg: l.key.clone(),
                server,
                objects: objects(&l.output),
            });
        }
    }
    if adc_steps.is_empty() {
        errors.push(format!(
            "workflow `{}` has no `adc-apisix` step: nothing compares a gateway with ADC files",
            wf.name
        ));
    }
    let state = if !errors.is_empty() {
        DriftState::Unknown
    } else if regions.iter().any(|g| !g.objects.is_empty()) {
        DriftState::Drift
    } else {
        DriftState::InSync
    };
    Drift {
        workflow: wf.name.clone(),
        run_id: r.run_id.clone(),
        commit: None,
        state,
        took_ms: 0,
        regions,
        errors,
    }
}

/// The events of an `adc-apisix` output as drifted objects (untrusted text, sanitised).
fn objects(output: &Json) -> Vec<ObjectDrift> {
    let clean = |v: &Json| {
        meridian_protocol::text::for_terminal(v.as_str().unwrap_or("?"), "  ").into_owned()
    };
    output["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ObjectDrift {
            kind: match e["type"].as_str() {
                Some("create") => "missing",
                Some("delete") => "extra",
                _ => "changed",
            },
            resource_type: clean(&e["resource_type"]),
            name: clean(&e["name"]),
            fields: e["diff"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| clean(&c["path"]))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::objects;

    #[test]
    fn events_become_objects_with_plain_words() {
        let out = json!({"events": [
            {"type": "create", "resource_type": "route", "name": "r1"},
            {"type": "delete", "resource_type": "service", "name": "old\u{1b}[2J"},
            {"type": "update", "resource_type": "upstream", "name": "u",
             "diff": [{"path": "nodes[0].weight", "old": 1, "new": 2}]},
        ]});
        let o = objects(&out);
        assert_eq!(
            o.iter().map(|x| x.kind).collect::<Vec<_>>(),
            ["missing", "extra", "changed"]
        );
        assert!(!o[1].name.contains('\u{1b}'), "{}", o[1].name);
        assert_eq!(o[2].fields, ["nodes[0].weight"]);
        assert!(objects(&json!({})).is_empty());
    }
}
