//! The pool of KV cache blocks (vLLM `v1/core/block_pool.py` and `FreeKVCacheBlockQueue` in
//! `kv_cache_utils.py`).
//!
//! - Block 0 is the null block: never allocated, never freed, never hashed.
//! - Free blocks sit in a doubly linked queue, initially in block-id order. Allocation pops from
//!   the head; freeing appends to the tail, so the head holds the least recently freed block.
//! - Eviction is lazy: a free block keeps its hash (and stays findable by prefix lookups) until it
//!   is popped for reuse.
//! - A block found by a prefix lookup is "touched": its ref count rises and, if it was free, it
//!   leaves the queue.
//!
//! The links live in two `Vec<u32>` (O(1) removal from the middle, no allocation per operation).
//!
//! With [`BlockPool::enable_kv_cache_events`], the pool records [`KvCacheEvent`]s where vLLM's
//! pool does (see [`super::events`]); [`BlockPool::take_events`] drains them. Off by default:
//! then no event is built and nothing is allocated for them.

use super::cache_index::CacheIndex;
use super::events::{KvCacheEvent, StoredTokens, MEDIUM_GPU};
use super::hash::BlockHash;

/// Reads a cached block's hash from the per-block hashes (for the [`CacheIndex`]).
fn hash_of(hashes: &[Option<BlockHash>]) -> impl Fn(BlockId) -> BlockHash + '_ {
    |b| hashes[b as usize].expect("a block in the cache index carries a hash")
}

/// Index of a block in the pool.
pub type BlockId = u32;

/// "No link": the block is not in the free queue.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub struct BlockPool {
    num_gpu_blocks: u32,
    enable_caching: bool,
    ref_cnt: Vec<u32>,
    block_hash: Vec<Option<BlockHash>>,
    /// Links of the free queue; index `num_gpu_blocks` is the head sentinel, `+1` the tail.
    prev: Vec<u32>,
    next: Vec<u32>,
    num_free: u32,
    /// Cached blocks by hash (see [`CacheIndex`]).
    cached: CacheIndex,
    /// Recorded events, `None` while events are off (vLLM `kv_event_queue`).
    events: Option<Vec<KvCacheEvent>>,
}

impl BlockPool {
    /// Creates a pool of `num_gpu_blocks` blocks (at least 2: the null block and one usable).
    pub fn new(num_gpu_blocks: u32, enable_caching: bool) -> BlockPool {
        assert!(
            num_gpu_blocks >= 2,
            "a block pool needs the null block and one more"
        );
        let n = num_gpu_blocks as usize;
        let head = num_gpu_blocks;
        let tail = num_gpu_blocks + 1;
        let mut prev = vec![NIL; n + 2];
        let mut next = vec![NIL; n + 2];
        // Queue all blocks in id order, then pop the null block off the head, as vLLM does.
        for i in 0..n {
            prev[i] = if i == 0 { head } else { (i - 1) as u32 };
            next[i] = if i + 1 == n { tail } else { (i + 1) as u32 };
        }
        next[head as usize] = 0;
        prev[tail as usize] = (n - 1) as u32;
        let mut pool = BlockPool {
            num_gpu_blocks,
            enable_caching,
            ref_cnt: vec![0; n],
            block_hash: vec![None; n],
            prev,
            next,
            num_free: num_gpu_blocks,
            cached: CacheIndex::default(),
            events: None,
        };
        let null = pool.pop_front();
        debug_assert_eq!(null, Self::NULL_BLOCK);
        pool
    }

    /// The reserved null block.
    pub const NULL_BLOCK: BlockId = 0;

    pub fn num_gpu_blocks(&self) -> u32 {
        self.num_gpu_blocks
    }

    pub fn num_free_blocks(&self) -> u32 {
        self.num_free
    }

    pub fn enable_caching(&self) -> bool {
        self.enable_caching
    }

    /// `vllm:kv_cache_usage_perc`: the fraction of usable blocks not in the free queue.
    pub fn usage(&self) -> f64 {
        let total = self.num_gpu_blocks - 1;
        if total == 0 {
            return 0.0;
        }
        1.0 - self.num_free as f64 / total as f64
    }

    pub fn ref_cnt(&self, b: BlockId) -> u32 {
        self.ref_cnt[b as usize]
    }

    pub fn block_hash(&self, b: BlockId) -> Option<BlockHash> {
        self.block_hash[b as usize]
    }

    fn in_free_queue(&self, b: BlockId) -> bool {
        self.prev[b as usize] != NIL
    }

    fn pop_front(&mut self) -> BlockId {
        let head = self.num_gpu_blocks as usize;
        let b = self.next[head];
        debug_assert!(b < self.num_gpu_blocks, "pop from an empty free queue");
        self.unlink(b);
        b
    }

    fn unlink(&mut self, b: BlockId) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        assert!(p != NIL && n != NIL, "block {b} is not in the free queue");
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
        self.prev[b as usize] = NIL;
        self.next[b as usize] = NIL;
        self.num_free -= 1;
    }

    fn push_back(&mut self, b: BlockId) {
        let tail = self.num_gpu_blocks + 1;
        let last = self.prev[tail as usize];
        self.next[last as usize] = b;
        self.prev[b as usize] = last;
        self.next[b as usize] = tail;
        self.prev[tail as usize] = b;
        self.num_free += 1;
    }

    /// The cached block for `hash`, if any (`get_cached_block`).
    pub fn get_cached_block(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(hash, hash_of(&self.block_hash))
    }

    /// Pops `n` blocks from the head of the free queue, evicting their old hashes
    /// (`get_new_blocks`). Panics if fewer than `n` are free: callers check first.
    pub fn get_new_blocks(&mut self, n: u32, out: &mut Vec<BlockId>) {
        assert!(
            n <= self.num_free,
            "cannot get {n} free blocks from the pool"
        );
        for _ in 0..n {
            let b = self.pop_front();
            if self.enable_caching {
                self.maybe_evict_cached_block(b);
            }
            debug_assert_eq!(self.ref_cnt[b as usize], 0);
            self.ref_cnt[b as usize] = 1;
            out.push(b);
        }
        self.debug_check();
    }

    fn maybe_evict_cached_block(&mut self, b: BlockId) {
        let Some(hash) = self.block_hash[b as usize] else {
            return;
        };
        let removed = self.cached.remove(hash, b, hash_of(&self.block_hash));
        if removed {
            self.block_hash[b as usize] = None;
            if let Some(events) = &mut self.events {
                events.push(KvCacheEvent::BlockRemoved {
                    block_hashes: vec![hash],
                    medium: Some(MEDIUM_GPU),
                });
            }
        }
    }

    /// Takes a reference on blocks found by a prefix lookup (`touch`).
    pub fn touch(&mut self, blocks: &[BlockId]) {
        for &b in blocks {
            if self.ref_cnt[b as usize] == 0 && b != Self::NULL_BLOCK {
                self.unlink(b);
            }
            self.ref_cnt[b as usize] += 1;
        }
        self.debug_check();
    }

    /// Drops one reference on each block, in eviction order (first = evicted first); blocks that
    /// reach zero go to the tail of the free queue (`free_blocks`).
    pub fn free_blocks(&mut self, ordered: impl Iterator<Item = BlockId>) {
        for b in ordered {
            let rc = &mut self.ref_cnt[b as usize];
            *rc -= 1;
            if *rc == 0 && b != Self::NULL_BLOCK {
                self.push_back(b);
            }
        }
        self.debug_check();
    }

    /// Marks `blocks` (full, not yet hashed) as cached under `hashes` (`cache_full_blocks`).
    /// With events on, records one `BlockStored` for a non-empty `blocks`, with `tokens`'
    /// parent hash and token ids (`block_pool.py` lines 274–318).
    pub fn cache_full_blocks(
        &mut self,
        blocks: &[BlockId],
        hashes: &[BlockHash],
        tokens: StoredTokens<'_>,
    ) {
        debug_assert!(hashes.len() >= blocks.len());
        if blocks.is_empty() {
            return;
        }
        let mut stored = self
            .events
            .as_ref()
            .map(|_| Vec::with_capacity(blocks.len()));
        for (&b, &h) in blocks.iter().zip(hashes) {
            if b == Self::NULL_BLOCK {
                continue;
            }
            if let Some(stored) = &mut stored {
                stored.push(h);
            }
            assert!(
                self.block_hash[b as usize].is_none(),
                "block {b} is already cached"
            );
            self.block_hash[b as usize] = Some(h);
            self.cached.insert(h, b, hash_of(&self.block_hash));
        }
        if let (Some(events), Some(block_hashes)) = (&mut self.events, stored) {
            events.push(KvCacheEvent::BlockStored {
                block_hashes,
                parent_block_hash: tokens.parent,
                token_ids: tokens.token_ids.concat(),
                block_size: tokens.block_size,
                lora_id: None,
                medium: Some(MEDIUM_GPU),
            });
        }
        self.debug_check();
    }

    /// Drops every block's hash, so that no lookup hits until blocks are cached again; refused
    /// (`false`, nothing changed) while any block is in use (`reset_prefix_cache`,
    /// `block_pool.py` lines 444–477). Records `AllBlocksCleared` with events on.
    pub fn reset_prefix_cache(&mut self) -> bool {
        if self.num_free != self.num_gpu_blocks - 1 {
            return false;
        }
        self.cached.clear();
        self.block_hash.fill(None);
        if let Some(events) = &mut self.events {
            events.push(KvCacheEvent::AllBlocksCleared);
        }
        self.debug_check();
        true
    }

    /// Starts recording KV cache events (vLLM `enable_kv_cache_events`); events from before
    /// are not reconstructed. Idempotent.
    pub fn enable_kv_cache_events(&mut self) {
        if self.events.is_none() {
            self.events = Some(Vec::new());
        }
    }

    pub fn kv_cache_events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// The events recorded since the last call, oldest first; empty while events are off
    /// (`take_events`).
    pub fn take_events(&mut self) -> Vec<KvCacheEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Free blocks in queue order, head first (for tests and invariant checks).
    pub fn free_queue(&self) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(self.num_free as usize);
        let tail = self.num_gpu_blocks + 1;
        let mut b = self.next[self.num_gpu_blocks as usize];
        while b != tail {
            out.push(b);
            b = self.next[b as usize];
        }
        out
    }

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.check_invariants() {
            panic!("block pool invariant broken: {e}");
        }
    }

    /// Checks every structural invariant; O(blocks). Runs after each mutation in debug builds.
    ///
    /// - the free queue is a consistent doubly linked list of `num_free` distinct blocks, none of
    ///   them the null block, all with ref count 0;
    /// - every usable block with ref count 0 is in the free queue;
    /// - the hash map and the per-block hashes agree both ways, with no duplicates.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.num_gpu_blocks;
        let (head, tail) = (n, n + 1);
        let mut seen = vec![false; n as usize];
        let mut count = 0u32;
        let mut prev = head;
        let mut b = self.next[head as usize];
        while b != tail {
            if b >= n {
                return Err(format!("free queue links to invalid block {b}"));
            }
            if seen[b as usize] {
                return Err(format!("block {b} twice in the free queue"));
            }
            seen[b as usize] = true;
            if self.prev[b as usize] != prev {
                return Err(format!(
                    "block {b}: prev link {} != {prev}",
                    self.prev[b as usize]
                ));
            }
            if b == Self::NULL_BLOCK {
                return Err("null block in the free queue".into());
            }
            if self.ref_cnt[b as usize] != 0 {
                return Err(format!(
                    "block {b} free with ref count {}",
                    self.ref_cnt[b as usize]
                ));
            }
            count += 1;
            if count > n {
                return Err("free queue has a cycle".into());
            }
            prev = b;
            b = self.next[b as usize];
        }
        if self.prev[tail as usize] != prev {
            return Err("tail sentinel's prev link is stale".into());
        }
        if count != self.num_free {
            return Err(format!(
                "free queue holds {count} blocks, counter says {}",
                self.num_free
            ));
        }
        for i in 1..n {
            let in_queue = seen[i as usize];
            if !in_queue && self.ref_cnt[i as usize] == 0 {
                return Err(format!("block {i} has ref count 0 but is not free"));
            }
            if !in_queue && (self.prev[i as usize] != NIL || self.next[i as usize] != NIL) {
                return Err(format!("block {i} not in queue but has links"));
            }
        }
        if self.block_hash[0].is_some() {
            return Err("null block carries a hash".into());
        }
        let mut in_map = 0usize;
        // A block in the index without a hash reads as hash 0 here and fails the check below.
        let lenient = |b: BlockId| self.block_hash[b as usize].unwrap_or(BlockHash(0));
        for (h, list) in self.cached.lists(lenient) {
            if list.is_empty() {
                return Err("empty entry in the hash map".into());
            }
            for &b in &list {
                if self.block_hash[b as usize] != Some(h) {
                    return Err(format!(
                        "hash map entry for block {b} disagrees with the block"
                    ));
                }
                in_map += 1;
            }
        }
        if self.cached.num_orphan_duplicates(lenient) != 0 {
            return Err("duplicate blocks listed under a hash with no first block".into());
        }
        let hashed = self.block_hash.iter().filter(|h| h.is_some()).count();
        if hashed != in_map {
            return Err(format!(
                "{hashed} blocks carry a hash but {in_map} are in the map"
            ));
        }
        if !self.enable_caching && hashed != 0 {
            return Err("hashes present with prefix caching off".into());
        }
        let _ = self.in_free_queue(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: u128) -> BlockHash {
        BlockHash(x)
    }

    #[test]
    fn allocation_pops_head_in_id_order_and_frees_append_to_tail() {
        let mut p = BlockPool::new(6, true);
        assert_eq!(p.num_free_blocks(), 5);
        assert_eq!(p.free_queue(), vec![1, 2, 3, 4, 5]);
        let mut got = Vec::new();
        p.get_new_blocks(3, &mut got);
        assert_eq!(got, vec![1, 2, 3]);
        // Freed in reverse order, as a request frees: 3, 2, 1 go to the tail in that order.
        p.free_blocks(got.iter().rev().copied());
        assert_eq!(p.free_queue(), vec![4, 5, 3, 2, 1]);
        assert!((p.usage() - 0.0).abs() < 1e-12);
    }

    #[test]
    fn lazy_eviction_keeps_hash_until_reuse() {
        let mut p = BlockPool::new(4, true);
        let mut got = Vec::new();
        p.get_new_blocks(1, &mut got);
        p.cache_full_blocks(&got, &[h(7)], StoredTokens::default());
        p.free_blocks(got.iter().copied());
        assert_eq!(p.get_cached_block(h(7)), Some(1));
        // Touching a free cached block takes it out of the queue.
        p.touch(&[1]);
        assert_eq!(p.num_free_blocks(), 2);
        p.free_blocks([1].into_iter());
        // Reuse pops 2, 3, then 1: only then is the hash evicted.
        let mut more = Vec::new();
        p.get_new_blocks(2, &mut more);
        assert_eq!(p.get_cached_block(h(7)), Some(1));
        p.get_new_blocks(1, &mut more);
        assert_eq!(more, vec![2, 3, 1]);
        assert_eq!(p.get_cached_block(h(7)), None);
        assert_eq!(p.block_hash(1), None);
    }

    #[test]
    fn duplicate_hashes_return_earliest_and_evict_individually() {
        let mut p = BlockPool::new(4, true);
        let mut a = Vec::new();
        p.get_new_blocks(2, &mut a);
        p.cache_full_blocks(&a[..1], &[h(9)], StoredTokens::default());
        p.cache_full_blocks(&a[1..], &[h(9)], StoredTokens::default());
        assert_eq!(p.get_cached_block(h(9)), Some(1));
        p.free_blocks([1].into_iter());
        let mut b = Vec::new();
        p.get_new_blocks(2, &mut b); // 3 then 1: block 1's copy is evicted
        assert_eq!(b, vec![3, 1]);
        assert_eq!(p.get_cached_block(h(9)), Some(2));
        p.check_invariants().unwrap();
    }
}
