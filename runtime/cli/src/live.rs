//! The live table of a run on a terminal: one row per step (per leg once a matrix step's legs
//! start) with its state, duration, attempt and last note.
//!
//! Drawing is indicatif's: it redraws in place at a bounded rate, fits each row to the
//! terminal's width as it is at each draw (so a narrow or resized terminal never wraps a row and
//! breaks the redraw), and draws nothing when stderr is not a terminal. What happens between the
//! rows — a compensation, a canary figure — is printed above the table; the run's last line is
//! printed below it once the table is final. A prompt (an approval gate) hides the table while it
//! asks, so the table is drawn once, below the answer.
//!
//! Colour follows the usual conventions: none when `NO_COLOR` is set (to anything but empty),
//! `TERM=dumb` or `CLICOLOR=0`; forced by `CLICOLOR_FORCE`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console::Style;
use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use meridian_engine::{Event, EventSink, Outcome, SinkError};
use meridian_protocol::text::for_terminal;

use crate::view::{RunContext, describe, fmt_dur, leg_id};

/// Whether stderr gets colour (see the module docs).
pub(crate) fn colour_stderr() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    if std::env::var("TERM").is_ok_and(|t| t == "dumb")
        || std::env::var("CLICOLOR").is_ok_and(|v| v == "0")
    {
        return false;
    }
    std::io::stderr().is_terminal()
}

/// Whether a table redrawn in place can work: stderr is a terminal that moves its cursor.
pub(crate) fn can_redraw() -> bool {
    std::io::stderr().is_terminal()
        && !std::env::var("TERM").is_ok_and(|t| t == "dumb")
        && std::env::var_os("MERIDIAN_PLAIN").is_none()
}

#[derive(Clone)]
struct Row {
    state: Outcome,
    running: bool,
    attempt: u32,
    since: Instant,
    took: Option<Duration>,
    note: String,
}

impl Row {
    fn waiting() -> Row {
        Row {
            state: Outcome::Skipped,
            running: false,
            attempt: 0,
            since: Instant::now(),
            took: None,
            note: "waiting".into(),
        }
    }
}

struct LiveState {
    rows: IndexMap<String, Row>,
    /// One bar per row, in row order.
    bars: Vec<ProgressBar>,
    done: bool,
    /// A prompt is on the terminal: nothing is drawn.
    paused: bool,
    run: RunContext,
    colour: bool,
    started: Instant,
}

/// The live table; an event sink.
#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<LiveState>>,
    multi: MultiProgress,
}

/// The table being drawn now, for [`with_table_hidden`].
static ACTIVE: Mutex<Option<Live>> = Mutex::new(None);

/// Runs `f` (a prompt on the terminal) with the live table out of the way: the table is
/// erased, nothing is drawn while `f` runs, and it is drawn again below what `f` printed.
pub(crate) fn with_table_hidden<T>(f: impl FnOnce() -> T) -> T {
    let live = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(live) = live else {
        return f();
    };
    {
        let mut st = live.lock();
        st.paused = true;
        let _ = live.multi.clear();
        live.multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let answer = f();
    let mut st = live.lock();
    st.paused = false;
    live.multi
        .set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    refresh(&live.multi, &mut st);
    answer
}

impl Live {
    /// A table of `step_ids`, redrawn by a ticker (so running durations advance between
    /// events) until the run finishes.
    pub fn new(step_ids: &[String]) -> Self {
        let colour = colour_stderr();
        console::set_colors_enabled_stderr(colour);
        let rows = step_ids
            .iter()
            .map(|s| (s.clone(), Row::waiting()))
            .collect();
        let live = Live {
            state: Arc::new(Mutex::new(LiveState {
                rows,
                bars: Vec::new(),
                done: false,
                paused: false,
                run: RunContext::default(),
                colour,
                started: Instant::now(),
            })),
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
        };
        {
            let mut st = live.lock();
            refresh(&live.multi, &mut st);
        }
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(live.clone());
        let ticker = live.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut st = ticker.lock();
                if st.done {
                    break;
                }
                if !st.paused {
                    refresh(&ticker.multi, &mut st);
                }
            }
        });
        live
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The first line of a step's text, escaped for the terminal.
fn first_line(s: &str) -> String {
    for_terminal(s.split('\n').next().unwrap_or(""), "").into_owned()
}

/// Cuts `s` to `n` characters, marking the cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    } else {
        s.to_string()
    }
}

/// Brings the bars in line with the rows: one bar per row, each showing its row.
fn refresh(multi: &MultiProgress, st: &mut LiveState) {
    let style =
        ProgressStyle::with_template("{prefix}{wide_msg}").expect("a fixed, valid template");
    while st.bars.len() < st.rows.len() {
        let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
        st.bars.push(bar);
    }
    while st.bars.len() > st.rows.len() {
        if let Some(bar) = st.bars.pop() {
            multi.remove(&bar);
        }
    }
    // Ids take what the terminal spares after the marks, durations and attempts (at least 12).
    let cols = usize::from(console::Term::stderr().size().1).max(40);
    let longest = st.rows.keys().map(|k| k.chars().count()).max().unwrap_or(4);
    let width = longest.clamp(4, cols.saturating_sub(36).max(12));
    let spin = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let frame = (st.started.elapsed().as_millis() / 100) as usize;
    let paint = |style: Style, text: String| -> String {
        if st.colour {
            style.force_styling(true).apply_to(text).to_string()
        } else {
            text
        }
    };
    for ((id, row), bar) in st.rows.iter().zip(&st.bars) {
        let (mark, style) = if row.running {
            (spin[frame % spin.len()], Style::new().cyan())
        } else if row.took.is_none() && row.note == "waiting" {
            ('·', Style::new().dim())
        } else {
            match row.state {
                Outcome::Success => ('✓', Style::new().green()),
                Outcome::Failure => ('✗', Style::new().red()),
                Outcome::Cancelled => ('⊘', Style::new().yellow()),
                Outcome::Skipped => ('-', Style::new().dim()),
            }
        };
        let dur = match (row.running, row.took) {
            (true, _) => fmt_dur(row.since.elapsed()),
            (false, Some(d)) => fmt_dur(d),
            _ => String::new(),
        };
        let attempt = if row.attempt > 1 {
            format!("attempt {}", row.attempt)
        } else {
            String::new()
        };
        let id = cut(id, width);
        bar.set_prefix(format!(
            " {} {id:<width$}  {dur:>8}  {attempt:<10} ",
            paint(style, mark.to_string())
        ));
        bar.set_message(paint(Style::new().dim(), first_line(&row.note)));
    }
}

impl EventSink for Live {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        let mut st = self.lock();
        st.run.see(event);
        match event {
            Event::AttemptStarted {
                step, leg, attempt, ..
            } => {
                let id = leg_id(step, leg);
                let row = st.rows.entry(id).or_insert_with(Row::waiting);
                if *attempt == 1 {
                    row.since = Instant::now();
                }
                row.running = true;
                row.attempt = *attempt;
                row.note = "running".into();
                // A matrix step's placeholder row goes once its legs appear.
                if !leg.is_empty() {
                    st.rows.shift_remove(step.as_str());
                }
            }
            Event::AttemptFailed {
                step,
                leg,
                error,
                retry_in,
                ..
            } => {
                if let Some(row) = st.rows.get_mut(&leg_id(step, leg)) {
                    row.note = match retry_in {
                        Some(d) => format!("{error} (retry in {})", fmt_dur(*d)),
                        None => error.to_string(),
                    };
                }
            }
            Event::LegFinished {
                step,
                leg,
                outcome,
                duration,
                error,
                ..
            } => {
                let row = st.rows.entry(leg_id(step, leg)).or_insert_with(|| Row {
                    attempt: 1,
                    ..Row::waiting()
                });
                row.running = false;
                row.state = *outcome;
                row.took = Some(*duration);
                // The attempt's last log line stays when the leg ends without an error.
                row.note = match error {
                    Some(e) => e.to_string(),
                    None if row.note.starts_with("log: ") => std::mem::take(&mut row.note),
                    None => String::new(),
                };
            }
            Event::StepSkipped { step, reason } => {
                if let Some(row) = st.rows.get_mut(step) {
                    row.state = Outcome::Skipped;
                    row.took = Some(Duration::ZERO);
                    row.note = format!("skipped: {reason}");
                }
            }
            Event::StepFinished {
                step,
                outcome,
                reason,
            } => {
                if let Some(row) = st.rows.get_mut(step)
                    && row.note == "waiting"
                {
                    row.state = *outcome;
                    row.took = Some(Duration::ZERO);
                    row.note = match reason {
                        Some(r) => format!("{}: {r}", outcome.as_str()),
                        None => outcome.as_str().into(),
                    };
                }
            }
            Event::ApprovalRequired { step, message } => {
                if let Some(row) = st.rows.get_mut(step) {
                    row.note = format!("needs approval: {message}");
                }
            }
            Event::StepLog {
                step, leg, lines, ..
            } => {
                if let (Some(row), Some(last)) = (st.rows.get_mut(&leg_id(step, leg)), lines.last())
                {
                    row.note = format!("log: {}", last.message);
                }
            }
            Event::Compensation { .. } | Event::Measured { .. } => {
                if let Some(line) = describe(event, &st.run, "  ") {
                    // Above the table; indicatif moves the table down.
                    let _ = self.multi.println(line);
                }
            }
            Event::RunFinished { .. } => {
                if !st.paused {
                    refresh(&self.multi, &mut st);
                }
                for bar in &st.bars {
                    bar.finish();
                }
                st.done = true;
                *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = None;
                // Below the final table.
                if let Some(line) = describe(event, &st.run, "  ") {
                    crate::view::write_stderr(&format!("{line}\n"));
                }
                return Ok(());
            }
            Event::RunStarted { .. }
            | Event::ApprovalGranted { .. }
            | Event::ApprovalRejected { .. } => {}
        }
        if !st.paused {
            refresh(&self.multi, &mut st);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_mark_the_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("ééééé", 3), "éé…");
    }
}
