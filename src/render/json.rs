//! Text escaped for a JSON string, as `serde_json` escapes it: the quote and the backslash, and
//! the control characters below U+0020 (`\b`, `\t`, `\n`, `\f`, `\r` by name, the others as
//! `\u00xx`), nothing else. The batch HTTP channel's bodies are JSON (`actions::campaign::batch`),
//! and a campaign's renderer writes its messages straight into that form
//! ([`super::campaign::Renderer::render_parts`]): the template's literal text escaped once per
//! campaign, only what each recipient brings escaped per message.

/// `text` escaped for a JSON string (without the quotes around it), appended to `out`. Eight
/// bytes are checked at once, and the text between the bytes to escape is copied in one piece.
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

/// `text` as a JSON string, quotes included, appended to `out`.
pub fn string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    escape(out, text);
    out.push(b'"');
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
        _ => {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(text: &str) -> Vec<u8> {
        serde_json::to_vec(text).unwrap()
    }

    #[test]
    fn every_character_at_every_offset_is_escaped_as_serde_json_escapes_it() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        texts.extend(["é", "\u{2028}", "\u{1F600}", "ü\"\\\u{1f}x"].map(str::to_string));
        for text in &texts {
            for offset in 0..17 {
                let padded = format!("{}{text}{}", "a".repeat(offset), "b".repeat(offset % 5));
                let mut out = Vec::new();
                string(&mut out, &padded);
                assert_eq!(out, serde(&padded), "{padded:?}");
            }
        }
        let all = texts.concat();
        let mut out = b"kept".to_vec();
        escape(&mut out, &all);
        let quoted = serde(&all);
        assert_eq!(out[4..], quoted[1..quoted.len() - 1]);
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_escapes_it(text in "\\PC*", control in "[\\x00-\\x7f]{0,40}") {
            for text in [text, control] {
                let mut out = Vec::new();
                string(&mut out, &text);
                proptest::prop_assert_eq!(out, serde(&text));
            }
        }
    }
}
