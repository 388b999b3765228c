//! A line a step logged (through the `log` interface, or on stdout/stderr).

use serde::{Deserialize, Serialize};

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal progress.
    Info,
    /// Suspicious.
    Warn,
    /// Failure.
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The `log` interface.
    Guest,
    /// WASI stdout (one line per line written).
    Stdout,
    /// WASI stderr (panic messages land here).
    Stderr,
    /// The host, about the step (e.g. "log truncated").
    Host,
}

/// One log line, secrets already masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity (stdout is `info`, stderr is `warn`).
    pub level: Level,
    /// Origin.
    pub source: LogSource,
    /// Text.
    pub message: String,
    /// Structured fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Display for LogLine {
    /// `info: message k=v …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.level.as_str(), self.message)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Where an attempt's log lines go as they are written: shared by the code that runs the
/// attempt (the sandbox) and the code that waits for it (the engine), so the lines an attempt
/// wrote before it was dropped — cancelled with its run, or stopped by the engine's timeout —
/// are still there to be journaled. Clones share the lines; two taps are equal when they are
/// the same tap.
#[derive(Debug, Clone, Default)]
pub struct LogTap(std::sync::Arc<std::sync::Mutex<Vec<LogLine>>>);

impl LogTap {
    /// Adds a line (already masked).
    pub fn push(&self, line: LogLine) {
        self.lines().push(line);
    }

    /// The lines written since the last `take`, in order.
    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines())
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<LogLine>> {
        // A panic while pushing leaves a whole vector behind.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PartialEq for LogTap {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LogTap {}

/// Most lines of one attempt kept in the journal.
pub const MAX_JOURNALED_LINES: usize = 200;
/// Most bytes of message text of one attempt kept in the journal.
pub const MAX_JOURNALED_BYTES: usize = 64 * 1024;

/// The lines as the journal keeps them: all of them when they fit [`MAX_JOURNALED_LINES`] and
/// [`MAX_JOURNALED_BYTES`]; otherwise the first and the last lines, each within half of both
/// bounds, and between them a line saying how many were left out (the lines before a failure
/// say most; the first ones were kept alone before).
pub fn bound_lines(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    // Fields count too: a step can log a short message with a field of any size.
    let size = |l: &LogLine| {
        l.message.len()
            + l.fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    };
    let total: usize = lines.iter().map(size).sum();
    if lines.len() <= MAX_JOURNALED_LINES && total <= MAX_JOURNALED_BYTES {
        return lines;
    }
    let (max_lines, max_bytes) = (MAX_JOURNALED_LINES / 2, MAX_JOURNALED_BYTES / 2);
    let fit = |it: &mut dyn Iterator<Item = &LogLine>, room_lines: usize| {
        let (mut n, mut bytes) = (0, 0);
        for l in it {
            bytes += size(l);
            if n >= room_lines || bytes > max_bytes {
                break;
            }
            n += 1;
        }
        n
    };
    let head = fit(&mut lines.iter(), max_lines);
    // One line of the budget is the note.
    let tail = fit(&mut lines[head..].iter().rev(), max_lines - 1);
    let left_out = lines.len() - head - tail;
    let last = lines.split_off(lines.len() - tail);
    lines.truncate(head);
    lines.push(LogLine {
        level: Level::Warn,
        source: LogSource::Host,
        message: format!(
            "{left_out} log lines not kept here (an attempt keeps its first and last lines: at most {MAX_JOURNALED_LINES} lines or {} KiB)",
            MAX_JOURNALED_BYTES / 1024
        ),
        fields: Vec::new(),
    });
    lines.extend(last);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str, fields: Vec<(String, String)>) -> LogLine {
        LogLine {
            level: Level::Info,
            source: LogSource::Guest,
            message: message.into(),
            fields,
        }
    }

    #[test]
    fn fields_count_toward_the_journaled_bytes() {
        let big = vec![("name".to_string(), "x".repeat(MAX_JOURNALED_BYTES))];
        let kept = bound_lines(vec![line("small", vec![]), line("hello", big)]);
        assert_eq!(kept.len(), 2, "the small line and the notice");
        assert_eq!(kept[0].message, "small");
        assert!(
            kept[1].message.starts_with("1 log lines not kept here"),
            "{:?}",
            kept[1]
        );
    }

    #[test]
    fn the_first_and_the_last_lines_are_kept() {
        let all: Vec<LogLine> = (0..1000)
            .map(|i| line(&format!("line {i}"), vec![]))
            .collect();
        let kept = bound_lines(all.clone());
        assert_eq!(kept.len(), MAX_JOURNALED_LINES);
        assert_eq!(kept[0].message, "line 0");
        assert_eq!(kept[99].message, "line 99");
        assert!(
            kept[100].message.starts_with("801 log lines not kept here"),
            "{:?}",
            kept[100]
        );
        assert_eq!(kept[101].message, "line 901");
        assert_eq!(kept[199].message, "line 999");
        // What fits is kept whole.
        assert_eq!(bound_lines(all[..200].to_vec()), all[..200].to_vec());
    }
}
