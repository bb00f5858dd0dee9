//! Parameter counts by component and the bytes the weights take in their checkpoint format.

use super::shape::{AttentionBias, ModelShape, WeightFormat};

/// Parameters of a decoder, by component (all layers summed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParamCounts {
    /// Input embedding table.
    pub embedding: u64,
    /// Output projection (0 when tied to the embedding).
    pub lm_head: u64,
    /// Attention projections, their biases, QK norms, sinks and MLA's latent norms.
    pub attention: u64,
    /// Gated MLPs of dense layers.
    pub dense_mlp: u64,
    /// Routed experts of MoE layers (all of them).
    pub routed_experts: u64,
    /// Shared experts of MoE layers.
    pub shared_experts: u64,
    /// Expert routers (gates).
    pub router: u64,
    /// The two RMSNorms per layer and the final norm.
    pub norms: u64,
    /// A multimodal model's vision encoder and projector (loaded, idle for text).
    pub vision: u64,
}

impl ParamCounts {
    pub fn total(&self) -> u64 {
        self.embedding
            + self.lm_head
            + self.attention
            + self.dense_mlp
            + self.routed_experts
            + self.shared_experts
            + self.router
            + self.norms
            + self.vision
    }

    /// Parameters one text token uses: everything but the routed experts it is not sent to
    /// and the vision encoder (embedding table included, as Qwen and DeepSeek count
    /// "activated" parameters).
    pub fn active(&self, shape: &ModelShape) -> u64 {
        let routed = match &shape.moe {
            Some(m) => self.routed_experts * m.experts_per_token / m.num_experts,
            None => 0,
        };
        self.total() - self.routed_experts + routed - self.vision
    }

    /// Linear-layer parameters (the ones quantized checkpoints quantize): attention
    /// projections, dense MLPs and experts.
    fn linear(&self) -> u64 {
        self.attention + self.dense_mlp + self.routed_experts + self.shared_experts
    }
}

impl ModelShape {
    /// Parameters by component, from the config (the layouts of vLLM's Llama, Qwen2/3,
    /// Mixtral, Qwen3-MoE, gpt-oss and DeepSeek-V3 implementations).
    pub fn param_counts(&self) -> ParamCounts {
        let h = self.hidden_size;
        let layers = self.num_hidden_layers;
        let mut c = ParamCounts {
            embedding: self.vocab_size * h,
            lm_head: if self.tie_word_embeddings {
                0
            } else {
                self.vocab_size * h
            },
            norms: layers * 2 * h + h,
            vision: self.vision.as_ref().and_then(|v| v.params).unwrap_or(0),
            ..Default::default()
        };
        c.attention = layers * self.attention_params_per_layer();
        let dense_layers = layers - self.num_moe_layers();
        c.dense_mlp = dense_layers * 3 * h * self.intermediate_size;
        if let Some(m) = &self.moe {
            let moe_layers = self.num_moe_layers();
            let i = m.expert_intermediate_size;
            let bias = if m.biases { 2 * i + h } else { 0 };
            c.routed_experts = moe_layers * m.num_experts * (3 * h * i + bias);
            c.shared_experts = moe_layers * m.shared_experts * 3 * h * i;
            let router_bias = if m.biases || self.mla.is_some() {
                // gpt-oss router bias; DeepSeek-V3's e_score_correction_bias.
                m.num_experts
            } else {
                0
            };
            c.router = moe_layers * (h * m.num_experts + router_bias);
        }
        c
    }

    fn attention_params_per_layer(&self) -> u64 {
        let h = self.hidden_size;
        let heads = self.num_attention_heads;
        if let Some(mla) = &self.mla {
            let qk_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
            let q = match mla.q_lora_rank {
                // q_a_proj, q_a_layernorm, q_b_proj.
                Some(r) => h * r + r + r * heads * qk_head,
                None => h * heads * qk_head,
            };
            // kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj.
            let kv = h * mla.latent_dim()
                + mla.kv_lora_rank
                + mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim);
            return q + kv + heads * mla.v_head_dim * h;
        }
        let d = self.head_dim();
        let q = heads * d;
        let kv = self.kv_heads() * d;
        let mut p = h * q + 2 * h * kv + q * h;
        p += match self.attention_bias {
            AttentionBias::None => 0,
            AttentionBias::Qkv => q + 2 * kv,
            AttentionBias::All => q + 2 * kv + h,
        };
        if self.qk_norm {
            p += 2 * d;
        }
        if self.attention_sinks {
            p += heads;
        }
        p
    }

    /// Parameters of the model as vLLM loads it (multi-token-prediction layers are not loaded).
    pub fn num_parameters(&self) -> u64 {
        self.param_counts().total()
    }

    /// Parameters one token activates (see [`ParamCounts::active`]).
    pub fn num_active_parameters(&self) -> u64 {
        self.param_counts().active(self)
    }

    /// Bytes per weight of the linear layers the checkpoint quantizes (fractional for
    /// sub-byte formats, scales included): 1 + 4/block² for block FP8, 4.25/8 for MXFP4,
    /// bits/8 + 4/group for AWQ/GPTQ; the model dtype otherwise.
    pub fn quantized_weight_bytes(&self) -> f64 {
        match self.weight_format {
            WeightFormat::Unquantized => self.dtype_bytes() as f64,
            WeightFormat::Fp8 { block } if block > 0 => 1.0 + 4.0 / (block * block) as f64,
            WeightFormat::Fp8 { .. } => 1.0,
            WeightFormat::Mxfp4Experts => 4.25 / 8.0,
            WeightFormat::IntWeightOnly { bits, group_size } => {
                bits as f64 / 8.0 + 4.0 / group_size as f64
            }
        }
    }

    /// Bytes of all weights in the checkpoint's format, across all ranks: quantized linear
    /// layers at [`Self::quantized_weight_bytes`], the rest (embeddings, LM head, norms,
    /// routers, a vision encoder; for MXFP4 everything but the experts) in the model dtype.
    pub fn weight_bytes(&self) -> f64 {
        let c = self.param_counts();
        let dt = self.dtype_bytes() as f64;
        let q = self.quantized_weight_bytes();
        let quantized = match self.weight_format {
            WeightFormat::Unquantized => 0,
            WeightFormat::Mxfp4Experts => c.routed_experts,
            _ => c.linear(),
        };
        quantized as f64 * q + (c.total() - quantized) as f64 * dt
    }

    /// Bytes of weights one GPU holds: [`Self::weight_bytes`] split over the `tp` GPUs of
    /// the tensor-parallel group, except the routed experts, split over `expert_shards` GPUs
    /// where that is more (a MoE model's data-parallel group, DP × TP: vLLM holds `E / EP`
    /// whole experts per rank with expert parallelism, and each expert's width over DP × TP
    /// without, `FusedMoEParallelConfig.make`).
    pub fn weight_bytes_per_gpu(&self, tp: u64, expert_shards: u64) -> f64 {
        let tp = tp.max(1);
        let experts = self.param_counts().routed_experts as f64
            * match self.weight_format {
                WeightFormat::Unquantized => self.dtype_bytes() as f64,
                _ => self.quantized_weight_bytes(),
            };
        (self.weight_bytes() - experts) / tp as f64 + experts / expert_shards.max(tp) as f64
    }
}
