//! KV cache events of the block pool against the events vLLM 0.19 emits for the same calls.
//!
//! The expected events are written by hand from vLLM's rules (`v1/core/block_pool.py`):
//!
//! - `cache_full_blocks` (lines 210–318) appends one `BlockStored` per call that caches at least
//!   one block: the new blocks' hashes, the hash of the block before them as the parent (`None`
//!   when caching starts at block 0), `all_token_ids[num_cached·B : num_full·B]`, `block_size`,
//!   `lora_id=None` without LoRA, `medium="GPU"`. `kv_cache_manager.allocate_slots` caches up to
//!   `min(num_computed + num_new_tokens, num_tokens)` tokens right after allocating.
//! - `_maybe_evict_cached_block` (lines 352–390), called by `get_new_blocks` for each popped
//!   block, appends one `BlockRemoved` with that block's hash when the block was cached.
//! - `touch` and `free_blocks` emit nothing: a freed block keeps its hash (lazy eviction).
//! - `reset_prefix_cache` (lines 444–477) appends `AllBlocksCleared` when no block is in use,
//!   and does nothing otherwise.
//!
//! Hashes are llm-emu's own ([`hash_block_tokens`]), not vLLM's sha256 values.

use llm_emu_core::kv::hash::hash_block_tokens;
use llm_emu_core::kv::{BlockHash, BlockId, KvCacheEvent, KvCacheManager, MEDIUM_GPU};
use llm_emu_core::{Nanos, NewRequest, Request, SamplingParams};

const B: usize = 4;

fn request(id: &str, prompt: Vec<u32>) -> Request {
    let new = NewRequest {
        tenant: None,
        request_id: id.to_string(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(prompt),
        sampling: SamplingParams {
            max_tokens: 16,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        arrival: Nanos::ZERO,
    };
    Request::new(new, Nanos::ZERO, B, true)
}

/// Admits a waiting request as the scheduler does: prefix lookup, then slots for the rest of its
/// tokens; its computed tokens then cover everything. `false` if the blocks do not suffice.
fn admit(kv: &mut KvCacheManager, req: &mut Request) -> bool {
    let hit = kv.get_computed_blocks(req);
    let n = req.num_tokens() - hit.num_tokens;
    if !kv.allocate_slots(req, n, Some(&hit)) {
        return false;
    }
    req.num_computed_tokens = req.num_tokens();
    true
}

/// One decode step: the token sampled last step is appended, then one slot is allocated for it.
fn decode(kv: &mut KvCacheManager, req: &mut Request, token: u32) {
    req.append_output_token(token, B, true);
    assert!(kv.allocate_slots(req, 1, None));
    req.num_computed_tokens += 1;
}

fn stored(hashes: &[BlockHash], parent: Option<BlockHash>, tokens: &[u32]) -> KvCacheEvent {
    KvCacheEvent::BlockStored {
        block_hashes: hashes.to_vec(),
        parent_block_hash: parent,
        token_ids: tokens.to_vec(),
        block_size: B,
        lora_id: None,
        medium: Some(MEDIUM_GPU),
    }
}

fn removed(hash: BlockHash) -> KvCacheEvent {
    KvCacheEvent::BlockRemoved {
        block_hashes: vec![hash],
        medium: Some(MEDIUM_GPU),
    }
}

/// The shared-prefix scenario, with events on or off; returns the events and each request's
/// blocks (to check that recording events changes nothing else).
fn scenario(events: bool) -> (Vec<Vec<KvCacheEvent>>, Vec<Vec<BlockId>>) {
    // Null block + 5 usable blocks of 4 tokens.
    let mut kv = KvCacheManager::new(6, B, 64, true, None);
    if events {
        kv.enable_kv_cache_events();
    }
    let mut log = Vec::new();
    let mut blocks = Vec::new();

    // A: 10 prompt tokens, then two decode steps (outputs 100, 101).
    let mut a = request("a", (1..=10).collect());
    assert!(admit(&mut kv, &mut a));
    log.push(kv.take_events());
    decode(&mut kv, &mut a, 100); // 11 tokens known: still 2 full blocks
    log.push(kv.take_events());
    decode(&mut kv, &mut a, 101); // 12 tokens: block 3 becomes full
    log.push(kv.take_events());
    blocks.push(a.kv.blocks.clone());
    kv.free(&mut a);
    log.push(kv.take_events());

    // B shares A's first two blocks, then diverges.
    let mut b = request(
        "b",
        [&(1..=8).collect::<Vec<u32>>()[..], &[20, 21, 22, 23, 24]].concat(),
    );
    assert!(admit(&mut kv, &mut b));
    log.push(kv.take_events());
    blocks.push(b.kv.blocks.clone());

    // C shares nothing and does not fit while B holds 4 of the 5 blocks.
    let mut c = request("c", (50..=61).collect());
    assert!(!admit(&mut kv, &mut c));
    assert!(!kv.reset_prefix_cache(), "blocks are in use");
    log.push(kv.take_events());
    kv.free(&mut b);
    assert!(admit(&mut kv, &mut c));
    log.push(kv.take_events());
    blocks.push(c.kv.blocks.clone());
    kv.free(&mut c);

    assert!(kv.reset_prefix_cache());
    log.push(kv.take_events());
    let again = request("a2", (1..=10).collect());
    assert_eq!(kv.get_computed_blocks(&again).num_tokens, 0);
    (log, blocks)
}

#[test]
fn shared_prefixes_emit_vllms_stored_and_removed_events() {
    let h = |parent, tokens: &[u32]| hash_block_tokens(parent, tokens, None);
    let a0 = h(None, &[1, 2, 3, 4]);
    let a1 = h(Some(a0), &[5, 6, 7, 8]);
    let a2 = h(Some(a1), &[9, 10, 100, 101]);
    let b2 = h(Some(a1), &[20, 21, 22, 23]);
    let c0 = h(None, &[50, 51, 52, 53]);
    let c1 = h(Some(c0), &[54, 55, 56, 57]);
    let c2 = h(Some(c1), &[58, 59, 60, 61]);

    let (log, blocks) = scenario(true);
    let want: Vec<Vec<KvCacheEvent>> = vec![
        // A's prefill: blocks 1, 2 are full (block 3 holds 2 tokens).
        vec![stored(&[a0, a1], None, &[1, 2, 3, 4, 5, 6, 7, 8])],
        // First decode: 11 tokens, nothing new is full.
        vec![],
        // Second decode: block 3 is full; its tokens span prompt and outputs.
        vec![stored(&[a2], Some(a1), &[9, 10, 100, 101])],
        // Freeing keeps the hashes (lazy eviction).
        vec![],
        // B hits a0, a1 (touch: no event), gets blocks 4, 5 (never cached: no removal) and
        // caches its third block, whose parent is A's second.
        vec![stored(&[b2], Some(a1), &[20, 21, 22, 23])],
        // Failed allocation and refused reset: nothing.
        vec![],
        // C pops blocks 3 (a2), 5 (no hash), 4 (b2) in free-queue order, then caches its three.
        vec![
            removed(a2),
            removed(b2),
            stored(&[c0, c1, c2], None, &(50..=61).collect::<Vec<u32>>()),
        ],
        vec![KvCacheEvent::AllBlocksCleared],
    ];
    assert_eq!(log, want);
    assert_eq!(blocks, vec![vec![1, 2, 3], vec![1, 2, 4, 5], vec![3, 5, 4]]);
}

#[test]
fn events_off_record_nothing_and_change_nothing() {
    let (on_log, on_blocks) = scenario(true);
    let (off_log, off_blocks) = scenario(false);
    assert!(on_log.iter().any(|e| !e.is_empty()));
    assert!(off_log.iter().all(Vec::is_empty));
    assert_eq!(on_blocks, off_blocks);
}
