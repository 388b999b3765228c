//! A scratch directory per test and a helper to run the real binary in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An isolated place to run `meridian`: its own state dir, a shared compile cache (so tests do
/// not recompile the same components), and files written by the test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the kitchen-sink test guest to `kitchen_sink.wasm` in the scratch dir (workflows
    /// there say `uses: ./kitchen_sink.wasm`).
    pub fn kitchen_sink(&self) {
        std::fs::copy(
            meridian_artifacts::KITCHEN_SINK,
            self.dir.path().join("kitchen_sink.wasm"),
        )
        .unwrap();
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `meridian ARGS…` in this scratch dir, not on a terminal.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meridian"));
        c.current_dir(self.dir.path())
            .env("MERIDIAN_STATE_DIR", self.dir.path().join("state"))
            .env("MERIDIAN_CACHE_DIR", cache_dir())
            .env_remove("MERIDIAN_LOG")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run meridian")
    }
}

/// One compile cache for every e2e test of this build, trimmed once per test process (before
/// any test uses it) to the most recently written 1 GiB when it holds more than 2 GiB: it
/// outlives builds, and every build of the JavaScript and Python components (not
/// byte-reproducible) or of a guest in another checkout (paths inside) adds new entries, up to
/// 36 MB each — it had reached 5.4 GB in a day of CI runs.
pub fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("meridian-cache");
        std::fs::create_dir_all(&p).unwrap();
        trim_cache(&p, 2 << 30, 1 << 30);
        p
    })
    .clone()
}

/// Deletes the oldest compiled components in `dir` until they total at most `keep` bytes, when
/// they total more than `over`; and the function cache (`functions/`, always safe to delete)
/// when it alone is over `keep`.
fn trim_cache(dir: &std::path::Path, over: u64, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total > over {
        files.sort();
        for (_, len, path) in files {
            if total <= keep {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
    let functions = dir.join("functions");
    let packs: u64 = std::fs::read_dir(&functions)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    if packs > keep {
        let _ = std::fs::remove_dir_all(&functions);
    }
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts the exit code, printing both streams when it differs.
#[track_caller]
pub fn expect_code(o: &Output, code: i32) -> (String, String) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    (out, err)
}

/// A CA (`ca.pem`, `ca.key`) and a leaf for 127.0.0.1 and localhost signed by it (`cert.pem`,
/// `key.pem`), made in `dir` by `openssl` (P-256, valid one day).
pub(crate) fn test_certificates(dir: &std::path::Path) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=meridian test CA",
            ][..],
        ]
        .concat(),
        [
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ][..],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    ] {
        let o = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
