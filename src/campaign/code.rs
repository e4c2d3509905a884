//! Offer codes: a personal code for each recipient of a campaign (a gift card, a points
//! voucher), derived from a secret key, so the same recipient gets the same code after any
//! crash and nobody without the key can work out another's.
//!
//! A code is HMAC-SHA256 under the key of a domain-separated message (a label, the length, the
//! campaign and the recipient id, each of the last two prefixed by its length), whose first
//! `5 × length` bits are written in Crockford's base 32 (`0-9 A-Z` without `I L O U`), then one
//! check character, in groups of at most five for reading: `XXXXX-XXXXX-C` for the default
//! length of 10, `XXXX-XXXX-XXXX-C` for 12.
//!
//! The check character is not Crockford's mod-37 symbol, which needs five more symbols
//! (`* ~ $ = U`) that people misread and mistype; it is a weighted sum in GF(32), the field of 32
//! elements, so it stays in the same 32 characters. Reading the characters as field elements
//! `d₁ … dₙ` and the check as `dₙ₊₁`, a code is valid when `(n+1) + Σ αⁱ·dᵢ = 0` for
//! `i = 1 … n+1`, with `α` a primitive element (`x` modulo `x⁵ + x² + 1`) and the count `n+1`
//! (at most 17) read as a field element, so that a `0` added at the end is caught too. Changing one character changes the
//! sum by `αⁱ·e ≠ 0`; swapping two adjacent different characters `a, b` changes it by
//! `(a − b)(αⁱ − αⁱ⁺¹) ≠ 0`, because the weights `αⁱ` are distinct for up to 31 positions. So
//! every single substitution and every adjacent transposition is caught, the check character's
//! own included.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Crockford's base 32 symbols, by value.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters before the check character.
pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 16;
pub const DEFAULT_LENGTH: usize = 10;
/// A key shorter than this would make codes guessable.
pub const MIN_KEY_BYTES: usize = 16;

const GROUP: usize = 5;
const LABEL: &[u8] = b"phasegate offer code v1\0";
/// `x⁵ + x² + 1`, a primitive polynomial over GF(2).
const MODULUS: u8 = 0b10_0101;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("an offer code has {MIN_LENGTH} to {MAX_LENGTH} characters before its check character, not {0}")]
    Length(usize),
    #[error("an offer code key needs at least {MIN_KEY_BYTES} bytes, not {0}")]
    Key(usize),
}

/// The offer code of `recipient` in `campaign`: `length` characters and a check character,
/// with dashes between groups of five.
pub fn derive(key: &[u8], campaign: &str, recipient: &str, length: usize) -> Result<String, Error> {
    Ok(Deriver::new(key, length)?.derive(campaign, recipient))
}

/// Derives many codes under one key and length: the key is taken into the HMAC once, not for
/// every recipient. Gives what [`derive`] gives.
#[derive(Clone)]
pub struct Deriver {
    keyed: Hmac<Sha256>,
    length: usize,
}

impl Deriver {
    /// Fails as [`derive`] does for a length or key it refuses.
    pub fn new(key: &[u8], length: usize) -> Result<Deriver, Error> {
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(Error::Length(length));
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(Error::Key(key.len()));
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        Ok(Deriver { keyed, length })
    }

    /// The offer code of `recipient` in `campaign`.
    pub fn derive(&self, campaign: &str, recipient: &str) -> String {
        let length = self.length;
        let mut mac = self.keyed.clone();
        mac.update(LABEL);
        mac.update(&[length as u8]);
        for part in [campaign, recipient] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let bits = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        let mut values = [0u8; MAX_LENGTH + 1];
        for (index, value) in values[..length].iter_mut().enumerate() {
            *value = ((bits >> (123 - 5 * index)) & 31) as u8;
        }
        values[length] = check_value(&values[..length]);
        // As few groups of at most five as the length needs, as even as can be, longer ones first:
        // 10 is 5-5, 12 is 4-4-4, 13 is 5-4-4, 16 is 4-4-4-4.
        let groups = length.div_ceil(GROUP);
        let mut code = String::with_capacity(length + groups + 1);
        let mut characters = values[..length].iter().map(|&value| ALPHABET[value as usize] as char);
        for group in 0..groups {
            let size = length / groups + usize::from(group < length % groups);
            code.extend(characters.by_ref().take(size));
            code.push('-');
        }
        code.push(ALPHABET[values[length] as usize] as char);
        code
    }
}

/// Whether `code` is well formed with a right check character. Case and dashes do not matter,
/// and `I` and `L` are read as `1`, `O` as `0`, as Crockford's base 32 reads them.
pub fn check(code: &str) -> bool {
    let mut values = Vec::with_capacity(MAX_LENGTH + 1);
    for character in code.chars() {
        if character == '-' {
            continue;
        }
        let Some(value) = value_of(character) else { return false };
        if values.len() > MAX_LENGTH {
            return false;
        }
        values.push(value);
    }
    (MIN_LENGTH + 1..=MAX_LENGTH + 1).contains(&values.len()) && weighted_sum(&values) == 0
}

fn value_of(character: char) -> Option<u8> {
    match character.to_ascii_uppercase() {
        'I' | 'L' => Some(1),
        'O' => Some(0),
        upper => ALPHABET.iter().position(|&symbol| symbol as char == upper).map(|value| value as u8),
    }
}

/// Product in GF(32).
fn multiply(mut left: u8, mut right: u8) -> u8 {
    let mut product = 0;
    while right != 0 {
        if right & 1 != 0 {
            product ^= left;
        }
        right >>= 1;
        left <<= 1;
        if left & 0b10_0000 != 0 {
            left ^= MODULUS;
        }
    }
    product
}

/// `L + Σ αⁱ·vᵢ` for `i = 1 … L`, in GF(32) (where adding is exclusive or), `L` being the
/// number of values (at most 17, so a field element of its own).
fn weighted_sum(values: &[u8]) -> u8 {
    let mut weight = 1;
    let mut sum = values.len() as u8;
    for &value in values {
        weight = multiply(weight, 2);
        sum ^= multiply(weight, value);
    }
    sum
}

/// The check value that makes the weighted sum of `values` and it zero: `S / αⁿ⁺¹`, where `S`
/// is the sum over the values with the length term of `n + 1` values (in a field of
/// characteristic 2, minus is plus).
fn check_value(values: &[u8]) -> u8 {
    let sum = weighted_sum(values) ^ values.len() as u8 ^ (values.len() + 1) as u8;
    let mut weight = 1;
    for _ in 0..=values.len() {
        weight = multiply(weight, 2);
    }
    // The inverse of `w` is `w³⁰`, since `w³¹ = 1` for every nonzero `w`.
    let mut inverse = 1;
    for _ in 0..30 {
        inverse = multiply(inverse, weight);
    }
    multiply(sum, inverse)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const CAMPAIGN: &str = "inc-1/notify-customers/send-apology";

    #[test]
    fn stable_vectors() {
        let cases: &[(&[u8], &str, &str, usize, &str)] = &[
            (KEY, CAMPAIGN, "1000001", 10, "MEBBG-VD55J-M"),
            (KEY, CAMPAIGN, "1000002", 10, "H2P7V-K1H22-T"),
            (KEY, CAMPAIGN, "1000001", 8, "28TN-A8AF-2"),
            (KEY, CAMPAIGN, "1000001", 16, "EEZJ-SM87-G8YJ-5NTK-E"),
            (b"another key, 16+ bytes", CAMPAIGN, "1000001", 10, "4SFQ3-Z3FZC-2"),
            (KEY, "inc-2/notify-customers/send-apology", "1000001", 12, "4GJ5-ZS2W-CF5G-C"),
        ];
        for &(key, campaign, recipient, length, expected) in cases {
            let code = derive(key, campaign, recipient, length).unwrap();
            assert_eq!(code, expected, "{recipient} in {campaign}, length {length}");
            assert!(check(&code), "{code}");
        }
    }

    #[test]
    fn what_changes_the_code() {
        let base = derive(KEY, CAMPAIGN, "1000001", 10).unwrap();
        let others = [
            derive(KEY, CAMPAIGN, "1000002", 10).unwrap(),
            derive(KEY, "inc-1/notify-customers/send-reminder", "1000001", 10).unwrap(),
            derive(b"fedcba9876543210fedcba9876543210", CAMPAIGN, "1000001", 10).unwrap(),
            // The parts are length-prefixed: moving a character from one to the other matters.
            derive(KEY, &format!("{CAMPAIGN}1"), "000001", 10).unwrap(),
        ];
        for other in others {
            assert_ne!(base, other);
        }
        assert_eq!(base, derive(KEY, CAMPAIGN, "1000001", 10).unwrap(), "the same inputs give the same code");
    }

    #[test]
    fn lengths_and_keys_are_enforced() {
        let cases: &[(&[u8], usize, Result<usize, Error>)] = &[
            (KEY, 7, Err(Error::Length(7))),
            (KEY, 8, Ok(8)),
            (KEY, 10, Ok(10)),
            (KEY, 16, Ok(16)),
            (KEY, 17, Err(Error::Length(17))),
            (KEY, 0, Err(Error::Length(0))),
            (b"short key", 10, Err(Error::Key(9))),
            (b"", 10, Err(Error::Key(0))),
        ];
        for (key, length, expected) in cases {
            let got = derive(key, CAMPAIGN, "1000001", *length)
                .map(|code| code.chars().filter(|&character| character != '-').count() - 1);
            assert_eq!(&got, expected, "length {length}, key of {} bytes", key.len());
        }
    }

    #[test]
    fn check_reads_codes_as_people_type_them() {
        let code = derive(KEY, CAMPAIGN, "1000001", 10).unwrap();
        let plain: String = code.chars().filter(|&character| character != '-').collect();
        let cases: Vec<(String, bool)> = vec![
            (code.clone(), true),
            (code.to_lowercase(), true),
            (plain.clone(), true),
            (format!("{}-{}", &plain[..3], &plain[3..]), true),
            (plain.replace('1', "I"), true),
            (plain.replace('1', "l"), true),
            (plain.replace('0', "O"), true),
            (plain.replace('0', "o"), true),
            (format!("{plain}0"), false),
            (plain[1..].to_string(), false),
            (String::new(), false),
            ("---".to_string(), false),
            (format!("{}U", &plain[..plain.len() - 1]), false),
            (format!("{}*", &plain[..plain.len() - 1]), false),
            (format!("{} ", plain), false),
            ("0".repeat(8), false),
            ("0".repeat(18), false),
        ];
        for (input, expected) in cases {
            assert_eq!(check(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn alpha_is_primitive_so_weights_differ() {
        let mut seen = Vec::new();
        let mut power = 1;
        for _ in 0..31 {
            power = multiply(power, 2);
            assert!(!seen.contains(&power), "α repeats at {power}");
            seen.push(power);
        }
        assert_eq!(power, 1, "α³¹ = 1");
    }

    fn plain(code: &str) -> Vec<u8> {
        code.chars().filter(|&character| character != '-').map(|character| value_of(character).unwrap()).collect()
    }

    fn text(values: &[u8]) -> String {
        values.iter().map(|&value| ALPHABET[value as usize] as char).collect()
    }

    proptest! {
        #[test]
        fn every_substitution_and_adjacent_transposition_is_caught(
            key in proptest::collection::vec(any::<u8>(), 16..48),
            recipient in "[0-9A-Za-z@.]{1,24}",
            length in MIN_LENGTH..=MAX_LENGTH,
        ) {
            let code = derive(&key, CAMPAIGN, &recipient, length).unwrap();
            prop_assert!(check(&code));
            let values = plain(&code);
            prop_assert_eq!(values.len(), length + 1);
            for position in 0..values.len() {
                for replacement in 0..32u8 {
                    if replacement == values[position] {
                        continue;
                    }
                    let mut changed = values.clone();
                    changed[position] = replacement;
                    prop_assert!(!check(&text(&changed)), "{} accepted for {}", text(&changed), code);
                }
            }
            for position in 0..values.len() - 1 {
                if values[position] == values[position + 1] {
                    continue;
                }
                let mut swapped = values.clone();
                swapped.swap(position, position + 1);
                prop_assert!(!check(&text(&swapped)), "{} accepted for {}", text(&swapped), code);
            }
        }
    }
}
