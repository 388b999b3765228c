//! `on.git`: the server watches each git-triggered workflow's branch and starts a run for every
//! new commit that touches the watched paths, with the commit and its files as inputs.
//!
//! - **Polling**, every `interval`, and at once when a push webhook for the workflow arrives
//!   (`POST /hooks/git/WORKFLOW`, signed with the secret `webhook-secret` names). The webhook
//!   only wakes the watcher: what changed is read from the repository, never from the payload.
//! - **One run per commit**, across restarts and servers sharing a journal: a commit is claimed
//!   in the journal (`git:WORKFLOW@COMMIT`) before its run starts. The run's trigger is
//!   `git:COMMIT`, which `runs show`, the console and notifications show.
//! - **Where it resumes**: the commit of the workflow's latest git-started run; a workflow
//!   never run from git starts from the branch head as it finds it (no run for history).
//!   A commit that touches nothing under `paths` moves the watcher on without a run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use meridian_gitops::webhook;
use meridian_model::GitTrigger;
use meridian_protocol::Mode;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Server;
use crate::api::ApiError;
use crate::runs::StartRequest;

/// Runs looked through for the latest git-started one, at start-up.
const HISTORY_SCAN: usize = 500;

/// A watcher of one workflow's branch.
pub(crate) struct Watch {
    spec: Spec,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    info: Arc<Mutex<GitInfo>>,
}

/// What a watcher is configured with; a change restarts it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    repo: String,
    branch: String,
    paths: Vec<String>,
    interval: std::time::Duration,
    webhook_secret: Option<String>,
}

impl Spec {
    fn of(g: &GitTrigger) -> Spec {
        Spec {
            repo: g.repo.clone(),
            branch: g.branch.clone(),
            paths: g.paths.clone(),
            interval: g.interval,
            webhook_secret: g.webhook_secret.clone(),
        }
    }
}

/// A watcher's state, for `GET /api/v1/git` and the console.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct GitInfo {
    pub workflow: String,
    pub repo: String,
    pub branch: String,
    pub paths: Vec<String>,
    /// The last commit seen on the branch.
    pub commit: Option<String>,
    /// Unix ms of the last look at the branch.
    pub checked_at_ms: Option<i64>,
    /// Why the last look failed (the repository unreachable, the branch missing).
    pub error: Option<String>,
    /// The last run started for a commit.
    pub last_run: Option<String>,
    /// Whether push webhooks are accepted (a `webhook-secret` is set).
    pub webhook: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a watcher for each loaded workflow with `on.git`, restarts those whose `on.git`
    /// changed, and stops those of workflows gone.
    pub(crate) fn sync_git(self: &Arc<Self>) {
        let wanted: BTreeMap<String, GitTrigger> = self
            .catalog
            .read()
            .unwrap()
            .workflows()
            .filter_map(|l| {
                let g = l.workflow.on.as_ref()?.git.clone()?;
                Some((l.workflow.name.clone(), g))
            })
            .collect();
        let mut watches = self.git.lock().unwrap();
        watches.retain(|name, w| wanted.get(name).is_some_and(|g| Spec::of(g) == w.spec));
        for (name, g) in wanted {
            if watches.contains_key(&name) || self.draining() {
                continue;
            }
            let info = Arc::new(Mutex::new(GitInfo {
                workflow: name.clone(),
                repo: g.repo.clone(),
                branch: g.branch.clone(),
                paths: g.paths.clone(),
                webhook: g.webhook_secret.is_some(),
                ..GitInfo::default()
            }));
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(self.clone().watch(
                name.clone(),
                g.clone(),
                wake.clone(),
                info.clone(),
            ));
            tracing::info!(workflow = %name, repo = %g.repo, branch = %g.branch, "watching a git branch");
            watches.insert(
                name,
                Watch {
                    spec: Spec::of(&g),
                    wake,
                    task,
                    info,
                },
            );
        }
    }

    /// The watchers' states.
    pub(crate) fn git_infos(&self) -> Vec<GitInfo> {
        self.git
            .lock()
            .unwrap()
            .values()
            .map(|w| w.info.lock().unwrap().clone())
            .collect()
    }

    /// The commit a run was started for, from its trigger (`git:COMMIT`).
    pub(crate) fn git_commit_of(&self, run_id: &str) -> Option<String> {
        let (record, _) = self.runner.journal().run(run_id).ok()?;
        record
            .settings
            .trigger?
            .strip_prefix("git:")
            .map(str::to_string)
    }

    /// The commit of the workflow's latest git-started run, if any.
    fn last_git_commit(&self, workflow: &str) -> Option<String> {
        let page = self
            .runner
            .journal()
            .query_runs(&meridian_store::RunQuery {
                workflow: Some(workflow.to_string()),
                mode: Some(Mode::Apply),
                limit: HISTORY_SCAN,
                ..meridian_store::RunQuery::default()
            })
            .ok()?;
        page.runs.iter().find_map(|r| self.git_commit_of(&r.id))
    }

    async fn watch(
        self: Arc<Self>,
        workflow: String,
        g: GitTrigger,
        wake: Arc<Notify>,
        info: Arc<Mutex<GitInfo>>,
    ) {
        let mut last = self.last_git_commit(&workflow);
        // A commit this server claimed and could not start a run for: tried again at each poll
        // (the claim is its, no other server will) until it starts or a newer head supersedes it.
        let mut owed: Option<String> = None;
        let mut tick = tokio::time::interval(g.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = wake.notified() => {}
                _ = self.drain.cancelled() => return,
            }
            match self.poll(&workflow, &g, last.as_deref(), &mut owed).await {
                Ok((head, run)) => {
                    let mut i = info.lock().unwrap();
                    i.commit = Some(head.clone());
                    i.error = None;
                    i.checked_at_ms = Some(meridian_store::pending::now_ms());
                    if run.is_some() {
                        i.last_run = run;
                    }
                    last = Some(head);
                }
                Err(e) => {
                    tracing::warn!(workflow = %workflow, "git: {e}");
                    let mut i = info.lock().unwrap();
                    i.error = Some(e);
                    i.checked_at_ms = Some(meridian_store::pending::now_ms());
                }
            }
        }
    }

    /// One look at the branch: the head, and the run started for it (when the head differs
    /// from the last one seen, touches the paths, and this server wins the claim on the move
    /// from `last` to it — or won it already and owes its run, `owed`).
    async fn poll(
        self: &Arc<Self>,
        workflow: &str,
        g: &GitTrigger,
        last: Option<&str>,
        owed: &mut Option<String>,
    ) -> Result<(String, Option<String>), String> {
        let Some(loaded) = self.catalog.read().unwrap().get(workflow).cloned() else {
            return Err(format!("no workflow `{workflow}` is loaded"));
        };
        let (wf, state_dir, g2) = (
            loaded.workflow.clone(),
            self.config.state_dir.clone(),
            g.clone(),
        );
        let since = last.map(str::to_string);
        let found = tokio::task::spawn_blocking(move || {
            let repo = meridian_runner::git::open(&g2, &state_dir)?;
            let head = repo
                .head()
                .map_err(|e| meridian_runner::RunnerError::Invalid(e.to_string()))?;
            match since {
                // The first look: where the watcher starts from, no run for history.
                None => Ok((head.id, None)),
                Some(s) if s == head.id => Ok((head.id, None)),
                Some(s) => {
                    let run = meridian_runner::git::run_for(&wf, &repo, Some(&head.id), Some(&s))?;
                    Ok((head.id, Some(run)))
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e: meridian_runner::RunnerError| e.one_line())?;
        let (head, run) = found;
        let Some(run) = run else {
            return Ok((head, None));
        };
        if run.changed.is_empty() {
            tracing::info!(workflow, commit = %head, "git: a new commit, nothing under the watched paths changed");
            return Ok((head, None));
        }
        // The claim is on the move from the last head to this one, not on the commit: a branch
        // moved back to an earlier commit (a rollback) is applied again.
        let claim = format!("git:{workflow}@{head}:after:{}", last.unwrap_or("-"));
        let first = owed.as_deref() == Some(claim.as_str())
            || self
                .runner
                .journal()
                .claim_tick(&claim, 0, &self.name)
                .map_err(|e| e.to_string())?;
        if !first {
            return Ok((head, None));
        }
        *owed = Some(claim);
        let summary = meridian_protocol::text::for_terminal(&run.commit.summary, " ").into_owned();
        tracing::info!(workflow, commit = %head, files = run.changed.len(), "git: starting a run for {summary:?}");
        let id = self
            .start_run(StartRequest {
                workflow: workflow.to_string(),
                mode: Mode::Apply,
                inputs: run.inputs,
                trigger: format!("git:{head}"),
                schedule: None,
                idempotency_key: None,
            })
            .await
            .map_err(|e| {
                format!("commit {head}: the run did not start (tried again at each poll): {e}")
            })?;
        *owed = None;
        Ok((head, Some(id)))
    }

    /// A push webhook for `workflow`: checks the signature and wakes its watcher.
    fn git_webhook(
        &self,
        workflow: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let loaded = self
            .catalog
            .read()
            .unwrap()
            .get(workflow)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no workflow `{workflow}`")))?;
        let Some(g) = loaded.workflow.on.as_ref().and_then(|o| o.git.clone()) else {
            return Err(ApiError::not_found(format!(
                "workflow `{workflow}` has no `on.git` trigger"
            )));
        };
        let Some(secret_name) = &g.webhook_secret else {
            return Err(ApiError::forbidden(format!(
                "workflow `{workflow}` takes no webhooks: set `on.git.webhook-secret` to a secret of the server's secrets file"
            )));
        };
        let secret = self.server_secret(secret_name).ok_or_else(|| {
            ApiError::internal(format!(
                "the webhook secret `{secret_name}` has no value: put it in the server's secrets file or export {}",
                meridian_runner::secrets::env_name(secret_name)
            ))
        })?;
        let pairs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        webhook::verify(&pairs, body, &secret)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if !webhook::is_push(&pairs) {
            return Ok((
                StatusCode::OK,
                json!({"accepted": false, "reason": "not a push event"}),
            ));
        }
        let push = webhook::parse_push(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !push.is_branch(&g.branch) {
            return Ok((
                StatusCode::ACCEPTED,
                json!({"accepted": false, "reason": format!("the push moved {}, not {}", push.git_ref, g.branch)}),
            ));
        }
        if let Some(w) = self.git.lock().unwrap().get(workflow) {
            w.wake.notify_one();
        }
        Ok((
            StatusCode::ACCEPTED,
            json!({"accepted": true, "workflow": workflow, "branch": g.branch}),
        ))
    }

    /// A secret of the server's own (the environment wins over the secrets file).
    fn server_secret(&self, name: &str) -> Option<String> {
        let from_file = meridian_runner::secrets::read_file(self.config.secrets_file.as_deref())
            .unwrap_or_default();
        meridian_runner::secrets::value(name, &from_file)
    }
}

/// `POST /hooks/git/{workflow}`: outside the bearer-token API (git servers sign instead).
pub(crate) fn router() -> Router<Arc<Server>> {
    Router::new().route("/hooks/git/{workflow}", post(hook))
}

async fn hook(
    State(s): State<Arc<Server>>,
    Path(workflow): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let (status, answer) = s.git_webhook(&workflow, &headers, &body)?;
    Ok((status, axum::Json(answer)))
}
