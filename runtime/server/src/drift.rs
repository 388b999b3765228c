//! Drift, continuously: for each workflow given `drift-every` in the server config
//! (`[workflow.NAME] drift-every = "10m"`), the server runs the same check as `meridian drift`
//! (a plan of the workflow: each `adc-apisix` leg diffs its region's live configuration against
//! the ADC files, for `on.git` workflows those of the branch head) on that interval. It keeps
//! the last answer for `GET /api/v1/drift`, the console's badge and the `meridian_drift` gauge,
//! and sends a `drift.changed` notification when the state changes (and when the first answer
//! is already drift).

use std::sync::Arc;

use meridian_runner::Launch;
use meridian_runner::drift::{Drift, DriftState};
use serde::Serialize;

use crate::Server;
use crate::notify::Note;

/// The last answer for one workflow.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LastDrift {
    pub workflow: String,
    /// `in-sync`, `drift` or `unknown`.
    pub state: &'static str,
    /// Unix ms of the check.
    pub checked_at_ms: i64,
    /// The check itself (per region and object), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Why the check could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LastDrift {
    /// One line: which regions drifted and how many objects.
    pub(crate) fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let Some(d) = &self.drift else {
            return String::new();
        };
        let mut parts: Vec<String> = d
            .regions
            .iter()
            .filter(|r| !r.objects.is_empty())
            .map(|r| {
                let region = if r.leg.is_empty() { &r.step } else { &r.leg };
                let n = r.objects.len();
                format!(
                    "{region}: {n} object{} differ{}",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "s" } else { "" }
                )
            })
            .collect();
        parts.extend(d.errors.iter().cloned());
        if parts.is_empty() {
            "every region serves the ADC files".into()
        } else {
            parts.join("; ")
        }
    }
}

impl Server {
    /// One loop per workflow with `drift-every`; each ends when the server drains.
    pub(crate) fn start_drift(self: &Arc<Self>) {
        self.on_interval(self.config.drift_every.clone(), |s, wf| async move {
            s.check_drift(&wf).await
        });
    }

    async fn check_drift(self: &Arc<Self>, workflow: &str) {
        let answer = self.drift_of(workflow).await;
        let now = meridian_store::pending::now_ms();
        let last = match answer {
            Ok(d) => LastDrift {
                workflow: workflow.to_string(),
                state: d.state.as_str(),
                checked_at_ms: now,
                drift: Some(d),
                error: None,
            },
            Err(e) => LastDrift {
                workflow: workflow.to_string(),
                state: DriftState::Unknown.as_str(),
                checked_at_ms: now,
                drift: None,
                error: Some(e),
            },
        };
        self.metrics.drift(workflow, last.state);
        let before = self
            .drift
            .lock()
            .unwrap()
            .insert(workflow.to_string(), last.clone());
        let changed = match &before {
            Some(b) => b.state != last.state,
            None => last.state == DriftState::Drift.as_str(),
        };
        if changed {
            tracing::info!(workflow, state = last.state, "drift changed");
            let commit = last.drift.as_ref().and_then(|d| d.commit.clone());
            self.notify(Note::drift(workflow, last.state, commit, &last.summary()));
        }
    }

    async fn drift_of(self: &Arc<Self>, workflow: &str) -> Result<Drift, String> {
        let Some(loaded) = self.catalog.read().unwrap().get(workflow).cloned() else {
            return Err(format!("no workflow `{workflow}` is loaded"));
        };
        let raw = self
            .file_inputs(&loaded.workflow)
            .map_err(|e| e.to_string())?;
        let (wf, state_dir) = (loaded.workflow.clone(), self.config.state_dir.clone());
        let (raw, commit) = tokio::task::spawn_blocking(move || {
            let mut raw = raw;
            meridian_runner::git::fill_inputs(&wf, &state_dir, &mut raw).map(|c| (raw, c))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut launch = Launch {
            raw_inputs: raw,
            secrets_file: self.config.secrets_file.clone(),
            trigger: Some(format!("drift:{workflow}")),
            ..Launch::default()
        };
        let _lease = self.lease_check(&mut launch)?;
        self.runner
            .drift(&loaded, launch, commit.map(|c| c.id))
            .await
            .map_err(|e| e.to_string())
    }

    /// The last answers, by workflow name.
    pub(crate) fn drift_infos(&self) -> Vec<LastDrift> {
        self.drift.lock().unwrap().values().cloned().collect()
    }
}
