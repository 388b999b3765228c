//! Readiness, continuously: for each workflow given `ready-every` in the server config
//! (`[workflow.NAME] ready-every = "5m"`), the server runs the same check as `meridian ready`
//! (a plan of the workflow and the readiness rules) on that interval, keeps the last answer for
//! `GET /api/v1/readiness` and the `meridian_ready` gauge, and sends a `readiness.changed`
//! notification when a workflow turns ready or not ready (the first answer only when it is
//! not ready: a server's start is not news).

use std::sync::Arc;

use meridian_runner::Launch;
use meridian_runner::ready::Readiness;
use serde::Serialize;

use crate::Server;
use crate::notify::Note;

/// The last answer for one workflow.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LastReadiness {
    pub workflow: String,
    pub ready: bool,
    /// Unix ms of the check.
    pub checked_at_ms: i64,
    /// The failed rules' details (or why the check could not run).
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_run: Option<String>,
}

impl Server {
    /// One loop per workflow with `ready-every`; each ends when the server drains.
    pub(crate) fn start_readiness(self: &Arc<Self>) {
        self.on_interval(self.config.ready_every.clone(), |s, wf| async move {
            s.check_readiness(&wf).await
        });
    }

    async fn check_readiness(self: &Arc<Self>, workflow: &str) {
        let Some(loaded) = self.catalog.read().unwrap().get(workflow).cloned() else {
            self.record_readiness(workflow, Err(format!("no workflow `{workflow}` is loaded")));
            return;
        };
        let answer = match self.file_inputs(&loaded.workflow) {
            Err(e) => Err(e.to_string()),
            Ok(raw_inputs) => {
                let mut launch = Launch {
                    raw_inputs,
                    secrets_file: self.config.secrets_file.clone(),
                    trigger: Some(format!("readiness:{workflow}")),
                    ..Launch::default()
                };
                match self.lease_check(&mut launch) {
                    Err(e) => Err(e),
                    Ok(_lease) => self
                        .runner
                        .ready(&loaded, launch)
                        .await
                        .map_err(|e| e.to_string()),
                }
            }
        };
        self.record_readiness(workflow, answer);
    }

    fn record_readiness(&self, workflow: &str, answer: Result<Readiness, String>) {
        let now = meridian_store::pending::now_ms();
        let last = match answer {
            Ok(r) => LastReadiness {
                workflow: workflow.to_string(),
                ready: r.ready,
                checked_at_ms: now,
                problems: r
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{}: {}", c.rule, c.detail))
                    .collect(),
                plan_run: Some(r.run_id),
            },
            Err(e) => LastReadiness {
                workflow: workflow.to_string(),
                ready: false,
                checked_at_ms: now,
                problems: vec![e],
                plan_run: None,
            },
        };
        self.metrics.ready(workflow, last.ready);
        let before = self
            .readiness
            .lock()
            .unwrap()
            .insert(workflow.to_string(), last.clone());
        // The first answer is told when it is bad, as drift's is: a server started beside a
        // dead standby said nothing until the standby had come back and failed again.
        let changed = match &before {
            Some(b) => b.ready != last.ready,
            None => !last.ready,
        };
        if changed {
            let message = if last.ready {
                "ready again".to_string()
            } else {
                format!("not ready: {}", last.problems.join("; "))
            };
            tracing::info!(workflow, ready = last.ready, "readiness changed");
            self.notify(Note::readiness(workflow, last.ready, &message));
        }
    }

    /// The last answers, by workflow name.
    pub(crate) fn readiness_infos(&self) -> Vec<LastReadiness> {
        self.readiness.lock().unwrap().values().cloned().collect()
    }
}
