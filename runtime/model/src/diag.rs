//! Diagnostics: problems found in a workflow file, each pointing at `file:line:col`, rendered like
//! rustc with the offending source line and a caret underline.
//!
//! ```text
//! error: unknown key `nedds` in step `deploy`
//!   --> wf.yaml:12:5
//!    |
//! 12 |     nedds: [a]
//!    |     ^^^^^
//!    = help: did you mean `needs`?
//! ```

use std::fmt;

use serde::Serialize;

use crate::span::Span;

/// How bad a diagnostic is. Only errors make a workflow invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// Where; `line == 0` means the problem concerns the file as a whole (e.g. it cannot be read).
    pub span: Span,
    pub severity: Severity,
    pub message: String,
    /// How to fix it, when there is something useful to say (`did you mean …?`).
    pub hint: Option<String>,
    /// The text of the source line `span` points into, kept so a diagnostic renders on its own.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// An error at `span` (no hint, no source line yet).
    pub fn error(file: impl Into<String>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            span,
            severity: Severity::Error,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(file: impl Into<String>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the source line the span points into, taken from the whole file text.
    #[must_use]
    pub fn with_source(mut self, text: &str) -> Self {
        self.source_line = crate::source::line_text(text, self.span.line).map(str::to_owned);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Shown on a terminal: the file's name, its line and what the message quotes of it are
    /// escaped (a workflow from a repository, or a file name, may hold terminal controls).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use meridian_protocol::text::for_terminal;
        writeln!(f, "{}: {}", self.severity, for_terminal(&self.message, ""))?;
        let file = for_terminal(&self.file, "");
        let hint = self.hint.as_deref().map(|h| for_terminal(h, ""));
        if self.span.line == 0 {
            write!(f, "  --> {file}")?;
            if let Some(h) = &hint {
                write!(f, "\n   = help: {h}")?;
            }
            return Ok(());
        }
        let num = self.span.line.to_string();
        let pad = " ".repeat(num.len());
        write!(f, "{pad}--> {file}:{}:{}", self.span.line, self.span.col)?;
        if let Some(line) = &self.source_line {
            // Tabs would misalign the caret; YAML indentation cannot contain them anyway.
            let shown = for_terminal(line, "").replace('\t', " ");
            let col = (self.span.col as usize).saturating_sub(1);
            let line_chars = shown.chars().count();
            // Underline the span's characters on this line only (at least one caret).
            let span_chars = self.source_line.as_deref().map_or(1, |l| {
                let start = l.char_indices().nth(col).map_or(l.len(), |(i, _)| i);
                let end = (start + self.span.len).min(l.len());
                let mut end = end;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                l[start..end].chars().count()
            });
            let width = span_chars.max(1).min(line_chars.saturating_sub(col).max(1));
            write!(
                f,
                "\n{pad} |\n{num} | {shown}\n{pad} | {}{}",
                " ".repeat(col),
                "^".repeat(width)
            )?;
        }
        if let Some(h) = &hint {
            write!(f, "\n{pad} = help: {h}")?;
        }
        Ok(())
    }
}

/// All problems found in one workflow, in source order. Its `Display` prints every one of them,
/// then a summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Diagnostics::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// Sorts by position (errors before warnings at the same place) and drops exact duplicates.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.file, a.span.line, a.span.col, a.severity, &a.message).cmp(&(
                &b.file,
                b.span.line,
                b.span.col,
                b.severity,
                &b.message,
            ))
        });
        self.items.dedup();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&d.to_string());
            out.push_str("\n\n");
        }
        let (e, w) = (self.error_count(), self.warning_count());
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let file = meridian_protocol::text::for_terminal(
            self.items.first().map_or("", |d| d.file.as_str()),
            "",
        );
        if e > 0 {
            out.push_str(&format!(
                "error: `{file}` is invalid: {}",
                plural(e, "error")
            ));
            if w > 0 {
                out.push_str(&format!(", {}", plural(w, "warning")));
            }
        } else if w > 0 {
            out.push_str(&format!("warning: `{file}`: {}", plural(w, "warning")));
        } else {
            out.push_str("no problems found");
        }
        out
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(items: Vec<Diagnostic>) -> Self {
        Diagnostics { items }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics { items: vec![d] }
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.items.extend(iter);
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
///
/// Costs one edit-distance computation per candidate.
pub fn did_you_mean<'c, I>(word: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'c str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
        // Same letters in another case, `_` for `-`, or up to a third of the word changed.
        let normalized = lower.replace('_', "-") == c.to_lowercase();
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        if (normalized || d <= limit) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((if normalized { 0 } else { d }, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean `x`?` for use as a hint.
pub(crate) fn suggest<'c, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'c str>,
{
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(line: u32, col: u32, offset: usize, len: usize) -> Span {
        Span {
            line,
            col,
            offset,
            len,
        }
    }

    #[test]
    fn renders_like_rustc() {
        let text = "steps:\n  - id: deploy\n    nedds: [a]\n";
        let off = text.find("nedds").unwrap();
        let d = Diagnostic::error(
            "wf.yaml",
            span(3, 5, off, 5),
            "unknown key `nedds` in step `deploy`",
        )
        .with_hint("did you mean `needs`?")
        .with_source(text);
        let want = "error: unknown key `nedds` in step `deploy`\n \
                    --> wf.yaml:3:5\n  |\n3 |     nedds: [a]\n  |     ^^^^^\n  = help: did you mean `needs`?";
        assert_eq!(d.to_string(), want);
    }

    #[test]
    fn wide_line_numbers_pad_the_gutter() {
        let text = format!("{}x: 1\n", "\n".repeat(11));
        let d = Diagnostic::warning("f", span(12, 1, 11, 1), "w").with_source(&text);
        let s = d.to_string();
        assert!(
            s.starts_with("warning: w\n  --> f:12:1\n   |\n12 | x: 1\n   | ^"),
            "{s}"
        );
    }

    #[test]
    fn caret_is_clipped_to_the_line_and_at_least_one() {
        let text = "ab\ncd\n";
        let d = Diagnostic::error("f", span(1, 2, 1, 50), "m").with_source(text);
        assert!(d.to_string().ends_with("1 | ab\n  |  ^"), "{d}");
        let d = Diagnostic::error("f", span(1, 3, 2, 0), "m").with_source(text);
        assert!(d.to_string().ends_with("1 | ab\n  |   ^"), "{d}");
    }

    #[test]
    fn file_level_diagnostic_has_no_snippet() {
        let d = Diagnostic::error("missing.yaml", Span::default(), "cannot read");
        assert_eq!(d.to_string(), "error: cannot read\n  --> missing.yaml");
    }

    #[test]
    fn collection_counts_and_summarises() {
        let mut ds = Diagnostics::new();
        ds.push(Diagnostic::warning("f", span(2, 1, 0, 0), "w"));
        ds.push(Diagnostic::error("f", span(1, 1, 0, 0), "e"));
        ds.push(Diagnostic::error("f", span(1, 1, 0, 0), "e"));
        ds.sort();
        assert_eq!(ds.len(), 2);
        assert!(ds.has_errors());
        assert_eq!(ds.as_slice()[0].message, "e");
        assert!(
            ds.to_string()
                .ends_with("error: `f` is invalid: 1 error, 1 warning")
        );
    }

    #[test]
    fn suggestions() {
        let keys = ["needs", "uses", "with", "continue-on-error"];
        assert_eq!(did_you_mean("nedds", keys), Some("needs"));
        assert_eq!(
            did_you_mean("continue_on_error", keys),
            Some("continue-on-error")
        );
        assert_eq!(did_you_mean("Uses", keys), Some("uses"));
        assert_eq!(did_you_mean("completely-different", keys), None);
        assert_eq!(did_you_mean("x", keys), None);
    }
}
