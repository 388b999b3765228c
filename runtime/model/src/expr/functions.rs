//! The built-in functions (`contains`, `format`, `toJSON` …) and the status functions.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::ast::{Func, Node};
use super::eval::{eval, loose_eq, lower, to_str};
use super::{EvalContext, EvalError};

pub(super) fn call(f: Func, args: &[Node], ctx: &EvalContext) -> Result<Json, EvalError> {
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
