//! The end of a run as the CLI shows it: the summary table (a row per leg, errors and logs
//! under their row), the drill's figures against its targets, and the exit code of its status.

use meridian_engine::{Mode, RunReport, RunStatus};
use meridian_model::Workflow;
use meridian_runner::{DrillVerdict, Finished, Verdict};

use crate::commands::{Ctx, indented, safe};
use crate::exit;
use crate::out::outln;
use crate::view::{self, fmt_dur};

/// Where the text of a summary row starts (`  success    `).
const ROW_INDENT: &str = "             ";

/// Prints a finished run and maps its status to the exit code.
pub(crate) fn report(ctx: &Ctx, done: &Finished) -> anyhow::Result<u8> {
    if ctx.json {
        let mut out = serde_json::to_value(&done.report)?;
        if let (Some(d), Some(o)) = (&done.drill, out.as_object_mut()) {
            o.insert("drill".into(), serde_json::to_value(d)?);
        }
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        print_summary(&done.workflow, &done.report, done.drill.as_ref())?;
    }
    // A drill that missed its targets (or could not measure them) is not a success to whatever
    // watches the exit code (a scheduler, CI): it exited 0 with "run succeeded".
    let drill_not_met = done.report.mode == Mode::Apply
        && done
            .drill
            .as_ref()
            .is_some_and(|d| d.verdict != meridian_runner::Overall::Met);
    Ok(match done.report.status {
        RunStatus::Succeeded if drill_not_met => exit::DRILL_NOT_MET,
        RunStatus::Succeeded => exit::OK,
        RunStatus::Failed | RunStatus::Cancelled => exit::FAILED,
        RunStatus::AwaitingApproval => exit::AWAITING_APPROVAL,
        RunStatus::TimedOut => exit::TIMED_OUT,
        // The engine returns a report only for a run that ended.
        RunStatus::Running => exit::INTERNAL,
    })
}

fn print_summary(wf: &Workflow, r: &RunReport, drill: Option<&DrillVerdict>) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    // Rendered whole, then written at once: stdout writes each line on its own (a `write(2)`
    // a line, ~3 µs each: 30 ms at the end of a 10,000-step run).
    let mut buf = String::new();
    writeln!(buf)?;
    writeln!(buf, "{} — run {} ({:?})", safe(&wf.name), r.run_id, r.mode)?;
    let mut run = view::RunContext::new(&r.run_id);
    for s in &r.steps {
        for l in &s.legs {
            let id = view::leg_id(&s.id, &l.key);
            let reused = if l.reused { "  (from journal)" } else { "" };
            writeln!(
                buf,
                "  {:<10} {:<28} {:>9}  attempts {}{reused}",
                l.outcome.as_str(),
                id,
                fmt_dur(l.duration),
                l.attempts
            )?;
            // An error on its own lines under the step's name, every line indented alike.
            if let Some(e) = &l.error {
                writeln!(buf, "{ROW_INDENT}{}", indented(&e.to_string(), ROW_INDENT))?;
            }
            run.leg(id, l.outcome);
        }
        if s.legs.is_empty() {
            writeln!(
                buf,
                "  {:<10} {:<28} {:>9}  {}",
                s.outcome.as_str(),
                s.id,
                "",
                safe(s.reason.as_deref().unwrap_or_default())
            )?;
        }
    }
    if r.mode == Mode::Plan {
        let changes: Vec<String> = r
            .steps
            .iter()
            .flat_map(|s| {
                s.legs.iter().flat_map(move |l| {
                    l.plan.iter().map(move |p| {
                        format!(
                            "  {}: {}",
                            view::leg_id(&s.id, &l.key),
                            safe(&p.to_string())
                        )
                    })
                })
            })
            .collect();
        let complete = r.status == RunStatus::Succeeded;
        match (changes.is_empty(), complete) {
            (_, true) => writeln!(buf, "\nplan (changes that `meridian run` would make):"),
            (true, false) => writeln!(
                buf,
                "\nplan incomplete: the run {} before every step was planned; no changes were recorded",
                r.status.as_str()
            ),
            (false, false) => writeln!(
                buf,
                "\nplan incomplete: the run {} before every step was planned; changes recorded so far:",
                r.status.as_str()
            ),
        }?;
        for c in &changes {
            writeln!(buf, "{c}")?;
        }
        if changes.is_empty() && complete {
            writeln!(buf, "  no changes")?;
        }
    }
    for c in &r.compensations {
        writeln!(
            buf,
            "  compensated {} → {}{}",
            view::leg_id(&c.step, &c.leg),
            c.outcome.as_str(),
            c.error
                .as_ref()
                .map(|e| format!(": {}", safe(&e.to_string())))
                .unwrap_or_default()
        )?;
    }
    // A plan measures nothing: its drill table would say "not measured" for every figure.
    if let Some(d) = drill.filter(|_| r.mode != Mode::Plan) {
        writeln!(buf, "\n{}", drill_lines(d))?;
    }
    writeln!(
        buf,
        "\nrun {} in {}: {}",
        r.status.as_str(),
        match r.resumed {
            Some(this) => format!(
                "{} ({} of it in this resume)",
                fmt_dur(r.duration),
                fmt_dur(this)
            ),
            None => fmt_dur(r.duration),
        },
        indented(&run.message(r.status, &r.message), "  ")
    )?;
    crate::out::write(format_args!("{buf}"))
}

/// The drill's figures as the table the README shows.
pub(crate) fn drill_lines(d: &DrillVerdict) -> String {
    let mut lines = vec![format!("drill: {}", d.verdict.as_str())];
    let unit = |u: &str| {
        if u == "ms" || u == "B" {
            u.to_string()
        } else {
            format!(" {u}")
        }
    };
    // The name column as wide as the longest name ("Downtime, best client" broke a fixed 15).
    let width = d
        .figures
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0)
        .max(15);
    for f in &d.figures {
        let got = f
            .achieved
            .map(|g| format!("{g:.0}{}", unit(f.unit)))
            .unwrap_or("not measured".into());
        let target = f
            .target
            .map(|t| format!("{t:.0}{}", unit(f.unit)))
            .unwrap_or("-".into());
        let verdict = match f.verdict() {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotMeasured if f.target.is_some() => "INCOMPLETE",
            Verdict::NotMeasured | Verdict::NoTarget => "",
        };
        lines.push(format!(
            "  {:<width$} achieved {got:<14} target {target:<12} {verdict}",
            f.name
        ));
        if let Some(note) = &f.note {
            lines.push(format!(
                "    ({})",
                meridian_protocol::text::for_terminal(note, "     ")
            ));
        }
    }
    lines.join("\n")
}
