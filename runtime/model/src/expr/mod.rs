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

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;
mod template;
#[cfg(test)]
mod tests;
mod types;

use std::borrow::Cow;

use serde_json::Value as Json;

use ast::{Kind, Node, collect_refs, walk};
use eval::eval;
pub use eval::{loose_eq, to_str};
pub(crate) use types::ExprType;

/// Longest accepted expression source, in bytes.
pub const MAX_EXPR_LEN: usize = 16 * 1024;
/// Longest accepted template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 1024 * 1024;
/// Deepest nesting of parentheses, brackets and calls.
pub const MAX_DEPTH: usize = 64;
/// Tallest syntax tree (chains of `==`, `<` … count one level per operator).
pub const MAX_HEIGHT: u32 = 256;

/// The names an expression may start with.
pub const CONTEXTS: [&str; 7] = [
    "inputs", "vars", "steps", "matrix", "secrets", "run", "drill",
];

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
