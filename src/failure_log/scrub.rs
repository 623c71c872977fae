//! Makes an error message safe to write: anything that looks like a credential is
//! replaced, and the result is cut to `MAX_MESSAGE_BYTES`. Upstream error messages do
//! quote keys ("Incorrect API key provided: sk-…"), and transport errors can quote URLs
//! with `?key=` in them, so this runs on every message before it becomes a record.

/// Longest `error_message` written (SPEC §3: 1 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Only this much of a message is looked at; the rest is cut anyway.
const MAX_SCAN_BYTES: usize = 8 * 1024;

/// A run this long of key-like characters with letters and digits mixed is taken for a
/// key (Azure keys are 32 hex characters, OpenAI's `sk-…` are longer).
const OPAQUE_TOKEN_LEN: usize = 32;

/// Scrubs and cuts a message.
pub fn clean_message(message: &str) -> String {
    let scrubbed = scrub(cut(message, MAX_SCAN_BYTES));
    cut(&scrubbed, MAX_MESSAGE_BYTES).to_owned()
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

/// Replaces `sk-…` tokens, `Bearer …` credentials, `key=…` / `api-key: …` values and long
/// opaque tokens.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        let prev = out.chars().next_back();
        if prev.is_none_or(|p| !p.is_ascii_alphanumeric())
            && let Some(secret) = secret_after_label(rest)
        {
            out.push_str(&rest[..secret.label]);
            out.push_str(REDACTED);
            rest = &rest[secret.label + secret.value..];
            continue;
        }
        if prev.is_none_or(|p| !is_key_char(p)) {
            let word_len = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
            if looks_like_key(&rest[..word_len]) {
                out.push_str(REDACTED);
                rest = &rest[word_len..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn looks_like_key(word: &str) -> bool {
    let lower_prefix = |p: &str| {
        word.len() > p.len() + 3
            && word
                .get(..p.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(p))
    };
    if lower_prefix("sk-") || lower_prefix("sess-") {
        return true;
    }
    word.len() >= OPAQUE_TOKEN_LEN
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_alphabetic())
}

struct Secret {
    /// Bytes of the label kept (`Bearer `, `key=`).
    label: usize,
    /// Bytes of the value replaced.
    value: usize,
}

/// A credential label at the start of `s` and the length of the value after it.
fn secret_after_label(s: &str) -> Option<Secret> {
    const LABELS: [&str; 6] = ["bearer ", "key=", "api-key:", "api-key=", "token=", "key:"];
    let head = s.get(..s.len().min(8))?.to_ascii_lowercase();
    let label = LABELS.iter().find(|l| head.starts_with(*l))?;
    let mut label_len = label.len();
    // "api-key: abc": keep the spaces with the label.
    label_len += s[label_len..].len() - s[label_len..].trim_start_matches(' ').len();
    let value = s[label_len..]
        .find(|c: char| !is_token_char(c) || c == '&')
        .unwrap_or(s.len() - label_len);
    (value > 0).then_some(Secret {
        label: label_len,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_keys_in_every_shape() {
        let cases = [
            (
                "Incorrect API key provided: sk-proj-abc123XYZ. You can find…",
                "Incorrect API key provided: [redacted]. You can find…",
            ),
            (
                "GET /v1/x?api-version=1&key=s3cr3t&y=2",
                "GET /v1/x?api-version=1&key=[redacted]&y=2",
            ),
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: Bearer [redacted]",
            ),
            ("api-key: 0123456789abcdef", "api-key: [redacted]"),
            (
                "key 0123456789abcdef0123456789abcdef is bad",
                "key [redacted] is bad",
            ),
            ("plain message, status 503", "plain message, status 503"),
            ("monkey=banana", "monkey=banana"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input), want, "{input}");
        }
    }

    #[test]
    fn cuts_to_one_kib_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let cleaned = clean_message(&long);
        assert!(cleaned.len() <= MAX_MESSAGE_BYTES);
        assert!(cleaned.len() >= MAX_MESSAGE_BYTES - 1);
    }

    #[test]
    fn a_key_cut_at_the_scan_limit_is_still_scrubbed() {
        let message = format!("{}sk-abcdefghijklmnop", "x ".repeat(4090));
        assert!(!clean_message(&message).contains("sk-abc"));
    }
}
