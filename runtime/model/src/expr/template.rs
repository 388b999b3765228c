//! Strings with `${{ … }}` interpolations.

use serde_json::Value as Json;

use super::ast::shift;
use super::eval::{eval, to_str};
use super::{
    EvalContext, EvalError, Expr, ExprError, MAX_EXPR_LEN, MAX_TEMPLATE_LEN, Part, Reference,
    Template,
};

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
