//! The syntax tree of an expression, and the walks over it that do not evaluate.

use serde_json::Value as Json;

use super::Reference;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Node {
    /// Byte offset in the expression source.
    pub(super) offset: usize,
    /// Byte offset just past the node's text.
    pub(super) end: usize,
    pub(super) height: u32,
    pub(super) kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
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
pub(super) enum Accessor {
    /// `.name`; `end` is the byte offset after the name.
    Prop(String, usize),
    /// `[expr]`; `end` is the byte offset after `]`.
    Index(Node, usize),
    /// `.*` or `[*]`, an object filter as in GitHub Actions: the values of an object (or the
    /// items of a list) as a list; the accessors after it apply to each item, and a second
    /// filter flattens one level. `end` is the byte offset after `*` (or `]`).
    Filter(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
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
pub(super) const FUNCTIONS: [(&str, Func, usize, usize); 11] = [
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
    pub(super) fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }
}

/// Moves every offset of a tree parsed inside a larger text so it is relative to `base`.
pub(super) fn shift(mut n: Node, base: usize) -> Node {
    fn go(n: &mut Node, base: usize) {
        n.offset -= base;
        n.end -= base;
        match &mut n.kind {
            Kind::Lit(_) | Kind::Context(_) => {}
            Kind::Path(b, acc) => {
                go(b, base);
                for a in acc {
                    match a {
                        Accessor::Prop(_, e) | Accessor::Filter(e) => *e -= base,
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

pub(super) fn walk(n: &Node, f: &mut dyn FnMut(&Node)) {
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

pub(super) fn collect_refs(n: &Node, out: &mut Vec<Reference>) {
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
                        Accessor::Filter(_) => break,
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
