//! `on.git`: the repository, branch and paths whose commits start the workflow.

use std::path::Path;
use std::time::Duration;

use meridian_protocol::component::resolve;

use super::{Cx, is_secret_name};
use crate::workflow::GitTrigger;
use crate::yaml::Node;

/// Default polling interval of a git trigger.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn git_trigger(cx: &mut Cx<'_>, node: &Node) -> Option<GitTrigger> {
    let f = cx.fields(
        node,
        &["repo", "branch", "paths", "interval", "webhook-secret"],
        "in `on.git`",
    )?;
    let repo = cx.require(&f, "repo", "in `on.git`")?;
    let repo = cx.string(repo, "`on.git.repo`")?;
    let repo_text = repo.value.trim().to_string();
    if repo_text.is_empty() {
        cx.error(
            repo.span,
            "`on.git.repo` is empty",
            Some("give a URL (`https://git.example.com/org/gateway.git`) or a path".into()),
        );
        return None;
    }
    let repo = if crate::workflow::is_remote_repo(&repo_text) || repo_text.starts_with("file://") {
        repo_text
    } else {
        resolve(&cx.base, Path::new(&repo_text))
            .to_string_lossy()
            .into_owned()
    };
    let branch = match f.get("branch") {
        None => "main".to_string(),
        Some(n) => {
            let b = cx.string(n, "`on.git.branch`")?;
            let bad = b.value.is_empty()
                || b.value.starts_with(['-', '/'])
                || b.value.contains("..")
                || b.value
                    .contains(|c: char| c.is_whitespace() || "~^:?*[\\".contains(c));
            if bad {
                cx.error(
                    b.span,
                    format!("`{}` is not a branch name", b.value),
                    Some("write the branch as git does, e.g. `main` or `release/2026`".into()),
                );
                return None;
            }
            b.value
        }
    };
    let paths = f
        .get("paths")
        .map(|n| cx.string_list(n, "`on.git.paths`", true))
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.value)
        .collect();
    let interval = match f.get("interval") {
        None => DEFAULT_INTERVAL,
        Some(n) => {
            let d = cx.duration(n, "`on.git.interval`", true);
            if d.is_some_and(|d| d < Duration::from_secs(1)) {
                cx.error(
                    n.span,
                    "`on.git.interval` must be at least 1s",
                    Some("poll every few seconds at most; a push webhook triggers at once".into()),
                );
            }
            d.unwrap_or(DEFAULT_INTERVAL).max(Duration::from_secs(1))
        }
    };
    let webhook_secret = match f.get("webhook-secret") {
        None => None,
        Some(n) => {
            let s = cx.string(n, "`on.git.webhook-secret`")?;
            if !is_secret_name(&s.value) {
                cx.error(
                    s.span,
                    format!("`{}` is not a secret name", s.value),
                    Some(
                        "name a secret of the server's secrets file, e.g. `GIT_WEBHOOK_SECRET`"
                            .into(),
                    ),
                );
                return None;
            }
            Some(s.value)
        }
    };
    Some(GitTrigger {
        span: node.span,
        repo,
        branch,
        paths,
        interval,
        webhook_secret,
    })
}
