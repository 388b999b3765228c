//! A watched branch of a repository.
//!
//! A local path (or `file://` URL) is opened in place and read as it is: whoever commits or
//! pushes to it moves the branch. Any other URL (`https://…`, `ssh://…`, `git@host:…`) is cloned
//! bare into `cache/<hash of the URL>` on first use and fetched on every [`Watched::fetch`]; the
//! branch is then the remote-tracking ref.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use sha2::{Digest, Sha256};

use meridian_model::is_remote_repo as is_remote;

use crate::{GitError, PathFilter};

/// Largest file handed out by [`Watched::files`] (ADC files are text, far below this).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Largest sum of the files handed out by one [`Watched::files`] call.
pub const MAX_TOTAL_BYTES: usize = 4 << 20;

/// Files' text by path.
pub type Files = BTreeMap<String, String>;

/// A commit's id and first line, for messages and the run's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The full hex id.
    pub id: String,
    /// The first line of the message (untrusted text: sanitise before showing).
    pub summary: String,
    /// `Name <email>` of the author.
    pub author: String,
}

/// One repository and the branch watched in it.
pub struct Watched {
    /// As configured (shown in messages).
    source: String,
    branch: String,
    repo: gix::ThreadSafeRepository,
    /// Cloned from a URL (fetched by [`Watched::fetch`]), rather than a local path.
    remote: bool,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("source", &self.source)
            .field("branch", &self.branch)
            .field("remote", &self.remote)
            .finish()
    }
}

impl Watched {
    /// Opens `source` (a path or URL) with `branch`; a URL is cloned bare into `cache` the first
    /// time (later calls reuse the clone).
    pub fn open(source: &str, branch: &str, cache: &Path) -> Result<Watched, GitError> {
        let remote = is_remote(source);
        let repo = if remote {
            let dir = cache_dir(cache, source);
            if dir.join("HEAD").exists() {
                gix::open(&dir).map_err(|e| GitError::repo(source, e))?
            } else {
                clone_bare(source, &dir)?
            }
        } else {
            let path = source.strip_prefix("file://").unwrap_or(source);
            gix::open(path).map_err(|e| {
                GitError::repo(
                    source,
                    format!("{e} (give a local repository's path, or an https:// or ssh:// URL)"),
                )
            })?
        };
        Ok(Watched {
            source: source.to_string(),
            branch: branch.to_string(),
            repo: repo.into_sync(),
            remote,
        })
    }

    /// The repository as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The watched branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Brings a cloned repository up to date with its remote (a local path needs nothing).
    pub fn fetch(&self) -> Result<(), GitError> {
        if !self.remote {
            return Ok(());
        }
        let repo = self.repo.to_thread_local();
        let remote = repo
            .find_remote("origin")
            .map_err(|e| GitError::repo(&self.source, e))?;
        let stop = AtomicBool::new(false);
        remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| GitError::repo(&self.source, format!("connecting: {e}")))?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| GitError::repo(&self.source, format!("fetching: {e}")))?
            .receive(gix::progress::Discard, &stop)
            .map_err(|e| GitError::repo(&self.source, format!("fetching: {e}")))?;
        Ok(())
    }

    /// The branch's commit now.
    pub fn head(&self) -> Result<Commit, GitError> {
        let repo = self.repo.to_thread_local();
        let names = if self.remote {
            vec![
                format!("refs/remotes/origin/{}", self.branch),
                format!("refs/heads/{}", self.branch),
            ]
        } else {
            vec![format!("refs/heads/{}", self.branch)]
        };
        for name in &names {
            let Ok(mut r) = repo.find_reference(name.as_str()) else {
                continue;
            };
            let id = r
                .peel_to_id()
                .map_err(|e| GitError::object(&self.source, name.clone(), e))?
                .detach();
            return self.commit(&id.to_string());
        }
        Err(GitError::NoBranch {
            repo: self.source.clone(),
            branch: self.branch.clone(),
        })
    }

    /// The commit `id` (full hex), with its summary and author.
    pub fn commit(&self, id: &str) -> Result<Commit, GitError> {
        let repo = self.repo.to_thread_local();
        let oid = parse_id(&self.source, id)?;
        let c = repo
            .find_commit(oid)
            .map_err(|e| GitError::object(&self.source, format!("commit {id}"), e))?;
        let summary = c
            .message()
            .map(|m| m.summary().to_string())
            .unwrap_or_default();
        let author = c
            .author()
            .map(|a| format!("{} <{}>", a.name, a.email))
            .unwrap_or_default();
        Ok(Commit {
            id: oid.to_string(),
            summary,
            author,
        })
    }

    /// Paths (files) that differ between the trees of `from` and `to`: added, modified, deleted
    /// (a rename counts as both its paths). Without `from`, every file of `to`. A `from` that no
    /// longer exists (history rewritten and collected) also gives every file of `to`.
    pub fn changed(&self, from: Option<&str>, to: &str) -> Result<Vec<String>, GitError> {
        let after = self.tree_files(to)?;
        Ok(self.diff(from, &after))
    }

    /// [`Watched::changed`] and, with `filter`, [`Watched::files`] of `to`, walking its tree once.
    pub fn changed_and_files(
        &self,
        from: Option<&str>,
        to: &str,
        filter: Option<&PathFilter>,
    ) -> Result<(Vec<String>, Option<Files>), GitError> {
        let after = self.tree_files(to)?;
        let files = filter.map(|f| self.read(to, &after, f)).transpose()?;
        Ok((self.diff(from, &after), files))
    }

    fn diff(&self, from: Option<&str>, after: &BTreeMap<String, ObjectId>) -> Vec<String> {
        let before = match from.map(|f| self.tree_files(f)) {
            Some(Ok(b)) => b,
            Some(Err(_)) | None => BTreeMap::new(),
        };
        let mut out: Vec<String> = after
            .iter()
            .filter(|(p, id)| before.get(*p) != Some(id))
            .map(|(p, _)| p.clone())
            .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
            .collect();
        out.sort();
        out
    }

    /// The text of every file under `filter` at `commit`, by path. Files must be UTF-8, at most
    /// [`MAX_FILE_BYTES`] each and [`MAX_TOTAL_BYTES`] together.
    pub fn files(
        &self,
        commit: &str,
        filter: &PathFilter,
    ) -> Result<BTreeMap<String, String>, GitError> {
        let tree = self.tree_files(commit)?;
        self.read(commit, &tree, filter)
    }

    /// The text of the files of `tree` (`commit`'s) under `filter`; see [`Watched::files`].
    fn read(
        &self,
        commit: &str,
        tree: &BTreeMap<String, ObjectId>,
        filter: &PathFilter,
    ) -> Result<BTreeMap<String, String>, GitError> {
        let repo = self.repo.to_thread_local();
        let mut out = BTreeMap::new();
        let mut total = 0usize;
        for (path, &oid) in tree {
            if !filter.matches(path) {
                continue;
            }
            let file_err = |message: String| GitError::File {
                repo: self.source.clone(),
                path: path.clone(),
                commit: commit.to_string(),
                message,
            };
            let blob = repo
                .find_object(oid)
                .map_err(|e| GitError::object(&self.source, format!("{path} at {commit}"), e))?;
            if blob.data.len() > MAX_FILE_BYTES {
                return Err(file_err(format!(
                    "{} bytes, more than the {MAX_FILE_BYTES} a configuration file may have",
                    blob.data.len()
                )));
            }
            total += blob.data.len();
            if total > MAX_TOTAL_BYTES {
                return Err(file_err(format!(
                    "the files under the watched paths pass {MAX_TOTAL_BYTES} bytes together; narrow `paths`"
                )));
            }
            let text = String::from_utf8(blob.data.clone())
                .map_err(|_| file_err("not UTF-8 text".into()))?;
            out.insert(path.clone(), text);
        }
        Ok(out)
    }

    /// Every file (blob or symlink; not submodules) of `commit`'s tree, by path.
    fn tree_files(&self, commit: &str) -> Result<BTreeMap<String, ObjectId>, GitError> {
        let repo = self.repo.to_thread_local();
        let oid = parse_id(&self.source, commit)?;
        let what = || format!("the tree of {commit}");
        let tree = repo
            .find_commit(oid)
            .map_err(|e| GitError::object(&self.source, what(), e))?
            .tree()
            .map_err(|e| GitError::object(&self.source, what(), e))?;
        let entries = tree
            .traverse()
            .breadthfirst
            .files()
            .map_err(|e| GitError::object(&self.source, what(), e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.mode.is_blob() || e.mode.is_link())
            .map(|e| (e.filepath.to_string(), e.oid))
            .collect())
    }
}

fn parse_id(repo: &str, id: &str) -> Result<ObjectId, GitError> {
    ObjectId::from_hex(id.as_bytes())
        .map_err(|e| GitError::object(repo, format!("commit id `{id}`"), e))
}

fn cache_dir(cache: &Path, url: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(url.as_bytes()));
    cache.join(&digest[..16])
}

fn clone_bare(url: &str, dir: &Path) -> Result<gix::Repository, GitError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| GitError::repo(url, format!("creating {}: {e}", dir.display())))?;
    let stop = AtomicBool::new(false);
    let mut prepare = gix::prepare_clone_bare(url, dir)
        .map_err(|e| GitError::repo(url, format!("cloning: {e}")))?;
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, &stop)
        .map_err(|e| GitError::repo(url, format!("cloning: {e}")))?;
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::{Watched, is_remote};
    use crate::PathFilter;

    /// Runs `git` in `dir` as a user would (the test's side; the crate never runs git).
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=t@example.test"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn commit(dir: &Path, files: &[(&str, Option<&str>)], msg: &str) -> String {
        for (path, text) in files {
            let p = dir.join(path);
            match text {
                Some(t) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, t).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", msg]);
        git(dir, &["rev-parse", "HEAD"])
    }

    #[test]
    fn head_changed_paths_and_files_of_a_local_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let c1 = commit(
            dir,
            &[
                ("adc/a.yaml", Some("services: []\n")),
                ("README.md", Some("hi\n")),
            ],
            "first",
        );
        let w = Watched::open(dir.to_str().unwrap(), "main", &tmp.path().join("cache")).unwrap();
        let head = w.head().unwrap();
        assert_eq!(head.id, c1);
        assert_eq!(head.summary, "first");
        assert_eq!(w.changed(None, &c1).unwrap(), ["README.md", "adc/a.yaml"]);

        let c2 = commit(
            dir,
            &[("adc/b.yaml", Some("routes: []\n")), ("README.md", None)],
            "second\n\nbody",
        );
        assert_eq!(w.head().unwrap().id, c2);
        assert_eq!(w.head().unwrap().summary, "second");
        assert_eq!(
            w.changed(Some(&c1), &c2).unwrap(),
            ["README.md", "adc/b.yaml"]
        );
        let files = w.files(&c2, &PathFilter::new(&["adc/**"])).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["adc/a.yaml", "adc/b.yaml"]
        );
        assert_eq!(files["adc/b.yaml"], "routes: []\n");
        let both = w.changed_and_files(Some(&c1), &c2, Some(&PathFilter::new(&["adc/**"])));
        assert_eq!(
            both.unwrap(),
            (w.changed(Some(&c1), &c2).unwrap(), Some(files.clone()))
        );
        // A commit that no longer exists counts as "everything changed".
        let gone = "0".repeat(40);
        assert_eq!(
            w.changed(Some(&gone), &c2).unwrap(),
            ["adc/a.yaml", "adc/b.yaml"]
        );

        let other =
            Watched::open(dir.to_str().unwrap(), "nope", &tmp.path().join("cache")).unwrap();
        let e = other.head().unwrap_err().to_string();
        assert!(e.contains("no branch `nope`"), "{e}");
        let e = Watched::open("/nonexistent/repo", "main", tmp.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/repo"), "{e}");
    }

    #[test]
    fn remote_or_local() {
        assert!(is_remote("https://github.com/org/repo.git"));
        assert!(is_remote("ssh://git@host/repo"));
        assert!(is_remote("git@github.com:org/repo.git"));
        assert!(!is_remote("file:///srv/git/repo.git"));
        assert!(!is_remote("/srv/git/repo.git"));
        assert!(!is_remote("./repo"));
        assert!(!is_remote("C:/repo"));
    }
}
