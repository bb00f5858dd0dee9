//! How many KV blocks fit on the GPU, as vLLM derives it at start-up
//! (`v1/worker/gpu_worker.py::determine_available_memory`, `v1/core/kv_cache_utils.py`).
//!
//! `num_gpu_blocks = (gpu_memory × gpu_memory_utilization − weights − peak activations −
//! non-torch memory) / bytes_per_block`, where a block holds K and V of `block_size` tokens for
//! every layer. vLLM measures the activation peak with a dummy forward pass of
//! `max_num_batched_tokens` tokens; llm-emu estimates it from the model's shape (below).
//!
//! Weights bytes come from the parameter count and the checkpoint's weight format
//! ([`params`]); bytes per block from the attention kind and vLLM's KV-cache grouping ([`kv`]).
//! What is estimated rather than measured: the activation peak, the non-torch memory, and the
//! weights' exact bytes (vLLM measures what it loaded).

mod catalog;
mod kv;
mod params;
mod shape;

pub use catalog::{
    builtin_model_names, hf_cache_dirs, release_bases, same_weights_key, ResolvedShape,
    RELEASE_TAGS,
};
pub use kv::KvLayout;
pub use params::ParamCounts;
pub use shape::{
    AttentionBias, KvCacheDtype, LayerKind, MlaShape, ModelShape, MoeShape, OnlineQuantization,
    WeightFormat,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SizingError {
    #[error("model config: {0}")]
    BadConfig(String),
    #[error(
        "unknown model `{name}`: not a config.json path, not in the local Hugging Face cache, \
         not built in (pass --model-config PATH; built in: {known})"
    )]
    UnknownModel { name: String, known: String },
    #[error(
        "no memory left for the KV cache: {gpu_gib:.1} GiB × {utilization} leaves {budget_gib:.2} GiB, \
         weights take {weights_gib:.2} GiB and activations/overheads {other_gib:.2} GiB"
    )]
    NoRoom {
        gpu_gib: f64,
        utilization: f64,
        budget_gib: f64,
        weights_gib: f64,
        other_gib: f64,
    },
    #[error(
        "to serve at least one request with the model's max seq len ({max_model_len}), \
         {needed_gib:.2} GiB KV cache is needed, which is larger than the available KV cache \
         memory ({available_gib:.2} GiB); the estimated maximum model length is {estimated}: \
         raise --gpu-memory-utilization or lower --max-model-len"
    )]
    MaxModelLenTooLong {
        max_model_len: u64,
        needed_gib: f64,
        available_gib: f64,
        estimated: u64,
    },
}

const GIB: f64 = (1u64 << 30) as f64;

/// Memory outside PyTorch's allocator that vLLM subtracts (CUDA context, NCCL, cuBLAS
/// workspaces), bytes. A typical figure from vLLM's start-up logs on a single GPU.
pub const NON_TORCH_BYTES: u64 = 512 << 20;

impl ModelShape {
    /// Peak activation memory of a forward pass over `tokens` tokens, bytes: the widest live
    /// tensors of one layer (the gated MLP's `2 × intermediate` input plus its output — for MoE
    /// layers the fused-MoE intermediate of `tokens × top-k` rows — and the QKV projection) in
    /// the model dtype, plus fp32 logits for the sampled rows. An estimate of what vLLM's
    /// profiling run measures; it is small next to weights and KV on the GPUs emulated
    /// (≈1.3 GiB for Llama-3.1-8B at 8192 tokens).
    pub fn activation_peak_bytes(&self, tokens: u64, max_num_seqs: u64) -> u64 {
        let b = self.dtype_bytes();
        let dense = tokens * 3 * self.intermediate_size * b;
        let moe = self.moe.as_ref().map_or(0, |m| {
            tokens * m.experts_per_token * 3 * m.expert_intermediate_size * b
        });
        let mlp = if self.num_moe_layers() == self.num_hidden_layers {
            moe
        } else {
            dense.max(moe)
        };
        let qkv = tokens * (self.num_attention_heads + 2 * self.kv_heads()) * self.head_dim() * b;
        let residual = 2 * tokens * self.hidden_size * b;
        let logits = max_num_seqs.min(tokens) * self.vocab_size * 4;
        mlp + qkv + residual + logits
    }
}

/// What the block count depends on besides the model.
#[derive(Copy, Clone, Debug)]
pub struct GpuBudget {
    pub gpu_memory_bytes: u64,
    /// `--gpu-memory-utilization` (vLLM 0.19 default 0.9).
    pub gpu_memory_utilization: f64,
    pub tensor_parallel_size: u64,
    /// GPUs each routed expert's weights are spread over (a MoE model's data-parallel group,
    /// DP × TP); at most `tensor_parallel_size` means the TP group
    /// ([`ModelShape::weight_bytes_per_gpu`]).
    pub expert_shards: u64,
    pub block_size: u64,
    pub max_num_batched_tokens: u64,
    pub max_num_seqs: u64,
}

/// vLLM's `num_gpu_blocks` for this model on this GPU (per rank; every rank holds the same
/// number of blocks). For hybrid models it is the pool all KV-cache groups share.
pub fn num_gpu_blocks(shape: &ModelShape, gpu: &GpuBudget) -> Result<u32, SizingError> {
    let tp = gpu.tensor_parallel_size.max(1);
    let budget = gpu.gpu_memory_bytes as f64 * gpu.gpu_memory_utilization;
    let weights = shape.weight_bytes_per_gpu(tp, gpu.expert_shards);
    let other = (shape.activation_peak_bytes(gpu.max_num_batched_tokens, gpu.max_num_seqs)
        + NON_TORCH_BYTES) as f64;
    let available = budget - weights - other;
    // vLLM: `available_memory // page_size // group_size` (`get_num_blocks`).
    let per_block = shape.bytes_per_block(gpu.block_size, tp) as f64;
    if available < 2.0 * per_block {
        return Err(SizingError::NoRoom {
            gpu_gib: gpu.gpu_memory_bytes as f64 / GIB,
            utilization: gpu.gpu_memory_utilization,
            budget_gib: budget / GIB,
            weights_gib: weights / GIB,
            other_gib: other / GIB,
        });
    }
    let blocks = blocks_for_available(shape, gpu.block_size, tp, available as u64);
    Ok(blocks.min(u64::from(u32::MAX)) as u32)
}

/// vLLM's `get_num_blocks`: `available // page_size // group_size`, integer divisions, for
/// `available` bytes of KV memory on one of `tp` ranks.
pub fn blocks_for_available(shape: &ModelShape, block_size: u64, tp: u64, available: u64) -> u64 {
    let layout = shape.kv_layout(block_size, tp);
    available / layout.page_bytes / layout.group_size
}

/// KV-cache bytes one request of `len` tokens needs on one rank, as vLLM's
/// `max_memory_usage_bytes` sums it over layers: full-attention layers hold every token;
/// sliding-window layers at most `window − 1 + max_num_batched_tokens` of them, plus one block
/// (`SlidingWindowSpec.max_memory_usage_bytes`).
pub fn kv_bytes_for_one_request(shape: &ModelShape, gpu: &GpuBudget, len: u64) -> u64 {
    let tp = gpu.tensor_parallel_size.max(1);
    let page = gpu.block_size * shape.kv_bytes_per_token_per_layer(tp);
    shape
        .layers
        .iter()
        .map(|l| {
            match l.sliding_window {
                // + 1: the window need not start at a block boundary.
                Some(w) => {
                    let tokens = (w.saturating_sub(1) + gpu.max_num_batched_tokens).min(len);
                    (tokens.div_ceil(gpu.block_size) + 1) * page
                }
                None => len.div_ceil(gpu.block_size) * page,
            }
        })
        .sum()
}

/// vLLM's start-up check (`check_enough_kv_cache_memory`): the KV cache must hold one request
/// of `max_model_len` tokens; the error gives the longest length that fits, as vLLM's does.
pub fn check_max_model_len(
    shape: &ModelShape,
    gpu: &GpuBudget,
    num_gpu_blocks: u32,
    max_model_len: u64,
) -> Result<(), SizingError> {
    let available = u64::from(num_gpu_blocks)
        * shape.bytes_per_block(gpu.block_size, gpu.tensor_parallel_size.max(1));
    let needed = kv_bytes_for_one_request(shape, gpu, max_model_len);
    if needed <= available {
        return Ok(());
    }
    // Largest length whose need fits (the need grows with the length).
    let (mut lo, mut hi) = (0u64, max_model_len);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if kv_bytes_for_one_request(shape, gpu, mid) <= available {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Err(SizingError::MaxModelLenTooLong {
        max_model_len,
        needed_gib: needed as f64 / GIB,
        available_gib: available as f64 / GIB,
        estimated: lo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_8b_facts() {
        let m = ModelShape::llama_3_1_8b();
        // 8.03 B parameters, as published.
        let p = m.num_parameters() as f64 / 1e9;
        assert!((p - 8.03).abs() < 0.01, "{p}");
        // 2 × 32 layers × 16 tokens × 8 heads × 128 × 2 bytes = 2 MiB per block.
        assert_eq!(m.bytes_per_block(16, 1), 2 << 20);
        assert_eq!(m.bytes_per_block(16, 2), 1 << 20);
    }

    #[test]
    fn blocks_on_a_96_gib_gpu_and_errors() {
        let m = ModelShape::llama_3_1_8b();
        let gpu = GpuBudget {
            expert_shards: 1,
            gpu_memory_bytes: 96 << 30,
            gpu_memory_utilization: 0.9,
            tensor_parallel_size: 1,
            block_size: 16,
            max_num_batched_tokens: 2048,
            max_num_seqs: 128,
        };
        let n = num_gpu_blocks(&m, &gpu).unwrap();
        // (86.4 GiB − 14.96 GiB weights − ~0.9 GiB) / 2 MiB ≈ 36 000 blocks (≈ 578k tokens).
        assert!((35_000..37_000).contains(&n), "{n}");
        let tiny = GpuBudget {
            expert_shards: 1,
            gpu_memory_bytes: 8 << 30,
            ..gpu
        };
        assert!(num_gpu_blocks(&m, &tiny)
            .unwrap_err()
            .to_string()
            .contains("no memory left"));
        assert!(ModelShape::from_hf_config_json("{\"hidden_size\": 1}")
            .unwrap_err()
            .to_string()
            .contains("num_hidden_layers"));
    }

    #[test]
    fn parses_hf_config() {
        let text = r#"{"num_hidden_layers": 36, "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288,
            "vocab_size": 151936, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
            "max_position_embeddings": 40960, "architectures": ["Qwen3ForCausalLM"]}"#;
        let m = ModelShape::from_hf_config_json(text).unwrap();
        assert_eq!(m.bytes_per_block(16, 1), 2 * 36 * 16 * 8 * 128 * 2);
        assert_eq!(m.max_position_embeddings, Some(40960));
    }
}
