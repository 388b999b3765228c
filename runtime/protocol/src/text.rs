//! Text a step produced (errors, log lines, output strings) is untrusted: shown raw on a terminal
//! it could clear the screen, move the cursor, set the window title, write the clipboard (OSC 52)
//! or forge a `success fake-step` row with a carriage return. Everything shown passes through
//! [`for_terminal`] first.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` made safe to print: control characters (C0 but tab, DEL, C1) and the Unicode bidi and
/// zero-width controls are written escaped (`\x1b`, `\r`, `\u{202e}`), and a newline continues on
/// a new line that starts with `indent`, so a step's text can neither act on the terminal nor
/// start a line of its own. Borrowed when nothing needed changing.
pub fn for_terminal<'a>(s: &'a str, indent: &str) -> Cow<'a, str> {
    if !s.chars().any(|c| c == '\n' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(indent);
            }
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_acts_on_a_terminal_and_indents_lines() {
        assert!(matches!(
            for_terminal("plain text\tok", "  "),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            for_terminal("\x1b[2J\x1b]52;c;aGk=\x07boom", ""),
            "\\x1b[2J\\x1b]52;c;aGk=\\x07boom"
        );
        assert_eq!(
            for_terminal("failed\r  success    fake-step\nsecond", "    "),
            "failed\\r  success    fake-step\n    second"
        );
        assert_eq!(
            for_terminal("a\u{202e}b\u{9b}c\u{7f}", ""),
            "a\\u{202e}b\\u{9b}c\\x7f"
        );
    }
}
