//! Evaluation of a syntax tree against an [`EvalContext`], and the loose conversions and
//! comparisons of GitHub Actions expressions.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value as Json;

use super::ast::{Accessor, CmpOp, Kind, Node};
use super::functions::call;
use super::{EvalContext, EvalError, Expr};

static NULL: Json = Json::Null;

/// What an object filter reaches: an object's values, a list's items, nothing in a scalar.
fn members(v: &Json) -> Box<dyn Iterator<Item = &Json> + '_> {
    match v {
        Json::Object(m) => Box::new(m.values()),
        Json::Array(items) => Box::new(items.iter()),
        _ => Box::new(std::iter::empty()),
    }
}

pub(super) fn eval<'a>(n: &Node, ctx: &'a EvalContext) -> Result<Cow<'a, Json>, EvalError> {
    Ok(match &n.kind {
        Kind::Lit(v) => Cow::Owned(v.clone()),
        Kind::Context(c) => Cow::Borrowed(ctx.data.get(*c).unwrap_or(&NULL)),
        Kind::Path(base, acc) => {
            let mut cur = eval(base, ctx)?;
            // After an object filter `cur` is a list and each accessor applies to its items.
            let mut filtered = false;
            for a in acc {
                cur = match (a, filtered) {
                    (Accessor::Prop(name, _), false) => child(cur, |v| match v {
                        Json::Object(m) => m.get(name.as_str()),
                        _ => None,
                    }),
                    (Accessor::Index(i, _), false) => {
                        let idx = eval(i, ctx)?;
                        index(cur, &idx)
                    }
                    (Accessor::Filter(_), false) => {
                        filtered = true;
                        Cow::Owned(Json::Array(members(&cur).cloned().collect()))
                    }
                    (Accessor::Filter(_), true) => Cow::Owned(Json::Array(
                        members(&cur).flat_map(members).cloned().collect(),
                    )),
                    (Accessor::Prop(name, _), true) => Cow::Owned(Json::Array(
                        members(&cur)
                            .filter_map(|v| v.get(name.as_str()))
                            .cloned()
                            .collect(),
                    )),
                    (Accessor::Index(i, _), true) => {
                        let idx = eval(i, ctx)?;
                        let items: Vec<Json> = members(&cur)
                            .map(|v| index(Cow::Borrowed(v), &idx).into_owned())
                            .filter(|v| !v.is_null())
                            .collect();
                        Cow::Owned(Json::Array(items))
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

pub(super) fn lower(s: &str) -> String {
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
/// lists and objects by deep equality under these same rules, element by element (GitHub
/// compares them by identity, which JSON values lack): `[1.0, 'A'] == [1, 'a']`.
pub fn loose_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x == y || lower(x) == lower(y),
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loose_eq(a, b))
        }
        // Keys as written (an object's keys are names, not text compared by `==`).
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
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
