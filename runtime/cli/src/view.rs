//! How a run looks while it happens: a live table on a terminal, plain lines otherwise, JSON lines
//! with `--json`. All three are event sinks.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use meridian_engine::{Event, EventSink, Outcome, SinkError};
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

impl EventSink for Lines {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        if let Some(line) = describe(event) {
            let t = self.started.elapsed().as_secs_f64();
            eprintln!("[{t:7.2}s] {line}");
        }
        Ok(())
    }
}

/// JSON lines on stderr (stdout carries the final report).
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &Event) -> Result<(), SinkError> {
        let line = serde_json::to_string(event).map_err(|e| SinkError(e.to_string()))?;
        eprintln!("{line}");
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
    let mut out = std::io::stderr().lock();
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
    let _ = out.flush();
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
            Event::RunStarted { .. } | Event::ApprovalGranted { .. } => {}
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
