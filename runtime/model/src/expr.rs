//! The `${{ … }}` expression language. (API contract; bodies to be written.)

use serde_json::Value as Json;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    source: String,
}

/// A string that may contain `${{ … }}` interpolations.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    raw: String,
}

/// A parse error inside an expression; `offset` is a byte offset into the expression/template text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    /// Byte offset of the reference inside the expression source.
    pub offset: usize,
}

impl Expr {
    pub fn parse(_src: &str) -> Result<Expr, ExprError> {
        todo!()
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn eval(&self, _ctx: &EvalContext) -> Result<Json, EvalError> {
        todo!()
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
        todo!()
    }
    pub fn references(&self) -> Vec<Reference> {
        todo!()
    }
}

impl Template {
    pub fn parse(_src: &str) -> Result<Template, ExprError> {
        todo!()
    }
    pub fn raw(&self) -> &str {
        &self.raw
    }
    /// True when the template has no `${{ }}`.
    pub fn is_literal(&self) -> bool {
        todo!()
    }
    /// A template that is exactly one `${{ expr }}` evaluates to that expression's value (any JSON
    /// type); otherwise the parts are rendered and concatenated into a string.
    pub fn eval(&self, _ctx: &EvalContext) -> Result<Json, EvalError> {
        todo!()
    }
    pub fn references(&self) -> Vec<Reference> {
        todo!()
    }
}
