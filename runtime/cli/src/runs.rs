//! `meridian runs …`: the journal's history, and keeping it (prune, check).

use std::path::Path;
use std::time::Duration;

use meridian_engine::RunStatus;
use serde_json::json;

use crate::cli::RunsCmd;
use crate::commands::{Ctx, indented, safe, store_fail};
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
        return Ok(exit::OK);
    }
    // The workflow column is as wide as the longest name listed, so messages line up.
    let names: Vec<String> = runs
        .iter()
        .map(|r| safe(&r.workflow).into_owned())
        .collect();
    let wide = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    outln!(
        "{:<23} {:<20} {:>9}  {:<18} {:<5}  {:<wide$}  MESSAGE",
        "RUN",
        "STARTED (UTC)",
        "DURATION",
        "STATE",
        "MODE",
        "WORKFLOW"
    )?;
    for (r, name) in runs.into_iter().zip(names) {
        let took = r
            .finished_at_ms
            .map(|f| fmt_dur(Duration::from_millis((f - r.created_at_ms).max(0) as u64)))
            .unwrap_or_else(|| "-".into());
        let mut run = view::RunContext::new(&r.id).read_from_server(ctx.server.as_deref());
        // A waiting run's command to type names the secrets file it was started with.
        if r.status == RunStatus::AwaitingApproval && ctx.server.is_none() {
            let (record, _) = journal.run(&r.id).map_err(store_fail)?;
            run = run
                .resumed_with(resume_flags(ctx, &record))
                .started_by(record.settings.trigger.as_deref());
        }
        // "all steps succeeded" must not hide a leg that failed under continue-on-error.
        if r.status == RunStatus::Succeeded {
            for l in journal.legs(&r.id).map_err(store_fail)? {
                run.leg(view::leg_id(&l.step, &l.leg), l.outcome);
            }
        }
        let mut message = run.message(r.status, r.message.as_deref().unwrap_or_default());
        let mut state = r.status.as_str();
        if interrupted(ctx, journal.as_ref(), &r.id, r.status) {
            state = "interrupted";
            let (record, _) = journal.run(&r.id).map_err(store_fail)?;
            message = format!(
                "nobody drives it now; `meridian resume {}{}` goes on (a server resumes the runs it started)",
                r.id,
                resume_flags(ctx, &record)
            );
        }
        outln!(
            "{:<23} {:<20} {:>9}  {:<18} {:<5}  {:<wide$}  {}",
            r.id,
            utc(r.created_at_ms),
            took,
            state,
            r.mode.as_str(),
            name,
            // One row per run: a message on several lines is shown on one.
            safe(&message.replace('\n', " "))
        )?;
    }
    Ok(exit::OK)
}

/// The web console's run page as one file. The drill's targets and the step list come from the
/// workflow file the run was started from, read again now.
fn html_page(
    record: &meridian_store::RunRecord,
    summary: &meridian_store::RunSummary,
    events: &[meridian_store::EventRecord],
    legs: &[meridian_store::LegRecord],
) -> String {
    let loaded = meridian_runner::load(Path::new(&record.workflow_path));
    let (steps, drill, note) = match &loaded {
        Ok(l) => (
            l.workflow
                .steps
                .iter()
                .map(|s| s.id.value.clone())
                .collect(),
            meridian_runner::DrillVerdict::of_run(&l.workflow, legs, events),
            None,
        ),
        Err(e) => (
            Vec::new(),
            None,
            Some(format!(
                "The workflow file {} cannot be read now ({e}), so its drill targets are unknown.",
                record.workflow_path
            )),
        ),
    };
    meridian_console::run_page(
        &meridian_console::RunData {
            record,
            summary,
            events,
            steps: &steps,
            drill: drill.as_ref(),
            drill_note: note.as_deref(),
            now_ms: meridian_store::pending::now_ms(),
            live: false,
        },
        meridian_console::Shell::File,
    )
}

/// Milliseconds since the epoch as `2026-12-03 17:40:12` (UTC), without a time-zone database.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn show(ctx: &Ctx, run_id: &str, html: Option<&Path>) -> anyhow::Result<u8> {
    let journal = ctx.journal()?;
    let (record, summary) = journal.run(run_id).map_err(store_fail)?;
    let events = journal.events(run_id).map_err(store_fail)?;
    let legs = journal.legs(run_id).map_err(store_fail)?;
    if let Some(path) = html {
        std::fs::write(path, html_page(&record, &summary, &events, &legs))
            .map_err(|e| Exit::invalid(format!("error: writing {}: {e}", path.display())))?;
        errln!("wrote {}", path.display());
        // The page is what was asked for: the text report is not printed as well.
        return Ok(exit::OK);
    }
    // A drill's figures against its targets, judged as the run judged them (the targets come
    // from the workflow file the run was started from, read again now).
    let drill = meridian_runner::load(Path::new(&record.workflow_path))
        .ok()
        .and_then(|l| meridian_runner::DrillVerdict::of_run(&l.workflow, &legs, &events));
    if ctx.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "run": record, "summary": summary, "events": events, "legs": legs,
                "drill": drill,
            }))?
        )?;
        return Ok(exit::OK);
    }
    // A workflow's name and file name may hold terminal controls (a repository's workflow).
    outln!(
        "run {} — {} ({})",
        record.id,
        safe(&record.workflow),
        record.mode.as_str()
    )?;
    outln!("  workflow: {}", safe(&record.workflow_path))?;
    let flags = resume_flags(ctx, &record);
    let mut run = view::RunContext::new(&record.id)
        .read_from_server(ctx.server.as_deref())
        .resumed_with(flags.clone())
        .started_by(record.settings.trigger.as_deref());
    for l in &legs {
        run.leg(view::leg_id(&l.step, &l.leg), l.outcome);
    }
    if interrupted(ctx, journal.as_ref(), &record.id, summary.status) {
        outln!(
            "  status:   interrupted: nobody drives it now; `meridian resume {}{}` goes on (a server resumes the runs it started)",
            record.id,
            resume_flags(ctx, &record)
        )?;
    } else {
        outln!(
            "  status:   {}: {}",
            summary.status.as_str(),
            indented(
                &run.message(
                    summary.status,
                    summary.message.as_deref().unwrap_or_default()
                ),
                "            "
            )
        )?;
    }
    if let Some(t) = &record.settings.trigger {
        outln!("  trigger:  {}", safe(t))?;
    }
    // The files of a git commit are the run's configuration, not something to read inline.
    let mut inputs = record.inputs.clone();
    if let Some(files) = inputs.get_mut("git_files")
        && let Some(n) = files.as_object().map(|m| m.len())
    {
        *files = json!(format!("<{n} files>"));
    }
    outln!("  inputs:   {}", safe(&inputs.to_string()))?;
    outln!("timeline:")?;
    let t0 = events.first().map(|e| e.at_ms).unwrap_or(0);
    let mut story = view::RunContext::new(&record.id)
        .read_from_server(ctx.server.as_deref())
        .resumed_with(flags)
        .started_by(record.settings.trigger.as_deref());
    for e in &events {
        story.see(&e.event);
        // `  +   1.23s  `: continuation lines start under the line's text.
        let Some(line) = view::describe(&e.event, &story, "             ") else {
            continue;
        };
        outln!(
            "  +{:>8}  {line}",
            fmt_dur(Duration::from_millis((e.at_ms - t0).max(0) as u64))
        )?;
    }
    outln!("outputs:")?;
    // A plan's changes, as `meridian plan` listed them (they were in `--json` only).
    let planned: Vec<String> = legs
        .iter()
        .flat_map(|l| {
            l.plan.iter().map(move |p| {
                format!(
                    "  {}: {}",
                    view::leg_id(&l.step, &l.leg),
                    safe(&p.to_string())
                )
            })
        })
        .collect();
    for l in legs {
        outln!(
            "  {} [{}] {}",
            view::leg_id(&l.step, &l.leg),
            l.outcome.as_str(),
            indented(
                &l.error
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| l.output.to_string()),
                "      "
            )
        )?;
    }
    if record.mode == meridian_engine::Mode::Plan {
        outln!("plan (changes that `meridian run` would make):")?;
        if planned.is_empty() {
            outln!("  no changes")?;
        }
        for c in &planned {
            outln!("{c}")?;
        }
    }
    if let Some(d) = &drill {
        outln!("{}", crate::summary::drill_lines(d))?;
    }
    Ok(exit::OK)
}

/// A run the journal says is running that no process drives: its lease is gone, or held by a
/// `meridian` of this machine that no longer runs (killed, or the machine restarted), so it
/// stays so until `meridian resume` (a server resumes the runs it started by itself). Read from this machine's journal only: through
/// `--server`, the server answers for its runs.
fn interrupted(
    ctx: &Ctx,
    journal: &dyn meridian_store::Journal,
    id: &str,
    status: RunStatus,
) -> bool {
    status == RunStatus::Running
        && ctx.server.is_none()
        && journal
            .lease_holder(id)
            .is_ok_and(|h| h.is_none_or(|h| crate::lease::holder_is_dead(&h)))
}

/// `runs prune --older-than D`: deletes ended runs that finished at least `D` ago.
fn prune(ctx: &Ctx, older_than: &str) -> anyhow::Result<u8> {
    let age = retention(older_than)?;
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

/// What `meridian resume` needs beside a journaled run's id: this command's state directory and
/// the secrets file the run was started with.
fn resume_flags(ctx: &Ctx, record: &meridian_store::RunRecord) -> String {
    view::resume_flags_for(
        &ctx.state_dir,
        record.settings.secrets_file.as_deref().map(Path::new),
    )
}

/// An `--older-than` for what deletes: a duration with its unit. A bare number, seconds in a
/// workflow, is refused here: `--older-than 30` meant 30 days to whoever typed it, and deleted
/// the runs of the last 30 seconds.
pub(crate) fn retention(text: &str) -> anyhow::Result<std::time::Duration> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Exit::invalid(format!(
            "error: --older-than `{t}` has no unit: write it with one, e.g. `{t}d` (days) or `{t}h`"
        )));
    }
    meridian_model::duration::parse_duration(t)
        .map_err(|e| Exit::invalid(format!("error: --older-than `{t}`: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_times_are_utc_calendar_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        // 2024-02-29 23:59:59.999 UTC: a leap day, the last millisecond of it.
        assert_eq!(super::utc(1_709_251_199_999), "2024-02-29 23:59:59");
        assert_eq!(super::utc(1_796_318_518_979), "2026-12-03 17:21:58");
    }
}
