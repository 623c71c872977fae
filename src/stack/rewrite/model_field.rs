//! The `model` of a JSON request body, found and replaced without touching another byte.
//!
//! serde_json parses the whole body, so a `"model"` inside a string, a message or a
//! nested object is never mistaken for it, and hands back the exact span of the
//! top-level value (`RawValue` borrows it from the body). The new value is spliced into
//! that span: the body is never re-serialised, so key order, whitespace, escapes and
//! numbers reach the upstream exactly as the client wrote them.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Where a body's top-level `model` is.
#[derive(Debug, PartialEq)]
pub(crate) enum ModelField<'a> {
    /// A string at this byte range of the body (quotes included), and its value.
    At {
        span: Range<usize>,
        value: Cow<'a, str>,
    },
    /// A JSON object without `model`: its `{` is at `open`; `empty` when it has no members.
    Absent { open: usize, empty: bool },
}

/// Why a body's model cannot be rewritten (the body is then sent as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRewritable {
    /// Not JSON, or JSON with a duplicate top-level `model`.
    NotJson,
    /// JSON, but not an object.
    NotAnObject,
    /// `model` is there but is not a string.
    ModelNotAString,
}

#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow, default)]
    model: Field<'a>,
}

/// The raw `model` value; `null` counts as present (it is not a place to insert one).
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Field(Some(raw)))
    }
}

/// Finds the top-level `model` of `body`.
pub(crate) fn find(body: &[u8]) -> Result<ModelField<'_>, NotRewritable> {
    let open = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(NotRewritable::NotJson)?;
    // A struct also deserialises from a JSON array: only an object will do.
    if body[open] != b'{' {
        return Err(match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => NotRewritable::NotAnObject,
            Err(_) => NotRewritable::NotJson,
        });
    }
    let top: TopLevel<'_> = serde_json::from_slice(body).map_err(|_| NotRewritable::NotJson)?;
    let Some(raw) = top.model.0 else {
        let empty = body[open + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'}');
        return Ok(ModelField::Absent { open, empty });
    };
    let text = raw.get();
    // `raw` borrows from `body`: its offset is where it sits. Checked, not assumed.
    let start = (text.as_ptr() as usize)
        .checked_sub(body.as_ptr() as usize)
        .filter(|s| body.get(*s..s + text.len()) == Some(text.as_bytes()))
        .ok_or(NotRewritable::NotJson)?;
    let value: Cow<'_, str> =
        serde_json::from_str(text).map_err(|_| NotRewritable::ModelNotAString)?;
    Ok(ModelField::At {
        span: start..start + text.len(),
        value,
    })
}

/// `body` with the bytes at `span` replaced by `model` as a JSON string.
pub(crate) fn replaced(body: &[u8], span: Range<usize>, model: &str) -> Bytes {
    let quoted = quoted(model);
    let mut out = BytesMut::with_capacity(body.len() - span.len() + quoted.len());
    out.put_slice(&body[..span.start]);
    out.put_slice(quoted.as_bytes());
    out.put_slice(&body[span.end..]);
    out.freeze()
}

/// `body` (an object without `model`) with `"model":"…"` as its first member.
pub(crate) fn inserted(body: &[u8], open: usize, empty: bool, model: &str) -> Bytes {
    let quoted = quoted(model);
    let mut out = BytesMut::with_capacity(body.len() + quoted.len() + 10);
    out.put_slice(&body[..=open]);
    out.put_slice(b"\"model\":");
    out.put_slice(quoted.as_bytes());
    if !empty {
        out.put_u8(b',');
    }
    out.put_slice(&body[open + 1..]);
    out.freeze()
}

/// A JSON string literal for `s`.
fn quoted(s: &str) -> String {
    // Serialising a `str` cannot fail; the fallback keeps this total anyway.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

#[cfg(test)]
#[path = "model_field_tests.rs"]
mod tests;
