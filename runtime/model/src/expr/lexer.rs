//! Tokens of the expression language.

use super::ExprError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Null,
    True,
    False,
    Num(f64),
    Str(String),
    Ident(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Star,
    End,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Null => "`null`".into(),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::Num(_) => "a number".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Not => "`!`".into(),
            Tok::And => "`&&`".into(),
            Tok::Or => "`||`".into(),
            Tok::Eq => "`==`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Star => "`*`".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

pub(super) struct Lexer<'s> {
    pub(super) src: &'s str,
    pub(super) pos: usize,
    pub(super) end: usize,
    pub(super) after_dot: bool,
}

impl<'s> Lexer<'s> {
    fn peek_byte(&self, at: usize) -> Option<u8> {
        if at < self.end {
            self.src.as_bytes().get(at).copied()
        } else {
            None
        }
    }

    /// The next token with its start and end offsets.
    pub(super) fn next(&mut self) -> Result<(Tok, usize, usize), ExprError> {
        while let Some(b) = self.peek_byte(self.pos) {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
        let start = self.pos;
        let after_dot = std::mem::take(&mut self.after_dot);
        let Some(b) = self.peek_byte(start) else {
            return Ok((Tok::End, start, start));
        };
        let two = |l: &Self, c: u8| l.peek_byte(start + 1) == Some(c);
        let (tok, len) = match b {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b'.' if !after_dot => (Tok::Dot, 1),
            b',' => (Tok::Comma, 1),
            b'*' => (Tok::Star, 1),
            b'!' if two(self, b'=') => (Tok::Ne, 2),
            b'!' => (Tok::Not, 1),
            b'=' if two(self, b'=') => (Tok::Eq, 2),
            b'=' => {
                return Err(ExprError::new(start, "unexpected `=`")
                    .hint(Some("use `==` to compare".into())));
            }
            b'&' if two(self, b'&') => (Tok::And, 2),
            b'|' if two(self, b'|') => (Tok::Or, 2),
            b'<' if two(self, b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(self, b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'\'' => return self.string(start),
            _ if after_dot && is_name_byte(b) => {
                let len = self.run_len(start, is_name_byte);
                self.pos = start + len;
                return Ok((
                    Tok::Ident(self.src[start..start + len].to_owned()),
                    start,
                    start + len,
                ));
            }
            b'-' | b'0'..=b'9' => return self.number(start),
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                let len = self.run_len(start, is_name_byte);
                let word = &self.src[start..start + len];
                self.pos = start + len;
                let tok = match word {
                    "null" => Tok::Null,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    _ => Tok::Ident(word.to_owned()),
                };
                return Ok((tok, start, start + len));
            }
            _ => {
                let c = self.src[start..].chars().next().unwrap_or('?');
                let mut e = ExprError::new(start, format!("unexpected character `{c}`"));
                if c == '"' {
                    e.hint = Some("strings use single quotes: 'text'".into());
                } else if after_dot {
                    e.hint = Some("a property name is expected after `.`".into());
                }
                return Err(e);
            }
        };
        self.pos = start + len;
        Ok((tok, start, start + len))
    }

    fn run_len(&self, start: usize, pred: fn(u8) -> bool) -> usize {
        let mut i = start;
        while self.peek_byte(i).is_some_and(pred) {
            i += 1;
        }
        i - start
    }

    fn string(&mut self, start: usize) -> Result<(Tok, usize, usize), ExprError> {
        let mut out = String::new();
        let mut i = start + 1;
        while let Some(rest) = self.src.get(i..self.end) {
            match rest.find('\'') {
                None => break,
                Some(q) => {
                    out.push_str(&rest[..q]);
                    i += q + 1;
                    if self.peek_byte(i) == Some(b'\'') {
                        out.push('\'');
                        i += 1;
                    } else {
                        self.pos = i;
                        return Ok((Tok::Str(out), start, i));
                    }
                }
            }
        }
        Err(ExprError::new(start, "unterminated string").hint(Some(
            "strings end with `'`; write `''` for a quote inside".into(),
        )))
    }

    fn number(&mut self, start: usize) -> Result<(Tok, usize, usize), ExprError> {
        let mut i = start;
        let neg = self.peek_byte(i) == Some(b'-');
        if neg {
            i += 1;
        }
        if !self.peek_byte(i).is_some_and(|b| b.is_ascii_digit()) {
            return Err(ExprError::new(start, "unexpected `-`")
                .hint(Some("`-` may only start a number literal".into())));
        }
        let value = if self.peek_byte(i) == Some(b'0')
            && matches!(self.peek_byte(i + 1), Some(b'x' | b'X'))
        {
            let digits_start = i + 2;
            let len = self.run_len(digits_start, |b| b.is_ascii_hexdigit());
            if len == 0 {
                return Err(ExprError::new(start, "invalid hexadecimal number"));
            }
            i = digits_start + len;
            let v = u64::from_str_radix(&self.src[digits_start..i], 16)
                .map_err(|_| ExprError::new(start, "number out of range"))?;
            v as f64
        } else {
            i += self.run_len(i, |b| b.is_ascii_digit());
            if self.peek_byte(i) == Some(b'.')
                && self.peek_byte(i + 1).is_some_and(|b| b.is_ascii_digit())
            {
                i += 1;
                i += self.run_len(i, |b| b.is_ascii_digit());
            }
            if matches!(self.peek_byte(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(self.peek_byte(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                let n = self.run_len(j, |b| b.is_ascii_digit());
                if n == 0 {
                    return Err(ExprError::new(
                        start,
                        "invalid number: exponent has no digits",
                    ));
                }
                i = j + n;
            }
            let text = &self.src[if neg { start + 1 } else { start }..i];
            let v: f64 = text
                .parse()
                .map_err(|_| ExprError::new(start, "invalid number"))?;
            if !v.is_finite() {
                return Err(ExprError::new(start, "number out of range"));
            }
            v
        };
        if self
            .peek_byte(i)
            .is_some_and(|b| is_name_byte(b) && b != b'-')
        {
            return Err(ExprError::new(start, "invalid number"));
        }
        self.pos = i;
        Ok((Tok::Num(if neg { -value } else { value }), start, i))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
