//! One memory budget for every request body kept for replay (SPEC §9, "Memory under
//! load"): `retry_buffer_total_bytes`. Without it memory grows with the number of large
//! requests in flight (60 bodies of 10 MiB took 590 MiB), and a sidecar over its memory
//! limit is killed with every call of its app. When the budget is spent a new body is
//! streamed once instead (not retryable), which costs no more memory than any stream.
//!
//! A body's bytes are held by a `BufferPermit` that lives as long as the body: inside
//! the `Bytes` every attempt clones, so they go back to the budget when the last clone is
//! dropped, however the request ends (answered, failed, client gone).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes all kept request bodies may hold together.
#[derive(Debug)]
pub struct BufferBudget {
    limit: AtomicU64,
    held: AtomicU64,
    exhausted: AtomicU64,
}

impl BufferBudget {
    pub fn new(limit: u64) -> Arc<BufferBudget> {
        Arc::new(BufferBudget {
            limit: AtomicU64::new(limit),
            held: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        })
    }

    /// A reload may change the limit; bodies already kept stay kept.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held by kept bodies now (`backstop_retry_buffer_bytes`).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Bodies streamed once for lack of budget (`backstop_retry_buffer_exhausted_total`).
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// An empty permit, to grow as a body is read.
    pub fn permit(self: &Arc<Self>) -> BufferPermit {
        BufferPermit {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Counts a body that is streamed once because the budget was spent.
    pub fn count_exhausted(&self) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bytes of the budget held by one body; given back when dropped.
#[derive(Debug)]
pub struct BufferPermit {
    budget: Arc<BufferBudget>,
    bytes: u64,
}

impl BufferPermit {
    /// Takes `bytes` more from the budget, or nothing (and `false`) if they do not fit.
    pub fn grow(&mut self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }

    /// Gives back what is held beyond `bytes` (a body shorter than announced).
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget
                .held
                .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
        }
    }
}

impl Drop for BufferPermit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_take_within_the_limit_and_give_back_on_drop() {
        let budget = BufferBudget::new(100);
        let mut a = budget.permit();
        assert!(a.grow(60));
        let mut b = budget.permit();
        assert!(!b.grow(50), "over the limit");
        assert_eq!(budget.held(), 60);
        assert!(b.grow(40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        b.shrink_to(10);
        assert_eq!(budget.held(), 10);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_lower_limit_applies_to_new_bytes_only() {
        let budget = BufferBudget::new(100);
        let mut a = budget.permit();
        assert!(a.grow(80));
        budget.set_limit(50);
        assert!(!budget.permit().grow(1));
        drop(a);
        assert!(budget.permit().grow(50));
    }
}
