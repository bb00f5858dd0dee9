//! The prefix cache's hash → block index (vLLM `BlockHashToBlockMap`).
//!
//! vLLM does not de-duplicate identical blocks: several cached blocks may carry one hash, and a
//! lookup returns the earliest inserted one still cached. Here the table holds, per hash, that
//! earliest block only (4 bytes per entry; the hash itself is read from the pool's per-block
//! hashes), and later duplicates wait in a side map, oldest first. Duplicates are rare, so the
//! table a lookup, an insert and an eviction touch stays a few hundred KiB for tens of
//! thousands of cached blocks, instead of megabytes for a map holding hashes and block lists:
//! allocating a block evicts a random entry and caching one inserts another, and each cache
//! miss on a large map cost about as much as the rest of a step's per-token work.

use super::block_pool::BlockId;
use super::hash::BlockHash;
use hashbrown::HashTable;
use rustc_hash::FxHashMap;

/// The table's hash of a block hash: the block hash is already uniform (XXH3), so folding its
/// halves suffices; the multiply spreads small hand-made hashes (tests) over the table's bits.
fn slot_hash(h: BlockHash) -> u64 {
    ((h.0 as u64) ^ ((h.0 >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Debug, Default)]
pub(super) struct CacheIndex {
    /// The earliest cached block of each hash.
    first: HashTable<BlockId>,
    /// Blocks cached after another block of the same hash, in insertion order.
    later: FxHashMap<BlockHash, Vec<BlockId>>,
}

impl CacheIndex {
    /// The earliest cached block of `h`; `hash_of` gives each block's hash.
    pub(super) fn get(
        &self,
        h: BlockHash,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) -> Option<BlockId> {
        self.first.find(slot_hash(h), |&b| hash_of(b) == h).copied()
    }

    /// Adds block `b` (whose hash is `h`) after any block already cached under `h`.
    pub(super) fn insert(
        &mut self,
        h: BlockHash,
        b: BlockId,
        hash_of: impl Fn(BlockId) -> BlockHash,
    ) {
        let hasher = |&x: &BlockId| slot_hash(hash_of(x));
        match self.first.find(slot_hash(h), |&x| hash_of(x) == h) {
            Some(_) => self.later.entry(h).or_default().push(b),
            None => {
                self.first.insert_unique(slot_hash(h), b, hasher);
            }
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
        let Ok(entry) = self.first.find_entry(slot_hash(h), |&x| hash_of(x) == h) else {
            return false;
        };
        if *entry.get() == b {
            match self.later.get_mut(&h) {
                Some(rest) => {
                    let next = rest.remove(0);
                    if rest.is_empty() {
                        self.later.remove(&h);
                    }
                    // The entry is found by the hash, not by the block, so replacing the
                    // block in place keeps it findable.
                    *entry.into_mut() = next;
                }
                None => {
                    entry.remove();
                }
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
            self.first.iter().map(|&b| (hash_of(b), b)).collect();
        firsts.into_iter().map(move |(h, b)| {
            let mut list = vec![b];
            if let Some(rest) = self.later.get(&h) {
                list.extend_from_slice(rest);
            }
            (h, list)
        })
    }

    /// Hashes in the side map with no first block (for invariant checks; always 0).
    pub(super) fn num_orphan_duplicates(&self, hash_of: impl Fn(BlockId) -> BlockHash) -> usize {
        self.later
            .keys()
            .filter(|&&h| self.get(h, &hash_of).is_none())
            .count()
    }
}
