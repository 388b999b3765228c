//! Times, durations and figures in words a person reads.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use meridian_protocol::StepError;

/// Unix ms as `2026-12-03 20:31:05 UTC`.
pub fn wall(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => format!("{ms} ms"),
    }
}

/// Unix ms as a time of day, `20:31:05` (with milliseconds when `precise`).
pub(crate) fn clock(ms: i64, precise: bool) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) if precise => t.format("%H:%M:%S%.3f").to_string(),
        Some(t) => t.format("%H:%M:%S").to_string(),
        None => String::new(),
    }
}

/// Unix ms as an RFC 3339 instant for `<time datetime=…>`.
pub(crate) fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The start of a day given as `YYYY-MM-DD` (UTC), in Unix ms.
pub fn day_start_ms(day: &str) -> Option<i64> {
    NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
}

/// A duration in ms: `183 ms`, `1.83 s`, `2 min 05 s`, `3 h 04 min`.
pub(crate) fn dur(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A duration since the start of a run, for the time axis: `+0 s`, `+1.5 s`, `+2 min`.
pub(crate) fn since(ms: i64) -> String {
    if ms == 0 {
        "+0".into()
    } else {
        format!("+{}", dur(ms))
    }
}

/// Bytes: `0 B`, `512 B`, `16.0 MiB`.
fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A drill figure's value in its unit (`ms` as a duration, `B` as bytes, anything else as is).
pub(crate) fn figure(v: f64, unit: &str) -> String {
    match unit {
        "ms" => dur(v.round() as i64),
        "s" => dur((v * 1000.0).round() as i64),
        "B" => bytes(v),
        "" => trim_number(v),
        u => format!("{} {u}", trim_number(v)),
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Text a step or a user wrote, with what could act on a terminal or reorder text (control
/// characters, bidi overrides) made visible; maud escapes the HTML.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    meridian_protocol::text::for_terminal(s, "")
}

/// A step's error as a sentence.
pub(crate) fn plain_error(e: &StepError) -> String {
    match e {
        StepError::Retryable(m) => format!(
            "A temporary failure (the step said it may work if tried again): {}",
            clean(m)
        ),
        // The sandbox's own words ("step failed: …") would say it twice.
        StepError::Fatal(m) => format!(
            "The step failed: {}",
            clean(m.strip_prefix("step failed: ").unwrap_or(m))
        ),
        StepError::InvalidInput(m) => format!("The step refused its input: {}", clean(m)),
        StepError::Timeout(d) => format!(
            "The step did not finish within its timeout ({}) and was stopped.",
            dur(d.as_millis() as i64)
        ),
        StepError::Cancelled => "Stopped before it finished: the run was cancelled, ran out of \
             time, or another step failed first."
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_figures_read_as_words() {
        assert_eq!(wall(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(clock(1_500, true), "00:00:01.500");
        assert_eq!(dur(183), "183 ms");
        assert_eq!(dur(1_830), "1.83 s");
        assert_eq!(dur(125_000), "2 min 05 s");
        assert_eq!(figure(16.0 * 1024.0 * 1024.0, "B"), "16.0 MiB");
        assert_eq!(figure(3.0, "rows"), "3 rows");
        assert_eq!(day_start_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(day_start_ms("yesterday"), None);
        assert!(clean("a\u{202e}b").contains("\\u{202e}"));
        assert!(
            plain_error(&StepError::Timeout(std::time::Duration::from_secs(30))).contains("30.0 s")
        );
    }
}
