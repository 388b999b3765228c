//! The type of an expression's value as far as it is known before the run, for static checks
//! (a `with:` value that is one `${{ }}` against the step's input schema).
//!
//! Inference is conservative: `None` (unknown) whenever the answer could depend on run-time
//! data, so a caller reporting mismatches never reports one that cannot happen.

use serde_json::Value as Json;

use super::Expr;
use super::ast::{Accessor, Func, Kind, Node};

/// A JSON type, with integers told apart from other numbers where that is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExprType {
    Null,
    Bool,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl ExprType {
    /// The type of a JSON Schema `type` name; `None` for names outside JSON Schema.
    pub(crate) fn from_schema_name(name: &str) -> Option<ExprType> {
        Some(match name {
            "null" => ExprType::Null,
            "boolean" => ExprType::Bool,
            "integer" => ExprType::Integer,
            "number" => ExprType::Number,
            "string" => ExprType::String,
            "array" => ExprType::Array,
            "object" => ExprType::Object,
            _ => return None,
        })
    }

    /// Whether a value of this type may satisfy JSON Schema `type: name`. Integers and numbers
    /// accept each other: a number declared by a schema or an input may well hold an integer.
    pub(crate) fn fits(self, name: &str) -> bool {
        match (self, ExprType::from_schema_name(name)) {
            (_, None) => true,
            (ExprType::Integer | ExprType::Number, Some(ExprType::Integer | ExprType::Number)) => {
                true
            }
            (a, Some(b)) => a == b,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            ExprType::Null => "null",
            ExprType::Bool => "a boolean",
            ExprType::Integer => "an integer",
            ExprType::Number => "a number",
            ExprType::String => "a string",
            ExprType::Array => "a list",
            ExprType::Object => "a mapping",
        }
    }
}

impl Expr {
    /// The type of the expression's value when it is known before the run. `path_type` answers
    /// for context references whose every step is a name or a literal index, given as the
    /// reference path (`["steps", "a", "outputs", "port"]`).
    pub(crate) fn static_type(
        &self,
        path_type: &dyn Fn(&[String]) -> Option<ExprType>,
    ) -> Option<ExprType> {
        node_type(&self.root, path_type)
    }
}

fn node_type(n: &Node, path_type: &dyn Fn(&[String]) -> Option<ExprType>) -> Option<ExprType> {
    match &n.kind {
        Kind::Lit(v) => Some(json_type(v)),
        Kind::Context(c) => path_type(&[(*c).to_owned()]),
        Kind::Path(base, acc) => {
            let Kind::Context(c) = base.kind else {
                return None;
            };
            let mut path = vec![c.to_owned()];
            for a in acc {
                match a {
                    Accessor::Prop(name, _) => path.push(name.clone()),
                    Accessor::Index(i, _) => match &i.kind {
                        Kind::Lit(Json::String(s)) => path.push(s.clone()),
                        Kind::Lit(Json::Number(num)) if num.is_u64() => path.push(num.to_string()),
                        // A computed index, or one evaluation would round: not worth guessing.
                        _ => return None,
                    },
                    // An object filter always gives a list.
                    Accessor::Filter(_) => return Some(ExprType::Array),
                }
            }
            path_type(&path)
        }
        Kind::Not(_) | Kind::Cmp(..) => Some(ExprType::Bool),
        // `&&` and `||` give one of their operands, so the type is known only when all agree.
        Kind::And(items) | Kind::Or(items) => {
            let (first, rest) = items.split_first()?;
            let first = node_type(first, path_type)?;
            rest.iter()
                .all(|i| node_type(i, path_type) == Some(first))
                .then_some(first)
        }
        Kind::Call(f, _) => match f {
            Func::Success
            | Func::Failure
            | Func::Always
            | Func::Cancelled
            | Func::Contains
            | Func::StartsWith
            | Func::EndsWith => Some(ExprType::Bool),
            Func::Format | Func::Join | Func::ToJson => Some(ExprType::String),
            Func::FromJson => None,
        },
    }
}

fn json_type(v: &Json) -> ExprType {
    match v {
        Json::Null => ExprType::Null,
        Json::Bool(_) => ExprType::Bool,
        Json::Number(n) if n.is_i64() || n.is_u64() => ExprType::Integer,
        Json::Number(_) => ExprType::Number,
        Json::String(_) => ExprType::String,
        Json::Array(_) => ExprType::Array,
        Json::Object(_) => ExprType::Object,
    }
}
