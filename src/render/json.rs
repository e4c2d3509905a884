//! Text as the inside of a JSON string, escaped exactly as `serde_json` escapes it: the quote
//! and the backslash, and the control characters below U+0020 (`\b`, `\t`, `\n`, `\f`, `\r` by
//! name, the others as `\u00xx`), nothing else. Escaping goes character by character, so the
//! escaped pieces of a text, joined, are the escaped text: a campaign's message is escaped as it
//! is rendered, its literal text once for the whole campaign (`compiled.rs`), and the batch HTTP
//! body copies it (`actions/campaign/batch.rs`).

/// `text` escaped, appended to `out` (without the quotes around it). Eight bytes are checked at
/// once, and the text between the bytes to escape is copied in one piece.
pub fn escape(out: &mut Vec<u8>, text: &str) {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A high bit in each byte of `word` that is zero, and maybe in bytes above one that is:
    // none when no byte is, and the lowest is always a zero byte (the borrow runs upwards only).
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let bytes = text.as_bytes();
    out.reserve(bytes.len());
    let mut written = 0;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // Bytes below 0x20 (the same test, against 0x20 rather than 1), quotes and backslashes.
        let found = (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')));
        if found == 0 {
            at += 8;
            continue;
        }
        let hit = at + (found.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[written..hit]);
        escape_byte(out, bytes[hit]);
        written = hit + 1;
        at = hit + 1;
    }
    for (offset, &byte) in bytes[at..].iter().enumerate() {
        if byte < 0x20 || byte == b'"' || byte == b'\\' {
            out.extend_from_slice(&bytes[written..at + offset]);
            escape_byte(out, byte);
            written = at + offset + 1;
        }
    }
    out.extend_from_slice(&bytes[written..]);
}

/// A byte that JSON escapes (a control character, a quote or a backslash), escaped.
fn escape_byte(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_character_is_escaped_as_serde_json_escapes_it() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        texts.extend(["é", "\u{2028}", "\u{1F600}", "ü\"\\\u{1f}x"].map(str::to_string));
        for text in &texts {
            for offset in 0..9 {
                let padded = format!("{}{text}{}", "a".repeat(offset), "b".repeat(offset % 5));
                let expected = serde_json::to_string(&padded).unwrap();
                assert_eq!(format!("\"{}\"", escaped(&padded)), expected, "{padded:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn pieces_escaped_and_joined_are_the_text_escaped(pieces in proptest::collection::vec("\\PC*|[\\x00-\\x7f]{0,30}", 0..8)) {
            let mut joined = Vec::new();
            for piece in &pieces {
                escape(&mut joined, piece);
            }
            let whole = pieces.concat();
            proptest::prop_assert_eq!(format!("\"{}\"", String::from_utf8(joined).unwrap()), serde_json::to_string(&whole).unwrap());
        }
    }
}
