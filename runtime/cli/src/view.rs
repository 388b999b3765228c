//! How a run looks while it happens: a live table on a terminal, plain lines otherwise, JSON lines
//! with `--json`. All three are event sinks.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use meridian_engine::{Event, EventSink, Outcome, RunStatus, SinkError};
use meridian_protocol::Encoded;
use meridian_protocol::text::for_terminal;

/// Plain lines on stderr: for logs and pipes.
pub struct Lines {
    started: Instant,
    run: Mutex<RunContext>,
}

/// `[   1.23s] `: continuation lines of a plain line start under its text.
const LINES_INDENT: &str = "           ";

impl Lines {
    pub fn new() -> Self {
        Lines {
            started: Instant::now(),
            run: Mutex::new(RunContext::default()),
        }
    }
}

/// The flags a `meridian resume` of this process's run needs besides `--approve`: the state
/// directory when neither the default nor `MERIDIAN_STATE_DIR`'s, and the secrets file (secrets
/// are never journaled). Set once by `run`/`resume`; the closing line of a run waiting for
/// approval names them.
static RESUME_FLAGS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_resume_flags(state_dir: &std::path::Path, secrets_file: Option<&std::path::Path>) {
    let _ = RESUME_FLAGS.set(resume_flags_for(state_dir, secrets_file));
}

/// The flags `meridian resume` needs beside the run's id, each starting with a space: the state
/// directory when it is not the default, and the secrets file.
pub fn resume_flags_for(
    state_dir: &std::path::Path,
    secrets_file: Option<&std::path::Path>,
) -> String {
    let mut flags = String::new();
    let from_env = std::env::var_os("MERIDIAN_STATE_DIR").is_some_and(|e| state_dir == e);
    if state_dir != std::path::Path::new(".meridian") && !from_env {
        flags.push_str(&format!(" --state-dir {}", shell_word(state_dir)));
    }
    if let Some(f) = secrets_file {
        flags.push_str(&format!(" --secrets-file {}", shell_word(f)));
    }
    flags
}

/// The flags `meridian resume` needs beside the run's id (`--state-dir`, `--secrets-file`), as
/// set by [`set_resume_flags`]; each starts with a space.
pub fn resume_flags() -> &'static str {
    RESUME_FLAGS.get().map_or("", String::as_str)
}

/// A path as one shell word: as it is when that is safe, else single-quoted.
fn shell_word(p: &std::path::Path) -> String {
    let s = p.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What the closing line of a run needs from the events before it: the run's id (for the
/// command to type) and how each leg ended last (a leg that failed under `continue-on-error`
/// must not hide behind "all steps succeeded").
#[derive(Default, Clone, Debug)]
pub struct RunContext {
    pub run_id: String,
    last: IndexMap<String, Outcome>,
    /// The server the run was read from (`--server URL`): a waiting run is approved there.
    server: Option<String>,
    /// Started by a server (its trigger is journaled): that server drives it, not a `resume`.
    by_server: bool,
    /// `meridian resume`'s flags for this run when it is read from a journal (`runs list|show`),
    /// else those of this process's own run ([`set_resume_flags`]).
    flags: Option<String>,
}

impl RunContext {
    pub fn new(run_id: &str) -> Self {
        RunContext {
            run_id: run_id.to_string(),
            last: IndexMap::new(),
            server: None,
            by_server: false,
            flags: None,
        }
    }

    /// The run is read from a journal: `meridian resume` needs these flags for it (see
    /// [`resume_flags_for`]).
    #[must_use]
    pub fn resumed_with(mut self, flags: String) -> Self {
        self.flags = Some(flags);
        self
    }

    /// The run is read from the server at `url` (`--server`), which drives it: the command
    /// that approves it goes through that server, not `meridian resume` here.
    #[must_use]
    pub fn read_from_server(mut self, url: Option<&str>) -> Self {
        self.server = url.map(str::to_string);
        self
    }

    /// The run was started by a server (`trigger` journaled: the API, a schedule, a push): a
    /// waiting run is approved through that server, not by a `meridian resume` here (which
    /// the server's lease refuses while it drives the run).
    #[must_use]
    pub fn started_by(mut self, trigger: Option<&str>) -> Self {
        self.by_server = trigger.is_some();
        self
    }

    /// Learns the run's id and how legs ended.
    pub fn see(&mut self, ev: &Event) {
        match ev {
            Event::RunStarted { run_id, .. } => self.run_id.clone_from(run_id),
            Event::LegFinished {
                step, leg, outcome, ..
            } => {
                self.last.insert(leg_id(step, leg), *outcome);
            }
            _ => {}
        }
    }

    /// A leg's final outcome, as the journal's leg table or a report gives it.
    pub fn leg(&mut self, id: String, outcome: Outcome) {
        self.last.insert(id, outcome);
    }

    /// The legs whose last outcome is a failure.
    pub fn failed(&self) -> Vec<&str> {
        self.ended(Outcome::Failure)
    }

    /// The legs whose last outcome is `outcome`, in the order they first ended.
    fn ended(&self, outcome: Outcome) -> Vec<&str> {
        self.last
            .iter()
            .filter(|(_, o)| **o == outcome)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// The run's closing message as an operator should read it. The engine's own message stays
    /// in `--json` and the journal; here a run that succeeded with legs failed under
    /// `continue-on-error` says so, and a run waiting for approval names the command to type.
    pub fn message(&self, status: RunStatus, message: &str) -> String {
        let failed = self.failed();
        match status {
            RunStatus::Succeeded if !failed.is_empty() => format!(
                "{} failed under continue-on-error ({}); the others succeeded",
                if failed.len() == 1 {
                    "1 step".to_string()
                } else {
                    format!("{} steps", failed.len())
                },
                failed.join(", ")
            ),
            RunStatus::AwaitingApproval => match awaiting(message) {
                Some((steps, failed)) => {
                    let through = |url: &str| {
                        steps
                            .iter()
                            .map(|s| format!("meridian --server {url} approve {} {s}", self.run_id))
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    let how = match &self.server {
                        Some(url) => through(url),
                        None if self.by_server => format!(
                            "through the server that started it: {} (or its API or console)",
                            through("URL")
                        ),
                        None => format!(
                            "meridian resume {}{} {}",
                            self.run_id,
                            self.flags
                                .as_deref()
                                .unwrap_or(RESUME_FLAGS.get().map_or("", String::as_str)),
                            steps
                                .iter()
                                .map(|s| format!("--approve {s}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    };
                    // What stands while it waits: the failover's fenced primary was in no
                    // message, and every minute at the gate was write outage unannounced.
                    let done = self.ended(Outcome::Success);
                    let standing = if done.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (done, and standing while it waits: {}; a reject undoes what has `compensate:`)",
                            done.join(", ")
                        )
                    };
                    format!(
                        "waiting for approval of {}{failed}{standing}; to approve and go on: {how}",
                        steps.join(", ")
                    )
                }
                None => message.to_string(),
            },
            // "run failed in 62ms: boom", not "…: failed: boom" (the engine's message starts
            // with the status, which every view prints already).
            _ => {
                let said = message
                    .strip_prefix(status.as_str())
                    .and_then(|m| m.strip_prefix(": "))
                    .unwrap_or(message);
                // A drained region's legs: "all steps succeeded" alone hid that one was left out.
                match self.left_out() {
                    Some(legs) => format!("{said}; left out by their `if:`: {legs}"),
                    None => said.to_string(),
                }
            }
        }
    }

    /// The legs a per-leg `if:` skipped, named (the first few), for the closing line.
    fn left_out(&self) -> Option<String> {
        const NAMED: usize = 8;
        let skipped = self.ended(Outcome::Skipped);
        match skipped.len() {
            0 => None,
            n if n <= NAMED => Some(skipped.join(", ")),
            n => Some(format!(
                "{} and {} more",
                skipped[..NAMED].join(", "),
                n - NAMED
            )),
        }
    }
}

/// The steps of the engine's "waiting for approval of a, b[ (failed: c)]" (before, with ": re-run
/// with …" after it), and the `(failed: …)` part (with its leading space) when there is one.
fn awaiting(message: &str) -> Option<(Vec<&str>, &str)> {
    let rest = message.strip_prefix("waiting for approval of ")?;
    // Journals written before kept the engine's CLI advice after the steps.
    let head = rest.split_once(": re-run with ").map_or(rest, |(h, _)| h);
    let (steps, failed) = match head.find(" (failed: ") {
        Some(i) => head.split_at(i),
        None => (head, ""),
    };
    Some((steps.split(", ").collect(), failed))
}

/// One line for an event, continuation lines indented by `indent`; what a step wrote in it is
/// escaped, so it cannot act on the terminal or forge a line of its own.
pub fn describe(ev: &Event, run: &RunContext, indent: &str) -> Option<String> {
    describe_raw(ev, run).map(|line| match for_terminal(&line, indent) {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(safe) => safe,
    })
}

fn describe_raw(ev: &Event, run: &RunContext) -> Option<String> {
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
        // A leg its step's `if:` left out (see the engine's per-leg `if:`) never ran.
        Event::LegFinished {
            step,
            leg,
            outcome: Outcome::Skipped,
            ..
        } => format!(
            "{}: skipped (its `if:` is false for this leg)",
            leg_id(step, leg)
        ),
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
        // Shown only when it says why a step that ran no leg ended so.
        Event::StepFinished {
            step,
            outcome,
            reason: Some(reason),
        } => format!("{step}: {} ({reason})", outcome.as_str()),
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
            "run {} in {}: {}",
            status.as_str(),
            fmt_dur(*duration),
            run.message(*status, message)
        ),
        Event::StepLog {
            step,
            leg,
            attempt,
            lines,
            compensation,
        } => {
            let what = if *compensation {
                "compensation attempt"
            } else {
                "attempt"
            };
            let mut text = format!("{}: {what} {attempt} logged:", leg_id(step, leg));
            for l in lines {
                text.push_str("\n  ");
                text.push_str(&l.to_string());
            }
            text
        }
        Event::Measured { name, .. } if name == "canary-started" => {
            "drill canaries started (writer and prober, host side)".to_string()
        }
        Event::Measured { name, value } if name == "canary-settling" => {
            let secs = |k: &str| value[k].as_u64().unwrap_or(0) as f64 / 1000.0;
            let (least, most) = (secs("settle_ms"), secs("at_most_ms"));
            if most > least {
                format!(
                    "drill canaries still measuring: until clients see no failure for {least:.0} s (at most {most:.0} s)"
                )
            } else {
                format!("drill canaries still measuring for {least:.0} s")
            }
        }
        Event::Measured { name, value } => format!("measured {name}: {}", canary_line(value)),
    })
}

/// Writes `text` to stderr in one `write(2)` (stderr is unbuffered: `eprintln!` with arguments
/// writes each piece on its own). A view that cannot write is no reason to stop a run.
pub(crate) fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

impl Lines {
    /// Each event's line, timestamped and newline-terminated, into `out`.
    fn lines<'a>(&self, events: impl Iterator<Item = &'a Event>, out: &mut String) {
        use std::fmt::Write as _;
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        for ev in events {
            run.see(ev);
            let Some(line) = describe(ev, &run, LINES_INDENT) else {
                continue;
            };
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

/// JSON lines on stderr (stdout carries the final report), each stamped with the Unix ms it was
/// emitted at (`at_ms`, as `runs show --json` stamps the journaled events).
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
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stamp = format!("{{\"at_ms\":{at},");
        let mut out =
            String::with_capacity(events.iter().map(|e| e.json.len() + stamp.len() + 1).sum());
        for e in events {
            match e.json.strip_prefix('{') {
                Some(rest) => {
                    out.push_str(&stamp);
                    out.push_str(rest);
                }
                None => out.push_str(e.json),
            }
            out.push('\n');
        }
        write_stderr(&out);
        Ok(())
    }
}

/// The canary's figures in one line: `rows 120 written, 118 found, 2 lost; requests 60 sent,
/// 9 failed, downtime 850 ms`.
fn canary_line(v: &serde_json::Value) -> String {
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let mut parts = Vec::new();
    if let Some(w) = n("rows_written") {
        let found = n("rows_found").map_or("?".to_string(), |f| f.to_string());
        let lost = n("rows_lost").map_or("not measured".to_string(), |l| format!("{l} lost"));
        parts.push(format!("rows {w} written, {found} found, {lost}"));
    }
    if let Some(sent) = n("requests_sent") {
        let failed = n("requests_failed").unwrap_or(0);
        let down = n("downtime_ms").map_or("not measured".to_string(), |d| format!("{d} ms"));
        parts.push(format!(
            "requests {sent} sent, {failed} failed, downtime {down}"
        ));
    }
    if parts.is_empty() {
        "no figures".to_string()
    } else {
        parts.join("; ")
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
    use std::path::Path;

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
                reason: None,
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

    #[test]
    fn a_leg_left_out_by_its_if_says_so() {
        let ev = Event::LegFinished {
            step: "push".into(),
            leg: "us".into(),
            outcome: Outcome::Skipped,
            attempts: 0,
            duration: Duration::ZERO,
            output: serde_json::Value::Null,
            plan: vec![],
            error: None,
        };
        let mut out = String::new();
        Lines::new().lines(std::iter::once(&ev), &mut out);
        assert!(
            out.ends_with("] push[us]: skipped (its `if:` is false for this leg)\n"),
            "{out:?}"
        );
    }

    #[test]
    fn legs_left_out_by_their_if_are_named_in_the_closing_line() {
        let mut run = RunContext::new("r1");
        run.leg("ready[eu]".into(), Outcome::Success);
        run.leg("ready[us]".into(), Outcome::Skipped);
        run.leg("push-config[us]".into(), Outcome::Skipped);
        assert_eq!(
            run.message(RunStatus::Succeeded, "all steps succeeded"),
            "all steps succeeded; left out by their `if:`: ready[us], push-config[us]"
        );
        for i in 0..10 {
            run.leg(format!("verify[r{i}]"), Outcome::Skipped);
        }
        assert!(
            run.message(RunStatus::Succeeded, "all steps succeeded")
                .ends_with("verify[r5] and 4 more"),
        );
    }

    #[test]
    fn a_continue_on_error_failure_is_not_all_steps_succeeded() {
        let mut run = RunContext::new("r1");
        run.leg("optional".into(), Outcome::Failure);
        run.leg("last".into(), Outcome::Success);
        let m = run.message(RunStatus::Succeeded, "all steps succeeded");
        assert_eq!(
            m,
            "1 step failed under continue-on-error (optional); the others succeeded"
        );
        // A leg that failed and then succeeded on resume counts as it ended last.
        run.leg("optional".into(), Outcome::Success);
        assert_eq!(
            run.message(RunStatus::Succeeded, "all steps succeeded"),
            "all steps succeeded"
        );
    }

    #[test]
    fn resume_flags_are_shell_words() {
        assert_eq!(shell_word(Path::new("lab/secrets.env")), "lab/secrets.env");
        assert_eq!(shell_word(Path::new("my dir/s.env")), "'my dir/s.env'");
        assert_eq!(shell_word(Path::new("it's")), "'it'\\''s'");
    }

    /// A run waiting at its gate says what it did before (a failover's fenced primary refuses
    /// writes all the while; the message said only what to type).
    #[test]
    fn a_waiting_run_names_what_stands_while_it_waits() {
        let mut run = RunContext::new("r7");
        for (step, outcome) in [
            ("fence-primary", Outcome::Success),
            ("scale-standby", Outcome::Success),
            ("notify", Outcome::Failure),
        ] {
            run.see(&Event::LegFinished {
                step: step.into(),
                leg: String::new(),
                outcome,
                attempts: 1,
                duration: std::time::Duration::from_millis(1),
                output: serde_json::Value::Null,
                plan: vec![],
                error: None,
            });
        }
        let m = run.message(
            RunStatus::AwaitingApproval,
            "waiting for approval of promote",
        );
        assert!(
            m.starts_with("waiting for approval of promote (done, and standing while it waits: fence-primary, scale-standby; a reject undoes what has `compensate:`); to approve and go on: meridian resume r7"),
            "{m}"
        );
    }

    #[test]
    fn a_waiting_run_names_the_command_to_type() {
        let mut run = RunContext::default();
        run.see(&Event::RunStarted {
            run_id: "r42".into(),
            workflow: "w".into(),
            mode: meridian_engine::Mode::Apply,
            inputs: serde_json::Value::Null,
        });
        let m = run.message(
            RunStatus::AwaitingApproval,
            "waiting for approval of a, b: re-run with --approve a --approve b",
        );
        assert_eq!(
            m,
            "waiting for approval of a, b; to approve and go on: meridian resume r42 --approve a --approve b"
        );
        // As the engine says it now, without the advice of a terminal.
        assert_eq!(
            run.message(RunStatus::AwaitingApproval, "waiting for approval of a, b"),
            "waiting for approval of a, b; to approve and go on: meridian resume r42 --approve a --approve b"
        );
        // Words it does not recognise are shown as they are.
        assert_eq!(run.message(RunStatus::AwaitingApproval, "other"), "other");
        // The status every view prints already is not said twice ("run failed in 1s: failed:").
        assert_eq!(
            run.message(RunStatus::Failed, "failed: boom; compensation failed: a"),
            "boom; compensation failed: a"
        );
        assert_eq!(run.message(RunStatus::Failed, "boom"), "boom");
        // A server started it (read from its journal here): approved through that server.
        let by = run.clone().started_by(Some("api:ops"));
        assert_eq!(
            by.message(
                RunStatus::AwaitingApproval,
                "waiting for approval of promote"
            ),
            "waiting for approval of promote; to approve and go on: through the server that started it: meridian --server URL approve r42 promote (or its API or console)"
        );
        // What failed before the gate is kept; a run read from a server is approved there.
        let m = run.read_from_server(Some("http://127.0.0.1:8080")).message(
            RunStatus::AwaitingApproval,
            "waiting for approval of tidy (failed: boom): re-run with --approve tidy",
        );
        assert_eq!(
            m,
            "waiting for approval of tidy (failed: boom); to approve and go on: meridian --server http://127.0.0.1:8080 approve r42 tidy"
        );
    }

    #[test]
    fn continuation_lines_of_a_plain_line_start_under_its_text() {
        let events = [Event::AttemptFailed {
            step: "a".into(),
            leg: String::new(),
            attempt: 1,
            error: meridian_protocol::StepError::Fatal("one\ntwo\x1b[2J".into()),
            retry_in: None,
        }];
        let mut out = String::new();
        Lines::new().lines(events.iter(), &mut out);
        assert!(
            out.ends_with("attempt 1 failed: one\n           two\\x1b[2J\n"),
            "{out:?}"
        );
    }
}
