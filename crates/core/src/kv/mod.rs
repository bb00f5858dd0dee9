//! Paged KV cache: block pool, block hashing and the per-request manager (vLLM `v1/core/`).

pub mod block_pool;
mod cache_index;
pub mod events;
pub mod hash;
mod hash_slots;
pub mod manager;

pub use block_pool::{BlockId, BlockPool};
pub use events::{KvCacheEvent, StoredTokens, MEDIUM_GPU};
pub use hash::BlockHash;
pub use manager::{CacheHit, KvCacheManager, PrefixCacheStats};
