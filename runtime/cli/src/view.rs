//! How a run looks while it happens: a live table on a terminal, plain lines otherwise, JSON lines
//! with `--json`. All three are event sinks.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use meridian_engine::{Event, EventSink, Outcome, SinkError};
use meridian_protocol::Encoded;
use meridian_protocol::text::for_terminal;

/// Plain lines on stderr: for logs and pipes.
pub struct Lines {
    started: Instant,
}

impl Lines {
    pub fn new() -> Self {
        Lines {
            started: Instant::now(),
        }
    }
}

/// One line (continuation lines indented) for an event; what a step wrote in it is escaped, so
/// it cannot act on the terminal or forge a line of its own.
pub fn describe(ev: &Event) -> Option<String> {
    describe_raw(ev).map(|line| match for_terminal(&line, "      ") {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(safe) => safe,
    })
}

fn describe_raw(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::RunStarted {
            run_id,
            workflow,
            mode,
            ..
        } => format!("run {run_id} of `{workflow}` started ({mode:?})"),
        Event::StepSkipped { step, reason } => format!("{step}: skipped ({reason})"),
        Event::ApprovalRequired { step, message } => {
            format!("{step}: needs approval: {message}")
        }
        Event::ApprovalGranted { step, by } => format!("{step}: approved ({by})"),
        Event::ApprovalRejected { step, by, comment } if comment.is_empty() => {
            format!("{step}: approval rejected by {by}")
        }
        Event::ApprovalRejected { step, by, comment } => {
            format!("{step}: approval rejected by {by}: {comment}")
        }
        Event::AttemptStarted {
            step, leg, attempt, ..
        } => format!("{}: attempt {attempt} started", leg_id(step, leg)),
        Event::AttemptFailed {
            step,
            leg,
            attempt,
            error,
            retry_in,
        } => match retry_in {
            Some(d) => format!(
                "{}: attempt {attempt} failed: {error}; retrying in {}",
                leg_id(step, leg),
                fmt_dur(*d)
            ),
            None => format!("{}: attempt {attempt} failed: {error}", leg_id(step, leg)),
        },
        Event::LegFinished {
            step,
            leg,
            outcome,
            attempts,
            duration,
            ..
        } => format!(
            "{}: {} in {} ({attempts} attempt{})",
            leg_id(step, leg),
            outcome.as_str(),
            fmt_dur(*duration),
            if *attempts == 1 { "" } else { "s" }
        ),
        Event::StepFinished { .. } => return None,
        Event::Compensation {
            step,
            leg,
            outcome,
            error,
            ..
        } => match error {
            Some(e) => format!(
                "{}: compensation {}: {e}",
                leg_id(step, leg),
                outcome.as_str()
            ),
            None => format!("{}: compensation {}", leg_id(step, leg), outcome.as_str()),
        },
        Event::RunFinished {
            status,
            duration,
            message,
        } => format!(
            "run {} in {}: {message}",
            status.as_str(),
            fmt_dur(*duration)
        ),
    })
}

/// Writes `text` to stderr in one `write(2)` (stderr is unbuffered: `eprintln!` with arguments
/// writes each piece on its own). A view that cannot write is no reason to stop a run.
fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

impl Lines {
    /// Each event's line, timestamped and newline-terminated, into `out`.
    fn lines<'a>(&self, events: impl Iterator<Item = &'a Event>, out: &mut String) {
        use std::fmt::Write as _;
        for line in events.filter_map(describe) {
            let t = self.started.elapsed().as_secs_f64();
            let _ = writeln!(out, "[{t:7.2}s] {line}");
        }
    }
}

impl EventSink for Lines {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.emit_all(std::slice::from_ref(event))
    }

    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        let mut out = String::new();
        self.lines(events.iter(), &mut out);
        write_stderr(&out);
        Ok(())
    }

    fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
        let mut out = String::new();
        self.lines(events.iter().map(|e| e.event), &mut out);
        write_stderr(&out);
        Ok(())
    }
}

/// JSON lines on stderr (stdout carries the final report).
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        self.emit_all(std::slice::from_ref(event))
    }

    fn emit_all(&self, events: &[Event]) -> Result<(), SinkError> {
        let json = meridian_protocol::event::encode_all(events)?;
        self.emit_encoded(&meridian_protocol::event::pair(events, &json))
    }

    /// The JSON the journal stores, made once for both (see the fan-out in `meridian-protocol`).
    fn emit_encoded(&self, events: &[Encoded<'_>]) -> Result<(), SinkError> {
        let mut out = String::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
        for e in events {
            out.push_str(e.json);
            out.push('\n');
        }
        write_stderr(&out);
        Ok(())
    }
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

struct LiveState {
    rows: IndexMap<String, Row>,
    drawn: usize,
    done: bool,
    log: Vec<String>,
}

/// A table of steps redrawn in place on a terminal: state, duration, attempt.
#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<LiveState>>,
}

impl Live {
    /// Starts the redraw ticker (so running durations advance between events).
    pub fn new(step_ids: &[String]) -> Self {
        let rows = step_ids
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    Row {
                        state: Outcome::Skipped,
                        running: false,
                        attempt: 0,
                        since: Instant::now(),
                        took: None,
                        note: "waiting".into(),
                    },
                )
            })
            .collect();
        let live = Live {
            state: Arc::new(Mutex::new(LiveState {
                rows,
                drawn: 0,
                done: false,
                log: Vec::new(),
            })),
        };
        let ticker = live.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let mut st = ticker.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.done {
                    break;
                }
                redraw(&mut st);
            }
        });
        live
    }
}

fn redraw(st: &mut LiveState) {
    // The whole frame in one write: a frame written piece by piece flickers and costs a
    // syscall per piece on unbuffered stderr.
    use std::fmt::Write as _;
    let mut out = String::new();
    if st.drawn > 0 {
        let _ = write!(out, "\x1b[{}A", st.drawn);
    }
    for line in st.log.drain(..) {
        let _ = writeln!(out, "\x1b[2K{line}");
    }
    let width = st.rows.keys().map(|k| k.len()).max().unwrap_or(4).max(4);
    let spin = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let frame = (Instant::now().elapsed().as_millis() / 100) as usize;
    for (id, row) in &st.rows {
        let (mark, colour) = if row.running {
            (spin[frame % spin.len()], "\x1b[36m")
        } else if row.took.is_none() && row.note == "waiting" {
            ('·', "\x1b[2m")
        } else {
            match row.state {
                Outcome::Success => ('✓', "\x1b[32m"),
                Outcome::Failure => ('✗', "\x1b[31m"),
                Outcome::Cancelled => ('⊘', "\x1b[33m"),
                Outcome::Skipped => ('-', "\x1b[2m"),
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
        let _ = writeln!(
            out,
            "\x1b[2K {colour}{mark}\x1b[0m {id:<width$}  {dur:>8}  {attempt:<10} \x1b[2m{}\x1b[0m",
            truncate(&row.note, 70)
        );
    }
    st.drawn = st.rows.len();
    write_stderr(&out);
}

/// The first line of a step's text, escaped for the terminal and cut to `n` characters.
fn truncate(s: &str, n: usize) -> String {
    let first = s.split('\n').next().unwrap_or("");
    let escaped = for_terminal(first, "");
    let one_line: &str = &escaped;
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line.to_string()
    }
}

impl EventSink for Live {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::AttemptStarted {
                step, leg, attempt, ..
            } => {
                let id = leg_id(step, leg);
                let row = st.rows.entry(id).or_insert_with(|| Row {
                    state: Outcome::Skipped,
                    running: true,
                    attempt: 0,
                    since: Instant::now(),
                    took: None,
                    note: String::new(),
                });
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
                let id = leg_id(step, leg);
                let row = st.rows.entry(id).or_insert_with(|| Row {
                    state: *outcome,
                    running: false,
                    attempt: 1,
                    since: Instant::now(),
                    took: None,
                    note: String::new(),
                });
                row.running = false;
                row.state = *outcome;
                row.took = Some(*duration);
                row.note = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
            }
            Event::StepSkipped { step, reason } => {
                if let Some(row) = st.rows.get_mut(step) {
                    row.state = Outcome::Skipped;
                    row.took = Some(Duration::ZERO);
                    row.note = format!("skipped: {reason}");
                }
            }
            Event::StepFinished { step, outcome } => {
                if let Some(row) = st.rows.get_mut(step)
                    && row.note == "waiting"
                {
                    row.state = *outcome;
                    row.took = Some(Duration::ZERO);
                    row.note = outcome.as_str().into();
                }
            }
            Event::ApprovalRequired { step, message } => {
                if let Some(row) = st.rows.get_mut(step) {
                    row.note = format!("needs approval: {message}");
                }
            }
            Event::Compensation { .. } | Event::RunFinished { .. } => {
                if let Some(line) = describe(event) {
                    st.log.push(line);
                }
                if matches!(event, Event::RunFinished { .. }) {
                    st.done = true;
                }
            }
            Event::RunStarted { .. }
            | Event::ApprovalGranted { .. }
            | Event::ApprovalRejected { .. } => {}
        }
        redraw(&mut st);
        Ok(())
    }
}

/// `deploy` or `deploy[eu]`: the engine's one rule.
pub use meridian_engine::run::display_id as leg_id;

pub fn fmt_dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_whole_lines_one_per_shown_event() {
        let events = [
            Event::LegFinished {
                step: "deploy".into(),
                leg: "eu".into(),
                outcome: Outcome::Success,
                attempts: 2,
                duration: Duration::from_millis(12),
                output: serde_json::Value::Null,
                plan: vec![],
                error: None,
            },
            // Not shown in plain lines.
            Event::StepFinished {
                step: "deploy".into(),
                outcome: Outcome::Success,
            },
        ];
        let mut out = String::new();
        Lines::new().lines(events.iter(), &mut out);
        let lines: Vec<&str> = out.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(
            lines[0].ends_with("] deploy[eu]: success in 12ms (2 attempts)\n"),
            "{out:?}"
        );
        assert!(lines[0].starts_with('['), "timestamped: {out:?}");
    }
}
