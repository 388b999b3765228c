//! Reading what the user points at — a workflow, an inputs file, a secrets file — with a cap, so
//! `/dev/zero`, a FIFO that never ends or a 2 GB sparse file fail at once with an error naming
//! the file and the limit instead of growing memory without bound.

use std::io::Read as _;
use std::path::Path;

use crate::RunnerError;

/// Largest workflow file: the model's own limit.
pub const WORKFLOW_LIMIT: u64 = meridian_model::MAX_FILE_SIZE as u64;
/// Largest `--inputs-file`.
pub const INPUTS_LIMIT: u64 = 1 << 20;
/// Largest `--secrets-file`.
pub const SECRETS_LIMIT: u64 = 1 << 20;

/// The text of `path`, at most `limit` bytes. A regular file is judged by its size before
/// anything is read; anything else (a device, a FIFO) is read with a cap of `limit + 1` bytes.
/// `what` names the file in errors (`--inputs-file`, `secrets file`, `workflow`).
pub fn read_capped(path: &Path, what: &str, limit: u64) -> Result<String, RunnerError> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| RunnerError::Invalid(format!("{what} {shown}: cannot open it: {e}")))?;
    if let Ok(meta) = file.metadata() {
        if meta.is_dir() {
            return Err(RunnerError::Invalid(format!(
                "{what} {shown}: is a directory; give a file"
            )));
        }
        if meta.is_file() && meta.len() > limit {
            return Err(too_large(what, path, Some(meta.len()), limit));
        }
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RunnerError::Invalid(format!("{what} {shown}: cannot read it: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(what, path, None, limit));
    }
    String::from_utf8(bytes).map_err(|e| {
        RunnerError::Invalid(format!(
            "{what} {shown}: is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Refuses, before anything is read, a workflow that is not a regular file or is larger than
/// [`WORKFLOW_LIMIT`]. A run keeps its workflow's path and sha256, and `resume` reads the file
/// again to check it did not change: a device or a FIFO cannot be read twice.
pub fn check_workflow_file(path: &Path) -> Result<(), RunnerError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| RunnerError::Invalid(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(RunnerError::Invalid(format!(
            "workflow {shown}: is not a regular file; `meridian resume` reads a run's workflow \
             again to check it did not change, so give a file (`meridian validate` takes any)"
        )));
    }
    if meta.len() > WORKFLOW_LIMIT {
        return Err(too_large(
            "workflow",
            path,
            Some(meta.len()),
            WORKFLOW_LIMIT,
        ));
    }
    Ok(())
}

fn too_large(what: &str, path: &Path, size: Option<u64>, limit: u64) -> RunnerError {
    let size = match size {
        Some(n) => format!("is {}", bytes(n)),
        None => "goes on past the limit".to_string(),
    };
    RunnerError::Invalid(format!(
        "{what} {}: {size}; the limit is {}. Is it the right file?",
        path.display(),
        bytes(limit)
    ))
}

/// `4 MiB`, `1.5 GiB`, `512 bytes`.
fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            let whole = format!("{:.1}", n as f64 / size as f64);
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else if whole.ends_with(".0") {
                // 4,212,907 bytes is not "4.0 MiB" beside a limit of 4 MiB: the bytes too.
                format!("{whole} {unit} ({n} bytes)")
            } else {
                format!("{whole} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: &RunnerError) -> String {
        e.to_string()
    }

    #[test]
    fn an_endless_device_fails_at_the_cap() {
        let m =
            message(&read_capped(Path::new("/dev/zero"), "--inputs-file", 1 << 20).unwrap_err());
        assert_eq!(
            m,
            "--inputs-file /dev/zero: goes on past the limit; the limit is 1 MiB. Is it the right file?"
        );
    }

    #[test]
    fn a_size_just_over_a_limit_does_not_read_as_the_limit() {
        assert_eq!(bytes(4 << 20), "4 MiB");
        assert_eq!(bytes(4_212_907), "4.0 MiB (4212907 bytes)");
        assert_eq!(bytes(3 << 19), "1.5 MiB");
        assert_eq!(bytes(512), "512 bytes");
    }

    #[test]
    fn a_large_regular_file_is_refused_by_its_size_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        // Sparse: 2 GiB long, nothing written; reading it would take seconds and 2 GiB.
        std::fs::File::create(&p).unwrap().set_len(2 << 30).unwrap();
        let started = std::time::Instant::now();
        let m = message(&read_capped(&p, "workflow", WORKFLOW_LIMIT).unwrap_err());
        assert!(
            m.ends_with("big.yaml: is 2 GiB; the limit is 4 MiB. Is it the right file?"),
            "{m}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let m = message(&check_workflow_file(&p).unwrap_err());
        assert!(m.contains("is 2 GiB; the limit is 4 MiB"), "{m}");
    }

    #[test]
    fn text_at_the_limit_is_read_and_one_byte_more_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "x".repeat(10)).unwrap();
        assert_eq!(read_capped(&p, "f", 10).unwrap().len(), 10);
        assert!(read_capped(&p, "f", 9).is_err());
        std::fs::write(&p, b"ok\xff").unwrap();
        let m = message(&read_capped(&p, "secrets file", 10).unwrap_err());
        assert!(
            m.contains("not UTF-8 text (invalid byte at offset 2)"),
            "{m}"
        );
    }

    #[test]
    fn a_workflow_must_be_a_regular_file() {
        let m = message(&check_workflow_file(Path::new("/dev/zero")).unwrap_err());
        assert!(m.contains("not a regular file"), "{m}");
        let m = message(&check_workflow_file(Path::new("/nonexistent/wf.yaml")).unwrap_err());
        assert!(m.starts_with("cannot read /nonexistent/wf.yaml"), "{m}");
    }
}
