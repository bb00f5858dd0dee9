//! `vidur:dir=PATH[,tp=N,all_reduce=FILE,overhead_us=F]`: Vidur's public operator
//! measurements (microsoft/vidur, MIT; `data/profiling/compute/<gpu>/<org>/<model>/` with
//! `mlp.csv` and `attention.csv`, `data/profiling/network/<link>/all_reduce.csv`) composed
//! into a step time the way Vidur's `ExecutionTime.model_time` composes its predictions:
//!
//! per layer, `attn_pre_proj + attn_post_proj + attn_rope + attn_kv_cache_save +
//! attn_decode + attn_prefill + input_layernorm + post_attention_layernorm + mlp_up_proj +
//! mlp_down_proj + mlp_act + add`, plus two TP all-reduces (`all_reduce + 0.02 ms` CPU launch
//! each) when TP > 1; times the layers; plus `overhead_us` per step (default 0: Vidur's model
//! time leaves out the embedding, the LM head, the sampler and the CPU).
//!
//! Where Vidur fits a random forest (or linear model) over the rows and predicts on a grid,
//! this reads the median columns and interpolates piecewise-linearly over the measured grid
//! ([`super::curve`]): token-linear operators over `num_tokens` (the padded batch the GPU
//! computes); decode attention over `(batch_size, kv_cache_size)` with the decodes' mean
//! context rounded up to 64 tokens; prefill attention over `(kv_cache_size,
//! prefill_chunk_size)` with Vidur's aggregation of a batch's prefills (contexts summed,
//! chunk = √Σ chunk²); Vidur's 10 % batching overhead on GQA attention when a phase batches
//! more than one request. Rows are those of the model's heads, hidden and MLP sizes at the
//! engine's TP (and block size 16, vLLM's default, for attention).

use super::curve::{Curve, Surface};
use super::named_csv::{NamedCsv, TableError};
use super::{LatencyModel, StepBatch};
use crate::sizing::ModelShape;
use llm_emu_core::Nanos;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File names in a Vidur compute directory.
pub const MLP_FILE: &str = "mlp.csv";
pub const ATTENTION_FILE: &str = "attention.csv";
/// The all-reduce table, looked for in the compute directory when the spec names none.
pub const ALL_REDUCE_FILE: &str = "all_reduce.csv";

/// Vidur's defaults (`vidur/config/config.py`, `BaseExecutionTimePredictorConfig`).
pub const KV_GRANULARITY: f64 = 64.0;
pub const BATCHING_OVERHEAD_FRACTION: f64 = 0.1;
pub const NCCL_CPU_LAUNCH_OVERHEAD_MS: f64 = 0.02;
/// vLLM's default KV block size, the block size of the attention rows used.
pub const BLOCK_SIZE: f64 = 16.0;

/// The token-linear operators of `mlp.csv`, in Vidur's per-layer sum.
pub const COMPUTE_OPS: [&str; 9] = [
    "attn_pre_proj",
    "attn_post_proj",
    "attn_rope",
    "input_layernorm",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_down_proj",
    "mlp_act",
    "add",
];

#[derive(Debug, Error)]
pub enum VidurError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(
        "{path}: no rows for this model at TP {tp} (n_head {heads}, n_kv_head {kv_heads}, \
         n_embd {hidden}{more}); the file holds {found}"
    )]
    NoRows {
        path: PathBuf,
        tp: u32,
        heads: u64,
        kv_heads: u64,
        hidden: u64,
        more: String,
        found: String,
    },
    #[error("{path}: no `{what}` measurements among the matching rows")]
    NoMeasurements { path: PathBuf, what: String },
    #[error(
        "TP {tp} needs an all-reduce table: `all_reduce=FILE` (Vidur's \
         data/profiling/network/<link>/all_reduce.csv) or {ALL_REDUCE_FILE} in {dir}"
    )]
    NoAllReduce { tp: u32, dir: PathBuf },
}

/// The composed model.
#[derive(Debug)]
pub struct VidurLatency {
    dir: PathBuf,
    layers: f64,
    tp: u32,
    gqa: bool,
    /// Σ of the token-linear operators per layer, ms, over tokens.
    compute: Curve,
    kv_save: Curve,
    /// ms over (batch size, mean context).
    decode: Surface,
    /// ms over (Σ contexts, aggregated chunk).
    prefill: Surface,
    /// ms over tokens (size / hidden / 2 bytes).
    all_reduce: Option<Curve>,
    overhead_us: f64,
    /// Measured GPU and model, from the directory's place in Vidur's layout.
    gpu: Option<String>,
    model: Option<String>,
    extrapolated: Vec<String>,
}

fn rows_where<'a>(
    t: &'a NamedCsv,
    keys: &[(&str, f64)],
) -> Result<Vec<super::named_csv::Row<'a>>, TableError> {
    let cols: Vec<(usize, f64)> = keys
        .iter()
        .map(|(k, v)| Ok((t.column(k)?, *v)))
        .collect::<Result<_, TableError>>()?;
    let mut out = Vec::new();
    for r in t.rows() {
        let mut ok = true;
        for &(c, v) in &cols {
            if r.number(c)? != Some(v) {
                ok = false;
                break;
            }
        }
        if ok {
            out.push(r);
        }
    }
    Ok(out)
}

/// `(n_head, n_kv_head, n_embd, tp)` tuples a table holds, for the error when none matches.
fn shapes_found(t: &NamedCsv, head_col: &str) -> String {
    let cols = [
        head_col,
        "n_kv_head",
        "n_embd",
        "num_tensor_parallel_workers",
    ];
    let Ok(idx) = cols
        .iter()
        .map(|c| t.column(c))
        .collect::<Result<Vec<_>, _>>()
    else {
        return "no shape columns".into();
    };
    let mut seen: Vec<String> = Vec::new();
    for r in t.rows() {
        let s = format!(
            "heads {} / kv {} / hidden {} at TP {}",
            r.text(idx[0]),
            r.text(idx[1]),
            r.text(idx[2]),
            r.text(idx[3])
        );
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen.join("; ")
}

impl VidurLatency {
    /// Loads the tables at `dir` for `shape` at `tp` ranks; `all_reduce` is the network table
    /// (default: `dir/all_reduce.csv` when present; required for TP > 1).
    pub fn load(
        dir: &Path,
        shape: &ModelShape,
        tp: u32,
        all_reduce: Option<&Path>,
        overhead_us: f64,
    ) -> Result<VidurLatency, VidurError> {
        let heads = shape.num_attention_heads;
        let kv_heads = shape.kv_heads();
        let hidden = shape.hidden_size;
        let tpf = f64::from(tp);
        let mlp = NamedCsv::read(&dir.join(MLP_FILE))?;
        let mut keys = vec![
            ("n_head", heads as f64),
            ("n_kv_head", kv_heads as f64),
            ("n_embd", hidden as f64),
            ("num_tensor_parallel_workers", tpf),
        ];
        if mlp.has_column("n_expanded_embd") {
            keys.push(("n_expanded_embd", shape.intermediate_size as f64));
        }
        let rows = rows_where(&mlp, &keys)?;
        if rows.is_empty() {
            return Err(VidurError::NoRows {
                path: mlp.path.clone(),
                tp,
                heads,
                kv_heads,
                hidden,
                more: format!(", n_expanded_embd {}", shape.intermediate_size),
                found: shapes_found(&mlp, "n_head"),
            });
        }
        let tokens = mlp.column("num_tokens")?;
        let mut points = Vec::new();
        for r in &rows {
            let mut sum = 0.0;
            for op in COMPUTE_OPS {
                let col = format!("time_stats.{op}.median");
                // Vidur fills absent norm/add columns with 0.
                if let Ok(c) = mlp.column(&col) {
                    sum += r.number(c)?.unwrap_or(0.0);
                }
            }
            points.push((r.required(tokens)?, sum));
        }
        let compute = Curve::new(points).ok_or_else(|| VidurError::NoMeasurements {
            path: mlp.path.clone(),
            what: "token-linear operators".into(),
        })?;

        let att = NamedCsv::read(&dir.join(ATTENTION_FILE))?;
        let rows = rows_where(
            &att,
            &[
                ("n_q_head", heads as f64),
                ("n_kv_head", kv_heads as f64),
                ("n_embd", hidden as f64),
                ("num_tensor_parallel_workers", tpf),
                ("block_size", BLOCK_SIZE),
            ],
        )?;
        if rows.is_empty() {
            return Err(VidurError::NoRows {
                path: att.path.clone(),
                tp,
                heads,
                kv_heads,
                hidden,
                more: ", block_size 16".into(),
                found: shapes_found(&att, "n_q_head"),
            });
        }
        let (bs, chunk, kv) = (
            att.column("batch_size")?,
            att.column("prefill_chunk_size")?,
            att.column("kv_cache_size")?,
        );
        let (pre, dec) = (
            att.column("time_stats.attn_prefill.median")?,
            att.column("time_stats.attn_decode.median")?,
        );
        let save = att.column("time_stats.attn_kv_cache_save.median").ok();
        let (mut dp, mut pp, mut sp) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            let (b, c, k) = (r.required(bs)?, r.required(chunk)?, r.required(kv)?);
            if c == 0.0 {
                if let Some(t) = r.number(dec)? {
                    dp.push((b, k, t));
                }
            } else if let Some(t) = r.number(pre)? {
                pp.push((k, c, t));
            }
            if let Some(s) = save {
                sp.push((b.max(c), r.number(s)?.unwrap_or(0.0)));
            }
        }
        let missing = |what: &str| VidurError::NoMeasurements {
            path: att.path.clone(),
            what: what.into(),
        };
        let decode = Surface::new(dp).ok_or_else(|| missing("attn_decode"))?;
        let prefill = Surface::new(pp).ok_or_else(|| missing("attn_prefill"))?;
        let kv_save = Curve::new(sp).unwrap_or_else(|| Curve::new([(1.0, 0.0)]).expect("a point"));

        let ar_path = all_reduce
            .map(Path::to_path_buf)
            .or_else(|| Some(dir.join(ALL_REDUCE_FILE)).filter(|p| p.is_file()));
        let all_reduce = match (tp, ar_path) {
            (1, _) => None,
            (_, None) => {
                return Err(VidurError::NoAllReduce {
                    tp,
                    dir: dir.to_path_buf(),
                })
            }
            (_, Some(p)) => {
                let t = NamedCsv::read(&p)?;
                let rows = rows_where(&t, &[("num_workers", tpf), ("devices_per_node", tpf)])?;
                let (size, coll, med) = (
                    t.column("size")?,
                    t.column("collective")?,
                    t.column("time_stats.all_reduce.median")?,
                );
                let mut pts = Vec::new();
                for r in rows.iter().filter(|r| r.text(coll) == "all_reduce") {
                    // Vidur: tokens = bytes / hidden / 2 (bf16 activations).
                    pts.push((r.required(size)? / hidden as f64 / 2.0, r.required(med)?));
                }
                Some(Curve::new(pts).ok_or_else(|| VidurError::NoMeasurements {
                    path: p.clone(),
                    what: format!("all_reduce over {tp} workers on {tp} devices per node"),
                })?)
            }
        };
        let (gpu, model) = layout_names(dir);
        Ok(VidurLatency {
            dir: dir.to_path_buf(),
            layers: shape.num_hidden_layers as f64,
            tp,
            gqa: heads > kv_heads,
            compute,
            kv_save,
            decode,
            prefill,
            all_reduce,
            overhead_us,
            gpu,
            model,
            extrapolated: Vec::new(),
        })
    }

    /// One step, ms, for `(new tokens, computed before, is a decode)` requests and the padded
    /// token count the GPU computes.
    pub fn step_ms(&mut self, requests: &[(u64, u64, bool)], padded_tokens: u64) -> f64 {
        let actual: u64 = requests.iter().map(|r| r.0).sum();
        let t = padded_tokens.max(actual) as f64;
        let round = |k: u64| (k as f64 / KV_GRANULARITY).ceil() * KV_GRANULARITY;
        let gqa = self.gqa;
        let batching = |n: usize| {
            if gqa && n > 1 {
                1.0 + BATCHING_OVERHEAD_FRACTION
            } else {
                1.0
            }
        };
        let decodes: Vec<u64> = requests.iter().filter(|r| r.2).map(|r| r.1).collect();
        let prefills: Vec<(u64, u64)> = requests
            .iter()
            .filter(|r| !r.2 && r.0 > 0)
            .map(|r| (r.0, r.1))
            .collect();
        let mut per_layer = self.compute.at(t) + self.kv_save.at(actual as f64);
        if !decodes.is_empty() {
            let n = decodes.len();
            let mean = (decodes.iter().sum::<u64>() as f64 / n as f64) as u64;
            let ctx = round(mean);
            self.note_range("decode", n as f64, ctx, self.decode.max());
            per_layer += self.decode.at(n as f64, ctx) * batching(n);
        }
        if !prefills.is_empty() {
            let kv: f64 = prefills.iter().map(|&(_, c)| round(c)).sum();
            let chunk = (prefills.iter().map(|&(q, _)| (q * q) as f64).sum::<f64>())
                .sqrt()
                .round();
            self.note_range("prefill", kv, chunk, self.prefill.max());
            per_layer += self.prefill.at(kv, chunk) * batching(prefills.len());
        }
        if let Some(ar) = &self.all_reduce {
            per_layer += 2.0 * (ar.at(t) + NCCL_CPU_LAUNCH_OVERHEAD_MS);
        }
        self.layers * per_layer + self.overhead_us / 1e3
    }

    fn note_range(&mut self, what: &str, a: f64, b: f64, max: (f64, f64)) {
        if (a > max.0 || b > max.1) && self.extrapolated.len() < 2 {
            let s = format!(
                "{what} attention extrapolated beyond the measured grid ({a} × {b}; measured up \
                 to {} × {})",
                max.0, max.1
            );
            if !self.extrapolated.iter().any(|e| e.starts_with(what)) {
                self.extrapolated.push(s);
            }
        }
    }
}

/// `(gpu, org/model)` when `dir` ends in Vidur's `compute/<gpu>/<org>/<model>`.
pub fn layout_names(dir: &Path) -> (Option<String>, Option<String>) {
    let parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let n = parts.len();
    if n >= 4 && parts[n - 4] == "compute" {
        (
            Some(parts[n - 3].clone()),
            Some(format!("{}/{}", parts[n - 2], parts[n - 1])),
        )
    } else {
        (None, None)
    }
}

impl LatencyModel for VidurLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        let reqs: Vec<(u64, u64, bool)> = batch
            .requests
            .iter()
            .map(|r| {
                (
                    r.num_tokens as u64,
                    r.num_computed_before as u64,
                    r.num_computed_before >= r.num_prompt_tokens,
                )
            })
            .collect();
        let ms = self.step_ms(&reqs, batch.padded_tokens as u64);
        Nanos((ms * 1e6).round().max(0.0) as u64)
    }

    fn describe(&self) -> String {
        format!(
            "vidur operator measurements {} (TP {}, {} layers, all-reduce {}, overhead {} µs)",
            self.dir.display(),
            self.tp,
            self.layers,
            if self.all_reduce.is_some() {
                "measured"
            } else {
                "none"
            },
            self.overhead_us
        )
    }

    fn warnings(&self) -> Vec<String> {
        self.extrapolated.clone()
    }

    fn measured_on(&self) -> (Option<&str>, Option<&str>) {
        (self.gpu.as_deref(), self.model.as_deref())
    }
}
