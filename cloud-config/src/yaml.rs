//! YAML with positions: a small tree built from `saphyr-parser`'s events,
//! where every node keeps the line and column it started at, so that every
//! diagnostic can point into the file.
//!
//! Scalars keep their text and whether they were quoted: YAML 1.2's core
//! schema resolves plain scalars only (`off` stays the string "off",
//! `0644` is the integer 644), and the cloud-config reader needs the digits
//! as written (permissions).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::Error;

/// A position in the file: line and column, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Pos {
    /// A position from a 1-based line and column.
    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Plain: resolved by the core schema (null, bool, int, float, string).
    Plain,
    /// `'…'` or `"…"`: always a string.
    Quoted,
    /// `|` or `>`: always a string. The node's position is that of the
    /// text's first line that is not empty.
    Block,
}

/// A node of the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it is.
    pub value: Value,
}

/// A node's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar with its text as written (after unescaping).
    Scalar {
        /// The text.
        text: String,
        /// How it was written.
        style: Style,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the file's order (duplicates kept: the reader reports them).
    Map(Vec<(Node, Node)>),
}

/// A plain scalar resolved by YAML 1.2's core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved<'a> {
    /// `~`, `null`, or nothing.
    Null,
    /// `true` or `false` (also capitalised or upper case).
    Bool(bool),
    /// A decimal, `0o` octal or `0x` hexadecimal integer.
    Int(i128),
    /// A floating-point number (`1.5`, `.inf`, `.nan`).
    Float,
    /// Anything else, and every quoted or block scalar.
    Str(&'a str),
}

impl Node {
    /// The scalar resolved by the core schema; `None` for a collection.
    pub fn resolve(&self) -> Option<Resolved<'_>> {
        match &self.value {
            Value::Scalar { text, style } => Some(if *style == Style::Plain {
                resolve_plain(text)
            } else {
                Resolved::Str(text)
            }),
            _ => None,
        }
    }

    /// What kind of node this is, for messages ("a mapping", "the integer 5").
    pub fn describe(&self) -> String {
        match (&self.value, self.resolve()) {
            (Value::Seq(_), _) => "a list".to_string(),
            (Value::Map(_), _) => "a mapping".to_string(),
            (_, Some(Resolved::Null)) => "nothing".to_string(),
            (_, Some(Resolved::Bool(b))) => format!("the boolean {b}"),
            (_, Some(Resolved::Int(_) | Resolved::Float)) => {
                format!("the number {}", self.text().unwrap_or_default())
            }
            (_, _) => "a string".to_string(),
        }
    }

    /// The text of a scalar, whatever it resolves to.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is a null (`~`, `null`, or an empty value).
    pub fn is_null(&self) -> bool {
        self.resolve() == Some(Resolved::Null)
    }
}

/// The core schema's resolution of a plain scalar (YAML 1.2, 10.3.2).
pub fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Resolved::Float,
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(o) = text.strip_prefix("0o")
        && digits(o, 8)
    {
        return i128::from_str_radix(o, 8).map_or(Resolved::Str(text), Resolved::Int);
    }
    if let Some(h) = text.strip_prefix("0x")
        && digits(h, 16)
    {
        return i128::from_str_radix(h, 16).map_or(Resolved::Str(text), Resolved::Int);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        return text.parse().map_or(Resolved::Str(text), Resolved::Int);
    }
    if is_float(unsigned) {
        return Resolved::Float;
    }
    Resolved::Str(text)
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit before the exponent.
fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = all(int) && all(frac) && (int.len() + frac.len()) > 0;
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all(e)
    });
    mantissa_ok && exp_ok && (mantissa.contains('.') || exp.is_some())
}

fn pos(span: &Span) -> Pos {
    Pos::new(span.start.line(), span.start.col() + 1)
}

/// A collection being built.
enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document into a tree. An empty stream is a null at 1:1.
/// Aliases are expanded (a copy of the anchored node); tags other than
/// `!!str` are ignored.
pub fn parse(text: &str) -> Result<Node, Error> {
    let mut parser = Parser::new_from_str(text).keep_tags(true);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Error::Yaml {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let done = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Error::Yaml {
                        line: span.start.line(),
                        column: span.start.col() + 1,
                        message: "a second YAML document: cloud-config is one document".into(),
                    });
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let forced_str = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let style = match style {
                    ScalarStyle::Plain if !forced_str => Style::Plain,
                    ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        Style::Quoted
                    }
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let node = Node {
                    pos: pos(&span),
                    value: Value::Scalar {
                        text: value.into_owned(),
                        style,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| Error::Yaml {
                    line: span.start.line(),
                    column: span.start.col() + 1,
                    message: "an alias to an unknown anchor".into(),
                })?;
                Some(Node {
                    pos: pos(&span),
                    ..node
                })
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Seq(pos(&span), anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Map(pos(&span), anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Open::Seq(p, a, items)) => (
                        Node {
                            pos: p,
                            value: Value::Seq(items),
                        },
                        a,
                    ),
                    Some(Open::Map(p, a, entries, _)) => (
                        Node {
                            pos: p,
                            value: Value::Map(entries),
                        },
                        a,
                    ),
                    None => continue,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => None,
        };
        if let Some(node) = done {
            match stack.last_mut() {
                Some(Open::Seq(_, _, items)) => items.push(node),
                Some(Open::Map(_, _, entries, key)) => match key.take() {
                    Some(k) => entries.push((k, node)),
                    None => *key = Some(node),
                },
                None => root = Some(node),
            }
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos::new(1, 1),
        value: Value::Scalar {
            text: String::new(),
            style: Style::Plain,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> Resolved<'_> {
        node.resolve().expect("a scalar")
    }

    #[test]
    fn core_schema() {
        assert_eq!(resolve_plain("off"), Resolved::Str("off"));
        assert_eq!(resolve_plain("yes"), Resolved::Str("yes"));
        assert_eq!(resolve_plain("true"), Resolved::Bool(true));
        assert_eq!(resolve_plain("FALSE"), Resolved::Bool(false));
        assert_eq!(resolve_plain("~"), Resolved::Null);
        assert_eq!(resolve_plain(""), Resolved::Null);
        assert_eq!(resolve_plain("0644"), Resolved::Int(644));
        assert_eq!(resolve_plain("0o644"), Resolved::Int(0o644));
        assert_eq!(resolve_plain("0x1F"), Resolved::Int(31));
        assert_eq!(resolve_plain("-3"), Resolved::Int(-3));
        assert_eq!(resolve_plain("1.5"), Resolved::Float);
        assert_eq!(resolve_plain("1e3"), Resolved::Float);
        assert_eq!(resolve_plain(".inf"), Resolved::Float);
        assert_eq!(resolve_plain("1h"), Resolved::Str("1h"));
        assert_eq!(resolve_plain("04:00"), Resolved::Str("04:00"));
        assert_eq!(resolve_plain("."), Resolved::Str("."));
        assert_eq!(resolve_plain("1.2.3"), Resolved::Str("1.2.3"));
    }

    #[test]
    fn positions_of_keys_and_values() {
        let root = parse("a: 1\nb:\n  - x\n  - 'y'\nc: |\n  text\n").expect("parses");
        let Value::Map(entries) = &root.value else {
            panic!("a map")
        };
        assert_eq!(entries[0].0.pos, Pos::new(1, 1));
        assert_eq!(entries[0].1.pos, Pos::new(1, 4));
        assert_eq!(scalar(&entries[0].1), Resolved::Int(1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("a list")
        };
        assert_eq!(items[1].pos, Pos::new(4, 5));
        assert_eq!(scalar(&items[1]), Resolved::Str("y"));
        assert_eq!(entries[2].1.text(), Some("text\n"));
        assert_eq!(
            entries[2].1.pos,
            Pos::new(6, 3),
            "a block scalar starts at its text"
        );
        let root = parse("c: |\n\n  text\n").expect("parses");
        let Value::Map(entries) = &root.value else {
            panic!("a map")
        };
        assert_eq!(
            entries[0].1.pos,
            Pos::new(3, 3),
            "at its first line that is not empty"
        );
        assert_eq!(entries[0].1.text(), Some("\ntext\n"));
    }

    #[test]
    fn quoted_and_tagged_stay_strings() {
        let root = parse("a: '0644'\nb: !!str 0644\nc: off\n").expect("parses");
        let Value::Map(entries) = &root.value else {
            panic!("a map")
        };
        assert_eq!(scalar(&entries[0].1), Resolved::Str("0644"));
        assert_eq!(scalar(&entries[1].1), Resolved::Str("0644"));
        assert_eq!(scalar(&entries[2].1), Resolved::Str("off"));
    }

    #[test]
    fn aliases_are_copies() {
        let root = parse("a: &k [1, 2]\nb: *k\n").expect("parses");
        let Value::Map(entries) = &root.value else {
            panic!("a map")
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
        assert_eq!(entries[1].1.pos, Pos::new(2, 4));
    }

    #[test]
    fn errors_have_positions() {
        let Err(Error::Yaml { line, .. }) = parse("a: 1\nb: [1, 2\n") else {
            panic!("an error")
        };
        assert!(line >= 2);
        assert!(matches!(
            parse("a: 1\n---\nb: 2\n"),
            Err(Error::Yaml { line: 2, .. })
        ));
    }

    #[test]
    fn empty_is_null() {
        assert!(parse("").expect("parses").is_null());
        assert!(parse("# only a comment\n").expect("parses").is_null());
    }
}
