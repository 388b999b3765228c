//! A spanned YAML tree built from saphyr-parser events.
//!
//! Only what a workflow needs: one document, mappings, sequences and scalars resolved with the
//! YAML 1.2 core schema (so `on:` is a string, not a boolean as in YAML 1.1). Anchors and aliases
//! work; aliases are expanded by copy under a node budget so an "alias bomb" cannot exhaust memory.
//! Cost: one pass over the events; memory proportional to the number of nodes.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diag::Diagnostic;
use crate::source::SourceMap;
use crate::span::Span;

/// Deepest nesting of mappings and sequences accepted.
pub(crate) const MAX_NESTING: usize = 64;
/// Most nodes a document may have after expanding aliases.
pub(crate) const MAX_NODES: usize = 200_000;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) kind: NodeKind,
}

#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// A string, with whether it was written plain (unquoted, not a block scalar).
    Str(String, bool),
}

impl Node {
    /// `a mapping`, `a list`, `a string` …, for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar(Scalar::Null) => "nothing (null)",
            NodeKind::Scalar(Scalar::Bool(_)) => "a boolean",
            NodeKind::Scalar(Scalar::Number(_)) => "a number",
            NodeKind::Scalar(Scalar::Str(..)) => "a string",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Scalar(Scalar::Null))
    }

    /// The text of a scalar as written (numbers and booleans as text too); `None` for
    /// collections and null.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str(s, _)) => Some(s.clone()),
            NodeKind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            NodeKind::Scalar(Scalar::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(_) => 1,
            NodeKind::Seq(v) => 1 + v.iter().map(Node::count).sum::<usize>(),
            NodeKind::Map(v) => 1 + v.iter().map(|(k, v)| k.count() + v.count()).sum::<usize>(),
        }
    }
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// The byte offset of the first tab in a line's leading whitespace, if any.
fn indenting_tab(text: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if let Some(i) = line[..indent].find('\t') {
            return Some(at + i);
        }
        at += line.len();
    }
    None
}

/// Parses `text` into one document tree. Errors (syntax, more than one document, limits) come back
/// as diagnostics; the first syntax error ends parsing since the parser cannot resume.
pub(crate) fn parse(file: &str, map: &SourceMap<'_>) -> Result<Option<Node>, Vec<Diagnostic>> {
    let mut parser = Parser::new_from_str(map.text());
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    let err = |span: Span, msg: String| vec![Diagnostic::error(file, span, msg)];

    while let Some(ev) = parser.next_event() {
        let (event, yspan) = match ev {
            Ok(e) => e,
            Err(e) => {
                // A tab in indentation is the usual cause of "found a tab", which the scanner
                // reports where it noticed (often the line before): point at the tab itself.
                if let Some(tab) = indenting_tab(map.text()) {
                    let line = map.text()[..tab].matches('\n').count() + 1;
                    return Err(err(
                        map.span(tab, tab + 1),
                        format!(
                            "YAML syntax error: a tab indents line {line}; YAML indents with spaces only — replace the tab with spaces ({})",
                            e.info()
                        ),
                    ));
                }
                let m = e.marker();
                let b = map.byte_of_char(m.index());
                let span = map.span(b, b);
                return Err(err(span, format!("YAML syntax error: {}", e.info())));
            }
        };
        let span = map.span_of_chars(yspan.start.index(), yspan.end.index());
        let done: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        span,
                        "more than one YAML document (`---`): a workflow file holds exactly one"
                            .into(),
                    ));
                }
                None
            }
            Event::Alias(id) => {
                let Some(node) = anchors.get(&id) else {
                    return Err(err(span, "alias to an unknown anchor".into()));
                };
                nodes += node.count();
                if nodes > MAX_NODES {
                    return Err(err(
                        span,
                        format!(
                            "document has more than {MAX_NODES} values after expanding aliases"
                        ),
                    ));
                }
                Some((node.clone(), 0))
            }
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                let forced_str = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let scalar = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&value)
                } else {
                    Scalar::Str(value.into_owned(), false)
                };
                Some((
                    Node {
                        span,
                        kind: NodeKind::Scalar(scalar),
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                nodes += 1;
                stack.push(Frame::Seq {
                    start: span.offset,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                nodes += 1;
                stack.push(Frame::Map {
                    start: span.offset,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    start,
                    anchor,
                    items,
                }) => Some((
                    Node {
                        span: collection_span(map, start, &items.iter().collect::<Vec<_>>(), span),
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )),
                _ => return Err(err(span, "YAML syntax error: unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    start,
                    anchor,
                    entries,
                    ..
                }) => {
                    let last: Vec<&Node> = entries.iter().map(|(_, v)| v).collect();
                    Some((
                        Node {
                            span: collection_span(map, start, &last, span),
                            kind: NodeKind::Map(entries),
                        },
                        anchor,
                    ))
                }
                _ => return Err(err(span, "YAML syntax error: unbalanced mapping".into())),
            },
        };
        if stack.len() > MAX_NESTING {
            return Err(err(
                span,
                format!("values nest more than {MAX_NESTING} levels deep"),
            ));
        }
        if nodes > MAX_NODES {
            return Err(err(
                span,
                format!("document has more than {MAX_NODES} values"),
            ));
        }
        let Some((node, anchor)) = done else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                // A plain `<<` key is YAML 1.1's merge key: not part of YAML 1.2, and taken as
                // a key named `<<` it was reported as an unknown key far from the cause.
                None if matches!(&node.kind, NodeKind::Scalar(Scalar::Str(k, true)) if k == "<<") =>
                {
                    return Err(err(
                        node.span,
                        "merge keys (`<<: *anchor`) are not supported (YAML 1.2 has none): write the keys out, or alias a whole value (`key: *anchor`)".into(),
                    ));
                }
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

/// A collection's span: from its start to the end of its last child (the parser's end marker of
/// a block collection sits at the next token, often lines later).
fn collection_span(map: &SourceMap<'_>, start: usize, children: &[&Node], end_event: Span) -> Span {
    let end = match children.last() {
        Some(c) => c.span.offset + c.span.len,
        None => end_event.offset + end_event.len,
    };
    map.span(start, end.max(start))
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return Scalar::Number(n);
    }
    if is_core_float(s)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Scalar::Number(n);
    }
    Scalar::Str(s.to_owned(), true)
}

fn parse_int(s: &str) -> Option<serde_json::Number> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && (neg || s.starts_with('+')) {
        return None;
    }
    let v = i128::from_str_radix(body, radix).ok()?;
    let v = if neg { -v } else { v };
    if let Ok(i) = i64::try_from(v) {
        Some(i.into())
    } else {
        u64::try_from(v).ok().map(Into::into)
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?` (no `.inf`/`.nan`: JSON
/// cannot hold them, so they stay strings).
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        let map = SourceMap::new(text);
        parse("t.yaml", &map).unwrap().unwrap()
    }

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        n.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .unwrap()
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let t = tree(
            "a: 1\nb: -2.5\nc: true\nd: ~\ne: on\nf: '1'\ng: 0x1F\nh: yes\ni: 1e3\nj: .inf\nk: !!str 5\n",
        );
        let s = |k: &str| match &get(&t, k).kind {
            NodeKind::Scalar(s) => s.clone(),
            _ => panic!(),
        };
        assert_eq!(s("a"), Scalar::Number(1.into()));
        assert_eq!(
            s("b"),
            Scalar::Number(serde_json::Number::from_f64(-2.5).unwrap())
        );
        assert_eq!(s("c"), Scalar::Bool(true));
        assert_eq!(s("d"), Scalar::Null);
        assert_eq!(s("e"), Scalar::Str("on".into(), true));
        assert_eq!(s("f"), Scalar::Str("1".into(), false));
        assert_eq!(s("g"), Scalar::Number(31.into()));
        assert_eq!(s("h"), Scalar::Str("yes".into(), true));
        assert!(matches!(s("i"), Scalar::Number(_)));
        assert_eq!(s("j"), Scalar::Str(".inf".into(), true));
        assert_eq!(s("k"), Scalar::Str("5".into(), false));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "name: x\nsteps:\n  - id: é\n    uses: \"hello\"\n";
        let t = tree(text);
        let steps = get(&t, "steps");
        assert_eq!((steps.span.line, steps.span.col), (3, 3));
        let NodeKind::Seq(items) = &steps.kind else {
            panic!()
        };
        let (k, v) = &items[0].as_map().unwrap()[1];
        assert_eq!((k.span.line, k.span.col, k.span.len), (4, 5, 4));
        assert_eq!((v.span.line, v.span.col), (4, 11));
        assert_eq!(
            &text[v.span.offset..v.span.offset + v.span.len],
            "\"hello\""
        );
        let (_, id) = &items[0].as_map().unwrap()[0];
        assert_eq!(&text[id.span.offset..id.span.offset + id.span.len], "é");
        // A block mapping ends at its last value, not at the next line.
        assert_eq!(items[0].span.offset + items[0].span.len, text.len() - 1);
    }

    #[test]
    fn aliases_are_expanded() {
        let t = tree("a: &x {b: 1}\nc: *x\n");
        assert!(get(&t, "c").as_map().is_some());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let map = SourceMap::new(&text);
        let e = parse("t", &map).unwrap_err();
        assert!(e[0].message.contains("after expanding aliases"), "{}", e[0]);
    }

    #[test]
    fn errors() {
        let text = "a: [1, 2\nb: 3\n";
        let map = SourceMap::new(text);
        let e = parse("t", &map).unwrap_err();
        assert!(
            e[0].message.starts_with("YAML syntax error"),
            "{}",
            e[0].message
        );
        let map = SourceMap::new("a: 1\n---\nb: 2\n");
        assert!(
            parse("t", &map).unwrap_err()[0]
                .message
                .contains("more than one YAML document")
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        let map = SourceMap::new(&deep);
        assert!(
            parse("t", &map).unwrap_err()[0]
                .message
                .contains("nest more than")
        );
        let map = SourceMap::new("");
        assert!(parse("t", &map).unwrap().is_none());
    }
}
