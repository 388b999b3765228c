//! From the spanned YAML tree to the typed [`Workflow`], reporting every problem of shape: wrong
//! node types, unknown/missing/duplicate keys, bad durations, sizes, cron lines, grants and
//! expression syntax. Cross-references between parts (needs, cycles, `${{ }}` references) are
//! checked afterwards in [`crate::check`].
//!
//! Conversion never stops at the first problem: a bad part is reported and left out (or given its
//! default) so the rest of the file is still checked.

mod drill;
mod fields;
mod git;
mod grants;
mod inputs;
mod step;
mod strategy;
#[cfg(test)]
mod tests;
mod top;

use std::path::{Path, PathBuf};

use meridian_protocol::component::resolve;

use crate::diag::Diagnostic;
use crate::expr::ExprError;
use crate::source::SourceMap;
use crate::span::Span;

pub(crate) use top::workflow;

/// Most steps a workflow may have (keeps the static checks, which are up to quadratic in the
/// number of steps for pathological graphs, fast).
pub(crate) const MAX_STEPS: usize = 10_000;

/// Collects diagnostics while converting or checking one file.
pub(crate) struct Cx<'a> {
    pub(crate) file: &'a str,
    /// The workflow file's directory, absolute: what relative paths in the file mean.
    pub(crate) base: PathBuf,
    pub(crate) map: &'a SourceMap<'a>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(file: &'a str, map: &'a SourceMap<'a>) -> Self {
        Cx {
            file,
            base: base_dir(file),
            map,
            diags: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::error(self.file, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    pub(crate) fn warn(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::warning(self.file, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    /// The span of `offset..offset+len` of `raw`, the value of the scalar written at `region`.
    pub(crate) fn locate(&self, region: Span, raw: &str, offset: usize, len: usize) -> Span {
        locate(self.map, region, raw, offset, len)
    }

    /// Reports an expression syntax error inside the scalar at `region` whose value is `raw`.
    pub(crate) fn expr_error(&mut self, region: Span, raw: &str, e: &ExprError) {
        let span = self.locate(region, raw, e.offset, 1);
        self.error(
            span,
            format!("invalid expression: {}", e.message),
            e.hint.clone(),
        );
    }
}

/// Where `raw[offset..offset + len]` was written, given the span of the whole scalar. Scalars may
/// be quoted, escaped or folded, so the value's text is not always the source's: each
/// interpolation is found by counting `${{` in both, and the position inside it is trusted only
/// when the source matches the value up to that point. Falls back to the scalar's start.
pub(crate) fn locate(
    map: &SourceMap<'_>,
    region: Span,
    raw: &str,
    offset: usize,
    len: usize,
) -> Span {
    let text = map.text();
    let Some(region_text) = text.get(region.offset..region.offset + region.len) else {
        return region;
    };
    let offset = floor(raw, offset.min(raw.len()));
    let end = floor(raw, (offset + len).min(raw.len()));
    let head_end = floor(raw, (offset + 3).min(raw.len()));
    let found = if let Some(s) = raw[..head_end].rfind("${{").filter(|s| *s <= offset) {
        let k = raw[..s].matches("${{").count();
        region_text.match_indices("${{").nth(k).map(|(r, _)| {
            if region_text[r..].starts_with(&raw[s..offset]) {
                r + (offset - s)
            } else {
                r
            }
        })
    } else if !raw.is_empty() {
        region_text.find(raw).map(|p| p + offset)
    } else {
        None
    };
    match found {
        Some(at) => {
            let l = if region_text[at..].starts_with(&raw[offset..end]) {
                end - offset
            } else {
                0
            };
            map.span(region.offset + at, region.offset + at + l)
        }
        None => Span { len: 0, ..region },
    }
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: step ids, input, var, connection and matrix names.
/// The absolute directory of the workflow file `file`. A relative `file` is taken relative to
/// the current directory of the process parsing it — the one it was named in — once, here;
/// everything downstream (the engine, a worker elsewhere) gets absolute paths.
fn base_dir(file: &str) -> PathBuf {
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    if dir.is_absolute() {
        return dir.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => resolve(&cwd, dir),
        Err(_) => dir.to_path_buf(),
    }
}

pub(crate) fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// `[A-Za-z_][A-Za-z0-9_]*`: secret names (they often become environment variable names).
pub(crate) fn is_secret_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// "step `a`" from "in step `a`", as "of step `a`" for nested places.
fn of(label: &str) -> String {
    format!("of {}", label.strip_prefix("in ").unwrap_or(label))
}

/// The span to point at for "missing key" problems: the first line of the mapping.
fn head(span: Span) -> Span {
    Span { len: 0, ..span }
}
