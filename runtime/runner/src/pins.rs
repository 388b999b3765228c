//! Which code a run ran. When a run starts, each component it uses is journaled with what pins
//! it (the run's settings, `components`): a component file or built-in by the sha256 of its
//! bytes, an OCI artifact by its manifest digest — for a tag (`--allow-unpinned`), the digest
//! the tag named then. A resume runs the same code: a tag stays resolved to the digest the
//! run started with (a later push to the tag does not slip in, and the resume needs no
//! `--allow-unpinned`), and a component file whose bytes changed since is refused, as a changed
//! workflow file is. A retry (`retry --from`) runs the component files as they are now (the
//! step may have been fixed), its tags still at the run's digests. Built-ins are not compared:
//! they change with Meridian itself, and a run waiting at a gate must survive an upgrade.

use std::collections::BTreeMap;
use std::path::Path;

use meridian_host::WasmExecutor;
use meridian_model::{ComponentRef, Workflow};
use sha2::{Digest, Sha256};

use crate::RunnerError;

/// What pins each component of `workflow` that `local` has loaded (all of them, once a run's
/// checks passed): `uses` as written → `sha256:…` or the pinned `oci://…@sha256:…`.
pub(crate) fn record(workflow: &Workflow, local: &WasmExecutor) -> BTreeMap<String, String> {
    workflow
        .components()
        .into_iter()
        .filter_map(|u| Some((u.to_string(), local.pin_of(u)?)))
        .collect()
}

/// `workflow` with each component file and tag pinned to what `pins` recorded for it, so every
/// step of the run loads that version whatever happens to the file or the tag meanwhile (a
/// file loaded at a pin is checked against it; another run of the same process that starts
/// after the file changed loads the new version beside it).
pub(crate) fn pinned(workflow: &Workflow, pins: &BTreeMap<String, String>) -> Workflow {
    let mut wf = workflow.clone();
    for step in &mut wf.steps {
        for c in step.components_mut() {
            let Some(pin) = pins.get(&c.to_string()) else {
                continue;
            };
            match c {
                ComponentRef::Oci { sha256: None, .. } => {
                    if let Ok(p) = ComponentRef::parse(pin, Path::new("/")) {
                        *c = p;
                    }
                }
                ComponentRef::Path {
                    sha256: s @ None, ..
                } => {
                    *s = pin
                        .strip_prefix("sha256:")
                        .and_then(meridian_protocol::Sha256::parse);
                }
                _ => {}
            }
        }
    }
    wf
}

/// `workflow` as run `run_id` ran it: each tag replaced by the digest the run recorded. Refuses
/// a component file whose bytes differ from the run's (when `check_files`: a resume, not a
/// retry), and a tag the run recorded no digest for (a run from before digests were recorded)
/// unless tags may run (`allows_unpinned`).
pub(crate) fn for_resume(
    run_id: &str,
    workflow: &Workflow,
    recorded: &BTreeMap<String, String>,
    allows_unpinned: bool,
    check_files: bool,
) -> Result<Workflow, RunnerError> {
    let mut problems = Vec::new();
    let mut checked = std::collections::HashSet::new();
    let mut wf = workflow.clone();
    for step in &mut wf.steps {
        let id = step.id.value.clone();
        for c in step.components_mut() {
            let pin = recorded.get(&c.to_string());
            match c {
                ComponentRef::Oci { sha256: None, .. } => match pin {
                    Some(p) => match ComponentRef::parse(p, Path::new("/")) {
                        Ok(pinned) => *c = pinned,
                        Err(e) => problems.push(format!(
                            "step `{id}`: the digest run {run_id} recorded for `{c}` does not parse ({e}); start a new run"
                        )),
                    },
                    None if allows_unpinned => {}
                    None => problems.push(format!(
                        "step `{id}`: `uses: {c}` names a tag without a digest, and run {run_id} did not record which digest it ran (it started before runs recorded them), so it cannot be resumed at the same code: start a new run"
                    )),
                },
                ComponentRef::Path { path, .. } if check_files => {
                    let (Some(want), true) = (pin, checked.insert(path.clone())) else {
                        continue;
                    };
                    // A file that cannot be read now fails its step when the step runs, as
                    // before.
                    let Ok(bytes) = std::fs::read(&*path) else {
                        continue;
                    };
                    let now = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                    if &now != want {
                        problems.push(format!(
                            "step `{id}`: its component {} changed since run {run_id} started ({} then, {} now): resuming would run other code than the run's first steps saw; put that file back, or start a new run",
                            path.display(),
                            short(want),
                            short(&now)
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    if problems.is_empty() {
        // A resume's files as the run recorded them (checked above), its tags too.
        Ok(if check_files {
            pinned(&wf, recorded)
        } else {
            wf
        })
    } else {
        Err(RunnerError::Problems(problems))
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(pin: &str) -> &str {
    &pin[..pin.len().min("sha256:".len() + 12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(dir: &Path) -> Workflow {
        let yaml = "name: w\nsteps:\n  - {id: a, uses: ./step.wasm}\n  - {id: b, uses: \"oci://127.0.0.1:5000/acme/greet:1.0\", needs: a}\n";
        let path = dir.join("w.yaml");
        std::fs::write(&path, yaml).unwrap();
        meridian_model::parse(&path.to_string_lossy(), yaml).unwrap()
    }

    #[test]
    fn a_resume_runs_the_recorded_digest_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("step.wasm"), b"first").unwrap();
        let wf = workflow(dir.path());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let recorded: BTreeMap<String, String> = [
            (
                wf.steps[0].component.as_ref().unwrap().to_string(),
                format!("sha256:{}", hex::encode(Sha256::digest(b"first"))),
            ),
            (
                "oci://127.0.0.1:5000/acme/greet:1.0".to_string(),
                format!("oci://127.0.0.1:5000/acme/greet:1.0@{digest}"),
            ),
        ]
        .into();
        let pinned = for_resume("r1", &wf, &recorded, false, true).unwrap();
        assert_eq!(
            pinned.steps[1].component.as_ref().unwrap().to_string(),
            format!("oci://127.0.0.1:5000/acme/greet:1.0@{digest}")
        );
        assert!(
            pinned.steps[0]
                .component
                .as_ref()
                .unwrap()
                .sha256()
                .is_some(),
            "the file is loaded at the run's digest"
        );

        std::fs::write(dir.path().join("step.wasm"), b"second").unwrap();
        let Err(RunnerError::Problems(p)) = for_resume("r1", &wf, &recorded, false, true) else {
            panic!("a changed file resumed")
        };
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("step `a`: its component ") && p[0].contains("changed since run r1"),
            "{p:?}"
        );
        // A retry runs the file as it is now (a fixed step), the tag still at the run's digest.
        let retried = for_resume("r1", &wf, &recorded, false, false).unwrap();
        assert!(
            retried.steps[1]
                .component
                .as_ref()
                .unwrap()
                .sha256()
                .is_some()
        );

        // A run that recorded nothing (from before): its tag is refused without
        // --allow-unpinned, before anything runs.
        std::fs::write(dir.path().join("step.wasm"), b"first").unwrap();
        let Err(RunnerError::Problems(p)) = for_resume("r1", &wf, &BTreeMap::new(), false, true)
        else {
            panic!("an unpinned tag resumed")
        };
        assert!(p[0].contains("did not record which digest"), "{p:?}");
        assert!(for_resume("r1", &wf, &BTreeMap::new(), true, true).is_ok());
    }
}
