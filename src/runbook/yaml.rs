//! YAML text to a tree of nodes that remember where they were written.
//!
//! serde's YAML deserializers report the position of the first error only, and a runbook author
//! needs every problem with its line and column. So the text is parsed into this small tree first,
//! with limits that stop hostile input (deep nesting, alias bombs) early, and the raw runbook types
//! are deserialized from the tree by [`super::de`].

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::diagnostic::{Code, Diagnostic, Mark};

/// How much structure a runbook may have before it is refused as hostile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes in the tree, counting every node an alias copies.
    pub max_nodes: usize,
    /// Most bytes of scalar text in the tree, counting the text an alias copies: a few aliases of
    /// one long string would otherwise take gigabytes while staying under `max_nodes`.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_depth: 48, max_nodes: 200_000, max_text: 16 * 1024 * 1024 }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `null`, `~` and an empty plain value, as YAML 1.2's core schema says.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for messages: "a mapping", "a sequence", "the string `x`".
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
            Value::Scalar { .. } if self.is_null() => "nothing (null)".to_string(),
            Value::Scalar { text, plain } => {
                let shown: String = text.chars().take(40).collect();
                let ellipsis = if text.chars().count() > 40 { "..." } else { "" };
                if *plain && (text == "true" || text == "false") {
                    format!("the boolean `{shown}`")
                } else if *plain && text.parse::<f64>().is_ok() {
                    format!("the number `{shown}`")
                } else {
                    format!("the string `{shown}{ellipsis}`")
                }
            }
        }
    }

    /// How many nodes the tree has, and how many bytes of scalar text.
    fn size(&self) -> Size {
        match &self.value {
            Value::Scalar { text, .. } => Size { nodes: 1, text: text.len() },
            Value::Seq(items) => items.iter().fold(Size { nodes: 1, text: 0 }, |size, item| size.add(item.size())),
            Value::Map(entries) => {
                entries.iter().fold(Size { nodes: 1, text: 0 }, |size, (k, v)| size.add(k.size()).add(v.size()))
            }
        }
    }
}

/// What a tree costs to hold, counted against [`Limits`] as the tree is built.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text: usize,
}

impl Size {
    fn add(self, other: Size) -> Size {
        Size { nodes: self.nodes.saturating_add(other.nodes), text: self.text.saturating_add(other.text) }
    }
}

fn mark_of(span: &Span) -> Mark {
    let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
    let column = u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX);
    Mark::new(line, column)
}

enum Frame {
    Seq { mark: Mark, anchor: usize, items: Vec<Node> },
    Map { mark: Mark, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node>, seen: HashMap<String, Mark> },
}

/// Parses one YAML document. Duplicate keys are reported but do not stop the parse (the first
/// occurrence is kept); anything else that is wrong stops it with a single diagnostic.
pub fn parse(text: &str, limits: Limits) -> (Option<Node>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    match build(text, limits, &mut diagnostics) {
        Ok(node) => (node, diagnostics),
        Err(fatal) => {
            diagnostics.push(fatal);
            (None, diagnostics)
        }
    }
}

fn build(text: &str, limits: Limits, diagnostics: &mut Vec<Diagnostic>) -> Result<Option<Node>, Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut documents = 0usize;
    let mut size = Size::default();
    let mut root: Option<Node> = None;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| {
            let marker = error.marker();
            let mark = Mark::new(
                u32::try_from(marker.line()).unwrap_or(u32::MAX),
                u32::try_from(marker.col() + 1).unwrap_or(u32::MAX),
            );
            // The scanner reads flow collections ahead of the events, so it meets very deep `[[[...`
            // before the depth limit below does: it is the same problem, with the same code.
            if error.info() == "recursion limit exceeded" {
                return Diagnostic::new(
                    Code::YamlTooComplex,
                    mark,
                    format!("the YAML nests deeper than {} levels", limits.max_depth),
                );
            }
            Diagnostic::new(Code::YamlSyntax, mark, format!("YAML syntax error: {}", error.info()))
        })?;
        let mark = mark_of(&span);
        let complete = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::new(
                        Code::YamlUnsupported,
                        mark,
                        "a runbook file holds one YAML document, this is a second one",
                    )
                    .with_help("put each runbook in a file of its own"));
                }
                continue;
            }
            Event::Alias(anchor) => {
                let target = anchors.get(&anchor).ok_or_else(|| {
                    Diagnostic::new(Code::YamlSyntax, mark, "alias refers to an anchor that is not defined before it")
                })?;
                // Count before copying, so that an alias bomb is refused before it takes memory.
                size = size.add(target.size());
                check_size(size, limits, mark)?;
                Node { mark, value: target.value.clone() }
            }
            Event::Scalar(text, style, anchor, tag) => {
                refuse_tag(tag.is_some(), mark)?;
                size = size.add(Size { nodes: 1, text: text.len() });
                let node =
                    Node { mark, value: Value::Scalar { text: text.into_owned(), plain: style == ScalarStyle::Plain } };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_tag(tag.is_some(), mark)?;
                size.nodes += 1;
                if stack.len() >= limits.max_depth {
                    return Err(Diagnostic::new(
                        Code::YamlTooComplex,
                        mark,
                        format!("the YAML nests deeper than {} levels", limits.max_depth),
                    ));
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { mark, anchor, items: Vec::new() }
                } else {
                    Frame::Map { mark, anchor, entries: Vec::new(), key: None, seen: HashMap::new() }
                };
                stack.push(frame);
                check_size(size, limits, mark)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq { mark, anchor, items }) => (Node { mark, value: Value::Seq(items) }, anchor),
                    Some(Frame::Map { mark, anchor, entries, .. }) => {
                        (Node { mark, value: Value::Map(entries) }, anchor)
                    }
                    None => return Err(Diagnostic::new(Code::YamlSyntax, mark, "unbalanced end of a collection")),
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
        };
        check_size(size, limits, mark)?;
        match stack.last_mut() {
            None => root = Some(complete),
            Some(Frame::Seq { items, .. }) => items.push(complete),
            Some(Frame::Map { entries, key, seen, .. }) => match key.take() {
                None => *key = Some(complete),
                Some(key_node) => {
                    let key_text = match &key_node.value {
                        Value::Scalar { text, .. } => text.clone(),
                        _ => {
                            return Err(Diagnostic::new(
                                Code::YamlUnsupported,
                                key_node.mark,
                                "mapping keys in a runbook are plain strings, not lists or mappings",
                            ));
                        }
                    };
                    if let Some(first) = seen.get(&key_text) {
                        diagnostics.push(
                            Diagnostic::new(
                                Code::DuplicateKey,
                                key_node.mark,
                                format!("key `{key_text}` appears twice in this mapping"),
                            )
                            .with_help(format!(
                                "the first `{key_text}` is at line {}, column {}; the first one is used",
                                first.line, first.column
                            )),
                        );
                    } else {
                        seen.insert(key_text, key_node.mark);
                        entries.push((key_node, complete));
                    }
                }
            },
        }
    }
    Ok(root)
}

fn refuse_tag(tagged: bool, mark: Mark) -> Result<(), Diagnostic> {
    if tagged {
        return Err(Diagnostic::new(Code::YamlUnsupported, mark, "YAML tags (`!name`) are not used in runbooks")
            .with_help("remove the tag; write the value plainly"));
    }
    Ok(())
}

fn check_size(size: Size, limits: Limits, mark: Mark) -> Result<(), Diagnostic> {
    if size.nodes > limits.max_nodes {
        return Err(Diagnostic::new(
            Code::YamlTooComplex,
            mark,
            format!("the YAML has more than {} nodes once aliases are expanded", limits.max_nodes),
        )
        .with_help("a runbook this large is refused so that an alias bomb cannot exhaust memory"));
    }
    if size.text > limits.max_text {
        return Err(Diagnostic::new(
            Code::YamlTooComplex,
            mark,
            format!("the YAML has more than {} bytes of text once aliases are expanded", limits.max_text),
        )
        .with_help("a runbook this large is refused so that an alias bomb cannot exhaust memory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(Code, u32, u32)> {
        let limits = Limits { max_depth: 8, max_nodes: 1000, max_text: 1000 };
        parse(text, limits).1.into_iter().map(|d| (d.code, d.mark.line, d.mark.column)).collect()
    }

    #[test]
    fn marks_are_one_based() {
        let (node, diagnostics) = parse("a:\n  b: [1, 2]\n", Limits::default());
        assert!(diagnostics.is_empty());
        let Value::Map(entries) = node.unwrap().value else { panic!("root is not a map") };
        let Value::Map(inner) = &entries[0].1.value else { panic!("a is not a map") };
        assert_eq!(inner[0].0.mark, Mark::new(2, 3));
        assert_eq!(inner[0].1.mark, Mark::new(2, 6));
    }

    #[test]
    fn refusals() {
        type Expected = Vec<(Code, u32, u32)>;
        let table: &[(&str, Expected)] = &[
            ("a: 1\na: 2\n", vec![(Code::DuplicateKey, 2, 1)]),
            ("a: [1\n", vec![(Code::YamlSyntax, 2, 1)]),
            ("a: 1\n---\nb: 2\n", vec![(Code::YamlUnsupported, 2, 1)]),
            ("a: !custom 1\n", vec![(Code::YamlUnsupported, 1, 4)]),
            ("a: [[[[[[[[[[1]]]]]]]]]]\n", vec![(Code::YamlTooComplex, 1, 11)]),
            ("a: *nothing\n", vec![(Code::YamlSyntax, 1, 4)]),
        ];
        for (text, expected) in table {
            assert_eq!(&problems(text), expected, "for {text:?}");
        }
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = level - 1;
            text.push_str(&format!("a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"));
        }
        let codes: Vec<Code> = problems(&text).into_iter().map(|p| p.0).collect();
        assert_eq!(codes, vec![Code::YamlTooComplex]);
    }
}
