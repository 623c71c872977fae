//! The local store's hot entries: those written or read most recently, kept in memory
//! up to a byte budget, so replaying them does not read the disk (a replay is most
//! often of a response kept moments ago: an SDK retry, a re-run batch).
//!
//! Keyed by where the record is on disk, not by its scope: an entry replaced or dropped
//! from the index is simply never asked for again, and ages out. The oldest insert goes
//! first (a replay of an entry does not move it: the budget is small and a re-read is a
//! disk read, not a miss).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::segments::Loc;
use crate::replay::kept::Kept;

/// The most the hot entries may hold: an eighth of `max_bytes`, up to this.
pub const MAX_HOT_BYTES: u64 = 32 << 20;

/// A record's place: its segment and offset.
type Place = (u64, u64);

pub struct Hot {
    entries: HashMap<Place, (Arc<Kept>, u64)>,
    order: VecDeque<Place>,
    bytes: u64,
    budget: u64,
}

impl Hot {
    /// Hot entries for a store of `max_bytes`.
    pub fn for_store(max_bytes: u64) -> Hot {
        Hot {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget: (max_bytes / 8).min(MAX_HOT_BYTES),
        }
    }

    pub fn get(&self, loc: &Loc) -> Option<Arc<Kept>> {
        self.entries
            .get(&(loc.seq, loc.offset))
            .map(|(kept, _)| kept.clone())
    }

    /// Keeps `kept` (the record at `loc`), dropping the oldest entries past the budget.
    /// An entry larger than the whole budget is not kept.
    pub fn insert(&mut self, loc: &Loc, kept: Arc<Kept>) {
        let size = u64::from(loc.head.len);
        if size > self.budget {
            return;
        }
        let place = (loc.seq, loc.offset);
        if let Some((_, old)) = self.entries.insert(place, (kept, size)) {
            self.bytes -= old;
        } else {
            self.order.push_back(place);
        }
        self.bytes += size;
        while self.bytes > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, size)) = self.entries.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }

    /// Drops the entries of segments that were deleted.
    pub fn forget_segments(&mut self, gone: &[u64]) {
        self.entries.retain(|(seq, _), (_, size)| {
            let keep = !gone.contains(seq);
            if !keep {
                self.bytes -= *size;
            }
            keep
        });
        self.order.retain(|(seq, _)| !gone.contains(seq));
    }

    /// Bytes held (tests).
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
