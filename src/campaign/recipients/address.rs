//! The plain check of a recipient's address that reading a list makes.

use super::{MAX_ADDRESS_BYTES, MAX_LOCAL_PART_BYTES};

/// Whether an address can be sent to, by a deliberately plain check (not RFC 5322's grammar,
/// which accepts addresses no mail system takes): at most [`MAX_ADDRESS_BYTES`] bytes, no
/// whitespace or control characters, exactly one `@`, a part before it of 1 to
/// [`MAX_LOCAL_PART_BYTES`] bytes, and a domain of at least two dot-separated labels, none
/// empty. Non-ASCII letters are allowed (internationalised addresses).
pub fn check_address(address: &str) -> Result<(), &'static str> {
    if address.len() > MAX_ADDRESS_BYTES {
        return Err("longer than 254 bytes");
    }
    // ASCII's whitespace and control characters are the bytes up to the space, and DEL.
    let spaced = if address.is_ascii() {
        address.bytes().any(|byte| byte <= b' ' || byte == 0x7f)
    } else {
        address.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if spaced {
        return Err("contains a space or a control character");
    }
    let mut parts = address.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not exactly one `@`");
    };
    if local.is_empty() {
        return Err("nothing before the `@`");
    }
    if local.len() > MAX_LOCAL_PART_BYTES {
        return Err("more than 64 bytes before the `@`");
    }
    if !domain.contains('.') {
        return Err("the domain has no dot");
    }
    if domain.split('.').any(str::is_empty) {
        return Err("the domain has an empty label");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases = [
            ("a@b.example", Ok(())),
            ("first.last+tag@mail.b.example", Ok(())),
            ("zoë@bücher.example", Ok(())),
            ("a.example", Err("not exactly one `@`")),
            ("a@b@c.example", Err("not exactly one `@`")),
            ("@b.example", Err("nothing before the `@`")),
            ("a@localhost", Err("the domain has no dot")),
            ("a@", Err("the domain has no dot")),
            ("a@.example", Err("the domain has an empty label")),
            ("a@b.example.", Err("the domain has an empty label")),
            ("a@b..example", Err("the domain has an empty label")),
            ("a b@c.example", Err("contains a space or a control character")),
            ("a\u{7}b@c.example", Err("contains a space or a control character")),
            ("a@b.example\u{a0}", Err("contains a space or a control character")),
        ];
        for (address, expected) in cases {
            assert_eq!(check_address(address), expected, "{address:?}");
        }
        let local = "a".repeat(65);
        assert_eq!(check_address(&format!("{local}@b.example")), Err("more than 64 bytes before the `@`"));
        let domain = format!("{}.example", "d".repeat(250));
        assert_eq!(check_address(&format!("a@{domain}")), Err("longer than 254 bytes"));
        let longest = format!("a@{}.example", "d".repeat(244));
        assert_eq!((longest.len(), check_address(&longest)), (254, Ok(())));
        // Every ASCII character in an ASCII address is judged as in any other address.
        for byte in 0u8..=0x7f {
            let character = char::from(byte);
            let spaced = character.is_whitespace() || character.is_control();
            for address in [format!("a{character}b@c.example"), format!("a{character}b@c.example\u{e9}")] {
                let refused = check_address(&address) == Err("contains a space or a control character");
                assert_eq!(refused, spaced, "{address:?}");
            }
        }
    }
}
