//! The inputs of a git-triggered workflow (`on.git`): the commit a run is for, the files it
//! changed under the watched paths, and the text of every file under them.
//!
//! A run gets its configuration by value, in its inputs, rather than as a path to a checkout:
//! the journal then holds exactly what the run applied, a resumed run applies the same commit
//! even after the branch moved, and the step needs no `fs` grant.

use std::collections::BTreeMap;
use std::path::Path;

use meridian_gitops::{Commit, PathFilter, Watched};
use meridian_model::{GitTrigger, Workflow};

use crate::RunnerError;

/// Directory, under a state directory, where remote repositories are cloned.
pub const CACHE_DIR: &str = "git";

/// A commit of a workflow's repository and the inputs a run for it gets.
#[derive(Clone, Debug)]
pub struct GitRun {
    pub commit: Commit,
    /// Paths under the watched paths that changed since the commit compared against.
    pub changed: Vec<String>,
    /// `git_commit`, `git_changed_files`, `git_files`: those the workflow declares, as text.
    pub inputs: BTreeMap<String, String>,
}

fn error(g: &GitTrigger, e: impl std::fmt::Display) -> RunnerError {
    RunnerError::Invalid(format!("on.git ({} {}): {e}", g.repo, g.branch))
}

/// The workflow's git trigger, or an error saying it has none.
pub fn trigger(wf: &Workflow) -> Result<&GitTrigger, RunnerError> {
    wf.on.as_ref().and_then(|o| o.git.as_ref()).ok_or_else(|| {
        RunnerError::Invalid(format!("workflow `{}` has no `on.git` trigger", wf.name))
    })
}

/// Opens (and, for a URL, fetches) the workflow's repository. Blocking.
pub fn open(g: &GitTrigger, state_dir: &Path) -> Result<Watched, RunnerError> {
    let w =
        Watched::open(&g.repo, &g.branch, &state_dir.join(CACHE_DIR)).map_err(|e| error(g, e))?;
    w.fetch().map_err(|e| error(g, e))?;
    Ok(w)
}

/// The run for `commit` (the branch head when `None`), compared against `since` (every file
/// under the paths counts as changed when `None`). Blocking.
pub fn run_for(
    wf: &Workflow,
    repo: &Watched,
    commit: Option<&str>,
    since: Option<&str>,
) -> Result<GitRun, RunnerError> {
    let g = trigger(wf)?;
    let commit = match commit {
        Some(id) => repo.commit(id),
        None => repo.head(),
    }
    .map_err(|e| error(g, e))?;
    let filter = PathFilter::new(&g.paths);
    // One walk of the commit's tree gives both what changed and, when asked for, the files.
    let (changed, files) = repo
        .changed_and_files(
            since,
            &commit.id,
            wf.inputs.contains_key("git_files").then_some(&filter),
        )
        .map_err(|e| error(g, e))?;
    let changed: Vec<String> = changed.into_iter().filter(|p| filter.matches(p)).collect();
    let mut inputs = BTreeMap::new();
    if wf.inputs.contains_key("git_commit") {
        inputs.insert("git_commit".to_string(), commit.id.clone());
    }
    if wf.inputs.contains_key("git_changed_files") {
        inputs.insert(
            "git_changed_files".to_string(),
            serde_json::to_string(&changed).unwrap_or_default(),
        );
    }
    if let Some(files) = files {
        inputs.insert(
            "git_files".to_string(),
            serde_json::to_string(&files).unwrap_or_default(),
        );
    }
    Ok(GitRun {
        commit,
        changed,
        inputs,
    })
}

/// For a run started by hand (`meridian run`, `plan`, `ready`, `drift`) of a workflow with
/// `on.git`: the git inputs not given, from `git_commit` when it is given, else from the branch
/// head. Returns the commit, or `None` for a workflow without `on.git`. Blocking.
pub fn fill_inputs(
    wf: &Workflow,
    state_dir: &Path,
    raw: &mut BTreeMap<String, String>,
) -> Result<Option<Commit>, RunnerError> {
    if wf.on.as_ref().and_then(|o| o.git.as_ref()).is_none() {
        return Ok(None);
    }
    let given = raw.get("git_commit").cloned();
    let repo = open(trigger(wf)?, state_dir)?;
    let run = run_for(wf, &repo, given.as_deref(), None)?;
    for (k, v) in run.inputs {
        raw.entry(k).or_insert(v);
    }
    Ok(Some(run.commit))
}
