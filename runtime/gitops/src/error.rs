//! The crate's error: what failed, on which repository, and what to do.

/// A git operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository could not be opened, cloned or fetched.
    #[error("{repo}: {message}")]
    Repository { repo: String, message: String },
    /// The branch does not exist (yet) in the repository.
    #[error(
        "{repo}: no branch `{branch}` (push a commit to it, or name an existing branch in `on.git.branch`)"
    )]
    NoBranch { repo: String, branch: String },
    /// An object (commit, tree, blob) could not be read.
    #[error("{repo}: reading {what}: {message}")]
    Object {
        repo: String,
        what: String,
        message: String,
    },
    /// A file under the watched paths is too large or not UTF-8 text.
    #[error("{repo}: {path} at {commit}: {message}")]
    File {
        repo: String,
        path: String,
        commit: String,
        message: String,
    },
}

impl GitError {
    pub(crate) fn repo(repo: &str, message: impl std::fmt::Display) -> GitError {
        GitError::Repository {
            repo: repo.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn object(
        repo: &str,
        what: impl Into<String>,
        e: impl std::fmt::Display,
    ) -> GitError {
        GitError::Object {
            repo: repo.to_string(),
            what: what.into(),
            message: e.to_string(),
        }
    }
}
