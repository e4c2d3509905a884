//! A message part's text, encoded for email in one pass: as it is (7bit) when it can be, else
//! quoted-printable (RFC 2045 6.7), line breaks as CRLF. `email::compose` builds every message's
//! parts with it (lettre's own encoder cost several times as much, and a campaign encodes each
//! recipient's message).

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// The longest line a body part may have, its line break aside (RFC 2045 6.7, kept for 7bit too).
const LINE: usize = 76;

/// A part's text encoded for the message, in one pass, line breaks as CRLF: as it is (7bit) when
/// it is ASCII without control characters and no line is longer than [`LINE`]; otherwise
/// quoted-printable (RFC 2045 6.7), which keeps the message ASCII, so any relay takes it without
/// 8BITMIME. lettre would choose the same way, at several times the cost (a campaign's message is
/// encoded once per recipient).
pub fn body(text: &str) -> Body {
    let seven_bit = text.split('\n').all(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        line.len() <= LINE && line.bytes().all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
    });
    let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 2);
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        if seven_bit {
            out.extend_from_slice(line);
        } else {
            quoted_printable(line, &mut out);
        }
    }
    let encoding = if seven_bit { ContentTransferEncoding::SevenBit } else { ContentTransferEncoding::QuotedPrintable };
    Body::dangerous_pre_encoded(out, encoding)
}

/// One line (without its break) in quoted-printable: printable ASCII but `=` as it is, every other
/// byte as `=XX`, a space or tab at the end of the line too, and a soft break (`=` at the end of a
/// line) before an encoded line would pass [`LINE`] characters.
fn quoted_printable(line: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // What goes as it is: printable ASCII but `=`, and a space or tab unless it ends the line.
    let literal = |byte: u8| byte == b' ' || byte == b'\t' || ((b'!'..=b'~').contains(&byte) && byte != b'=');
    let mut column = 0;
    let mut index = 0;
    while index < line.len() {
        let mut run = line[index..].iter().position(|&byte| !literal(byte)).unwrap_or(line.len() - index);
        if index + run == line.len() && run > 0 && matches!(line[line.len() - 1], b' ' | b'\t') {
            run -= 1;
        }
        // A run of literal bytes, cut by soft breaks: what comes before a soft break's `=` has at
        // most LINE - 1 characters.
        let mut rest = &line[index..index + run];
        while !rest.is_empty() {
            if column == LINE - 1 {
                out.extend_from_slice(b"=\r\n");
                column = 0;
            }
            let take = rest.len().min(LINE - 1 - column);
            out.extend_from_slice(&rest[..take]);
            column += take;
            rest = &rest[take..];
        }
        index += run;
        if let Some(&byte) = line.get(index) {
            if column + 3 > LINE - 1 {
                out.extend_from_slice(b"=\r\n");
                column = 0;
            }
            out.extend_from_slice(&[b'=', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
            column += 3;
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_7bit_when_it_can_be_and_quoted_printable_otherwise() {
        use ContentTransferEncoding::{QuotedPrintable as Qp, SevenBit};
        let a = |count: usize| "a".repeat(count);
        // The text, its encoding, and the part's bytes as written by hand from RFC 2045 6.7.
        let table: Vec<(String, ContentTransferEncoding, String)> = vec![
            ("Tills are trading.\nx = y\tz".into(), SevenBit, "Tills are trading.\r\nx = y\tz".into()),
            ("crlf\r\nkept\r\n".into(), SevenBit, "crlf\r\nkept\r\n".into()),
            (a(76), SevenBit, a(76)),
            (a(77), Qp, format!("{}=\r\naa", a(75))),
            ("Caf\u{e9} = 5\u{20ac}".into(), Qp, "Caf=C3=A9 =3D 5=E2=82=AC".into()),
            // A space or tab ending a line is encoded, elsewhere not.
            ("\u{e9}nd \nt\t".into(), Qp, "=C3=A9nd=20\r\nt=09".into()),
            // An escape is never split by a soft break.
            (format!("{}\u{e9}", a(73)), Qp, format!("{}=\r\n=C3=A9", a(73))),
            // A lone carriage return is a control character.
            ("bare\rreturn".into(), Qp, "bare=0Dreturn".into()),
        ];
        for (text, encoding, expected) in table {
            let encoded = body(&text);
            assert_eq!(encoded.encoding(), encoding, "{text:?}");
            assert_eq!(String::from_utf8(encoded.into_vec()).unwrap(), expected, "{text:?}");
        }
    }
}
