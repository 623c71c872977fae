//! Large futures boxed where they will live.
//!
//! `Box::pin(future)` builds the future on the stack and then copies all of it into the
//! allocation: for the request path's futures (2–4 KiB, most of it room for later
//! states) that copy is a few hundred instructions a request. Allocated first and
//! then written, the future is built in its box: only the fields its first state
//! holds are stored (measured with `bench/callgrind`; see docs/benchmarks.md).

use std::pin::Pin;

/// `make()`'s value, pinned in a box allocated before `make` runs.
#[inline(always)]
pub fn boxed<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    let slot = Box::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_holds_what_make_built() {
        let boxed = boxed(|| [7u8; 4096]);
        assert!(boxed.iter().all(|&b| b == 7));
        assert_eq!(boxed.len(), 4096);
    }

    #[tokio::test]
    async fn a_boxed_future_runs_to_its_output() {
        let value = 41;
        let future = boxed(|| async move { value + 1 });
        assert_eq!(future.await, 42);
    }
}
