//! `meridian cache prune`: keeps the compile cache from growing without bound.

use std::collections::BTreeMap;

use meridian_sandbox::PruneReason;
use serde_json::json;

use crate::cli::CacheCmd;
use crate::commands::Ctx;
use crate::out::{errln, outln};
use crate::{Exit, exit};

pub(crate) fn run(ctx: &Ctx, cmd: CacheCmd) -> anyhow::Result<u8> {
    let CacheCmd::Prune {
        older_than,
        dry_run,
    } = cmd;
    let age = crate::runs::retention(&older_than)?;
    let Some(dir) = &ctx.cache_dir else {
        return Err(Exit::invalid(
            "error: there is no compile cache to prune (no HOME or XDG_CACHE_HOME): pass --cache-dir",
        ));
    };
    let exec = ctx.executor()?;
    let pruned = exec
        .sandbox()
        .prune_cache(age, dry_run)
        .expect("the sandbox was given a cache directory");
    let reason = |r: PruneReason| match r {
        PruneReason::OtherEngine => "other-engine",
        PruneReason::Unused => "unused",
        PruneReason::OldPack => "old-pack",
        PruneReason::Leftover => "leftover",
    };
    let removed_bytes: u64 = pruned.removed.iter().map(|(_, n, _)| n).sum();
    if ctx.json {
        let removed: Vec<_> = pruned
            .removed
            .iter()
            .map(|(p, n, r)| json!({ "path": p, "bytes": n, "reason": reason(*r) }))
            .collect();
        let errors: Vec<_> = pruned
            .errors
            .iter()
            .map(|(p, e)| json!({ "path": p, "error": e }))
            .collect();
        outln!(
            "{}",
            json!({
                "cache": dir,
                "dry_run": dry_run,
                "removed": removed,
                "removed_bytes": removed_bytes,
                "kept": { "files": pruned.kept.0, "bytes": pruned.kept.1 },
                "errors": errors,
            })
        )?;
    } else {
        let mut by: BTreeMap<PruneReason, usize> = BTreeMap::new();
        for (_, _, r) in &pruned.removed {
            *by.entry(*r).or_default() += 1;
        }
        let what = |r: PruneReason, n: usize| {
            let s = if n == 1 { "" } else { "s" };
            match r {
                PruneReason::OtherEngine => {
                    format!("{n} component{s} compiled by another wasmtime or for another CPU")
                }
                PruneReason::Unused => format!("{n} component{s} not used for {older_than}"),
                PruneReason::OldPack => {
                    format!("{n} function pack{s} not written for {older_than}")
                }
                PruneReason::Leftover => format!("{n} leftover{s} of interrupted writes"),
            }
        };
        let n = pruned.removed.len();
        let mut line = format!(
            "{} {n} file{} ({}) from the compile cache {}",
            if dry_run { "would remove" } else { "removed" },
            if n == 1 { "" } else { "s" },
            size(removed_bytes),
            dir.display(),
        );
        if !by.is_empty() {
            let parts: Vec<String> = by.into_iter().map(|(r, n)| what(r, n)).collect();
            line.push_str(&format!(": {}", parts.join(", ")));
        }
        outln!("{line}")?;
        outln!(
            "kept {} file{} ({})",
            pruned.kept.0,
            if pruned.kept.0 == 1 { "" } else { "s" },
            size(pruned.kept.1)
        )?;
        for (p, e) in &pruned.errors {
            errln!("error: could not remove {}: {e}", p.display());
        }
    }
    Ok(if pruned.errors.is_empty() {
        exit::OK
    } else {
        exit::INTERNAL
    })
}

/// Bytes as KiB, MiB or GiB with one decimal.
fn size(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", b as f64 / 1_073_741_824.0),
    }
}
