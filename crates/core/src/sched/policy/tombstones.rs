//! Lazy removal from a waiting queue. A request removed from the middle of the queue (an
//! abort: a client gone, a timeout) is remembered here and dropped when it reaches the front,
//! so a removal costs O(1) instead of a pass over the queue: a million queued requests aborted
//! one by one at their clients' deadlines took time quadratic in the queue before.
//!
//! A [`ReqKey`] carries its slot's generation, so a remembered key never names a later request.

use crate::sched::store::ReqKey;
use rustc_hash::FxHashSet;

#[derive(Debug, Default)]
pub(super) struct Tombstones {
    keys: FxHashSet<ReqKey>,
}

impl Tombstones {
    /// Remembers `key`, still in the queue, as removed.
    pub(super) fn bury(&mut self, key: ReqKey) {
        let new = self.keys.insert(key);
        debug_assert!(new, "{key:?} removed twice");
    }

    /// Removed requests still in the queue.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether `key` was removed; it is forgotten (the caller drops it from the queue).
    #[inline]
    pub(super) fn take(&mut self, key: ReqKey) -> bool {
        !self.keys.is_empty() && self.keys.remove(&key)
    }
}
