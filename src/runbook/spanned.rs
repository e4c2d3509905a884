//! Values that remember where they were written, and lists and tables that survive broken entries.
//!
//! These are the building blocks of the raw runbook types. They deserialize only from the
//! runbook's deserializer (`de.rs`), which answers the protocol this file defines: it hands a
//! [`Spanned`] its line and column and lets a [`List`] or [`Table`] skip an entry whose problem was
//! already reported. This file names nothing of `de.rs`; `de.rs` imports the protocol from here.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Serialize};

use super::diagnostic::Mark;

/// The struct name by which [`Spanned`] asks the deserializer for its position: the deserializer
/// answers a struct of this name with the line, the column and the value.
pub(super) const SPANNED: &str = "$phasegate::Spanned";
/// The message of an error the deserializer has already reported where it happened.
pub(super) const REPORTED: &str = "$phasegate::reported";

/// Whether an error was already reported where it happened (so callers drop the value quietly).
fn is_reported(error: &impl fmt::Display) -> bool {
    error.to_string() == REPORTED
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Spanned<T> {
    #[serde(skip)]
    pub mark: Mark,
    pub value: T,
}

impl<T> Spanned<T> {
    pub fn new(mark: Mark, value: T) -> Spanned<T> {
        Spanned { mark, value }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Spanned<T>, D::Error> {
        struct SpannedVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value with its position")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Spanned<T>, A::Error> {
                let missing = || de::Error::custom("spanned values come only from a runbook node");
                let line: u32 = seq.next_element()?.ok_or_else(missing)?;
                let column: u32 = seq.next_element()?.ok_or_else(missing)?;
                let value: T = seq.next_element()?.ok_or_else(missing)?;
                Ok(Spanned { mark: Mark::new(line, column), value })
            }
        }
        deserializer.deserialize_struct(SPANNED, &["line", "column", "value"], SpannedVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A list whose broken entries are reported and left out, so the others are still checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct List<T>(pub Vec<Spanned<T>>);

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List(Vec::new())
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [Spanned<T>];
    fn deref(&self) -> &[Spanned<T>] {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a Spanned<T>;
    type IntoIter = std::slice::Iter<'a, Spanned<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<List<T>, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                loop {
                    match seq.next_element::<Spanned<T>>() {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => return Ok(List(items)),
                        Err(error) if is_reported(&error) => continue,
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for List<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("List_of_{}", T::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "array", "items": generator.subschema_for::<T>() })
    }
}

/// A mapping from ids to values, in the order written; broken values are reported and left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table(Vec::new())
    }
}

impl<T> Table<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }
}

impl<T: Serialize> Serialize for Table<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(&key.value, value)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Table<T>, D::Error> {
        struct TableVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
            type Value = Table<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E>(self) -> Result<Table<T>, E> {
                Ok(Table(Vec::new()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Table<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    match map.next_value::<T>() {
                        Ok(value) => entries.push((key, value)),
                        Err(error) if is_reported(&error) => continue,
                        Err(error) => return Err(error),
                    }
                }
                Ok(Table(entries))
            }
        }
        deserializer.deserialize_any(TableVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for Table<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Table_of_{}", T::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object", "additionalProperties": generator.subschema_for::<T>() })
    }
}
