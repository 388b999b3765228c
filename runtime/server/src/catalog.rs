//! The workflows of a directory, reloaded when a file changes. An edit that does not validate
//! keeps the previous version of that file in service and is reported (file:line:col) until it
//! is fixed; a removed file removes its workflow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use meridian_runner::Loaded;
use serde::Serialize;

/// One workflow file as the server sees it.
#[derive(Clone)]
pub struct Entry {
    pub path: PathBuf,
    /// The version in service: the last one that validated.
    pub loaded: Option<Loaded>,
    /// Why the file on disk is not in service (diagnostics), when it is not.
    pub error: Option<String>,
    /// The name the file on disk declares when it reads as a workflow but was refused (its
    /// components, a name clash): a request to start it is told why.
    refused_name: Option<String>,
    /// The file's modification time and length when last read.
    stamp: (Option<SystemTime>, u64),
}

/// What a reload changed, for the log and the scheduler.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub loaded: Vec<String>,
    pub rejected: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.rejected.is_empty() && self.removed.is_empty()
    }
}

/// What [`Catalog::scan`] read: the files that changed, and every workflow file there.
#[derive(Default)]
pub struct Scan {
    changed: Vec<Candidate>,
    seen: Vec<PathBuf>,
}

/// A changed file, read: a workflow that validates as a file, or why not.
pub struct Candidate {
    path: PathBuf,
    stamp: (Option<SystemTime>, u64),
    loaded: Result<Loaded, String>,
    /// The workflow's name, when the file reads as one.
    name: Option<String>,
}

impl Scan {
    /// The changed files that read as workflows, to check further before they go in service.
    pub fn workflows(&mut self) -> impl Iterator<Item = &mut Candidate> {
        self.changed.iter_mut().filter(|c| c.loaded.is_ok())
    }
}

impl Candidate {
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref().ok()
    }

    /// Keeps it out of service, with why (its previous version, if any, stays).
    pub fn refuse(&mut self, why: String) {
        self.loaded = Err(why);
    }
}

/// Every workflow file of the directory, by path.
#[derive(Clone, Default)]
pub struct Catalog {
    dir: PathBuf,
    files: BTreeMap<PathBuf, Entry>,
}

/// A workflow file's state for the API.
#[derive(Serialize)]
pub struct WorkflowInfo {
    pub name: Option<String>,
    pub file: String,
    pub description: Option<String>,
    pub valid: bool,
    /// Diagnostics of the file on disk when it does not validate (the previous version, if
    /// any, stays in service).
    pub error: Option<String>,
    pub has_drill: bool,
    pub schedules: usize,
}

impl Catalog {
    pub fn new(dir: &Path) -> Catalog {
        Catalog {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the files that changed since the last call and puts in service those that
    /// validate ([`Catalog::scan`], then [`Catalog::apply`]). Errors reading the directory
    /// itself leave everything as it was.
    pub fn reload(&mut self) -> Result<Changes, std::io::Error> {
        let scan = self.scan()?;
        Ok(self.apply(scan))
    }

    /// The files that changed since the last [`Catalog::apply`], each read and checked as a
    /// workflow file; nothing is put in service yet (a caller checks the components in between,
    /// see `Server::reload`).
    pub fn scan(&self) -> Result<Scan, std::io::Error> {
        let mut scan = Scan::default();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if !yaml || !path.is_file() {
                continue;
            }
            scan.seen.push(path.clone());
            let meta = std::fs::metadata(&path)?;
            let stamp = (meta.modified().ok(), meta.len());
            if self.files.get(&path).is_some_and(|e| e.stamp == stamp) {
                continue;
            }
            let loaded = meridian_runner::load(&path).map_err(|e| e.to_string());
            let name = loaded.as_ref().ok().map(|l| l.workflow.name.clone());
            scan.changed.push(Candidate {
                path,
                stamp,
                loaded,
                name,
            });
        }
        Ok(scan)
    }

    /// Puts in service what `scan` read and nobody refused; a file refused keeps its previous
    /// version in service, with why. Files gone from the directory are removed.
    pub fn apply(&mut self, scan: Scan) -> Changes {
        let mut changes = Changes::default();
        for c in scan.changed {
            let name = c.path.display().to_string();
            let mut e = self.files.remove(&c.path).unwrap_or(Entry {
                path: c.path.clone(),
                loaded: None,
                error: None,
                refused_name: None,
                stamp: c.stamp,
            });
            e.stamp = c.stamp;
            e.refused_name = c.name.clone();
            match c.loaded {
                Ok(l) => {
                    let clash = self.files.values().find(|o| {
                        o.loaded
                            .as_ref()
                            .is_some_and(|ol| ol.workflow.name == l.workflow.name)
                    });
                    if let Some(other) = clash {
                        e.error = Some(format!(
                            "{name}: workflow name `{}` is already used by {}; names must be unique in {}",
                            l.workflow.name,
                            other.path.display(),
                            self.dir.display()
                        ));
                        changes.rejected.push(name);
                    } else {
                        e.loaded = Some(l);
                        e.error = None;
                        e.refused_name = None;
                        changes.loaded.push(name);
                    }
                }
                Err(err) => {
                    e.error = Some(err);
                    changes.rejected.push(name);
                }
            }
            self.files.insert(c.path, e);
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !scan.seen.contains(p))
            .cloned()
            .collect();
        for p in gone {
            self.files.remove(&p);
            changes.removed.push(p.display().to_string());
        }
        changes
    }

    /// The workflow in service under `name`.
    pub fn get(&self, name: &str) -> Option<&Loaded> {
        self.files
            .values()
            .filter_map(|e| e.loaded.as_ref())
            .find(|l| l.workflow.name == name)
    }

    /// Why workflow `name` is not in service, when a file declaring it was refused and no
    /// version of it serves.
    pub fn refusal(&self, name: &str) -> Option<&str> {
        if self.get(name).is_some() {
            return None;
        }
        self.files
            .values()
            .find(|e| e.refused_name.as_deref() == Some(name))
            .and_then(|e| e.error.as_deref())
    }

    /// The workflows in service that have a `drill:` block, by name.
    pub fn drill_workflows(&self) -> BTreeMap<String, std::sync::Arc<meridian_model::Workflow>> {
        self.workflows()
            .filter(|l| l.workflow.drill.is_some())
            .map(|l| (l.workflow.name.clone(), l.workflow.clone()))
            .collect()
    }

    /// Every workflow in service.
    pub fn workflows(&self) -> impl Iterator<Item = &Loaded> {
        self.files.values().filter_map(|e| e.loaded.as_ref())
    }

    pub fn infos(&self) -> Vec<WorkflowInfo> {
        self.files
            .values()
            .map(|e| {
                let wf = e.loaded.as_ref().map(|l| &l.workflow);
                WorkflowInfo {
                    name: wf.map(|w| w.name.clone()),
                    file: e.path.display().to_string(),
                    description: wf.and_then(|w| w.description.clone()),
                    valid: e.error.is_none(),
                    error: e.error.clone(),
                    has_drill: wf.is_some_and(|w| w.drill.is_some()),
                    schedules: wf
                        .and_then(|w| w.on.as_ref())
                        .map_or(0, |o| o.schedule.len()),
                }
            })
            .collect()
    }

    /// Files that do not validate now, with why.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.files.values().filter_map(|e| e.error.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: a\nsteps:\n  - id: s\n    uses: hello\n";

    fn touch_later(path: &Path, text: &str) {
        // A different length is enough for the stamp to change within one clock tick.
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_invalid_edit_keeps_the_previous_version_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, GOOD).unwrap();
        let mut c = Catalog::new(dir.path());
        let ch = c.reload().unwrap();
        assert_eq!(ch.loaded.len(), 1);
        assert!(c.get("a").is_some());

        touch_later(&file, "name: a\nsteps:\n  - id: s\n    usse: hello\n");
        let ch = c.reload().unwrap();
        assert_eq!(ch.rejected.len(), 1);
        assert!(
            c.get("a").is_some(),
            "the previous version stays in service"
        );
        let err = c.errors().next().unwrap().to_string();
        assert!(err.contains("a.yaml:4:5"), "{err}");

        // Unchanged files are not read again.
        assert!(c.reload().unwrap().is_empty());

        std::fs::remove_file(&file).unwrap();
        assert_eq!(c.reload().unwrap().removed.len(), 1);
        assert!(c.get("a").is_none());
    }

    #[test]
    fn two_files_with_one_name_keep_the_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("b.yml"), GOOD).unwrap();
        let mut c = Catalog::new(dir.path());
        let ch = c.reload().unwrap();
        assert_eq!((ch.loaded.len(), ch.rejected.len()), (1, 1));
        assert!(c.errors().next().unwrap().contains("already used by"));
    }
}
