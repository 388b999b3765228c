//! A YAML reader that keeps positions, and a serde `Deserializer` over its tree whose errors say
//! `line:col`.
//!
//! Why not `serde_yaml_ng` alone: it reports positions for syntax and type errors, but the
//! semantic checks of the ADC schema (routes xor stream_routes, nodes xor discovery, duplicate
//! names across files…) run after deserialisation and need the position of each resource too.
//! Reading into a positioned tree first gives one mechanism for all of them: every error raised
//! while deserialising a node carries the position of the innermost node it came from (an unknown
//! key points at the key), and [`Positioned<T>`] hands a resource's own position to the checks.
//!
//! `${NAME}` substitution happens here, per scalar, before the scalar's type is resolved: a plain
//! `port: ${PORT}` becomes the integer the variable holds, while a value can never inject YAML
//! structure (it stays inside its scalar). JSON is a subset of YAML 1.2, so `.json` files go
//! through the same reader.
//!
//! Cost: one pass over the text plus a tree the size of the document; aliases are cloned.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A resolved scalar (YAML 1.2 core schema).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

/// The content of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `text` is the scalar's text after `${}` substitution; keys and string targets use it.
    Scalar {
        text: String,
        value: Scalar,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// The entry of a mapping node by key text.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.key_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The `i`-th item of a sequence node.
    pub fn index(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    fn key_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A syntax, substitution or structure error while reading the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Environment values for `${NAME}` substitution.
pub type Env = BTreeMap<String, String>;

/// Parses one YAML (or JSON) document into a positioned tree, substituting `${NAME}` from `env`.
///
/// An empty document gives a null node. More than one document is an error: ADC reads one
/// configuration per file.
pub fn parse(text: &str, env: &Env) -> Result<Node, YamlError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        env,
        depth: 0,
        nodes: 0,
    };
    let mut root = None;
    loop {
        let (ev, span) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(YamlError {
                        pos: pos_of(&span),
                        message: "only one YAML document per file is supported; split the `---` documents into files"
                            .into(),
                    });
                }
                let (ev, span) = b.next()?;
                if matches!(ev, Event::DocumentEnd) {
                    root = Some(Node {
                        pos: pos_of(&span),
                        value: null_value(),
                    });
                } else {
                    root = Some(b.node(ev, span)?);
                }
            }
            Event::StreamEnd => break,
            _ => {
                return Err(YamlError {
                    pos: pos_of(&span),
                    message: "unexpected YAML event outside a document".into(),
                });
            }
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        value: null_value(),
    }))
}

fn null_value() -> Value {
    Value::Scalar {
        text: String::new(),
        value: Scalar::Null,
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line() as u32,
        col: span.start.col() as u32 + 1,
    }
}

/// Deeper nesting is refused: recursion on it could exhaust the guest's stack.
const MAX_DEPTH: usize = 128;
/// Nodes per document, aliases expanded: bounds "billion laughs" alias bombs.
const MAX_NODES: usize = 1_000_000;

struct Builder<'input, 'e> {
    parser: Parser<'input, StrInput<'input>>,
    /// Anchored nodes and their node counts.
    anchors: HashMap<usize, (Node, usize)>,
    env: &'e Env,
    depth: usize,
    nodes: usize,
}

impl<'input> Builder<'input, '_> {
    fn next(&mut self) -> Result<(Event<'input>, Span), YamlError> {
        match self.parser.next() {
            Some(Ok(x)) => Ok(x),
            Some(Err(e)) => Err(YamlError {
                pos: Pos {
                    line: e.marker().line() as u32,
                    col: e.marker().col() as u32 + 1,
                },
                message: e.info().to_string(),
            }),
            None => Err(YamlError {
                pos: Pos::default(),
                message: "unexpected end of YAML stream".into(),
            }),
        }
    }

    fn node(&mut self, ev: Event<'input>, span: Span) -> Result<Node, YamlError> {
        let nested = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        if nested {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(YamlError {
                    pos: pos_of(&span),
                    message: format!("nesting deeper than {MAX_DEPTH} levels"),
                });
            }
        }
        let r = self.node_inner(ev, span);
        if nested {
            self.depth -= 1;
        }
        let node = r?;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: node.pos,
                message: format!("more than {MAX_NODES} YAML nodes (aliases expanded)"),
            });
        }
        Ok(node)
    }

    fn node_inner(&mut self, ev: Event<'input>, span: Span) -> Result<Node, YamlError> {
        let pos = pos_of(&span);
        let first = self.nodes;
        self.nodes += 1;
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let text =
                    substitute(&text, self.env).map_err(|message| YamlError { pos, message })?;
                let value = resolve(&text, style, tag.as_deref())
                    .map_err(|message| YamlError { pos, message })?;
                (
                    Node {
                        pos,
                        value: Value::Scalar { text, value },
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span)?);
                }
                (
                    Node {
                        pos,
                        value: Value::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => (self.mapping(pos)?, anchor),
            Event::Alias(id) => {
                let Some((node, count)) = self.anchors.get(&id) else {
                    return Err(YamlError {
                        pos,
                        message: "alias refers to an unknown anchor".into(),
                    });
                };
                // count the copy before making it, so an alias bomb stops early
                self.nodes += count;
                if self.nodes > MAX_NODES {
                    return Err(YamlError {
                        pos,
                        message: format!("more than {MAX_NODES} YAML nodes (aliases expanded)"),
                    });
                }
                return Ok(node.clone());
            }
            _ => {
                return Err(YamlError {
                    pos,
                    message: "unexpected YAML event".into(),
                });
            }
        };
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), self.nodes - first));
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos) -> Result<Node, YamlError> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut merges: Vec<Node> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(ev, span)?;
            let (ev, span) = self.next()?;
            let value = self.node(ev, span)?;
            if is_merge {
                merges.push(value);
                continue;
            }
            let Some(k) = key.key_text() else {
                return Err(YamlError {
                    pos: key.pos,
                    message: "complex (non-scalar) mapping keys are not supported".into(),
                });
            };
            if let Some((first, _)) = entries.iter().find(|(e, _)| e.key_text() == Some(k)) {
                return Err(YamlError {
                    pos: key.pos,
                    message: format!("duplicate key `{k}` (first defined at {})", first.pos),
                });
            }
            entries.push((key, value));
        }
        // `<<: *base` merge keys: explicit keys win, earlier merge sources win over later ones.
        for m in merges {
            let sources = match m.value {
                Value::Map(_) => vec![m],
                Value::Seq(items) => items,
                _ => {
                    return Err(YamlError {
                        pos: m.pos,
                        message: "`<<` merge value must be a mapping or a list of mappings".into(),
                    });
                }
            };
            for src in sources {
                let Value::Map(src_entries) = src.value else {
                    return Err(YamlError {
                        pos: src.pos,
                        message: "`<<` merge value must be a mapping".into(),
                    });
                };
                for (k, v) in src_entries {
                    if !entries.iter().any(|(e, _)| e.key_text() == k.key_text()) {
                        entries.push((k, v));
                    }
                }
            }
        }
        Ok(Node {
            pos,
            value: Value::Map(entries),
        })
    }
}

/// Replaces `${NAME}` with `env[NAME]`; `\${` is a literal `${`.
///
/// Only identifier-like names (`[A-Za-z_][A-Za-z0-9_]*`) are substituted, so gateway variables
/// such as `${http_x.y}` pass through untouched. An identifier that is not in `env` is an error
/// rather than an empty string: a silently blank API key is worse than a failed sync.
pub fn substitute(text: &str, env: &Env) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'\\' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        if is_identifier(name) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "environment variable `{name}` is not set: add it to the step's `env:` input, or write `\\${{{name}}}` for a literal `${{{name}}}`"
                    ));
                }
            }
        } else {
            out.push_str(&rest[i..i + 2 + end + 1]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Scalar, String> {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Err(format!("unsupported YAML tag `{tag}`"));
        }
        return match tag.suffix.as_str() {
            "str" => Ok(Scalar::Str(text.to_string())),
            "null" => Ok(Scalar::Null),
            "bool" | "int" | "float" => match resolve_plain(text) {
                s @ (Scalar::Bool(_) | Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_)) => {
                    Ok(s)
                }
                _ => Err(format!("`{text}` is not a valid !!{}", tag.suffix)),
            },
            other => Err(format!("unsupported YAML tag `!!{other}` on a scalar")),
        };
    }
    Ok(match style {
        ScalarStyle::Plain => resolve_plain(text),
        _ => Scalar::Str(text.to_string()),
    })
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(v) = u64::from_str_radix(hex, 16)
    {
        return int_scalar(v);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(v) = u64::from_str_radix(oct, 8)
    {
        return int_scalar(v);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = text.parse::<i64>() {
            return Scalar::Int(v);
        }
        if let Ok(v) = text.strip_prefix('+').unwrap_or(text).parse::<u64>() {
            return Scalar::UInt(v);
        }
    }
    if looks_like_float(digits)
        && let Ok(v) = text.parse::<f64>()
    {
        return Scalar::Float(v);
    }
    Scalar::Str(text.to_string())
}

fn int_scalar(v: u64) -> Scalar {
    i64::try_from(v).map(Scalar::Int).unwrap_or(Scalar::UInt(v))
}

/// `( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )?` (sign already stripped).
fn looks_like_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exp_ok
}

// ---------------------------------------------------------------------------------------------
// serde

/// A deserialisation error and, when known, the position of the node it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeError {
    pub message: String,
    pub pos: Option<Pos>,
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            pos: None,
        }
    }
}

/// Deserialises `T` from a positioned node.
pub fn from_node<'de, T: Deserialize<'de>>(node: &Node) -> Result<T, DeError> {
    T::deserialize(node)
}

/// The name by which [`Positioned`] asks this module's deserializer for the node's position.
const POSITIONED: &str = "$__adc_yaml_positioned";

/// A value and the position of the YAML node it was read from.
///
/// Only this module's deserializer supplies positions; other deserializers fail on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Positioned<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> std::ops::Deref for Positioned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Positioned<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Positioned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positioned YAML node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let line: u32 = map
                    .next_entry::<String, u32>()?
                    .ok_or_else(|| de::Error::custom("no position"))?
                    .1;
                let col: u32 = map
                    .next_entry::<String, u32>()?
                    .ok_or_else(|| de::Error::custom("no position"))?
                    .1;
                let value: T = map
                    .next_entry::<String, T>()?
                    .ok_or_else(|| de::Error::custom("no value"))?
                    .1;
                Ok(Positioned {
                    pos: Pos { line, col },
                    value,
                })
            }
        }
        d.deserialize_struct(
            POSITIONED,
            &["line", "col", "value"],
            V(std::marker::PhantomData),
        )
    }
}

struct PosAccess<'a> {
    node: &'a Node,
    step: u8,
}

impl<'de> MapAccess<'de> for PosAccess<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.step {
            0 => "line",
            1 => "col",
            2 => "value",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let step = self.step;
        self.step += 1;
        match step {
            0 => seed.deserialize(self.node.pos.line.into_deserializer()),
            1 => seed.deserialize(self.node.pos.col.into_deserializer()),
            _ => seed.deserialize(self.node),
        }
    }
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(n) => seed.deserialize(n).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(KeyDe(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(v)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Keys are always read as their text (`200: x` gives the key `"200"`), as in JSON.
struct KeyDe<'a>(&'a Node);

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Scalar { text, .. } => v.visit_str(text).map_err(|e: DeError| e.at(self.0.pos)),
            _ => self.0.deserialize_any(v),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct EnumAcc<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = DeError;
    type Variant = &'a Node;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, &'a Node), DeError> {
        Ok((seed.deserialize(KeyDe(self.key))?, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for &Node {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        de::Deserialize::deserialize(self)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, v)
    }
}

macro_rules! coerce_number {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        // Numbers written as strings (`port: "8080"`) are accepted, as ADC's `z.coerce.number()` does.
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            if let Value::Scalar { value: Scalar::Str(s), .. } = &self.value {
                if let Ok(n) = s.trim().parse::<$ty>() {
                    return v.$visit(n).map_err(|e: DeError| e.at(self.pos));
                }
            }
            self.deserialize_any(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.value {
            Value::Scalar { value, .. } => match value {
                Scalar::Null => v.visit_unit(),
                Scalar::Bool(b) => v.visit_bool(*b),
                Scalar::Int(i) => v.visit_i64(*i),
                Scalar::UInt(u) => v.visit_u64(*u),
                Scalar::Float(f) => v.visit_f64(*f),
                Scalar::Str(s) => v.visit_str(s),
            },
            Value::Seq(items) => v.visit_seq(SeqAcc { iter: items.iter() }),
            Value::Map(entries) => v.visit_map(MapAcc {
                iter: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e: DeError| e.at(self.pos))
    }

    coerce_number! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_f32 => f32, visit_f32;
        deserialize_f64 => f64, visit_f64;
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        // A plain `version: 1.10` or `id: 42` is still a fine string; only null is refused.
        match &self.value {
            Value::Scalar { text, value } if *value != Scalar::Null => {
                v.visit_str(text).map_err(|e: DeError| e.at(self.pos))
            }
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Scalar {
                value: Scalar::Null,
                ..
            } => v.visit_none().map_err(|e: DeError| e.at(self.pos)),
            _ => v.visit_some(self).map_err(|e: DeError| e.at(self.pos)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
            .map_err(|e: DeError| e.at(self.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == POSITIONED {
            return v.visit_map(PosAccess {
                node: self,
                step: 0,
            });
        }
        self.deserialize_any(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.value {
            Value::Scalar { text, value } if *value != Scalar::Null => v.visit_enum(
                IntoDeserializer::<DeError>::into_deserializer(text.as_str()),
            ),
            Value::Map(entries) if entries.len() == 1 => v.visit_enum(EnumAcc {
                key: &entries[0].0,
                value: &entries[0].1,
            }),
            _ => Err(de::Error::custom(
                "expected a string (one of the allowed values)",
            )),
        };
        r.map_err(|e: DeError| e.at(self.pos))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 char bytes byte_buf unit unit_struct seq tuple tuple_struct map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        port: u16,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        items: Vec<Positioned<Item>>,
    }

    #[test]
    fn positions_of_items_and_unknown_keys() {
        let text = "items:\n  - name: a\n    port: 80\n  - name: b\n    prot: 81\n";
        let node = parse(text, &Env::new()).unwrap();
        let err = from_node::<Doc>(&node).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 5, col: 5 }), "{err}");
        assert!(err.message.contains("unknown field `prot`"), "{err}");

        let ok = parse("items:\n  - name: a\n    port: 80\n", &Env::new()).unwrap();
        let doc: Doc = from_node(&ok).unwrap();
        assert_eq!(doc.items[0].pos, Pos { line: 2, col: 5 });
        assert_eq!(
            doc.items[0].value,
            Item {
                name: "a".into(),
                port: 80,
                tags: vec![]
            }
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let node = parse("items:\n  - name: a\n    port: [1]\n", &Env::new()).unwrap();
        let err = from_node::<Doc>(&node).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 11 }), "{err}");
        let node = parse("items:\n  - name: a\n    port: 70000\n", &Env::new()).unwrap();
        let err = from_node::<Doc>(&node).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 11 }), "{err}");
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let node = parse("items:\n  - name: a\n", &Env::new()).unwrap();
        let err = from_node::<Doc>(&node).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 5 }));
        assert!(err.message.contains("missing field `port`"));
    }

    #[test]
    fn env_substitution_is_typed_per_scalar() {
        let e = env(&[("PORT", "8080"), ("NAME", "web: {x}")]);
        let node = parse("items:\n  - name: ${NAME}\n    port: ${PORT}\n", &e).unwrap();
        let doc: Doc = from_node(&node).unwrap();
        // the value cannot inject structure: it stays one scalar
        assert_eq!(doc.items[0].value.name, "web: {x}");
        assert_eq!(doc.items[0].value.port, 8080);
    }

    #[test]
    fn substitute_rules() {
        let e = env(&[("A", "1")]);
        assert_eq!(substitute("x${A}y", &e).unwrap(), "x1y");
        assert_eq!(substitute(r"\${A}", &e).unwrap(), "${A}");
        assert_eq!(substitute("${http_x.y}", &e).unwrap(), "${http_x.y}");
        assert_eq!(substitute("${unterminated", &e).unwrap(), "${unterminated");
        assert_eq!(substitute("${A}${A}", &e).unwrap(), "11");
        let err = substitute("${MISSING}", &e).unwrap_err();
        assert!(err.contains("`MISSING` is not set"), "{err}");
    }

    #[test]
    fn quoted_numbers_coerce_and_strings_accept_plain_numbers() {
        let node = parse("items:\n  - name: 42\n    port: \"81\"\n", &Env::new()).unwrap();
        let doc: Doc = from_node(&node).unwrap();
        assert_eq!(
            doc.items[0].value,
            Item {
                name: "42".into(),
                port: 81,
                tags: vec![]
            }
        );
    }

    #[test]
    fn json_is_read_with_positions() {
        let text = "{\n  \"items\": [\n    {\"name\": \"a\", \"port\": 1, \"bad\": true}\n  ]\n}\n";
        let err = from_node::<Doc>(&parse(text, &Env::new()).unwrap()).unwrap_err();
        assert_eq!(err.pos.unwrap().line, 3);
        assert!(err.message.contains("unknown field `bad`"));
    }

    #[test]
    fn scalars_resolve_per_core_schema() {
        let node = parse(
            "[1, -2, 0x1f, 1.5, .inf, true, ~, '1', abc, 1e3, 18446744073709551615]",
            &Env::new(),
        )
        .unwrap();
        let v: serde_json::Value = from_node(&node).unwrap();
        assert_eq!(v[0], 1);
        assert_eq!(v[1], -2);
        assert_eq!(v[2], 31);
        assert_eq!(v[3], 1.5);
        assert!(v[4].is_null(), "serde_json maps infinity to null");
        assert_eq!(v[5], true);
        assert!(v[6].is_null());
        assert_eq!(v[7], "1");
        assert_eq!(v[8], "abc");
        assert_eq!(v[9], 1000.0);
        assert_eq!(v[10], u64::MAX);
    }

    #[test]
    fn anchors_merge_keys_and_duplicates() {
        let text = "base: &b {port: 1, name: x}\nitems:\n  - <<: *b\n    name: y\n";
        let node = parse(text, &Env::new()).unwrap();
        let items: Vec<Item> = from_node(node.get("items").unwrap()).unwrap();
        assert_eq!(
            items[0],
            Item {
                name: "y".into(),
                port: 1,
                tags: vec![]
            }
        );

        let err = parse("a: 1\nb: 2\na: 3\n", &Env::new()).unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_and_multi_documents() {
        let err = parse("a: [1, 2\nb: 3\n", &Env::new()).unwrap_err();
        assert!(err.pos.line >= 1 && !err.message.is_empty());
        let err = parse("a: 1\n---\nb: 2\n", &Env::new()).unwrap_err();
        assert!(err.message.contains("one YAML document"));
        let empty = parse("", &Env::new()).unwrap();
        assert!(matches!(
            empty.value,
            Value::Scalar {
                value: Scalar::Null,
                ..
            }
        ));
    }

    #[test]
    fn nesting_and_alias_bombs_are_bounded() {
        let deep = "[".repeat(150) + &"]".repeat(150);
        let e = parse(&deep, &Env::new()).unwrap_err();
        assert!(e.message.contains("nesting deeper than 128"), "{e:?}");
        let deeper = "[".repeat(5000) + &"]".repeat(5000);
        assert!(
            parse(&deeper, &Env::new()).is_err(),
            "the parser's own limit"
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse(&bomb, &Env::new()).unwrap_err();
        assert!(err.message.contains("aliases expanded"), "{err:?}");
        // ordinary aliases are fine
        assert!(parse("a: &x [1, 2]\nb: *x\nc: *x\n", &Env::new()).is_ok());
    }

    #[test]
    fn enums_from_strings() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Http,
            Tcp,
        }
        let node = parse("[http, tcp, udp]", &Env::new()).unwrap();
        let err = from_node::<Vec<Kind>>(&node).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 1, col: 13 }));
        let node = parse("[http, tcp]", &Env::new()).unwrap();
        assert_eq!(
            from_node::<Vec<Kind>>(&node).unwrap(),
            vec![Kind::Http, Kind::Tcp]
        );
    }
}
