//! The prefix cache's hash → block index (vLLM `BlockHashToBlockMap`).
//!
//! vLLM does not de-duplicate identical blocks: several cached blocks may carry one hash, and a
//! lookup returns the earliest inserted one still cached. Here the table holds, per hash, that
//! earliest block only (4 bytes per entry; the hash itself is read from the pool's per-block
//! hashes), and later duplicates wait in a side map, oldest first. Duplicates are rare, so the
//! table a lookup, an insert and an eviction touch stays a few hundred KiB for tens of
//! thousands of cached blocks, instead of megabytes for a map holding hashes and block lists:
//! allocating a block evicts a random entry and caching one inserts another, and each cache
//! miss on a large map cost about as much as the rest of a step's per-token work. The table
//! itself is [`HashSlots`]: one cache line per probe, and a probe's line known ahead.

use super::block_pool::BlockId;
use super::hash::BlockHash;
use super::hash_slots::HashSlots;
use rustc_hash::FxHashMap;

#[derive(Debug)]
pub(super) struct CacheIndex {
    /// The earliest cached block of each hash.
    first: HashSlots,
    /// Blocks cached after another block of the same hash, in insertion order.
    later: FxHashMap<BlockHash, Vec<BlockId>>,
}

impl CacheIndex {
    /// An index for a pool that can cache at most `max_blocks` blocks at once.
    pub(super) fn with_max_blocks(max_blocks: usize) -> CacheIndex {
        CacheIndex {
            first: HashSlots::with_max_len(max_blocks),
            later: FxHashMap::default(),
        }
    }

    /// The earliest cached block of `h`; `hash_of` gives each block's hash.
    pub(super) fn get(
        &self,
        h: BlockHash,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) -> Option<BlockId> {
        self.first
            .find(h, |b| hash_of(b) == h)
            .map(|p| self.first.block(p))
    }

    /// Adds block `b` (whose hash is `h`) after any block already cached under `h`.
    pub(super) fn insert(
        &mut self,
        h: BlockHash,
        b: BlockId,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) {
        if !self.first.insert_if_absent(h, b, |x| hash_of(x) == h) {
            self.later.entry(h).or_default().push(b);
        }
    }

    /// Removes block `b` from under `h`; `false` if it was not there. The next duplicate, if
    /// any, becomes the one lookups return.
    pub(super) fn remove(
        &mut self,
        h: BlockHash,
        b: BlockId,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) -> bool {
        let Some(p) = self.first.find(h, |x| hash_of(x) == h) else {
            return false;
        };
        if self.first.block(p) == b {
            match self.later.get_mut(&h) {
                Some(rest) => {
                    let next = rest.remove(0);
                    if rest.is_empty() {
                        self.later.remove(&h);
                    }
                    // The entry is found by the hash, not by the block, so replacing the
                    // block in place keeps it findable.
                    self.first.replace(p, next);
                }
                None => self.first.remove(p),
            }
            return true;
        }
        let Some(rest) = self.later.get_mut(&h) else {
            return false;
        };
        let Some(i) = rest.iter().position(|&x| x == b) else {
            return false;
        };
        rest.remove(i);
        if rest.is_empty() {
            self.later.remove(&h);
        }
        true
    }

    /// Asks the CPU for the line where a lookup of `h` starts (see [`HashSlots::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self, h: BlockHash) {
        self.first.prefetch(h);
    }

    pub(super) fn clear(&mut self) {
        self.first.clear();
        self.later.clear();
    }

    /// Every `(hash, blocks in insertion order)` (for invariant checks).
    pub(super) fn lists(
        &self,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) -> impl Iterator<Item = (BlockHash, Vec<BlockId>)> + '_ {
        let firsts: Vec<(BlockHash, BlockId)> =
            self.first.blocks().map(|b| (hash_of(b), b)).collect();
        firsts.into_iter().map(move |(h, b)| {
            let mut list = vec![b];
            if let Some(rest) = self.later.get(&h) {
                list.extend_from_slice(rest);
            }
            (h, list)
        })
    }

    /// The table's own invariants (for invariant checks), see [`HashSlots::check`].
    pub(super) fn check_table(&self, hash_of: impl Fn(BlockId) -> BlockHash) -> Result<(), String> {
        self.first.check(hash_of)
    }

    /// Hashes in the side map with no first block (for invariant checks; always 0).
    pub(super) fn num_orphan_duplicates(&self, hash_of: impl Fn(BlockId) -> BlockHash) -> usize {
        self.later
            .keys()
            .filter(|&&h| self.get(h, &hash_of).is_none())
            .count()
    }
}
