//! The bytes a JSON string cannot hold as they are — `"`, `\` and controls below
//! 0x20 — found 8 at a time. Where a string's text ends or an escape starts: the
//! request body's hints scan (`request_meta::scan`) skips strings with it, and the
//! journal's string writer (`journal::json_string`) copies the runs between them.
//!
//! Prompts run to many kilobytes and the journal reads every request's: a word-wide
//! test per 8 bytes instead of a table lookup and a branch per byte.

/// 8 copies of a byte, one per lane of a `u64`.
const fn lanes(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

const HIGH_BITS: u64 = lanes(0x80);

/// Whether `byte` is one that stops a string's plain text.
pub fn is_stop(byte: u8) -> bool {
    (byte < 0x20) | (byte == b'"') | (byte == b'\\')
}

/// The high bit set in each lane (byte) of `word` that is `"`, `\` or below 0x20, and
/// in no other: `zero_lanes` is exact, since `(x & 0x7f) + 0x7f` cannot carry out of
/// its lane.
pub fn stops_in(word: u64) -> u64 {
    let zero_lanes = |x: u64| !(((x & lanes(0x7f)) + lanes(0x7f)) | x) & HIGH_BITS;
    zero_lanes(word ^ lanes(b'"'))
        | zero_lanes(word ^ lanes(b'\\'))
        | zero_lanes(word & lanes(0xe0))
}

/// The 8 bytes at `at` as a little-endian word (lane 0 is `bytes[at]`), if there are 8.
pub fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let eight = bytes.get(at..at.checked_add(8)?)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(eight);
    Some(u64::from_le_bytes(word))
}

/// The index of the first stop at or after `from`; `None` when there is none.
///
/// 8 bytes at a time. (Tried for prompts: `memchr2` for the quote and backslash plus a
/// vectorised check for controls, and 32-byte blocks tested at once; both cost more,
/// since a prompt's text has an escape — a line break, a quote — every few dozen bytes.)
pub fn next_stop(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(bytes, at) {
        let flags = stops_in(word);
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    rest.iter().position(|&b| is_stop(b)).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition, one byte at a time.
    fn next_stop_bytewise(bytes: &[u8], from: usize) -> Option<usize> {
        (from..bytes.len()).find(|&i| is_stop(bytes[i]))
    }

    #[test]
    fn every_byte_value_is_told_apart() {
        for b in 0..=255u8 {
            let expected = b < 0x20 || b == b'"' || b == b'\\';
            for lane in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[lane] = b;
                let flags = stops_in(u64::from_le_bytes(bytes));
                assert_eq!(flags != 0, expected, "byte {b:#x} in lane {lane}");
                if expected {
                    assert_eq!(flags.trailing_zeros() / 8, lane as u32);
                }
            }
        }
    }

    #[test]
    fn finds_the_first_stop_from_where_it_starts() {
        let text = b"hello \"world\" and a long run of plain text\\n";
        assert_eq!(next_stop(text, 0), Some(6));
        assert_eq!(next_stop(text, 7), Some(12));
        assert_eq!(next_stop(text, 13), Some(text.len() - 2));
        assert_eq!(next_stop(b"plain, no stop at all here", 0), None);
        assert_eq!(next_stop(b"ab", 5), None);
    }

    proptest! {
        #[test]
        fn finds_what_a_bytewise_search_finds(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::collection::vec(prop_oneof![8 => Just(b'a'), 1 => any::<u8>()], 0..400),
                proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(b'a'), Just(0xe0), Just(0x7f)], 0..40),
            ],
            from in prop_oneof![0usize..70, Just(0)],
        ) {
            prop_assert_eq!(next_stop(&bytes, from), next_stop_bytewise(&bytes, from));
        }
    }
}
