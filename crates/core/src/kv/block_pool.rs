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

/// One block's state. The hash is kept as two `u64` halves (a `u128`, aligned to 16 bytes,
/// would make the record 48 bytes instead of 32).
#[derive(Copy, Clone, Debug)]
struct BlockMeta {
    hash_lo: u64,
    hash_hi: u64,
    /// Free-queue links, [`NIL`] when the block is not in the queue.
    prev: u32,
    next: u32,
    ref_cnt: u32,
    hashed: bool,
}

impl Default for BlockMeta {
    fn default() -> Self {
        BlockMeta {
            hash_lo: 0,
            hash_hi: 0,
            prev: NIL,
            next: NIL,
            ref_cnt: 0,
            hashed: false,
        }
    }
}

impl BlockMeta {
    fn hash(&self) -> Option<BlockHash> {
        self.hashed.then_some(BlockHash(
            (self.hash_hi as u128) << 64 | self.hash_lo as u128,
        ))
    }

    fn set_hash(&mut self, h: Option<BlockHash>) {
        self.hashed = h.is_some();
        let v = h.map_or(0, |h| h.0);
        self.hash_lo = v as u64;
        self.hash_hi = (v >> 64) as u64;
    }
}

/// Reads a cached block's hash from the per-block records (for the [`CacheIndex`]).
fn hash_of(meta: &[BlockMeta]) -> impl Fn(BlockId) -> BlockHash + '_ {
    |b| {
        meta[b as usize]
            .hash()
            .expect("a block in the cache index carries a hash")
    }
}

/// Index of a block in the pool.
pub type BlockId = u32;

/// "No link": the block is not in the free queue.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub struct BlockPool {
    num_gpu_blocks: u32,
    enable_caching: bool,
    /// Per block: ref count, hash and free-queue links, in one record so that popping a block
    /// and evicting its hash touch one cache line. Entries `num_gpu_blocks` and `+1` are the
    /// free queue's head and tail sentinels (links only).
    meta: Vec<BlockMeta>,
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
        let mut meta = vec![BlockMeta::default(); n + 2];
        // Queue all blocks in id order, then pop the null block off the head, as vLLM does.
        for (i, m) in meta.iter_mut().enumerate().take(n) {
            m.prev = if i == 0 { head } else { (i - 1) as u32 };
            m.next = if i + 1 == n { tail } else { (i + 1) as u32 };
        }
        meta[head as usize].next = 0;
        meta[tail as usize].prev = (n - 1) as u32;
        let mut pool = BlockPool {
            num_gpu_blocks,
            enable_caching,
            meta,
            num_free: num_gpu_blocks,
            // At most every usable block is cached at once.
            cached: CacheIndex::with_max_blocks(if enable_caching { n } else { 0 }),
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
        self.meta[b as usize].ref_cnt
    }

    pub fn block_hash(&self, b: BlockId) -> Option<BlockHash> {
        self.meta[b as usize].hash()
    }

    fn in_free_queue(&self, b: BlockId) -> bool {
        self.meta[b as usize].prev != NIL
    }

    fn pop_front(&mut self) -> BlockId {
        let head = self.num_gpu_blocks as usize;
        let b = self.meta[head].next;
        debug_assert!(b < self.num_gpu_blocks, "pop from an empty free queue");
        self.unlink(b);
        b
    }

    fn unlink(&mut self, b: BlockId) {
        let (p, n) = (self.meta[b as usize].prev, self.meta[b as usize].next);
        assert!(p != NIL && n != NIL, "block {b} is not in the free queue");
        self.meta[p as usize].next = n;
        self.meta[n as usize].prev = p;
        self.meta[b as usize].prev = NIL;
        self.meta[b as usize].next = NIL;
        self.num_free -= 1;
    }

    fn push_back(&mut self, b: BlockId) {
        let tail = self.num_gpu_blocks + 1;
        let last = self.meta[tail as usize].prev;
        self.meta[last as usize].next = b;
        self.meta[b as usize].prev = last;
        self.meta[b as usize].next = tail;
        self.meta[tail as usize].prev = b;
        self.num_free += 1;
    }

    /// The cached block for `hash`, if any (`get_cached_block`).
    pub fn get_cached_block(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(hash, hash_of(&self.meta))
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
                self.prefetch_next_evictions();
                self.maybe_evict_cached_block(b);
            }
            debug_assert_eq!(self.meta[b as usize].ref_cnt, 0);
            self.meta[b as usize].ref_cnt = 1;
            out.push(b);
        }
        self.debug_check();
    }

    /// Asks the CPU ahead for what the next two blocks handed out will touch
    /// ([`crate::prefetch`]): the index line where the eviction of the head's hash will probe,
    /// and the record of the block after it. A step hands out blocks one or two at a time,
    /// between other requests' work, so by the next call these have arrived; the head's own
    /// record was asked for by the call before (and just written by the unlink). The queue may
    /// change in between (frees, prefix hits); a stale hint only costs a load.
    #[inline]
    fn prefetch_next_evictions(&self) {
        let head = self.meta[self.num_gpu_blocks as usize].next;
        if head >= self.num_gpu_blocks {
            return; // the queue is empty: its head link points at the tail sentinel
        }
        let m = &self.meta[head as usize];
        if let Some(h) = m.hash() {
            self.cached.prefetch(h);
        }
        if m.next < self.num_gpu_blocks {
            crate::prefetch::line(&self.meta[m.next as usize]);
        }
    }

    fn maybe_evict_cached_block(&mut self, b: BlockId) {
        let Some(hash) = self.meta[b as usize].hash() else {
            return;
        };
        let removed = self.cached.remove(hash, b, hash_of(&self.meta));
        if removed {
            self.meta[b as usize].set_hash(None);
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
            if self.meta[b as usize].ref_cnt == 0 && b != Self::NULL_BLOCK {
                self.unlink(b);
            }
            self.meta[b as usize].ref_cnt += 1;
        }
        self.debug_check();
    }

    /// Drops one reference on each block, in eviction order (first = evicted first); blocks that
    /// reach zero go to the tail of the free queue (`free_blocks`).
    pub fn free_blocks(&mut self, ordered: impl Iterator<Item = BlockId>) {
        for b in ordered {
            let rc = &mut self.meta[b as usize].ref_cnt;
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
                self.meta[b as usize].hash().is_none(),
                "block {b} is already cached"
            );
            self.meta[b as usize].set_hash(Some(h));
            self.cached.insert(h, b, hash_of(&self.meta));
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
        for m in &mut self.meta {
            m.set_hash(None);
        }
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
        let mut b = self.meta[self.num_gpu_blocks as usize].next;
        while b != tail {
            out.push(b);
            b = self.meta[b as usize].next;
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
        let mut b = self.meta[head as usize].next;
        while b != tail {
            if b >= n {
                return Err(format!("free queue links to invalid block {b}"));
            }
            if seen[b as usize] {
                return Err(format!("block {b} twice in the free queue"));
            }
            seen[b as usize] = true;
            if self.meta[b as usize].prev != prev {
                return Err(format!(
                    "block {b}: prev link {} != {prev}",
                    self.meta[b as usize].prev
                ));
            }
            if b == Self::NULL_BLOCK {
                return Err("null block in the free queue".into());
            }
            if self.meta[b as usize].ref_cnt != 0 {
                return Err(format!(
                    "block {b} free with ref count {}",
                    self.meta[b as usize].ref_cnt
                ));
            }
            count += 1;
            if count > n {
                return Err("free queue has a cycle".into());
            }
            prev = b;
            b = self.meta[b as usize].next;
        }
        if self.meta[tail as usize].prev != prev {
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
            if !in_queue && self.meta[i as usize].ref_cnt == 0 {
                return Err(format!("block {i} has ref count 0 but is not free"));
            }
            if !in_queue && (self.meta[i as usize].prev != NIL || self.meta[i as usize].next != NIL)
            {
                return Err(format!("block {i} not in queue but has links"));
            }
        }
        if self.meta[0].hash().is_some() {
            return Err("null block carries a hash".into());
        }
        let mut in_map = 0usize;
        // A block in the index without a hash reads as hash 0 here and fails the check below.
        let lenient = |b: BlockId| self.meta[b as usize].hash().unwrap_or(BlockHash(0));
        for (h, list) in self.cached.lists(lenient) {
            if list.is_empty() {
                return Err("empty entry in the hash map".into());
            }
            for &b in &list {
                if self.meta[b as usize].hash() != Some(h) {
                    return Err(format!(
                        "hash map entry for block {b} disagrees with the block"
                    ));
                }
                in_map += 1;
            }
        }
        self.cached.check_table(lenient)?;
        if self.cached.num_orphan_duplicates(lenient) != 0 {
            return Err("duplicate blocks listed under a hash with no first block".into());
        }
        let hashed = self.meta[..n as usize]
            .iter()
            .filter(|m| m.hash().is_some())
            .count();
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
