//! The usual JSON line of a recipient list, read without serde_json: one flat object whose keys
//! and strings hold no escape and no control character, and whose values are strings, unsigned
//! integers of up to 19 digits, `true`, `false` or `null`. A campaign reads every line of its
//! list twice (once to plan, once to send its batch), and serde_json's general reader cost more
//! than rendering the message.
//!
//! Anything else (an escape, a negative or fractional number, a nested value, a syntax error)
//! gives `None`, and the caller reads the line with serde_json as before: where this gives a
//! value, it is the value `serde_json::from_slice::<Value>` gives (a key given twice counts by
//! its last value, as in a `Map`), which a property test holds it to.

use serde_json::{Map, Value};

/// A value of the usual kind, borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plain<'a> {
    Str(&'a str),
    Unsigned(u64),
    Bool(bool),
    Null,
}

impl Plain<'_> {
    pub(super) fn value(self) -> Value {
        match self {
            Plain::Str(text) => Value::String(text.to_string()),
            Plain::Unsigned(number) => Value::from(number),
            Plain::Bool(b) => Value::Bool(b),
            Plain::Null => Value::Null,
        }
    }
}

/// The line's object, when it is of the usual kind.
pub(super) fn object(line: &[u8]) -> Option<Map<String, Value>> {
    let mut fields = Map::new();
    members(line, |key, value| {
        fields.insert(key.to_string(), value.value());
    })?;
    Some(fields)
}

/// The values of the line's `id_field` and `address_field` (each the last given, if any), when
/// the line is of the usual kind: what `recipients::probe` reads, without the rest.
pub(super) fn probe(line: &[u8], id_field: &str, address_field: &str) -> Option<(Option<Value>, Option<Value>)> {
    let (mut id, mut address) = (None, None);
    members(line, |key, value| {
        if key == id_field {
            id = Some(value);
        } else if key == address_field {
            address = Some(value);
        }
    })?;
    Some((id.map(Plain::value), address.map(Plain::value)))
}

/// Calls `each` with the line's members in order; `None` (maybe after some calls) when the line
/// is not of the usual kind.
fn members<'a>(line: &'a [u8], mut each: impl FnMut(&'a str, Plain<'a>)) -> Option<()> {
    // Valid as a whole, every part between two ASCII delimiters is valid too; and a non-ASCII
    // byte outside a string is a syntax error, left to serde_json.
    let text = std::str::from_utf8(line).ok()?;
    let bytes = text.as_bytes();
    let mut at = space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return (space(bytes, at + 1) == bytes.len()).then_some(());
    }
    loop {
        let (key, next) = string(text, at)?;
        at = space(bytes, next);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = space(bytes, at + 1);
        let (value, next) = value(text, at)?;
        each(key, value);
        at = space(bytes, next);
        match bytes.get(at) {
            Some(b',') => at = space(bytes, at + 1),
            Some(b'}') => return (space(bytes, at + 1) == bytes.len()).then_some(()),
            _ => return None,
        }
    }
}

/// The first byte at or after `at` that is not JSON's whitespace.
fn space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The string that starts at `at`, and where it ends; `None` unless it is a string without an
/// escape or a control character.
fn string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let end = special(bytes, at + 1);
    (bytes.get(end) == Some(&b'"')).then(|| (&text[at + 1..end], end + 1))
}

/// The value that starts at `at`, and where it ends, when it is of the usual kind. A number is
/// only its digits: what follows it is the caller's to check (a `.`, an `e` or a 20th digit is
/// neither a comma nor the object's end).
fn value(text: &str, at: usize) -> Option<(Plain<'_>, usize)> {
    let bytes = text.as_bytes();
    let literal = |word: &[u8], value: Plain<'static>| {
        bytes.get(at..at + word.len()).filter(|found| *found == word).map(|_| (value, at + word.len()))
    };
    match *bytes.get(at)? {
        b'"' => string(text, at).map(|(text, end)| (Plain::Str(text), end)),
        b't' => literal(b"true", Plain::Bool(true)),
        b'f' => literal(b"false", Plain::Bool(false)),
        b'n' => literal(b"null", Plain::Null),
        b'0' => Some((Plain::Unsigned(0), at + 1)),
        b'1'..=b'9' => {
            let mut number = 0u64;
            let mut end = at;
            // 19 digits always fit in a u64.
            while let Some(digit @ b'0'..=b'9') = bytes.get(end).copied()
                && end - at < 19
            {
                number = number * 10 + u64::from(digit - b'0');
                end += 1;
            }
            Some((Plain::Unsigned(number), end))
        }
        _ => None,
    }
}

/// The first byte at or after `at` that is a quote, a backslash or a control character (or the
/// end), eight bytes at a time.
fn special(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A high bit in each byte of `word` that is zero, and maybe in bytes above one that is:
    // none when no byte is, and the lowest is always a zero byte (the borrow runs upwards only).
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let found = (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..].iter().position(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\').unwrap_or(bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What serde_json reads from the line, as this module would give it.
    fn serdes(line: &[u8]) -> Option<Map<String, Value>> {
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(fields)) => Some(fields),
            _ => None,
        }
    }

    #[test]
    fn the_usual_line_is_read_and_anything_else_left_to_serde_json() {
        let table: &[(&str, bool)] = &[
            (
                r#"{"member_id": "M1000001", "email": "ben.1@example.com", "first_name": "Chloé", "offer_points": 500}"#,
                true,
            ),
            (r#" { } "#, true),
            ("{}", true),
            ("\t{\"a\"\r:\n\"b\" ,\"c\":true,\"d\":false,\"e\":null,\"f\":0,\"g\":1234567890123456789}\t", true),
            (r#"{"a": 1, "a": "again"}"#, true),
            (r#"{"": ""}"#, true),
            (r#"{"a": "\u00e9"}"#, false),
            (r#"{"a": "tab\there"}"#, false),
            ("{\"a\": \"raw\ttab\"}", false),
            (r#"{"a": 12345678901234567890}"#, false),
            (r#"{"a": 18446744073709551616}"#, false),
            (r#"{"a": -1}"#, false),
            (r#"{"a": 1.5}"#, false),
            (r#"{"a": 1e3}"#, false),
            (r#"{"a": 01}"#, false),
            (r#"{"a": [1]}"#, false),
            (r#"{"a": {"b": 1}}"#, false),
            (r#"{"a": tru}"#, false),
            (r#"{"a": true "b": 1}"#, false),
            (r#"{"a": 1,}"#, false),
            (r#"{"a" 1}"#, false),
            (r#"{"a": 1} x"#, false),
            (r#"{"a": 1"#, false),
            (r#"{"a": "unterminated}"#, false),
            (r#"["a"]"#, false),
            ("", false),
            ("\u{feff}{}", false),
        ];
        for (line, usual) in table {
            let read = object(line.as_bytes());
            assert_eq!(read.is_some(), *usual, "{line}");
            if read.is_some() {
                assert_eq!(read, serdes(line.as_bytes()), "{line}");
            }
        }
        assert_eq!(object(b"{\"a\": \"\xff\"}"), None);
    }

    #[test]
    fn a_probe_reads_the_last_id_and_address() {
        let line = br#"{"id": 7, "email": "a@b.c", "x": "y", "id": "M-1"}"#;
        assert_eq!(probe(line, "id", "email"), Some((Some(Value::from("M-1")), Some(Value::from("a@b.c")))));
        assert_eq!(probe(line, "nothing", "x"), Some((None, Some(Value::from("y")))));
        assert_eq!(probe(br#"{"id": -7}"#, "id", "email"), None);
    }

    proptest::proptest! {
        #[test]
        fn what_is_read_is_what_serde_json_reads(
            members in proptest::collection::vec(
                (
                    "[a-z\"\\\\é\\x00-\\x1f]{0,4}",
                    proptest::prop_oneof![
                        "[ -~é€\\x00-\\x1f]{0,12}".prop_map(|text| serde_json::to_string(&text).unwrap()),
                        proptest::prelude::any::<u64>().prop_map(|n| n.to_string()),
                        proptest::prelude::any::<i64>().prop_map(|n| n.to_string()),
                        proptest::prelude::Just("0".to_string()),
                        proptest::prelude::Just("true".to_string()),
                        proptest::prelude::Just("null".to_string()),
                        proptest::prelude::Just("1.5".to_string()),
                        proptest::prelude::Just("[]".to_string()),
                        "[ -~]{0,6}",
                    ],
                    "[ \\t]{0,2}",
                ),
                0..6,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let inner: Vec<String> = members
                .iter()
                .map(|(key, value, space)| format!("{}{space}:{space}{value}", serde_json::to_string(key).unwrap()))
                .collect();
            let line = format!("{{{}}}", inner.join(","));
            let read = object(line.as_bytes());
            if read.is_some() {
                prop_assert_eq!(&read, &serdes(line.as_bytes()), "{}", line);
            }
            // Cut anywhere: never read where serde_json refuses.
            let cut = &line.as_bytes()[..cut.index(line.len() + 1)];
            if let Some(read) = object(cut) {
                prop_assert_eq!(Some(read), serdes(cut), "{:?}", String::from_utf8_lossy(cut));
            }
        }
    }
}
