//! How many KV blocks fit on the GPU, as vLLM derives it at start-up
//! (`v1/worker/gpu_worker.py::determine_available_memory`, `v1/core/kv_cache_utils.py`).
//!
//! `num_gpu_blocks = (gpu_memory × gpu_memory_utilization − weights − peak activations −
//! non-torch memory) / bytes_per_block`, where a block holds K and V of `block_size` tokens for
//! every layer. vLLM measures the activation peak with a dummy forward pass of
//! `max_num_batched_tokens` tokens; llm-emu estimates it from the model's shape (below).

use serde::Deserialize;
use thiserror::Error;

/// The facts of a Hugging Face `config.json` that size the KV cache and the weights.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ModelShape {
    pub num_hidden_layers: u64,
    pub hidden_size: u64,
    pub num_attention_heads: u64,
    /// Defaults to `num_attention_heads` (no grouped-query attention).
    #[serde(default)]
    pub num_key_value_heads: Option<u64>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<u64>,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Weight dtype (`torch_dtype` in older configs); bf16 when absent.
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// Newer configs' name for the same.
    #[serde(default)]
    pub dtype: Option<String>,
    /// The model's context length (vLLM's default `max_model_len`).
    #[serde(default)]
    pub max_position_embeddings: Option<u64>,
}

#[derive(Debug, Error)]
pub enum SizingError {
    #[error("model config: {0}")]
    BadConfig(String),
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
}

const GIB: f64 = (1u64 << 30) as f64;

/// Memory outside PyTorch's allocator that vLLM subtracts (CUDA context, NCCL, cuBLAS
/// workspaces), bytes. A typical figure from vLLM's start-up logs on a single GPU.
pub const NON_TORCH_BYTES: u64 = 512 << 20;

impl ModelShape {
    /// Parses a Hugging Face `config.json`; names the missing or malformed field.
    pub fn from_hf_config_json(text: &str) -> Result<ModelShape, SizingError> {
        let shape: ModelShape =
            serde_json::from_str(text).map_err(|e| SizingError::BadConfig(e.to_string()))?;
        if shape.num_hidden_layers == 0 || shape.hidden_size == 0 || shape.num_attention_heads == 0
        {
            return Err(SizingError::BadConfig(
                "layers, hidden size and heads must be positive".into(),
            ));
        }
        Ok(shape)
    }

    /// Llama-3.1-8B (meta-llama/Llama-3.1-8B `config.json`).
    pub fn llama_3_1_8b() -> ModelShape {
        ModelShape {
            num_hidden_layers: 32,
            hidden_size: 4096,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            head_dim: Some(128),
            intermediate_size: 14336,
            vocab_size: 128256,
            tie_word_embeddings: false,
            torch_dtype: Some("bfloat16".into()),
            dtype: None,
            max_position_embeddings: Some(131072),
        }
    }

    pub fn kv_heads(&self) -> u64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Bytes per parameter and per KV element.
    pub fn dtype_bytes(&self) -> u64 {
        match self.dtype.as_deref().or(self.torch_dtype.as_deref()) {
            Some("float32") => 4,
            Some("float8_e4m3fn") | Some("fp8") => 1,
            // bfloat16, float16 and absent.
            _ => 2,
        }
    }

    /// Parameters of a dense decoder (Llama/Qwen/Mistral layout): embeddings, per layer
    /// Q/K/V/O projections, gated MLP and two norms, final norm, LM head unless tied.
    pub fn num_parameters(&self) -> u64 {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim();
        let kv = self.kv_heads() * self.head_dim();
        let attn = h * q + 2 * h * kv + q * h;
        let mlp = 3 * h * self.intermediate_size;
        let per_layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        embed + self.num_hidden_layers * per_layer + h + head
    }

    /// K and V of `block_size` tokens for all layers, on one of `tp` ranks.
    pub fn bytes_per_block(&self, block_size: u64, tp: u64) -> u64 {
        let kv_heads_per_rank = self.kv_heads().div_ceil(tp).max(1);
        2 * self.num_hidden_layers
            * block_size
            * kv_heads_per_rank
            * self.head_dim()
            * self.dtype_bytes()
    }

    /// Peak activation memory of a forward pass over `tokens` tokens, bytes: the widest live
    /// tensors of one layer (the gated MLP's `2 × intermediate` input plus its output, the
    /// QKV projection) in the model dtype, plus fp32 logits for the sampled rows. An estimate of
    /// what vLLM's profiling run measures; it is small next to weights and KV on the GPUs
    /// emulated (≈1.3 GiB for Llama-3.1-8B at 8192 tokens).
    pub fn activation_peak_bytes(&self, tokens: u64, max_num_seqs: u64) -> u64 {
        let b = self.dtype_bytes();
        let mlp = tokens * 3 * self.intermediate_size * b;
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
    pub block_size: u64,
    pub max_num_batched_tokens: u64,
    pub max_num_seqs: u64,
}

/// vLLM's `num_gpu_blocks` for this model on this GPU.
pub fn num_gpu_blocks(shape: &ModelShape, gpu: &GpuBudget) -> Result<u32, SizingError> {
    let tp = gpu.tensor_parallel_size.max(1);
    let budget = gpu.gpu_memory_bytes as f64 * gpu.gpu_memory_utilization;
    let weights = (shape.num_parameters() * shape.dtype_bytes()) as f64 / tp as f64;
    let other = (shape.activation_peak_bytes(gpu.max_num_batched_tokens, gpu.max_num_seqs)
        + NON_TORCH_BYTES) as f64;
    let available = budget - weights - other;
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
    Ok((available / per_block).floor().min(u32::MAX as f64) as u32)
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
