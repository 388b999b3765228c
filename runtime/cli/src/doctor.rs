//! `meridian doctor`: is this machine and state directory fit to run workflows? Opening the
//! journal checks only what is cheap; this verifies it whole, and looks at what the other
//! commands need: a writable state directory and compile cache, the built-in steps, and — for
//! the commands that need them — the Rust target steps are built for and the lab's servers.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::commands::Ctx;
use crate::exit;
use crate::out::outln;

#[derive(Serialize)]
struct Check {
    /// `ok`, `warn` (only some commands need it) or `fail`.
    state: &'static str,
    what: String,
    detail: String,
}

fn check(state: &'static str, what: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        state,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Whether a file can be created (and removed) in `dir`, creating `dir` when missing.
fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Bytes and files under `dir` (bounded walk: at most 100,000 entries).
fn usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files, mut seen) = (0u64, 0u64, 0u32);
    let mut walk = vec![dir.to_path_buf()];
    while let Some(d) = walk.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 100_000 {
                return (bytes, files);
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => walk.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// The steps this binary must carry (checked by name, not read from the list it carries, so a
/// build that lost one fails `doctor`).
const BUILTINS: [&str; 12] = [
    "hello",
    "http-probe",
    "db-postgres",
    "adc-apisix",
    "gslb-powerdns",
    "gslb-route53",
    "gslb-cloudflare",
    "region-lab",
    "region-api7ee",
    "drill-report",
    // Built from JavaScript and Python and checked in (`scripts/build-polyglot-steps`).
    "notify-webhook",
    "pg-canary",
];

pub(crate) fn doctor(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut checks = Vec::new();
    checks.push(match writable(&ctx.state_dir) {
        Ok(()) => check("ok", "state directory", ctx.state_dir.display().to_string()),
        Err(e) => check("fail", "state directory", e),
    });
    checks.push(match ctx.journal() {
        Err(e) => check("fail", "journal", format!("cannot open: {e:#}")),
        Ok(j) => match j.check() {
            Ok(p) if p.is_empty() => {
                check("ok", "journal", format!("{}: verified whole", j.describe()))
            }
            Ok(p) => check(
                "fail",
                "journal",
                format!("{}: {} problem(s): {}", j.describe(), p.len(), p.join("; ")),
            ),
            Err(e) => check("fail", "journal", format!("{}: {e}", j.describe())),
        },
    });
    checks.push(match &ctx.cache_dir {
        None => check(
            "warn",
            "compile cache",
            "none (no HOME or XDG_CACHE_HOME): every run compiles its components again; set --cache-dir",
        ),
        Some(dir) => match writable(dir) {
            Ok(()) => {
                let (bytes, files) = usage(dir);
                check(
                    "ok",
                    "compile cache",
                    format!("{}: {files} file(s), {} MiB", dir.display(), bytes >> 20),
                )
            }
            Err(e) => check("fail", "compile cache", e),
        },
    });
    // Present, and a WebAssembly component (its preamble: magic, version 0x0d, layer 1).
    let missing: Vec<&str> = BUILTINS
        .iter()
        .copied()
        .filter(|b| {
            meridian_artifacts::builtin(b)
                .is_none_or(|bytes| !bytes.starts_with(b"\0asm\x0d\0\x01\0"))
        })
        .collect();
    checks.push(if missing.is_empty() {
        check(
            "ok",
            "built-in steps",
            format!("{} carried by this binary", BUILTINS.len()),
        )
    } else {
        check(
            "fail",
            "built-in steps",
            format!("missing: {}", missing.join(", ")),
        )
    });
    let target = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    checks.push(match target {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2") => {
            check("ok", "Rust target wasm32-wasip2", "installed (for `new step` builds)")
        }
        Ok(_) => check(
            "warn",
            "Rust target wasm32-wasip2",
            "not installed; Rust steps need it: rustup target add wasm32-wasip2",
        ),
        Err(_) => check(
            "warn",
            "Rust target wasm32-wasip2",
            "rustup not found; Rust steps need Rust with the wasm32-wasip2 target (https://rustup.rs)",
        ),
    });
    for (what, found) in meridian_lab::prerequisites() {
        checks.push(match found {
            Ok(path) => check(
                "ok",
                what,
                format!("{} (for `meridian lab`)", path.display()),
            ),
            Err(e) => check("warn", what, format!("{e} (only `meridian lab` needs it)")),
        });
    }
    let failed = checks.iter().filter(|c| c.state == "fail").count();
    if ctx.json {
        outln!("{}", json!({ "ok": failed == 0, "checks": checks }))?;
    } else {
        for c in &checks {
            let mark = match c.state {
                "ok" => "ok  ",
                "warn" => "warn",
                _ => "FAIL",
            };
            outln!("  {mark} {:<34} {}", c.what, c.detail)?;
        }
        outln!(
            "{}",
            if failed == 0 {
                "meridian doctor: ok".to_string()
            } else {
                format!("meridian doctor: {failed} problem(s)")
            }
        )?;
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

#[cfg(test)]
mod tests {
    #[test]
    fn doctor_checks_every_step_the_build_carries() {
        for (name, _) in meridian_artifacts::BUILTIN {
            assert!(
                super::BUILTINS.contains(name),
                "built-in `{name}` is not in doctor's list"
            );
        }
    }
}
