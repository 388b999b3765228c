//! Recursive descent over the grammar in the module documentation, bounded by [`MAX_DEPTH`]
//! and [`MAX_HEIGHT`] so no input can exhaust the stack.

use serde_json::Value as Json;

use super::ast::{Accessor, CmpOp, FUNCTIONS, Kind, Node};
use super::lexer::{Lexer, Tok};
use super::{CONTEXTS, Expr, ExprError, MAX_DEPTH, MAX_HEIGHT};

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
                            end = self.tok_end;
                            accessors.push(Accessor::Filter(end));
                            self.bump()?;
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
                    self.bump()?;
                    if self.tok == Tok::Star {
                        self.bump()?;
                        end = self.expect(&Tok::RBracket, "`]`")?;
                        accessors.push(Accessor::Filter(end));
                        continue;
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

impl Expr {
    /// Parses `src[start..end]`, keeping offsets relative to `src`.
    pub(super) fn parse_range(src: &str, start: usize, end: usize) -> Result<Expr, ExprError> {
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
}
