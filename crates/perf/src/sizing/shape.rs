//! A model's architecture as its Hugging Face `config.json` states it: the facts that size the
//! weights and the KV cache and that a roofline needs (projections, MLP or mixture of experts,
//! attention kind per layer, weight format).
//!
//! The keys differ between families (`num_experts` / `num_local_experts` / `n_routed_experts`,
//! `num_experts_per_tok` / `experts_per_token`, ...); [`RawConfig`] reads them all and
//! [`ModelShape::from_hf_config_json`] turns them into one typed shape, naming the key when a
//! required one is missing or inconsistent.

use super::SizingError;
use serde::Deserialize;

/// Mixture-of-experts facts (Mixtral, Qwen3-MoE, gpt-oss, DeepSeek-V3).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeShape {
    /// Routed experts per MoE layer.
    pub num_experts: u64,
    /// Experts each token is routed to (top-k).
    pub experts_per_token: u64,
    /// Intermediate size of one routed expert's gated MLP.
    pub expert_intermediate_size: u64,
    /// Always-on shared experts per MoE layer (DeepSeek `n_shared_experts`), each of
    /// `expert_intermediate_size`.
    pub shared_experts: u64,
    /// Whether expert and router projections carry biases (gpt-oss).
    pub biases: bool,
}

/// Multi-head latent attention (DeepSeek-V2/V3): K and V are cached as one latent vector of
/// `kv_lora_rank + qk_rope_head_dim` per token and layer, shared by all heads.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaShape {
    /// Rank of the query down-projection; `None` projects queries directly (V2-Lite).
    pub q_lora_rank: Option<u64>,
    pub kv_lora_rank: u64,
    pub qk_nope_head_dim: u64,
    pub qk_rope_head_dim: u64,
    pub v_head_dim: u64,
}

impl MlaShape {
    /// Elements cached per token and layer (576 for DeepSeek-V3).
    pub fn latent_dim(&self) -> u64 {
        self.kv_lora_rank + self.qk_rope_head_dim
    }
}

/// What one decoder layer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerKind {
    /// Sliding-window attention over this many tokens; `None` = full attention. Llama 4's
    /// chunked local attention (`attention_chunk_size`) is read as a window of the chunk size:
    /// vLLM groups its KV cache the same way (one group per attention type) and bounds a
    /// request's cached tokens to about the chunk plus one step's tokens, as for a window.
    pub sliding_window: Option<u64>,
    /// A mixture-of-experts MLP (else a dense gated MLP of `intermediate_size`).
    pub moe: bool,
}

/// How the checkpoint stores its weights.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightFormat {
    /// Every weight in the model dtype (`torch_dtype`).
    Unquantized,
    /// FP8 (e4m3) linear layers with one fp32 scale per `block` × `block` tile (DeepSeek-V3:
    /// `quant_method: fp8`, `weight_block_size: [128, 128]`); 0 = per-tensor scale. Embeddings,
    /// norms, routers and the LM head stay in the model dtype.
    Fp8 { block: u64 },
    /// MXFP4 experts (gpt-oss): 4-bit values with one 8-bit scale per 32, i.e. 4.25 bits per
    /// expert weight; everything else in the model dtype.
    Mxfp4Experts,
    /// Weight-only integer quantization of linear layers (AWQ, GPTQ): `bits` per weight plus an
    /// fp16 scale and zero point per `group_size` weights.
    IntWeightOnly { bits: u64, group_size: u64 },
}

/// The facts of a Hugging Face `config.json` that size the weights and the KV cache and drive
/// the roofline latency model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelShape {
    /// `model_type` (`llama`, `qwen2`, `qwen3`, `qwen3_moe`, `mistral`, `mixtral`, `gpt_oss`,
    /// `deepseek_v3`, ...), when the config names it.
    pub model_type: Option<String>,
    pub num_hidden_layers: u64,
    pub hidden_size: u64,
    pub num_attention_heads: u64,
    /// Defaults to `num_attention_heads` (no grouped-query attention).
    pub num_key_value_heads: Option<u64>,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<u64>,
    /// The dense MLP's intermediate size (dense layers of MoE models use it too).
    pub intermediate_size: u64,
    pub vocab_size: u64,
    pub tie_word_embeddings: bool,
    /// Weight dtype (`torch_dtype` in older configs); bf16 when absent.
    pub torch_dtype: Option<String>,
    /// Newer configs' name for the same.
    pub dtype: Option<String>,
    /// The model's context length (vLLM's default `max_model_len`).
    pub max_position_embeddings: Option<u64>,
    /// Biases on the attention projections: `qkv` on Q/K/V (Qwen2), `all` on Q/K/V/O
    /// (`attention_bias: true`, gpt-oss).
    pub attention_bias: AttentionBias,
    /// Per-head RMSNorm of queries and keys (Qwen3).
    pub qk_norm: bool,
    /// Per-head attention sinks (gpt-oss): one learned logit per head.
    pub attention_sinks: bool,
    pub moe: Option<MoeShape>,
    pub mla: Option<MlaShape>,
    /// One entry per decoder layer.
    pub layers: Vec<LayerKind>,
    pub weight_format: WeightFormat,
    /// The KV cache's element type as served (`--kv-cache-dtype`; the model dtype by default).
    pub kv_cache_dtype: KvCacheDtype,
    /// A multimodal checkpoint's vision encoder (`vision_config`), which vLLM loads beside the
    /// decoder.
    pub vision: Option<VisionTower>,
}

/// A multimodal model's vision encoder and its projector into the decoder. vLLM builds them
/// beside the decoder (`_mark_tower_model`), so their weights take GPU memory; text requests
/// do not run them.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionTower {
    /// `vision_config.model_type` (`siglip_vision_model`), or the model's own when absent.
    pub model_type: String,
    /// Parameters of the encoder and the projector; `None` for an encoder whose layout is not
    /// known here (its weights are then not counted, and a note says so).
    pub params: Option<u64>,
}

/// vLLM's `--kv-cache-dtype` (`CacheConfig.cache_dtype`): what one cached K or V element takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheDtype {
    /// `auto`: the model dtype.
    #[default]
    Auto,
    /// `bfloat16`, `float16`, `half`: 2 bytes.
    Bits16,
    /// `fp8`, `fp8_e4m3`, `fp8_e5m2`: 1 byte (vLLM stores one scale per layer, not per block).
    Fp8,
}

impl std::str::FromStr for KvCacheDtype {
    type Err = SizingError;

    /// The names `vllm serve --kv-cache-dtype` accepts on CUDA.
    fn from_str(s: &str) -> Result<Self, SizingError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KvCacheDtype::Auto),
            "bfloat16" | "float16" | "half" => Ok(KvCacheDtype::Bits16),
            "fp8" | "fp8_e4m3" | "fp8_e5m2" => Ok(KvCacheDtype::Fp8),
            other => Err(bad(format!(
                "unknown KV cache dtype `{other}` (auto, bfloat16, float16, fp8, fp8_e4m3, \
                 fp8_e5m2)"
            ))),
        }
    }
}

/// vLLM's `--quantization` for a checkpoint that is not quantized itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnlineQuantization {
    /// `fp8`: weights of the linear layers cast to FP8 e4m3 at load with one scale per tensor
    /// (vLLM's `Fp8LinearMethod` on an unquantized checkpoint); embeddings, norms, routers and
    /// the LM head stay in the model dtype.
    Fp8,
}

impl std::str::FromStr for OnlineQuantization {
    type Err = SizingError;

    fn from_str(s: &str) -> Result<Self, SizingError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp8" => Ok(OnlineQuantization::Fp8),
            other => Err(bad(format!(
                "--quantization `{other}` is not modelled (fp8; pre-quantized checkpoints are \
                 read from their config.json)"
            ))),
        }
    }
}

/// Which attention projections carry a bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionBias {
    None,
    Qkv,
    All,
}

/// `config.json` as read: every key any supported family uses, all optional except the ones
/// every decoder has. Unknown keys are ignored.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    num_hidden_layers: u64,
    hidden_size: u64,
    num_attention_heads: u64,
    num_key_value_heads: Option<u64>,
    head_dim: Option<u64>,
    intermediate_size: u64,
    vocab_size: u64,
    /// Absent: the family's default (transformers' config classes: true for Gemma, else false).
    tie_word_embeddings: Option<bool>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    max_position_embeddings: Option<u64>,
    attention_bias: Option<bool>,
    // Sliding window. `Some(None)` is an explicit `null`, which differs from an absent key
    // where the config class has a default (Mistral's 4096).
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<u64>>,
    /// Qwen2/Qwen3 (and their MoE variants): the window applies only when this is true.
    use_sliding_window: Option<bool>,
    /// Qwen2/Qwen3: layers from this index on are the sliding ones (transformers' default 28).
    max_window_layers: Option<u64>,
    layer_types: Option<Vec<String>>,
    /// Gemma 3: every how-many-th layer attends to every token (transformers' default 6).
    sliding_window_pattern: Option<u64>,
    // Mixture of experts, under each family's names.
    num_experts: Option<u64>,
    num_local_experts: Option<u64>,
    n_routed_experts: Option<u64>,
    num_experts_per_tok: Option<u64>,
    experts_per_token: Option<u64>,
    moe_intermediate_size: Option<u64>,
    n_shared_experts: Option<u64>,
    // Llama 4: the dense layers' MLP size (`intermediate_size` is the experts'), which layers
    // are MoE, and which use chunked local attention.
    intermediate_size_mlp: Option<u64>,
    interleave_moe_layer_step: Option<u64>,
    attention_chunk_size: Option<u64>,
    no_rope_layers: Option<Vec<u64>>,
    no_rope_layer_interval: Option<u64>,
    first_k_dense_replace: Option<u64>,
    moe_layer_freq: Option<u64>,
    decoder_sparse_step: Option<u64>,
    mlp_only_layers: Option<Vec<u64>>,
    // Multi-head latent attention.
    q_lora_rank: Option<u64>,
    kv_lora_rank: Option<u64>,
    qk_nope_head_dim: Option<u64>,
    qk_rope_head_dim: Option<u64>,
    v_head_dim: Option<u64>,
    quantization_config: Option<RawQuant>,
}

#[derive(Deserialize)]
struct RawQuant {
    quant_method: Option<String>,
    weight_block_size: Option<Vec<u64>>,
    bits: Option<u64>,
    group_size: Option<i64>,
    /// compressed-tensors' storage format (`float-quantized`, `pack-quantized`, ...).
    format: Option<String>,
}

/// A key that is present, `null` included (`Some(None)`); absent keys take `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `layer_types`' name of a layer that is (`true`) or is not sliding.
fn kind_name(sliding: bool) -> String {
    if sliding {
        "sliding_attention"
    } else {
        "full_attention"
    }
    .to_string()
}

fn bad(msg: impl Into<String>) -> SizingError {
    SizingError::BadConfig(msg.into())
}

/// The most decoder layers a config may have.
const MAX_LAYERS: u64 = 100_000;

fn required(v: Option<u64>, key: &str, why: &str) -> Result<u64, SizingError> {
    v.ok_or_else(|| bad(format!("missing field `{key}` ({why})")))
}

fn positive(v: u64, key: &str) -> Result<u64, SizingError> {
    if v == 0 {
        Err(bad(format!("`{key}` must be positive")))
    } else {
        Ok(v)
    }
}

/// The vision encoder of a multimodal `config.json` (a `vision_config` beside the decoder's
/// `text_config`), with its parameters where its layout is known: Gemma 3's SigLIP encoder
/// and projector (vLLM's `SiglipVisionModel` without its pooling head, as `gemma3_mm.py`
/// builds it, and `Gemma3MultiModalProjector`). `None` for a config without one.
fn vision_tower_of(value: &serde_json::Value) -> Result<Option<VisionTower>, SizingError> {
    let Some(top) = value.as_object() else {
        return Ok(None);
    };
    if top.contains_key("num_hidden_layers") {
        return Ok(None);
    }
    let top_type = top.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let vision = match top.get("vision_config") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Object(v)) => v,
        Some(_) => {
            return Ok(Some(VisionTower {
                model_type: format!("{top_type} (vision_config not an object)"),
                params: None,
            }))
        }
    };
    if !top.contains_key("text_config") {
        return Err(bad(
            "a multimodal config (`vision_config`) without `text_config`: its decoder's shape \
             is not there",
        ));
    }
    // Gemma 3's encoder is SigLIP (`Gemma3Config` builds a `SiglipVisionConfig`, whose
    // `model_type` a config may leave out); any other is not counted.
    let default_type = if top_type == "gemma3" {
        "siglip_vision_model"
    } else {
        top_type
    };
    let model_type = vision
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or(default_type)
        .to_string();
    if top_type != "gemma3" || model_type != "siglip_vision_model" {
        return Ok(Some(VisionTower {
            model_type,
            params: None,
        }));
    }
    // SiglipVisionConfig's defaults (transformers `configuration_siglip.py`) where a key is
    // absent; Gemma3TextConfig's hidden size likewise.
    let int = |m: &serde_json::Map<String, serde_json::Value>, key: &str, default: u64| match m
        .get(key)
    {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&x| x > 0)
            .ok_or_else(|| bad(format!("`vision_config.{key}` is not a whole number > 0"))),
    };
    let h = int(vision, "hidden_size", 768)?;
    let i = int(vision, "intermediate_size", 3072)?;
    let layers = int(vision, "num_hidden_layers", 12)?;
    let channels = int(vision, "num_channels", 3)?;
    let image = int(vision, "image_size", 224)?;
    let patch = int(vision, "patch_size", 16)?;
    let text_hidden = match top.get("text_config").and_then(|v| v.as_object()) {
        Some(t) => int(t, "hidden_size", 2304)?,
        None => 2304,
    };
    // In u128, then checked: sizes from a file must not wrap around.
    let (h, i, layers, channels, patch) = (
        h as u128,
        i as u128,
        layers as u128,
        channels as u128,
        patch as u128,
    );
    let patches = (image as u128 / patch).pow(2);
    // Patch convolution with its bias, and one position embedding per patch.
    let embeddings = channels * patch * patch * h + h + patches * h;
    // Two LayerNorms (weight and bias), Q/K/V/O with biases, the MLP's two biased linears.
    let per_layer = 2 * 2 * h + 4 * (h * h + h) + (h * i + i) + (i * h + h);
    let post_norm = 2 * h;
    // `mm_input_projection_weight` and `mm_soft_emb_norm`.
    let projector = h * text_hidden as u128 + h;
    let total = embeddings + layers * per_layer + post_norm + projector;
    let params = u64::try_from(total)
        .ok()
        .filter(|&p| p < 1 << 50)
        .ok_or_else(|| {
            bad("`vision_config`: the encoder's sizes give an impossible parameter count")
        })?;
    Ok(Some(VisionTower {
        model_type,
        params: Some(params),
    }))
}

/// The decoder's config of a multimodal `config.json` (`text_config`, as Llama 4 nests it),
/// with the top level's `quantization_config`, `torch_dtype` and `dtype` where it has none;
/// any other config as it is.
fn text_config_of(value: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(mut top) = value else {
        return value;
    };
    if top.contains_key("num_hidden_layers") {
        return serde_json::Value::Object(top);
    }
    let top_type = top
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    match top.remove("text_config") {
        Some(serde_json::Value::Object(mut text)) => {
            for key in ["quantization_config", "torch_dtype", "dtype"] {
                if let Some(v) = top.remove(key) {
                    text.entry(key).or_insert(v);
                }
            }
            // Gemma 3's published configs list only what differs from `Gemma3TextConfig`'s
            // defaults (transformers 4.57 `configuration_gemma3.py`), the vocabulary among
            // what they leave out.
            if top_type.as_deref() == Some("gemma3") {
                let defaults: [(&str, serde_json::Value); 11] = [
                    ("model_type", "gemma3_text".into()),
                    ("vocab_size", 262_208.into()),
                    ("hidden_size", 2304.into()),
                    ("intermediate_size", 9216.into()),
                    ("num_hidden_layers", 26.into()),
                    ("num_attention_heads", 8.into()),
                    ("num_key_value_heads", 4.into()),
                    ("head_dim", 256.into()),
                    ("max_position_embeddings", 131_072.into()),
                    ("sliding_window", 4096.into()),
                    ("tie_word_embeddings", true.into()),
                ];
                for (key, v) in defaults {
                    text.entry(key).or_insert(v);
                }
            }
            serde_json::Value::Object(text)
        }
        Some(other) => {
            top.insert("text_config".into(), other);
            serde_json::Value::Object(top)
        }
        None => serde_json::Value::Object(top),
    }
}

impl ModelShape {
    /// Parses a Hugging Face `config.json`; names the missing or malformed field.
    pub fn from_hf_config_json(text: &str) -> Result<ModelShape, SizingError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        ModelShape::from_hf_config_value(value)
    }

    /// Same, from an already parsed JSON value. A multimodal config (Llama 4) whose decoder
    /// sits under `text_config` is read from there, with the top level's
    /// `quantization_config` and dtype when the text config has none.
    pub fn from_hf_config_value(value: serde_json::Value) -> Result<ModelShape, SizingError> {
        let vision = vision_tower_of(&value)?;
        let value = text_config_of(value);
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let mut shape = ModelShape::from_raw(raw)?;
        shape.vision = vision;
        Ok(shape)
    }

    /// The same model served with `--quantization` (no-op on a checkpoint already quantized,
    /// as vLLM then uses the checkpoint's own format).
    pub fn with_online_quantization(mut self, q: OnlineQuantization) -> ModelShape {
        if self.weight_format == WeightFormat::Unquantized {
            self.weight_format = match q {
                OnlineQuantization::Fp8 => WeightFormat::Fp8 { block: 0 },
            };
        }
        self
    }

    /// The same model with its KV cache stored as `dtype` (`--kv-cache-dtype`).
    pub fn with_kv_cache_dtype(mut self, dtype: KvCacheDtype) -> ModelShape {
        self.kv_cache_dtype = dtype;
        self
    }

    /// Bytes of one cached K or V element.
    pub fn kv_cache_dtype_bytes(&self) -> u64 {
        match self.kv_cache_dtype {
            KvCacheDtype::Auto => self.dtype_bytes(),
            KvCacheDtype::Bits16 => 2,
            KvCacheDtype::Fp8 => 1,
        }
    }

    fn from_raw(r: RawConfig) -> Result<ModelShape, SizingError> {
        positive(r.num_hidden_layers, "num_hidden_layers")?;
        // Far above any published model (DeepSeek-V3 has 61 layers, Llama-3.1-405B 126); the
        // per-layer tables would otherwise be sized from the file before anything else fails.
        if r.num_hidden_layers > MAX_LAYERS {
            return Err(bad(format!(
                "`num_hidden_layers` {} is above {MAX_LAYERS}: not a model llm-emu sizes",
                r.num_hidden_layers
            )));
        }
        positive(r.hidden_size, "hidden_size")?;
        positive(r.num_attention_heads, "num_attention_heads")?;
        positive(r.vocab_size, "vocab_size")?;
        if let Some(kv) = r.num_key_value_heads {
            positive(kv, "num_key_value_heads")?;
            if !r.num_attention_heads.is_multiple_of(kv) {
                return Err(bad(format!(
                    "`num_attention_heads` ({}) is not a multiple of `num_key_value_heads` ({kv})",
                    r.num_attention_heads
                )));
            }
        }
        if let Some(d) = r.head_dim {
            positive(d, "head_dim")?;
        }
        let model_type = r.model_type.clone();
        let mt = r.model_type.as_deref().unwrap_or("");
        // Gemma's config classes differ from the others' defaults (below).
        let is_gemma = matches!(mt, "gemma" | "gemma2" | "gemma3_text");
        let n = r.num_hidden_layers;

        let moe = Self::moe_from_raw(&r)?;
        let mla = match r.kv_lora_rank {
            None => None,
            Some(kv_lora_rank) => {
                let why = "MLA configs (kv_lora_rank set) need it";
                Some(MlaShape {
                    q_lora_rank: r.q_lora_rank,
                    kv_lora_rank: positive(kv_lora_rank, "kv_lora_rank")?,
                    qk_nope_head_dim: required(r.qk_nope_head_dim, "qk_nope_head_dim", why)?,
                    qk_rope_head_dim: required(r.qk_rope_head_dim, "qk_rope_head_dim", why)?,
                    v_head_dim: required(r.v_head_dim, "v_head_dim", why)?,
                })
            }
        };

        // Sliding windows as vLLM 0.19 applies them. The model's window is the attribute
        // transformers' config class holds: Qwen2/Qwen3 (and their MoE variants) keep it only
        // with `use_sliding_window`; Mistral, Qwen and Gemma default an absent key to 4096; any
        // other family takes the key as written; 0 is no window (`ModelConfig`). Unless the
        // layers are interleaved (`is_interleaved`: `layer_types` of more than one kind),
        // `create_engine_config` hands that window to `CacheConfig.sliding_window`, which every
        // attention layer without a window of its own takes (`Attention.__init__`): Mistral-7B-v0.1,
        // Phi-3 and PhiMoE attend within their window on every layer. Windows per layer come from
        // `layer_types` in the model implementations that read it (the Llama family, Gemma,
        // gpt-oss, ...); vLLM's Qwen2/Qwen3/Mixtral/PhiMoE implementations do not, and its Qwen2
        // refuses interleaved windows. Gemma 2 and 3 configs written before `layer_types`
        // existed get the list transformers derives (`Gemma2Config`: every other layer sliding,
        // the first among them; `Gemma3TextConfig`: every `sliding_window_pattern`-th layer
        // full); Qwen2/Qwen3 configs get theirs (sliding from `max_window_layers` on, default 28).
        let qwen_window = matches!(mt, "qwen2" | "qwen2_moe" | "qwen3" | "qwen3_moe");
        let written = match r.sliding_window {
            None if qwen_window || matches!(mt, "mistral" | "gemma2" | "gemma3_text") => Some(4096),
            None => None,
            Some(None) if matches!(mt, "gemma2" | "gemma3_text") => Some(4096),
            Some(w) => w,
        };
        let model_window = if qwen_window && r.use_sliding_window != Some(true) {
            None
        } else {
            written.filter(|&w| w > 0)
        };
        let derived_types: Option<Vec<String>> = match (mt, &r.layer_types) {
            ("gemma2" | "gemma3_text", None) => {
                let every = match mt {
                    "gemma2" => 2,
                    _ => r.sliding_window_pattern.unwrap_or(6).max(1),
                };
                Some(
                    (0..n)
                        .map(|i| !(i + 1).is_multiple_of(every))
                        .map(kind_name)
                        .collect(),
                )
            }
            ("qwen2" | "qwen3", None) => {
                let from = r.max_window_layers.unwrap_or(28);
                Some(
                    (0..n)
                        .map(|i| model_window.is_some() && i >= from)
                        .map(kind_name)
                        .collect(),
                )
            }
            _ => None,
        };
        let types = derived_types.as_ref().or(r.layer_types.as_ref());
        if let Some(types) = types {
            if types.len() as u64 != n {
                return Err(bad(format!(
                    "`layer_types` has {} entries but `num_hidden_layers` is {n}",
                    types.len()
                )));
            }
        }
        let interleaved = types.is_some_and(|t| t.iter().any(|k| *k != t[0]));
        if mt == "qwen2" && interleaved {
            return Err(bad(
                "sliding windows on some layers only (`use_sliding_window` with \
                 `max_window_layers` below `num_hidden_layers`): vLLM 0.19's Qwen2 model \
                 refuses them",
            ));
        }
        let cache_window = if interleaved { None } else { model_window };
        let reads_types = !matches!(
            mt,
            "qwen2" | "qwen2_moe" | "qwen3" | "qwen3_moe" | "mixtral" | "phimoe"
        );
        let windows: Vec<Option<u64>> = match types.filter(|_| reads_types) {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => required(
                        model_window,
                        "sliding_window",
                        "layer_types names sliding_attention layers",
                    )
                    .map(Some),
                    "full_attention" => Ok(cache_window),
                    other => Err(bad(format!(
                        "`layer_types`: unsupported layer type `{other}`"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            // Llama 4: layers with rotary embeddings (`no_rope_layers[i] == 1`) attend within
            // chunks of `attention_chunk_size` tokens; the others see every token.
            _ => match r.attention_chunk_size.filter(|&c| c > 0) {
                Some(chunk) => {
                    let rope: Vec<bool> = match &r.no_rope_layers {
                        Some(l) if !l.is_empty() => {
                            if l.len() as u64 != n {
                                return Err(bad(format!(
                                    "`no_rope_layers` has {} entries but `num_hidden_layers` \
                                     is {n}",
                                    l.len()
                                )));
                            }
                            l.iter().map(|&x| x != 0).collect()
                        }
                        // transformers' Llama4TextConfig default: every 4th layer is NoPE.
                        _ => {
                            let every = r.no_rope_layer_interval.unwrap_or(4).max(1);
                            (0..n).map(|i| !(i + 1).is_multiple_of(every)).collect()
                        }
                    };
                    rope.into_iter().map(|c| c.then_some(chunk)).collect()
                }
                None => vec![cache_window; n as usize],
            },
        };

        let layers = windows
            .into_iter()
            .enumerate()
            .map(|(i, sliding_window)| LayerKind {
                sliding_window,
                moe: moe.is_some() && Self::layer_is_moe(&r, i as u64),
            })
            .collect();

        let attention_bias = match (r.attention_bias, mt) {
            (Some(true), _) => AttentionBias::All,
            (Some(false), _) => AttentionBias::None,
            (None, "qwen2") | (None, "qwen2_moe") => AttentionBias::Qkv,
            (None, "gpt_oss") => AttentionBias::All,
            (None, _) => AttentionBias::None,
        };
        // gpt-oss sets `attention_bias` explicitly but its o_proj also has a bias: covered.

        let weight_format = match &r.quantization_config {
            None => WeightFormat::Unquantized,
            Some(q) => match q.quant_method.as_deref() {
                Some("fp8") | Some("fbgemm_fp8") => WeightFormat::Fp8 {
                    block: q
                        .weight_block_size
                        .as_ref()
                        .and_then(|b| b.first().copied())
                        .unwrap_or(0),
                },
                Some("mxfp4") => WeightFormat::Mxfp4Experts,
                // llm-compressor checkpoints (RedHatAI/*-FP8-dynamic): `float-quantized` is FP8
                // weights with per-channel scales, which round to the per-tensor figure.
                Some("compressed-tensors") => match q.format.as_deref() {
                    Some("float-quantized") => WeightFormat::Fp8 { block: 0 },
                    other => {
                        return Err(bad(format!(
                            "compressed-tensors format `{}` is not supported (float-quantized)",
                            other.unwrap_or("absent")
                        )))
                    }
                },
                Some("awq") | Some("gptq") => WeightFormat::IntWeightOnly {
                    bits: required(q.bits, "quantization_config.bits", "AWQ/GPTQ")?,
                    group_size: match q.group_size {
                        Some(g) if g > 0 => g as u64,
                        // -1: one group per output channel (per-column scales); count as large.
                        _ => 1 << 20,
                    },
                },
                Some(other) => {
                    return Err(bad(format!(
                        "`quantization_config.quant_method` `{other}` is not supported \
                         (fp8, fbgemm_fp8, mxfp4, awq, gptq, compressed-tensors)"
                    )))
                }
                None => {
                    return Err(bad(
                        "missing field `quantization_config.quant_method`".to_string()
                    ))
                }
            },
        };

        let shape = ModelShape {
            model_type,
            num_hidden_layers: n,
            hidden_size: r.hidden_size,
            num_attention_heads: r.num_attention_heads,
            num_key_value_heads: r.num_key_value_heads,
            // transformers' Gemma config classes default it to 256, not hidden / heads.
            head_dim: r.head_dim.or(is_gemma.then_some(256)),
            // Llama 4 names the dense layers' size `intermediate_size_mlp`.
            intermediate_size: r.intermediate_size_mlp.unwrap_or(r.intermediate_size),
            vocab_size: r.vocab_size,
            tie_word_embeddings: r.tie_word_embeddings.unwrap_or(is_gemma),
            torch_dtype: r.torch_dtype,
            dtype: r.dtype,
            max_position_embeddings: r.max_position_embeddings,
            attention_bias,
            qk_norm: matches!(mt, "qwen3" | "qwen3_moe"),
            attention_sinks: mt == "gpt_oss",
            moe,
            mla,
            layers,
            weight_format,
            kv_cache_dtype: KvCacheDtype::Auto,
            vision: None,
        };
        if shape.mla.is_none()
            && shape.head_dim.is_none()
            && !r.hidden_size.is_multiple_of(r.num_attention_heads)
        {
            return Err(bad(
                "missing field `head_dim` (hidden_size is not a multiple of num_attention_heads)",
            ));
        }
        Ok(shape)
    }

    fn moe_from_raw(r: &RawConfig) -> Result<Option<MoeShape>, SizingError> {
        let experts = r.num_experts.or(r.num_local_experts).or(r.n_routed_experts);
        let Some(experts) = experts.filter(|&e| e > 0) else {
            return Ok(None);
        };
        let why = "mixture-of-experts configs need it";
        let k = match r.num_experts_per_tok.or(r.experts_per_token) {
            Some(k) => positive(k, "num_experts_per_tok")?,
            None => required(None, "num_experts_per_tok", why)?,
        };
        if k > experts {
            return Err(bad(format!(
                "`num_experts_per_tok` ({k}) exceeds the number of experts ({experts})"
            )));
        }
        let mt = r.model_type.as_deref().unwrap_or("");
        // Mixtral and gpt-oss experts use `intermediate_size`; Qwen-MoE and DeepSeek name it.
        let expert_intermediate_size = match (r.moe_intermediate_size, mt) {
            (Some(i), _) => i,
            (None, "qwen3_moe" | "qwen2_moe" | "deepseek_v2" | "deepseek_v3") => {
                required(None, "moe_intermediate_size", why)?
            }
            (None, _) => r.intermediate_size,
        };
        Ok(Some(MoeShape {
            num_experts: experts,
            experts_per_token: k,
            expert_intermediate_size: positive(expert_intermediate_size, "moe_intermediate_size")?,
            // Llama 4's MoE layers always add one shared expert (vLLM `Llama4MoE`).
            shared_experts: r.n_shared_experts.unwrap_or(if mt.starts_with("llama4") {
                1
            } else {
                0
            }),
            biases: mt == "gpt_oss",
        }))
    }

    /// Whether layer `i` has a MoE MLP, by the family's rule: DeepSeek's first
    /// `first_k_dense_replace` layers are dense and then every `moe_layer_freq`-th; Qwen-MoE's
    /// layers in `mlp_only_layers` are dense and otherwise every `decoder_sparse_step`-th.
    fn layer_is_moe(r: &RawConfig, i: u64) -> bool {
        if let Some(first_dense) = r.first_k_dense_replace {
            let freq = r.moe_layer_freq.unwrap_or(1).max(1);
            return i >= first_dense && i.is_multiple_of(freq);
        }
        if r.mlp_only_layers.as_ref().is_some_and(|l| l.contains(&i)) {
            return false;
        }
        // Qwen-MoE's `decoder_sparse_step`, Llama 4's `interleave_moe_layer_step`: the same rule.
        let step = r
            .decoder_sparse_step
            .or(r.interleave_moe_layer_step)
            .unwrap_or(1)
            .max(1);
        (i + 1).is_multiple_of(step)
    }

    /// Llama-3.1-8B (meta-llama/Llama-3.1-8B `config.json`), from the built-in table.
    pub fn llama_3_1_8b() -> ModelShape {
        ModelShape::builtin("meta-llama/Llama-3.1-8B").expect("the built-in table has Llama-3.1-8B")
    }

    pub fn kv_heads(&self) -> u64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The dimensions that set a forward pass's work in which `other` differs from this
    /// shape, each as `name self → other` (empty: the same architecture, whatever the names).
    pub fn architecture_differences(&self, other: &ModelShape) -> Vec<String> {
        let moe = |s: &ModelShape| {
            s.moe.as_ref().map_or("dense".to_string(), |m| {
                format!(
                    "{} experts, top-{}, expert intermediate {}",
                    m.num_experts, m.experts_per_token, m.expert_intermediate_size
                )
            })
        };
        let fields: [(&str, String, String); 9] = [
            (
                "layers",
                self.num_hidden_layers.to_string(),
                other.num_hidden_layers.to_string(),
            ),
            (
                "hidden size",
                self.hidden_size.to_string(),
                other.hidden_size.to_string(),
            ),
            (
                "attention heads",
                self.num_attention_heads.to_string(),
                other.num_attention_heads.to_string(),
            ),
            (
                "KV heads",
                self.kv_heads().to_string(),
                other.kv_heads().to_string(),
            ),
            (
                "head dim",
                self.head_dim().to_string(),
                other.head_dim().to_string(),
            ),
            (
                "intermediate size",
                self.intermediate_size.to_string(),
                other.intermediate_size.to_string(),
            ),
            (
                "vocabulary",
                self.vocab_size.to_string(),
                other.vocab_size.to_string(),
            ),
            ("MoE", moe(self), moe(other)),
            (
                "MLA",
                self.mla.is_some().to_string(),
                other.mla.is_some().to_string(),
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("{name} {a} → {b}"))
            .collect()
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Bytes per element of the model dtype (activations, KV cache with `kv_cache_dtype=auto`,
    /// unquantized weights).
    pub fn dtype_bytes(&self) -> u64 {
        match self.dtype.as_deref().or(self.torch_dtype.as_deref()) {
            Some("float32") => 4,
            Some("float8_e4m3fn") | Some("fp8") => 1,
            // bfloat16, float16 and absent.
            _ => 2,
        }
    }

    /// Layers with a mixture-of-experts MLP.
    pub fn num_moe_layers(&self) -> u64 {
        self.layers.iter().filter(|l| l.moe).count() as u64
    }

    /// Layers per attention type: each distinct window (`None`: full attention) with its layer
    /// count, in the order the types first appear. vLLM groups the KV-cache layers by type.
    pub fn layers_per_window(&self) -> Vec<(Option<u64>, u64)> {
        let mut types: Vec<(Option<u64>, u64)> = Vec::new();
        for l in &self.layers {
            match types.iter_mut().find(|(w, _)| *w == l.sliding_window) {
                Some((_, n)) => *n += 1,
                None => types.push((l.sliding_window, 1)),
            }
        }
        types
    }

    /// Layers with sliding-window attention.
    pub fn num_sliding_layers(&self) -> u64 {
        self.layers
            .iter()
            .filter(|l| l.sliding_window.is_some())
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_MOE: &str = r#"{"model_type": "qwen3_moe", "num_hidden_layers": 4,
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 128, "vocab_size": 100, "num_experts": 8,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "mlp_only_layers": [1]}"#;

    #[test]
    fn reads_moe_under_each_family_name() {
        let m = ModelShape::from_hf_config_json(QWEN3_MOE).unwrap();
        let moe = m.moe.as_ref().unwrap();
        assert_eq!((moe.num_experts, moe.experts_per_token), (8, 2));
        assert_eq!(moe.expert_intermediate_size, 32);
        assert_eq!(
            m.layers.iter().map(|l| l.moe).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        assert!(m.qk_norm);
        // gpt-oss names: num_local_experts + experts_per_token, experts use intermediate_size.
        let g = ModelShape::from_hf_config_json(
            r#"{"model_type": "gpt_oss", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 48, "vocab_size": 100, "num_local_experts": 4,
            "experts_per_token": 2, "num_experts_per_tok": 2, "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"]}"#,
        )
        .unwrap();
        assert_eq!(g.moe.as_ref().unwrap().expert_intermediate_size, 48);
        assert_eq!(g.layers[0].sliding_window, Some(8));
        assert_eq!(g.layers[1].sliding_window, None);
    }

    #[test]
    fn gemma_configs_without_layer_types_get_transformers_pattern() {
        // google/gemma-2-9b-it's config.json: no layer_types, no tie_word_embeddings.
        let g2 = ModelShape::from_hf_config_json(
            r#"{"model_type": "gemma2", "num_hidden_layers": 42, "hidden_size": 3584,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
            "intermediate_size": 14336, "vocab_size": 256000, "sliding_window": 4096}"#,
        )
        .unwrap();
        let windows: Vec<Option<u64>> = g2.layers.iter().map(|l| l.sliding_window).collect();
        assert_eq!(windows[..4], [Some(4096), None, Some(4096), None]);
        assert_eq!(windows.iter().filter(|w| w.is_none()).count(), 21);
        assert!(g2.tie_word_embeddings);
        // Gemma 3 text: every sixth layer full by default, the window transformers' 4096 when
        // absent; a config's own layer_types and tie_word_embeddings win.
        let g3 = ModelShape::from_hf_config_json(
            r#"{"model_type": "gemma3_text", "num_hidden_layers": 12, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": false}"#,
        )
        .unwrap();
        let full: Vec<usize> = (0..12)
            .filter(|&i| g3.layers[i].sliding_window.is_none())
            .collect();
        assert_eq!(full, [5, 11]);
        assert_eq!(g3.layers[0].sliding_window, Some(4096));
        assert!(!g3.tie_word_embeddings);
        let listed = ModelShape::from_hf_config_json(
            r#"{"model_type": "gemma2", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
            "sliding_window": 8, "layer_types": ["full_attention", "sliding_attention"]}"#,
        )
        .unwrap();
        assert_eq!(listed.layers[0].sliding_window, None);
        assert_eq!(listed.layers[1].sliding_window, Some(8));
        // transformers' Gemma defaults: head_dim 256 (not 3584 / 16 = 224), tied embeddings
        // for Gemma 1 too.
        let no_head_dim = ModelShape::from_hf_config_json(
            r#"{"model_type": "gemma2", "num_hidden_layers": 2, "hidden_size": 3584,
            "num_attention_heads": 16, "intermediate_size": 128, "vocab_size": 100}"#,
        )
        .unwrap();
        assert_eq!(no_head_dim.head_dim, Some(256));
        let gemma1 = ModelShape::from_hf_config_json(
            r#"{"model_type": "gemma", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}"#,
        )
        .unwrap();
        assert!(gemma1.tie_word_embeddings);
        // Llama keeps its default: untied embeddings.
        let llama = ModelShape::from_hf_config_json(
            r#"{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}"#,
        )
        .unwrap();
        assert!(!llama.tie_word_embeddings);
        assert!(llama.layers.iter().all(|l| l.sliding_window.is_none()));
    }

    /// Which layers attend within a window, as vLLM 0.19 builds them: the config class's
    /// window goes to `CacheConfig.sliding_window` unless the layers are interleaved, and every
    /// attention layer without a window of its own takes it.
    #[test]
    fn a_model_wide_window_applies_to_every_layer_as_in_vllm() {
        let windows = |extra: &str| -> Result<Vec<Option<u64>>, String> {
            let text = format!(
                r#"{{"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                "intermediate_size": 128, "vocab_size": 100, {extra}}}"#
            );
            ModelShape::from_hf_config_json(&text)
                .map(|m| m.layers.iter().map(|l| l.sliding_window).collect())
                .map_err(|e| e.to_string())
        };
        let all = |w: Option<u64>| Ok(vec![w; 4]);
        // Mistral: the key as written, 4096 when absent (`MistralConfig`), none when null.
        assert_eq!(
            windows(r#""model_type": "mistral", "sliding_window": 8"#),
            all(Some(8))
        );
        assert_eq!(windows(r#""model_type": "mistral""#), all(Some(4096)));
        assert_eq!(
            windows(r#""model_type": "mistral", "sliding_window": null"#),
            all(None)
        );
        // Any other family: the key as written (transformers keeps unknown keys); 0 is none.
        assert_eq!(
            windows(r#""model_type": "llama", "sliding_window": 8"#),
            all(Some(8))
        );
        assert_eq!(
            windows(r#""model_type": "phimoe", "sliding_window": 2047"#),
            all(Some(2047))
        );
        assert_eq!(
            windows(r#""model_type": "phi3", "sliding_window": 0"#),
            all(None)
        );
        // Qwen: only with use_sliding_window; Qwen2/Qwen3 derive layer_types from
        // max_window_layers (default 28, so none of 4 layers: not interleaved, all sliding).
        let qwen = r#""model_type": "qwen3", "sliding_window": 8"#;
        assert_eq!(windows(qwen), all(None));
        assert_eq!(
            windows(&format!(r#"{qwen}, "use_sliding_window": true"#)),
            all(Some(8))
        );
        // Interleaved: Qwen3 reads no layer_types, so every layer attends fully ...
        let split = r#""use_sliding_window": true, "max_window_layers": 2"#;
        assert_eq!(windows(&format!("{qwen}, {split}")), all(None));
        // ... and vLLM's Qwen2 refuses the model.
        let e = windows(&format!(
            r#""model_type": "qwen2", "sliding_window": 8, {split}"#
        ));
        assert!(e.unwrap_err().contains("Qwen2"));
        // Llama-family layer_types: per layer when interleaved, the full layers without.
        let listed = r#""model_type": "llama", "sliding_window": 8, "layer_types":
            ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]"#;
        assert_eq!(windows(listed), Ok(vec![Some(8), None, Some(8), None]));
    }

    #[test]
    fn missing_or_inconsistent_keys_are_named() {
        let no_k = QWEN3_MOE.replace("\"num_experts_per_tok\": 2,", "");
        let e = ModelShape::from_hf_config_json(&no_k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_experts_per_tok"), "{e}");
        let no_moe_i = QWEN3_MOE.replace("\"moe_intermediate_size\": 32,", "");
        let e = ModelShape::from_hf_config_json(&no_moe_i)
            .unwrap_err()
            .to_string();
        assert!(e.contains("moe_intermediate_size"), "{e}");
        for key in ["vocab_size", "intermediate_size", "hidden_size"] {
            let text = QWEN3_MOE.replace(&format!("\"{key}\""), "\"renamed\"");
            let e = ModelShape::from_hf_config_json(&text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let mla = r#"{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
            "intermediate_size": 48, "vocab_size": 100, "kv_lora_rank": 16,
            "qk_rope_head_dim": 8, "v_head_dim": 16}"#;
        let e = ModelShape::from_hf_config_json(mla)
            .unwrap_err()
            .to_string();
        assert!(e.contains("qk_nope_head_dim"), "{e}");
        let q = QWEN3_MOE.replace(
            "\"num_experts\": 8,",
            "\"num_experts\": 8, \"quantization_config\": {\"quant_method\": \"bitnet\"},",
        );
        let e = ModelShape::from_hf_config_json(&q).unwrap_err().to_string();
        assert!(e.contains("bitnet"), "{e}");
        let lt = QWEN3_MOE.replace(
            "\"num_experts\": 8,",
            "\"num_experts\": 8, \"layer_types\": [\"full_attention\"],",
        );
        let e = ModelShape::from_hf_config_json(&lt)
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer_types"), "{e}");
    }
}
