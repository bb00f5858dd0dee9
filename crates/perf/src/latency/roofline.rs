//! `roofline[:gpu=NAME,tp=N,dtype=bf16|fp8,...]`: step time from first principles for any model
//! on any GPU of the built-in table, where nobody measured operator profiles.
//!
//! Per step and rank, every operator of vLLM's forward pass costs
//! `max(FLOPs / (peak × efficiency), bytes / (bandwidth × memory efficiency)) + kernel time`:
//! embedding; per layer two RMSNorms, the attention projections (QKV/O, or MLA's latent
//! projections), rotary embedding, attention (prefill FLOPs ∝ query × context, decode bytes =
//! KV read), the gated MLP or the MoE (router, then only the experts the batch's tokens hit:
//! `E (1 − (1 − k/E)^T)` of them, with TP-sharded expert weights; under expert parallelism
//! `E / ep` whole experts per rank computing the `T · k / ep` pairs routed to them, `T` being
//! the gathered batch on a data-parallel rank), two ring all-reduces under
//! TP; the final norm; the LM head and sampler on one row per scheduled request (vLLM computes
//! logits at every request's last scheduled token, partial prefills included); plus a fixed
//! per-step overhead. The efficiency factors are named physical quantities with defaults from
//! published measurements, not fitted to any run (docs/roofline.md checks them against the
//! RTX PRO 6000 operator profile).

mod attention;
mod cost;
pub mod fitted;

pub use attention::{causal_pairs, fa2_decode_tile_rows, AttentionWork, FA2_QUERY_TILE_ROWS};
pub use cost::{expected_distinct_experts, Bound, OpTime};

use super::{HardwareDefaults, LatencyModel, LatencySpec, LatencySpecError, StepBatch};
use crate::gpu::{AttentionKernel, GpuSpec};
use crate::sizing::{LayerKind, ModelShape, MoeShape, WeightFormat};
use cost::{all_gather, all_reduce, elementwise, gemm, kernel, Rates};
use llm_emu_core::Nanos;

/// Compute dtype of the linear layers (`dtype=`): the checkpoint's own by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearDtype {
    /// BF16 weights and tensor cores.
    Bf16,
    /// FP8 weights (1 byte) and FP8 tensor cores (vLLM `--quantization fp8`); on GPUs without
    /// FP8 tensor cores vLLM runs FP8 weight-only (Marlin), so BF16 compute.
    Fp8,
}

/// The named factors and overheads of the model (defaults in [`RooflineParams::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RooflineParams {
    pub gpu: &'static GpuSpec,
    /// Tensor-parallel ranks.
    pub tp: u64,
    /// Expert-parallel ranks a mixture-of-experts model's routed experts are split over (vLLM's
    /// `--enable-expert-parallel`: TP × DP); 1: every rank holds every expert, each
    /// TP-sharded along its intermediate dimension. Above 1 each rank holds `E / ep` whole
    /// experts (vLLM runs the experts at TP 1 under expert parallelism).
    pub ep: u64,
    /// `None`: the checkpoint's format (BF16, block FP8 for DeepSeek-V3, MXFP4 experts for
    /// gpt-oss).
    pub dtype: Option<LinearDtype>,
    /// Achievable fraction of the dense tensor peak for GEMMs at large M (cuBLAS/CUTLASS).
    pub gemm_efficiency: f64,
    /// Achievable fraction of peak DRAM bandwidth for streaming kernels (weight reads of
    /// small-M GEMMs, KV reads of decode attention, elementwise kernels).
    pub memory_efficiency: f64,
    /// Achievable fraction of the BF16 peak for prefill attention (the GPU's attention kernel).
    pub attention_efficiency: f64,
    /// Achievable fraction of link bandwidth for all-reduce (NCCL bus bandwidth / link peak).
    pub link_efficiency: f64,
    /// Fixed time of every kernel, µs.
    pub kernel_us: f64,
    /// Fixed latency of one all-reduce, µs.
    pub allreduce_latency_us: f64,
    /// The all-reduce link's bus bandwidth as a real run's cluster config records it, GB/s,
    /// used as achieved (no `link_efficiency`); `None`: the GPU's datasheet link ×
    /// `link_efficiency`.
    pub recorded_link_gbs: Option<f64>,
    /// Fixed per-step time outside the kernels (CUDA-graph launch, input copies, the sampled
    /// ids' copy back), µs.
    pub step_overhead_us: f64,
    /// The data-parallel group a mixture-of-experts model runs in without expert parallelism
    /// (1: none). vLLM 0.19 splits each expert's width over `moe_data_parallel × tp` GPUs
    /// (`FusedMoEParallelConfig.make`) and runs each rank's experts on the group's gathered
    /// batch ([`LatencyModel::step_time_gathered`]).
    pub moe_data_parallel: u64,
    /// `attn_tiles=on`: on a FlashAttention-2 GPU, decode attention's FLOPs are those of the
    /// kernel's whole 64-row query tiles ([`fa2_decode_tile_rows`]): with a prefill in the
    /// batch each decode query head fills a tile of its own, which makes mixed steps'
    /// decode attention compute-bound (docs/roofline.md, "Decode attention in query tiles").
    pub fa2_query_tiles: bool,
}

/// Default fraction of the dense tensor peak a large GEMM reaches. NVIDIA's and cuBLAS's own
/// published BF16 GEMM figures are 70–80 % of dense peak at large sizes (e.g. ~750 of 989
/// TFLOP/s on H100 SXM).
pub const GEMM_EFFICIENCY: f64 = 0.75;
/// Default fraction of DRAM bandwidth streaming kernels reach: 80–90 % is what
/// bandwidth-test/STREAM-like copies achieve on HBM and GDDR GPUs.
pub const MEMORY_EFFICIENCY: f64 = 0.85;
/// Default fraction of link bandwidth NCCL's ring all-reduce reaches (bus bandwidth ≈ 80 % of
/// the per-direction link rate in nccl-tests at large messages).
pub const LINK_EFFICIENCY: f64 = 0.80;
/// Default fixed time per kernel, µs: the smallest kernels in the RTX PRO 6000 operator profile
/// (a layernorm of 1 token) take 2.4 µs in eager mode; CUDA graphs remove the CPU part.
pub const KERNEL_US: f64 = 2.0;
/// Default all-reduce latency over NVLink, µs (vLLM's custom all-reduce / NCCL small messages).
pub const NVLINK_ALLREDUCE_US: f64 = 8.0;
/// Default all-reduce latency over PCIe, µs (NCCL; vLLM's custom all-reduce needs NVLink).
pub const PCIE_ALLREDUCE_US: f64 = 25.0;
/// Default per-step overhead, µs: one CUDA-graph launch plus the step's small host↔device
/// copies (inputs, sampled ids), each a few to tens of µs.
pub const STEP_OVERHEAD_US: f64 = 100.0;

impl RooflineParams {
    /// Defaults for `gpu` at `tp` ranks, from published measurements (below).
    pub fn new(gpu: &'static GpuSpec, tp: u64) -> RooflineParams {
        RooflineParams {
            gpu,
            tp,
            ep: 1,
            dtype: None,
            gemm_efficiency: GEMM_EFFICIENCY,
            memory_efficiency: MEMORY_EFFICIENCY,
            attention_efficiency: gpu.attention_kernel.prefill_efficiency(),
            link_efficiency: LINK_EFFICIENCY,
            kernel_us: KERNEL_US,
            allreduce_latency_us: if gpu.uses_nvlink(tp) {
                NVLINK_ALLREDUCE_US
            } else {
                PCIE_ALLREDUCE_US
            },
            step_overhead_us: STEP_OVERHEAD_US,
            recorded_link_gbs: None,
            moe_data_parallel: 1,
            fa2_query_tiles: false,
        }
    }

    /// [`Self::new`] with the GEMM and memory efficiencies and kernel time fitted from public
    /// operator tables for this GPU ([`fitted`]) where there are some (`roofline:eff=fitted`).
    /// Not the default: with them the kernels are closer to their measurements but whole steps
    /// come out faster still, since the time the roofline misses is outside the kernels
    /// (docs/roofline.md).
    pub fn fitted(gpu: &'static GpuSpec, tp: u64) -> RooflineParams {
        let mut p = RooflineParams::new(gpu, tp);
        if let Some(f) = fitted::fitted(gpu.name) {
            p.gemm_efficiency = f.gemm_efficiency;
            p.memory_efficiency = f.memory_efficiency;
            p.kernel_us = f.kernel_us;
        }
        p
    }
}

/// Bytes per weight and FLOP rate of a class of linear layers.
#[derive(Clone, Copy, Debug)]
struct LinearClass {
    weight_bytes: f64,
    flops_per_us: f64,
}

#[derive(Clone, Debug)]
pub struct RooflineLatency {
    params: RooflineParams,
    shape: ModelShape,
    rates: Rates,
    /// Attention projections and dense MLPs.
    linear: LinearClass,
    /// Routed and shared experts.
    experts: LinearClass,
    /// Activation bytes per element (model dtype).
    act_bytes: f64,
    /// Bytes per cached K/V element (`--kv-cache-dtype`: 1 for FP8), read by attention.
    kv_bytes: f64,
    /// Distinct layer kinds and how many layers of each.
    kinds: Vec<(LayerKind, u64)>,
}

fn bad(key: &str, why: impl Into<String>) -> LatencySpecError {
    LatencySpecError::BadParam(key.into(), why.into())
}

impl RooflineLatency {
    /// Builds the model; checks the TP degree against the model's heads as vLLM does.
    pub fn new(shape: &ModelShape, params: RooflineParams) -> Result<Self, LatencySpecError> {
        let p = &params;
        let tp = p.tp;
        if tp == 0 {
            return Err(bad("tp", "must be at least 1"));
        }
        if !shape.num_attention_heads.is_multiple_of(tp) {
            return Err(bad(
                "tp",
                format!(
                    "the model's {} attention heads are not divisible by tp={tp}",
                    shape.num_attention_heads
                ),
            ));
        }
        if p.ep == 0 {
            return Err(bad("ep", "must be at least 1"));
        }
        if let Some(m) = shape
            .moe
            .as_ref()
            .filter(|m| !m.num_experts.is_multiple_of(p.ep))
        {
            return Err(bad(
                "ep",
                format!(
                    "the model's {} experts do not split evenly over ep={}",
                    m.num_experts, p.ep
                ),
            ));
        }
        let kv = shape.kv_heads();
        if shape.mla.is_none() && !kv.is_multiple_of(tp) && !tp.is_multiple_of(kv) {
            return Err(bad(
                "tp",
                format!("the model's {kv} KV heads and tp={tp} do not divide one another"),
            ));
        }
        for (key, v) in [
            ("gemm_eff", p.gemm_efficiency),
            ("mem_eff", p.memory_efficiency),
            ("attn_eff", p.attention_efficiency),
            ("link_eff", p.link_efficiency),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(key, "must be in (0, 1]"));
            }
        }
        for (key, v) in [
            ("kernel_us", p.kernel_us),
            ("ar_latency_us", p.allreduce_latency_us),
            ("overhead_us", p.step_overhead_us),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(key, "must be a finite number >= 0"));
            }
        }
        let g = p.gpu;
        // TFLOP/s → FLOP/µs: × 10⁶; GB/s → B/µs: × 10³.
        let bf16 = g.bf16_tflops * 1e6 * p.gemm_efficiency;
        let fp8 = g.fp8_tflops.map(|f| f * 1e6 * p.gemm_efficiency);
        let dt = shape.dtype_bytes() as f64;
        let q = shape.quantized_weight_bytes();
        let class = |bytes: f64, wants_fp8: bool| LinearClass {
            weight_bytes: bytes,
            flops_per_us: if wants_fp8 { fp8.unwrap_or(bf16) } else { bf16 },
        };
        let (linear, experts) = match (p.dtype, &shape.weight_format) {
            (Some(LinearDtype::Bf16), _) => (class(2.0, false), class(2.0, false)),
            (Some(LinearDtype::Fp8), WeightFormat::Mxfp4Experts) => {
                (class(1.0, true), class(q, false))
            }
            (Some(LinearDtype::Fp8), _) => (class(1.0, true), class(1.0, true)),
            (None, WeightFormat::Unquantized) => (class(dt, false), class(dt, false)),
            (None, WeightFormat::Fp8 { .. }) => (class(q, true), class(q, true)),
            (None, WeightFormat::Mxfp4Experts) => (class(dt, false), class(q, false)),
            (None, WeightFormat::IntWeightOnly { .. }) => (class(q, false), class(q, false)),
        };
        let rates = Rates {
            bf16_gemm_flops_per_us: bf16,
            attention_flops_per_us: g.bf16_tflops * 1e6 * p.attention_efficiency,
            bytes_per_us: g.mem_bandwidth_gbs * 1e3 * p.memory_efficiency,
            link_bytes_per_us: match p.recorded_link_gbs {
                Some(gbs) => gbs * 1e3,
                None => g.link_gbs(tp) * 1e3 * p.link_efficiency,
            },
            kernel_us: p.kernel_us,
            allreduce_latency_us: p.allreduce_latency_us,
        };
        let mut kinds: Vec<(LayerKind, u64)> = Vec::new();
        for l in &shape.layers {
            match kinds.iter_mut().find(|(k, _)| k == l) {
                Some((_, n)) => *n += 1,
                None => kinds.push((*l, 1)),
            }
        }
        Ok(RooflineLatency {
            params,
            shape: shape.clone(),
            rates,
            linear,
            experts,
            act_bytes: dt,
            kv_bytes: shape.kv_cache_dtype_bytes() as f64,
            kinds,
        })
    }

    /// Parses `gpu=NAME,tp=N,dtype=bf16|fp8,gemm_eff=F,mem_eff=F,attn_eff=F,link_eff=F,
    /// kernel_us=F,ar_latency_us=F,overhead_us=F` (all optional, as after `roofline:`); `gpu`
    /// and `tp` default to `default_gpu` / `default_tp`.
    pub fn parse_params(
        params: &str,
        shape: &ModelShape,
        default_gpu: Option<&'static GpuSpec>,
        default_tp: u64,
    ) -> Result<RooflineLatency, LatencySpecError> {
        let hw = HardwareDefaults {
            gpu: default_gpu,
            tensor_parallel_size: Some(default_tp),
            ..Default::default()
        };
        LatencySpec::parse_roofline(params)?.build_roofline(shape, &hw)
    }

    pub fn params(&self) -> &RooflineParams {
        &self.params
    }

    /// Every operator's cost for a batch of `(new tokens, computed before)` requests, in
    /// execution order; the step time is their sum. The MoE layers take the batch's own
    /// tokens (one engine; under expert parallelism its ranks hold the same tokens).
    pub fn breakdown(&self, requests: &[(u64, u64)]) -> Vec<OpTime> {
        self.breakdown_moe(requests, None)
    }

    /// [`Self::breakdown`] of one data-parallel rank whose MoE layers take `gathered` tokens:
    /// every rank's, all-gathered by vLLM's default expert-parallel dispatch
    /// (`allgather_reducescatter`); the rest of the step runs on the rank's own batch.
    pub fn breakdown_gathered(&self, requests: &[(u64, u64)], gathered: u64) -> Vec<OpTime> {
        self.breakdown_moe(requests, Some(gathered))
    }

    fn breakdown_moe(&self, requests: &[(u64, u64)], gathered: Option<u64>) -> Vec<OpTime> {
        let r = &self.rates;
        let s = &self.shape;
        let tp = self.params.tp;
        let ab = self.act_bytes;
        let h = s.hidden_size as f64;
        let t: u64 = requests.iter().map(|&(q, _)| q).sum();
        let seqs = requests.iter().filter(|&&(q, _)| q > 0).count() as u64;
        let tf = t as f64;
        let mut ops = Vec::new();
        let mut push = |mut op: OpTime, count: u64| {
            if count > 0 {
                op.count *= count;
                ops.push(op);
            }
        };
        if t > 0 {
            push(elementwise("embedding", 2.0 * tf * h * ab, r), 1);
            if tp > 1 {
                push(all_reduce("all_reduce", tf * h * ab, tp, r), 1);
            }
            for (kind, n) in &self.kinds {
                for op in self.layer_ops(kind, requests, t, gathered) {
                    push(op, *n);
                }
            }
            push(elementwise("final_layernorm", 3.0 * tf * h * ab, r), 1);
        }
        if seqs > 0 {
            let sf = seqs as f64;
            let v = s.vocab_size as f64;
            // The LM head stays in the model dtype in every supported checkpoint format.
            push(
                gemm(
                    "lm_head",
                    sf,
                    h,
                    v / tp as f64,
                    ab,
                    ab,
                    r.bf16_gemm_flops_per_us,
                    r,
                ),
                1,
            );
            if tp > 1 {
                push(all_gather("logits_gather", sf * v * ab, tp, r), 1);
            }
            // Logits cast to fp32 and reduced by the sampler: ~6 B per logit, a handful of
            // small kernels (temperature, top-k/p masks, argmax/sampling, logprobs).
            let mut sampler = elementwise("sampler", sf * v * 6.0, r);
            sampler.each_us += 4.0 * r.kernel_us;
            push(sampler, 1);
        }
        push(
            OpTime {
                name: "step_overhead",
                count: 1,
                each_us: self.params.step_overhead_us,
                bound: Bound::Fixed,
            },
            1,
        );
        ops
    }

    /// Operators of one layer of `kind`; its routed experts take the `gathered` tokens when
    /// given, else the batch's own `t`.
    fn layer_ops(
        &self,
        kind: &LayerKind,
        requests: &[(u64, u64)],
        t: u64,
        gathered: Option<u64>,
    ) -> Vec<OpTime> {
        let r = &self.rates;
        let s = &self.shape;
        let tp = self.params.tp;
        let ab = self.act_bytes;
        let (tf, h, tpf) = (t as f64, s.hidden_size as f64, tp as f64);
        let lin = self.linear;
        let mut ops = vec![elementwise("layernorm", 3.0 * tf * h * ab, r)];
        let work = AttentionWork::of(requests, kind.sliding_window);
        let heads = (s.num_attention_heads / tp) as f64;
        if let Some(mla) = &s.mla {
            let qk = (mla.qk_nope_head_dim + mla.qk_rope_head_dim) as f64;
            let latent = mla.latent_dim() as f64;
            let kv_lora = mla.kv_lora_rank as f64;
            let v_dim = mla.v_head_dim as f64;
            // Down-projections are replicated on every rank; up-projections column-parallel.
            match mla.q_lora_rank {
                Some(qr) => {
                    let qr = qr as f64;
                    ops.push(gemm(
                        "qkv_a_proj",
                        tf,
                        h,
                        qr + latent,
                        lin.weight_bytes,
                        ab,
                        lin.flops_per_us,
                        r,
                    ));
                    ops.push(gemm(
                        "q_b_proj",
                        tf,
                        qr,
                        heads * qk,
                        lin.weight_bytes,
                        ab,
                        lin.flops_per_us,
                        r,
                    ));
                }
                None => {
                    ops.push(gemm(
                        "q_proj",
                        tf,
                        h,
                        heads * qk,
                        lin.weight_bytes,
                        ab,
                        lin.flops_per_us,
                        r,
                    ));
                    ops.push(gemm(
                        "kv_a_proj",
                        tf,
                        h,
                        latent,
                        lin.weight_bytes,
                        ab,
                        lin.flops_per_us,
                        r,
                    ));
                }
            }
            ops.push(elementwise(
                "rotary_emb",
                2.0 * tf * (heads + 1.0) * mla.qk_rope_head_dim as f64 * ab,
                r,
            ));
            let up_n = heads * (mla.qk_nope_head_dim as f64 + v_dim);
            if work.prefill_tokens > 0 {
                // Prefill decompresses the latent of every context token, then runs MHA with
                // q·k over qk_nope + qk_rope and v of v_head_dim.
                ops.push(gemm(
                    "kv_b_proj",
                    work.prefill_kv_tokens as f64,
                    kv_lora,
                    up_n,
                    lin.weight_bytes,
                    ab,
                    lin.flops_per_us,
                    r,
                ));
                ops.push(kernel(
                    "attention_prefill",
                    2.0 * heads * (qk + v_dim) * work.prefill_pairs,
                    r.attention_flops_per_us,
                    work.prefill_kv_tokens as f64 * (latent + heads * (qk + v_dim)) * ab
                        + work.prefill_tokens as f64 * heads * (qk + v_dim) * ab,
                    r,
                ));
            }
            if work.decodes > 0 {
                // Decode absorbs W_UK into the query and W_UV into the output (weights read
                // once), and attends over the cached latents: MQA with 576-wide keys.
                ops.push(gemm(
                    "mla_absorb",
                    work.decodes as f64,
                    kv_lora,
                    up_n,
                    lin.weight_bytes,
                    ab,
                    r.bf16_gemm_flops_per_us,
                    r,
                ));
                ops.push(kernel(
                    "attention_decode",
                    2.0 * heads * (latent + kv_lora) * work.decode_kv_tokens as f64,
                    r.attention_flops_per_us,
                    work.decode_kv_tokens as f64 * latent * self.kv_bytes,
                    r,
                ));
            }
            ops.push(gemm(
                "o_proj",
                tf,
                heads * v_dim,
                h,
                lin.weight_bytes,
                ab,
                lin.flops_per_us,
                r,
            ));
        } else {
            let d = s.head_dim() as f64;
            let kvh = s.kv_heads_per_rank(tp) as f64;
            ops.push(gemm(
                "qkv_proj",
                tf,
                h,
                (heads + 2.0 * kvh) * d,
                lin.weight_bytes,
                ab,
                lin.flops_per_us,
                r,
            ));
            if s.qk_norm {
                ops.push(elementwise("qk_norm", 2.0 * tf * (heads + kvh) * d * ab, r));
            }
            ops.push(elementwise(
                "rotary_emb",
                2.0 * tf * (heads + kvh) * d * ab,
                r,
            ));
            let kv_token = 2.0 * kvh * d * self.kv_bytes;
            if work.prefill_tokens > 0 {
                ops.push(kernel(
                    "attention_prefill",
                    4.0 * heads * d * work.prefill_pairs,
                    r.attention_flops_per_us,
                    work.prefill_kv_tokens as f64 * kv_token
                        + work.prefill_tokens as f64 * 2.0 * heads * d * ab,
                    r,
                ));
            }
            if work.decodes > 0 {
                let flops = if self.params.fa2_query_tiles
                    && self.params.gpu.attention_kernel == AttentionKernel::FlashAttention2
                {
                    let group = (heads / kvh).round().max(1.0) as u64;
                    let rows = fa2_decode_tile_rows(
                        work.prefill_tokens > 0,
                        group,
                        kind.sliding_window.is_some(),
                    );
                    4.0 * kvh * d * rows as f64 * work.decode_kv_tokens as f64
                } else {
                    4.0 * heads * d * work.decode_kv_tokens as f64
                };
                ops.push(kernel(
                    "attention_decode",
                    flops,
                    r.attention_flops_per_us,
                    work.decode_kv_tokens as f64 * kv_token
                        + work.decodes as f64 * 2.0 * heads * d * ab,
                    r,
                ));
            }
            ops.push(gemm(
                "o_proj",
                tf,
                heads * d,
                h,
                lin.weight_bytes,
                ab,
                lin.flops_per_us,
                r,
            ));
        }
        if tp > 1 {
            ops.push(all_reduce("all_reduce", tf * h * ab, tp, r));
        }
        ops.push(elementwise("layernorm", 3.0 * tf * h * ab, r));
        match (&s.moe, kind.moe) {
            (Some(m), true) => {
                let e = m.num_experts;
                let ex = self.experts;
                // Router in the model dtype, replicated.
                ops.push(gemm(
                    "moe_router",
                    tf,
                    h,
                    e as f64,
                    ab,
                    ab,
                    r.bf16_gemm_flops_per_us,
                    r,
                ));
                // Only a gathered batch is split over the data-parallel group.
                let work = match gathered {
                    Some(g) => self.routed_work_over(m, g, self.params.moe_data_parallel),
                    None => self.routed_work(m, t),
                };
                ops.extend(self.routed_expert_ops(work));
                if m.shared_experts > 0 {
                    let si = (m.shared_experts * m.expert_intermediate_size) as f64 / tpf;
                    ops.push(gemm(
                        "shared_gate_up",
                        tf,
                        h,
                        2.0 * si,
                        ex.weight_bytes,
                        ab,
                        ex.flops_per_us,
                        r,
                    ));
                    ops.push(elementwise("act_fn", tf * 3.0 * si * ab, r));
                    ops.push(gemm(
                        "shared_down",
                        tf,
                        si,
                        h,
                        ex.weight_bytes,
                        ab,
                        ex.flops_per_us,
                        r,
                    ));
                }
            }
            _ => {
                let i = s.intermediate_size as f64 / tpf;
                ops.push(gemm(
                    "gate_up_proj",
                    tf,
                    h,
                    2.0 * i,
                    lin.weight_bytes,
                    ab,
                    lin.flops_per_us,
                    r,
                ));
                ops.push(elementwise("act_fn", tf * 3.0 * i * ab, r));
                ops.push(gemm(
                    "down_proj",
                    tf,
                    i,
                    h,
                    lin.weight_bytes,
                    ab,
                    lin.flops_per_us,
                    r,
                ));
            }
        }
        if tp > 1 {
            ops.push(all_reduce("all_reduce", tf * h * ab, tp, r));
        }
        ops
    }

    /// What one rank's routed experts compute in one MoE layer that `tokens` tokens enter
    /// (under a uniform, balanced gate). Without expert parallelism every rank holds all `E`
    /// experts, TP-sharded along the intermediate dimension: `tokens · k` token-expert pairs
    /// over the `E (1 − (1 − k/E)^tokens)` distinct experts they hit. Under expert parallelism
    /// of `ep` ranks each rank holds `E / ep` whole experts (vLLM runs the experts at TP 1) and
    /// its fused-MoE kernel computes only the pairs routed to them: `tokens · k / ep` pairs,
    /// reading the weights of the `1/ep` share of the distinct experts hit.
    pub fn routed_work(&self, m: &MoeShape, tokens: u64) -> RoutedWork {
        self.routed_work_over(m, tokens, 1)
    }

    /// [`Self::routed_work`] of `tokens` gathered from `dp` data-parallel ranks: without expert
    /// parallelism vLLM splits each expert's width over `dp × tp` GPUs
    /// (`FusedMoEParallelConfig.make` flattens the MoE layers' TP over DP); under expert
    /// parallelism `dp` changes nothing (the experts are split whole over `ep`).
    fn routed_work_over(&self, m: &MoeShape, tokens: u64, dp: u64) -> RoutedWork {
        let (ep, tp) = (self.params.ep as f64, self.params.tp as f64);
        let hit = expected_distinct_experts(m.num_experts, m.experts_per_token, tokens);
        let i = m.expert_intermediate_size as f64;
        RoutedWork {
            rows: (tokens * m.experts_per_token) as f64 / ep,
            experts_hit: hit / ep,
            intermediate: if self.params.ep > 1 {
                i
            } else {
                i / (tp * dp as f64)
            },
        }
    }

    /// The routed experts' kernels of one MoE layer doing `w`: the fused gate/up projection
    /// over the pairs, the activation, the down projection; each reads the weights of the
    /// experts hit once.
    pub fn routed_expert_ops(&self, w: RoutedWork) -> Vec<OpTime> {
        let r = &self.rates;
        let ab = self.act_bytes;
        let h = self.shape.hidden_size as f64;
        let ex = self.experts;
        let (rows, hit, i) = (w.rows, w.experts_hit, w.intermediate);
        vec![
            kernel(
                "moe_gate_up",
                2.0 * rows * h * 2.0 * i,
                ex.flops_per_us,
                hit * h * 2.0 * i * ex.weight_bytes + rows * (h + 2.0 * i) * ab,
                r,
            ),
            elementwise("act_fn", rows * 3.0 * i * ab, r),
            kernel(
                "moe_down",
                2.0 * rows * i * h,
                ex.flops_per_us,
                hit * i * h * ex.weight_bytes + rows * (i + h) * ab,
                r,
            ),
        ]
    }

    /// Step time of a batch of `(new tokens, computed before)` requests, µs.
    pub fn step_us(&self, requests: &[(u64, u64)]) -> f64 {
        self.breakdown(requests).iter().map(OpTime::total_us).sum()
    }

    /// [`Self::step_us`] of a data-parallel rank whose MoE layers take `gathered` tokens
    /// ([`Self::breakdown_gathered`]), µs.
    pub fn step_us_gathered(&self, requests: &[(u64, u64)], gathered: u64) -> f64 {
        self.breakdown_gathered(requests, gathered)
            .iter()
            .map(OpTime::total_us)
            .sum()
    }
}

/// One rank's routed-expert work in one MoE layer ([`RooflineLatency::routed_work`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoutedWork {
    /// Token-expert pairs the rank computes (rows of its grouped GEMMs).
    pub rows: f64,
    /// Expected distinct local experts hit, whose weights the step reads.
    pub experts_hit: f64,
    /// Intermediate width of one expert on the rank.
    pub intermediate: f64,
}

fn batch_requests(batch: &StepBatch<'_>) -> Vec<(u64, u64)> {
    batch
        .requests
        .iter()
        .map(|r| (r.num_tokens as u64, r.num_computed_before as u64))
        .collect()
}

impl LatencyModel for RooflineLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        Nanos((self.step_us(&batch_requests(batch)) * 1000.0).round() as u64)
    }

    /// The MoE layers' routed experts priced on the gathered batch
    /// ([`Self::breakdown_gathered`]).
    fn step_time_gathered(&mut self, batch: &StepBatch<'_>, moe_tokens: usize) -> Nanos {
        let us = self.step_us_gathered(&batch_requests(batch), moe_tokens as u64);
        Nanos((us * 1000.0).round() as u64)
    }

    fn describe(&self) -> String {
        let p = &self.params;
        let dtype = match (p.dtype, &self.shape.weight_format) {
            (None, WeightFormat::Unquantized) => "checkpoint dtype".to_string(),
            (None, WeightFormat::Fp8 { .. }) => "fp8 weights".to_string(),
            (None, WeightFormat::Mxfp4Experts) => "mxfp4 experts".to_string(),
            (None, WeightFormat::IntWeightOnly { bits, .. }) => format!("int{bits} weights"),
            (Some(LinearDtype::Bf16), _) => "bf16".to_string(),
            (Some(LinearDtype::Fp8), _) => "fp8".to_string(),
        };
        let link = match p.recorded_link_gbs {
            Some(gbs) => format!("recorded link {} GB/s", (gbs * 100.0).round() / 100.0),
            None => format!("link_eff {}", p.link_efficiency),
        };
        let ep = if p.ep > 1 && self.shape.moe.is_some() {
            format!(", experts over ep={}", p.ep)
        } else if p.moe_data_parallel > 1 && self.shape.moe.is_some() {
            format!(
                ", routed experts on the gathered batch of {} data-parallel ranks, each \
                 expert's width split over {} GPUs",
                p.moe_data_parallel,
                p.moe_data_parallel * p.tp
            )
        } else {
            String::new()
        };
        let tiles =
            if p.fa2_query_tiles && p.gpu.attention_kernel == AttentionKernel::FlashAttention2 {
                ", attn_tiles on (decode attention in FA2 query tiles)"
            } else {
                ""
            };
        format!(
            "roofline: {} × {} ({}{ep}), gemm_eff {}, mem_eff {}, attn_eff {}, {link}, \
             kernel {} µs, all-reduce latency {} µs, step overhead {} µs{tiles}",
            p.tp,
            p.gpu.name,
            dtype,
            p.gemm_efficiency,
            p.memory_efficiency,
            p.attention_efficiency,
            p.kernel_us,
            p.allreduce_latency_us,
            p.step_overhead_us
        )
    }
}
