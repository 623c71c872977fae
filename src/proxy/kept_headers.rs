//! The client's request headers for every attempt of a request: the first attempt sends
//! the client's own header map as it is, and a copy is kept for any later one (a retry,
//! a fallback).
//!
//! The copy is a list of name and value pairs, not a second `HeaderMap`: cloning a map
//! copies its index table and every bucket into two new allocations, and dropping it
//! unused (most requests are answered by their first attempt) frees them again, about
//! 900 instructions a request; the list is one allocation and reference counts. An
//! attempt after the first rebuilds a map from it, which is the rare case.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A copy of the client's headers for the attempts after the first.
pub struct KeptHeaders {
    pairs: Vec<(HeaderName, HeaderValue)>,
    own_sent: bool,
}

impl KeptHeaders {
    /// A copy of `headers`, each value of a repeated header in its order.
    pub fn of(headers: &HeaderMap) -> KeptHeaders {
        let mut pairs = Vec::with_capacity(headers.len());
        pairs.extend(headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        KeptHeaders {
            pairs,
            own_sent: false,
        }
    }

    /// The headers for the request's next attempt: the first time the client's own map
    /// `own` (taken, so it is left empty), then a map rebuilt from the copy.
    pub fn next(&mut self, own: &mut HeaderMap) -> HeaderMap {
        if !self.own_sent {
            self.own_sent = true;
            return std::mem::take(own);
        }
        let mut map = HeaderMap::with_capacity(self.pairs.len());
        for (name, value) in &self.pairs {
            map.append(name.clone(), value.clone());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-tag", HeaderValue::from_static("first"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk-test"));
        h.append("x-tag", HeaderValue::from_static("second"));
        h.insert("x-custom", HeaderValue::from_static("kept"));
        h
    }

    fn listed(map: &HeaderMap) -> Vec<(String, String)> {
        map.iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect()
    }

    #[test]
    fn the_first_attempt_sends_the_clients_own_map_and_later_ones_an_equal_copy() {
        let mut own = client_headers();
        let want = listed(&own);
        let mut kept = KeptHeaders::of(&own);

        let first = kept.next(&mut own);
        assert_eq!(listed(&first), want);
        assert!(
            own.is_empty(),
            "the client's map went with the first attempt"
        );

        for _ in 0..2 {
            let later = kept.next(&mut own);
            assert_eq!(listed(&later), want, "repeated values stay in order");
        }
    }

    #[test]
    fn a_later_attempt_is_unchanged_by_what_the_first_did_to_its_map() {
        let mut own = client_headers();
        let mut kept = KeptHeaders::of(&own);
        let mut first = kept.next(&mut own);
        first.remove("authorization");
        first.insert("x-custom", HeaderValue::from_static("rewritten"));
        let later = kept.next(&mut own);
        assert_eq!(later["authorization"], "Bearer sk-test");
        assert_eq!(later["x-custom"], "kept");
    }
}
