//! The `${{ … }}` expression language: a small, total subset of GitHub Actions expressions.
//!
//! Grammar (whitespace between tokens is ignored):
//!
//! ```text
//! expr     := or
//! or       := and ( "||" and )*
//! and      := equality ( "&&" equality )*
//! equality := compare ( ( "==" | "!=" ) compare )*
//! compare  := unary ( ( "<" | "<=" | ">" | ">=" ) unary )*
//! unary    := "!" unary | postfix
//! postfix  := primary ( "." NAME | "[" expr "]" )*
//! primary  := "null" | "true" | "false" | NUMBER | STRING
//!           | CONTEXT | FUNCTION "(" ( expr ( "," expr )* )? ")" | "(" expr ")"
//! CONTEXT  := inputs | vars | steps | matrix | secrets | run
//! NAME     := [A-Za-z0-9_-]+            (after a dot)
//! NUMBER   := "-"? digits ( "." digits )? ( [eE] [+-]? digits )?  |  "-"? "0x" hexdigits
//! STRING   := "'" ( [^'] | "''" )* "'"
//! ```
//!
//! Semantics follow GitHub Actions: `&&`/`||` short-circuit and return an operand, `==` is
//! case-insensitive for strings and coerces mismatched primitive types to numbers, a missing
//! property is `null`. See the README, "Workflow reference", for the full description.
//!
//! Cost and limits: parsing is linear in the source; an expression may be at most
//! [`MAX_EXPR_LEN`] bytes and nest at most [`MAX_DEPTH`] levels, and the syntax tree is at most
//! [`MAX_HEIGHT`] nodes tall, so neither parsing nor evaluation can exhaust the stack on any input.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value as Json;

/// Longest accepted expression source, in bytes.
pub const MAX_EXPR_LEN: usize = 16 * 1024;
/// Longest accepted template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 1024 * 1024;
/// Deepest nesting of parentheses, brackets and calls.
pub const MAX_DEPTH: usize = 64;
/// Tallest syntax tree (chains of `==`, `<` … count one level per operator).
pub const MAX_HEIGHT: u32 = 256;

/// The names an expression may start with.
pub const CONTEXTS: [&str; 6] = ["inputs", "vars", "steps", "matrix", "secrets", "run"];

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    source: String,
    root: Node,
}

/// A string that may contain `${{ … }}` interpolations.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    /// `start` is the byte offset of `${{` in the raw text, `expr_offset` that of the expression
    /// source (after `${{`).
    Expr {
        start: usize,
        expr_offset: usize,
        expr: Expr,
    },
}

/// A parse error inside an expression; `offset` is a byte offset into the expression/template text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        ExprError {
            offset,
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// An evaluation error (type mismatch, missing property where that is an error, …).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Run state visible to the status functions `success()`, `failure()`, `cancelled()`, `always()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStatus {
    /// Some earlier step (that did not have continue-on-error) failed.
    pub failed: bool,
    pub cancelled: bool,
}

/// What an expression can see. `data` is an object with keys `inputs`, `vars`, `steps`, `matrix`,
/// `secrets`, `run`.
#[derive(Clone, Debug, Default)]
pub struct EvalContext {
    pub data: Json,
    pub status: RunStatus,
}

/// A reference an expression makes, for static checks: e.g. `["steps", "deploy", "outputs", "url"]`.
///
/// The path holds the context name and then every property or literal index that follows it,
/// up to the first index computed at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    /// Byte offset of the reference inside the expression source.
    pub offset: usize,
    /// Byte length of the reference text (`steps.deploy.outputs.url`).
    pub len: usize,
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Clone, Debug, PartialEq)]
struct Node {
    /// Byte offset in the expression source.
    offset: usize,
    /// Byte offset just past the node's text.
    end: usize,
    height: u32,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Lit(Json),
    Context(&'static str),
    Path(Box<Node>, Vec<Accessor>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Clone, Debug, PartialEq)]
enum Accessor {
    /// `.name`; `end` is the byte offset after the name.
    Prop(String, usize),
    /// `[expr]`; `end` is the byte offset after `]`.
    Index(Node, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
}

/// Function name, the function, minimum and maximum argument count.
const FUNCTIONS: [(&str, Func, usize, usize); 11] = [
    ("success", Func::Success, 0, 0),
    ("failure", Func::Failure, 0, 0),
    ("always", Func::Always, 0, 0),
    ("cancelled", Func::Cancelled, 0, 0),
    ("contains", Func::Contains, 2, 2),
    ("startsWith", Func::StartsWith, 2, 2),
    ("endsWith", Func::EndsWith, 2, 2),
    ("format", Func::Format, 1, usize::MAX),
    ("join", Func::Join, 1, 2),
    ("toJSON", Func::ToJson, 1, 1),
    ("fromJSON", Func::FromJson, 1, 1),
];

impl Func {
    fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
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
    fn describe(&self) -> String {
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

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    end: usize,
    after_dot: bool,
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
    fn next(&mut self) -> Result<(Tok, usize, usize), ExprError> {
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

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'s> {
    lex: Lexer<'s>,
    tok: Tok,
    tok_start: usize,
    tok_end: usize,
    depth: usize,
}

type PResult<T> = Result<T, ExprError>;

impl<'s> Parser<'s> {
    fn new(src: &'s str, start: usize, end: usize) -> PResult<Self> {
        let mut lex = Lexer {
            src,
            pos: start,
            end,
            after_dot: false,
        };
        let (tok, s, e) = lex.next()?;
        Ok(Parser {
            lex,
            tok,
            tok_start: s,
            tok_end: e,
            depth: 0,
        })
    }

    fn bump(&mut self) -> PResult<Tok> {
        let (tok, s, e) = self.lex.next()?;
        self.tok_start = s;
        self.tok_end = e;
        Ok(std::mem::replace(&mut self.tok, tok))
    }

    fn expect(&mut self, want: &Tok, what: &str) -> PResult<usize> {
        if &self.tok == want {
            let end = self.tok_end;
            self.bump()?;
            Ok(end)
        } else {
            Err(ExprError::new(
                self.tok_start,
                format!("expected {what}, found {}", self.tok.describe()),
            ))
        }
    }

    fn node(&self, offset: usize, end: usize, kind: Kind, children: &[&Node]) -> PResult<Node> {
        let height = 1 + children.iter().map(|c| c.height).max().unwrap_or(0);
        if height > MAX_HEIGHT {
            return Err(ExprError::new(offset, "expression is too deeply nested"));
        }
        Ok(Node {
            offset,
            end,
            height,
            kind,
        })
    }

    fn expr(&mut self) -> PResult<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                self.tok_start,
                format!("expression nests more than {MAX_DEPTH} levels"),
            ));
        }
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> PResult<Node> {
        let first = self.and()?;
        if self.tok != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok == Tok::Or {
            self.bump()?;
            items.push(self.and()?);
        }
        Ok(Self::list_node(items, Kind::Or))
    }

    /// A flat `&&`/`||` node: evaluation walks the list, so a long chain adds one level only.
    fn list_node(items: Vec<Node>, kind: fn(Vec<Node>) -> Kind) -> Node {
        let (offset, end) = (items[0].offset, items[items.len() - 1].end);
        let height = 1 + items.iter().map(|c| c.height).max().unwrap_or(0);
        Node {
            offset,
            end,
            height,
            kind: kind(items),
        }
    }

    fn and(&mut self) -> PResult<Node> {
        let first = self.equality()?;
        if self.tok != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok == Tok::And {
            self.bump()?;
            items.push(self.equality()?);
        }
        Ok(Self::list_node(items, Kind::And))
    }

    fn equality(&mut self) -> PResult<Node> {
        let mut left = self.compare()?;
        loop {
            let op = match self.tok {
                Tok::Eq => CmpOp::Eq,
                Tok::Ne => CmpOp::Ne,
                _ => return Ok(left),
            };
            self.bump()?;
            let right = self.compare()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn compare(&mut self) -> PResult<Node> {
        let mut left = self.unary()?;
        loop {
            let op = match self.tok {
                Tok::Lt => CmpOp::Lt,
                Tok::Le => CmpOp::Le,
                Tok::Gt => CmpOp::Gt,
                Tok::Ge => CmpOp::Ge,
                _ => return Ok(left),
            };
            self.bump()?;
            let right = self.unary()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn binary(&self, op: CmpOp, left: Node, right: Node) -> PResult<Node> {
        let (s, e) = (left.offset, right.end);
        let n = self.node(s, e, Kind::Lit(Json::Null), &[&left, &right])?;
        Ok(Node {
            kind: Kind::Cmp(op, Box::new(left), Box::new(right)),
            ..n
        })
    }

    fn unary(&mut self) -> PResult<Node> {
        if self.tok == Tok::Not {
            let start = self.tok_start;
            // Count `!` chains against the nesting limit: each one is a level of recursion.
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(ExprError::new(
                    start,
                    format!("expression nests more than {MAX_DEPTH} levels"),
                ));
            }
            self.bump()?;
            let inner = self.unary();
            self.depth -= 1;
            let inner = inner?;
            let n = self.node(start, inner.end, Kind::Lit(Json::Null), &[&inner])?;
            return Ok(Node {
                kind: Kind::Not(Box::new(inner)),
                ..n
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> PResult<Node> {
        let base = self.primary()?;
        let mut accessors = Vec::new();
        let mut end = base.end;
        let mut height = base.height;
        loop {
            match self.tok {
                Tok::Dot => {
                    self.lex.after_dot = true;
                    self.bump()?; // `.`; the name after it is now the current token
                    match &self.tok {
                        Tok::Ident(name) => {
                            end = self.tok_end;
                            accessors.push(Accessor::Prop(name.clone(), end));
                            self.bump()?;
                        }
                        Tok::Star => {
                            return Err(ExprError::new(
                                self.tok_start,
                                "object filters (`.*`) are not supported",
                            )
                            .hint(Some(
                                "index the value you need, e.g. `steps.x.legs[0].outputs`".into(),
                            )));
                        }
                        other => {
                            return Err(ExprError::new(
                                self.tok_start,
                                format!(
                                    "expected a property name after `.`, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
                Tok::LBracket => {
                    let open = self.tok_start;
                    self.bump()?;
                    if self.tok == Tok::Star {
                        return Err(ExprError::new(open, "`[*]` is not supported"));
                    }
                    let idx = self.expr()?;
                    end = self.expect(&Tok::RBracket, "`]`")?;
                    height = height.max(idx.height);
                    accessors.push(Accessor::Index(idx, end));
                }
                _ => break,
            }
        }
        if accessors.is_empty() {
            return Ok(base);
        }
        let offset = base.offset;
        height = height.max(base.height) + 1;
        if height > MAX_HEIGHT {
            return Err(ExprError::new(offset, "expression is too deeply nested"));
        }
        Ok(Node {
            offset,
            end,
            height,
            kind: Kind::Path(Box::new(base), accessors),
        })
    }

    fn primary(&mut self) -> PResult<Node> {
        let (start, end) = (self.tok_start, self.tok_end);
        let lit = |v: Json| Node {
            offset: start,
            end,
            height: 1,
            kind: Kind::Lit(v),
        };
        match self.bump()? {
            Tok::Null => Ok(lit(Json::Null)),
            Tok::True => Ok(lit(Json::Bool(true))),
            Tok::False => Ok(lit(Json::Bool(false))),
            Tok::Num(n) => Ok(lit(number(n))),
            Tok::Str(s) => Ok(lit(Json::String(s))),
            Tok::LParen => {
                let inner = self.expr()?;
                let close = self.expect(&Tok::RParen, "`)`")?;
                Ok(Node {
                    offset: start,
                    end: close,
                    ..inner
                })
            }
            Tok::Ident(name) => {
                if self.tok == Tok::LParen {
                    self.call(&name, start)
                } else if let Some(ctx) = CONTEXTS.iter().find(|c| **c == name) {
                    Ok(Node {
                        offset: start,
                        end,
                        height: 1,
                        kind: Kind::Context(ctx),
                    })
                } else {
                    let hint = crate::diag::suggest(&name, CONTEXTS).or_else(|| {
                        Some(format!(
                            "expressions start with a context ({}), a literal or a function call; \
                             strings are written 'like this'",
                            CONTEXTS.join(", ")
                        ))
                    });
                    Err(ExprError::new(start, format!("unknown context `{name}`")).hint(hint))
                }
            }
            Tok::End => Err(ExprError::new(
                start,
                "expected an expression, found nothing",
            )),
            other => Err(ExprError::new(
                start,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    fn call(&mut self, name: &str, start: usize) -> PResult<Node> {
        let Some(&(canonical, func, min, max)) = FUNCTIONS
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
        else {
            let hint = crate::diag::suggest(name, FUNCTIONS.iter().map(|f| f.0)).or_else(|| {
                Some(format!(
                    "available functions: {}",
                    FUNCTIONS.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
                ))
            });
            return Err(ExprError::new(start, format!("unknown function `{name}`")).hint(hint));
        };
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                start,
                format!("expression nests more than {MAX_DEPTH} levels"),
            ));
        }
        self.bump()?; // `(`
        let mut args = Vec::new();
        if self.tok != Tok::RParen {
            loop {
                args.push(self.expr()?);
                if self.tok == Tok::Comma {
                    self.bump()?;
                    continue;
                }
                break;
            }
        }
        self.depth -= 1;
        let close = self.expect(&Tok::RParen, "`,` or `)`")?;
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else if max == usize::MAX {
                format!("at least {min} argument{}", if min == 1 { "" } else { "s" })
            } else {
                format!("{min} to {max} arguments")
            };
            return Err(ExprError::new(
                start,
                format!("`{canonical}` takes {want}, got {}", args.len()),
            ));
        }
        let refs: Vec<&Node> = args.iter().collect();
        let n = self.node(start, close, Kind::Lit(Json::Null), &refs)?;
        Ok(Node {
            kind: Kind::Call(func, args),
            ..n
        })
    }
}

/// A JSON number from an f64 literal: integral values become integers.
fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

// ---------------------------------------------------------------------------------------------
// Public API

impl Expr {
    /// Parses an expression. A source wholly wrapped in `${{ … }}` is accepted too (as `if:`
    /// conditions may be written either way); error offsets are always into `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_EXPR_LEN {
            return Err(ExprError::new(
                0,
                format!("expression is longer than {MAX_EXPR_LEN} bytes"),
            ));
        }
        let (start, end) = unwrap_braces(src).unwrap_or((0, src.len()));
        Self::parse_range(src, start, end)
    }

    /// Parses `src[start..end]`, keeping offsets relative to `src`.
    fn parse_range(src: &str, start: usize, end: usize) -> Result<Expr, ExprError> {
        let mut p = Parser::new(src, start, end)?;
        if p.tok == Tok::End {
            return Err(ExprError::new(start, "empty expression"));
        }
        let root = p.expr()?;
        if p.tok != Tok::End {
            let mut e = ExprError::new(
                p.tok_start,
                format!("unexpected {} after the expression", p.tok.describe()),
            );
            if matches!(p.tok, Tok::Ident(_) | Tok::Str(_) | Tok::Num(_)) {
                e.hint = Some("combine conditions with `&&` or `||`".into());
            }
            return Err(e);
        }
        Ok(Expr {
            source: src.to_owned(),
            root,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn eval(&self, ctx: &EvalContext) -> Result<Json, EvalError> {
        eval(&self.root, ctx).map(Cow::into_owned)
    }

    /// Whether a condition holds (GitHub Actions truthiness).
    pub fn truthy(v: &Json) -> bool {
        match v {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Json::String(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// Whether the expression calls a status function (if not, `if:` is `success() && (expr)`).
    pub fn uses_status_function(&self) -> bool {
        let mut found = false;
        walk(&self.root, &mut |n| {
            if let Kind::Call(f, _) = &n.kind {
                found |= f.is_status();
            }
        });
        found
    }

    /// Byte offset of the first status-function call, if any (for "not allowed here" errors).
    pub fn status_function_offset(&self) -> Option<usize> {
        let mut at = None;
        walk(&self.root, &mut |n| {
            if let Kind::Call(f, _) = &n.kind
                && f.is_status()
                && at.is_none()
            {
                at = Some(n.offset);
            }
        });
        at
    }

    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        collect_refs(&self.root, &mut out);
        out
    }
}

/// When `src` is `${{ … }}` (surrounding whitespace allowed) with nothing else, the byte range of
/// the inner expression.
fn unwrap_braces(src: &str) -> Option<(usize, usize)> {
    let lead = src.len() - src.trim_start().len();
    let t = src.trim();
    if t.starts_with("${{") && t.ends_with("}}") && t.len() >= 5 {
        let start = lead + 3;
        let end = lead + t.len() - 2;
        // `${{ a }} == ${{ b }}` is two templates, not one expression.
        if src[start..end].contains("${{") {
            return None;
        }
        Some((start, end))
    } else {
        None
    }
}

impl Template {
    /// Parses a string with `${{ … }}` interpolations. Text outside them is kept verbatim.
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        if src.len() > MAX_TEMPLATE_LEN {
            return Err(ExprError::new(
                0,
                format!("value is longer than {MAX_TEMPLATE_LEN} bytes"),
            ));
        }
        let mut parts = Vec::new();
        let mut rest_start = 0;
        while let Some(rel) = src[rest_start..].find("${{") {
            let open = rest_start + rel;
            if open > rest_start {
                parts.push(Part::Text(src[rest_start..open].to_owned()));
            }
            let inner_start = open + 3;
            let close = find_close(src, inner_start)
                .ok_or_else(|| ExprError::new(open, "unterminated `${{`: missing `}}`"))?;
            if close - inner_start > MAX_EXPR_LEN {
                return Err(ExprError::new(
                    open,
                    format!("expression is longer than {MAX_EXPR_LEN} bytes"),
                ));
            }
            let sub = &src[..close];
            let expr = Expr::parse_range(sub, inner_start, close).map_err(|e| {
                if e.message == "empty expression" {
                    ExprError::new(open, "empty `${{ }}`")
                } else {
                    e
                }
            })?;
            // Store the expression with its own source so its offsets start at 0.
            let inner = &src[inner_start..close];
            let trimmed_lead = inner.len() - inner.trim_start().len();
            let expr_src = inner.trim();
            let expr = Expr {
                source: expr_src.to_owned(),
                root: shift(expr.root, inner_start + trimmed_lead),
            };
            parts.push(Part::Expr {
                start: open,
                expr_offset: inner_start + trimmed_lead,
                expr,
            });
            rest_start = close + 2;
        }
        if rest_start < src.len() {
            parts.push(Part::Text(src[rest_start..].to_owned()));
        }
        Ok(Template {
            raw: src.to_owned(),
            parts,
        })
    }

    /// A template that is plain text, even if it contains `${{` (nothing inside is evaluated).
    pub fn literal(text: &str) -> Template {
        Template {
            raw: text.to_owned(),
            parts: if text.is_empty() {
                Vec::new()
            } else {
                vec![Part::Text(text.to_owned())]
            },
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// True when the template has no `${{ }}`.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// True when the template is exactly one `${{ expr }}` and nothing else, so its value keeps
    /// the expression's JSON type.
    pub fn is_single_expr(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expr { .. }])
    }

    /// The expressions inside, each with the byte offset of its source in [`Template::raw`].
    pub fn exprs(&self) -> impl Iterator<Item = (usize, &Expr)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr {
                expr_offset, expr, ..
            } => Some((*expr_offset, expr)),
            Part::Text(_) => None,
        })
    }

    /// A template that is exactly one `${{ expr }}` evaluates to that expression's value (any JSON
    /// type); otherwise the parts are rendered and concatenated into a string.
    pub fn eval(&self, ctx: &EvalContext) -> Result<Json, EvalError> {
        if let [Part::Expr { expr, .. }] = self.parts.as_slice() {
            return expr.eval(ctx);
        }
        let mut out = String::with_capacity(self.raw.len());
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr { expr, .. } => out.push_str(&to_str(&*eval(&expr.root, ctx)?)),
            }
        }
        Ok(Json::String(out))
    }

    /// References of every expression inside, with offsets into [`Template::raw`].
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        for (off, e) in self.exprs() {
            out.extend(e.references().into_iter().map(|r| Reference {
                offset: r.offset + off,
                ..r
            }));
        }
        out
    }

    /// Byte offset (into the raw text) of the first status-function call, if any.
    pub fn status_function_offset(&self) -> Option<usize> {
        self.exprs()
            .find_map(|(off, e)| e.status_function_offset().map(|o| o + off))
    }
}

/// The offset of the `}}` closing an interpolation that starts at `from`, skipping `}}` inside
/// single-quoted strings.
fn find_close(src: &str, from: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut in_str = false;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            // `''` inside a string toggles twice: still in the string.
            b'\'' => in_str = !in_str,
            b'}' if !in_str && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Moves every offset of a tree parsed inside a larger text so it is relative to `base`.
fn shift(mut n: Node, base: usize) -> Node {
    fn go(n: &mut Node, base: usize) {
        n.offset -= base;
        n.end -= base;
        match &mut n.kind {
            Kind::Lit(_) | Kind::Context(_) => {}
            Kind::Path(b, acc) => {
                go(b, base);
                for a in acc {
                    match a {
                        Accessor::Prop(_, e) => *e -= base,
                        Accessor::Index(i, e) => {
                            go(i, base);
                            *e -= base;
                        }
                    }
                }
            }
            Kind::Not(i) => go(i, base),
            Kind::And(v) | Kind::Or(v) | Kind::Call(_, v) => v.iter_mut().for_each(|c| go(c, base)),
            Kind::Cmp(_, l, r) => {
                go(l, base);
                go(r, base);
            }
        }
    }
    go(&mut n, base);
    n
}

fn walk(n: &Node, f: &mut dyn FnMut(&Node)) {
    f(n);
    match &n.kind {
        Kind::Lit(_) | Kind::Context(_) => {}
        Kind::Path(b, acc) => {
            walk(b, f);
            for a in acc {
                if let Accessor::Index(i, _) = a {
                    walk(i, f);
                }
            }
        }
        Kind::Not(i) => walk(i, f),
        Kind::And(v) | Kind::Or(v) | Kind::Call(_, v) => v.iter().for_each(|c| walk(c, f)),
        Kind::Cmp(_, l, r) => {
            walk(l, f);
            walk(r, f);
        }
    }
}

fn collect_refs(n: &Node, out: &mut Vec<Reference>) {
    match &n.kind {
        Kind::Context(c) => out.push(Reference {
            path: vec![(*c).to_owned()],
            offset: n.offset,
            len: n.end - n.offset,
        }),
        Kind::Path(base, acc) => {
            if let Kind::Context(c) = base.kind {
                let mut path = vec![c.to_owned()];
                let mut end = base.end;
                for a in acc {
                    match a {
                        Accessor::Prop(name, e) => {
                            path.push(name.clone());
                            end = *e;
                        }
                        Accessor::Index(i, e) => match &i.kind {
                            Kind::Lit(Json::String(s)) => {
                                path.push(s.clone());
                                end = *e;
                            }
                            Kind::Lit(Json::Number(num)) if num.is_u64() => {
                                path.push(num.to_string());
                                end = *e;
                            }
                            _ => break,
                        },
                    }
                }
                out.push(Reference {
                    path,
                    offset: base.offset,
                    len: end - base.offset,
                });
            } else {
                collect_refs(base, out);
            }
            for a in acc {
                if let Accessor::Index(i, _) = a {
                    collect_refs(i, out);
                }
            }
        }
        Kind::Lit(_) => {}
        Kind::Not(i) => collect_refs(i, out),
        Kind::And(v) | Kind::Or(v) | Kind::Call(_, v) => {
            v.iter().for_each(|c| collect_refs(c, out));
        }
        Kind::Cmp(_, l, r) => {
            collect_refs(l, out);
            collect_refs(r, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

static NULL: Json = Json::Null;

fn eval<'a>(n: &Node, ctx: &'a EvalContext) -> Result<Cow<'a, Json>, EvalError> {
    Ok(match &n.kind {
        Kind::Lit(v) => Cow::Owned(v.clone()),
        Kind::Context(c) => Cow::Borrowed(ctx.data.get(*c).unwrap_or(&NULL)),
        Kind::Path(base, acc) => {
            let mut cur = eval(base, ctx)?;
            for a in acc {
                cur = match a {
                    Accessor::Prop(name, _) => child(cur, |v| match v {
                        Json::Object(m) => m.get(name.as_str()),
                        _ => None,
                    }),
                    Accessor::Index(i, _) => {
                        let idx = eval(i, ctx)?;
                        index(cur, &idx)
                    }
                };
            }
            cur
        }
        Kind::Not(i) => Cow::Owned(Json::Bool(!Expr::truthy(&*eval(i, ctx)?))),
        Kind::And(items) => {
            let mut last = Cow::Owned(Json::Null);
            for it in items {
                last = eval(it, ctx)?;
                if !Expr::truthy(&last) {
                    break;
                }
            }
            last
        }
        Kind::Or(items) => {
            let mut last = Cow::Owned(Json::Null);
            for it in items {
                last = eval(it, ctx)?;
                if Expr::truthy(&last) {
                    break;
                }
            }
            last
        }
        Kind::Cmp(op, l, r) => {
            let (l, r) = (eval(l, ctx)?, eval(r, ctx)?);
            let b = match op {
                CmpOp::Eq => loose_eq(&l, &r),
                CmpOp::Ne => !loose_eq(&l, &r),
                CmpOp::Lt => loose_cmp(&l, &r) == Some(Ordering::Less),
                CmpOp::Le => matches!(loose_cmp(&l, &r), Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Gt => loose_cmp(&l, &r) == Some(Ordering::Greater),
                CmpOp::Ge => {
                    matches!(loose_cmp(&l, &r), Some(Ordering::Greater | Ordering::Equal))
                }
            };
            Cow::Owned(Json::Bool(b))
        }
        Kind::Call(f, args) => Cow::Owned(call(*f, args, ctx)?),
    })
}

/// Takes a child out of a borrowed or owned value without cloning the parent.
fn child<'a>(
    v: Cow<'a, Json>,
    get: impl for<'b> Fn(&'b Json) -> Option<&'b Json>,
) -> Cow<'a, Json> {
    match v {
        Cow::Borrowed(b) => Cow::Borrowed(get(b).unwrap_or(&NULL)),
        Cow::Owned(o) => Cow::Owned(get(&o).cloned().unwrap_or(Json::Null)),
    }
}

fn index<'a>(v: Cow<'a, Json>, idx: &Json) -> Cow<'a, Json> {
    match idx {
        Json::String(k) => child(v, |j| match j {
            Json::Object(m) => m.get(k.as_str()),
            _ => None,
        }),
        Json::Number(n) => {
            let i = n
                .as_f64()
                .map(f64::floor)
                .filter(|f| *f >= 0.0 && *f < 1e15);
            child(v, |j| match (j, i) {
                (Json::Array(a), Some(i)) => a.get(i as usize),
                _ => None,
            })
        }
        _ => Cow::Owned(Json::Null),
    }
}

fn call(f: Func, args: &[Node], ctx: &EvalContext) -> Result<Json, EvalError> {
    let arg = |i: usize| eval(&args[i], ctx);
    Ok(match f {
        Func::Success => Json::Bool(!ctx.status.failed && !ctx.status.cancelled),
        Func::Failure => Json::Bool(ctx.status.failed),
        Func::Always => Json::Bool(true),
        Func::Cancelled => Json::Bool(ctx.status.cancelled),
        Func::Contains => {
            let (hay, needle) = (arg(0)?, arg(1)?);
            Json::Bool(match &*hay {
                Json::Array(items) => items.iter().any(|i| loose_eq(i, &needle)),
                other => lower(&to_str(other)).contains(&lower(&to_str(&needle))),
            })
        }
        Func::StartsWith => {
            let (s, p) = (arg(0)?, arg(1)?);
            Json::Bool(lower(&to_str(&s)).starts_with(&lower(&to_str(&p))))
        }
        Func::EndsWith => {
            let (s, p) = (arg(0)?, arg(1)?);
            Json::Bool(lower(&to_str(&s)).ends_with(&lower(&to_str(&p))))
        }
        Func::Format => {
            let fmt = to_str(&*arg(0)?);
            let mut values = Vec::with_capacity(args.len() - 1);
            for i in 1..args.len() {
                values.push(to_str(&*arg(i)?));
            }
            Json::String(format_str(&fmt, &values)?)
        }
        Func::Join => {
            let v = arg(0)?;
            let sep = if args.len() > 1 {
                to_str(&*arg(1)?)
            } else {
                ",".to_owned()
            };
            match &*v {
                Json::Array(items) => {
                    Json::String(items.iter().map(to_str).collect::<Vec<_>>().join(&sep))
                }
                other => Json::String(to_str(other)),
            }
        }
        Func::ToJson => {
            let v = arg(0)?;
            Json::String(
                serde_json::to_string_pretty(&*v).map_err(|e| EvalError(format!("toJSON: {e}")))?,
            )
        }
        Func::FromJson => {
            let s = to_str(&*arg(0)?);
            serde_json::from_str(&s).map_err(|e| {
                EvalError(format!(
                    "fromJSON: `{}` is not valid JSON: {e}",
                    shorten(&s)
                ))
            })?
        }
    })
}

/// `format('{0} and {1}', a, b)`: `{N}` is replaced by argument N, `{{` and `}}` are literal braces.
fn format_str(fmt: &str, values: &[String]) -> Result<String, EvalError> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '{' => {
                let rest = &fmt[i + 1..];
                let close = rest.find('}').ok_or_else(|| {
                    EvalError(format!("format: unclosed `{{` in `{}`", shorten(fmt)))
                })?;
                let n: usize = rest[..close].trim().parse().map_err(|_| {
                    EvalError(format!(
                        "format: `{{{}}}` is not an argument index in `{}`",
                        &rest[..close],
                        shorten(fmt)
                    ))
                })?;
                let v = values.get(n).ok_or_else(|| {
                    EvalError(format!(
                        "format: argument {{{n}}} is missing ({} given)",
                        values.len()
                    ))
                })?;
                out.push_str(v);
                for _ in 0..rest[..close].chars().count() + 1 {
                    chars.next();
                }
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '}' => {
                return Err(EvalError(format!(
                    "format: unmatched `}}` in `{}` (write `}}}}` for a brace)",
                    shorten(fmt)
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn shorten(s: &str) -> Cow<'_, str> {
    if s.chars().count() <= 60 {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().take(57).collect::<String>() + "...")
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// How a value is written into a string: null is empty, strings are themselves, numbers are
/// written without a trailing `.0`, lists and objects as compact JSON.
pub fn to_str(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => number_str(n),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number_str(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

/// A value as a number for loose comparison (NaN when it has none).
fn to_num(v: &Json) -> f64 {
    match v {
        Json::Null => 0.0,
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Json::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else if let Some(h) = t.strip_prefix("0x") {
                u64::from_str_radix(h, 16).map_or(f64::NAN, |v| v as f64)
            } else {
                serde_json::from_str::<serde_json::Number>(t)
                    .ok()
                    .and_then(|n| n.as_f64())
                    .unwrap_or(f64::NAN)
            }
        }
        Json::Array(_) | Json::Object(_) => f64::NAN,
    }
}

fn same_type(a: &Json, b: &Json) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// `==`: strings case-insensitively, same types directly, mismatched primitives as numbers;
/// lists and objects by deep equality (GitHub compares them by identity, which JSON values lack).
pub fn loose_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x == y || lower(x) == lower(y),
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        _ if same_type(a, b) => a == b,
        (Json::Array(_) | Json::Object(_), _) | (_, Json::Array(_) | Json::Object(_)) => false,
        _ => to_num(a) == to_num(b),
    }
}

/// `<` and friends: numbers numerically, strings case-insensitively; mismatched primitives as
/// numbers; `None` (every comparison false) for NaN, lists and objects.
fn loose_cmp(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::String(x), Json::String(y)) => Some(lower(x).cmp(&lower(y))),
        (Json::Array(_) | Json::Object(_), _) | (_, Json::Array(_) | Json::Object(_)) => None,
        _ => to_num(a).partial_cmp(&to_num(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ctx() -> EvalContext {
        EvalContext {
            data: json!({
                "inputs": {"region": "EU", "count": 3, "flag": true, "list": ["a", "b"], "empty": ""},
                "vars": {"n": "10", "url": "http://x"},
                "steps": {"deploy": {"outputs": {"url": "http://eu", "n": 2}, "outcome": "success"},
                          "m": {"outputs": {"eu,blue": {"x": 1}}}},
                "matrix": {"region": "eu"},
                "secrets": {"TOKEN": "s3cr3t"},
                "run": {"id": "r1"}
            }),
            status: RunStatus::default(),
        }
    }

    fn ev(src: &str) -> Json {
        Expr::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&ctx())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn perr(src: &str) -> ExprError {
        Expr::parse(src).expect_err(src)
    }

    #[test]
    fn literals() {
        assert_eq!(ev("null"), json!(null));
        assert_eq!(ev("true"), json!(true));
        assert_eq!(ev("42"), json!(42));
        assert_eq!(ev("-1.5"), json!(-1.5));
        assert_eq!(ev("0xff"), json!(255));
        assert_eq!(ev("1e3"), json!(1000));
        assert_eq!(ev("'it''s'"), json!("it's"));
        assert_eq!(ev("''"), json!(""));
    }

    #[test]
    fn property_and_index_access() {
        assert_eq!(ev("inputs.region"), json!("EU"));
        assert_eq!(ev("inputs['region']"), json!("EU"));
        assert_eq!(ev("inputs.list[1]"), json!("b"));
        assert_eq!(ev("inputs.list[1.7]"), json!("b"));
        assert_eq!(ev("inputs.list[5]"), json!(null));
        assert_eq!(ev("inputs.list[-1]"), json!(null));
        assert_eq!(ev("steps.deploy.outputs.url"), json!("http://eu"));
        assert_eq!(ev("steps.m.outputs['eu,blue'].x"), json!(1));
        assert_eq!(ev("inputs.missing.deeper"), json!(null));
        assert_eq!(ev("fromJSON('{\"a\":[1,2]}').a[1]"), json!(2));
        assert_eq!(ev("(inputs).region"), json!("EU"));
        assert_eq!(ev("inputs[inputs.list[0] == 'a' && 'region']"), json!("EU"));
    }

    #[test]
    fn missing_context_data_is_null() {
        let c = EvalContext::default();
        assert_eq!(
            Expr::parse("matrix.x").unwrap().eval(&c).unwrap(),
            json!(null)
        );
    }

    #[test]
    fn comparisons_are_loose() {
        assert_eq!(ev("inputs.region == 'eu'"), json!(true));
        assert_eq!(ev("inputs.region != 'eu'"), json!(false));
        assert_eq!(ev("vars.n == 10"), json!(true));
        assert_eq!(ev("'' == 0"), json!(true));
        assert_eq!(ev("null == 0"), json!(true));
        assert_eq!(ev("true == 1"), json!(true));
        assert_eq!(ev("'abc' == 1"), json!(false));
        assert_eq!(ev("'abc' != 1"), json!(true));
        assert_eq!(ev("inputs.count > 2"), json!(true));
        assert_eq!(ev("inputs.count <= 2"), json!(false));
        assert_eq!(ev("'a' < 'B'"), json!(true));
        assert_eq!(ev("'10' > 9"), json!(true));
        assert_eq!(ev("'x' < 1"), json!(false));
        assert_eq!(ev("'x' >= 1"), json!(false));
        assert_eq!(ev("inputs.list == inputs.list"), json!(true));
        assert_eq!(ev("inputs.list == 1"), json!(false));
        assert_eq!(ev("inputs.list < 1"), json!(false));
        assert_eq!(ev("1 < 2 == true"), json!(true));
    }

    #[test]
    fn logic_short_circuits_and_returns_operands() {
        assert_eq!(ev("inputs.region && 'x'"), json!("x"));
        assert_eq!(ev("inputs.empty && 'x'"), json!(""));
        assert_eq!(ev("inputs.empty || 'fallback'"), json!("fallback"));
        assert_eq!(ev("inputs.region || 'fallback'"), json!("EU"));
        assert_eq!(ev("!inputs.flag"), json!(false));
        assert_eq!(ev("!!inputs.region"), json!(true));
        assert_eq!(ev("false || null"), json!(null));
        // The right side is not evaluated: a failing fromJSON there does not error.
        assert_eq!(ev("false && fromJSON('nope')"), json!(false));
        assert_eq!(ev("true || fromJSON('nope')"), json!(true));
        assert_eq!(ev("true && false || true"), json!(true));
        assert_eq!(ev("!(1 == 1) || (2 > 1 && 'y')"), json!("y"));
    }

    #[test]
    fn functions() {
        assert_eq!(ev("contains(inputs.list, 'A')"), json!(true));
        assert_eq!(ev("contains('Hello', 'ELL')"), json!(true));
        assert_eq!(ev("contains(inputs.list, 'z')"), json!(false));
        assert_eq!(ev("startsWith(vars.url, 'HTTP://')"), json!(true));
        assert_eq!(ev("endsWith(vars.url, '//y')"), json!(false));
        assert_eq!(ev("format('{0}-{1}-{0}', 'a', 2)"), json!("a-2-a"));
        assert_eq!(ev("format('{{literal}} {0}', 'x')"), json!("{literal} x"));
        assert_eq!(ev("join(inputs.list)"), json!("a,b"));
        assert_eq!(ev("join(inputs.list, ' + ')"), json!("a + b"));
        assert_eq!(ev("join('solo', '-')"), json!("solo"));
        assert_eq!(ev("toJSON(inputs.list)"), json!("[\n  \"a\",\n  \"b\"\n]"));
        assert_eq!(ev("fromJSON('[1, true]')"), json!([1, true]));
        assert_eq!(ev("STARTSWITH('abc', 'a')"), json!(true));
    }

    #[test]
    fn function_errors_at_run_time() {
        let e = |s: &str| Expr::parse(s).unwrap().eval(&ctx()).unwrap_err().0;
        assert!(e("format('{1}', 'a')").contains("argument {1} is missing"));
        assert!(e("format('{x}', 'a')").contains("not an argument index"));
        assert!(e("format('{0', 'a')").contains("unclosed"));
        assert!(e("format('}', 'a')").contains("unmatched"));
        assert!(e("fromJSON('{')").contains("not valid JSON"));
    }

    #[test]
    fn status_functions() {
        let mut c = ctx();
        let e = |s: &str, c: &EvalContext| Expr::parse(s).unwrap().eval(c).unwrap();
        assert_eq!(e("success()", &c), json!(true));
        assert_eq!(e("failure()", &c), json!(false));
        c.status.failed = true;
        assert_eq!(e("success()", &c), json!(false));
        assert_eq!(e("failure()", &c), json!(true));
        assert_eq!(e("always()", &c), json!(true));
        c.status.cancelled = true;
        assert_eq!(e("cancelled()", &c), json!(true));
        assert!(
            Expr::parse("always() && inputs.x")
                .unwrap()
                .uses_status_function()
        );
        assert!(!Expr::parse("inputs.x").unwrap().uses_status_function());
        assert_eq!(
            Expr::parse("1 || failure()")
                .unwrap()
                .status_function_offset(),
            Some(5)
        );
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let e = perr("inputs.a == ");
        assert_eq!(e.offset, 12);
        assert!(e.message.contains("found nothing"), "{e:?}");
        let e = perr("inputz.a");
        assert_eq!(
            (e.offset, e.message.as_str()),
            (0, "unknown context `inputz`")
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `inputs`?"));
        let e = perr("1 == 1 && contain(inputs.list, 'a')");
        assert_eq!(e.offset, 10);
        assert_eq!(e.hint.as_deref(), Some("did you mean `contains`?"));
        let e = perr("contains('a')");
        assert!(e.message.contains("takes 2 arguments, got 1"));
        let e = perr("inputs.a = 'x'");
        assert_eq!(e.offset, 9);
        assert_eq!(e.hint.as_deref(), Some("use `==` to compare"));
        let e = perr("\"x\"");
        assert!(e.hint.unwrap().contains("single quotes"));
        let e = perr("'abc");
        assert!(e.message.contains("unterminated string"));
        let e = perr("inputs.a inputs.b");
        assert_eq!(e.offset, 9);
        let e = perr("(1 == 1");
        assert!(e.message.contains("expected `)`"));
        let e = perr("steps.*.outputs");
        assert!(e.message.contains("not supported"));
        let e = perr("inputs.");
        assert!(e.message.contains("property name"));
        let e = perr("");
        assert_eq!(e.message, "empty expression");
        let e = perr("- 1");
        assert!(e.message.contains("unexpected `-`"));
        let e = perr("12abc");
        assert!(e.message.contains("invalid number"));
        let e = perr("1e999");
        assert!(e.message.contains("out of range"));
    }

    #[test]
    fn braces_around_a_whole_expression_are_optional() {
        let e = Expr::parse("  ${{ inputs.count > 1 }}").unwrap();
        assert_eq!(e.eval(&ctx()).unwrap(), json!(true));
        let err = perr("${{ inputs.count > }}");
        assert_eq!(err.offset, 19);
        // Two interpolations are not one expression.
        assert!(Expr::parse("${{ a }} == ${{ b }}").is_err());
    }

    #[test]
    fn dashes_in_names() {
        let c = EvalContext {
            data: json!({"steps": {"my-step": {"outputs": {"the-url": "u"}}}}),
            status: RunStatus::default(),
        };
        let e = Expr::parse("steps.my-step.outputs.the-url").unwrap();
        assert_eq!(e.eval(&c).unwrap(), json!("u"));
        // A property may start with a digit after a dot.
        let e = Expr::parse("steps.x.outputs.0a").unwrap();
        assert_eq!(e.references()[0].path[3], "0a");
    }

    #[test]
    fn references_and_offsets() {
        let src = "steps.deploy.outputs['url'] == inputs.region && matrix[inputs.k].z";
        let refs = Expr::parse(src).unwrap().references();
        let paths: Vec<Vec<&str>> = refs
            .iter()
            .map(|r| r.path.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            paths,
            vec![
                vec!["steps", "deploy", "outputs", "url"],
                vec!["inputs", "region"],
                vec!["matrix"],
                vec!["inputs", "k"],
            ]
        );
        assert_eq!(
            &src[refs[0].offset..refs[0].offset + refs[0].len],
            "steps.deploy.outputs['url']"
        );
        assert_eq!(
            &src[refs[1].offset..refs[1].offset + refs[1].len],
            "inputs.region"
        );
        assert_eq!(
            &src[refs[3].offset..refs[3].offset + refs[3].len],
            "inputs.k"
        );
        let refs = Expr::parse("format('{0}', steps.a.outputs.x)")
            .unwrap()
            .references();
        assert_eq!(refs[0].path, vec!["steps", "a", "outputs", "x"]);
        let refs = Expr::parse("inputs.list[0]").unwrap().references();
        assert_eq!(refs[0].path, vec!["inputs", "list", "0"]);
    }

    #[test]
    fn templates() {
        let t = Template::parse("plain text").unwrap();
        assert!(t.is_literal());
        assert_eq!(t.eval(&ctx()).unwrap(), json!("plain text"));
        let t = Template::parse("${{ inputs.count }}").unwrap();
        assert!(t.is_single_expr());
        assert_eq!(t.eval(&ctx()).unwrap(), json!(3));
        let t = Template::parse("n=${{ inputs.count }}, r=${{inputs.region}}!").unwrap();
        assert_eq!(t.eval(&ctx()).unwrap(), json!("n=3, r=EU!"));
        let t = Template::parse("${{ inputs.list }} ${{ null }}|").unwrap();
        assert_eq!(t.eval(&ctx()).unwrap(), json!("[\"a\",\"b\"] |"));
        let t = Template::parse("${{ '}}' }}").unwrap();
        assert_eq!(t.eval(&ctx()).unwrap(), json!("}}"));
        let t = Template::parse("a ${{ 1.5 }} ${{ 2.0 }}").unwrap();
        assert_eq!(t.eval(&ctx()).unwrap(), json!("a 1.5 2"));
        assert_eq!(t.raw(), "a ${{ 1.5 }} ${{ 2.0 }}");
    }

    #[test]
    fn template_errors_and_references_use_raw_offsets() {
        let raw = "x ${{ inputs.a }} y ${{ steps.b.outputs.c }}";
        let t = Template::parse(raw).unwrap();
        let refs = t.references();
        assert_eq!(
            &raw[refs[0].offset..refs[0].offset + refs[0].len],
            "inputs.a"
        );
        assert_eq!(
            &raw[refs[1].offset..refs[1].offset + refs[1].len],
            "steps.b.outputs.c"
        );
        let e = Template::parse("ok ${{ inputs.a }} ${{ inputz.b }}").unwrap_err();
        assert_eq!(e.offset, 23);
        let e = Template::parse("abc ${{ inputs.a").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (4, "unterminated `${{`: missing `}}`")
        );
        let e = Template::parse("a ${{ }} b").unwrap_err();
        assert_eq!((e.offset, e.message.as_str()), (2, "empty `${{ }}`"));
        let t = Template::parse("${{ success() }}").unwrap();
        assert_eq!(t.status_function_offset(), Some(4));
    }

    #[test]
    fn limits_stop_deep_nesting() {
        let deep = "(".repeat(100) + "1" + &")".repeat(100);
        assert!(perr(&deep).message.contains("nests more than"));
        let nots = "!".repeat(1000) + "true";
        assert!(perr(&nots).message.contains("nests more than"));
        let chain = vec!["1"; 2000].join(" == ");
        assert!(perr(&chain).message.contains("too deeply nested"));
        let ors = vec!["inputs.a"; 1000].join(" || ");
        assert_eq!(
            Expr::parse(&ors).unwrap().eval(&ctx()).unwrap(),
            json!(null)
        );
        let long = "1".repeat(MAX_EXPR_LEN + 1);
        assert!(perr(&long).message.contains("longer than"));
        let idx = "inputs".to_string() + &"[0]".repeat(3000);
        // Thousands of accessors are fine: they are a flat list.
        assert_eq!(
            Expr::parse(&idx).unwrap().eval(&ctx()).unwrap(),
            json!(null)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn expr_parse_and_eval_never_panic(s in "\\PC{0,80}") {
            if let Ok(e) = Expr::parse(&s) {
                let _ = e.eval(&ctx());
                let _ = e.references();
                let _ = e.uses_status_function();
            }
        }

        #[test]
        fn template_parse_and_eval_never_panic(s in "(\\PC|\\$\\{\\{|\\}\\}|'){0,60}") {
            if let Ok(t) = Template::parse(&s) {
                let _ = t.eval(&ctx());
                for r in t.references() {
                    prop_assert!(r.offset + r.len <= s.len());
                }
            } else if let Err(e) = Template::parse(&s) {
                prop_assert!(e.offset <= s.len());
            }
        }

        #[test]
        fn grammar_shaped_input_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("inputs"), Just("."), Just("region"), Just("("), Just(")"), Just("["),
                    Just("]"), Just("'s'"), Just("1"), Just("-2.5"), Just("=="), Just("!="),
                    Just("<"), Just(">="), Just("&&"), Just("||"), Just("!"), Just(","),
                    Just("contains"), Just("format"), Just("fromJSON"), Just("success"),
                    Just("null"), Just(" "), Just("steps"), Just("*"),
                ],
                0..60,
            )
        ) {
            let s: String = parts.concat();
            if let Ok(e) = Expr::parse(&s) {
                let _ = e.eval(&ctx());
                for r in e.references() {
                    prop_assert!(r.offset + r.len <= s.len());
                }
            } else if let Err(e) = Expr::parse(&s) {
                prop_assert!(e.offset <= s.len());
            }
        }

        #[test]
        fn deep_nesting_is_an_error_not_a_crash(n in 60usize..3000, open in prop_oneof![Just("("), Just("!"), Just("contains(1,"), Just("inputs[")]) {
            let s = open.repeat(n) + "1";
            let _ = Expr::parse(&s);
        }
    }
}
