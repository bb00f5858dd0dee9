//! KV-cache bytes per block as vLLM 0.19 lays them out (`v1/kv_cache_interface.py`,
//! `v1/core/kv_cache_utils.py`).
//!
//! - MHA/GQA (`AttentionSpec.real_page_size_bytes`): `2 × block_size × kv_heads_per_rank ×
//!   head_dim × dtype bytes` per layer; `kv_heads_per_rank = max(1, kv_heads / tp)`
//!   (`ModelConfig.get_num_kv_heads`: replicated when there are fewer KV heads than ranks).
//! - MLA (`MLAAttentionSpec`): one latent of `kv_lora_rank + qk_rope_head_dim` per token,
//!   `num_kv_heads = 1` on every rank (replicated, not sharded), no factor 2.
//! - Hybrid full + sliding-window models (gpt-oss) with the hybrid KV-cache manager
//!   (`_get_kv_cache_groups_uniform_page_size`): layers are grouped by attention type into KV
//!   cache groups of `group_size` layers (the smaller type's layer count, or the larger one's
//!   when it is under 1.5× the smaller). One block id costs `page × group_size` bytes and
//!   `num_blocks = available // page // group_size`; every group draws its blocks from that
//!   one pool.

use super::shape::ModelShape;

/// The KV cache's block geometry on one rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Bytes of one block of one layer (vLLM's `page_size_bytes`).
    pub page_bytes: u64,
    /// Layers sharing one block id (vLLM's `group_size`): all layers for uniform models.
    pub group_size: u64,
    /// KV cache groups (1 for uniform models; 2 for gpt-oss: sliding and full).
    pub num_groups: u64,
}

impl KvLayout {
    /// Bytes one block id takes across the layers that share it.
    pub fn block_bytes(&self) -> u64 {
        self.page_bytes * self.group_size
    }
}

impl ModelShape {
    /// KV heads each rank stores (vLLM `get_num_kv_heads`): 1 for MLA.
    pub fn kv_heads_per_rank(&self, tp: u64) -> u64 {
        if self.mla.is_some() {
            1
        } else {
            (self.kv_heads() / tp.max(1)).max(1)
        }
    }

    /// Bytes of K and V for one token in one layer on one rank, in the KV cache dtype (the
    /// model dtype unless `--kv-cache-dtype` says otherwise: 1 byte for FP8, as vLLM's
    /// `FullAttentionSpec.page_size_bytes` uses `get_dtype_size(kv_cache_dtype)`).
    pub fn kv_bytes_per_token_per_layer(&self, tp: u64) -> u64 {
        let b = self.kv_cache_dtype_bytes();
        match &self.mla {
            Some(mla) => mla.latent_dim() * b,
            None => 2 * self.kv_heads_per_rank(tp) * self.head_dim() * b,
        }
    }

    /// Block geometry on one of `tp` ranks.
    pub fn kv_layout(&self, block_size: u64, tp: u64) -> KvLayout {
        let page_bytes = block_size * self.kv_bytes_per_token_per_layer(tp);
        let n = self.num_hidden_layers;
        let sliding = self.num_sliding_layers();
        if sliding == 0 || sliding == n {
            return KvLayout {
                page_bytes,
                group_size: n,
                num_groups: 1,
            };
        }
        // Hybrid: one group per attention type (window sizes differ → different types).
        let counts: Vec<u64> = self
            .layers_per_window()
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        let min = *counts.iter().min().expect("hybrid has layers");
        let max = *counts.iter().max().expect("hybrid has layers");
        let group_size = if (max as f64) < min as f64 * 1.5 {
            max
        } else {
            min
        };
        KvLayout {
            page_bytes,
            group_size,
            num_groups: counts.iter().map(|c| c.div_ceil(group_size)).sum(),
        }
    }

    /// Bytes one block id takes on one of `tp` ranks (K and V of `block_size` tokens for every
    /// layer sharing the block id).
    pub fn bytes_per_block(&self, block_size: u64, tp: u64) -> u64 {
        self.kv_layout(block_size, tp).block_bytes()
    }
}
