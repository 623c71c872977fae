//! The body's hints read in one pass, without serde, for the bodies apps send: a
//! top-level object whose keys carry no escapes, `model` a plain string, token limits
//! plain integers. Anything else — an escape in a key or in `model`, a known key twice,
//! a number a `u64` might not hold, nesting deeper than serde_json would go, a key or
//! `model` that is not UTF-8, any syntax error — is not decided here: [`hints`] answers
//! `None` and serde_json reads the body, so the two readings cannot disagree. The
//! proptest in the parent module holds this pass to serde_json's verdict on
//! well-formed, odd and broken bodies alike.
//!
//! Why: serde's derive tokenizes every key and walks every message through its visitor
//! machinery, ~30 instructions a byte; this pass costs a few (strings are skipped 8 bytes
//! at a time: `json_stops`), and the journal reads the hints of every request. Like
//! serde_json reading a slice, it checks UTF-8 only in the strings it reads (the keys
//! and `model`), not in the values it skips: a check of the whole body would be a second
//! pass over text nothing reads.

use std::borrow::Cow;

use super::{Count, JsonHints, StreamOptions};
use crate::json_stops;

/// Deeper than this, the body is left to serde_json (which has its own limit).
const MAX_DEPTH: u32 = 100;

/// The hints of a body this pass can read whole; `None` to leave it to serde_json.
pub(super) fn hints(body: &[u8]) -> Option<JsonHints<'_>> {
    let mut json = Cursor { bytes: body, at: 0 };
    let mut hints = JsonHints::default();
    let mut seen = Seen::default();
    json.members(|json, key| match Field::of(key) {
        Some(field) => {
            seen.first(field)?;
            json.field(field, &mut hints)
        }
        None => json.skip_value(1),
    })?;
    json.only_whitespace_left().then_some(hints)
}

/// The keys read; every other key's value is skipped.
#[derive(Clone, Copy)]
enum Field {
    Model = 1,
    Stream = 2,
    StreamOptions = 4,
    Messages = 8,
    MaxTokens = 16,
    MaxCompletionTokens = 32,
}

impl Field {
    fn of(key: &str) -> Option<Field> {
        Some(match key {
            "model" => Field::Model,
            "stream" => Field::Stream,
            "stream_options" => Field::StreamOptions,
            "messages" => Field::Messages,
            "max_tokens" => Field::MaxTokens,
            "max_completion_tokens" => Field::MaxCompletionTokens,
            _ => return None,
        })
    }
}

/// The keys met so far: serde's derive refuses a key given twice.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn first(&mut self, field: Field) -> Option<()> {
        let bit = field as u8;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A known key's value, into its place in `hints`.
    fn field(&mut self, field: Field, hints: &mut JsonHints<'a>) -> Option<()> {
        match field {
            Field::Model => hints.model = self.or_null(|j| j.plain_string().map(Cow::Borrowed))?,
            Field::Stream => hints.stream = self.or_null(Cursor::boolean)?,
            Field::StreamOptions => hints.stream_options = self.or_null(Cursor::stream_options)?,
            Field::Messages => hints.messages = self.or_null(Cursor::count)?,
            Field::MaxTokens => hints.max_tokens = self.or_null(Cursor::plain_u64)?,
            Field::MaxCompletionTokens => {
                hints.max_completion_tokens = self.or_null(Cursor::plain_u64)?;
            }
        }
        Some(())
    }

    fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The next byte that is not JSON whitespace, not consumed; `None` at the end.
    fn next_token(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes().get(self.at) {
            match b {
                b' ' | b'\n' | b'\t' | b'\r' => self.at += 1,
                _ => return Some(b),
            }
        }
        None
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_token()? == byte).then(|| self.at += 1)
    }

    fn only_whitespace_left(&mut self) -> bool {
        self.next_token().is_none()
    }

    /// `null` as `None`, else the value `read` reads.
    fn or_null<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.next_token()? == b'n' {
            self.word("null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    fn word(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.next_token()? {
            b't' => self.word("true").map(|()| true),
            b'f' => self.word("false").map(|()| false),
            _ => None,
        }
    }

    /// The run up to the next quote, backslash or control character.
    fn plain_run(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        self.at = json_stops::next_stop(bytes, self.at)?;
        bytes.get(self.at).copied()
    }

    /// A string without escapes, as it stands in the body.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        if self.plain_run()? != b'"' {
            return None;
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
        self.at += 1;
        Some(text)
    }

    /// Any string, its escapes checked as serde_json checks a string it skips.
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            match self.plain_run()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.skip_escape()?,
                _ => return None,
            }
        }
    }

    fn skip_escape(&mut self) -> Option<()> {
        let bytes = self.bytes();
        match bytes.get(self.at + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
            b'u' => {
                let hex = bytes.get(self.at + 2..self.at + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                self.at += 6;
            }
            _ => return None,
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes().get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// A JSON number by its grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn skip_number(&mut self) -> Option<()> {
        if self.bytes().get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes().get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes().get(self.at) == Some(&b'.') {
            self.at += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.bytes().get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes().get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }

    /// A count of tokens: digits only, no sign, fraction or exponent, short enough that
    /// any value fits a `u64` (19 digits); anything else is serde's to judge.
    fn plain_u64(&mut self) -> Option<u64> {
        self.next_token()?;
        let start = self.at;
        let len = self.digits();
        let digits = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
        let leading_zero = len > 1 && digits.starts_with('0');
        let continues = matches!(self.bytes().get(self.at), Some(b'.' | b'e' | b'E'));
        if len == 0 || len > 19 || leading_zero || continues {
            return None;
        }
        digits.parse().ok()
    }

    /// The elements of an array, each skipped unread.
    fn count(&mut self) -> Option<Count> {
        let mut n = 0u32;
        self.items(b'[', b']', |json| {
            json.skip_value(2)?;
            n = n.saturating_add(1);
            Some(())
        })?;
        Some(Count(n))
    }

    fn stream_options(&mut self) -> Option<StreamOptions> {
        let mut include_usage = None;
        let mut seen = false;
        self.members(|json, key| {
            if key != "include_usage" {
                return json.skip_value(2);
            }
            if std::mem::replace(&mut seen, true) {
                return None;
            }
            include_usage = json.or_null(Cursor::boolean)?;
            Some(())
        })?;
        Some(StreamOptions { include_usage })
    }

    /// Any value, checked and skipped; `depth` counts the enclosing arrays and objects.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.next_token()? {
            b'"' => self.skip_string(),
            b'-' | b'0'..=b'9' => self.skip_number(),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            b'[' | b'{' if depth >= MAX_DEPTH => None,
            b'[' => self.items(b'[', b']', |json| json.skip_value(depth + 1)),
            b'{' => self.items(b'{', b'}', |json| {
                json.skip_string()?;
                json.expect(b':')?;
                json.skip_value(depth + 1)
            }),
            _ => None,
        }
    }

    /// An array or object from its `open` byte to its `close`, each item read by `item`.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.expect(open)?;
        if self.next_token()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.next_token()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object whose keys carry no escapes, each value read by `member` given its key.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.items(b'{', b'}', |json| {
            let key = json.plain_string()?;
            json.expect(b':')?;
            member(json, key)
        })
    }
}

#[cfg(test)]
mod tests;
