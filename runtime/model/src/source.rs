//! Byte offsets ↔ line/column for one source text.
//!
//! The YAML parser reports positions as character indexes; diagnostics want 1-based lines and
//! columns plus byte offsets to slice the source. Building a [`SourceMap`] costs one pass over the
//! text; each lookup is a binary search plus a walk of at most one line (or one checkpoint stride).

use crate::span::Span;

/// Every this many characters a (char index, byte offset) checkpoint is kept, so converting a
/// character index to a byte offset walks at most this many characters.
const CHECKPOINT_STRIDE: usize = 256;

/// Line starts and character checkpoints of one text.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    /// Byte offset of the start of every line (line 1 starts at 0).
    line_starts: Vec<usize>,
    /// Byte offset of character `i * CHECKPOINT_STRIDE`.
    checkpoints: Vec<usize>,
    /// All ASCII: character indexes are byte offsets (the common case, no walking).
    ascii: bool,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        let mut checkpoints = Vec::with_capacity(text.len() / CHECKPOINT_STRIDE + 1);
        for (n, (i, c)) in text.char_indices().enumerate() {
            if n % CHECKPOINT_STRIDE == 0 {
                checkpoints.push(i);
            }
            if c == '\n' {
                line_starts.push(i + 1);
            }
        }
        if checkpoints.is_empty() {
            checkpoints.push(0);
        }
        SourceMap {
            text,
            line_starts,
            checkpoints,
            ascii: text.is_ascii(),
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Byte offset of the character with index `idx` (clamped to the end of the text).
    pub(crate) fn byte_of_char(&self, idx: usize) -> usize {
        if self.ascii {
            return idx.min(self.text.len());
        }
        let cp = (idx / CHECKPOINT_STRIDE).min(self.checkpoints.len() - 1);
        let mut byte = self.checkpoints[cp];
        let mut remaining = idx - cp * CHECKPOINT_STRIDE;
        let mut chars = self.text[byte..].chars();
        while remaining > 0 {
            match chars.next() {
                Some(c) => byte += c.len_utf8(),
                None => break,
            }
            remaining -= 1;
        }
        byte
    }

    /// A span from a byte range; the range is clamped to the text and to char boundaries.
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let start = self.floor_boundary(start.min(self.text.len()));
        let end = self.floor_boundary(end.clamp(start, self.text.len()));
        let line_idx = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_idx];
        let col = self.text[line_start..start].chars().count();
        Span {
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
            offset: start,
            len: end - start,
        }
    }

    /// A span from a character range as the YAML parser reports it.
    pub(crate) fn span_of_chars(&self, start: usize, end: usize) -> Span {
        let s = self.byte_of_char(start);
        let e = if end <= start {
            s
        } else {
            self.byte_of_char(end)
        };
        self.span(s, e)
    }

    /// The text of the (1-based) line `line`, without its line break.
    pub(crate) fn line(&self, line: u32) -> Option<&'a str> {
        let i = (line as usize).checked_sub(1)?;
        let start = *self.line_starts.get(i)?;
        let end = self
            .line_starts
            .get(i + 1)
            .map_or(self.text.len(), |e| e - 1);
        let l = &self.text[start..end];
        Some(l.strip_suffix('\r').unwrap_or(l))
    }

    fn floor_boundary(&self, mut i: usize) -> usize {
        while i > 0 && !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// The text of the (1-based) line `line` of `text`, without its line break; `None` past the end.
pub(crate) fn line_text(text: &str, line: u32) -> Option<&str> {
    if line == 0 {
        return None;
    }
    let l = text.split('\n').nth(line as usize - 1)?;
    Some(l.strip_suffix('\r').unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "ab\né: x\n\nlast";
        let m = SourceMap::new(text);
        let s = m.span(0, 2);
        assert_eq!((s.line, s.col, s.offset, s.len), (1, 1, 0, 2));
        // `x` is after a 2-byte character.
        let x = text.find('x').unwrap();
        let s = m.span(x, x + 1);
        assert_eq!((s.line, s.col), (2, 4));
        let l = text.find("last").unwrap();
        assert_eq!(m.span(l, l).line, 4);
        assert_eq!(line_text(text, 2), Some("é: x"));
        assert_eq!(line_text(text, 3), Some(""));
        assert_eq!(line_text(text, 9), None);
        assert_eq!(m.line(2), Some("é: x"));
        assert_eq!(m.line(3), Some(""));
        assert_eq!(m.line(4), Some("last"));
        assert_eq!(m.line(5), None);
        assert_eq!(m.line(0), None);
    }

    #[test]
    fn char_indexes_become_byte_offsets() {
        let text: String = "é".repeat(1000) + "x";
        let m = SourceMap::new(&text);
        assert_eq!(m.byte_of_char(0), 0);
        assert_eq!(m.byte_of_char(1), 2);
        assert_eq!(m.byte_of_char(1000), 2000);
        assert_eq!(&text[m.byte_of_char(1000)..], "x");
        // Past the end clamps.
        assert_eq!(m.byte_of_char(5000), text.len());
    }

    #[test]
    fn spans_are_clamped_to_char_boundaries() {
        let text = "éé";
        let m = SourceMap::new(text);
        let s = m.span(1, 100);
        assert_eq!((s.offset, s.len), (0, 4));
    }
}
