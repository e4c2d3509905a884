//! serde deserialization of the raw runbook types from a [`yaml::Node`] tree, collecting problems.
//!
//! The deserializer reports unknown keys itself (it knows each struct's fields) and carries on;
//! a value of the wrong type or a missing key fails the enclosing value, which is reported and
//! dropped at the nearest [`List`] or [`Table`], so one broken step does not hide the problems of
//! the next. [`Spanned`] values learn their line and column from the node they came from.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::diagnostic::{Code, Diagnostic, Mark};
use super::yaml::{Node, Value};
use crate::spelling::did_you_mean;

use super::spanned::{REPORTED, SPANNED};

#[cfg(doc)]
use super::spanned::{List, Spanned, Table};

/// Where problems go while a runbook is deserialized.
#[derive(Default)]
pub struct Sink {
    diagnostics: RefCell<Vec<Diagnostic>>,
    lossy: Cell<bool>,
}

impl Sink {
    pub fn push(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().push(diagnostic);
    }

    /// The problems found, and whether any value was dropped because of one.
    pub fn finish(self) -> (Vec<Diagnostic>, bool) {
        (self.diagnostics.into_inner(), self.lossy.get())
    }

    fn report(&self, error: Error, fallback: Mark) {
        if !error.reported {
            self.push(error.into_diagnostic(fallback));
        }
        self.lossy.set(true);
    }
}

/// Deserializes `T` from `node`; problems go to `sink`. `None` when the root value itself failed.
pub fn from_node<'de, T: Deserialize<'de>>(node: &Node, sink: &Sink) -> Option<T> {
    match T::deserialize(NodeDeserializer { node, sink }) {
        Ok(value) => Some(value),
        Err(error) => {
            sink.report(error, node.mark);
            None
        }
    }
}

/// A deserialization problem on its way to becoming a [`Diagnostic`].
#[derive(Debug)]
pub struct Error {
    code: Code,
    message: String,
    help: Option<String>,
    mark: Option<Mark>,
    reported: bool,
}

impl Error {
    fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), help: None, mark: None, reported: false }
    }

    fn at(mut self, mark: Mark) -> Error {
        self.mark.get_or_insert(mark);
        self
    }

    fn reported() -> Error {
        Error { reported: true, ..Error::new(Code::WrongType, REPORTED) }
    }

    fn into_diagnostic(self, fallback: Mark) -> Diagnostic {
        Diagnostic { code: self.code, mark: self.mark.unwrap_or(fallback), message: self.message, help: self.help }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error::new(Code::InvalidValue, message.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error::new(Code::WrongType, format!("expected {expected}, found {unexpected}"))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error::new(Code::InvalidValue, format!("expected {expected}, found {unexpected}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        let mut error = Error::new(Code::InvalidValue, format!("`{variant}` is not one of: {}", expected.join(", ")));
        if let Some(meant) = did_you_mean(variant, expected.iter().copied()) {
            error.help = Some(format!("did you mean `{meant}`?"));
        }
        error
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Error {
        let mut error = Error::new(Code::UnknownKey, format!("unknown key `{field}`"));
        error.help = Some(match did_you_mean(field, expected.iter().copied()) {
            Some(meant) => format!("did you mean `{meant}`?"),
            None => format!("expected one of: {}", expected.join(", ")),
        });
        error
    }

    fn missing_field(field: &'static str) -> Error {
        Error::new(Code::MissingKey, format!("missing required key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Error {
        Error::new(Code::DuplicateKey, format!("key `{field}` appears twice"))
    }
}

struct NodeDeserializer<'a> {
    node: &'a Node,
    sink: &'a Sink,
}

impl<'a> NodeDeserializer<'a> {
    fn wrong_type(&self, expected: &str) -> Error {
        Error::new(Code::WrongType, format!("expected {expected}, found {}", self.node.describe())).at(self.node.mark)
    }

    fn plain(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::Scalar { text, plain: true } => Some(text),
            _ => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mark = self.node.mark;
        let text = self.plain().ok_or_else(|| self.wrong_type("a whole number"))?;
        let result = if let Ok(number) = text.parse::<i64>() {
            visitor.visit_i64(number)
        } else if let Ok(number) = text.parse::<u64>() {
            visitor.visit_u64(number)
        } else {
            return Err(self.wrong_type("a whole number"));
        };
        result.map_err(|e: Error| e.at(mark))
    }
}

fn resolve_plain<'de, V: Visitor<'de>>(text: &str, visitor: V) -> Result<V::Value, Error> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => visitor.visit_unit(),
        "true" | "True" | "TRUE" => visitor.visit_bool(true),
        "false" | "False" | "FALSE" => visitor.visit_bool(false),
        _ => {
            if let Ok(number) = text.parse::<i64>() {
                visitor.visit_i64(number)
            } else if let Ok(number) = text.parse::<u64>() {
                visitor.visit_u64(number)
            } else if let Some(number) =
                text.parse::<f64>().ok().filter(|n| n.is_finite() && !text.starts_with(['i', 'I', 'n', 'N', '+']))
            {
                visitor.visit_f64(number)
            } else {
                visitor.visit_str(text)
            }
        }
    }
}

macro_rules! forward_integers {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.integer(visitor)
        })*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDeserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mark = self.node.mark;
        let result = match &self.node.value {
            Value::Scalar { text, plain: true } => resolve_plain(text, visitor),
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), sink: self.sink }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                sink: self.sink,
            }),
        };
        result.map_err(|e: Error| e.at(mark))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.plain() {
            Some("true" | "True" | "TRUE") => visitor.visit_bool(true),
            Some("false" | "False" | "FALSE") => visitor.visit_bool(false),
            _ => Err(self.wrong_type("`true` or `false`")),
        }
    }

    forward_integers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.plain().and_then(|text| text.parse::<f64>().ok()).filter(|n| n.is_finite()) {
            Some(number) => visitor.visit_f64(number),
            None => Err(self.wrong_type("a number")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar { text, .. } if !self.node.is_null() => {
                visitor.visit_str(text).map_err(|e: Error| e.at(self.node.mark))
            }
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self.wrong_type("a string"))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() { visitor.visit_unit() } else { Err(self.wrong_type("nothing")) }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Seq(items) => {
                visitor.visit_seq(SeqAccess { items: items.iter(), sink: self.sink }).map_err(|e| e.at(self.node.mark))
            }
            // A single value stands for a list of one: `needs: contain` is `needs: [contain]`.
            Value::Scalar { .. } if !self.node.is_null() => visitor
                .visit_seq(SeqAccess { items: std::slice::from_ref(self.node).iter(), sink: self.sink })
                .map_err(|e| e.at(self.node.mark)),
            _ => Err(self.wrong_type("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapAccess {
                    entries: entries.iter().collect::<Vec<_>>().into_iter(),
                    value: None,
                    sink: self.sink,
                })
                .map_err(|e| e.at(self.node.mark)),
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED {
            return visitor.visit_seq(SpannedAccess { node: self.node, sink: self.sink, position: 0 });
        }
        let empty = Vec::new();
        let entries = match &self.node.value {
            Value::Map(entries) => entries,
            _ if self.node.is_null() => &empty,
            _ => return Err(self.wrong_type("a mapping")),
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = match &entry.0.value {
                Value::Scalar { text, .. } => text.as_str(),
                _ => "",
            };
            if fields.contains(&key) {
                known.push(entry);
            } else {
                let mut diagnostic = Diagnostic::new(Code::UnknownKey, entry.0.mark, format!("unknown key `{key}`"));
                diagnostic.help = Some(match did_you_mean(key, fields.iter().copied()) {
                    Some(meant) => format!("did you mean `{meant}`?"),
                    None => format!("expected one of: {}", fields.join(", ")),
                });
                self.sink.push(diagnostic);
            }
        }
        visitor.visit_map(MapAccess { entries: known.into_iter(), value: None, sink: self.sink }).map_err(
            |mut error| {
                if error.code == Code::MissingKey && error.mark.is_none() {
                    error.message = format!("{} is {}", noun(name), error.message);
                }
                error.at(self.node.mark)
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar { text, .. } if !self.node.is_null() => {
                visitor.visit_enum(text.as_str().into_deserializer()).map_err(|e: Error| e.at(self.node.mark))
            }
            _ => Err(self.wrong_type("one of the names listed in the documentation")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// A struct's name as words for messages: `TriggerStart` is `trigger start`.
fn noun(name: &str) -> String {
    let mut words = String::new();
    for character in name.chars() {
        if character.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.extend(character.to_lowercase());
    }
    words
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    sink: &'a Sink,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => seed.deserialize(NodeDeserializer { node, sink: self.sink }).map(Some).map_err(|error| {
                // Report the problem where it happened; a List skips the element and goes on.
                self.sink.report(error, node.mark);
                Error::reported()
            }),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::vec::IntoIter<&'a (Node, Node)>,
    value: Option<&'a Node>,
    sink: &'a Sink,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDeserializer { node: key, sink: self.sink }).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self.value.take().ok_or_else(|| Error::new(Code::YamlSyntax, "value without a key"))?;
        seed.deserialize(NodeDeserializer { node, sink: self.sink }).map_err(|error| {
            self.sink.report(error, node.mark);
            Error::reported()
        })
    }
}

/// Hands a [`Spanned`] its line, its column, then its value.
struct SpannedAccess<'a> {
    node: &'a Node,
    sink: &'a Sink,
    position: u8,
}

impl<'de, 'a> de::SeqAccess<'de> for SpannedAccess<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.position += 1;
        match self.position {
            1 => seed.deserialize(self.node.mark.line.into_deserializer()).map(Some),
            2 => seed.deserialize(self.node.mark.column.into_deserializer()).map(Some),
            3 => seed.deserialize(NodeDeserializer { node: self.node, sink: self.sink }).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::spanned::{List, Spanned, Table};
    use crate::runbook::yaml::{Limits, parse};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: Spanned<String>,
        #[serde(default)]
        count: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: List<Item>,
        #[serde(default)]
        named: Table<Item>,
    }

    fn run(text: &str) -> (Option<Doc>, Vec<(Code, u32, u32)>, bool) {
        let (node, diagnostics) = parse(text, Limits::default());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let sink = Sink::default();
        let doc = from_node::<Doc>(&node.unwrap(), &sink);
        let (diagnostics, lossy) = sink.finish();
        (doc, diagnostics.into_iter().map(|d| (d.code, d.mark.line, d.mark.column)).collect(), lossy)
    }

    #[test]
    fn every_broken_entry_is_reported() {
        let (doc, problems, lossy) = run(
            "items:\n  - id: a\n    cuont: 2\n  - count: 3\n  - id: c\n    count: many\n  - id: d\nnamed:\n  x: { id: [1] }\n",
        );
        assert_eq!(
            problems,
            vec![
                (Code::UnknownKey, 3, 5),
                (Code::MissingKey, 4, 5),
                (Code::WrongType, 6, 12),
                (Code::WrongType, 9, 12)
            ]
        );
        assert!(lossy);
        let ids: Vec<String> = doc.unwrap().items.iter().map(|item| item.id.value.clone()).collect();
        assert_eq!(ids, ["a", "d"]);
    }

    #[test]
    fn spans_and_hints() {
        let (doc, problems, lossy) = run("items:\n  - id: a\n    cuont: 2\n");
        assert_eq!(problems, vec![(Code::UnknownKey, 3, 5)]);
        assert!(!lossy);
        assert_eq!(doc.unwrap().items[0].id.mark, Mark::new(2, 9));
    }
}
