//! The compounds the JCS writer fills member by member: arrays, written in their order, and
//! objects, whose members are written into a buffer of their own and copied out sorted by key.

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{self, Error as _, Serialize};
use serde_json::Error;

use super::{Writer, string_into, utf16_order};

/// An array being written, its items in their order.
pub(super) struct Array<'t> {
    text: &'t mut Vec<u8>,
    first: bool,
    /// Inside `{"variant":`, closed with the array.
    in_variant: bool,
}

impl<'t> Array<'t> {
    /// After its `[`; `in_variant` when inside `{"variant":`.
    pub(super) fn new(text: &'t mut Vec<u8>, in_variant: bool) -> Array<'t> {
        text.push(b'[');
        Array { text, first: true, in_variant }
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !std::mem::take(&mut self.first) {
            self.text.push(b',');
        }
        value.serialize(Writer { text: &mut *self.text })
    }

    fn close(self) -> Result<(), Error> {
        self.text.push(b']');
        if self.in_variant {
            self.text.push(b'}');
        }
        Ok(())
    }
}

/// serde's four kinds of sequence, each written as an array.
macro_rules! arrays {
    ($($kind:ident::$add:ident),*) => {$(
        impl ser::$kind for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.item(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

arrays!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object being written: its members' values go one after another into `values`, and are
/// copied out sorted by key when it ends.
pub(super) struct Object<'t> {
    text: &'t mut Vec<u8>,
    values: Vec<u8>,
    members: Vec<(Cow<'static, str>, Range<usize>)>,
    /// A map's key, until its value comes.
    key: Option<String>,
    /// Inside `{"variant":`, closed with the object.
    in_variant: bool,
}

impl<'t> Object<'t> {
    pub(super) fn new(text: &'t mut Vec<u8>, len: usize, in_variant: bool) -> Object<'t> {
        Object { text, values: Vec::with_capacity(32 * len), members: Vec::with_capacity(len), key: None, in_variant }
    }

    fn member<T: Serialize + ?Sized>(&mut self, key: Cow<'static, str>, value: &T) -> Result<(), Error> {
        let start = self.values.len();
        value.serialize(Writer { text: &mut self.values })?;
        self.members.push((key, start..self.values.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), Error> {
        if self.members.iter().any(|(key, _)| key.chars().any(|c| c >= '\u{e000}')) {
            self.members.sort_unstable_by(|(a, _), (b, _)| utf16_order(a, b));
        } else {
            self.members.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        }
        if let Some(pair) = self.members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Error::custom(format!("an object has the key `{}` twice", pair[0].0)));
        }
        self.text.push(b'{');
        for (index, (key, value)) in self.members.iter().enumerate() {
            if index > 0 {
                self.text.push(b',');
            }
            string_into(self.text, key)?;
            self.text.push(b':');
            self.text.extend_from_slice(&self.values[value.clone()]);
        }
        self.text.push(b'}');
        if self.in_variant {
            self.text.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        // The key as JSON, then read back: only a string is a key, as `serde_json::to_value` has it.
        let mut text = Vec::new();
        key.serialize(Writer { text: &mut text })?;
        if text.first() != Some(&b'"') {
            return Err(Error::custom("a map's key must be a string"));
        }
        self.key = Some(serde_json::from_slice(&text)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self.key.take().ok_or_else(|| Error::custom("a map's value came before its key"))?;
        self.member(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A struct and a struct variant's fields, each written as an object's members.
macro_rules! structs {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Object<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
                self.member(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

structs!(SerializeStruct, SerializeStructVariant);
