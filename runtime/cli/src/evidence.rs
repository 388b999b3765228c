//! `meridian drills list` and `meridian evidence export|verify|key`.

use std::time::Duration;

use meridian_runner::evidence::{self, SigningKey};
use meridian_runner::history;
use serde_json::json;

use crate::cli::{DrillsCmd, EvidenceCmd};
use crate::commands::{Ctx, store_fail};
use crate::out::{errln, outln};
use crate::runs::utc;
use crate::view::fmt_dur;
use crate::{Exit, exit};

pub fn drills(ctx: &Ctx, cmd: DrillsCmd) -> anyhow::Result<u8> {
    let DrillsCmd::List { workflow, last } = cmd;
    let journal = ctx.journal()?;
    let runs = history::history(&*journal, workflow.as_deref(), last.max(1)).map_err(store_fail)?;
    let summary = history::summarize(&runs);
    // The figures of one workflow's drills: pooled, a failback's RTO (from its run's start)
    // counted in a drill's p95 and pass rate.
    let mut workflows: Vec<&str> = runs.iter().map(|r| r.workflow.as_str()).collect();
    workflows.sort_unstable();
    workflows.dedup();
    let by_workflow: Vec<(&str, history::Summary)> = workflows
        .iter()
        .map(|w| {
            let own: Vec<_> = runs.iter().filter(|r| r.workflow == *w).cloned().collect();
            (*w, history::summarize(&own))
        })
        .collect();
    if ctx.json {
        let by: serde_json::Map<String, serde_json::Value> = by_workflow
            .iter()
            .map(|(w, s)| Ok(((*w).to_string(), serde_json::to_value(s)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"drills": runs, "summary": summary, "by_workflow": by})
            )?
        )?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        outln!(
            "no drills yet{} in {}",
            workflow.map(|w| format!(" of `{w}`")).unwrap_or_default(),
            journal.describe()
        )?;
        return Ok(exit::OK);
    }
    let wide = runs
        .iter()
        .map(|r| r.workflow.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    outln!(
        "{:<23} {:<20} {:<wide$} {:>9} {:>9} {:>9} {:>10}  {}",
        "RUN",
        "STARTED (UTC)",
        "WORKFLOW",
        "RTO",
        "CAPACITY",
        "ROWS LOST",
        "DOWNTIME",
        "VERDICT"
    )?;
    let ms = |v: Option<f64>| {
        v.map(|v| fmt_dur(Duration::from_millis(v as u64)))
            .unwrap_or_else(|| "-".into())
    };
    for r in &runs {
        let verdict = r
            .drill
            .as_ref()
            .map_or("incomplete", |d| d.verdict.as_str());
        outln!(
            "{:<23} {:<20} {:<wide$} {:>9} {:>9} {:>9} {:>10}  {}",
            r.run,
            utc(r.created_at_ms),
            r.workflow,
            ms(r.figure("RTO")),
            ms(r.figure("Capacity")),
            r.figure("RPO rows")
                .map_or("-".into(), |v| format!("{v:.0}")),
            ms(r.figure("Downtime")),
            verdict
        )?;
    }
    outln!()?;
    for (w, summary) in &by_workflow {
        let rate = summary
            .pass_rate
            .map_or("-".into(), |p| format!("{:.0} %", p * 100.0));
        let of = if by_workflow.len() > 1 {
            format!(" of `{w}`")
        } else {
            String::new()
        };
        outln!(
            "{} drill{}{of}: {} met, {} missed, {} incomplete (pass rate {rate}); RTO p50 {}, p95 {}; worst time to full capacity {}; worst rows lost {}, worst downtime {}",
            summary.drills,
            if summary.drills == 1 { "" } else { "s" },
            summary.met,
            summary.missed,
            summary.incomplete,
            ms(summary.rto_p50_ms),
            ms(summary.rto_p95_ms),
            ms(summary.worst_capacity_ms),
            summary
                .worst_rows_lost
                .map_or("-".into(), |v| format!("{v:.0}")),
            ms(summary.worst_downtime_ms),
        )?;
    }
    // The figures are of the drills listed: said when there may be older ones.
    if runs.len() >= last.max(1) {
        outln!("(the last {} drills; `--last N` for more)", runs.len())?;
    }
    Ok(exit::OK)
}

pub fn evidence(ctx: &Ctx, cmd: EvidenceCmd) -> anyhow::Result<u8> {
    let key_error = |e: evidence::EvidenceError| Exit::invalid(format!("error: {e}"));
    match cmd {
        EvidenceCmd::Key => {
            let key = SigningKey::load_or_create(&ctx.state_dir).map_err(key_error)?;
            if ctx.json {
                outln!(
                    "{}",
                    json!({"public_key": key.public_hex(), "key_file": key.path})
                )?;
            } else {
                outln!("{}", key.public_hex())?;
            }
            Ok(exit::OK)
        }
        EvidenceCmd::Export { run_id, out } => {
            let journal = ctx.journal()?;
            let key = SigningKey::load_or_create(&ctx.state_dir).map_err(key_error)?;
            let doc = evidence::export(&*journal, &run_id, &key).map_err(|e| match e {
                evidence::EvidenceError::Store(s) => store_fail(s),
                other => key_error(other),
            })?;
            let path = out.unwrap_or_else(|| format!("{run_id}.evidence.json").into());
            std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
                .map_err(|e| Exit::invalid(format!("error: writing {}: {e}", path.display())))?;
            outln!(
                "wrote {} (signed by {}; verify with `meridian evidence verify {} --public-key {}`)",
                path.display(),
                key.public_hex(),
                path.display(),
                key.public_hex()
            )?;
            Ok(exit::OK)
        }
        EvidenceCmd::Verify { file, public_key } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Exit::invalid(format!("error: reading {}: {e}", file.display())))?;
            let trusted = match public_key {
                Some(k) => k,
                None => {
                    let path = ctx.state_dir.join(evidence::KEY_FILE);
                    if !path.exists() {
                        return Err(Exit::invalid(format!(
                            "error: no key to verify with: {} does not exist\n  = help: pass the signer's key with --public-key (`meridian evidence key` prints it where the drill ran)",
                            path.display()
                        )));
                    }
                    SigningKey::load_or_create(&ctx.state_dir)
                        .map_err(key_error)?
                        .public_hex()
                }
            };
            match evidence::verify(&text, &trusted) {
                Ok(v) => {
                    outln!(
                        "ok: {} is the untouched evidence of run {} ({}, {} events, drill {}), signed by {}",
                        file.display(),
                        v.run,
                        v.workflow,
                        v.events,
                        v.drill_verdict.as_deref().unwrap_or("-"),
                        v.public_key
                    )?;
                    Ok(exit::OK)
                }
                Err(e) => {
                    errln!("error: {} failed verification: {e}", file.display());
                    Ok(exit::FAILED)
                }
            }
        }
    }
}
