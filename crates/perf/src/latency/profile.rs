//! `profile:dir=PATH[,tp=N]`: step time composed from per-operator latencies measured on a real
//! GPU (LLMServingSim's profile format), the way that peer simulator composes them — see
//! `docs/operator-profiles.md`, "How the peer composes one step":
//!
//! ```text
//! step = embedding(T) + L × [Σ dense rows of one block at T + attention(pc, kp, nd, kv)]
//!      + final_layernorm(T) + lm_head(S) + sampler(S)
//! ```
//!
//! A Llama block's dense rows are `layernorm` twice (input and post-attention), `qkv_proj`,
//! `rotary_emb`, `o_proj`, `gate_up_proj`, `act_fn`, `down_proj` (plus `qk_norm` once when the
//! profile has it, as Qwen3 does). Every row is looked up as whole nanoseconds (the peer's
//! `latency_ns`), so the sum is exact. A mixture-of-experts layer runs the profile's measured
//! MoE block (`tp1/moe.csv`) instead of the three MLP rows, at the per-rank load of a balanced
//! gate; see `moe.rs` and `docs/operator-profiles-moe.md`.
//!
//! Beyond the peer: token-wise operators are priced at the engine's CUDA-graph-padded batch
//! ([`StepBatch::padded_tokens`]), the profile's `overheads.yaml` adds a measured per-step device
//! overhead, and TP > 1 (the `tp<N>/` per-rank tables) adds two ring all-reduces of the hidden
//! states per layer when a link bandwidth is known (`tp_link_gbps`); see `overheads.rs`.

mod attention;
mod moe;
pub(crate) mod overheads;
mod skew;
mod tables;

use super::{LatencyModel, StepBatch};
use crate::sizing::ModelShape;
use attention::AttentionTable;
use llm_emu_core::Nanos;
use moe::{MoeBlock, MoeTable};
pub use moe::{MoeRouting, MOE_FILE};
pub use overheads::{Overheads, OVERHEADS_FILE};
use skew::{Meta, SkewFit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tables::{Csv, Table1D};
use thiserror::Error;

pub use tables::{axis_bracket, interp, Table1D as ProfileTable1D};

/// Why a profile could not be loaded. Every variant names its file; row errors name the
/// 1-based line and column.
#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty (no header or no data rows)")]
    Empty { path: PathBuf },
    #[error(
        "{dir}: no tp{tp} folder: the profile was measured at tensor-parallel degree {} only",
        if measured.is_empty() { "(none: no tpN folder)".to_string() } else { measured.join(", ") }
    )]
    NoTp {
        dir: PathBuf,
        tp: u32,
        /// The degrees the profile has (`tpN` folders), ascending.
        measured: Vec<String>,
    },
    #[error("{path}: line 1: header is `{found}`, expected `{expected}`")]
    Header {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "{path}: line {line}, column {column}: {found} fields, expected {expected}{}",
        if *truncated { " (truncated row)" } else { "" }
    )]
    Columns {
        path: PathBuf,
        line: usize,
        column: usize,
        expected: usize,
        found: usize,
        truncated: bool,
    },
    #[error("{path}: line {line}, column {column} ({name}): `{value}` is {reason}")]
    Field {
        path: PathBuf,
        line: usize,
        column: usize,
        name: String,
        value: String,
        reason: String,
    },
    #[error("{path}: layer kind `{layer}` missing")]
    MissingLayer { path: PathBuf, layer: String },
    #[error("{path}: line {line}: unknown layer kind `{layer}`")]
    UnknownLayer {
        path: PathBuf,
        line: usize,
        layer: String,
    },
    #[error("{path}: line {line}: `{key}`: {reason}")]
    Meta {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
    #[error("{path}: line {line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: line {line}: {what} repeats line {first}: each grid point is measured once")]
    DuplicateRow {
        path: PathBuf,
        line: usize,
        first: usize,
        what: String,
    },
    #[error("tensor-parallel degree must be at least 1")]
    BadTp,
    #[error(
        "expert-parallel size {ep} does not divide the model's {num_experts} experts \
         (it must be at least 1 and divide them)"
    )]
    BadEp { ep: u64, num_experts: u64 },
    #[error(
        "MoE experts split over {shards} tensor-parallel shards with expert parallelism {ep}: \
         vLLM shards an expert's width only without expert parallelism, over at least 1 GPU"
    )]
    BadMoeShards { shards: u64, ep: u64 },
    #[error(
        "{path}: missing: the model is a mixture of experts ({moe_layers} of {layers} layers) \
         and its MoE layers are priced from this table (`tokens,activated_experts,time_us`, \
         the peer profiler's MoE category, measured at TP 1)"
    )]
    MissingMoeTable {
        path: PathBuf,
        moe_layers: u64,
        layers: u64,
    },
}

/// A step reduced to what the composition reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// T: Σ tokens scheduled.
    pub tokens: u64,
    /// S: requests scheduled (lm_head and sampler rows; the peer counts every scheduled
    /// request, partial prefill chunks included).
    pub sequences: u64,
    /// pc: Σ new tokens of requests scheduled with more than one token.
    pub prefill_chunk: u64,
    /// kp: Σ tokens already computed of those requests.
    pub kv_prefill: u64,
    /// nd: requests scheduled with exactly one token.
    pub n_decode: u64,
    /// ⌊Σ decode context / nd⌋ (0 without decodes).
    pub kv_mean: u64,
    pub kv_max: u64,
    pub kv_min: u64,
}

impl BatchShape {
    /// Reduces `(num_tokens, num_computed_before)` pairs; requests with 0 tokens are skipped.
    pub fn from_requests(reqs: impl IntoIterator<Item = (usize, usize)>) -> BatchShape {
        let mut b = BatchShape {
            kv_min: u64::MAX,
            ..Default::default()
        };
        let mut kv_sum = 0u64;
        for (q, computed) in reqs {
            let (q, c) = (q as u64, computed as u64);
            if q == 0 {
                continue;
            }
            b.tokens += q;
            b.sequences += 1;
            if q > 1 {
                b.prefill_chunk += q;
                b.kv_prefill += c;
            } else {
                b.n_decode += 1;
                kv_sum += c;
                b.kv_max = b.kv_max.max(c);
                b.kv_min = b.kv_min.min(c);
            }
        }
        match kv_sum.checked_div(b.n_decode) {
            Some(mean) => b.kv_mean = mean,
            None => b.kv_min = 0,
        }
        b
    }

    /// `n` decodes at context `kv` each.
    pub fn decodes(n: u64, kv: u64) -> BatchShape {
        Self::from_requests((0..n).map(|_| (1, kv as usize)))
    }
}

/// Dense layer kinds every profile must have, and how many times each runs per block.
const BLOCK_LAYERS: [(&str, u32); 4] = [
    ("layernorm", 2),
    ("qkv_proj", 1),
    ("rotary_emb", 1),
    ("o_proj", 1),
];
/// The dense gated MLP's kinds, once each per dense layer: required when the model has a dense
/// layer (every layer of a dense model; `mlp_only_layers` / `first_k_dense_replace` ones of a
/// MoE model); a MoE layer runs the `moe.csv` block instead.
const MLP_LAYERS: [&str; 3] = ["gate_up_proj", "act_fn", "down_proj"];
/// Optional per-block kinds (Qwen3).
const OPTIONAL_BLOCK_LAYERS: [(&str, u32); 1] = [("qk_norm", 1)];

#[derive(Clone, Debug)]
pub struct ProfileLatency {
    dir: PathBuf,
    tp: u32,
    num_layers: u64,
    /// Layers whose MLP is the MoE block (the rest run the dense MLP rows).
    num_moe_layers: u64,
    /// Bytes of one token's hidden state (bf16), all-reduced twice per layer under TP.
    hidden_bytes: f64,
    embedding: Table1D,
    final_layernorm: Table1D,
    /// (table, times per block): the rows every layer runs.
    block: Vec<(Table1D, f64)>,
    /// The dense MLP rows (empty when no layer is dense).
    mlp: Vec<Table1D>,
    /// The MoE block, for a mixture-of-experts model.
    moe: Option<MoeBlock>,
    lm_head: Table1D,
    sampler: Table1D,
    attention: AttentionTable,
    skew: SkewFit,
    overheads: Overheads,
    /// The largest value seen of each batch axis, to report lookups beyond the tables.
    seen: [u64; AXES.len()],
    /// The largest gathered token count a MoE layer took (`step_time_gathered`), to report
    /// lookups beyond `moe.csv`.
    moe_seen: u64,
    /// Where a TP link figure not from `overheads.yaml` or the spec came from.
    tp_link_source: Option<String>,
    /// `meta.yaml`'s `gpu` (else `hardware`) and `model`.
    measured_gpu: Option<String>,
    measured_model: Option<String>,
}

/// Batch axes whose coverage is reported: (name, unit).
const AXES: [(&str, &str); 6] = [
    ("tokens per step", "dense.csv"),
    ("sequences per step", "per_sequence.csv"),
    ("prefill tokens per step", "attention.csv prefill_chunk"),
    (
        "computed tokens of prefilling requests",
        "attention.csv kv_prefill",
    ),
    ("decodes per step", "attention.csv n_decode"),
    ("decode context", "attention.csv kv_decode"),
];

impl ProfileLatency {
    /// Loads `dir/meta.yaml` and `dir/tp<tp>/{dense,per_sequence,attention}.csv` (plus the
    /// skew table meta.yaml names for this TP, and `dir/tp1/moe.csv` for a mixture-of-experts
    /// `shape`, its experts on one rank: see [`Self::with_ep_size`]).
    pub fn load(dir: &Path, shape: &ModelShape, tp: u32) -> Result<ProfileLatency, ProfileError> {
        if tp == 0 {
            return Err(ProfileError::BadTp);
        }
        let tp_dir = dir.join(format!("tp{tp}"));
        let meta = Meta::read(&dir.join("meta.yaml"))?;
        let on_disk = !dir
            .to_str()
            .is_some_and(|d| d.starts_with(tables::BUILTIN_PREFIX));
        if on_disk && !tp_dir.is_dir() {
            let mut measured: Vec<u32> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| {
                            e.ok()?
                                .file_name()
                                .to_str()?
                                .strip_prefix("tp")?
                                .parse()
                                .ok()
                        })
                        .collect()
                })
                .unwrap_or_default();
            measured.sort_unstable();
            return Err(ProfileError::NoTp {
                dir: dir.to_path_buf(),
                tp,
                measured: measured.iter().map(u32::to_string).collect(),
            });
        }
        let skew = SkewFit::load(&meta, dir, tp)?;

        let dense_path = tp_dir.join("dense.csv");
        let mut dense = read_1d(&dense_path, "tokens")?;
        let per_seq_path = tp_dir.join("per_sequence.csv");
        let mut per_seq = read_1d(&per_seq_path, "sequences")?;
        let take = |m: &mut BTreeMap<String, (usize, Table1D)>, path: &Path, name: &str| {
            m.remove(name)
                .map(|(_, t)| t)
                .ok_or_else(|| ProfileError::MissingLayer {
                    path: path.to_path_buf(),
                    layer: name.to_string(),
                })
        };
        let embedding = take(&mut dense, &dense_path, "embedding")?;
        let final_layernorm = take(&mut dense, &dense_path, "final_layernorm")?;
        let mut block = Vec::new();
        for (name, times) in BLOCK_LAYERS {
            block.push((take(&mut dense, &dense_path, name)?, times as f64));
        }
        for (name, times) in OPTIONAL_BLOCK_LAYERS {
            if let Some((_, t)) = dense.remove(name) {
                block.push((t, times as f64));
            }
        }
        let num_layers = shape.num_hidden_layers;
        let num_moe_layers = if shape.moe.is_some() {
            shape.num_moe_layers().min(num_layers)
        } else {
            0
        };
        let mut mlp = Vec::new();
        for name in MLP_LAYERS {
            if num_moe_layers < num_layers {
                mlp.push(take(&mut dense, &dense_path, name)?);
            } else {
                dense.remove(name);
            }
        }
        let moe = match shape.moe.as_ref().filter(|_| num_moe_layers > 0) {
            Some(m) => Some(MoeBlock {
                table: load_moe_table(dir, num_moe_layers, num_layers)?,
                routing: MoeRouting::new(m.num_experts, m.experts_per_token, 1)?,
            }),
            None => None,
        };
        if let Some((layer, (line, _))) = dense.into_iter().next() {
            return Err(ProfileError::UnknownLayer {
                path: dense_path,
                line,
                layer,
            });
        }
        let lm_head = take(&mut per_seq, &per_seq_path, "lm_head")?;
        let sampler = take(&mut per_seq, &per_seq_path, "sampler")?;
        if let Some((layer, (line, _))) = per_seq.into_iter().next() {
            return Err(ProfileError::UnknownLayer {
                path: per_seq_path,
                line,
                layer,
            });
        }
        let attention = AttentionTable::load(&tp_dir.join("attention.csv"))?;
        let overheads = Overheads::load(dir, &meta)?;
        Ok(ProfileLatency {
            dir: dir.to_path_buf(),
            tp,
            num_layers,
            num_moe_layers,
            hidden_bytes: shape.hidden_size as f64 * 2.0,
            embedding,
            final_layernorm,
            block,
            mlp,
            moe,
            lm_head,
            sampler,
            attention,
            skew,
            overheads,
            seen: [0; AXES.len()],
            moe_seen: 0,
            tp_link_source: None,
            measured_gpu: meta.get("gpu").or(meta.get("hardware")).map(str::to_string),
            measured_model: meta.get("model").map(str::to_string),
        })
    }

    /// The model `dir/meta.yaml` says the profile was measured with (`model:`, quotes
    /// removed), for resolving the shape when no model is named: a post-trained release name
    /// resolves through its base (`ModelShape::resolve_noted`).
    pub fn measured_model(dir: &Path) -> Result<Option<String>, ProfileError> {
        let meta = Meta::read(&dir.join("meta.yaml"))?;
        Ok(meta
            .get("model")
            .map(|m| m.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .filter(|m| !m.is_empty()))
    }

    /// The largest profiled value of each axis of [`AXES`].
    fn extent(&self) -> [u64; AXES.len()] {
        let last = |t: &Table1D| t.keys.last().copied().unwrap_or(0.0) as u64;
        let dense = self
            .block
            .iter()
            .map(|(t, _)| last(t))
            .chain(self.mlp.iter().map(last))
            .chain([last(&self.embedding), last(&self.final_layernorm)])
            .chain(self.moe.as_ref().map(|m| m.table.max_tokens()))
            .min()
            .unwrap_or(0);
        let seqs = last(&self.lm_head).min(last(&self.sampler));
        let [pc, kp, nd, kd] = self.attention.extent();
        [dense, seqs, pc, kp, nd, kd]
    }

    /// The tensor-parallel degree whose tables are in use.
    pub fn tp(&self) -> u32 {
        self.tp
    }

    /// Splits the experts over `ep` expert-parallel ranks (vLLM's `--enable-expert-parallel`
    /// makes it the TP × DP size): each rank owns `E / ep` experts and the MoE layer costs the
    /// busiest rank's share (see `moe.rs`). `ep` must be at least 1 and divide the expert
    /// count; a dense model accepts any `ep` ≥ 1 and is unchanged. The dispatch and combine
    /// collectives around the block are not priced.
    pub fn with_ep_size(mut self, ep: u32) -> Result<ProfileLatency, ProfileError> {
        match self.moe.as_mut() {
            Some(m) => {
                m.routing = MoeRouting::new(m.routing.num_experts, m.routing.top_k, ep.into())?
            }
            None if ep == 0 => {
                return Err(ProfileError::BadEp {
                    ep: 0,
                    num_experts: 0,
                })
            }
            None => {}
        }
        Ok(self)
    }

    /// Makes the model a rank of a data-parallel group of `dp` ranks without expert
    /// parallelism: vLLM 0.19 flattens the MoE layers' tensor parallelism over DP × TP
    /// (`FusedMoEParallelConfig.make`), so each expert's width is split over `dp × tp` GPUs
    /// and each rank's MoE layers run on the group's gathered batch
    /// ([`LatencyModel::step_time_gathered`], [`MoeRouting::gathered_per_rank`]). Refused
    /// when the experts are split by expert parallelism already; a dense model is unchanged.
    /// With `dp` 1 and tensor parallelism, each expert's width is split over the TP GPUs,
    /// unless expert parallelism places whole experts on them (vLLM's MoE TP size is 1 under
    /// EP, `FusedMoEParallelConfig.make`).
    pub fn with_moe_data_parallel(mut self, dp: u32) -> Result<ProfileLatency, ProfileError> {
        if let Some(m) = self.moe.as_mut().filter(|m| dp > 1 || m.routing.ep == 1) {
            m.routing = m
                .routing
                .with_tp_shards(u64::from(dp) * u64::from(self.tp))?;
        }
        Ok(self)
    }

    /// The routing of a mixture-of-experts model's MoE layers (`None` for a dense model).
    pub fn moe_routing(&self) -> Option<MoeRouting> {
        self.moe.as_ref().map(|m| m.routing)
    }

    /// Sets the all-reduce link from a GPU's datasheet when neither `overheads.yaml` nor the
    /// spec gave one.
    pub fn default_tp_link(&mut self, gbps: f64, hop_latency_us: f64, gpu: &str) {
        if self.overheads.tp_link_gbps.is_none() {
            self.overheads.tp_link_gbps = Some(gbps);
            self.overheads.tp_link_latency_us = hop_latency_us;
            self.tp_link_source = Some(format!("{gpu} datasheet"));
        }
    }

    /// Sets the all-reduce link a real run recorded (its cluster config), replacing the
    /// profile's `overheads.yaml` figure: the run's own link is the one its timings saw.
    pub fn recorded_tp_link(&mut self, gbps: f64, hop_latency_us: f64, source: &str) {
        self.overheads.tp_link_gbps = Some(gbps);
        self.overheads.tp_link_latency_us = hop_latency_us;
        self.tp_link_source = Some(source.to_string());
    }

    /// The per-step overhead in use.
    pub fn overheads(&self) -> &Overheads {
        &self.overheads
    }

    /// Applies what a `profile:` spec names over the profile's own figures: the per-step
    /// overhead (µs), the TP link bandwidth (GB/s) and hop latency (µs).
    pub fn spec_overrides(
        &mut self,
        step_overhead_us: Option<f64>,
        tp_link_gbps: Option<f64>,
        tp_link_latency_us: Option<f64>,
    ) {
        if let Some(us) = step_overhead_us {
            self.overheads.step_overhead_us = us;
            self.overheads.source = Some("the spec".into());
        }
        if tp_link_gbps.is_some() {
            self.overheads.tp_link_gbps = tp_link_gbps;
        }
        if let Some(us) = tp_link_latency_us {
            self.overheads.tp_link_latency_us = us;
        }
    }

    /// One attention layer in ns, skew-corrected (the peer's `_lookup_attention_with_skew`).
    pub fn attention_ns(&self, b: &BatchShape) -> f64 {
        if b.prefill_chunk == 0 && b.n_decode == 0 {
            return 0.0;
        }
        let (pc, kp, nd) = (b.prefill_chunk, b.kv_prefill, b.n_decode);
        let t_mean = self.attention.lookup_ns(pc, kp, nd, b.kv_mean);
        if nd <= 1 || b.kv_max == b.kv_mean {
            return t_mean;
        }
        let gap = b.kv_max - b.kv_min;
        let skew_rate = if gap > 0 {
            (b.kv_mean - b.kv_min) as f64 / gap as f64
        } else {
            0.5
        };
        let alpha = self.skew.alpha(pc, nd, skew_rate, b.kv_max, kp);
        if alpha == 0.0 {
            return t_mean;
        }
        let t_max = self.attention.lookup_ns(pc, kp, nd, b.kv_max);
        if t_max <= t_mean {
            return t_mean;
        }
        (t_mean + alpha * (t_max - t_mean))
            .round_ties_even()
            .max(1.0)
    }

    /// The composed step time in ns: every layer runs the common rows and attention, a dense
    /// layer the MLP rows, a MoE layer the MoE block.
    pub fn step_ns(&self, b: &BatchShape) -> u64 {
        self.step_ns_moe(b, None)
    }

    /// [`Self::step_ns`] with the MoE layers' experts priced on `gathered` tokens when given: a
    /// data-parallel rank under vLLM's all-gather dispatch runs its local experts on the
    /// token-expert pairs of every rank's tokens that route to them
    /// ([`MoeBlock::layer_ns_gathered`]); `None` prices the batch's own tokens by the peer's rule.
    pub fn step_ns_moe(&self, b: &BatchShape, gathered: Option<u64>) -> u64 {
        let t = b.tokens;
        let block: f64 = self
            .block
            .iter()
            .map(|(tab, times)| times * tab.lookup_ns(t))
            .sum::<f64>()
            + self.attention_ns(b);
        let mlp: f64 = self.mlp.iter().map(|tab| tab.lookup_ns(t)).sum();
        let moe = self.moe.as_ref().map_or(0.0, |m| match gathered {
            Some(g) => m.layer_ns_gathered(g),
            None => m.layer_ns(t),
        });
        let dense_layers = self.num_layers - self.num_moe_layers;
        let ns = self.embedding.lookup_ns(t)
            + self.num_layers as f64 * block
            + dense_layers as f64 * mlp
            + self.num_moe_layers as f64 * moe
            + self.final_layernorm.lookup_ns(t)
            + self.lm_head.lookup_ns(b.sequences)
            + self.sampler.lookup_ns(b.sequences);
        ns as u64
    }

    /// The composed step time in ms (for reports and tests).
    pub fn step_ms(&self, b: &BatchShape) -> f64 {
        self.step_ns(b) as f64 / 1e6
    }
}

/// `dir/tp1/moe.csv` (the peer profiles the MoE block at TP 1 only and reads it at any TP);
/// its absence is [`ProfileError::MissingMoeTable`].
fn load_moe_table(dir: &Path, moe_layers: u64, layers: u64) -> Result<MoeTable, ProfileError> {
    let path = dir.join("tp1").join(MOE_FILE);
    match MoeTable::load(&path) {
        Err(ProfileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ProfileError::MissingMoeTable {
                path,
                moe_layers,
                layers,
            })
        }
        r => r,
    }
}

/// Reads a `layer,<key>,time_us` CSV into one table per layer, remembering each layer's first
/// line for error messages. A `(layer, key)` pair given twice is refused.
fn read_1d(path: &Path, key: &str) -> Result<BTreeMap<String, (usize, Table1D)>, ProfileError> {
    let csv = Csv::read(path, &["layer", key, "time_us"])?;
    let mut pairs: BTreeMap<String, (usize, Vec<(u64, f64)>)> = BTreeMap::new();
    let mut seen = std::collections::HashMap::new();
    for row in &csv.rows {
        let k = csv.uint(row, 1)?;
        let ns = csv.time_ns(row, 2)?;
        let name = row.fields[0].clone();
        if name.is_empty() {
            return Err(csv.label_error(row, 0, "an empty layer name"));
        }
        csv.once(&mut seen, (name.clone(), k), row, || {
            format!("layer `{name}` at {key} {k}")
        })?;
        pairs
            .entry(name)
            .or_insert_with(|| (row.line, Vec::new()))
            .1
            .push((k, ns));
    }
    Ok(pairs
        .into_iter()
        .map(|(n, (line, p))| (n, (line, Table1D::from_pairs(p))))
        .collect())
}

impl ProfileLatency {
    /// One step's time; the MoE layers' experts take `moe_tokens` tokens (`None`: the
    /// batch's own padded tokens).
    fn priced_step(&mut self, batch: &StepBatch<'_>, moe_tokens: Option<u64>) -> Nanos {
        let mut b = BatchShape::from_requests(
            batch
                .requests
                .iter()
                .map(|r| (r.num_tokens, r.num_computed_before)),
        );
        // Under a CUDA graph the token-wise operators run on the padded batch; attention and
        // the per-sequence rows keep the real requests (padding rows have no context and are
        // not sampled).
        b.tokens = b.tokens.max(batch.padded_tokens as u64);
        let axes = [
            b.tokens,
            b.sequences,
            b.prefill_chunk,
            b.kv_prefill,
            b.n_decode,
            b.kv_max,
        ];
        for (seen, v) in self.seen.iter_mut().zip(axes) {
            *seen = (*seen).max(v);
        }
        let all_reduce = self
            .overheads
            .all_reduce_ns(b.tokens as f64 * self.hidden_bytes, self.tp)
            .map_or(0.0, |ns| 2.0 * self.num_layers as f64 * ns);
        if let (Some(g), Some(m)) = (moe_tokens, &self.moe) {
            // The row looked up: the gathered tokens' pairs on this rank, in tokens.
            self.moe_seen = self.moe_seen.max(m.routing.gathered_per_rank(g).0);
        }
        Nanos(
            self.step_ns_moe(&b, moe_tokens)
                + self.overheads.step_overhead_ns()
                + all_reduce.round() as u64,
        )
    }
}

impl LatencyModel for ProfileLatency {
    fn try_clone(&self) -> Option<Box<dyn LatencyModel>> {
        Some(Box::new(self.clone()))
    }

    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        self.priced_step(batch, None)
    }

    /// The MoE layers priced at the token-expert pairs of the gathered batch that route to this
    /// rank's experts (`moe.rs`, [`MoeBlock::layer_ns_gathered`]).
    fn step_time_gathered(&mut self, batch: &StepBatch<'_>, moe_tokens: usize) -> Nanos {
        self.priced_step(batch, Some(moe_tokens as u64))
    }

    fn warnings(&self) -> Vec<String> {
        let extent = self.extent();
        let tp = (self.tp > 1 && self.overheads.tp_link_gbps.is_none()).then(|| {
            format!(
                "tensor parallelism {} without a link bandwidth: the all-reduces are not \
                 priced (give tp_link_gbps in overheads.yaml or the spec)",
                self.tp
            )
        });
        let moe_tp = self
            .moe
            .as_ref()
            .filter(|m| self.tp > 1 && m.routing.ep == 1 && m.routing.tp_shards == 1)
            .map(|_| {
                format!(
                    "tensor parallelism {} on a mixture-of-experts model: the MoE block is \
                     priced whole from tp1/{MOE_FILE} (measured at TP 1), which overstates \
                     vLLM's TP-sharded experts; ep={} prices it as the peer does (its EP size \
                     defaults to the TP size)",
                    self.tp, self.tp
                )
            });
        let gathered = self
            .moe
            .as_ref()
            .map(|m| m.table.max_tokens())
            .filter(|&max| self.moe_seen > max)
            .map(|max| {
                format!(
                    "MoE layers took the pairs of {} tokens per rank from the gathered batch \
                     (every data-parallel rank's tokens) but tp1/{MOE_FILE} goes up to {max}: \
                     extrapolated along the line through its last two points",
                    self.moe_seen
                )
            });
        // A standing approximation, said whenever the experts are TP-sharded over DP.
        let sharded = self
            .moe
            .as_ref()
            .filter(|m| m.routing.tp_shards > 1)
            .map(|m| {
                let s = m.routing.tp_shards;
                let (what, over, batch) = if s == u64::from(self.tp) {
                    ("a tensor-parallel engine", "TP", "batch's")
                } else {
                    ("a data-parallel group", "DP x TP", "gathered batch's")
                };
                format!(
                    "MoE layers of {what} without expert parallelism: vLLM splits every \
                     expert's width over {over} = {s} GPUs, each running all the {batch} \
                     token-expert pairs; tp1/{MOE_FILE} times whole experts, so each layer is \
                     priced at the row with the same work per GPU (tokens / {s} over experts \
                     hit / {s}): the GEMM width and the top-k selection on every token are not \
                     represented (docs/fleet.md)"
                )
            });
        tp.into_iter()
            .chain(moe_tp)
            .chain(sharded)
            .chain(gathered)
            .chain(
                AXES.iter()
                    .zip(self.seen.iter().zip(extent))
                    .filter(|(_, (&seen, max))| seen > *max)
                    .map(|((name, table), (seen, max))| {
                        format!(
                            "{name} reached {seen} but the profile's {table} goes up to {max}: \
                     extrapolated (1-D tables along the line through their last two points, \
                     attention from the nearest profiled grid points)"
                        )
                    }),
            )
            .collect()
    }

    /// `meta.yaml`'s `gpu` (else `hardware`) and `model`.
    fn measured_on(&self) -> (Option<&str>, Option<&str>) {
        (self.measured_gpu.as_deref(), self.measured_model.as_deref())
    }

    fn describe(&self) -> String {
        let overhead = if self.overheads.step_overhead_us > 0.0 {
            format!(
                "step overhead {} µs from {}",
                self.overheads.step_overhead_us,
                self.overheads.source.as_deref().unwrap_or("?")
            )
        } else {
            "no step overhead".to_string()
        };
        let moe = self
            .moe
            .as_ref()
            .map(|m| {
                let split = if m.routing.tp_shards > 1 {
                    format!(
                        "each expert's width split over {} GPUs (DP x TP, no expert \
                         parallelism)",
                        m.routing.tp_shards
                    )
                } else {
                    format!("expert parallelism {}", m.routing.ep)
                };
                format!(
                    ", {} with the MoE block of tp1/{MOE_FILE} ({} experts, top-{}, \
                     {split}, balanced routing)",
                    self.num_moe_layers, m.routing.num_experts, m.routing.top_k
                )
            })
            .unwrap_or_default();
        format!(
            "profile: {} tp{} ({} layers{moe}; {} skew buckets; token-wise operators at the \
             batch as CUDA graphs pad it, unpadded when eager; {overhead}{})",
            self.dir.display(),
            self.tp,
            self.num_layers,
            self.skew.num_buckets(),
            match (self.tp > 1, self.overheads.tp_link_gbps) {
                (false, _) => String::new(),
                (true, Some(g)) => format!(
                    "; ring all-reduce at {} GB/s, {:.1} µs per hop{}",
                    (g * 100.0).round() / 100.0,
                    self.overheads.tp_link_latency_us,
                    self.tp_link_source
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ),
                (true, None) => "; TP all-reduce not priced (no link bandwidth)".into(),
            }
        )
    }
}
