//! Reading only a JSON line's id and address, for planning: the rest of the line is checked as
//! `serde_json::Value` would check it, and dropped.

use serde_json::Value;

/// Reads a JSON object's id and address values, skipping the rest (checked as a `Value` would
/// be, with [`Skip`]). Anything else than an object is an error. A key given twice counts by its
/// last value, as in a `Map`.
pub(super) struct Probe<'a> {
    pub(super) id_field: &'a str,
    pub(super) address_field: &'a str,
}

enum Key {
    Id,
    Address,
    Other,
}

struct KeySeed<'a>(&'a Probe<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == self.0.id_field {
            Key::Id
        } else if key == self.0.address_field {
            Key::Address
        } else {
            Key::Other
        })
    }
}

/// Reads any JSON value and keeps nothing. Not `serde::de::IgnoredAny`, which lets strings with
/// a lone surrogate escape through: this reads values exactly as `Value` does, so a line that
/// passes when planning passes again when its batch is read whole.
struct Skip;

impl<'de> serde::de::DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Probe<'_> {
    type Value = (Option<Value>, Option<Value>);

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Probe<'_> {
    type Value = (Option<Value>, Option<Value>);

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut id, mut address) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed(&self))? {
            match key {
                Key::Id => id = Some(map.next_value::<Value>()?),
                Key::Address => address = Some(map.next_value::<Value>()?),
                Key::Other => map.next_value_seed(Skip)?,
            }
        }
        Ok((id, address))
    }
}
