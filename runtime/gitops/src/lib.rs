//! Git as a source of workflow runs and of gateway configuration.
//!
//! - [`repo`]: a watched branch of a repository (a local path, opened in place, or a URL,
//!   cloned bare into a cache and fetched): its head commit, the paths changed between two
//!   commits, and the files under some paths at a commit.
//! - [`paths`]: the `paths:` filter of `on.git` (git-style globs).
//! - [`webhook`]: push webhooks of GitHub, GitLab, Gitea/Forgejo: the signature checked against a
//!   shared secret, the pushed ref read from the payload.
//!
//! Everything is done in-process by `gix` (no `git` binary). Its calls block: async callers run
//! them on a blocking thread.

mod error;
pub mod paths;
pub mod repo;
pub mod webhook;

pub use error::GitError;
pub use paths::PathFilter;
pub use repo::{Commit, Watched};
