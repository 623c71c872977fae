//! The client's request headers for every attempt of a request: the first attempt sends
//! the client's own header map as it is, and a copy is kept for any later one (a retry,
//! a fallback).
//!
//! The copy is a list of name and value pairs, not a second `HeaderMap`: cloning a map
//! copies its index table and every bucket into two new allocations, and dropping it
//! unused (most requests are answered by their first attempt) frees them again, about
//! 900 instructions a request; the list is reference counts in a list this thread
//! emptied before (`SPARE`), allocated once rather than per request. An attempt after
//! the first rebuilds a map from it, which is the rare case.

use std::cell::RefCell;

use http::{HeaderMap, HeaderName, HeaderValue};

type Pairs = Vec<(HeaderName, HeaderValue)>;

/// Emptied lists kept by each thread for its next requests.
const SPARE_LISTS: usize = 8;
/// A list that held more pairs than this (a client sending hundreds of headers) is
/// freed, not kept: a thread keeps at most `SPARE_LISTS` lists of this size.
const SPARE_MAX_PAIRS: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Pairs>> = const { RefCell::new(Vec::new()) };
}

/// An emptied list of this thread's, or a new one.
fn spare_list() -> Pairs {
    SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Empties `pairs` and keeps it for this thread's next request, if there is room.
fn give_back(mut pairs: Pairs) {
    if pairs.capacity() == 0 || pairs.capacity() > SPARE_MAX_PAIRS {
        return;
    }
    pairs.clear();
    // The thread is being torn down, or (never) its list is in use: freed instead.
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < SPARE_LISTS
        {
            spare.push(pairs);
        }
    });
}

/// A copy of the client's headers for the attempts after the first.
pub struct KeptHeaders {
    pairs: Pairs,
    own_sent: bool,
}

impl KeptHeaders {
    /// A copy of `headers`, each value of a repeated header in its order.
    pub fn of(headers: &HeaderMap) -> KeptHeaders {
        let mut pairs = spare_list();
        pairs.reserve(headers.len());
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

impl Drop for KeptHeaders {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.pairs));
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

    #[test]
    fn a_threads_emptied_lists_are_filled_again_and_a_huge_one_is_freed() {
        let own = client_headers();
        let first = KeptHeaders::of(&own);
        let at = first.pairs.as_ptr();
        drop(first);
        let mut second = KeptHeaders::of(&own);
        assert_eq!(second.pairs.as_ptr(), at, "the emptied list is used again");
        let mut own_again = own.clone();
        second.next(&mut own_again);
        assert_eq!(listed(&second.next(&mut own_again)), listed(&own));

        let mut many = HeaderMap::new();
        for i in 0..=SPARE_MAX_PAIRS {
            many.insert(
                HeaderName::try_from(format!("x-h{i}")).expect("name"),
                HeaderValue::from_static("v"),
            );
        }
        drop(KeptHeaders::of(&many));
        let kept = SPARE.with(|spare| spare.borrow().iter().map(Vec::capacity).max());
        assert!(kept.unwrap_or(0) <= SPARE_MAX_PAIRS, "{kept:?}");
    }
}
