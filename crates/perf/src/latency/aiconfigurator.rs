//! `aiconfigurator:dir=PATH[,tp=N,overhead_us=F]`: NVIDIA aiconfigurator's operator databases
//! (github.com/ai-dynamo/aiconfigurator, Apache-2.0;
//! `systems/data/<system>/<op>/vllm/<version>/`) for dense decoders, composed into a step.
//!
//! The tables are read as the collector writes them (`collector/helper.py log_perf`: CSV with
//! `framework,version,device,op_name,kernel_source,<op columns>,latency`, ms), one directory
//! holding `gemm_perf.txt`, `context_attention_perf.txt`, `generation_attention_perf.txt` and,
//! for TP > 1, `custom_allreduce_perf.txt`. The repository ships them as Parquet with the same
//! columns; `tools/fetch-operator-data.sh` converts them.
//!
//! Per layer and rank: the four GEMMs of vLLM's Llama-family layer (`qkv_proj` m = tokens,
//! n = (q + 2 kv heads per rank) × head dim, k = hidden; `o_proj`; `gate_up_proj` n = 2 ×
//! intermediate / TP; `down_proj`) from `gemm_perf` in the checkpoint's dtype (`bfloat16`, or
//! `fp8` for FP8 weights), interpolated piecewise-linearly in m, then n, then k between the
//! measured grid points ([`super::curve`]); context attention of each prefill from
//! `context_attention_perf` at (batch 1, its context + chunk), scaled by the chunk's share of
//! the causal pairs; decode attention from `generation_attention_perf` at (decodes, mean
//! context); two all-reduces of tokens × hidden elements (vLLM's custom all-reduce under CUDA
//! graphs, `backend = vllm_graph`). The elementwise kernels the tables do not measure (two
//! RMSNorms, rotary, SiLU×mul) are priced as the roofline prices them: bytes over the
//! device's datasheet bandwidth × [`super::roofline::MEMORY_EFFICIENCY`]. Then the LM head
//! GEMM on the sampled rows and `overhead_us` per step (default 0). aiconfigurator's own SDK
//! interpolates its grids the same way (linear between the neighbouring measured points);
//! its MoE, MLA and NCCL tables are not read here: a MoE or MLA model is refused.

use super::curve::{Curve, Surface};
use super::named_csv::{NamedCsv, TableError};
use super::roofline::MEMORY_EFFICIENCY;
use super::{LatencyModel, StepBatch};
use crate::gpu::GpuSpec;
use crate::sizing::{KvCacheDtype, ModelShape, WeightFormat};
use llm_emu_core::Nanos;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const GEMM_FILE: &str = "gemm_perf.txt";
pub const CONTEXT_FILE: &str = "context_attention_perf.txt";
pub const GENERATION_FILE: &str = "generation_attention_perf.txt";
pub const ALLREDUCE_FILE: &str = "custom_allreduce_perf.txt";

#[derive(Debug, Error)]
pub enum AicError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{path}: no rows for {what}; the file holds {found}")]
    NoRows {
        path: PathBuf,
        what: String,
        found: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// `gemm_perf` of one dtype: a curve over m per measured (n, k).
#[derive(Debug)]
struct GemmGrid {
    cells: BTreeMap<(u64, u64), Curve>,
    ns: Vec<f64>,
    ks: Vec<f64>,
}

/// The measured points around `x` (one at or below the first, the last two above the last).
fn bracket(sorted: &[f64], x: f64) -> Vec<f64> {
    let i = sorted.partition_point(|&v| v < x);
    if i < sorted.len() && sorted[i] == x {
        return vec![x];
    }
    match (i, sorted.len()) {
        (0, _) => vec![sorted[0]],
        (i, n) if i >= n => sorted[n.saturating_sub(2)..].to_vec(),
        (i, _) => vec![sorted[i - 1], sorted[i]],
    }
}

impl GemmGrid {
    fn new(points: Vec<(u64, u64, f64, f64)>) -> Option<GemmGrid> {
        let mut by: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
        for (n, k, m, t) in points {
            by.entry((n, k)).or_default().push((m, t));
        }
        let cells: BTreeMap<(u64, u64), Curve> = by
            .into_iter()
            .filter_map(|(nk, v)| Curve::new(v).map(|c| (nk, c)))
            .collect();
        if cells.is_empty() {
            return None;
        }
        let mut ns: Vec<f64> = cells.keys().map(|k| k.0 as f64).collect();
        let mut ks: Vec<f64> = cells.keys().map(|k| k.1 as f64).collect();
        for v in [&mut ns, &mut ks] {
            v.sort_by(f64::total_cmp);
            v.dedup();
        }
        Some(GemmGrid { cells, ns, ks })
    }

    /// ms of an (m × k) · (k × n) GEMM.
    fn at(&self, m: f64, n: f64, k: f64) -> f64 {
        let cell = |n: f64, k: f64| -> Option<f64> {
            self.cells.get(&(n as u64, k as u64)).map(|c| c.at(m))
        };
        let along_n = |k: f64| -> Option<f64> {
            let pts: Vec<(f64, f64)> = bracket(&self.ns, n)
                .into_iter()
                .filter_map(|ni| cell(ni, k).map(|t| (ni, t)))
                .collect();
            Curve::new(pts).map(|c| c.at(n))
        };
        let pts: Vec<(f64, f64)> = bracket(&self.ks, k)
            .into_iter()
            .filter_map(|ki| along_n(ki).map(|t| (ki, t)))
            .collect();
        match Curve::new(pts) {
            Some(c) => c.at(k),
            // A hole in the grid: the nearest measured cell.
            None => self
                .cells
                .iter()
                .min_by(|a, b| {
                    let d =
                        |x: &(u64, u64)| (x.0 as f64 / n).ln().abs() + (x.1 as f64 / k).ln().abs();
                    d(a.0).total_cmp(&d(b.0))
                })
                .map(|(_, c)| c.at(m))
                .unwrap_or(0.0),
        }
    }
}

#[derive(Debug)]
pub struct AiconfiguratorLatency {
    dir: PathBuf,
    layers: f64,
    tp: u32,
    gemm: GemmGrid,
    context: Surface,
    generation: Surface,
    all_reduce: Option<Curve>,
    /// Per-rank GEMM shapes (n, k) of qkv, o, gate_up, down; LM head (n, k).
    layer_gemms: [(f64, f64); 4],
    lm_head: (f64, f64),
    hidden: f64,
    /// Elementwise bytes per token per layer, and bytes/ms of the device.
    elementwise_bytes_per_token: f64,
    bytes_per_ms: Option<f64>,
    overhead_us: f64,
    device: Option<String>,
}

/// Distinct values of `cols` among a table's rows, for errors.
fn found(t: &NamedCsv, cols: &[&str]) -> String {
    let Ok(idx) = cols
        .iter()
        .map(|c| t.column(c))
        .collect::<Result<Vec<_>, _>>()
    else {
        return "no such columns".into();
    };
    let mut seen: Vec<String> = Vec::new();
    for r in t.rows() {
        let s = idx
            .iter()
            .zip(cols)
            .map(|(&i, c)| format!("{c} {}", r.text(i)))
            .collect::<Vec<_>>()
            .join(" ");
        if !seen.contains(&s) && seen.len() < 12 {
            seen.push(s);
        }
    }
    seen.join("; ")
}

impl AiconfiguratorLatency {
    pub fn load(
        dir: &Path,
        shape: &ModelShape,
        tp: u32,
        overhead_us: f64,
    ) -> Result<AiconfiguratorLatency, AicError> {
        if shape.moe.is_some() || shape.mla.is_some() {
            return Err(AicError::Unsupported(
                "aiconfigurator tables are composed for dense decoders here (its MoE and MLA \
                 tables are not read): use the roofline or another profile for this model"
                    .into(),
            ));
        }
        let tpu = u64::from(tp.max(1));
        let d = shape.head_dim() as f64;
        let hq = (shape.num_attention_heads / tpu) as f64;
        let hkv = shape.kv_heads_per_rank(tpu) as f64;
        let h = shape.hidden_size as f64;
        let i = shape.intermediate_size as f64 / tpu as f64;
        let gemm_dtype = match shape.weight_format {
            WeightFormat::Fp8 { block: 0 } => "fp8",
            WeightFormat::Fp8 { .. } => "fp8_block",
            _ => "bfloat16",
        };
        let kv_dtype = match shape.kv_cache_dtype {
            KvCacheDtype::Fp8 => "fp8",
            _ => "bfloat16",
        };

        let g = NamedCsv::read(&dir.join(GEMM_FILE))?;
        let (dt, m, n, k, lat) = (
            g.column("gemm_dtype")?,
            g.column("m")?,
            g.column("n")?,
            g.column("k")?,
            g.column("latency")?,
        );
        let dev = g.column("device").ok();
        let mut pts = Vec::new();
        let mut device = None;
        for r in g.rows().filter(|r| r.text(dt) == gemm_dtype) {
            pts.push((
                r.required(n)? as u64,
                r.required(k)? as u64,
                r.required(m)?,
                r.required(lat)?,
            ));
            if device.is_none() {
                device = dev.map(|c| r.text(c).to_string());
            }
        }
        let gemm = GemmGrid::new(pts).ok_or_else(|| AicError::NoRows {
            path: g.path.clone(),
            what: format!("gemm_dtype {gemm_dtype}"),
            found: found(&g, &["gemm_dtype"]),
        })?;

        let attention = |file: &str, ctx_col: &str| -> Result<Surface, AicError> {
            let t = NamedCsv::read(&dir.join(file))?;
            let cols = [
                "num_heads",
                "num_key_value_heads",
                "head_dim",
                "kv_cache_dtype",
                "beam_width",
            ];
            // Older collections have no `window_size`: all their rows are full attention.
            let window = t.column("window_size").ok();
            let idx = cols
                .iter()
                .map(|c| t.column(c))
                .collect::<Result<Vec<_>, _>>()?;
            let (b, s, l) = (
                t.column("batch_size")?,
                t.column(ctx_col)?,
                t.column("latency")?,
            );
            let mut pts = Vec::new();
            for r in t.rows() {
                let ok = r.number(idx[0])? == Some(hq)
                    && r.number(idx[1])? == Some(hkv)
                    && r.number(idx[2])? == Some(d)
                    && r.text(idx[3]) == kv_dtype
                    && r.number(idx[4])? == Some(1.0)
                    && match window {
                        Some(w) => r.number(w)?.unwrap_or(0.0) == 0.0,
                        None => true,
                    };
                if ok {
                    pts.push((r.required(b)?, r.required(s)?, r.required(l)?));
                }
            }
            Surface::new(pts).ok_or_else(|| AicError::NoRows {
                path: t.path.clone(),
                what: format!(
                    "{hq} heads, {hkv} KV heads per rank, head dim {d}, full attention, KV \
                     {kv_dtype}"
                ),
                found: found(&t, &["num_heads", "num_key_value_heads", "head_dim"]),
            })
        };
        let context = attention(CONTEXT_FILE, "isl")?;
        // The collector writes a decode of context c as isl 1, step c.
        let generation = attention(GENERATION_FILE, "step")?;

        let all_reduce = if tp > 1 {
            let t = NamedCsv::read(&dir.join(ALLREDUCE_FILE))?;
            let (gpus, size, l) = (
                t.column("num_gpus")?,
                t.column("message_size")?,
                t.column("latency")?,
            );
            let backend = t.column("backend").ok();
            let mut pts = Vec::new();
            for r in t.rows() {
                let graph = backend.is_none_or(|c| r.text(c) == "vllm_graph");
                if graph && r.number(gpus)? == Some(f64::from(tp)) {
                    pts.push((r.required(size)?, r.required(l)?));
                }
            }
            Some(Curve::new(pts).ok_or_else(|| AicError::NoRows {
                path: t.path.clone(),
                what: format!("num_gpus {tp}, backend vllm_graph"),
                found: found(&t, &["num_gpus", "backend"]),
            })?)
        } else {
            None
        };

        let ab = shape.dtype_bytes() as f64;
        // Two RMSNorms (read x and residual, write both: 3 × h), rotary on q and k, SiLU × mul
        // (read 2 i, write i): bytes per token per layer.
        let elementwise_bytes_per_token = (2.0 * 3.0 * h + 2.0 * (hq + hkv) * d + 3.0 * i) * ab;
        let bytes_per_ms = device
            .as_deref()
            .and_then(|name| GpuSpec::lookup(name).ok())
            .map(|g| g.mem_bandwidth_gbs * 1e6 * MEMORY_EFFICIENCY);
        Ok(AiconfiguratorLatency {
            dir: dir.to_path_buf(),
            layers: shape.num_hidden_layers as f64,
            tp,
            gemm,
            context,
            generation,
            all_reduce,
            layer_gemms: [((hq + 2.0 * hkv) * d, h), (h, hq * d), (2.0 * i, h), (h, i)],
            lm_head: ((shape.vocab_size / tpu) as f64, h),
            hidden: h,
            elementwise_bytes_per_token,
            bytes_per_ms,
            overhead_us,
            device,
        })
    }

    /// One step, ms, for `(new tokens, computed before, is a decode, samples)` requests and
    /// the padded token count.
    pub fn step_ms(&self, requests: &[(u64, u64, bool, bool)], padded_tokens: u64) -> f64 {
        let actual: u64 = requests.iter().map(|r| r.0).sum();
        let t = padded_tokens.max(actual) as f64;
        if t == 0.0 {
            return self.overhead_us / 1e3;
        }
        let mut layer: f64 = self
            .layer_gemms
            .iter()
            .map(|&(n, k)| self.gemm.at(t, n, k))
            .sum();
        let pairs = |q: f64, c: f64| q * c + q * (q + 1.0) / 2.0;
        for &(q, c, decode, _) in requests {
            if !decode && q > 0 {
                let (q, c) = (q as f64, c as f64);
                let full = self.context.at(1.0, q + c);
                layer += full * pairs(q, c) / pairs(q + c, 0.0);
            }
        }
        let decodes: Vec<u64> = requests.iter().filter(|r| r.2).map(|r| r.1).collect();
        if !decodes.is_empty() {
            let n = decodes.len() as f64;
            let mean = decodes.iter().sum::<u64>() as f64 / n;
            layer += self.generation.at(n, mean);
        }
        if let Some(ar) = &self.all_reduce {
            layer += 2.0 * ar.at(t * self.hidden);
        }
        if let Some(bw) = self.bytes_per_ms {
            layer += t * self.elementwise_bytes_per_token / bw;
        }
        let sampled = requests.iter().filter(|r| r.3).count() as f64;
        let lm = if sampled > 0.0 {
            self.gemm.at(sampled, self.lm_head.0, self.lm_head.1)
        } else {
            0.0
        };
        self.layers * layer + lm + self.overhead_us / 1e3
    }
}

impl LatencyModel for AiconfiguratorLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        let reqs: Vec<(u64, u64, bool, bool)> = batch
            .requests
            .iter()
            .map(|r| {
                (
                    r.num_tokens as u64,
                    r.num_computed_before as u64,
                    r.num_computed_before >= r.num_prompt_tokens,
                    r.samples,
                )
            })
            .collect();
        let ms = self.step_ms(&reqs, batch.padded_tokens as u64);
        Nanos((ms * 1e6).round().max(0.0) as u64)
    }

    fn describe(&self) -> String {
        format!(
            "aiconfigurator operator tables {} ({}, TP {}, {} layers, overhead {} µs)",
            self.dir.display(),
            self.device.as_deref().unwrap_or("device not named"),
            self.tp,
            self.layers,
            self.overhead_us
        )
    }

    fn warnings(&self) -> Vec<String> {
        if self.bytes_per_ms.is_none() {
            vec![format!(
                "the tables' device ({}) is not in the GPU table: elementwise kernels not priced",
                self.device.as_deref().unwrap_or("unnamed")
            )]
        } else {
            Vec::new()
        }
    }

    fn measured_on(&self) -> (Option<&str>, Option<&str>) {
        (self.device.as_deref(), None)
    }
}
