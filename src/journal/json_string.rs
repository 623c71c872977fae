//! A string as JSON writes it, byte for byte as serde_json would: `"` and `\` escaped
//! with a backslash, `\b \t \n \f \r` by name, other bytes below 0x20 as `\u00XX`
//! (lowercase hex), everything else (non-ASCII included) as it is.
//!
//! serde_json escapes byte by byte through its formatter, ~12 instructions a byte for a
//! JSON response body kept with `[journal] responses = true` (one quote every ~12
//! bytes). Here the bytes to escape are found 8 at a time (`json_stops`), and the runs
//! between them copied whole.

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

/// Appends `value` as a JSON string, quotes included.
pub(super) fn write(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Room for the quotes and an escape every eighth byte, the rare control included.
    out.reserve(bytes.len() + bytes.len() / 8 + 2);
    out.push(b'"');
    // Bytes from `run` on are not written yet; each escape ends a run.
    let mut run = 0;
    let mut at = 0;
    while let Some(word) = word_at(bytes, at) {
        let mut flags = stops_in(word);
        while flags != 0 {
            let escaped = at + (flags.trailing_zeros() / 8) as usize;
            escape(out, bytes, run, escaped);
            run = escaped + 1;
            flags &= flags - 1;
        }
        at += 8;
    }
    for escaped in at..bytes.len() {
        if ESCAPE[usize::from(bytes[escaped])] != 0 {
            escape(out, bytes, run, escaped);
            run = escaped + 1;
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// The run `bytes[run..at]`, then the escape of `bytes[at]`.
fn escape(out: &mut Vec<u8>, bytes: &[u8], run: usize, at: usize) {
    out.extend_from_slice(bytes.get(run..at).unwrap_or_default());
    let Some(&byte) = bytes.get(at) else { return };
    match ESCAPE[usize::from(byte)] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
        letter => out.extend_from_slice(&[b'\\', letter]),
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
            ],
        ) {
            prop_assert_eq!(written(&value), serde_json::to_string(&value).expect("ok"));
        }
    }
}
