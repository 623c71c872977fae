//! Server-sent events framing, as the standard (WHATWG HTML §9.2) defines it: a line
//! ends at CRLF, LF or a lone CR (any mix in one stream), an event ends at a blank line,
//! a leading BOM is skipped, a `data` field is `data:value`, `data: value` or a bare
//! `data` line. Everything here works on bytes and reads each byte once: the SSE hold
//! runs on every stream, and its buffer is checked again after every frame.

use std::borrow::Cow;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the first event that carries data ends, found as a stream's bytes arrive.
///
/// `scan` is given the whole buffer so far each time (it only grows) and carries on
/// from where it stopped, so a stream read in many frames costs one pass.
#[derive(Debug, Default, Clone)]
pub struct FirstEvent {
    /// Bytes already looked at.
    scanned: usize,
    line_start: usize,
    /// The last byte was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// The event being read has a `data` field.
    has_data: bool,
    past_bom: bool,
    /// Length of the prefix that ends with the first event's blank line.
    found: Option<usize>,
}

impl FirstEvent {
    /// The length of the prefix of `buf` that ends with the blank line closing the
    /// first event with data, once that has arrived.
    pub fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        if self.found.is_some() {
            return self.found;
        }
        if !self.past_bom {
            match skip_bom(buf) {
                None => return None,
                Some(start) => {
                    self.past_bom = true;
                    self.scanned = start;
                    self.line_start = start;
                }
            }
        }
        while self.scanned < buf.len() {
            if self.after_cr {
                self.after_cr = false;
                if buf[self.scanned] == b'\n' {
                    self.scanned += 1;
                    self.line_start = self.scanned;
                    continue;
                }
            }
            let Some(at) = memchr::memchr2(b'\r', b'\n', &buf[self.scanned..]) else {
                self.scanned = buf.len();
                break;
            };
            let end = self.scanned + at;
            let line = &buf[self.line_start..end];
            self.after_cr = buf[end] == b'\r';
            self.scanned = end + 1;
            self.line_start = end + 1;
            if line.is_empty() {
                if self.has_data {
                    self.found = Some(end + 1);
                    return self.found;
                }
            } else if data_value(line).is_some() {
                self.has_data = true;
            }
        }
        None
    }
}

/// Where the stream's content starts: after a BOM, or at 0; `None` while `buf` is too
/// short to tell.
fn skip_bom(buf: &[u8]) -> Option<usize> {
    let n = buf.len().min(BOM.len());
    if buf[..n] != BOM[..n] {
        Some(0)
    } else if n == BOM.len() {
        Some(BOM.len())
    } else {
        None
    }
}

/// The value of a `data` field line, if it is one.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data")?;
    match rest.split_first() {
        None => Some(rest),
        Some((b':', value)) => Some(value.strip_prefix(b" ").unwrap_or(value)),
        Some(_) => None,
    }
}

/// The complete lines of `buf` (a line cut off at its end is left out), BOM skipped.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = skip_bom(buf).unwrap_or(buf.len());
    std::iter::from_fn(move || {
        let found = memchr::memchr2(b'\r', b'\n', &buf[at..])?;
        let line = &buf[at..at + found];
        let end = at + found;
        at = if buf[end] == b'\r' && buf.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
        Some(line)
    })
}

/// The data of the first complete event that has any (its `data` lines joined by LF).
pub fn first_event(buf: &[u8]) -> Option<Cow<'_, str>> {
    let mut data: Vec<&[u8]> = Vec::new();
    for line in lines(buf) {
        if line.is_empty() {
            if !data.is_empty() {
                return Some(joined(&data));
            }
        } else if let Some(value) = data_value(line) {
            data.push(value);
        }
    }
    None
}

fn joined<'a>(data: &[&'a [u8]]) -> Cow<'a, str> {
    if let [one] = data {
        return String::from_utf8_lossy(one);
    }
    Cow::Owned(
        data.iter()
            .map(|d| String::from_utf8_lossy(d))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Whether the bytes sent so far end at an event boundary (a blank line, or nothing
/// sent yet), so that an event of backstop's own can follow without joining a
/// half-sent one. Keeps the stream's last three bytes: enough to see two line ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Boundary {
    tail: [u8; 3],
    /// Bytes seen, counted up to 4 (more than `tail` holds).
    seen: u8,
}

impl Boundary {
    pub fn push(&mut self, data: &[u8]) {
        let n = data.len().min(3);
        self.tail.rotate_left(n);
        self.tail[3 - n..].copy_from_slice(&data[data.len() - n..]);
        self.seen = self.seen.saturating_add(n as u8).min(4);
    }

    pub fn at_event_end(&self) -> bool {
        let held = &self.tail[3 - (self.seen as usize).min(3)..];
        if held.is_empty() {
            return true;
        }
        // Take off the last line end (CRLF counts as one), then look for another.
        let before = match held {
            [.., b'\r', b'\n'] => &held[..held.len() - 2],
            [.., b'\r' | b'\n'] => &held[..held.len() - 1],
            _ => return false,
        };
        match before.last() {
            Some(b'\r' | b'\n') => true,
            Some(_) => false,
            // The whole stream so far is one line end: a blank line at the start.
            None => self.seen as usize == held.len(),
        }
    }
}

#[cfg(test)]
mod tests;
