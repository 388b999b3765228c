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

/// The first lines that fit [`MAX_JOURNALED_LINES`] and [`MAX_JOURNALED_BYTES`], and a last line
/// saying how many were left out, if any.
pub fn bound_lines(lines: Vec<LogLine>) -> Vec<LogLine> {
    let total = lines.len();
    let mut bytes = 0usize;
    let mut out = Vec::new();
    for l in lines {
        // Fields count too: a step can log a short message with a field of any size.
        bytes += l.message.len()
            + l.fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if out.len() >= MAX_JOURNALED_LINES || bytes > MAX_JOURNALED_BYTES {
            break;
        }
        out.push(l);
    }
    if out.len() < total {
        out.push(LogLine {
            level: Level::Warn,
            source: LogSource::Host,
            message: format!(
                "{} more log lines not kept (at most {MAX_JOURNALED_LINES} lines or {} KiB per attempt)",
                total - out.len(),
                MAX_JOURNALED_BYTES / 1024
            ),
            fields: Vec::new(),
        });
    }
    out
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
            kept[1].message.starts_with("1 more log lines not kept"),
            "{:?}",
            kept[1]
        );
    }
}
