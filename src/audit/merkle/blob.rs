//! The store's form of a batch's leaves: a compact binary blob, versioned by its first byte.

use chrono::{TimeZone, Utc};

use super::{Error, Leaf, LeafOutcome};

/// The version of [`encode_leaves`]'s format, its first byte.
pub const VERSION: u8 = 1;

/// The fewest bytes a leaf takes: an empty id, the digest, the outcome and the time.
const SMALLEST_LEAF: usize = 1 + 32 + 1 + 1;

/// A batch's leaves as the store keeps them: the version byte (1), the number of leaves, then
/// each leaf: its id (length, UTF-8), the digest (32 bytes), the outcome (0 sent, 1 rejected,
/// 2 failed), the reason unless sent (length, UTF-8), and its time in seconds since 1970 as the
/// difference from the leaf before (from 0 for the first). Counts and lengths are unsigned
/// LEB128, the differences signed (zigzag) LEB128: about 35 bytes and the id's length per leaf.
pub fn encode_leaves(leaves: &[Leaf]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + leaves.iter().map(|leaf| SMALLEST_LEAF + 4 + leaf.id.len()).sum::<usize>());
    out.push(VERSION);
    unsigned(&mut out, leaves.len() as u64);
    let mut previous = 0i64;
    for leaf in leaves {
        unsigned(&mut out, leaf.id.len() as u64);
        out.extend_from_slice(leaf.id.as_bytes());
        out.extend_from_slice(&leaf.digest);
        let (code, reason) = match &leaf.outcome {
            LeafOutcome::Sent => (0, None),
            LeafOutcome::Rejected(reason) => (1, Some(reason)),
            LeafOutcome::Failed(reason) => (2, Some(reason)),
        };
        out.push(code);
        if let Some(reason) = reason {
            unsigned(&mut out, reason.len() as u64);
            out.extend_from_slice(reason.as_bytes());
        }
        let seconds = leaf.at.timestamp();
        // Times chrono holds are within ±2^43 seconds, so their difference fits.
        let difference = seconds.wrapping_sub(previous);
        unsigned(&mut out, ((difference << 1) ^ (difference >> 63)) as u64);
        previous = seconds;
    }
    out
}

/// Reads what [`encode_leaves`] wrote. Any other bytes are an error naming where they go wrong.
pub fn decode_leaves(bytes: &[u8]) -> Result<Vec<Leaf>, Error> {
    let (&version, _) = bytes.split_first().ok_or(Error::Empty)?;
    if version != VERSION {
        return Err(Error::Version(version));
    }
    let mut reader = Reader { bytes, offset: 1 };
    let count = reader.unsigned(&"the number of leaves")?;
    // The count comes from the bytes: what they can hold bounds what is reserved.
    let room = (bytes.len() - reader.offset) / SMALLEST_LEAF;
    let mut leaves = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(room));
    let mut previous = 0i64;
    for number in 1..=count {
        let id = reader.text(&format_args!("leaf {number}'s id"))?;
        let digest = reader.take(32, &format_args!("leaf {number}'s digest"))?.try_into().unwrap_or([0; 32]);
        let start = reader.offset;
        let outcome = match reader.take(1, &format_args!("leaf {number}'s outcome"))?[0] {
            0 => LeafOutcome::Sent,
            1 => LeafOutcome::Rejected(reader.text(&format_args!("leaf {number}'s reason"))?),
            2 => LeafOutcome::Failed(reader.text(&format_args!("leaf {number}'s reason"))?),
            code => return Err(reader.bad(start, format!("leaf {number}'s outcome is {code}, not 0, 1 or 2"))),
        };
        let start = reader.offset;
        let zigzag = reader.unsigned(&format_args!("leaf {number}'s time"))?;
        let difference = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        let at = previous
            .checked_add(difference)
            .and_then(|seconds| Utc.timestamp_opt(seconds, 0).single().map(|at| (seconds, at)));
        let Some((seconds, at)) = at else {
            return Err(reader.bad(start, format!("leaf {number}'s time is out of range")));
        };
        previous = seconds;
        leaves.push(Leaf { id, digest, outcome, at });
    }
    if reader.offset != bytes.len() {
        let extra = bytes.len() - reader.offset;
        return Err(
            reader.bad(reader.offset, format!("the bytes go on after the last of the {count} leaves ({extra} more)"))
        );
    }
    Ok(leaves)
}

fn unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes read in order, every read checked.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, offset: usize, what: String) -> Error {
        Error::Bad { offset, what }
    }

    fn take(&mut self, count: usize, what: &dyn std::fmt::Display) -> Result<&'a [u8], Error> {
        let end = self.offset.checked_add(count).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.bad(self.offset, format!("{what} is cut short ({count} bytes needed)")));
        };
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }

    fn unsigned(&mut self, what: &dyn std::fmt::Display) -> Result<u64, Error> {
        let start = self.offset;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.offset) else {
                return Err(self.bad(start, format!("{what} is cut short")));
            };
            self.offset += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.bad(start, format!("{what} is more than 64 bits")))
    }

    fn text(&mut self, what: &dyn std::fmt::Display) -> Result<String, Error> {
        let length = self.unsigned(&format_args!("the length of {what}"))?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        let start = self.offset;
        let bytes = self.take(length, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.bad(start, format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{arbitrary_leaf, at};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_encodings_are_errors_that_say_where() {
        let leaf = Leaf {
            id: "c-1".into(),
            digest: [7; 32],
            outcome: LeafOutcome::Rejected("no".into()),
            at: at("2026-12-04T21:55:00Z"),
        };
        let good = encode_leaves(std::slice::from_ref(&leaf));
        assert_eq!(decode_leaves(&good).unwrap(), vec![leaf]);
        let with = |offset: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[offset] = byte;
            bytes
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "the encoded leaves are empty (not even a version byte)"),
            (vec![2], "the encoded leaves are in version 2, which this phasegate does not read (it reads 1)"),
            (vec![1], "the encoded leaves are bad at byte 1: the number of leaves is cut short"),
            (good[..good.len() - 1].to_vec(), "the encoded leaves are bad at byte 42: leaf 1's time is cut short"),
            (
                good[..20].to_vec(),
                "the encoded leaves are bad at byte 6: leaf 1's digest is cut short (32 bytes needed)",
            ),
            (with(3, 0xff), "the encoded leaves are bad at byte 3: leaf 1's id is not UTF-8"),
            (with(38, 3), "the encoded leaves are bad at byte 38: leaf 1's outcome is 3, not 0, 1 or 2"),
            (with(1, 2), "the encoded leaves are bad at byte 47: the length of leaf 2's id is cut short"),
            (
                [good.as_slice(), &[0]].concat(),
                "the encoded leaves are bad at byte 47: the bytes go on after the last of the 1 leaves (1 more)",
            ),
            (
                vec![1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                "the encoded leaves are bad at byte 1: the number of leaves is more than 64 bits",
            ),
            (
                vec![1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                "the encoded leaves are bad at byte 11: the length of leaf 1's id is cut short",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode_leaves(&bytes).unwrap_err().to_string(), expected, "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn leaves_read_back_as_written(leaves in proptest::collection::vec(arbitrary_leaf(), 0..20)) {
            let bytes = encode_leaves(&leaves);
            prop_assert_eq!(decode_leaves(&bytes).unwrap(), leaves.clone());
            for cut in 0..bytes.len() {
                prop_assert!(decode_leaves(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn no_bytes_make_decoding_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_leaves(&bytes);
            let mut versioned = bytes.clone();
            versioned.insert(0, VERSION);
            let _ = decode_leaves(&versioned);
        }
    }
}
