//! The `usage` a response reports (JSON body or the final SSE chunk), read from the
//! bytes after the last `"usage"` key that passed (`UsageTail`, ≤ 2 KiB however long
//! the stream), never by collecting the body.

use crate::events::Usage;

const USAGE_KEY: &[u8] = b"\"usage\"";
/// How much of the body `usage_at` reads, from the `"usage"` key on: enough for the
/// object with its `*_tokens_details`.
const USAGE_WINDOW: usize = 2048;

/// What `usage_at` needs of a body, kept as it streams past: the usage read from the
/// last `"usage"` key seen when its chunk held the whole object (the usual case: no
/// copy at all), else the first `USAGE_WINDOW` bytes from that key (a later key
/// replaces them), so a long stream costs no more than a short one. Holds nothing
/// until a key passes, but the last few bytes, in case a key is split between chunks.
#[derive(Default)]
pub(super) struct UsageTail {
    /// The usage of the last key, read from the chunk that held it whole.
    read: Option<Usage>,
    /// Starts with the last key seen, when its object did not end in its chunk.
    kept: Vec<u8>,
    /// The body's last `carry_len` bytes (fewer than a key).
    carry: [u8; USAGE_KEY.len() - 1],
    carry_len: usize,
}

impl UsageTail {
    pub fn push(&mut self, data: &[u8]) {
        let room = |kept: &Vec<u8>| USAGE_WINDOW.saturating_sub(kept.len());
        if let Some(at) = rfind_key(data) {
            self.kept.clear();
            let end = data.len().min(at + USAGE_WINDOW);
            match settled(&data[at..end]) {
                Some(read) => self.read = read,
                None => self.kept.extend_from_slice(&data[at..end]),
            }
        } else if let Some(at) = self.key_across(data) {
            self.kept.clear();
            self.kept.extend_from_slice(&self.carry[at..self.carry_len]);
            let take = data.len().min(room(&self.kept));
            self.kept.extend_from_slice(&data[..take]);
        } else if !self.kept.is_empty() {
            let take = data.len().min(room(&self.kept));
            self.kept.extend_from_slice(&data[..take]);
        }
        self.keep_carry(data);
    }

    /// The usage of the last `"usage"` key that passed.
    pub fn usage(&self) -> Option<Usage> {
        if self.kept.is_empty() {
            self.read
        } else {
            usage_at(&self.kept)
        }
    }

    /// Where in `carry` a key starts that ends in `data`.
    fn key_across(&self, data: &[u8]) -> Option<usize> {
        let mut joint = [0u8; 2 * (USAGE_KEY.len() - 1)];
        let head = data.len().min(USAGE_KEY.len() - 1);
        joint[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
        joint[self.carry_len..self.carry_len + head].copy_from_slice(&data[..head]);
        rfind_key(&joint[..self.carry_len + head]).filter(|&at| at < self.carry_len)
    }

    fn keep_carry(&mut self, data: &[u8]) {
        let cap = self.carry.len();
        if data.len() >= cap {
            self.carry.copy_from_slice(&data[data.len() - cap..]);
            self.carry_len = cap;
        } else {
            let keep = self.carry_len.min(cap - data.len());
            self.carry
                .copy_within(self.carry_len - keep..self.carry_len, 0);
            self.carry[keep..keep + data.len()].copy_from_slice(data);
            self.carry_len = keep + data.len();
        }
    }
}

/// `usage_at(rest)` when no later byte can change it: a usage was read, the value is
/// not an object (`"usage": null`), or `rest` is already the whole window; `None` when
/// the object may go on in the next chunk.
fn settled(rest: &[u8]) -> Option<Option<Usage>> {
    if let Some(usage) = usage_at(rest) {
        return Some(Some(usage));
    }
    if rest.len() >= USAGE_WINDOW {
        return Some(None);
    }
    let value = rest[USAGE_KEY.len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    match value.first() {
        Some(b'{') | None => None,
        Some(_) => Some(None),
    }
}

/// The last `usage` object in a whole body: what `UsageTail` + `usage_at` must find
/// from the body streamed in pieces (the tests hold them to it).
#[cfg(test)]
fn usage_in(body: &[u8]) -> Option<Usage> {
    usage_at(&body[rfind_key(body)?..])
}

/// Prompt/input and completion/output tokens of the `usage` object that `rest` starts
/// with (`"usage": {…}`), read in one pass over its top-level keys. Works on bytes: no
/// UTF-8 check or copy (it is on every response).
pub(super) fn usage_at(rest: &[u8]) -> Option<Usage> {
    let rest = &rest[..rest.len().min(USAGE_WINDOW)];
    let mut scan = Scan(rest.strip_prefix(USAGE_KEY)?);
    scan.expect(b':')?;
    scan.expect(b'{')?;
    let (mut input, mut output) = (None, None);
    loop {
        match scan.next_token()? {
            b'}' => break,
            b',' => continue,
            b'"' => {}
            _ => return None,
        }
        let key = scan.string()?;
        scan.expect(b':')?;
        let slot = match key {
            b"prompt_tokens" | b"input_tokens" => &mut input,
            b"completion_tokens" | b"output_tokens" => &mut output,
            _ => {
                scan.skip_value()?;
                continue;
            }
        };
        match scan.number() {
            Some(n) => *slot = slot.or(Some(n)),
            None => scan.skip_value()?,
        }
        // Both known, and the last number ended here (a chunk may cut one short): the
        // rest (totals, `*_tokens_details`) cannot change them.
        if input.is_some() && output.is_some() && !scan.0.is_empty() {
            break;
        }
    }
    Some(Usage {
        input_tokens: input?,
        output_tokens: output.unwrap_or(0),
    })
}

/// A cursor over JSON bytes: just enough to walk one small object.
struct Scan<'a>(&'a [u8]);

impl<'a> Scan<'a> {
    /// The next byte that is not white space, consumed.
    fn next_token(&mut self) -> Option<u8> {
        self.0 = self.0.trim_ascii_start();
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_token()? == byte).then_some(())
    }

    /// A string's raw bytes, after its opening quote; up to and past its closing one.
    fn string(&mut self) -> Option<&'a [u8]> {
        let mut at = 0;
        loop {
            at += memchr::memchr2(b'"', b'\\', &self.0[at..])?;
            if self.0[at] == b'\\' {
                at += 2;
                continue;
            }
            let text = &self.0[..at];
            self.0 = self.0.get(at + 1..)?;
            return Some(text);
        }
    }

    /// A non-negative integer, if that is what comes next.
    fn number(&mut self) -> Option<u64> {
        let rest = self.0.trim_ascii_start();
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n = rest[..digits].iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        self.0 = &rest[digits..];
        Some(n)
    }

    /// Any value: a string, an object or array (nesting and strings inside them
    /// included), or a scalar up to the next `,`, `}` or `]`.
    fn skip_value(&mut self) -> Option<()> {
        self.0 = self.0.trim_ascii_start();
        let mut depth = 0usize;
        loop {
            match *self.0.first()? {
                b'"' => {
                    self.0 = &self.0[1..];
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.0 = &self.0[1..];
                }
                b'}' | b']' if depth == 0 => return Some(()),
                b'}' | b']' => {
                    depth -= 1;
                    self.0 = &self.0[1..];
                }
                b',' if depth == 0 => return Some(()),
                _ => self.0 = &self.0[1..],
            }
            if depth == 0 && matches!(self.0.trim_ascii_start().first(), Some(b',' | b'}' | b']')) {
                return Some(());
            }
        }
    }
}

/// Where the last `"usage"` key in `haystack` starts, tried only where its `g` is
/// (`memrchr`): the JSON after the key seldom has one (`"prompt_tokens":12,…`), while
/// every string after it has two `"`. Cheaper than a `memmem` finder for bodies this
/// short.
fn rfind_key(haystack: &[u8]) -> Option<usize> {
    // Where the `g` is in `"usage"`.
    const ANCHOR: usize = 4;
    memchr::memrchr_iter(USAGE_KEY[ANCHOR], haystack)
        .filter_map(|at| at.checked_sub(ANCHOR))
        .find(|&start| haystack[start..].starts_with(USAGE_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_a_json_completion() {
        let body = br#"{"id":"c","choices":[{"message":{"content":"hi \"usage\""}}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(
            usage_in(body),
            Some(Usage {
                input_tokens: 12,
                output_tokens: 7
            })
        );
    }

    #[test]
    fn usage_from_the_final_sse_chunk() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
                     data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\n\
                     data: [DONE]\n\n";
        assert_eq!(
            usage_in(body),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 5
            })
        );
    }

    #[test]
    fn usage_from_the_responses_api_and_embeddings() {
        let responses = br#"{"usage":{"input_tokens":4,"output_tokens":9,"total_tokens":13}}"#;
        assert_eq!(
            usage_in(responses),
            Some(Usage {
                input_tokens: 4,
                output_tokens: 9
            })
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":6,"total_tokens":6}}"#;
        assert_eq!(
            usage_in(embeddings),
            Some(Usage {
                input_tokens: 6,
                output_tokens: 0
            })
        );
    }

    /// The usage `UsageTail` finds in `body` cut into `size`-byte chunks.
    fn usage_streamed(body: &[u8], size: usize) -> Option<Usage> {
        let mut tail = UsageTail::default();
        for chunk in body.chunks(size) {
            tail.push(chunk);
        }
        assert!(tail.kept.len() <= USAGE_WINDOW);
        tail.usage()
    }

    #[test]
    fn the_streamed_tail_finds_what_the_whole_body_holds_however_it_is_cut() {
        let mut long =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n".repeat(200);
        long.extend_from_slice(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n",
        );
        long.extend_from_slice(&b": padding after the usage chunk\n\n".repeat(100));
        long.extend_from_slice(b"data: [DONE]\n\n");
        let json = br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#;
        for body in [&long[..], &json[..], b"{\"usage\":null}", b"no key at all"] {
            for size in [1, 2, 3, 5, 6, 7, 8, 13, 64, 1000, 1 << 20] {
                assert_eq!(
                    usage_streamed(body, size),
                    usage_in(body),
                    "chunks of {size}"
                );
            }
        }
        assert_eq!(
            usage_streamed(&long, 7),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 5
            })
        );
    }

    #[test]
    fn no_usage_no_numbers() {
        assert_eq!(usage_in(b"data: {\"usage\":null}\n\n"), None);
        assert_eq!(usage_in(b"{}"), None);
    }

    #[test]
    fn usage_ignores_other_keys_nested_values_and_strings() {
        let body = br#"{"usage":{"note":"a \"prompt_tokens\": 99 }","prompt_tokens_details":{"cached_tokens":5,"prompt_tokens":77},"prompt_tokens":12,"list":[1,{"x":[2]}],"completion_tokens":7}}"#;
        assert_eq!(
            usage_in(body),
            Some(Usage {
                input_tokens: 12,
                output_tokens: 7
            })
        );
        assert_eq!(usage_in(br#"{"usage":{"completion_tokens":7}}"#), None);
        assert_eq!(
            usage_in(br#"{"usage":{"prompt_tokens":null,"input_tokens":4}}"#)
                .map(|u| u.input_tokens),
            Some(4)
        );
        assert_eq!(usage_in(br#"{"usage":{"prompt_tokens":3"#), None, "cut off");
        assert_eq!(
            usage_in(br#"{"usage":{"prompt_tokens":3,"completion_tokens":5"#),
            None,
            "the last number may go on"
        );
        assert_eq!(
            usage_in(br#"{"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"completion_tokens_details":{"reasoning_tokens":1"#)
                .map(|u| u.output_tokens),
            Some(5),
            "what follows both is not read"
        );
        assert_eq!(
            usage_in(br#"{"usage":{"prompt_tokens":99999999999999999999,"completion_tokens":1}}"#),
            None,
            "no u64"
        );
    }

    proptest::proptest! {
        /// The key found by its `g` is the last one, as a plain search from the end
        /// finds it: keys cut short, run together or at either edge included.
        #[test]
        fn the_last_key_is_found_wherever_it_is(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"\"usage\""[..], b"\"usage", b"usage\"", b"g", b"\"", b"ge\"", b"\"usag", b"x", b":{",
                ]),
                0..12,
            )
        ) {
            let haystack = pieces.concat();
            let plain = (0..haystack.len()).rev().find(|&at| haystack[at..].starts_with(USAGE_KEY));
            proptest::prop_assert_eq!(rfind_key(&haystack), plain);
        }
    }
}
