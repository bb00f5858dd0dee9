//! Seeded randomized tests of the paged KV cache against vLLM 0.19's semantics.
//!
//! 1. [`BlockPool`] driven directly, compared after every operation with a deliberately naive
//!    shadow model of vLLM's `BlockPool` + `FreeKVCacheBlockQueue` + `BlockHashToBlockMap`
//!    (a `VecDeque` free queue with O(n) removal, the hash map as a `Vec` in insertion order).
//!    Free-queue order, free count, ref counts, per-block hashes and every lookup must agree
//!    exactly, which pins down LRU order, reverse-order freeing, lazy eviction and "earliest
//!    inserted duplicate wins".
//! 2. [`KvCacheManager`] driven with real [`Request`]s by a miniature scheduler: shared prompt
//!    prefixes, cache salts, chunked prefills, decodes, preemption and frees. After every
//!    operation: the pool's invariants, block holders vs. ref counts, per-request block tables
//!    and cached prefixes, the *token content* of every cached block (a hit must reuse blocks
//!    that hold exactly the request's tokens under the same salt), hit shape, eviction order of
//!    frees and the prefix-cache counters.

use llm_emu_core::kv::hash::hash_block_tokens;
use llm_emu_core::kv::{
    BlockHash, BlockId, BlockPool, CacheHit, KvCacheEvent, KvCacheManager, PrefixCacheStats,
    StoredTokens, MEDIUM_GPU,
};
use llm_emu_core::{Nanos, NewRequest, Request, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::collections::VecDeque;

// ---------------------------------------------------------------------------------------------
// 1. BlockPool vs. a naive shadow of vLLM's block pool
// ---------------------------------------------------------------------------------------------

/// vLLM's block pool written the slow, obvious way (`block_pool.py`, `kv_cache_utils.py`).
struct ShadowPool {
    caching: bool,
    ref_cnt: Vec<u32>,
    hash: Vec<Option<BlockHash>>,
    /// `FreeKVCacheBlockQueue`: head = next to be allocated.
    free: VecDeque<BlockId>,
    /// `BlockHashToBlockMap` flattened: `(hash, block)` in insertion order; a lookup returns the
    /// earliest entry for the hash (Python dicts iterate in insertion order).
    map: Vec<(BlockHash, BlockId)>,
    /// The KV cache events vLLM's pool would have queued since they were last compared.
    events: Vec<KvCacheEvent>,
}

impl ShadowPool {
    fn new(n: u32, caching: bool) -> Self {
        // All blocks queued in id order, then the null block popped off the head.
        let mut free: VecDeque<BlockId> = (0..n).collect();
        assert_eq!(free.pop_front(), Some(0));
        ShadowPool {
            caching,
            ref_cnt: vec![0; n as usize],
            hash: vec![None; n as usize],
            free,
            map: Vec::new(),
            events: Vec::new(),
        }
    }

    fn get_cached_block(&self, h: BlockHash) -> Option<BlockId> {
        self.map.iter().find(|(x, _)| *x == h).map(|&(_, b)| b)
    }

    fn get_new_blocks(&mut self, n: u32) -> Vec<BlockId> {
        assert!(n as usize <= self.free.len());
        let mut out = Vec::new();
        for _ in 0..n {
            let b = self.free.pop_front().unwrap();
            if self.caching {
                // `_maybe_evict_cached_block`: pop (hash, this block) from the map, reset the hash.
                if let Some(h) = self.hash[b as usize] {
                    if let Some(i) = self.map.iter().position(|&(x, y)| x == h && y == b) {
                        self.map.remove(i);
                        self.hash[b as usize] = None;
                        self.events.push(KvCacheEvent::BlockRemoved {
                            block_hashes: vec![h],
                            medium: Some(MEDIUM_GPU),
                        });
                    }
                }
            }
            assert_eq!(self.ref_cnt[b as usize], 0);
            self.ref_cnt[b as usize] = 1;
            out.push(b);
        }
        out
    }

    fn touch(&mut self, blocks: &[BlockId]) {
        for &b in blocks {
            if self.ref_cnt[b as usize] == 0 && b != 0 {
                let i = self
                    .free
                    .iter()
                    .position(|&x| x == b)
                    .expect("ref 0 block is in the free queue");
                self.free.remove(i);
            }
            self.ref_cnt[b as usize] += 1;
        }
    }

    /// vLLM's two passes: decrement everything, then append the ones that reached zero in order.
    fn free_blocks(&mut self, ordered: &[BlockId]) {
        for &b in ordered {
            self.ref_cnt[b as usize] -= 1;
        }
        for &b in ordered {
            if self.ref_cnt[b as usize] == 0 && b != 0 {
                self.free.push_back(b);
            }
        }
    }

    /// Caches the blocks and queues one `BlockStored` per non-empty call, null blocks left out of
    /// its hashes (the request-side fields are those of `StoredTokens::default()`).
    fn cache_full_blocks(&mut self, blocks: &[BlockId], hashes: &[BlockHash]) {
        let mut stored = Vec::new();
        for (&b, &h) in blocks.iter().zip(hashes) {
            if b == 0 {
                continue;
            }
            assert!(self.hash[b as usize].is_none());
            self.hash[b as usize] = Some(h);
            self.map.push((h, b));
            stored.push(h);
        }
        if !blocks.is_empty() {
            self.events.push(KvCacheEvent::BlockStored {
                block_hashes: stored,
                parent_block_hash: None,
                token_ids: Vec::new(),
                block_size: 0,
                lora_id: None,
                medium: Some(MEDIUM_GPU),
            });
        }
    }
}

/// The hash of position `i` of synthetic chain `c` (any distinct values do).
fn chain_hash(c: u32, i: usize) -> BlockHash {
    BlockHash(((c as u128 + 1) << 64) | (i as u128 + 1))
}

/// Blocks held by one simulated request. `blocks[j]` for `j < num_cached` carries
/// `chain_hash(chain, start + j)` (or is the null block); the rest carry no hash.
struct Holder {
    blocks: Vec<BlockId>,
    num_cached: usize,
    chain: u32,
    start: usize,
}

const NUM_CHAINS: u32 = 4;
const CHAIN_LEN: usize = 12;

fn assert_pool_matches(p: &BlockPool, s: &ShadowPool, op: u64, what: &str) {
    let ctx = || format!("after op {op} ({what})");
    assert_eq!(
        p.free_queue(),
        Vec::from_iter(s.free.iter().copied()),
        "free queue {}",
        ctx()
    );
    assert_eq!(
        p.num_free_blocks() as usize,
        s.free.len(),
        "free count {}",
        ctx()
    );
    for b in 0..p.num_gpu_blocks() {
        assert_eq!(
            p.ref_cnt(b),
            s.ref_cnt[b as usize],
            "ref count of block {b} {}",
            ctx()
        );
        assert_eq!(
            p.block_hash(b),
            s.hash[b as usize],
            "hash of block {b} {}",
            ctx()
        );
    }
    for c in 0..NUM_CHAINS {
        for i in 0..CHAIN_LEN {
            let h = chain_hash(c, i);
            assert_eq!(
                p.get_cached_block(h),
                s.get_cached_block(h),
                "lookup of chain {c} block {i} {}",
                ctx()
            );
        }
    }
    let total = (p.num_gpu_blocks() - 1) as f64;
    assert!(
        (p.usage() - (1.0 - s.free.len() as f64 / total)).abs() < 1e-12,
        "usage {}",
        ctx()
    );
    p.check_invariants()
        .unwrap_or_else(|e| panic!("{e} {}", ctx()));
}

/// The pool's recorded events equal the shadow's (or are absent with events off).
fn assert_events_match(p: &mut BlockPool, s: &mut ShadowPool, on: bool, op: u64, what: &str) {
    let want = std::mem::take(&mut s.events);
    let got = p.take_events();
    if on {
        assert_eq!(got, want, "KV cache events after op {op} ({what})");
    } else {
        assert!(
            got.is_empty(),
            "events recorded while off, op {op} ({what})"
        );
    }
}

/// Runs `ops` random pool operations and returns how many of each kind ran.
fn run_pool(seed: u64, num_blocks: u32, caching: bool, ops: u64) -> [u64; 6] {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut p = BlockPool::new(num_blocks, caching);
    let mut s = ShadowPool::new(num_blocks, caching);
    // Events on for odd seeds; with them off the pool must record none.
    let events = seed % 2 == 1;
    if events {
        p.enable_kv_cache_events();
    }
    let mut holders: Vec<Holder> = Vec::new();
    let mut counts = [0u64; 6];
    assert_pool_matches(&p, &s, 0, "new");
    for op in 1..=ops {
        let free = s.free.len() as u32;
        let what;
        match rng.random_range(0..100) {
            // A new holder: optional prefix lookup on a chain (touch), then fresh blocks.
            0..=29 => {
                what = "admit";
                counts[0] += 1;
                let chain = rng.random_range(0..NUM_CHAINS);
                let mut hit: Vec<BlockId> = Vec::new();
                // Sliding-window style null blocks in front, rarely (touched, never cached).
                let nulls = if rng.random_ratio(1, 20) {
                    rng.random_range(1..3)
                } else {
                    0
                };
                hit.extend(vec![BlockPool::NULL_BLOCK; nulls]);
                if caching && rng.random_bool(0.7) {
                    let max = rng.random_range(0..=CHAIN_LEN);
                    for i in nulls..max {
                        match p.get_cached_block(chain_hash(chain, i)) {
                            Some(b) => hit.push(b),
                            None => break,
                        }
                    }
                }
                let evictable = hit
                    .iter()
                    .filter(|&&b| b != 0 && s.ref_cnt[b as usize] == 0)
                    .count() as u32;
                if evictable > free {
                    // Not possible: the hit blocks that are free are counted in `free`.
                    unreachable!("evictable hit blocks exceed free blocks");
                }
                let room = free - evictable;
                let want = rng.random_range(0..=room.min(6));
                p.touch(&hit);
                s.touch(&hit);
                let mut blocks = hit.clone();
                let mut fresh = Vec::new();
                p.get_new_blocks(want, &mut fresh);
                assert_eq!(
                    fresh,
                    s.get_new_blocks(want),
                    "get_new_blocks after touch, op {op}"
                );
                blocks.extend_from_slice(&fresh);
                holders.push(Holder {
                    blocks,
                    num_cached: hit.len(),
                    chain,
                    start: 0,
                });
            }
            // Touch one cached block found by a random lookup (any position of any chain).
            30..=39 => {
                what = "touch";
                counts[1] += 1;
                let (c, i) = (
                    rng.random_range(0..NUM_CHAINS),
                    rng.random_range(0..CHAIN_LEN),
                );
                if let Some(b) = p.get_cached_block(chain_hash(c, i)) {
                    p.touch(&[b]);
                    s.touch(&[b]);
                    holders.push(Holder {
                        blocks: vec![b],
                        num_cached: 1,
                        chain: c,
                        start: i,
                    });
                } else {
                    p.touch(&[]);
                    s.touch(&[]);
                }
            }
            // A holder grows (decode / next prefill chunk).
            40..=59 => {
                what = "extend";
                counts[2] += 1;
                if holders.is_empty() {
                    continue;
                }
                let h = rng.random_range(0..holders.len());
                let n = rng.random_range(0..=free.min(3));
                let mut fresh = Vec::new();
                p.get_new_blocks(n, &mut fresh);
                assert_eq!(fresh, s.get_new_blocks(n), "get_new_blocks, op {op}");
                holders[h].blocks.extend_from_slice(&fresh);
            }
            // A holder caches some of its full blocks under its chain's hashes.
            60..=79 => {
                what = "cache";
                counts[3] += 1;
                if !caching || holders.is_empty() {
                    continue;
                }
                let hi = rng.random_range(0..holders.len());
                let h = &mut holders[hi];
                let uncached = h.blocks.len() - h.num_cached;
                let k = rng.random_range(0..=uncached);
                let (lo, hi) = (h.num_cached, h.num_cached + k);
                if h.start + hi > CHAIN_LEN {
                    // Positions past the chain's end get hashes nobody looks up.
                    let hashes: Vec<BlockHash> = (lo..hi)
                        .map(|j| {
                            BlockHash(
                                0xdead_0000 + (h.start + j) as u128 + ((h.chain as u128) << 32),
                            )
                        })
                        .collect();
                    p.cache_full_blocks(&h.blocks[lo..hi], &hashes, StoredTokens::default());
                    s.cache_full_blocks(&h.blocks[lo..hi], &hashes);
                } else {
                    let hashes: Vec<BlockHash> =
                        (lo..hi).map(|j| chain_hash(h.chain, h.start + j)).collect();
                    p.cache_full_blocks(&h.blocks[lo..hi], &hashes, StoredTokens::default());
                    s.cache_full_blocks(&h.blocks[lo..hi], &hashes);
                }
                h.num_cached = hi;
            }
            // A holder finishes: frees tail first (as vLLM's `free`), sometimes in another order.
            80..=97 => {
                what = "free";
                counts[4] += 1;
                if holders.is_empty() {
                    continue;
                }
                let h = holders.swap_remove(rng.random_range(0..holders.len()));
                let mut order = h.blocks;
                match rng.random_range(0..10) {
                    0 => {}
                    1 => {
                        // Any order is legal for the pool; a shuffle checks it is kept.
                        for i in (1..order.len()).rev() {
                            order.swap(i, rng.random_range(0..=i));
                        }
                    }
                    _ => order.reverse(),
                }
                p.free_blocks(order.iter().copied());
                s.free_blocks(&order);
            }
            // Degenerate calls.
            _ => {
                what = "empty";
                counts[5] += 1;
                let mut none = Vec::new();
                p.get_new_blocks(0, &mut none);
                assert!(none.is_empty());
                p.free_blocks(std::iter::empty());
                p.cache_full_blocks(&[], &[], StoredTokens::default());
                p.touch(&[]);
            }
        }
        assert_pool_matches(&p, &s, op, what);
        assert_events_match(&mut p, &mut s, events, op, what);
    }
    // Everything back: the whole pool is free again, in the shadow's order.
    for h in holders.drain(..) {
        let order: Vec<BlockId> = h.blocks.into_iter().rev().collect();
        p.free_blocks(order.iter().copied());
        s.free_blocks(&order);
    }
    assert_pool_matches(&p, &s, ops + 1, "drain");
    assert_eq!(p.num_free_blocks(), num_blocks - 1);
    // Nothing in use: the prefix cache can be reset, and nothing hits after it.
    assert!(p.reset_prefix_cache());
    s.events.push(KvCacheEvent::AllBlocksCleared);
    assert_events_match(&mut p, &mut s, events, ops + 1, "reset");
    for (c, i) in (0..NUM_CHAINS).flat_map(|c| (0..CHAIN_LEN).map(move |i| (c, i))) {
        assert_eq!(p.get_cached_block(chain_hash(c, i)), None);
    }
    p.check_invariants().unwrap();
    counts
}

/// Operations per seed.
const POOL_OPS: u64 = 100_000;

#[test]
fn block_pool_matches_shadow_model() {
    // (seed, blocks incl. the null block, prefix caching)
    let cases = [
        (1, 2, true),
        (2, 5, true),
        (3, 17, true),
        (4, 64, true),
        (5, 12, false),
    ];
    for (seed, blocks, caching) in cases {
        let c = run_pool(seed, blocks, caching, POOL_OPS);
        eprintln!(
            "pool seed {seed} blocks {blocks} caching {caching}: {POOL_OPS} ops \
             (admit {}, touch {}, extend {}, cache {}, free {}, empty {})",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. KvCacheManager with Requests
// ---------------------------------------------------------------------------------------------

struct Sim {
    rng: Pcg64,
    bs: usize,
    max_model_len: usize,
    mgr: KvCacheManager,
    prefixes: Vec<Vec<u32>>,
    /// Waiting (no blocks, nothing computed) and running requests, with their target length.
    waiting: Vec<(Request, usize)>,
    running: Vec<(Request, usize)>,
    next_id: u64,
    /// What each cached block holds: the salt and every token from the request's start to the
    /// block's end. Set when a request first shows the block as cached, cleared on eviction.
    content: Vec<Option<(Option<String>, Vec<u32>)>>,
    stats: PrefixCacheStats,
    counts: KvCounts,
}

#[derive(Default, Debug)]
struct KvCounts {
    ops: u64,
    arrivals: u64,
    admissions: u64,
    admissions_refused: u64,
    hits_blocks: u64,
    prefill_chunks: u64,
    decodes: u64,
    preemptions: u64,
    finished: u64,
    aborted: u64,
    cache_calls: u64,
}

fn cdiv(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Block hashes of `tokens` computed independently of `Request`.
fn expected_hashes(tokens: &[u32], bs: usize, salt: Option<&str>) -> Vec<BlockHash> {
    let mut out: Vec<BlockHash> = Vec::new();
    for (i, chunk) in tokens.chunks_exact(bs).enumerate() {
        out.push(hash_block_tokens(
            out.last().copied(),
            chunk,
            if i == 0 { salt } else { None },
        ));
    }
    out
}

fn placeholder_request() -> Request {
    let new = NewRequest {
        tenant: None,
        request_id: String::new(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(vec![0u32]),
        sampling: SamplingParams::default(),
        priority: 0,
        cache_salt: None,
        arrival: Nanos::ZERO,
    };
    Request::new(new, Nanos::ZERO, 1, false)
}

fn all_tokens(r: &Request) -> Vec<u32> {
    (0..r.num_tokens()).map(|i| r.token(i)).collect()
}

impl Sim {
    fn new(seed: u64, bs: usize, num_gpu_blocks: u32, max_model_len: usize, caching: bool) -> Sim {
        let mut rng = Pcg64::seed_from_u64(seed);
        let prefixes = (0..6)
            .map(|_| {
                let len = rng.random_range(0..=3 * bs + 2);
                (0..len).map(|_| rng.random_range(0..50)).collect()
            })
            .collect();
        Sim {
            rng,
            bs,
            max_model_len,
            mgr: KvCacheManager::new(num_gpu_blocks, bs, max_model_len, caching, None),
            prefixes,
            waiting: Vec::new(),
            running: Vec::new(),
            next_id: 0,
            content: vec![None; num_gpu_blocks as usize],
            stats: PrefixCacheStats::default(),
            counts: KvCounts::default(),
        }
    }

    fn caching(&self) -> bool {
        self.mgr.enable_caching()
    }

    fn arrive(&mut self) {
        let rng = &mut self.rng;
        let mut prompt = self.prefixes[rng.random_range(0..self.prefixes.len())].clone();
        let suffix = rng.random_range(if prompt.is_empty() { 1 } else { 0 }..=2 * self.bs + 1);
        // A tiny alphabet makes unrelated suffixes collide too.
        prompt.extend((0..suffix).map(|_| rng.random_range(0..3)));
        let cap = (self.mgr.pool().num_gpu_blocks() as usize - 1) * self.bs;
        let limit = self.max_model_len.min(cap);
        if prompt.len() >= limit {
            prompt.truncate(limit - 1);
        }
        let target = rng.random_range(prompt.len() + 1..=(prompt.len() + 3 * self.bs).min(limit));
        let max_tokens = (target - prompt.len()) as u32;
        let salt = match rng.random_range(0..10) {
            0 => Some("a".to_string()),
            1 => Some("b".to_string()),
            2 => Some(String::new()),
            _ => None,
        };
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        let new = NewRequest {
            tenant: None,
            request_id: id,
            prompt_token_ids: llm_emu_core::PromptTokens::from(prompt),
            sampling: SamplingParams {
                max_tokens,
                ..Default::default()
            },
            priority: 0,
            cache_salt: salt,
            arrival: Nanos::ZERO,
        };
        let req = Request::new(new, Nanos::ZERO, self.bs, self.caching());
        self.check_request_hashes(&req);
        self.waiting.push((req, target));
        self.counts.arrivals += 1;
    }

    fn check_request_hashes(&self, r: &Request) {
        if !self.caching() {
            assert!(r.block_hashes.is_empty());
            return;
        }
        let want = expected_hashes(&all_tokens(r), self.bs, r.cache_salt.as_deref());
        assert_eq!(r.block_hashes, want, "block hashes of {}", r.request_id);
    }

    /// The free-block cost of giving `r` `num_tokens` slots on top of `hit` (computed by hand).
    fn blocks_needed(&self, r: &Request, num_tokens: usize, hit: &[BlockId]) -> usize {
        let required = cdiv(num_tokens.min(self.max_model_len), self.bs);
        let have = r.kv.blocks.len() + hit.len();
        let evictable = hit
            .iter()
            .filter(|&&b| self.mgr.pool().ref_cnt(b) == 0)
            .count();
        required.saturating_sub(have) + evictable
    }

    fn snapshot(&self) -> (Vec<BlockId>, Vec<u32>) {
        let p = self.mgr.pool();
        (
            p.free_queue(),
            (0..p.num_gpu_blocks()).map(|b| p.ref_cnt(b)).collect(),
        )
    }

    fn admit(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.waiting.len());
        let (mut req, target) = self.waiting.swap_remove(i);
        assert!(req.kv.blocks.is_empty() && req.num_computed_tokens == 0);
        let hit: CacheHit = self.mgr.get_computed_blocks(&req);
        if self.caching() {
            if req.num_preemptions > 0 {
                self.stats.preempted_requests += 1;
                self.stats.preempted_queries += req.num_tokens() as u64;
                self.stats.preempted_hits += hit.num_tokens as u64;
            } else {
                self.stats.requests += 1;
                self.stats.queries += req.num_tokens() as u64;
                self.stats.hits += hit.num_tokens as u64;
            }
        }
        self.check_hit(&req, &hit);
        self.counts.hits_blocks += hit.blocks.len() as u64;

        let remaining = req.num_tokens() - hit.num_tokens;
        let n = if self.rng.random_bool(0.5) {
            remaining
        } else {
            self.rng.random_range(1..=remaining)
        };
        let free = self.mgr.num_free_blocks() as usize;
        let fits_full = self.mgr.can_fit_full_sequence(&req, &hit);
        assert_eq!(
            fits_full,
            self.blocks_needed(&req, req.num_tokens(), &hit.blocks) <= free,
            "can_fit_full_sequence"
        );
        let expect_ok = self.blocks_needed(&req, hit.num_tokens + n, &hit.blocks) <= free;
        let reserve_full = self.rng.random_bool(0.5);
        if reserve_full && !fits_full {
            self.counts.admissions_refused += 1;
            self.waiting.push((req, target));
            return;
        }
        let before = self.snapshot();
        let ok = self.allocate(&mut req, n, Some(&hit));
        assert_eq!(
            ok, expect_ok,
            "allocate_slots on admission of {}",
            req.request_id
        );
        if !ok {
            assert_eq!(
                self.snapshot(),
                before,
                "a refused allocation changed the pool"
            );
            assert!(req.kv.blocks.is_empty() && req.kv.num_cached_blocks == 0);
            self.counts.admissions_refused += 1;
            self.waiting.push((req, target));
            return;
        }
        assert_eq!(
            &req.kv.blocks[..hit.blocks.len()],
            &hit.blocks[..],
            "hit blocks lead the block table"
        );
        req.num_computed_tokens = hit.num_tokens + n;
        self.counts.admissions += 1;
        self.after_compute(&mut req);
        self.running.push((req, target));
        self.finish_if_done(self.running.len() - 1);
    }

    fn check_hit(&self, req: &Request, hit: &CacheHit) {
        let bs = self.bs;
        if !self.caching() {
            assert!(hit.blocks.is_empty() && hit.num_tokens == 0);
            return;
        }
        assert_eq!(
            hit.num_tokens,
            hit.blocks.len() * bs,
            "a hit is whole blocks"
        );
        assert!(
            hit.num_tokens < req.num_tokens(),
            "a hit never covers the last token"
        );
        let pool = self.mgr.pool();
        let tokens = all_tokens(req);
        for (i, &b) in hit.blocks.iter().enumerate() {
            assert_ne!(b, BlockPool::NULL_BLOCK);
            assert_eq!(
                pool.block_hash(b),
                Some(req.block_hashes[i]),
                "hit block {i} carries the request's hash"
            );
            assert_eq!(
                pool.get_cached_block(req.block_hashes[i]),
                Some(b),
                "hit uses the earliest cached copy"
            );
            let (salt, held) = self.content[b as usize]
                .as_ref()
                .expect("a cached block has recorded content");
            assert_eq!(
                salt, &req.cache_salt,
                "hit block {b} was cached under another salt"
            );
            assert_eq!(
                held[..],
                tokens[..(i + 1) * bs],
                "hit block {b} holds other tokens"
            );
        }
        // Longest: the next block (if it may be hit at all) is not cached.
        let max_blocks = (req.num_tokens() - 1) / bs;
        if hit.blocks.len() < max_blocks {
            assert_eq!(
                pool.get_cached_block(req.block_hashes[hit.blocks.len()]),
                None,
                "hit stopped early"
            );
        }
    }

    /// What the engine does once tokens are scheduled: a step whose computed tokens reach the
    /// known ones samples a token.
    fn after_compute(&mut self, req: &mut Request) {
        if req.num_computed_tokens == req.num_tokens() {
            let tok = self.rng.random_range(0..3);
            req.append_output_token(tok, self.bs, self.caching());
            self.check_request_hashes(req);
            if self.rng.random_bool(0.3) {
                // The async path caches what became full once the token is known.
                self.counts.cache_calls += 1;
                let upto = req.num_computed_tokens;
                self.mgr.cache_blocks(req, upto);
            }
        }
    }

    fn finish_if_done(&mut self, i: usize) {
        let (req, target) = &self.running[i];
        if req.num_tokens() >= *target {
            self.counts.finished += 1;
            self.free_running(i);
        }
    }

    /// Frees running request `i`; checks that the blocks it alone held join the tail of the free
    /// queue in reverse order (tail of the chain evicted first).
    fn free_running(&mut self, i: usize) -> Request {
        let (mut req, _) = self.running.swap_remove(i);
        self.record_content(&req);
        let pool = self.mgr.pool();
        let freed: Vec<BlockId> = req
            .kv
            .blocks
            .iter()
            .rev()
            .copied()
            .filter(|&b| pool.ref_cnt(b) == 1)
            .collect();
        let before = pool.num_free_blocks() as usize;
        self.mgr.free(&mut req);
        let q = self.mgr.pool().free_queue();
        assert_eq!(q.len(), before + freed.len());
        assert_eq!(
            &q[before..],
            &freed[..],
            "freed blocks join the free queue tail first"
        );
        assert!(req.kv.blocks.is_empty() && req.kv.num_cached_blocks == 0);
        req
    }

    /// `allocate_slots`, forgetting the recorded content of the blocks it takes from the free
    /// queue: their old hashes are evicted, whatever they are cached under next.
    fn allocate(&mut self, req: &mut Request, n: usize, hit: Option<&CacheHit>) -> bool {
        let old = req.kv.blocks.len() + hit.map_or(0, |h| h.blocks.len());
        let ok = self.mgr.allocate_slots(req, n, hit);
        if ok {
            for &b in &req.kv.blocks[old..] {
                self.content[b as usize] = None;
            }
        }
        ok
    }

    /// Records (or checks) the content of `r`'s cached blocks: the salt and all tokens from the
    /// request's start to the block's end. Two requests sharing a block must agree on both.
    fn record_content(&mut self, r: &Request) {
        let tokens = all_tokens(r);
        for (j, &b) in r.kv.blocks.iter().enumerate().take(r.kv.num_cached_blocks) {
            let mine = (r.cache_salt.clone(), tokens[..(j + 1) * self.bs].to_vec());
            match &self.content[b as usize] {
                None => self.content[b as usize] = Some(mine),
                Some(c) => assert_eq!(
                    c, &mine,
                    "block {b} shared by {} holds other tokens",
                    r.request_id
                ),
            }
        }
    }

    fn step_running(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.running.len());
        let (req, _) = &self.running[i];
        let remaining = req.num_tokens() - req.num_computed_tokens;
        assert!(
            remaining > 0,
            "a running request always has a token to compute"
        );
        let n = if remaining == 1 || self.rng.random_bool(0.5) {
            remaining
        } else {
            self.rng.random_range(1..=remaining)
        };
        loop {
            let (req, _) = &self.running[i];
            let need = self.blocks_needed(req, req.num_computed_tokens + n, &[]);
            let expect = need <= self.mgr.num_free_blocks() as usize;
            let before = self.snapshot();
            let mut req = std::mem::replace(&mut self.running[i].0, placeholder_request());
            let ok = self.allocate(&mut req, n, None);
            self.running[i].0 = req;
            assert_eq!(ok, expect, "allocate_slots for a running request");
            if ok {
                break;
            }
            assert_eq!(
                self.snapshot(),
                before,
                "a refused allocation changed the pool"
            );
            // Preempt someone (the last running request, as FCFS does; maybe this one).
            let victim = self.running.len() - 1;
            self.preempt(victim);
            if victim == i {
                return;
            }
            self.check_all("preempt in step");
        }
        let (mut req, target) = self.running.swap_remove(i);
        if remaining == 1 && n == 1 {
            self.counts.decodes += 1;
        } else {
            self.counts.prefill_chunks += 1;
        }
        req.num_computed_tokens += n;
        self.after_compute(&mut req);
        self.running.push((req, target));
        self.finish_if_done(self.running.len() - 1);
    }

    fn preempt(&mut self, i: usize) {
        let target = self.running[i].1;
        let mut req = self.free_running(i);
        req.num_computed_tokens = 0;
        req.num_preemptions += 1;
        self.counts.preemptions += 1;
        self.waiting.push((req, target));
    }

    fn abort(&mut self) {
        if self.rng.random_bool(0.5) && !self.running.is_empty() {
            let i = self.rng.random_range(0..self.running.len());
            self.free_running(i);
            self.counts.aborted += 1;
        } else if !self.waiting.is_empty() {
            let i = self.rng.random_range(0..self.waiting.len());
            self.waiting.swap_remove(i);
            self.counts.aborted += 1;
        }
    }

    fn cache_some(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.running.len());
        let req = &mut self.running[i].0;
        let upto = self.rng.random_range(0..=req.num_computed_tokens);
        self.counts.cache_calls += 1;
        self.mgr.cache_blocks(req, upto);
    }

    fn check_all(&mut self, what: &str) {
        let ctx = format!("op {} ({what})", self.counts.ops);
        let pool = self.mgr.pool();
        pool.check_invariants()
            .unwrap_or_else(|e| panic!("{e} after {ctx}"));
        let n = pool.num_gpu_blocks() as usize;
        // Evicted blocks lose their recorded content.
        for b in 0..n {
            if pool.block_hash(b as BlockId).is_none() {
                self.content[b] = None;
            }
        }
        let mut holders = vec![0u32; n];
        for (r, _) in &self.running {
            let blocks = &r.kv.blocks;
            assert_eq!(
                blocks.len(),
                cdiv(r.num_computed_tokens.min(self.max_model_len), self.bs),
                "{} holds the wrong number of blocks after {ctx}",
                r.request_id
            );
            assert!(r.num_computed_tokens <= r.num_tokens());
            let mut sorted = blocks.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                blocks.len(),
                "{} holds a block twice",
                r.request_id
            );
            assert!(r.kv.num_cached_blocks <= blocks.len());
            for (j, &b) in blocks.iter().enumerate() {
                assert_ne!(b, BlockPool::NULL_BLOCK);
                holders[b as usize] += 1;
                if j < r.kv.num_cached_blocks {
                    assert_eq!(
                        pool.block_hash(b),
                        Some(r.block_hashes[j]),
                        "cached block {j} of {} after {ctx}",
                        r.request_id
                    );
                } else if self.caching() {
                    assert_eq!(
                        pool.block_hash(b),
                        None,
                        "uncached block {j} of {} carries a hash",
                        r.request_id
                    );
                }
            }
        }
        for (r, _) in &self.waiting {
            assert!(r.kv.blocks.is_empty() && r.num_computed_tokens == 0);
        }
        let running = std::mem::take(&mut self.running);
        for (r, _) in &running {
            self.record_content(r);
        }
        self.running = running;
        let pool = self.mgr.pool();
        for (b, &held) in holders.iter().enumerate().skip(1) {
            assert_eq!(
                pool.ref_cnt(b as BlockId),
                held,
                "block {b}: ref count vs holders after {ctx}"
            );
        }
        assert_eq!(
            self.mgr.prefix_cache_stats(),
            self.stats,
            "prefix cache stats after {ctx}"
        );
    }

    fn run(&mut self, ops: u64) {
        for _ in 0..ops {
            self.counts.ops += 1;
            let what = match self.rng.random_range(0..100) {
                0..=14 => {
                    if self.waiting.len() + self.running.len() < 12 {
                        self.arrive();
                    }
                    "arrive"
                }
                15..=34 => {
                    self.admit();
                    "admit"
                }
                35..=89 => {
                    self.step_running();
                    "step"
                }
                90..=94 => {
                    self.cache_some();
                    "cache"
                }
                _ => {
                    self.abort();
                    "abort"
                }
            };
            self.check_all(what);
        }
        // Drain: everything frees back to an empty pool.
        while !self.running.is_empty() {
            self.free_running(0);
        }
        self.check_all("drain");
        let p = self.mgr.pool();
        assert_eq!(p.num_free_blocks(), p.num_gpu_blocks() - 1);
        assert_eq!(self.mgr.usage(), 0.0);
    }
}

/// Operations per seed.
const MANAGER_OPS: u64 = 100_000;

#[test]
fn kv_cache_manager_with_requests() {
    // (seed, block size, blocks incl. null, max_model_len, prefix caching)
    let cases = [
        (21, 4, 24, 64, true),
        (22, 16, 12, 160, true),
        (23, 1, 16, 30, true),
        (24, 4, 9, 32, true),
        (25, 4, 33, 96, true),
        (26, 4, 20, 64, false),
    ];
    for (seed, bs, blocks, mml, caching) in cases {
        let mut sim = Sim::new(seed, bs, blocks, mml, caching);
        sim.run(MANAGER_OPS);
        let st = sim.mgr.prefix_cache_stats();
        eprintln!(
            "manager seed {seed} bs {bs} blocks {blocks} mml {mml} caching {caching}: {:?}; {st:?}",
            sim.counts
        );
        if caching {
            assert!(
                sim.counts.hits_blocks > 0,
                "no prefix hits: the test does not exercise sharing"
            );
        }
        assert!(
            sim.counts.preemptions > 0,
            "no preemptions: the cache is too large for the test"
        );
    }
}
