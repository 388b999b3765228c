//! `meridian runs …`: the journal's history, and keeping it (prune, check).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::cli::RunsCmd;
use crate::commands::{Ctx, safe, store_fail};
use crate::out::{errln, outln};
use crate::view::{self, fmt_dur};
use crate::{Exit, exit};

pub fn run(ctx: &Ctx, cmd: RunsCmd) -> anyhow::Result<u8> {
    match cmd {
        RunsCmd::List { limit } => list(ctx, limit),
        RunsCmd::Show { run_id, html } => show(ctx, &run_id, html.as_deref()),
        RunsCmd::Prune { older_than } => prune(ctx, &older_than),
        RunsCmd::Check => check(ctx),
    }
}

fn list(ctx: &Ctx, limit: usize) -> anyhow::Result<u8> {
    let journal = ctx.journal()?;
    let runs = journal.runs(limit).map_err(store_fail)?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        outln!("no runs yet in {}", journal.describe())?;
    }
    for r in runs {
        let took = r
            .finished_at_ms
            .map(|f| fmt_dur(Duration::from_millis((f - r.created_at_ms).max(0) as u64)))
            .unwrap_or_else(|| "-".into());
        outln!(
            "{:<22} {:<18} {:<6} {:>9}  {}  {}",
            r.id,
            r.status.as_str(),
            r.mode.as_str(),
            took,
            r.workflow,
            r.message.unwrap_or_default()
        )?;
    }
    Ok(exit::OK)
}

fn show(ctx: &Ctx, run_id: &str, html: Option<&Path>) -> anyhow::Result<u8> {
    let journal = ctx.journal()?;
    let (record, summary) = journal.run(run_id).map_err(store_fail)?;
    let events = journal.events(run_id).map_err(store_fail)?;
    if let Some(path) = html {
        std::fs::write(path, crate::report::html(&record, &summary, &events))
            .map_err(|e| Exit::invalid(format!("error: writing {}: {e}", path.display())))?;
        errln!("wrote {}", path.display());
    }
    let legs = journal.legs(run_id).map_err(store_fail)?;
    if ctx.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "run": record, "summary": summary, "events": events, "legs": legs,
            }))?
        )?;
        return Ok(exit::OK);
    }
    outln!(
        "run {} — {} ({})",
        record.id,
        record.workflow,
        record.mode.as_str()
    )?;
    outln!("  workflow: {}", record.workflow_path)?;
    outln!(
        "  status:   {} {}",
        summary.status.as_str(),
        safe(summary.message.as_deref().unwrap_or_default())
    )?;
    outln!("  inputs:   {}", record.inputs)?;
    outln!("timeline:")?;
    let t0 = events.first().map(|e| e.at_ms).unwrap_or(0);
    for e in &events {
        let Some(line) = view::describe(&e.event) else {
            continue;
        };
        outln!(
            "  +{:>8}  {line}",
            fmt_dur(Duration::from_millis((e.at_ms - t0).max(0) as u64))
        )?;
    }
    outln!("outputs:")?;
    for l in legs {
        outln!(
            "  {} [{}] {}",
            view::leg_id(&l.step, &l.leg),
            l.outcome.as_str(),
            safe(
                &l.error
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| l.output.to_string())
            )
        )?;
    }
    Ok(exit::OK)
}

/// `runs prune --older-than D`: deletes ended runs that finished at least `D` ago.
fn prune(ctx: &Ctx, older_than: &str) -> anyhow::Result<u8> {
    let age = meridian_model::duration::parse_duration(older_than)
        .map_err(|e| Exit::invalid(format!("error: --older-than `{older_than}`: {e}")))?;
    let journal = ctx.journal()?;
    let n = journal.prune(age).map_err(store_fail)?;
    if ctx.json {
        outln!("{}", json!({ "pruned": n }))?;
    } else {
        outln!(
            "pruned {n} run{} that ended at least {} ago from {}",
            if n == 1 { "" } else { "s" },
            older_than.trim(),
            journal.describe()
        )?;
    }
    Ok(exit::OK)
}

/// `runs check`: the whole journal, however long it takes; exit 5 when it is damaged.
fn check(ctx: &Ctx) -> anyhow::Result<u8> {
    let journal = ctx.journal()?;
    let problems = journal.check().map_err(store_fail)?;
    if ctx.json {
        outln!(
            "{}",
            json!({ "journal": journal.describe(), "problems": problems })
        )?;
    } else if problems.is_empty() {
        outln!("{}: ok", journal.describe())?;
    } else {
        outln!("{}: {} problem(s)", journal.describe(), problems.len())?;
        for p in &problems {
            outln!("  {p}")?;
        }
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::INTERNAL
    })
}
