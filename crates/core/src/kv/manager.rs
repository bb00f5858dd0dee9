//! The KV cache manager for one KV cache group (vLLM `v1/core/kv_cache_manager.py`,
//! `kv_cache_coordinator.py`, and `single_type_kv_cache_manager.py`'s `FullAttentionManager`,
//! or its `SlidingWindowManager` for a model every layer of which attends within one window).
//!
//! With a sliding window, a request's blocks that lie wholly behind the window are freed as it
//! advances and replaced by the null block in its block list, and a prefix hit is the run of
//! cached blocks, searched from the right, that covers the window (`find_longest_cache_hit`).
//! The hot paths' shortcuts assume blocks are only ever added, so they are off then.
//!
//! A request's blocks live in the request itself ([`crate::request::RequestBlocks`]); the manager
//! owns the pool and the prefix-cache statistics.

use super::block_pool::{BlockId, BlockPool};
use super::events::{KvCacheEvent, StoredTokens};
use crate::request::Request;
use serde::Serialize;

/// Prefix-cache lookups, in tokens (vLLM `PrefixCacheStats`). `queries`/`hits` count requests
/// seen for the first time; `preempted_*` count lookups of requests resuming after preemption.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrefixCacheStats {
    pub requests: u64,
    pub queries: u64,
    pub hits: u64,
    pub preempted_requests: u64,
    pub preempted_queries: u64,
    pub preempted_hits: u64,
}

/// The result of a prefix lookup: blocks to reuse and the tokens they cover.
#[derive(Debug, Default)]
pub struct CacheHit {
    pub blocks: Vec<BlockId>,
    pub num_tokens: usize,
}

#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    /// `log2(block_size)` when the block size is a power of two (as vLLM's usually are): block
    /// counts are then shifts instead of divisions, which run once or more per request per
    /// step.
    block_shift: Option<u32>,
    max_model_len: usize,
    stats: PrefixCacheStats,
    /// Whether the hot paths' shortcuts are taken ([`Self::set_fast_paths`]).
    fast_paths: bool,
    /// The attention window, tokens, of the one group's layers (`None`: full attention).
    sliding_window: Option<usize>,
}

/// The request's tokens `start..end` (prompt then outputs), as the prompt part and the output
/// part (vLLM `all_token_ids[start:end]`), without copying. Only KV cache events read them:
/// the engine keeps the prompt ids of every request while events are on.
fn token_range(req: &Request, start: usize, end: usize) -> [&[u32]; 2] {
    let prompt = req
        .prompt_token_ids()
        .expect("KV cache events need the prompt ids: enable events before adding requests");
    let output = req
        .output_token_ids()
        .expect("outputs are drawn while KV cache events are on");
    let np = prompt.len();
    [
        &prompt[start.min(np)..end.min(np)],
        &output[start.saturating_sub(np)..end.saturating_sub(np)],
    ]
}

impl KvCacheManager {
    pub fn new(
        num_gpu_blocks: u32,
        block_size: usize,
        max_model_len: usize,
        enable_caching: bool,
        sliding_window: Option<usize>,
    ) -> Self {
        KvCacheManager {
            pool: BlockPool::new(num_gpu_blocks, enable_caching),
            block_size,
            block_shift: block_size
                .is_power_of_two()
                .then_some(block_size.trailing_zeros()),
            max_model_len,
            stats: PrefixCacheStats::default(),
            fast_paths: true,
            sliding_window,
        }
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks needed to hold `tokens` tokens (`cdiv(tokens, block_size)`).
    pub(crate) fn blocks_for(&self, tokens: usize) -> usize {
        match self.block_shift {
            Some(s) => (tokens >> s) + usize::from(tokens & (self.block_size - 1) != 0),
            None => tokens.div_ceil(self.block_size),
        }
    }

    /// Full blocks within `tokens` tokens (`tokens // block_size`).
    pub(crate) fn full_blocks(&self, tokens: usize) -> usize {
        match self.block_shift {
            Some(s) => tokens >> s,
            None => tokens / self.block_size,
        }
    }

    pub fn enable_caching(&self) -> bool {
        self.pool.enable_caching()
    }

    /// Tokens before the window of the next token to compute, after `num_computed` tokens:
    /// attention skips them, so their whole blocks can go (`get_num_skipped_tokens`; 0 for
    /// full attention).
    fn num_skipped_tokens(&self, num_computed: usize) -> usize {
        match self.sliding_window {
            Some(w) => (num_computed + 1).saturating_sub(w),
            None => 0,
        }
    }

    pub fn usage(&self) -> f64 {
        self.pool.usage()
    }

    pub fn num_free_blocks(&self) -> u32 {
        self.pool.num_free_blocks()
    }

    /// Cumulative prefix-cache statistics since the engine started.
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.stats
    }

    /// Longest run of cached full blocks at the start of the request, never covering its last
    /// token (so at least one token is computed and sampled from). Recorded in the statistics on
    /// every call, admitted or not, as vLLM does (`get_computed_blocks`).
    pub fn get_computed_blocks(&mut self, req: &Request) -> CacheHit {
        if !self.pool.enable_caching() {
            return CacheHit::default();
        }
        let max_cache_hit_length = req.num_tokens() - 1;
        let max_blocks = max_cache_hit_length / self.block_size;
        let blocks = match self.sliding_window {
            None => req
                .block_hashes
                .iter()
                .take(max_blocks)
                .map_while(|&h| self.pool.get_cached_block(h))
                .collect(),
            Some(w) => self.windowed_cache_hit(req, max_blocks, w),
        };
        let num_tokens = blocks.len() * self.block_size;
        if req.num_preemptions > 0 {
            self.stats.preempted_requests += 1;
            self.stats.preempted_queries += req.num_tokens() as u64;
            self.stats.preempted_hits += num_tokens as u64;
        } else {
            self.stats.requests += 1;
            self.stats.queries += req.num_tokens() as u64;
            self.stats.hits += num_tokens as u64;
        }
        CacheHit { blocks, num_tokens }
    }

    /// The prefix hit of a windowed group (`SlidingWindowManager.find_longest_cache_hit`):
    /// [`window_hit_run`] over the request's first `max_blocks` blocks, with null blocks before
    /// a run that covers the window.
    fn windowed_cache_hit(&self, req: &Request, max_blocks: usize, window: usize) -> Vec<BlockId> {
        let needed = (window - 1).div_ceil(self.block_size);
        let hashes = &req.block_hashes[..max_blocks.min(req.block_hashes.len())];
        let cached = |i: usize| self.pool.get_cached_block(hashes[i]);
        let (start, end) = window_hit_run(hashes.len(), needed, |i| cached(i).is_some());
        let mut blocks = vec![BlockPool::NULL_BLOCK; start];
        blocks.extend((start..end).map(|i| cached(i).expect("looked up")));
        blocks
    }

    /// Blocks to take from the free queue to give the request `num_tokens` slots after
    /// `total_computed` computed tokens (its own and the hit's), counting cached-but-free hit
    /// blocks, which leave the queue when touched, except those behind the window
    /// (`get_num_blocks_to_allocate`).
    fn num_blocks_to_allocate(
        &self,
        req: &Request,
        num_tokens: usize,
        hit: &[BlockId],
        total_computed: usize,
    ) -> usize {
        let required = self.blocks_for(num_tokens);
        let held = req.kv.blocks.len();
        let skipped = self.full_blocks(self.num_skipped_tokens(total_computed));
        let new_blocks = required.saturating_sub(skipped.max(held + hit.len()));
        let evictable = hit
            .iter()
            .skip(skipped.saturating_sub(held))
            .filter(|&&b| self.pool.ref_cnt(b) == 0 && b != BlockPool::NULL_BLOCK)
            .count();
        new_blocks + evictable
    }

    /// Frees the request's blocks that lie wholly behind the window of the token after
    /// `total_computed` tokens, from the last of them back to the first not yet freed, and puts
    /// the null block in their place (`remove_skipped_blocks`). Nothing for full attention.
    fn remove_skipped_blocks(&mut self, req: &mut Request, total_computed: usize) {
        let skipped = self.num_skipped_tokens(total_computed);
        if skipped == 0 {
            return;
        }
        let n = self.full_blocks(skipped).min(req.kv.blocks.len());
        self.pool.free_blocks(
            req.kv.blocks[..n]
                .iter_mut()
                .rev()
                .take_while(|b| **b != BlockPool::NULL_BLOCK)
                .map(|b| std::mem::replace(b, BlockPool::NULL_BLOCK)),
        );
    }

    /// Whether the whole known sequence (prompt, and outputs of a resumed request) fits the free
    /// blocks: the admission gate of `scheduler_reserve_full_isl` (`can_fit_full_sequence`).
    pub fn can_fit_full_sequence(&self, req: &Request, hit: &CacheHit) -> bool {
        let full = req.num_tokens().min(self.max_model_len);
        let total_computed = (req.num_computed_tokens + hit.num_tokens).min(self.max_model_len);
        self.num_blocks_to_allocate(req, full, &hit.blocks, total_computed)
            <= self.pool.num_free_blocks() as usize
    }

    /// Reserves slots for `num_new_tokens` more tokens after the computed ones (and the prefix
    /// hit `hit`, for a request being admitted); caches the blocks that become full. `false`
    /// when the free blocks do not suffice, with nothing changed (`allocate_slots`).
    #[inline]
    pub fn allocate_slots(
        &mut self,
        req: &mut Request,
        num_new_tokens: usize,
        hit: Option<&CacheHit>,
    ) -> bool {
        assert!(num_new_tokens > 0, "allocate_slots needs tokens");
        if hit.is_none() && self.fits_held_blocks(req, num_new_tokens) {
            return true;
        }
        self.allocate_slots_general(req, num_new_tokens, hit)
    }

    /// [`Self::allocate_slots`]'s general path (vLLM's arithmetic step by step).
    #[inline(never)]
    fn allocate_slots_general(
        &mut self,
        req: &mut Request,
        num_new_tokens: usize,
        hit: Option<&CacheHit>,
    ) -> bool {
        let (hit_blocks, hit_tokens): (&[BlockId], usize) = match hit {
            Some(h) => (&h.blocks, h.num_tokens),
            None => (&[], 0),
        };
        let num_local_computed = req.num_computed_tokens + hit_tokens;
        let total_computed = num_local_computed.min(self.max_model_len);
        let num_tokens_need_slot = (total_computed + num_new_tokens).min(self.max_model_len);
        // Before the check, as vLLM does: blocks behind the window go even if nothing fits.
        self.remove_skipped_blocks(req, total_computed);
        let to_allocate =
            self.num_blocks_to_allocate(req, num_tokens_need_slot, hit_blocks, num_local_computed);
        if to_allocate > self.pool.num_free_blocks() as usize {
            return false;
        }
        if !hit_blocks.is_empty() {
            debug_assert!(req.kv.blocks.is_empty());
            // Hit blocks behind the window are not taken: null blocks stand in for them.
            let skipped = self.full_blocks(self.num_skipped_tokens(num_local_computed));
            let kept = hit_blocks.get(skipped..).unwrap_or(&[]);
            if self.pool.enable_caching() {
                self.pool.touch(kept);
            }
            req.kv
                .blocks
                .extend(std::iter::repeat_n(BlockPool::NULL_BLOCK, skipped));
            req.kv.blocks.extend_from_slice(kept);
            req.kv.num_cached_blocks = req.kv.blocks.len();
        }
        let required = self.blocks_for(num_tokens_need_slot);
        if required > req.kv.blocks.len() {
            let n = (required - req.kv.blocks.len()) as u32;
            self.pool.get_new_blocks(n, &mut req.kv.blocks);
        }
        if self.pool.enable_caching() {
            let num_tokens_to_cache = (total_computed + num_new_tokens).min(req.num_tokens());
            self.cache_blocks(req, num_tokens_to_cache);
        }
        true
    }

    /// [`Self::allocate_slots`] without a prefix hit when the request's blocks already hold
    /// the new tokens' slots and none of its blocks becomes full: nothing to take from the free
    /// queue and nothing to cache, so the answer is `true` with nothing changed, as the general
    /// path's arithmetic also finds. This is the case of a decoding request in 14 of 16 steps
    /// at block size 16 (15 without prefix caching: the others fill a block or take one), so
    /// it is checked first; `false` means "take the general path", never "does not fit".
    #[inline]
    fn fits_held_blocks(&self, req: &Request, num_new_tokens: usize) -> bool {
        if !self.fast_paths() {
            return false;
        }
        let end = req.num_computed_tokens.min(self.max_model_len) + num_new_tokens;
        if end.min(self.max_model_len) > req.kv.blocks.len() * self.block_size {
            return false;
        }
        !self.pool.enable_caching()
            || self.full_blocks(end.min(req.num_tokens())) <= req.kv.num_cached_blocks
    }

    /// Turns the shortcuts of the per-step hot paths ([`Self::allocate_slots`]'s check of the
    /// held blocks) on (the default) or off. Off, every call takes the general path; results
    /// are the same either way, which the engine's equivalence tests check.
    pub(crate) fn set_fast_paths(&mut self, on: bool) {
        self.fast_paths = on;
    }

    /// Whether the shortcuts are on ([`Self::set_fast_paths`]); never with a sliding window,
    /// whose blocks also go as a request advances.
    pub(crate) fn fast_paths(&self) -> bool {
        self.fast_paths && self.sliding_window.is_none()
    }

    /// Blocks [`Self::allocate_slots`] takes from the free queue to compute one more token of
    /// `req` (no prefix hit): 0 or 1 for a decoding request.
    pub(crate) fn blocks_to_decode_one(&self, req: &Request) -> usize {
        self.blocks_to_decode(req, 1)
    }

    /// The blocks a request decoding `steps` tokens in a row, one per step, takes from the
    /// free queue ([`Self::allocate_slots`]' count for each step, summed).
    pub(crate) fn blocks_to_decode(&self, req: &Request, steps: usize) -> usize {
        let tokens =
            (req.num_computed_tokens.min(self.max_model_len) + steps).min(self.max_model_len);
        self.blocks_for(tokens).saturating_sub(req.kv.blocks.len())
    }

    /// Gives the request `n` blocks from the free queue, as [`Self::allocate_slots`] does for
    /// slots it lacks (the caller has checked that the free blocks suffice).
    pub(crate) fn take_blocks(&mut self, req: &mut Request, n: u32) {
        self.pool.get_new_blocks(n, &mut req.kv.blocks);
    }

    /// Hashes and caches the request's blocks that are full within its first `num_tokens`
    /// tokens (`cache_blocks`).
    ///
    /// Called once per request per step: the check that nothing became full is inline, the
    /// caching itself out of line.
    #[inline]
    pub fn cache_blocks(&mut self, req: &mut Request, num_tokens: usize) {
        if !self.pool.enable_caching() {
            return;
        }
        let num_full = self.full_blocks(num_tokens);
        if req.kv.num_cached_blocks >= num_full {
            return;
        }
        self.cache_new_full_blocks(req, num_full);
    }

    /// Caches the request's blocks from its first uncached one up to `num_full` (more than it
    /// has cached).
    #[inline(never)]
    fn cache_new_full_blocks(&mut self, req: &mut Request, num_full: usize) {
        if req.defers_caching() {
            // Counted as cached (the hot paths' arithmetic reads the count), indexed when the
            // request is preempted ([`Self::end_deferred_caching`]).
            req.kv.num_cached_blocks = num_full;
            return;
        }
        let cached = req.kv.num_cached_blocks;
        assert!(
            req.block_hashes.len() >= num_full,
            "block hashes lag the tokens"
        );
        let tokens = StoredTokens {
            parent: cached.checked_sub(1).map(|i| req.block_hashes[i]),
            token_ids: if self.pool.kv_cache_events_enabled() {
                token_range(req, cached * self.block_size, num_full * self.block_size)
            } else {
                [&[], &[]]
            },
            block_size: self.block_size,
        };
        self.pool.cache_full_blocks(
            &req.kv.blocks[cached..num_full],
            &req.block_hashes[cached..num_full],
            tokens,
        );
        req.kv.num_cached_blocks = num_full;
    }

    /// Clears the prefix cache if no block is in use; `false` otherwise (`reset_prefix_cache`).
    /// The cumulative [`PrefixCacheStats`] are kept: vLLM only flags its hit-rate window for a
    /// reset, and its Prometheus counters keep counting.
    pub fn reset_prefix_cache(&mut self) -> bool {
        self.pool.reset_prefix_cache()
    }

    /// Starts recording the pool's KV cache events (see [`super::events`]).
    pub fn enable_kv_cache_events(&mut self) {
        self.pool.enable_kv_cache_events();
    }

    /// The pool's events since the last call, oldest first (`take_events`).
    pub fn take_events(&mut self) -> Vec<KvCacheEvent> {
        self.pool.take_events()
    }

    /// Hashes and caches the blocks of a request whose caching was deferred, as many as are
    /// counted as cached, before it is preempted: its own lookup when it is admitted again
    /// finds them as it would have found them cached on the way. Nothing for other requests.
    pub fn end_deferred_caching(&mut self, req: &mut Request) {
        if !req.end_deferred_caching(self.block_size) {
            return;
        }
        let n = std::mem::take(&mut req.kv.num_cached_blocks);
        if n > 0 {
            self.cache_new_full_blocks(req, n);
        }
    }

    /// Releases all of the request's blocks, tail first, so that the tail of a chain is evicted
    /// before its head (`free`).
    pub fn free(&mut self, req: &mut Request) {
        // Null blocks (behind a window) hold nothing to free.
        self.pool.free_blocks(
            req.kv
                .blocks
                .drain(..)
                .rev()
                .filter(|&b| b != BlockPool::NULL_BLOCK),
        );
        req.kv.num_cached_blocks = 0;
    }
}

/// The blocks `start..end` of a windowed prefix hit among `n` blocks, `is_cached(i)` telling
/// whether block `i` is cached (`SlidingWindowManager.find_longest_cache_hit`): the rightmost
/// run of `needed` cached blocks (`cdiv(window − 1, block_size)`, which covers the window of
/// the token after it; for a one-token window, `needed` is 0 and the rightmost cached block
/// alone matches); else the run of cached blocks from the first, however short.
///
/// vLLM walks every block from the right. The same run is found here with fewer lookups: a
/// candidate run whose first block is not cached is passed over whole, and a miss inside one
/// moves the next candidate to end before it, since no run that holds a miss can match.
fn window_hit_run(n: usize, needed: usize, is_cached: impl Fn(usize) -> bool) -> (usize, usize) {
    if needed == 0 {
        return match (0..n).rev().find(|&i| is_cached(i)) {
            Some(i) => (i, i + 1),
            None => (0, 0),
        };
    }
    let mut end = n;
    while end >= needed {
        let start = end - needed;
        if !is_cached(start) {
            end = start;
            continue;
        }
        match (start + 1..end).rev().find(|&i| !is_cached(i)) {
            Some(miss) => end = miss,
            None => return (start, end),
        }
    }
    (0, (0..n).take_while(|&i| is_cached(i)).count())
}

#[cfg(test)]
mod tests {
    use super::window_hit_run;
    use proptest::prelude::*;

    /// vLLM's walk (`SlidingWindowManager.find_longest_cache_hit`, one group, block-aligned),
    /// block by block from the right.
    fn vllm_walk(cached: &[bool], needed: usize) -> (usize, usize) {
        let mut run = 0;
        for i in (0..cached.len()).rev() {
            if cached[i] {
                run += 1;
                if run >= needed {
                    return (i, i + run);
                }
            } else {
                run = 0;
            }
        }
        (0, run)
    }

    proptest! {
        #[test]
        fn the_skipping_search_finds_vllms_run(
            cached in proptest::collection::vec(proptest::bool::weighted(0.7), 0..80),
            needed in 0usize..12,
        ) {
            let got = window_hit_run(cached.len(), needed, |i| cached[i]);
            prop_assert_eq!(got, vllm_walk(&cached, needed));
        }
    }
}
