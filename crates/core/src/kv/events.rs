//! KV cache events (vLLM `vllm/distributed/kv_events.py`), emitted by the block pool when
//! `enable_kv_cache_events` is set, as `v1/core/block_pool.py` does:
//!
//! - [`KvCacheEvent::BlockStored`] once per `cache_full_blocks` call that caches at least one
//!   block: the blocks that became full and were hashed, in order;
//! - [`KvCacheEvent::BlockRemoved`] once per cached block evicted from the prefix cache (a free
//!   block with a hash popped for reuse, `_maybe_evict_cached_block`);
//! - [`KvCacheEvent::AllBlocksCleared`] on a successful `reset_prefix_cache`.
//!
//! Block hashes are llm-emu's own [`BlockHash`] values (XXH3-128 over the same inputs, see
//! [`super::hash`]), not vLLM's `sha256_cbor` digests or their 64-bit external form: a consumer
//! can match events with each other and with llm-emu's prefix lookups, not with a real vLLM's.
//! vLLM 0.19's `lora_name` and `extra_keys` fields are left out (llm-emu has no LoRA; the only
//! extra key it hashes is the first block's `cache_salt`).

use super::hash::BlockHash;

/// The storage tier of every block of this pool (vLLM `MEDIUM_GPU`).
pub const MEDIUM_GPU: &str = "GPU";

/// One change to the set of cached blocks (vLLM `KVCacheEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCacheEvent {
    /// Full blocks became cached under `block_hashes`, in sequence order.
    BlockStored {
        /// One hash per newly cached block (the null block, never cached, has none).
        block_hashes: Vec<BlockHash>,
        /// The hash of the request's block just before the first one stored; `None` when the
        /// first stored block starts the sequence.
        parent_block_hash: Option<BlockHash>,
        /// The tokens the stored blocks cover, `block_size` per block.
        token_ids: Vec<u32>,
        /// Tokens per block.
        block_size: usize,
        /// Always `None`: llm-emu serves no LoRA adapters.
        lora_id: Option<u64>,
        /// Always `Some(MEDIUM_GPU)`.
        medium: Option<&'static str>,
    },
    /// Cached blocks left the prefix cache (one hash per event, as vLLM emits them).
    BlockRemoved {
        block_hashes: Vec<BlockHash>,
        medium: Option<&'static str>,
    },
    /// Every cached block left the prefix cache at once.
    AllBlocksCleared,
}

/// What a `BlockStored` event reports besides the blocks' hashes: facts of the request whose
/// blocks are cached, which the pool does not keep. Borrowed, so building one costs nothing
/// while events are off.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoredTokens<'a> {
    /// The hash of the block before the first one cached (`None` at the sequence start).
    pub parent: Option<BlockHash>,
    /// The tokens of the cached blocks, as two slices to concatenate (a request keeps its
    /// prompt and its outputs apart); empty while events are off, when the engine keeps no
    /// prompt ids to give.
    pub token_ids: [&'a [u32]; 2],
    /// Tokens per block.
    pub block_size: usize,
}
