//! A string as JSON writes it, byte for byte as serde_json would: `"` and `\` escaped
//! with a backslash, `\b \t \n \f \r` by name, other bytes below 0x20 as `\u00XX`
//! (lowercase hex), everything else (non-ASCII included) as it is.
//!
//! serde_json escapes byte by byte through its formatter, ~12 instructions a byte for a
//! JSON response body kept with `[journal] responses = true` (one quote every ~10
//! bytes). Here the text goes a word (8 bytes) at a time into room made for it up
//! front: the bytes to escape in the word are found at once (`json_stops`), the word is
//! stored whole, and each escape is written over the byte it replaces, the rest of the
//! word stored again after it. No call per run, no capacity check per byte, and no
//! second look at a word for its next escape.

use crate::json_stops::{stops_in, word_at};

/// The escape letter of each byte that needs one (`u`: as `\u00XX`); 0: none.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[b'\t' as usize] = b't';
    table[b'\n' as usize] = b'n';
    table[0x0c] = b'f';
    table[b'\r' as usize] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Room one word may need past its position: each of its 8 bytes escaped as
/// `\u00XX` (6 bytes), and the last 8-byte store.
const WORD_ROOM: usize = 8 * 6 + 8;

/// Appends `value` as a JSON string, quotes included.
pub(super) fn write(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let start = out.len();
    // Room for the text, an escape every fourth byte and the quotes; grown if a text
    // of controls or quotes needs more.
    out.resize(start + bytes.len() + bytes.len() / 4 + WORD_ROOM, 0);
    out[start] = b'"';
    let mut pos = start + 1;
    let mut at = 0;
    while let Some(word) = word_at(bytes, at) {
        make_room(out, pos, bytes.len() - at);
        pos = write_word(out, pos, word);
        at += 8;
    }
    for &byte in &bytes[at..] {
        make_room(out, pos, 8);
        pos = if ESCAPE[usize::from(byte)] == 0 {
            out[pos] = byte;
            pos + 1
        } else {
            escape(out, pos, byte)
        };
    }
    out[pos] = b'"';
    out.truncate(pos + 1);
}

/// Writes the 8 bytes of `word` (lane 0 first) at `pos`, escaped; the position after
/// them. `out` has `WORD_ROOM` bytes past `pos`.
fn write_word(out: &mut [u8], mut pos: usize, word: u64) -> usize {
    let mut escapes = stops_in(word);
    // The lanes from `done` on, shifted down to lane 0: what is still to write.
    let mut rest = word;
    let mut done = 0;
    loop {
        out[pos..pos + 8].copy_from_slice(&rest.to_le_bytes());
        if escapes == 0 {
            return pos + 8 - done;
        }
        // Lanes `done..lane` are in place; the escape goes over lane `lane`.
        let lane = (escapes.trailing_zeros() / 8) as usize;
        pos = escape(out, pos + lane - done, (word >> (8 * lane)) as u8);
        done = lane + 1;
        rest = word.checked_shr(8 * done as u32).unwrap_or(0);
        escapes &= escapes - 1;
    }
}

/// Grows `out` when less than a word's room is left past `pos` (`left`: the bytes
/// still to write, for how much to add).
fn make_room(out: &mut Vec<u8>, pos: usize, left: usize) {
    if pos + WORD_ROOM > out.len() {
        out.resize(pos + left + left / 4 + WORD_ROOM, 0);
    }
}

/// Writes the escape of `byte` at `pos`; the position after it.
fn escape(out: &mut [u8], pos: usize, byte: u8) -> usize {
    match ESCAPE[usize::from(byte)] {
        b'u' => {
            out[pos..pos + 6].copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
            pos + 6
        }
        letter => {
            out[pos..pos + 2].copy_from_slice(&[b'\\', letter]);
            pos + 2
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn written(value: &str) -> String {
        let mut out = Vec::new();
        super::write(&mut out, value);
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for value in [
            "",
            "plain",
            "\"",
            "a\"b\\c",
            "\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}",
            "é✓ \"quoted\" over eight bytes \"again\"\\",
            "{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":\"Hi!\"}}]}",
        ] {
            assert_eq!(written(value), serde_json::to_string(value).expect("ok"));
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(
            value in prop_oneof![
                any::<String>(),
                "[\"\\\\\u{0}-\u{1f}\u{7f}é✓ a-z]{0,40}",
                "[ -~]{0,64}",
                // All escapes, controls most of all (6 bytes each): the room grows.
                "[\"\\\\\u{0}-\u{1f}]{0,300}",
            ],
        ) {
            prop_assert_eq!(written(&value), serde_json::to_string(&value).expect("ok"));
        }

        #[test]
        fn what_is_already_in_the_line_stays(
            before in "[ -~]{0,40}",
            value in "[\"\\\\\u{0}-\u{1f} a-z]{0,100}",
        ) {
            let mut out = before.clone().into_bytes();
            super::write(&mut out, &value);
            let expected = before + &serde_json::to_string(&value).expect("ok");
            prop_assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
        }
    }
}
