//! What a recorded vLLM run wrote down about itself, as typed facts.
//!
//! A run published in LLMServingSim's layout is `<run>/vllm/meta.json` (+ `requests.jsonl`)
//! beside `<run>/config.json`, the peer's cluster config (the shared case names it
//! `llmservingsim-cluster-config.json`). `meta.json` holds `engine_kwargs` (what was asked),
//! `kv_cache` and `hardware` (what vLLM allocated and ran on) and `resolved_config` (vLLM's
//! whole `VllmConfig` after start-up, one section per sub-config). This module reads every one
//! of those facts and says which it does not use; `docs/fidelity.md` ("Replaying a run as
//! recorded") lists them and their precedence:
//!
//! - within `meta.json`, what vLLM resolved (`resolved_config`, `kv_cache`, `hardware`) wins over
//!   what was asked (`engine_kwargs`); a difference is a note;
//! - two records of the same resolved fact that differ (e.g. `kv_cache.num_gpu_blocks` and
//!   `resolved_config.cache_config.num_gpu_blocks`) are a [`RunRecordError::Contradiction`];
//! - the cluster config gives the TP all-reduce link and, where `meta.json` is silent, the GPU
//!   and its memory; a GPU or TP degree differing from `meta.json`'s is a contradiction;
//! - a fact that changes the result and cannot be replayed (data or pipeline parallelism, CPU
//!   KV offload, a KV connector, speculative decoding, several instances) is
//!   [`RunRecordError::NotReplayable`].

use crate::whole_number::{value_i64, value_u64};
use llm_emu_core::cudagraph::CaptureRule;
use llm_emu_perf::cluster_link::{
    network_dims, per_dimension, LinkQuantity, LinkRole, TopologyInstance,
};
use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::link_units::cluster_link_gbs;
use serde_json::{Map, Value};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunRecordError {
    /// Unreadable or malformed, or a GPU name that is not known.
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
    /// Two records of one fact disagree, or a fact is impossible given the others.
    #[error("{path}: contradicting facts: {msg}")]
    Contradiction { path: String, msg: String },
    /// A fact that changes the result and that the emulator cannot reproduce.
    #[error("{path}: the run cannot be replayed: {msg}")]
    NotReplayable { path: String, msg: String },
}

/// A value and where in the record it was read (`meta.json kv_cache.num_gpu_blocks`).
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded<T> {
    pub value: T,
    pub source: String,
}

/// vLLM's `CUDAGraphMode` (`vllm/config/compilation.py`), recorded by its enum value: `0`,
/// `1`, `2`, `[2, 0]`, `[2, 1]` (or by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaGraphMode {
    None,
    Piecewise,
    Full,
    FullDecodeOnly,
    FullAndPiecewise,
}

impl CudaGraphMode {
    /// vLLM's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            CudaGraphMode::None => "NONE",
            CudaGraphMode::Piecewise => "PIECEWISE",
            CudaGraphMode::Full => "FULL",
            CudaGraphMode::FullDecodeOnly => "FULL_DECODE_ONLY",
            CudaGraphMode::FullAndPiecewise => "FULL_AND_PIECEWISE",
        }
    }

    fn from_value(v: &Value) -> Option<CudaGraphMode> {
        use CudaGraphMode::*;
        let ints: Option<Vec<u64>> = match v {
            Value::Number(n) => n.as_u64().map(|x| vec![x]),
            Value::Array(a) => a.iter().map(Value::as_u64).collect(),
            Value::String(s) => {
                let name = s.trim().trim_start_matches("CUDAGraphMode.");
                return match name.to_ascii_uppercase().as_str() {
                    "NONE" => Some(None),
                    "PIECEWISE" => Some(Piecewise),
                    "FULL" => Some(Full),
                    "FULL_DECODE_ONLY" => Some(FullDecodeOnly),
                    "FULL_AND_PIECEWISE" => Some(FullAndPiecewise),
                    _ => Option::None,
                };
            }
            _ => Option::None,
        };
        match ints?.as_slice() {
            [0] => Some(None),
            [1] => Some(Piecewise),
            [2] => Some(Full),
            [2, 0] => Some(FullDecodeOnly),
            [2, 1] => Some(FullAndPiecewise),
            _ => Option::None,
        }
    }
}

/// vLLM's `CompilationMode.VLLM_COMPILE`, the mode in which piecewise CUDA graphs exist.
const VLLM_COMPILE: u64 = 3;

/// vLLM 0.19's `CompilationMode` from its value or name (`NONE` 0, `STOCK_TORCH_COMPILE` 1,
/// `DYNAMO_TRACE_ONCE` 2, `VLLM_COMPILE` 3).
fn compilation_mode(v: &Value) -> Option<u64> {
    if let Some(n) = value_u64(v).filter(|n| *n <= 3) {
        return Some(n);
    }
    let name = v.as_str()?.trim().trim_start_matches("CompilationMode.");
    [
        "NONE",
        "STOCK_TORCH_COMPILE",
        "DYNAMO_TRACE_ONCE",
        "VLLM_COMPILE",
    ]
    .iter()
    .position(|n| n.eq_ignore_ascii_case(name))
    .map(|i| i as u64)
}

/// vLLM 0.19's `OptimizationLevel` (`-O0`…`-O3`) from its value or name (`O2`, `"2"`).
fn optimization_level(v: &Value) -> Option<u64> {
    if let Some(n) = value_u64(v).filter(|n| *n <= 3) {
        return Some(n);
    }
    let t = v.as_str()?.trim().trim_start_matches("OptimizationLevel.");
    let t = t.strip_prefix(['O', 'o'])?;
    t.parse::<u64>().ok().filter(|n| *n <= 3)
}

/// The TP all-reduce link of the cluster config: `link_bw` (ASTRA-sim GB/s of 2³⁰ B, held here
/// in GB/s of 10⁹ B: [`llm_emu_perf::link_units`]), `link_latency` ns per hop.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedLink {
    /// GB/s (10⁹ B/s): the recorded `link_bw` × 2³⁰ / 10⁹.
    pub bandwidth_gbs: f64,
    pub latency_ns: f64,
    pub source: String,
}

/// vLLM's `performance_mode` (`vllm/config/vllm.py`, 0.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerformanceMode {
    Balanced,
    /// Doubles the batch defaults a run leaves unset (`EngineArgs`).
    Throughput,
    /// Captures CUDA graphs at every size from 1 to 32 (`VllmConfig`).
    Interactivity,
}

impl PerformanceMode {
    pub fn from_name(name: &str) -> Option<PerformanceMode> {
        match name {
            "balanced" => Some(PerformanceMode::Balanced),
            "throughput" => Some(PerformanceMode::Throughput),
            "interactivity" => Some(PerformanceMode::Interactivity),
            _ => None,
        }
    }
}

impl Display for PerformanceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PerformanceMode::Balanced => "balanced",
            PerformanceMode::Throughput => "throughput",
            PerformanceMode::Interactivity => "interactivity",
        })
    }
}

/// Every fact the run recorded that the emulator uses; `None` where the run is silent.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    pub vllm_version: Option<String>,
    pub model: Option<Recorded<String>>,
    pub tensor_parallel_size: Option<Recorded<u64>>,
    pub max_num_seqs: Option<Recorded<usize>>,
    pub max_num_batched_tokens: Option<Recorded<usize>>,
    pub max_model_len: Option<Recorded<usize>>,
    /// Where `max_model_len` -1 was asked (vLLM 0.19 fits it to the KV cache), when no
    /// resolved length was recorded.
    pub max_model_len_auto_fit: Option<String>,
    pub block_size: Option<Recorded<usize>>,
    /// KV blocks vLLM allocated, the null block included.
    pub num_gpu_blocks: Option<Recorded<u32>>,
    /// `kv_cache_memory_bytes`: the KV cache's bytes per GPU, set by hand (vLLM then sizes
    /// the blocks from it, not from the GPU's memory).
    pub kv_cache_memory_bytes: Option<Recorded<u64>>,
    pub gpu_memory_utilization: Option<Recorded<f64>>,
    pub enable_prefix_caching: Option<Recorded<bool>>,
    pub enable_chunked_prefill: Option<Recorded<bool>>,
    pub async_scheduling: Option<Recorded<bool>>,
    pub enforce_eager: Option<Recorded<bool>>,
    pub scheduler_reserve_full_isl: Option<Recorded<bool>>,
    pub scheduling_policy: Option<Recorded<String>>,
    /// vLLM's `performance_mode` (0.19: `balanced`, `throughput`, `interactivity`): it doubles
    /// the batch defaults (throughput) or captures every graph size up to 32 (interactivity).
    pub performance_mode: Option<Recorded<PerformanceMode>>,
    pub long_prefill_token_threshold: Option<Recorded<usize>>,
    /// `max_num_partial_prefills` (above 1 it derives an unset threshold).
    pub max_num_partial_prefills: Option<Recorded<usize>>,
    /// CUDA-graph batch sizes vLLM captured, ascending.
    pub cudagraph_capture_sizes: Option<Recorded<Vec<usize>>>,
    pub cudagraph_mode: Option<Recorded<CudaGraphMode>>,
    /// The largest capture size asked for, where the sizes themselves are not recorded.
    pub max_cudagraph_capture_size: Option<Recorded<usize>>,
    /// `kv_cache_dtype` / `cache_dtype` (`auto` = the model's dtype).
    pub kv_cache_dtype: Option<Recorded<String>>,
    /// `model_config.quantization` / `engine_kwargs.quantization`: `fp8` for vLLM's FP8
    /// quantization at load (or a pre-quantized FP8 checkpoint), another method for a
    /// pre-quantized checkpoint.
    pub quantization: Option<Recorded<String>>,
    pub gpu: Option<Recorded<&'static GpuSpec>>,
    /// `hardware.device_name` when it names no GPU llm-emu knows: replayed only with a `--gpu`
    /// that says which GPU to emulate.
    pub unknown_gpu: Option<Recorded<String>>,
    pub device_count: Option<Recorded<u64>>,
    /// Memory of one GPU, bytes (`hardware.device_total_memory_bytes`, else the cluster
    /// config's `npu_mem.mem_size` read as GiB).
    pub device_memory_bytes: Option<Recorded<u64>>,
    pub tp_link: Option<RecordedLink>,
    /// `data_parallel_size` (engine cores of one vLLM server; replayed as a data-parallel
    /// fleet).
    pub data_parallel_size: Option<Recorded<u64>>,
    /// `enable_expert_parallel` was on (replayed as expert-parallel lockstep).
    pub enable_expert_parallel: bool,
    /// Where `enable_expert_parallel` was recorded, if anywhere (set or not).
    pub expert_parallel_source: Option<String>,
    /// Facts recorded but not modelled, and differences between records that were resolved;
    /// one sentence each, for the user.
    pub notes: Vec<String>,
}

/// A run's record: where it was read and its facts.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub meta_path: PathBuf,
    pub cluster_config_path: Option<PathBuf>,
    /// `meta.json`'s `num_requests`.
    pub num_requests: Option<usize>,
    /// `meta.json`'s `dataset_hash`: the SHA-256 (lower-case hex) of the workload file the run
    /// served, and `dataset_path`, where it was; a replay checks its workload against them.
    pub dataset_hash: Option<String>,
    pub dataset_path: Option<String>,
    /// `meta.json`'s `started_at` (ISO 8601, UTC), as written: when the runner's engine and
    /// stat logger were up, the origin of `timeseries.csv`'s ticks.
    pub started_at: Option<String>,
    /// `meta.json`'s `tick_seconds`: the width of `timeseries.csv`'s ticks, as written (checked
    /// where it is used).
    pub tick_seconds: Option<f64>,
    pub facts: RunFacts,
}

/// vLLM's defaults, for the facts that matter to the engine, of the version a run names.
#[derive(Clone, Debug, PartialEq)]
pub struct VllmDefaults {
    /// The version whose defaults these are (`0.19`).
    pub version: &'static str,
    pub async_scheduling: bool,
    pub enable_chunked_prefill: bool,
    pub enable_prefix_caching: bool,
    pub block_size: usize,
    pub gpu_memory_utilization: f64,
    /// The rule for the CUDA-graph capture sizes a run did not record.
    pub capture_rule: CaptureRule,
}

/// The versions whose source was checked (`vllm/config/{scheduler,cache,vllm}.py` or
/// `vllm/config/__init__.py`, `engine/arg_utils.py`): 0.10.1.1, 0.11.0, 0.12.0, 0.13.0, 0.14.0,
/// 0.15.0, 0.17.0 and 0.19.0. All have chunked prefill and prefix caching on for generation
/// models, block size 16, memory utilization 0.9 and the batch defaults 8192/1024 on ≥ 70 GiB
/// non-A100 GPUs else 2048/256. They differ in:
/// - async scheduling: off up to 0.13 (`async_scheduling: bool = False`; 0.12 and 0.13 have the
///   `None` → on resolution but "won't reach here until async scheduling is enabled by
///   default"), on from 0.14 (`None`, resolved to on with the `uni`/`mp` executors);
/// - capture sizes: every multiple of 8 up to 0.11, 16-steps from 256 since 0.12
///   ([`CaptureRule`]).
///
/// (The API server's token budget with chunked prefill off also differs, `max_model_len` up to
/// 0.11 and at least that since 0.12; a run in this layout was recorded by an engine built in
/// the engine context, whose budget is `max(max_model_len, 2048)` in every version:
/// [`llm_emu_perf::BatchContext`].)
const CHECKED_DEFAULTS: VllmDefaults = VllmDefaults {
    version: "0.19",
    async_scheduling: true,
    enable_chunked_prefill: true,
    enable_prefix_caching: true,
    block_size: 16,
    gpu_memory_utilization: 0.9,
    capture_rule: CaptureRule::SixteenthsFrom256,
};

/// `0.MINOR` for each minor version checked, oldest first.
const CHECKED_VERSIONS: [&str; 10] = [
    "0.10", "0.11", "0.12", "0.13", "0.14", "0.15", "0.16", "0.17", "0.18", "0.19",
];

impl VllmDefaults {
    /// The defaults of `version` (`0.19.0`), and a note when they are not known for it (then
    /// 0.19's are used).
    pub fn for_version(version: Option<&str>) -> (VllmDefaults, Option<String>) {
        let minor = version.and_then(|v| {
            let mut it = v.trim().trim_start_matches(['v', 'V']).split('.');
            match (it.next()?.parse::<u32>().ok()?, it.next()?) {
                (0, m) => m
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u32>()
                    .ok(),
                _ => None,
            }
        });
        let known = minor.and_then(|m| {
            CHECKED_VERSIONS
                .iter()
                .find(|v| v[2..].parse::<u32>().ok() == Some(m))
        });
        match (known, minor) {
            (Some(&v), Some(m)) => (
                VllmDefaults {
                    version: v,
                    async_scheduling: m >= 14,
                    capture_rule: if m <= 11 {
                        CaptureRule::EveryEighth
                    } else {
                        CaptureRule::SixteenthsFrom256
                    },
                    ..CHECKED_DEFAULTS
                },
                None,
            ),
            _ => (
                CHECKED_DEFAULTS,
                Some(format!(
                    "vLLM {}: its defaults are not known to llm-emu (checked: {} to {}); \
                     vLLM 0.19's are used for the facts the run did not record",
                    version
                        .filter(|v| !v.trim().is_empty())
                        .unwrap_or("(version not recorded)"),
                    CHECKED_VERSIONS[0],
                    CHECKED_VERSIONS[CHECKED_VERSIONS.len() - 1]
                )),
            ),
        }
    }
}

/// Reading context: the file, the notes gathered and the facts recorded in a form that
/// cannot be read.
struct Reader<'a> {
    path: &'a Path,
    notes: Vec<String>,
    /// Facts recorded as a value of the wrong type (`"2"` for a size, `"false"` for a flag, a
    /// negative count): each would change the replay, so the record is refused, naming them
    /// all at once.
    unreadable: Vec<String>,
}

/// Whether `v` is the recorder's stand-in for a value too long to write (LLMServingSim's
/// `bench/core/runner.py::_normalize`: `"<list len=80>"`, `"<dict len=70>"`, `"<HFConfig>"`,
/// `"<unreadable: AttributeError>"`): the fact was there, its value was not written down.
fn is_recorder_tag(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.len() > 2 && t.starts_with('<') && t.ends_with('>'))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// A JSON value read as one fact's type.
trait FromFact: Sized + PartialEq + Display + Clone {
    /// What a readable value is, for messages (", not a whole number").
    const KIND: &'static str;
    fn from_fact(v: &Value) -> Option<Self>;
}
impl FromFact for u64 {
    const KIND: &'static str = "a whole number";
    fn from_fact(v: &Value) -> Option<Self> {
        value_u64(v)
    }
}
impl FromFact for usize {
    const KIND: &'static str = "a whole number";
    fn from_fact(v: &Value) -> Option<Self> {
        value_u64(v).and_then(|x| usize::try_from(x).ok())
    }
}
impl FromFact for u32 {
    const KIND: &'static str = "a whole number";
    fn from_fact(v: &Value) -> Option<Self> {
        value_u64(v).and_then(|x| u32::try_from(x).ok())
    }
}
impl FromFact for f64 {
    const KIND: &'static str = "a number";
    fn from_fact(v: &Value) -> Option<Self> {
        v.as_f64().filter(|x| x.is_finite())
    }
}
impl FromFact for bool {
    const KIND: &'static str = "true or false";
    fn from_fact(v: &Value) -> Option<Self> {
        v.as_bool()
    }
}
impl FromFact for String {
    const KIND: &'static str = "a string";
    fn from_fact(v: &Value) -> Option<Self> {
        v.as_str().map(str::to_string)
    }
}

/// A dtype as vLLM records it, without torch's `torch.` prefix: `resolved_config` writes
/// `torch.bfloat16` where `engine_kwargs` says `bfloat16`, one and the same type.
#[derive(Clone, Debug, PartialEq)]
struct DtypeName(String);
impl FromFact for DtypeName {
    const KIND: &'static str = "a dtype name";
    fn from_fact(v: &Value) -> Option<Self> {
        v.as_str()
            .map(|s| DtypeName(s.strip_prefix("torch.").unwrap_or(s).to_string()))
    }
}
impl Display for DtypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How two records of one fact that differ are resolved.
#[derive(Clone, Copy, PartialEq)]
enum OnDiffer {
    /// The first (what vLLM resolved) wins, with a note.
    Note,
    /// Both are vLLM's own record of the same value: an error.
    Contradiction,
    /// The first (what was asked) wins, with a note: the model's name, which vLLM may resolve
    /// to a path only the machine that ran it has.
    NoteAsked,
}

impl Reader<'_> {
    fn err(&self, msg: impl Into<String>) -> RunRecordError {
        RunRecordError::Bad {
            path: self.path.display().to_string(),
            msg: msg.into(),
        }
    }
    fn contradiction(&self, msg: impl Into<String>) -> RunRecordError {
        RunRecordError::Contradiction {
            path: self.path.display().to_string(),
            msg: msg.into(),
        }
    }
    fn not_replayable(&self, msg: impl Into<String>) -> RunRecordError {
        RunRecordError::NotReplayable {
            path: self.path.display().to_string(),
            msg: msg.into(),
        }
    }

    /// One typed value at `path` of `root` (named `prefix.path`). The recorder's stand-in for
    /// a value it did not write (`"<list len=80>"`) is noted and left out, as not recorded; any
    /// other value of the wrong type is unreadable, and the record is refused at the end
    /// ([`Reader::refuse_unreadable`]).
    fn typed<T: FromFact>(&mut self, root: &Value, prefix: &str, path: &[&str]) -> Option<T> {
        let v = get(root, path)?;
        let t = T::from_fact(v);
        if t.is_none() {
            self.cannot_read(
                &format!("{prefix}.{}", path.join(".")),
                v,
                &format!(", not {}", T::KIND),
            );
        }
        t
    }

    /// Says that `what` is recorded as `v`, which is not a value of its kind (`kind`, e.g.
    /// ", not a list of sizes"): a note for the recorder's stand-in, else an unreadable fact.
    fn cannot_read(&mut self, what: &str, v: &Value, kind: &str) {
        if is_recorder_tag(v) {
            self.notes.push(format!(
                "{what} is recorded as {v}, its value not written down: read as not recorded"
            ));
        } else {
            self.unreadable.push(format!("{what} = {v}{kind}"));
        }
    }

    /// The error naming every unreadable fact, if any.
    fn refuse_unreadable(&self) -> Result<(), RunRecordError> {
        if self.unreadable.is_empty() {
            return Ok(());
        }
        Err(self.err(format!(
            "recorded in a form llm-emu cannot read (each would change the replay, so none is \
             replaced by a default): {}",
            self.unreadable.join("; ")
        )))
    }

    /// The first recorded value among `candidates` (highest precedence first); others that
    /// differ from it are noted or are an error, by `on_differ`.
    fn pick<T: FromFact>(
        &mut self,
        what: &str,
        candidates: Vec<(String, Option<T>)>,
        on_differ: OnDiffer,
    ) -> Result<Option<Recorded<T>>, RunRecordError> {
        let mut chosen: Option<Recorded<T>> = None;
        for (source, value) in candidates {
            let Some(value) = value else { continue };
            match &chosen {
                None => chosen = Some(Recorded { value, source }),
                Some(c) if c.value != value => {
                    let msg = format!("{what}: {} = {} but {source} = {value}", c.source, c.value);
                    match on_differ {
                        OnDiffer::Contradiction => return Err(self.contradiction(msg)),
                        OnDiffer::Note => self
                            .notes
                            .push(format!("{msg}: using {}, what vLLM ran with", c.value)),
                        OnDiffer::NoteAsked => self.notes.push(format!(
                            "{msg}: using {}, the name asked for (the resolved name may be a \
                             path on the machine that ran it)",
                            c.value
                        )),
                    }
                }
                Some(_) => {}
            }
        }
        Ok(chosen)
    }

    /// [`Reader::pick`] over values read by `parse` (a value it cannot read is unreadable,
    /// as not being `kind`).
    fn pick_parsed(
        &mut self,
        what: &str,
        candidates: Vec<(String, Option<&Value>)>,
        parse: fn(&Value) -> Option<u64>,
        kind: &str,
    ) -> Result<Option<Recorded<u64>>, RunRecordError> {
        let parsed = candidates
            .into_iter()
            .map(|(src, v)| {
                let x = v.and_then(|v| {
                    let x = parse(v);
                    if x.is_none() {
                        self.cannot_read(&src, v, &format!(", not {kind}"));
                    }
                    x
                });
                (src, x)
            })
            .collect();
        self.pick(what, parsed, OnDiffer::Note)
    }

    /// A cache fact `key`: `kv_cache` and `resolved_config.cache_config` (vLLM's own two
    /// records of what it allocated: a difference is a contradiction), else
    /// `engine_kwargs` (what was asked: a request that differs from what vLLM allocated is a
    /// note).
    fn cache_fact<T: FromFact>(
        &mut self,
        key: &str,
        kv: &Value,
        cache: &Value,
        ek: &Value,
    ) -> Result<Option<Recorded<T>>, RunRecordError> {
        let allocated = vec![
            (
                format!("meta.json kv_cache.{key}"),
                self.typed(kv, "kv_cache", &[key]),
            ),
            (
                format!("meta.json resolved_config.cache_config.{key}"),
                self.typed(cache, "resolved_config.cache_config", &[key]),
            ),
        ];
        let allocated = self.pick(key, allocated, OnDiffer::Contradiction)?;
        let mut cands: Vec<(String, Option<T>)> = Vec::new();
        if let Some(r) = allocated {
            cands.push((r.source, Some(r.value)));
        }
        cands.push((
            format!("meta.json engine_kwargs.{key}"),
            self.typed(ek, "engine_kwargs", &[key]),
        ));
        self.pick(key, cands, OnDiffer::Note)
    }
}

/// Keys read from each part of `meta.json`; any other key is reported as not modelled.
const TOP_KEYS: &[&str] = &[
    "schema_version",
    "model",
    "vllm_version",
    "engine_kwargs",
    "dataset_path",
    "dataset_hash",
    "num_requests",
    "started_at",
    "finished_at",
    "tick_seconds",
    "kv_cache",
    "hardware",
    "resolved_config",
    "num_gpu_blocks",
];
const ENGINE_KWARGS_KEYS: &[&str] = &[
    "model",
    "tensor_parallel_size",
    "data_parallel_size",
    "pipeline_parallel_size",
    "max_num_seqs",
    "max_num_batched_tokens",
    "max_model_len",
    "dtype",
    "kv_cache_dtype",
    "seed",
    "num_gpu_blocks",
    "num_gpu_blocks_override",
    "block_size",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "gpu_memory_utilization",
    "async_scheduling",
    "enforce_eager",
    "scheduling_policy",
    "performance_mode",
    "long_prefill_token_threshold",
    "max_num_partial_prefills",
    "enable_expert_parallel",
    "quantization",
    "hf_overrides",
    "speculative_config",
    "kv_transfer_config",
    "cpu_offload_gb",
    "kv_cache_memory_bytes",
    "optimization_level",
    "compilation_config",
    "cudagraph_capture_sizes",
    "max_cudagraph_capture_size",
    "cuda_graph_sizes",
];
/// `engine_kwargs.compilation_config` keys read (vLLM's `-O`/`--compilation-config` dict).
const EK_COMPILATION_KEYS: &[&str] = &[
    "mode",
    "cudagraph_mode",
    "cudagraph_capture_sizes",
    "max_cudagraph_capture_size",
];
const KV_CACHE_KEYS: &[&str] = &[
    "num_gpu_blocks",
    "num_cpu_blocks",
    "block_size",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "kv_cache_memory_bytes",
    "num_kv_tokens",
];
const HARDWARE_KEYS: &[&str] = &[
    "device_name",
    "device_count",
    "device_total_memory_bytes",
    "device_capability",
    "torch_version",
    "cuda_version",
    "error",
];
/// `resolved_config` sections read (the others are reported once as not modelled).
/// `scheduler_config.scheduler_cls` values that are vLLM's own v1 schedulers.
const VLLM_SCHEDULER_CLASSES: &[&str] = &[
    "vllm.v1.core.sched.scheduler.Scheduler",
    "vllm.v1.core.sched.async_scheduler.AsyncScheduler",
];
const RESOLVED_SECTIONS: &[&str] = &[
    "performance_mode",
    "optimization_level",
    "scheduler_config",
    "cache_config",
    "compilation_config",
    "parallel_config",
    "model_config",
    "speculative_config",
    "kv_transfer_config",
    "offload_config",
    "lora_config",
];

fn unread_keys(v: Option<&Value>, known: &[&str], prefix: &str) -> Vec<String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter(|k| !known.contains(&k.as_str()))
                .map(|k| format!("{prefix}{k}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `v` holds a key `key` with a positive number anywhere below it: as a JSON number,
/// or inside a string in Python's `repr` of a dataclass (`key=4.0`), as vLLM 0.19 records
/// `offload_config.uva` (`"UVAOffloadConfig(cpu_offload_gb=4.0, cpu_offload_params=set())"`).
fn has_positive(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            (k == key && x.as_f64().is_some_and(|f| f > 0.0)) || has_positive(x, key)
        }),
        Value::Array(a) => a.iter().any(|x| has_positive(x, key)),
        Value::String(t) => repr_positive(t, key),
        _ => false,
    }
}

/// Whether the `repr` text `t` sets `key=` to a positive number (a key that only ends in `key`,
/// such as `other_key=`, does not count).
fn repr_positive(t: &str, key: &str) -> bool {
    let pattern = format!("{key}=");
    t.match_indices(&pattern).any(|(at, _)| {
        let whole_key = t[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let number: String = t[at + pattern.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
            .collect();
        whole_key && number.parse::<f64>().is_ok_and(|x| x > 0.0)
    })
}

impl RunRecord {
    /// Reads the run at `dir`: `dir/meta.json` or `dir/vllm/meta.json`, and the cluster config
    /// in the folder above `meta.json`'s (`config.json`, else
    /// `llmservingsim-cluster-config.json`) when there is one.
    pub fn load(dir: &Path) -> Result<RunRecord, RunRecordError> {
        let meta_path = [dir.join("meta.json"), dir.join("vllm").join("meta.json")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| RunRecordError::Bad {
                path: dir.display().to_string(),
                msg: "no meta.json here or in vllm/ (a run directory holds vllm/meta.json)".into(),
            })?;
        let text =
            llm_emu_perf::text_file::read_text(&meta_path).map_err(|e| RunRecordError::Bad {
                path: meta_path.display().to_string(),
                msg: e.to_string(),
            })?;
        let meta: Value = serde_json::from_str(&text).map_err(|e| RunRecordError::Bad {
            path: meta_path.display().to_string(),
            msg: e.to_string(),
        })?;
        let cluster_config_path = meta_path.parent().and_then(Path::parent).and_then(|run| {
            ["config.json", "llmservingsim-cluster-config.json"]
                .iter()
                .map(|n| run.join(n))
                .find(|p| p.is_file())
        });
        let cluster = match &cluster_config_path {
            Some(p) => {
                let text =
                    llm_emu_perf::text_file::read_text(p).map_err(|e| RunRecordError::Bad {
                        path: p.display().to_string(),
                        msg: e.to_string(),
                    })?;
                Some(
                    serde_json::from_str::<Value>(&text).map_err(|e| RunRecordError::Bad {
                        path: p.display().to_string(),
                        msg: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut record = Self::from_values(
            &meta_path,
            &meta,
            cluster_config_path.as_deref(),
            cluster.as_ref(),
        )?;
        record.cluster_config_path = cluster_config_path;
        Ok(record)
    }

    /// The facts of a parsed `meta.json` (at `meta_path`, for messages) and cluster config.
    pub fn from_values(
        meta_path: &Path,
        meta: &Value,
        cluster_path: Option<&Path>,
        cluster: Option<&Value>,
    ) -> Result<RunRecord, RunRecordError> {
        let mut r = Reader {
            path: meta_path,
            notes: Vec::new(),
            unreadable: Vec::new(),
        };
        if !meta.is_object() {
            return Err(r.err("not a JSON object"));
        }
        // Each part is a JSON object; anything else is not read (its facts would be lost).
        let parts: [&[&str]; 9] = [
            &["engine_kwargs"],
            &["kv_cache"],
            &["hardware"],
            &["resolved_config"],
            &["resolved_config", "scheduler_config"],
            &["resolved_config", "cache_config"],
            &["resolved_config", "compilation_config"],
            &["resolved_config", "parallel_config"],
            &["resolved_config", "model_config"],
        ];
        for path in parts {
            if let Some(v) = get(meta, path).filter(|v| !v.is_object()) {
                r.cannot_read(
                    &format!("meta.json {}", path.join(".")),
                    v,
                    ", not a JSON object",
                );
            }
        }
        let mut ek = get(meta, &["engine_kwargs"])
            .cloned()
            .unwrap_or(Value::Null);
        // `compilation_config` given as the JSON text of `--compilation-config '{…}'`, which
        // vLLM parses: read as the object it stands for.
        if let Some(m) = ek.as_object_mut() {
            if let Some(text) = m.get("compilation_config").and_then(Value::as_str) {
                if let Ok(obj @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
                    m.insert("compilation_config".into(), obj);
                }
            }
        }
        // `max_model_len` -1 asks vLLM 0.19 to fit the length to the KV cache: read apart, as
        // no length.
        let auto_fit_asked = get(&ek, &["max_model_len"]).and_then(value_i64) == Some(-1);
        if auto_fit_asked {
            if let Some(m) = ek.as_object_mut() {
                m.remove("max_model_len");
            }
        }
        let kv = get(meta, &["kv_cache"]).cloned().unwrap_or(Value::Null);
        let hw = get(meta, &["hardware"]).cloned().unwrap_or(Value::Null);
        let rc = get(meta, &["resolved_config"])
            .cloned()
            .unwrap_or(Value::Null);
        let sched = get(&rc, &["scheduler_config"])
            .cloned()
            .unwrap_or(Value::Null);
        let cache = get(&rc, &["cache_config"]).cloned().unwrap_or(Value::Null);
        let comp = get(&rc, &["compilation_config"])
            .cloned()
            .unwrap_or(Value::Null);
        let par = get(&rc, &["parallel_config"])
            .cloned()
            .unwrap_or(Value::Null);
        let model_cfg = get(&rc, &["model_config"]).cloned().unwrap_or(Value::Null);

        // The recorder's layout version: 1 is the one read here.
        if let Some(v) = get(meta, &["schema_version"]).filter(|v| value_u64(v) != Some(1)) {
            r.notes.push(format!(
                "meta.json schema_version = {v}: llm-emu reads version 1 of this layout \
                 (LLMServingSim's recorder); the facts are read by their names"
            ));
        }
        // What is not read, said once per part.
        let mut unread = unread_keys(Some(meta), TOP_KEYS, "");
        unread.extend(unread_keys(Some(&ek), ENGINE_KWARGS_KEYS, "engine_kwargs."));
        // vLLM's compilation settings as asked: `--compilation-config` / `-O` (a dict).
        let ek_comp = get(&ek, &["compilation_config"])
            .cloned()
            .unwrap_or(Value::Null);
        if !ek_comp.is_null() && !ek_comp.is_object() {
            r.cannot_read(
                "meta.json engine_kwargs.compilation_config",
                &ek_comp,
                ", not a JSON object",
            );
        }
        unread.extend(unread_keys(
            Some(&ek_comp),
            EK_COMPILATION_KEYS,
            "engine_kwargs.compilation_config.",
        ));
        unread.extend(unread_keys(Some(&kv), KV_CACHE_KEYS, "kv_cache."));
        unread.extend(unread_keys(Some(&hw), HARDWARE_KEYS, "hardware."));
        if !unread.is_empty() {
            r.notes.push(format!(
                "meta.json keys not modelled (ignored): {}",
                unread.join(", ")
            ));
        }
        if let Some(m) = rc.as_object() {
            let other: Vec<&str> = m
                .keys()
                .map(String::as_str)
                .filter(|k| !RESOLVED_SECTIONS.contains(k))
                .collect();
            if !other.is_empty() {
                r.notes.push(format!(
                    "resolved_config sections not modelled (ignored): {}",
                    other.join(", ")
                ));
            }
        }

        let e = |k: &str| format!("meta.json engine_kwargs.{k}");
        let s = |k: &str| format!("meta.json resolved_config.scheduler_config.{k}");
        let c = |k: &str| format!("meta.json resolved_config.cache_config.{k}");
        let p = |k: &str| format!("meta.json resolved_config.parallel_config.{k}");
        let m = |k: &str| format!("meta.json resolved_config.model_config.{k}");
        let k = |x: &str| format!("meta.json kv_cache.{x}");

        // Parallelism: only tensor parallelism on one engine is modelled.
        let tp = {
            let cands = vec![
                (
                    p("tensor_parallel_size"),
                    r.typed(
                        &par,
                        "resolved_config.parallel_config",
                        &["tensor_parallel_size"],
                    ),
                ),
                (
                    e("tensor_parallel_size"),
                    r.typed(&ek, "engine_kwargs", &["tensor_parallel_size"]),
                ),
            ];
            r.pick("tensor-parallel size", cands, OnDiffer::Note)?
        };
        let data_parallel_size = {
            let key = "data_parallel_size";
            let cands = vec![
                (
                    p(key),
                    r.typed::<u64>(&par, "resolved_config.parallel_config", &[key]),
                ),
                (e(key), r.typed::<u64>(&ek, "engine_kwargs", &[key])),
            ];
            r.pick(key, cands, OnDiffer::Note)?
        };
        for (key, what) in [
            ("pipeline_parallel_size", "pipeline parallelism"),
            ("decode_context_parallel_size", "decode context parallelism"),
            (
                "prefill_context_parallel_size",
                "prefill context parallelism",
            ),
        ] {
            let cands = vec![
                (
                    p(key),
                    r.typed::<u64>(&par, "resolved_config.parallel_config", &[key]),
                ),
                (e(key), r.typed::<u64>(&ek, "engine_kwargs", &[key])),
            ];
            if let Some(v) = r.pick(key, cands, OnDiffer::Note)? {
                if v.value > 1 {
                    return Err(r.not_replayable(format!(
                        "{} = {}: {what} is not modelled (llm-emu emulates one engine with \
                         tensor parallelism only)",
                        v.source, v.value
                    )));
                }
            }
        }
        // What vLLM resolved wins over what was asked, a difference noted (as for every fact).
        let expert_parallel = {
            let cands = vec![
                (
                    p("enable_expert_parallel"),
                    r.typed::<bool>(
                        &par,
                        "resolved_config.parallel_config",
                        &["enable_expert_parallel"],
                    ),
                ),
                (
                    e("enable_expert_parallel"),
                    r.typed::<bool>(&ek, "engine_kwargs", &["enable_expert_parallel"]),
                ),
            ];
            r.pick("enable_expert_parallel", cands, OnDiffer::Note)?
        };
        let enable_expert_parallel = expert_parallel.as_ref().is_some_and(|x| x.value);
        let expert_parallel_source = expert_parallel.map(|x| x.source);

        // CPU KV offload, KV connectors, speculative decoding: the timing would differ.
        let offload_cpu = [
            (k("num_cpu_blocks"), get(&kv, &["num_cpu_blocks"])),
            (c("num_cpu_blocks"), get(&cache, &["num_cpu_blocks"])),
            (
                c("kv_offloading_size"),
                get(&cache, &["kv_offloading_size"]),
            ),
            // An engine argument too (`EngineArgs.kv_offloading_size`): vLLM turns on its
            // offloading connector for it.
            (e("kv_offloading_size"), get(&ek, &["kv_offloading_size"])),
        ];
        for (src, v) in offload_cpu {
            if let Some(v) = v.filter(|v| !v.is_number()) {
                r.cannot_read(&src, v, ", not a number");
            }
            if let Some(x) = v.and_then(Value::as_f64).filter(|x| *x > 0.0) {
                return Err(
                    r.not_replayable(format!("{src} = {x}: CPU KV-cache offload is not modelled"))
                );
            }
        }
        for (root, section) in [(&rc, "resolved_config"), (&ek, "engine_kwargs")] {
            for (key, what) in [
                (
                    "kv_transfer_config",
                    "a KV connector (offload or disaggregated prefill)",
                ),
                ("speculative_config", "speculative decoding"),
            ] {
                if let Some(v) = get(root, &[key]) {
                    return Err(r.not_replayable(format!(
                        "meta.json {section}.{key} = {v}: {what} is not modelled"
                    )));
                }
            }
        }
        let offload =
            if get(&rc, &["offload_config"]).is_some_and(|v| has_positive(v, "cpu_offload_gb")) {
                Some("meta.json resolved_config.offload_config".to_string())
            } else {
                get(&ek, &["cpu_offload_gb"])
                    .and_then(Value::as_f64)
                    .filter(|gb| *gb > 0.0)
                    .map(|gb| format!("meta.json engine_kwargs.cpu_offload_gb = {gb}"))
            };
        if let Some(src) = offload {
            return Err(r.not_replayable(format!(
                "{src}: weights offloaded to CPU (cpu_offload_gb > 0) are not modelled"
            )));
        }
        if get(&rc, &["lora_config"]).is_some() {
            r.notes.push(
                "meta.json resolved_config.lora_config is set: LoRA adapters are not modelled"
                    .into(),
            );
        }

        macro_rules! fact {
            ($what:expr, $on:expr, $( ($src:expr, $root:expr, $pre:expr, $path:expr) ),+ $(,)?) => {{
                let cands = vec![ $( ($src, r.typed($root, $pre, $path)) ),+ ];
                r.pick($what, cands, $on)?
            }};
        }
        let max_num_seqs = fact!(
            "max_num_seqs",
            OnDiffer::Note,
            (
                s("max_num_seqs"),
                &sched,
                "resolved_config.scheduler_config",
                &["max_num_seqs"]
            ),
            (e("max_num_seqs"), &ek, "engine_kwargs", &["max_num_seqs"]),
        );
        let max_num_batched_tokens = fact!(
            "max_num_batched_tokens",
            OnDiffer::Note,
            (
                s("max_num_batched_tokens"),
                &sched,
                "resolved_config.scheduler_config",
                &["max_num_batched_tokens"]
            ),
            (
                e("max_num_batched_tokens"),
                &ek,
                "engine_kwargs",
                &["max_num_batched_tokens"]
            ),
        );
        // vLLM's scheduler budgets a step at `max_num_scheduled_tokens` when it is set
        // (`Scheduler.__init__`), else at `max_num_batched_tokens`.
        if let Some(n) =
            get(&sched, &["max_num_scheduled_tokens"]).filter(|v| v.as_f64() != Some(0.0))
        {
            let same = max_num_batched_tokens
                .as_ref()
                .is_some_and(|b| value_u64(n) == Some(b.value as u64));
            if !same {
                return Err(r.not_replayable(format!(
                    "{} = {n}: a step budget other than max_num_batched_tokens is not modelled",
                    s("max_num_scheduled_tokens")
                )));
            }
        }
        let max_model_len = fact!(
            "max_model_len",
            OnDiffer::Note,
            (
                m("max_model_len"),
                &model_cfg,
                "resolved_config.model_config",
                &["max_model_len"]
            ),
            (
                s("max_model_len"),
                &sched,
                "resolved_config.scheduler_config",
                &["max_model_len"]
            ),
            (e("max_model_len"), &ek, "engine_kwargs", &["max_model_len"]),
        );
        if let (true, Some(m)) = (auto_fit_asked, &max_model_len) {
            r.notes.push(format!(
                "{} = -1 asked vLLM to fit the length to the KV cache; {} = {} is the length \
                 it resolved: used",
                e("max_model_len"),
                m.source,
                m.value
            ));
        }
        let block_size = r.cache_fact("block_size", &kv, &cache, &ek)?;
        let num_gpu_blocks = fact!(
            "KV blocks",
            OnDiffer::Contradiction,
            (k("num_gpu_blocks"), &kv, "kv_cache", &["num_gpu_blocks"]),
            (
                c("num_gpu_blocks"),
                &cache,
                "resolved_config.cache_config",
                &["num_gpu_blocks"]
            ),
            (
                "meta.json num_gpu_blocks".to_string(),
                meta,
                "meta",
                &["num_gpu_blocks"]
            ),
        );
        let num_gpu_blocks = match num_gpu_blocks {
            Some(b) => Some(b),
            None => fact!(
                "KV blocks",
                OnDiffer::Note,
                (
                    c("num_gpu_blocks_override"),
                    &cache,
                    "resolved_config.cache_config",
                    &["num_gpu_blocks_override"]
                ),
                (
                    e("num_gpu_blocks"),
                    &ek,
                    "engine_kwargs",
                    &["num_gpu_blocks"]
                ),
                (
                    e("num_gpu_blocks_override"),
                    &ek,
                    "engine_kwargs",
                    &["num_gpu_blocks_override"]
                ),
            ),
        };
        // vLLM sizes the cache to `num_gpu_blocks_override` when one is given, so a recorded
        // count that differs from it is the one the run had: used, and said.
        if let Some(n) = &num_gpu_blocks {
            for (src, root, pre) in [
                (
                    c("num_gpu_blocks_override"),
                    &cache,
                    "resolved_config.cache_config",
                ),
                (e("num_gpu_blocks_override"), &ek, "engine_kwargs"),
            ] {
                if let Some(o) = r
                    .typed::<u32>(root, pre, &["num_gpu_blocks_override"])
                    .filter(|o| *o != n.value)
                {
                    r.notes.push(format!(
                        "{src} = {o} but {} = {}: the recorded block count is used",
                        n.source, n.value
                    ));
                }
            }
        }
        if let Some(v) = get(&cache, &["sliding_window"]) {
            r.notes.push(format!(
                "{} = {v}: not read; the layers' windows come from the model config, from \
                 which vLLM derives this value",
                c("sliding_window")
            ));
        }
        if let Some(tokens) = r.typed::<u64>(&kv, "kv_cache", &["num_kv_tokens"]) {
            match (&num_gpu_blocks, &block_size) {
                (Some(n), Some(b)) if u64::from(n.value) * b.value as u64 != tokens => {
                    return Err(r.contradiction(format!(
                        "{} = {tokens} is not {} ({}) × {} ({})",
                        k("num_kv_tokens"),
                        n.value,
                        n.source,
                        b.value,
                        b.source
                    )));
                }
                _ => {}
            }
        }
        let kv_cache_memory_bytes =
            match r.cache_fact::<u64>("kv_cache_memory_bytes", &kv, &cache, &ek)? {
                Some(b) if b.value == 0 => {
                    r.notes.push(format!(
                        "{} = 0: unset, as vLLM reads 0 (the blocks are sized from the GPU's \
                         memory)",
                        b.source
                    ));
                    None
                }
                bytes => bytes,
            };
        if let (Some(bytes), Some(n)) = (&kv_cache_memory_bytes, &num_gpu_blocks) {
            r.notes.push(format!(
                "{} = {}: the KV size was set by hand in the run; the block count it recorded \
                 ({}, {}) is used",
                bytes.source, bytes.value, n.value, n.source
            ));
        }
        let gpu_memory_utilization = r.cache_fact("gpu_memory_utilization", &kv, &cache, &ek)?;
        let enable_prefix_caching = r.cache_fact("enable_prefix_caching", &kv, &cache, &ek)?;
        let kv_cache_dtype = fact!(
            "kv_cache_dtype",
            OnDiffer::Note,
            (
                c("cache_dtype"),
                &cache,
                "resolved_config.cache_config",
                &["cache_dtype"]
            ),
            (
                e("kv_cache_dtype"),
                &ek,
                "engine_kwargs",
                &["kv_cache_dtype"]
            ),
        );
        let enable_chunked_prefill = fact!(
            "enable_chunked_prefill",
            OnDiffer::Note,
            (
                s("enable_chunked_prefill"),
                &sched,
                "resolved_config.scheduler_config",
                &["enable_chunked_prefill"]
            ),
            (
                e("enable_chunked_prefill"),
                &ek,
                "engine_kwargs",
                &["enable_chunked_prefill"]
            ),
        );
        let async_scheduling = fact!(
            "async_scheduling",
            OnDiffer::Note,
            (
                s("async_scheduling"),
                &sched,
                "resolved_config.scheduler_config",
                &["async_scheduling"]
            ),
            (
                e("async_scheduling"),
                &ek,
                "engine_kwargs",
                &["async_scheduling"]
            ),
        );
        let scheduler_reserve_full_isl = fact!(
            "scheduler_reserve_full_isl",
            OnDiffer::Note,
            (
                s("scheduler_reserve_full_isl"),
                &sched,
                "resolved_config.scheduler_config",
                &["scheduler_reserve_full_isl"]
            ),
        );
        let scheduling_policy = fact!(
            "scheduling policy",
            OnDiffer::Note,
            (
                s("policy"),
                &sched,
                "resolved_config.scheduler_config",
                &["policy"]
            ),
            (
                e("scheduling_policy"),
                &ek,
                "engine_kwargs",
                &["scheduling_policy"]
            ),
        );
        let performance_mode: Option<Recorded<String>> = fact!(
            "performance_mode",
            OnDiffer::Note,
            (
                "meta.json resolved_config.performance_mode".to_string(),
                &rc,
                "resolved_config",
                &["performance_mode"]
            ),
            (
                e("performance_mode"),
                &ek,
                "engine_kwargs",
                &["performance_mode"]
            ),
        );
        let performance_mode = match performance_mode {
            Some(m) => match PerformanceMode::from_name(&m.value) {
                Some(value) => Some(Recorded {
                    value,
                    source: m.source,
                }),
                None => {
                    return Err(r.err(format!(
                        "{} = {:?}: not a performance mode of vLLM (balanced, throughput, \
                         interactivity)",
                        m.source, m.value
                    )))
                }
            },
            None => None,
        };
        let max_num_partial_prefills = fact!(
            "max_num_partial_prefills",
            OnDiffer::Note,
            (
                s("max_num_partial_prefills"),
                &sched,
                "resolved_config.scheduler_config",
                &["max_num_partial_prefills"]
            ),
            (
                e("max_num_partial_prefills"),
                &ek,
                "engine_kwargs",
                &["max_num_partial_prefills"]
            ),
        );
        let long_prefill_token_threshold = fact!(
            "long_prefill_token_threshold",
            OnDiffer::Note,
            (
                s("long_prefill_token_threshold"),
                &sched,
                "resolved_config.scheduler_config",
                &["long_prefill_token_threshold"]
            ),
            (
                e("long_prefill_token_threshold"),
                &ek,
                "engine_kwargs",
                &["long_prefill_token_threshold"]
            ),
        );
        if let Some(n) = r.typed::<u64>(
            &sched,
            "resolved_config.scheduler_config",
            &["max_num_partial_prefills"],
        ) {
            if n > 1 {
                r.notes.push(format!(
                    "{} = {n}: concurrent partial prefills are not modelled (one at a time)",
                    s("max_num_partial_prefills")
                ));
            }
        }
        if let Some(n) = r.typed::<u64>(
            &sched,
            "resolved_config.scheduler_config",
            &["stream_interval"],
        ) {
            if n > 1 {
                r.notes.push(format!(
                    "{} = {n}: output streaming cadence is not modelled (engine-side \
                     timestamps are unaffected)",
                    s("stream_interval")
                ));
            }
        }
        // A scheduler class of its own replaces vLLM's scheduling: not replayable.
        if let Some(cls) = r.typed::<String>(
            &sched,
            "resolved_config.scheduler_config",
            &["scheduler_cls"],
        ) {
            if !VLLM_SCHEDULER_CLASSES.contains(&cls.as_str()) {
                return Err(r.not_replayable(format!(
                    "{} = {cls}: a scheduler other than vLLM's is not modelled (llm-emu runs \
                     vLLM's v1 scheduler)",
                    s("scheduler_cls")
                )));
            }
        }
        // Settings of vLLM's forward pass the latency models do not represent, said when they
        // differ from vLLM's defaults.
        for (section, root, key, default, what) in [
            (
                "parallel_config",
                &par,
                "enable_dbo",
                Value::Bool(false),
                "dual-batch overlap is not modelled (each step priced as one batch)",
            ),
            (
                "parallel_config",
                &par,
                "enable_eplb",
                Value::Bool(false),
                "the expert load balancer is not modelled (routing is taken as balanced \
                 already)",
            ),
            (
                "model_config",
                &model_cfg,
                "disable_cascade_attn",
                Value::Bool(true),
                "cascade attention is not modelled (attention priced per request over its \
                 whole context)",
            ),
        ] {
            match get(root, &[key]) {
                Some(v) if !v.is_null() && *v != default => r.notes.push(format!(
                    "meta.json resolved_config.{section}.{key} = {v}: {what}"
                )),
                _ => {}
            }
        }
        let enforce_eager = fact!(
            "enforce_eager",
            OnDiffer::Note,
            (
                m("enforce_eager"),
                &model_cfg,
                "resolved_config.model_config",
                &["enforce_eager"]
            ),
            (e("enforce_eager"), &ek, "engine_kwargs", &["enforce_eager"]),
        );
        // CUDA-graph capture sizes: what vLLM resolved, else what was asked — the sizes
        // (`compilation_config.cudagraph_capture_sizes`, `--cudagraph-capture-sizes`; before
        // 0.12 a `--cuda-graph-sizes` list of several) or only the largest
        // (`--max-cudagraph-capture-size`; before 0.12 a one-element `--cuda-graph-sizes`).
        let sizes_of = |v: &Value| -> Option<Vec<usize>> {
            v.as_array()
                .and_then(|a| a.iter().map(usize::from_fact).collect::<Option<Vec<_>>>())
                .map(|mut sizes| {
                    sizes.sort_unstable();
                    sizes.dedup();
                    sizes
                })
        };
        let legacy = get(&ek, &["cuda_graph_sizes"]);
        let legacy_sizes = legacy.and_then(sizes_of);
        let size_lists = [
            (
                "resolved_config.compilation_config.cudagraph_capture_sizes",
                get(&comp, &["cudagraph_capture_sizes"]),
            ),
            (
                "engine_kwargs.compilation_config.cudagraph_capture_sizes",
                get(&ek_comp, &["cudagraph_capture_sizes"]),
            ),
            (
                "engine_kwargs.cudagraph_capture_sizes",
                get(&ek, &["cudagraph_capture_sizes"]),
            ),
            (
                "engine_kwargs.cuda_graph_sizes",
                legacy.filter(|_| legacy_sizes.as_ref().is_some_and(|l| l.len() > 1)),
            ),
        ];
        let mut cudagraph_capture_sizes = None;
        // Whether the sizes, and the mode below, are what vLLM resolved (not what was asked,
        // nor derived here).
        let mut sizes_resolved = false;
        for (key, v) in size_lists {
            let Some(v) = v else { continue };
            match sizes_of(v) {
                Some(sizes) => {
                    sizes_resolved = key.starts_with("resolved_config.");
                    cudagraph_capture_sizes = Some(Recorded {
                        value: sizes,
                        source: format!("meta.json {key}"),
                    });
                    break;
                }
                None => r.cannot_read(
                    &format!("meta.json {key}"),
                    v,
                    ", not a list of whole numbers",
                ),
            }
        }
        let max_cudagraph_capture_size = if cudagraph_capture_sizes.is_some() {
            None
        } else {
            let one_legacy = legacy_sizes
                .filter(|l| l.len() == 1)
                .map(|l| (e("cuda_graph_sizes"), l[0]));
            r.typed::<usize>(
                &ek_comp,
                "engine_kwargs.compilation_config",
                &["max_cudagraph_capture_size"],
            )
            .map(|n| (e("compilation_config.max_cudagraph_capture_size"), n))
            .or_else(|| {
                r.typed::<usize>(&ek, "engine_kwargs", &["max_cudagraph_capture_size"])
                    .map(|n| (e("max_cudagraph_capture_size"), n))
            })
            .or(one_legacy)
            .map(|(source, value)| Recorded { value, source })
        };
        let mode_recorded = [
            (
                "resolved_config.compilation_config.cudagraph_mode",
                get(&comp, &["cudagraph_mode"]),
            ),
            (
                "engine_kwargs.compilation_config.cudagraph_mode",
                get(&ek_comp, &["cudagraph_mode"]),
            ),
        ]
        .into_iter()
        .find_map(|(key, v)| v.map(|v| (key, v)));
        let mode_resolved =
            mode_recorded.is_some_and(|(key, _)| key.starts_with("resolved_config."));
        let mut cudagraph_mode = match mode_recorded {
            None => None,
            Some((key, v)) if is_recorder_tag(v) => {
                r.cannot_read(&format!("meta.json {key}"), v, "");
                None
            }
            Some((key, v)) => match CudaGraphMode::from_value(v) {
                Some(mode) => Some(Recorded {
                    value: mode,
                    source: format!("meta.json {key}"),
                }),
                None => {
                    return Err(r.err(format!(
                        "{key} = {v} is not a vLLM CUDAGraphMode (0, 1, 2, [2, 0], [2, 1] or a \
                         name)"
                    )))
                }
            },
        };
        // The optimization level (`-O0`…`-O3`, 0.19) and torch.compile's mode, which decide the
        // CUDA-graph mode where none is recorded, and turn piecewise graphs off without
        // compilation (`VllmConfig.__post_init__`; `OPTIMIZATION_LEVEL_0x` in `config/vllm.py`).
        let level = r.pick_parsed(
            "optimization_level",
            vec![
                (
                    "meta.json resolved_config.optimization_level".to_string(),
                    get(&rc, &["optimization_level"]),
                ),
                (e("optimization_level"), get(&ek, &["optimization_level"])),
            ],
            optimization_level,
            "an optimization level (0 to 3, or O0 to O3)",
        )?;
        let compile_mode = r.pick_parsed(
            "compilation mode",
            vec![
                (
                    "meta.json resolved_config.compilation_config.mode".to_string(),
                    get(&comp, &["mode"]),
                ),
                (
                    "meta.json engine_kwargs.compilation_config.mode".to_string(),
                    get(&ek_comp, &["mode"]),
                ),
            ],
            compilation_mode,
            "a compilation mode (0 to 3, or its name)",
        )?;
        if cudagraph_mode.is_none() {
            if let Some(l) = &level {
                let mode = match l.value {
                    0 => CudaGraphMode::None,
                    1 => CudaGraphMode::Piecewise,
                    _ => CudaGraphMode::FullAndPiecewise,
                };
                cudagraph_mode = Some(Recorded {
                    value: mode,
                    source: format!("{} = {} (that level's CUDA-graph mode)", l.source, l.value),
                });
            }
        }
        let eager = enforce_eager.as_ref().is_some_and(|x| x.value);
        let compiled = match (&compile_mode, &level) {
            (Some(m), _) => m.value == VLLM_COMPILE,
            (None, Some(l)) => l.value > 0,
            (None, None) => true,
        };
        if !compiled && !eager {
            let why = compile_mode
                .as_ref()
                .map(|m| format!("{} = {}", m.source, m.value))
                .or(level
                    .as_ref()
                    .map(|l| format!("{} = {}", l.source, l.value)))
                .unwrap_or_default();
            r.notes.push(format!(
                "{why}: not vLLM's own compilation (VLLM_COMPILE, 3); what compilation does to \
                 kernel times is not modelled (the latency model's are used as they are)"
            ));
            // With no mode recorded, vLLM's default (O2: FULL_AND_PIECEWISE) is what it turns
            // off.
            let graphs = cudagraph_mode
                .as_ref()
                .map(|g| (g.value, g.source.clone()))
                .unwrap_or((
                    CudaGraphMode::FullAndPiecewise,
                    "vLLM's default CUDA-graph mode".to_string(),
                ));
            if matches!(
                graphs.0,
                CudaGraphMode::Piecewise | CudaGraphMode::FullAndPiecewise
            ) {
                let both_resolved = mode_resolved
                    && cudagraph_mode.is_some()
                    && compile_mode
                        .as_ref()
                        .is_some_and(|m| m.source.contains("resolved_config"));
                if both_resolved {
                    return Err(r.contradiction(format!(
                        "{why} but {} = {}: vLLM records CUDA-graph mode NONE for piecewise \
                         graphs without its compilation",
                        graphs.1,
                        graphs.0.name()
                    )));
                }
                r.notes.push(format!(
                    "{} ({}) needs vLLM's compilation, which {why} leaves out: replayed with \
                     CUDA-graph mode NONE, as vLLM overrides it",
                    graphs.1,
                    graphs.0.name()
                ));
                cudagraph_mode = Some(Recorded {
                    value: CudaGraphMode::None,
                    source: format!("{why} (piecewise graphs off)"),
                });
            }
        }
        // vLLM 0.19 turns CUDA graphs off for an eager engine before it records its config
        // (`VllmConfig.__post_init__`: mode NONE, no capture sizes), so its record cannot say
        // both.
        if let Some(eager) = enforce_eager
            .as_ref()
            .filter(|x| x.value && x.source == m("enforce_eager"))
        {
            let resolved_mode = cudagraph_mode
                .as_ref()
                .filter(|c| mode_resolved && c.value != CudaGraphMode::None);
            let resolved_sizes = cudagraph_capture_sizes
                .as_ref()
                .filter(|c| sizes_resolved && !c.value.is_empty());
            if let Some(what) = resolved_mode
                .map(|c| format!("{} = {}", c.source, c.value.name()))
                .or_else(|| {
                    resolved_sizes.map(|c| format!("{} holds {} sizes", c.source, c.value.len()))
                })
            {
                return Err(r.contradiction(format!(
                    "{} = true but {what}: vLLM records CUDA-graph mode NONE and no capture \
                     sizes for an eager engine",
                    eager.source
                )));
            }
        }
        if cudagraph_mode.as_ref().map(|m| m.value) == Some(CudaGraphMode::FullDecodeOnly) {
            r.notes.push(
                "cudagraph_mode FULL_DECODE_ONLY: mixed prefill/decode steps run eagerly in vLLM; \
                 llm-emu pads them to the capture sizes as well"
                    .into(),
            );
        }
        // The weights' dtype and quantization come from the model's config.json; a run that
        // overrode them is sized and priced as its checkpoint is.
        let dtype: Option<Recorded<DtypeName>> = fact!(
            "dtype",
            OnDiffer::Note,
            (
                m("dtype"),
                &model_cfg,
                "resolved_config.model_config",
                &["dtype"]
            ),
            (e("dtype"), &ek, "engine_kwargs", &["dtype"]),
        );
        if let Some(d) = dtype.filter(|d| d.value.0.contains("32")) {
            r.notes.push(format!(
                "{} = {}: 32-bit weights are not modelled (sized and priced as the checkpoint's \
                 dtype)",
                d.source, d.value
            ));
        }
        for (src, root) in [(m("hf_overrides"), &model_cfg), (e("hf_overrides"), &ek)] {
            if let Some(v) =
                get(root, &["hf_overrides"]).filter(|v| v.as_object().is_none_or(|o| !o.is_empty()))
            {
                r.notes.push(format!(
                    "{src} = {v}: the model's config.json is read without these overrides"
                ));
            }
        }
        // `fp8` on an unquantized checkpoint is vLLM's quantization at load, replayed as such;
        // other methods come with a pre-quantized checkpoint, read from its config.json.
        let quantization = fact!(
            "quantization",
            OnDiffer::Note,
            (
                m("quantization"),
                &model_cfg,
                "resolved_config.model_config",
                &["quantization"]
            ),
            (e("quantization"), &ek, "engine_kwargs", &["quantization"]),
        );
        // The name the run was asked for first: vLLM may resolve it to a local path that only
        // exists on the machine that ran it.
        let model = fact!(
            "model",
            OnDiffer::NoteAsked,
            (e("model"), &ek, "engine_kwargs", &["model"]),
            ("meta.json model".to_string(), meta, "meta", &["model"]),
            (
                m("model"),
                &model_cfg,
                "resolved_config.model_config",
                &["model"]
            ),
        );

        // Hardware.
        if let Some(err) = get(&hw, &["error"]) {
            r.notes.push(format!(
                "meta.json hardware.error = {err}: the run could not record its GPU"
            ));
        }
        let device_name = r
            .typed::<String>(&hw, "hardware", &["device_name"])
            .map(|name| Recorded {
                value: name,
                source: "meta.json hardware.device_name".to_string(),
            });
        let (gpu, unknown_gpu) = match device_name {
            Some(name) => match GpuSpec::lookup(&name.value) {
                Ok(g) => (
                    Some(Recorded {
                        value: g,
                        source: name.source,
                    }),
                    None,
                ),
                Err(_) => (None, Some(name)),
            },
            None => (None, None),
        };
        let device_count = fact!(
            "device count",
            OnDiffer::Note,
            (
                "meta.json hardware.device_count".to_string(),
                &hw,
                "hardware",
                &["device_count"]
            ),
        );
        let device_memory_bytes = fact!(
            "GPU memory",
            OnDiffer::Note,
            (
                "meta.json hardware.device_total_memory_bytes".to_string(),
                &hw,
                "hardware",
                &["device_total_memory_bytes"]
            ),
        );

        let mut facts = RunFacts {
            vllm_version: r.typed(meta, "meta", &["vllm_version"]),
            model,
            tensor_parallel_size: tp,
            max_num_seqs,
            max_num_batched_tokens,
            max_model_len_auto_fit: (auto_fit_asked && max_model_len.is_none())
                .then(|| "meta.json engine_kwargs.max_model_len = -1".to_string()),
            max_model_len,
            block_size,
            num_gpu_blocks,
            kv_cache_memory_bytes,
            gpu_memory_utilization,
            enable_prefix_caching,
            enable_chunked_prefill,
            async_scheduling,
            enforce_eager,
            scheduler_reserve_full_isl,
            scheduling_policy,
            performance_mode,
            long_prefill_token_threshold,
            max_num_partial_prefills,
            cudagraph_capture_sizes,
            max_cudagraph_capture_size,
            cudagraph_mode,
            kv_cache_dtype,
            quantization,
            gpu,
            unknown_gpu,
            device_count,
            device_memory_bytes,
            tp_link: None,
            data_parallel_size,
            enable_expert_parallel,
            expert_parallel_source,
            notes: Vec::new(),
        };
        if let (Some(cp), Some(cv)) = (cluster_path, cluster) {
            read_cluster(&mut r, &mut facts, cp, cv)?;
        }
        if let (Some(n), Some(tp)) = (&facts.device_count, &facts.tensor_parallel_size) {
            if n.value < tp.value {
                return Err(r.contradiction(format!(
                    "{} = {} but {} = {}: the run could not have used more GPUs than it saw",
                    tp.source, tp.value, n.source, n.value
                )));
            }
        }
        if let (Some(g), Some(mem)) = (&facts.gpu, &facts.device_memory_bytes) {
            if !g.value.holds_about(mem.value as f64 / (1u64 << 30) as f64) {
                return Err(r.contradiction(format!(
                    "{} says {} ({} GiB) but {} = {:.1} GiB",
                    g.source,
                    g.value.device_name,
                    g.value.memory_gib,
                    mem.source,
                    mem.value as f64 / (1u64 << 30) as f64
                )));
            }
        }
        let num_requests = r.typed::<usize>(meta, "meta.json", &["num_requests"]);
        // A tick that is not positive leaves the time series out (`validate`'s own check).
        let tick_seconds = r.typed::<f64>(meta, "meta.json", &["tick_seconds"]);
        r.refuse_unreadable()?;
        facts.notes = r.notes;
        Ok(RunRecord {
            meta_path: meta_path.to_path_buf(),
            cluster_config_path: cluster_path.map(Path::to_path_buf),
            num_requests,
            dataset_hash: get(meta, &["dataset_hash"])
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            dataset_path: get(meta, &["dataset_path"])
                .and_then(Value::as_str)
                .map(str::to_string),
            started_at: get(meta, &["started_at"])
                .and_then(Value::as_str)
                .map(str::to_string),
            tick_seconds,
            facts,
        })
    }
}

/// Keys of a cluster config read (or checked) at each level; `npu_mem.mem_bw` has a note of
/// its own.
const CLUSTER_KEYS: &[&str] = &["num_nodes", "link_bw", "link_latency", "nodes"];
const CLUSTER_NODE_KEYS: &[&str] = &["num_instances", "instances"];
const CLUSTER_INSTANCE_KEYS: &[&str] = &[
    "model_name",
    "hardware",
    "npu_mem",
    "num_npus",
    "tp_size",
    "pp_size",
    "ep_size",
    "dp_group",
    "pd_type",
    "max_num_seqs",
    "max_num_batched_tokens",
    "long_prefill_token_threshold",
    "block_size",
    "enable_chunked_prefill",
    "enable_prefix_caching",
];
const CLUSTER_NPU_MEM_KEYS: &[&str] = &["mem_size", "mem_util", "mem_bw"];

/// The cluster config's keys that no reader takes, each named once with its level
/// (`nodes[].cpu_mem`, `instances[].kv_loc`); a zero `npu_mem.mem_latency` changes nothing and
/// is not named.
fn cluster_keys_not_read(cv: &Value) -> Vec<String> {
    let mut out = unread_keys(Some(cv), CLUSTER_KEYS, "");
    let nodes = get(cv, &["nodes"]).and_then(Value::as_array);
    for node in nodes.into_iter().flatten() {
        out.extend(unread_keys(Some(node), CLUSTER_NODE_KEYS, "nodes[]."));
        let instances = get(node, &["instances"]).and_then(Value::as_array);
        for inst in instances.into_iter().flatten() {
            out.extend(unread_keys(
                Some(inst),
                CLUSTER_INSTANCE_KEYS,
                "instances[].",
            ));
            if let Some(mem) = get(inst, &["npu_mem"]) {
                out.extend(
                    unread_keys(Some(mem), CLUSTER_NPU_MEM_KEYS, "instances[].npu_mem.")
                        .into_iter()
                        .filter(|k| {
                            !(k.ends_with(".mem_latency")
                                && get(mem, &["mem_latency"]).and_then(Value::as_f64) == Some(0.0))
                        }),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|k| seen.insert(k.clone()));
    out
}

/// The cluster config's facts (LLMServingSim's `num_nodes`, `link_bw` GiB/s, `link_latency` ns,
/// `nodes[].instances[]` with `hardware`, `npu_mem`, `num_npus`, `tp_size`, `pd_type`).
fn read_cluster(
    meta_reader: &mut Reader<'_>,
    facts: &mut RunFacts,
    path: &Path,
    cv: &Value,
) -> Result<(), RunRecordError> {
    let mut r = Reader {
        path,
        notes: Vec::new(),
        unreadable: Vec::new(),
    };
    let src = |k: &str| format!("{} {k}", path.display());
    if get(cv, &["nodes"]).is_none() && get(cv, &["link_bw"]).is_none() {
        meta_reader.notes.push(format!(
            "{}: not a cluster config (no `nodes`, no `link_bw`): ignored",
            path.display()
        ));
        return Ok(());
    }
    let unread = cluster_keys_not_read(cv);
    if !unread.is_empty() {
        r.notes.push(format!(
            "keys not modelled (ignored): {}",
            unread.join(", ")
        ));
    }
    let instances: Vec<&Map<String, Value>> = get(cv, &["nodes"])
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| get(n, &["instances"]).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_object)
                .collect()
        })
        .unwrap_or_default();
    let num_instances: u64 = get(cv, &["nodes"])
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    get(n, &["num_instances"])
                        .and_then(Value::as_u64)
                        .unwrap_or_else(|| {
                            get(n, &["instances"])
                                .and_then(Value::as_array)
                                .map_or(0, |a| a.len() as u64)
                        })
                })
                .sum()
        })
        .unwrap_or(0);
    check_data_parallel_size(&r, facts, &instances, num_instances)?;
    check_cluster_agrees(&r, facts, cv, &instances)?;
    // The run's record is one `AsyncLLM`'s (data-parallel at most): a prefill/decode split
    // cannot be what it ran (`simulate --cluster` emulates one).
    if let Some(pd) = instances
        .iter()
        .filter_map(|i| i.get("pd_type"))
        .find(|v| !v.is_null())
    {
        if !matches!(pd.as_str(), Some("prefill" | "decode")) {
            return Err(r.err(format!(
                "instance pd_type = {pd}: not a role LLMServingSim knows (\"prefill\", \
                 \"decode\", or null for an instance that does both)"
            )));
        }
        return Err(r.not_replayable(format!(
            "instance pd_type = {pd}: disaggregated prefill/decode is not modelled in a replay \
             (the run's record is one engine's; `simulate --cluster` emulates such a cluster)"
        )));
    }
    if num_instances > 1 {
        // A fleet: each instance is built from the cluster config itself (`--cluster`);
        // only the link is a fact of the run.
        meta_reader.notes.push(format!(
            "{}: {num_instances} serving instances: replayed as a fleet (from these instances, \
             or from meta.json's data-parallel size where flags change what they say)",
            path.display()
        ));
        read_link(&mut r, facts, path, cv, &instances)?;
        // The GPU every instance names is the run's GPU too (the fleet builds its engines
        // from the instances; this keeps the run's own record, and its checks, in step).
        let names: Vec<&str> = instances
            .iter()
            .filter_map(|i| i.get("hardware").and_then(Value::as_str))
            .collect();
        let gpus: Vec<&'static GpuSpec> = names
            .iter()
            .filter_map(|n| GpuSpec::lookup(n).ok())
            .collect();
        if let (Some(g), true) = (
            gpus.first(),
            gpus.len() == names.len() && gpus.iter().all(|x| x.name == gpus[0].name),
        ) {
            match &facts.gpu {
                Some(m) if m.value.name != g.name => {
                    same_gpu_family(&mut r, names[0], g, m)?;
                }
                Some(_) => {}
                None => {
                    facts.gpu = Some(Recorded {
                        value: g,
                        source: src("hardware"),
                    })
                }
            }
        }
        r.refuse_unreadable()?;
        let notes = std::mem::take(&mut r.notes);
        meta_reader.notes.extend(
            notes
                .into_iter()
                .map(|n| format!("{}: {n}", path.display())),
        );
        return Ok(());
    }
    let inst = instances.first().map(|m| Value::Object((*m).clone()));
    let inst = inst.unwrap_or(Value::Null);
    // A different TP degree was refused by `check_cluster_agrees`.
    if let Some(tp) = r.typed::<u64>(&inst, "instance", &["tp_size"]) {
        if facts.tensor_parallel_size.is_none() {
            facts.tensor_parallel_size = Some(Recorded {
                value: tp,
                source: src("tp_size"),
            })
        }
    }
    if let Some(name) = r.typed::<String>(&inst, "instance", &["hardware"]) {
        match (GpuSpec::lookup(&name), &facts.gpu) {
            (Ok(g), Some(m)) if g.name != m.value.name => {
                same_gpu_family(&mut r, &name, g, m)?;
            }
            (Ok(g), None) => {
                facts.gpu = Some(Recorded {
                    value: g,
                    source: src("hardware"),
                })
            }
            (Ok(_), Some(_)) => {}
            (Err(_), Some(m)) => r.notes.push(format!(
                "instance hardware `{name}` is not a GPU llm-emu knows; {} ({}) is used",
                m.source, m.value.name
            )),
            (Err(_), None) => {
                // Replayed only with a --gpu that says which GPU to emulate.
                if facts.unknown_gpu.is_none() {
                    facts.unknown_gpu = Some(Recorded {
                        value: name,
                        source: src("hardware"),
                    });
                }
            }
        }
    }
    if let Some(gb) = r.typed::<f64>(&inst, "instance", &["npu_mem", "mem_size"]) {
        match &facts.device_memory_bytes {
            None => {
                facts.device_memory_bytes = Some(Recorded {
                    value: (gb * (1u64 << 30) as f64) as u64,
                    source: src("npu_mem.mem_size"),
                })
            }
            Some(m) => {
                let recorded_gib = m.value as f64 / (1u64 << 30) as f64;
                if (recorded_gib - gb).abs() > 0.05 {
                    r.notes.push(format!(
                        "instance npu_mem.mem_size = {gb} GiB but {} = {} bytes \
                         ({recorded_gib:.1} GiB): using the latter",
                        m.source, m.value
                    ));
                }
            }
        }
    }
    // The peer's per-instance runtime fields fill what meta.json did not record.
    macro_rules! fill {
        ($($field:ident),+) => {$(
            fill_from_instance(&mut r, &inst, stringify!($field), &mut facts.$field, &src);
        )+};
    }
    fill!(
        max_num_seqs,
        max_num_batched_tokens,
        long_prefill_token_threshold,
        block_size,
        enable_chunked_prefill,
        enable_prefix_caching
    );
    if let Some(u) = r.typed::<f64>(&inst, "instance", &["npu_mem", "mem_util"]) {
        if !(u > 0.0 && u <= 1.0) {
            return Err(r.err(format!(
                "instance npu_mem.mem_util = {u}: must be in (0, 1], as vLLM's \
                 gpu_memory_utilization"
            )));
        }
        match &facts.gpu_memory_utilization {
            Some(m) if (m.value - u).abs() > 1e-9 => r.notes.push(format!(
                "instance npu_mem.mem_util = {u} but {} = {}: using the latter",
                m.source, m.value
            )),
            Some(_) => {}
            None => {
                facts.gpu_memory_utilization = Some(Recorded {
                    value: u,
                    source: src("npu_mem.mem_util"),
                })
            }
        }
    }
    if get(&inst, &["npu_mem", "mem_bw"]).is_some() {
        r.notes.push(
            "instance npu_mem.mem_bw is not used: the profile measures the GPU, the roofline \
             uses the GPU's datasheet"
                .into(),
        );
    }
    if let (Some(n), Some(tp)) = (
        r.typed::<u64>(&inst, "instance", &["num_npus"]),
        &facts.tensor_parallel_size,
    ) {
        if n != tp.value {
            return Err(r.contradiction(format!(
                "instance num_npus = {n} but {} = {}: one instance uses all its GPUs for TP",
                tp.source, tp.value
            )));
        }
    }
    read_link(&mut r, facts, path, cv, &instances)?;
    r.refuse_unreadable()?;
    let notes = std::mem::take(&mut r.notes);
    meta_reader.notes.extend(
        notes
            .into_iter()
            .map(|n| format!("{}: {n}", path.display())),
    );
    Ok(())
}

/// The data-parallel size `meta.json` records against the cluster config's instances: the
/// format gives each rank an instance, ranks of one server sharing a `dp_group`. Without any
/// group the instances are either separate servers (DP 1 each) or, as the peer writes a dense
/// model's ranks, the ranks of one server (DP = their count).
fn check_data_parallel_size(
    r: &Reader<'_>,
    facts: &RunFacts,
    instances: &[&Map<String, Value>],
    num_instances: u64,
) -> Result<(), RunRecordError> {
    let any_group = instances.iter().any(|i| dp_group_of(i).is_some());
    let Some(dp) = facts
        .data_parallel_size
        .as_ref()
        .filter(|d| any_group || (d.value != 1 && d.value != num_instances))
    else {
        return Ok(());
    };
    let groups = dp_groups(instances);
    let ungrouped = instances
        .iter()
        .filter(|i| dp_group_of(i).is_none())
        .count() as u64;
    let sizes: Vec<u64> = groups
        .iter()
        .map(|g| g.instances)
        .chain((ungrouped > 0).then_some(1))
        .collect();
    let Some(&other) = sizes.iter().find(|&&n| n != dp.value) else {
        return Ok(());
    };
    let described = match (groups.is_empty(), num_instances) {
        (true, 1) => "one serving instance".to_string(),
        (true, n) => format!("{n} instances without a dp_group (one server each)"),
        (false, _) => {
            let listed: Vec<String> = groups
                .iter()
                .map(|g| format!("dp_group `{}` of {}", g.name, g.instances))
                .collect();
            format!(
                "{}{}",
                listed.join(", "),
                if ungrouped > 0 {
                    format!(" and {ungrouped} instances without one")
                } else {
                    String::new()
                }
            )
        }
    };
    Err(r.contradiction(format!(
        "{} = {} but the cluster config describes {described}: a data-parallel size of {other}",
        dp.source, dp.value
    )))
}

/// One `dp_group` of a cluster config: its name, its instances and their GPUs.
struct DpGroup<'a> {
    name: &'a str,
    instances: u64,
    /// The instances' `tp_size`s summed.
    gpus: u64,
}

fn dp_group_of(inst: &Map<String, Value>) -> Option<&str> {
    inst.get("dp_group").and_then(Value::as_str)
}

/// An instance's `tp_size` (1 when absent).
fn tp_size_of(inst: &Map<String, Value>) -> u64 {
    // As the peer infers it: `tp_size`, else `num_npus / pp_size`, else 1.
    let int = |k: &str| inst.get(k).and_then(value_u64);
    int("tp_size")
        .or_else(|| int("num_npus").map(|n| n / int("pp_size").unwrap_or(1).max(1)))
        .unwrap_or(1)
        .max(1)
}

/// The named data-parallel groups of `instances`, in order of first appearance.
fn dp_groups<'a>(instances: &[&'a Map<String, Value>]) -> Vec<DpGroup<'a>> {
    let mut groups: Vec<DpGroup<'a>> = Vec::new();
    for inst in instances {
        let Some(name) = dp_group_of(inst) else {
            continue;
        };
        let tp = tp_size_of(inst);
        match groups.iter_mut().find(|g| g.name == name) {
            Some(g) => {
                g.instances += 1;
                g.gpus += tp;
            }
            None => groups.push(DpGroup {
                name,
                instances: 1,
                gpus: tp,
            }),
        }
    }
    groups
}

/// What the cluster config says that `meta.json` (vLLM's own record) also says, or that the
/// config says twice, must agree: the node and instance counts with the lists, each instance's
/// model with the run's, and expert parallelism with `enable_expert_parallel` and with the GPUs
/// a data-parallel group has (vLLM's expert-parallel size is its DP × TP size).
fn check_cluster_agrees(
    r: &Reader<'_>,
    facts: &RunFacts,
    cv: &Value,
    instances: &[&Map<String, Value>],
) -> Result<(), RunRecordError> {
    let nodes = get(cv, &["nodes"]).and_then(Value::as_array);
    if let (Some(n), Some(listed)) = (get(cv, &["num_nodes"]).and_then(Value::as_u64), nodes) {
        if n != listed.len() as u64 {
            return Err(r.contradiction(format!(
                "num_nodes = {n} but the list of nodes holds {}",
                listed.len()
            )));
        }
    }
    for (i, node) in nodes.into_iter().flatten().enumerate() {
        let listed = get(node, &["instances"])
            .and_then(Value::as_array)
            .map_or(0, Vec::len) as u64;
        if let Some(n) = get(node, &["num_instances"]).and_then(Value::as_u64) {
            if n != listed {
                return Err(r.contradiction(format!(
                    "nodes[{i}].num_instances = {n} but its list of instances holds {listed}"
                )));
            }
        }
    }
    if let Some(model) = &facts.model {
        for (i, inst) in instances.iter().enumerate() {
            if let Some(name) = inst.get("model_name").and_then(Value::as_str) {
                if name != model.value {
                    return Err(r.contradiction(format!(
                        "{} = {} but instance {i} of the cluster config runs {name}",
                        model.source, model.value
                    )));
                }
            }
        }
    }
    // Every instance is one engine of the run's TP degree (a fleet's instances are its DP ranks
    // or replicas, each of meta.json's configuration).
    if let Some(tp) = &facts.tensor_parallel_size {
        for (i, inst) in instances.iter().enumerate() {
            let t = tp_size_of(inst);
            if t != tp.value {
                return Err(r.contradiction(format!(
                    "{} = {} but instance {i} of the cluster config has tp_size = {t}",
                    tp.source, tp.value
                )));
            }
        }
    }
    // A data-parallel group's GPUs (instances × tp_size) are its expert-parallel size at most.
    let groups = dp_groups(instances);
    for (i, inst) in instances.iter().enumerate() {
        let Some(ep) = inst.get("ep_size") else {
            continue;
        };
        let gpus = dp_group_of(inst)
            .and_then(|g| groups.iter().find(|x| x.name == g))
            .map_or(tp_size_of(inst), |g| g.gpus);
        let Some(ep) = ep.as_u64().filter(|&e| e >= 1) else {
            return Err(r.contradiction(format!(
                "instance {i}: ep_size = {ep}: not a whole number ≥ 1"
            )));
        };
        if ep > gpus {
            return Err(r.contradiction(format!(
                "instance {i}: ep_size = {ep} but its experts can be spread over at most the \
                 {gpus} GPU(s) of its data-parallel group × tp_size (vLLM's expert-parallel \
                 size is DP × TP)"
            )));
        }
        if let Some(src) = &facts.expert_parallel_source {
            if ep > 1 && !facts.enable_expert_parallel {
                return Err(r.contradiction(format!(
                    "{src} = false but instance {i} of the cluster config has ep_size = {ep}"
                )));
            }
            // With expert parallelism on, vLLM spreads the experts over all of them.
            if facts.enable_expert_parallel && gpus > 1 && ep != gpus {
                return Err(r.contradiction(format!(
                    "{src} = true, so vLLM's expert-parallel size is DP × TP = {gpus}, but \
                     instance {i} of the cluster config has ep_size = {ep}"
                )));
            }
        }
    }
    if let Some(src) = facts
        .expert_parallel_source
        .as_ref()
        .filter(|_| facts.enable_expert_parallel)
    {
        let grouped = !groups.is_empty();
        let spread = instances
            .iter()
            .any(|i| i.get("ep_size").and_then(Value::as_u64).unwrap_or(1) > 1);
        if grouped && !spread {
            return Err(r.contradiction(format!(
                "{src} = true but no instance of the cluster config's data-parallel group has \
                 an ep_size above 1"
            )));
        }
    }
    Ok(())
}

/// An instance's `hardware` label naming another GPU than meta.json's driver name: the peer
/// has one label per GPU family (`RTXPRO6000`, `H100`), so a variant of the family the label
/// names (`rtx-pro-6000-max-q`, `h100-nvl`) is the driver's more specific name, said in a
/// note; any other GPU is a contradiction.
fn same_gpu_family(
    r: &mut Reader<'_>,
    label: &str,
    labelled: &GpuSpec,
    recorded: &Recorded<&'static GpuSpec>,
) -> Result<(), RunRecordError> {
    if recorded.value.is_variant_of(label, labelled) {
        r.notes.push(format!(
            "instance hardware `{label}` names the family of {} ({}): the driver's name is \
             used",
            recorded.value.device_name, recorded.source
        ));
        return Ok(());
    }
    Err(r.contradiction(format!(
        "instance hardware `{label}` ({}) but {} says {}",
        labelled.name, recorded.source, recorded.value.device_name
    )))
}

/// One runtime field of the cluster config's single instance (`key`): it fills `fact` where
/// meta.json recorded none, as the peer's `instance.get(field, args.field)` gives it; a
/// different value beside a recorded one is said, and the recorded one kept.
fn fill_from_instance<T: FromFact>(
    r: &mut Reader<'_>,
    inst: &Value,
    key: &str,
    fact: &mut Option<Recorded<T>>,
    src: &dyn Fn(&str) -> String,
) {
    // 0 leaves a count to the command line, as the fleet's reader takes it.
    if get(inst, &[key]).and_then(value_u64) == Some(0) {
        return;
    }
    let Some(v) = r.typed::<T>(inst, "instance", &[key]) else {
        return;
    };
    match fact {
        None => {
            *fact = Some(Recorded {
                value: v,
                source: src(key),
            })
        }
        Some(m) if m.value != v => r.notes.push(format!(
            "instance {key} = {v} but {} = {}: using the latter",
            m.source, m.value
        )),
        Some(_) => {}
    }
}

/// The cluster config's tensor-parallel link (`link_bw` ASTRA-sim GB/s = GiB/s, `link_latency`
/// ns): a number, or dimension 0 of a per-dimension list over the peer's topology of
/// `instances` ([`llm_emu_perf::cluster_link`]).
fn read_link(
    r: &mut Reader<'_>,
    facts: &mut RunFacts,
    path: &Path,
    cv: &Value,
    instances: &[&Map<String, Value>],
) -> Result<(), RunRecordError> {
    let int = |i: &Map<String, Value>, k: &str| i.get(k).and_then(value_u64);
    let layout: Vec<TopologyInstance<'_>> = instances
        .iter()
        .map(|i| {
            let pp = int(i, "pp_size").unwrap_or(1).max(1);
            let tp = tp_size_of(i);
            TopologyInstance {
                tp_size: tp,
                pp_size: pp,
                num_npus: int(i, "num_npus").unwrap_or(tp * pp),
                dp_group: i.get("dp_group").and_then(Value::as_str),
                prefill: i.get("pd_type").and_then(Value::as_str) == Some("prefill"),
            }
        })
        .collect();
    let dims = network_dims(&layout).len();
    let at = LinkRole::TensorParallel.dimension(dims);
    let value = |field: &str, what: LinkQuantity| -> Result<Option<f64>, RunRecordError> {
        get(cv, &[field])
            .map(|v| per_dimension(v, dims, what).map(|all| all[at]))
            .transpose()
            .map_err(|e| r.err(format!("{field} {e}")))
    };
    let bw = value("link_bw", LinkQuantity::Bandwidth)?;
    let lat = value("link_latency", LinkQuantity::Latency)?;
    match (bw, lat) {
        (Some(b), l) => {
            if l.is_none() {
                r.notes.push(
                    "link_bw without link_latency: the link's hops are priced with no latency"
                        .into(),
                );
            }
            facts.tp_link = Some(RecordedLink {
                bandwidth_gbs: cluster_link_gbs(b),
                latency_ns: l.unwrap_or(0.0),
                source: format!(
                    "{} link_bw, link_latency ({b} GiB/s, ASTRA-sim's GB)",
                    path.display()
                ),
            })
        }
        (None, Some(_)) => r.notes.push("link_latency without link_bw: ignored".into()),
        (None, None) => r.notes.push(
            "no link recorded (link_bw, link_latency): tensor-parallel all-reduces are priced \
             over the GPU's datasheet link (NVLink or PCIe), a data-parallel group's expert \
             all-gather over the cluster default (link_bw 16 = 17.18 GB/s, 20 µs)"
                .into(),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(meta: Value, cluster: Option<Value>) -> Result<RunRecord, RunRecordError> {
        RunRecord::from_values(
            Path::new("meta.json"),
            &meta,
            cluster.as_ref().map(|_| Path::new("config.json")),
            cluster.as_ref(),
        )
    }

    #[test]
    fn whole_numbers_written_as_floats_are_read_and_a_missing_link_is_named() {
        let r = read(
            json!({"kv_cache": {"num_gpu_blocks": 2588.0, "block_size": 16.0},
                   "engine_kwargs": {"max_num_seqs": 128.0}}),
            Some(json!({"nodes": [{"instances": [{"hardware": "RTX4090", "tp_size": 1}]}]})),
        )
        .unwrap();
        assert_eq!(r.facts.num_gpu_blocks.as_ref().unwrap().value, 2588);
        assert_eq!(r.facts.max_num_seqs.as_ref().unwrap().value, 128);
        assert!(
            r.facts.notes.iter().any(|n| n.contains("no link recorded")),
            "{:?}",
            r.facts.notes
        );
        // Not a whole number: refused, not replaced by the default.
        let e = read(json!({"engine_kwargs": {"max_num_seqs": 128.5}}), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("engine_kwargs.max_num_seqs = 128.5, not a whole number"),
            "{e}"
        );
    }

    #[test]
    fn a_fact_of_the_wrong_type_is_refused_and_the_recorders_stand_in_is_a_note() {
        // Each would change the replay if replaced by vLLM's default; all are named at once.
        let e = read(
            json!({"engine_kwargs": {"pipeline_parallel_size": "2",
                                     "enable_prefix_caching": "false",
                                     "enforce_eager": "True"},
                   "kv_cache": {"num_gpu_blocks": -1}}),
            None,
        )
        .unwrap_err()
        .to_string();
        for part in [
            "engine_kwargs.pipeline_parallel_size = \"2\", not a whole number",
            "engine_kwargs.enable_prefix_caching = \"false\", not true or false",
            "engine_kwargs.enforce_eager = \"True\", not true or false",
            "kv_cache.num_gpu_blocks = -1, not a whole number",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        // A part of meta.json that is not an object.
        let e = read(
            json!({"resolved_config": "VllmConfig(model_config=...)"}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("resolved_config = \"VllmConfig(model_config=...)\", not a JSON object"),
            "{e}"
        );
        let e = read(
            json!({"resolved_config": {"scheduler_config": [1, 2]}}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("resolved_config.scheduler_config"), "{e}");
        // LLMServingSim's recorder writes a long list as a tag: the value was not written down.
        let r = read(
            json!({"resolved_config": {"compilation_config":
                {"cudagraph_capture_sizes": "<list len=80>"}}}),
            None,
        )
        .unwrap();
        assert!(r.facts.cudagraph_capture_sizes.is_none());
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("<list len=80>") && n.contains("not written down")),
            "{:?}",
            r.facts.notes
        );
    }

    #[test]
    fn cluster_config_keys_not_read_are_named_once() {
        let inst = json!({"model_name": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000",
                          "num_npus": 1, "tp_size": 1, "kv_loc": "cpu",
                          "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0}});
        let r = read(
            json!({"schema_version": 2}),
            Some(
                json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000, "foo_top": 1,
                        "nodes": [{"num_instances": 1, "cpu_mem": {"mem_size": 512},
                                   "instances": [inst]}]}),
            ),
        )
        .unwrap();
        let notes = &r.facts.notes;
        assert!(
            notes.iter().any(|n| n.contains(
                "keys not modelled (ignored): foo_top, nodes[].cpu_mem, instances[].kv_loc"
            )),
            "{notes:?}"
        );
        assert!(
            !notes.iter().any(|n| n.contains("mem_latency")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("schema_version = 2")),
            "{notes:?}"
        );
    }

    #[test]
    fn optimization_level_and_compilation_mode_decide_the_graphs_as_vllm_does() {
        let mode = |meta: Value| read(meta, None).map(|r| r.facts.cudagraph_mode.map(|m| m.value));
        // -O0: no compilation, no graphs; -O1: piecewise; the default level records nothing.
        assert_eq!(
            mode(json!({"engine_kwargs": {"optimization_level": 0}})).unwrap(),
            Some(CudaGraphMode::None)
        );
        assert_eq!(
            mode(json!({"engine_kwargs": {"optimization_level": "O1"}})).unwrap(),
            Some(CudaGraphMode::Piecewise)
        );
        assert_eq!(mode(json!({"engine_kwargs": {}})).unwrap(), None);
        // Asked piecewise graphs without vLLM's compilation: vLLM overrides them to NONE.
        let r = read(
            json!({"engine_kwargs": {"compilation_config":
                {"mode": 0, "cudagraph_mode": "FULL_AND_PIECEWISE"}}}),
            None,
        )
        .unwrap();
        assert_eq!(r.facts.cudagraph_mode.unwrap().value, CudaGraphMode::None);
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("as vLLM overrides it")),
            "{:?}",
            r.facts.notes
        );
        // Full graphs need no compilation: kept.
        assert_eq!(
            mode(json!({"engine_kwargs": {"compilation_config":
                {"mode": "NONE", "cudagraph_mode": "FULL"}}}))
            .unwrap(),
            Some(CudaGraphMode::Full)
        );
        // vLLM's own record cannot hold both.
        let e = mode(json!({"resolved_config": {"compilation_config":
            {"mode": 0, "cudagraph_mode": [2, 1]}}}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("contradicting facts"), "{e}");
        // A compilation mode other than vLLM's with no graph mode recorded: vLLM's default
        // (FULL_AND_PIECEWISE) is turned off, on either side of the record.
        for meta in [
            json!({"engine_kwargs": {"compilation_config": {"mode": "none"}}}),
            json!({"resolved_config": {"compilation_config": {"mode": 1},
                                       "optimization_level": 2}}),
        ] {
            assert_eq!(mode(meta).unwrap(), Some(CudaGraphMode::None));
        }
        // Not a level.
        let e = mode(json!({"engine_kwargs": {"optimization_level": 7}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an optimization level"), "{e}");
    }

    #[test]
    fn compilation_config_given_as_json_text_is_read() {
        let r = read(
            json!({"engine_kwargs": {"compilation_config": "{\"cudagraph_mode\": \"NONE\"}"}}),
            None,
        )
        .unwrap();
        assert_eq!(
            r.facts.cudagraph_mode.as_ref().unwrap().value,
            CudaGraphMode::None
        );
        let e = read(
            json!({"engine_kwargs": {"compilation_config": "mode=3"}}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("compilation_config = \"mode=3\", not a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn an_eager_engine_recorded_with_cuda_graphs_is_a_contradiction() {
        let e = read(
            json!({"resolved_config": {"model_config": {"enforce_eager": true},
                   "compilation_config": {"cudagraph_mode": [2, 1],
                                          "cudagraph_capture_sizes": [1, 2, 4]}}}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("contradicting facts") && e.contains("FULL_AND_PIECEWISE"),
            "{e}"
        );
        // A graph mode derived from the recorded optimization level is not vLLM's record of
        // one: no contradiction with a resolved eager engine.
        let r = read(
            json!({"resolved_config": {"model_config": {"enforce_eager": true},
                                       "optimization_level": 2}}),
            None,
        )
        .unwrap();
        assert!(r.facts.enforce_eager.unwrap().value);
        // As vLLM records an eager engine: accepted.
        let r = read(
            json!({"resolved_config": {"model_config": {"enforce_eager": true},
                   "compilation_config": {"cudagraph_mode": 0, "cudagraph_capture_sizes": []}}}),
            None,
        )
        .unwrap();
        assert!(r.facts.enforce_eager.unwrap().value);
    }

    #[test]
    fn kv_cache_memory_bytes_is_read_and_a_request_that_differs_is_said() {
        let r = read(
            json!({"kv_cache": {"kv_cache_memory_bytes": 4294967296_u64, "block_size": 16,
                                "enable_prefix_caching": true, "gpu_memory_utilization": 0.9},
                   "engine_kwargs": {"block_size": 32, "enable_prefix_caching": false,
                                     "gpu_memory_utilization": 0.8}}),
            None,
        )
        .unwrap();
        let f = &r.facts;
        assert_eq!(f.kv_cache_memory_bytes.as_ref().unwrap().value, 4 << 30);
        assert_eq!(f.block_size.as_ref().unwrap().value, 16);
        for asked in [
            "engine_kwargs.block_size = 32: using 16",
            "engine_kwargs.enable_prefix_caching = false: using true",
            "engine_kwargs.gpu_memory_utilization = 0.8: using 0.9",
        ] {
            assert!(
                f.notes.iter().any(|n| n.contains(asked)),
                "{asked}: {:?}",
                f.notes
            );
        }
        // 0 is unset, as vLLM reads it.
        let r = read(json!({"kv_cache": {"kv_cache_memory_bytes": 0}}), None).unwrap();
        assert!(r.facts.kv_cache_memory_bytes.is_none());
        assert!(
            r.facts.notes.iter().any(|n| n.contains("= 0: unset")),
            "{:?}",
            r.facts.notes
        );
        // With the blocks recorded too, the blocks are used, and that is said.
        let r = read(
            json!({"kv_cache": {"kv_cache_memory_bytes": 4294967296_u64, "num_gpu_blocks": 2000}}),
            None,
        )
        .unwrap();
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("the block count it recorded (2000")),
            "{:?}",
            r.facts.notes
        );
    }

    #[test]
    fn the_cluster_config_must_agree_with_itself_and_with_meta() {
        let inst = |model: &str, ep: Option<u64>| {
            let mut i = json!({"model_name": model, "hardware": "RTXPRO6000", "num_npus": 1,
                               "tp_size": 1, "dp_group": "A"});
            if let Some(ep) = ep {
                i["ep_size"] = json!(ep);
            }
            i
        };
        let cluster = |insts: Vec<Value>, num: usize| {
            json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
                   "nodes": [{"num_instances": num, "instances": insts}]})
        };
        let moe = "Qwen/Qwen3-30B-A3B";
        let meta = |ep: Option<bool>| {
            let mut ek = json!({"model": moe, "data_parallel_size": 2});
            if let Some(ep) = ep {
                ek["enable_expert_parallel"] = json!(ep);
            }
            json!({"engine_kwargs": ek})
        };
        let err = |m: Value, c: Value| read(m, Some(c)).unwrap_err().to_string();
        let two = |ep: Option<u64>| vec![inst(moe, ep), inst(moe, ep)];
        // As recorded: agrees.
        read(meta(Some(true)), Some(cluster(two(Some(2)), 2))).unwrap();
        read(meta(None), Some(cluster(two(Some(2)), 2))).unwrap();
        let e = err(meta(Some(true)), cluster(two(Some(2)), 3));
        assert!(
            e.contains("num_instances = 3") && e.contains("holds 2"),
            "{e}"
        );
        let mut c = cluster(two(Some(2)), 2);
        c["num_nodes"] = json!(2);
        assert!(err(meta(Some(true)), c).contains("num_nodes = 2"));
        let e = err(
            meta(Some(true)),
            cluster(vec![inst(moe, Some(2)), inst("Qwen/Qwen3-32B", Some(2))], 2),
        );
        assert!(
            e.contains("instance 1") && e.contains("Qwen/Qwen3-32B"),
            "{e}"
        );
        let e = err(meta(Some(false)), cluster(two(Some(2)), 2));
        assert!(
            e.contains("enable_expert_parallel = false") && e.contains("ep_size = 2"),
            "{e}"
        );
        let e = err(meta(Some(true)), cluster(two(None), 2));
        assert!(e.contains("enable_expert_parallel = true"), "{e}");
        let e = err(meta(Some(true)), cluster(two(Some(4)), 2));
        assert!(e.contains("ep_size = 4") && e.contains("2 GPU(s)"), "{e}");
        let e = err(meta(Some(true)), cluster(two(Some(0)), 2));
        assert!(e.contains("ep_size = 0"), "{e}");
        // Each instance is an engine of meta.json's TP degree.
        let mut m = meta(Some(true));
        m["engine_kwargs"]["tensor_parallel_size"] = json!(2);
        let e = err(m, cluster(two(Some(2)), 2));
        assert!(
            e.contains("tensor_parallel_size = 2") && e.contains("tp_size = 1"),
            "{e}"
        );
        // With EP on, vLLM's EP size is DP × TP: 1 of 2 GPUs is a contradiction.
        let e = err(meta(Some(true)), cluster(two(Some(1)), 2));
        assert!(
            e.contains("DP × TP = 2") && e.contains("ep_size = 1"),
            "{e}"
        );
        // What vLLM resolved wins over what was asked, said in a note.
        let mut m = meta(Some(true));
        m["resolved_config"] = json!({"parallel_config": {"enable_expert_parallel": false}});
        let r = read(m, Some(cluster(two(None), 2))).unwrap();
        assert!(!r.facts.enable_expert_parallel);
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("enable_expert_parallel")),
            "{:?}",
            r.facts.notes
        );
    }

    #[test]
    fn a_fleet_cluster_config_gives_the_gpu_its_instances_name() {
        let inst = json!({"hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1,
                          "dp_group": "A", "pd_type": null});
        let cluster = json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
            "nodes": [{"num_instances": 2, "instances": [inst.clone(), inst]}]});
        let r = read(json!({"engine_kwargs": {}}), Some(cluster.clone())).unwrap();
        let gpu = r.facts.gpu.as_ref().unwrap();
        assert_eq!(gpu.value.name, "rtx-pro-6000");
        assert!(gpu.source.contains("hardware"), "{}", gpu.source);
        let e = read(
            json!({"hardware": {"device_name": "NVIDIA H100 80GB HBM3"}}),
            Some(cluster),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("instance hardware `RTXPRO6000`"), "{e}");
    }

    #[test]
    fn a_recorded_data_parallel_size_must_be_the_cluster_configs() {
        let cluster = |groups: &[Option<&str>]| {
            let instances: Vec<Value> = groups
                .iter()
                .map(|g| {
                    json!({"hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1,
                                "dp_group": g, "pd_type": null})
                })
                .collect();
            json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
                   "nodes": [{"num_instances": instances.len(), "instances": instances}]})
        };
        let dp = |n: u64| json!({"engine_kwargs": {"data_parallel_size": n}});
        // The DP2 + EP run's layout, and ungrouped instances as separate servers or as the
        // ranks of one server (as the peer writes a dense model's).
        assert!(read(dp(2), Some(cluster(&[Some("A"), Some("A")]))).is_ok());
        assert!(read(dp(1), Some(cluster(&[None, None, None]))).is_ok());
        assert!(read(dp(3), Some(cluster(&[None, None, None]))).is_ok());
        for (n, groups, says) in [
            (4, vec![Some("A"), Some("A")], "dp_group `A` of 2"),
            (1, vec![Some("A"), Some("A")], "dp_group `A` of 2"),
            (
                2,
                vec![Some("A"), Some("A"), Some("A")],
                "dp_group `A` of 3",
            ),
            (2, vec![None, None, None], "3 instances without a dp_group"),
        ] {
            let e = read(dp(n), Some(cluster(&groups))).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "data_parallel_size = {n} but the cluster config describes"
                )) && e.contains(says),
                "{n} {groups:?}: {e}"
            );
        }
    }

    #[test]
    fn weight_offload_and_speculation_are_refused_wherever_recorded() {
        let refused = |meta: Value| read(meta, None).map(|_| ()).unwrap_err().to_string();
        // vLLM 0.19 writes the offload settings as a dataclass repr.
        let uva = |gb: &str| {
            json!({"resolved_config": {"offload_config": {
                "uva": format!("UVAOffloadConfig(cpu_offload_gb={gb}, cpu_offload_params=set())")
            }}})
        };
        assert!(read(uva("0.0"), None).is_ok());
        assert!(refused(uva("4.0")).contains("offloaded to CPU"));
        let e = refused(json!({"engine_kwargs": {"cpu_offload_gb": 8}}));
        assert!(e.contains("engine_kwargs.cpu_offload_gb = 8"), "{e}");
        assert!(read(json!({"engine_kwargs": {"cpu_offload_gb": 0}}), None).is_ok());
        let e = refused(json!({"engine_kwargs": {"speculative_config": {"method": "ngram"}}}));
        assert!(e.contains("speculative decoding is not modelled"), "{e}");
        // The engine argument of vLLM's CPU offloading connector, as its cache_config form.
        let e = refused(json!({"engine_kwargs": {"kv_offloading_size": 32}}));
        assert!(e.contains("engine_kwargs.kv_offloading_size = 32"), "{e}");
        // A step budget other than max_num_batched_tokens; the same one reads as it.
        let sched = |n: Value| {
            json!({"resolved_config": {"scheduler_config": {
                "max_num_batched_tokens": 2048, "max_num_scheduled_tokens": n}}})
        };
        assert!(refused(sched(json!(1024))).contains("max_num_scheduled_tokens = 1024"));
        assert!(read(sched(json!(2048)), None).is_ok());
        assert!(read(sched(Value::Null), None).is_ok());
        let e = refused(json!({"engine_kwargs": {"kv_transfer_config": {"kv_connector": "x"}}}));
        assert!(e.contains("KV connector"), "{e}");
        // A null speculative config is no speculation, and no unread key either.
        let r = read(json!({"engine_kwargs": {"speculative_config": null}}), None).unwrap();
        assert!(
            !r.facts.notes.iter().any(|n| n.contains("speculative")),
            "{:?}",
            r.facts.notes
        );
        // Only the whole key counts inside a repr.
        assert!(!repr_positive(
            "X(other_cpu_offload_gb=3)",
            "cpu_offload_gb"
        ));
        assert!(repr_positive(
            "X(a=1, cpu_offload_gb=2e0)",
            "cpu_offload_gb"
        ));
    }

    #[test]
    fn facts_that_change_the_model_or_its_cache_are_noted() {
        let notes = |meta: Value| read(meta, None).unwrap().facts.notes;
        let n = notes(json!({"resolved_config": {
            "model_config": {"hf_overrides": {"num_hidden_layers": 16}},
            "cache_config": {"sliding_window": 4096, "num_gpu_blocks": 2588,
                             "num_gpu_blocks_override": 1000}
        }}));
        for want in [
            "hf_overrides = {\"num_hidden_layers\":16}: the model's config.json is read without",
            "sliding_window = 4096: not read; the layers' windows come from the model config",
            "num_gpu_blocks_override = 1000 but meta.json resolved_config.cache_config.num_gpu_blocks = 2588",
        ] {
            assert!(n.iter().any(|x| x.contains(want)), "{want}: {n:?}");
        }
        // As vLLM 0.19 writes them when unset: nothing to say.
        let n = notes(json!({"resolved_config": {
            "model_config": {"hf_overrides": {}},
            "cache_config": {"sliding_window": null, "num_gpu_blocks": 2588,
                             "num_gpu_blocks_override": null}
        }}));
        assert!(n.is_empty(), "{n:?}");
    }

    /// Forward-pass settings no latency model represents are said where they differ from
    /// vLLM's defaults; a scheduler class of its own is refused, vLLM's own are accepted.
    #[test]
    fn unmodelled_forward_settings_are_said_and_a_custom_scheduler_refused() {
        let rc = |sched_cls: Value, dbo: bool, eplb: bool, cascade_off: bool| {
            json!({"resolved_config": {
                "scheduler_config": {"scheduler_cls": sched_cls},
                "parallel_config": {"enable_dbo": dbo, "enable_eplb": eplb},
                "model_config": {"disable_cascade_attn": cascade_off}
            }})
        };
        let n = read(rc(Value::Null, true, true, false), None)
            .unwrap()
            .facts
            .notes;
        for want in [
            "enable_dbo = true: dual-batch overlap is not modelled",
            "enable_eplb = true: the expert load balancer is not modelled",
            "disable_cascade_attn = false: cascade attention is not modelled",
        ] {
            assert!(n.iter().any(|x| x.contains(want)), "{want}: {n:?}");
        }
        let vllm_own = json!("vllm.v1.core.sched.async_scheduler.AsyncScheduler");
        let n = read(rc(vllm_own, false, false, true), None)
            .unwrap()
            .facts
            .notes;
        assert!(n.is_empty(), "{n:?}");
        let e = read(rc(json!("my.Scheduler"), false, false, true), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scheduler_cls = my.Scheduler"), "{e}");
    }

    #[test]
    fn torch_dtype_prefix_is_the_same_dtype() {
        // vLLM's resolved config writes torch's name, the engine arguments the plain one.
        let notes = |resolved: &str, asked: &str| {
            read(
                json!({
                    "engine_kwargs": {"dtype": asked},
                    "resolved_config": {"model_config": {"dtype": resolved}}
                }),
                None,
            )
            .unwrap()
            .facts
            .notes
        };
        let same = notes("torch.bfloat16", "bfloat16");
        assert!(!same.iter().any(|n| n.contains("dtype")), "{same:?}");
        let differ = notes("torch.float16", "bfloat16");
        assert!(
            differ.iter().any(|n| n.contains("= float16 but")),
            "{differ:?}"
        );
        let wide = notes("torch.float32", "float32");
        assert!(wide.iter().any(|n| n.contains("32-bit")), "{wide:?}");
    }

    #[test]
    fn resolved_wins_over_asked_and_kv_cache_must_agree() {
        let r = read(
            json!({
                "engine_kwargs": {"max_num_seqs": 128, "max_model_len": null},
                "kv_cache": {"num_gpu_blocks": 100, "block_size": 16, "num_kv_tokens": 1600},
                "resolved_config": {
                    "scheduler_config": {"max_num_seqs": 64, "async_scheduling": false},
                    "model_config": {"max_model_len": 131072},
                    "compilation_config": {"cudagraph_capture_sizes": [4, 1, 2],
                                           "cudagraph_mode": [2, 1]}
                }
            }),
            None,
        )
        .unwrap();
        let f = &r.facts;
        assert_eq!(f.max_num_seqs.as_ref().unwrap().value, 64);
        assert!(
            f.notes.iter().any(|n| n.contains("using 64")),
            "{:?}",
            f.notes
        );
        assert_eq!(f.max_model_len.as_ref().unwrap().value, 131072);
        assert_eq!(f.num_gpu_blocks.as_ref().unwrap().value, 100);
        assert!(!f.async_scheduling.as_ref().unwrap().value);
        assert_eq!(
            f.cudagraph_capture_sizes.as_ref().unwrap().value,
            vec![1, 2, 4]
        );
        assert_eq!(
            f.cudagraph_mode.as_ref().unwrap().value,
            CudaGraphMode::FullAndPiecewise
        );
        let e = read(
            json!({"kv_cache": {"block_size": 16},
                   "resolved_config": {"cache_config": {"block_size": 32}}}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("contradicting facts: block_size"), "{e}");
    }

    #[test]
    fn cluster_config_gives_gpu_memory_and_link() {
        let cluster = json!({
            "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
            "nodes": [{"num_instances": 1, "instances": [{
                "hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1, "pd_type": null,
                "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_util": 0.9}}]}]
        });
        let r = read(
            json!({"engine_kwargs": {"tensor_parallel_size": 1}}),
            Some(cluster.clone()),
        )
        .unwrap();
        let f = &r.facts;
        assert_eq!(f.gpu.as_ref().unwrap().value.name, "rtx-pro-6000");
        assert_eq!(f.device_memory_bytes.as_ref().unwrap().value, 96 << 30);
        let link = f.tp_link.as_ref().unwrap();
        // `link_bw` is ASTRA-sim's GB/s (2³⁰ B): 16 of them are 17.18 GB/s.
        assert_eq!(
            (link.bandwidth_gbs, link.latency_ns),
            (16.0 * 1.073_741_824, 20000.0)
        );
        // meta.json naming another GPU than the cluster config: a contradiction.
        let e = read(
            json!({"hardware": {"device_name": "NVIDIA H100 80GB HBM3"}}),
            Some(cluster.clone()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("instance hardware `RTXPRO6000`"), "{e}");
        // Two data-parallel ranks beside one instance: the format gives each rank its own.
        let e = read(
            json!({"engine_kwargs": {"data_parallel_size": 2}}),
            Some(cluster.clone()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "data_parallel_size = 2 but the cluster config describes one serving instance"
            ),
            "{e}"
        );
        assert!(read(
            json!({"engine_kwargs": {"data_parallel_size": 1}}),
            Some(cluster.clone())
        )
        .is_ok());
        // A link without its latency is priced without one, and says so; a negative one is
        // refused.
        let mut no_latency = cluster.clone();
        no_latency.as_object_mut().unwrap().remove("link_latency");
        let r = read(json!({"engine_kwargs": {}}), Some(no_latency)).unwrap();
        assert_eq!(r.facts.tp_link.as_ref().unwrap().latency_ns, 0.0);
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("link_bw without link_latency")),
            "{:?}",
            r.facts.notes
        );
        let mut negative = cluster;
        negative["link_latency"] = json!(-5);
        let e = read(json!({"engine_kwargs": {}}), Some(negative))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("link_latency -5: must be a latency from 0"),
            "{e}"
        );
    }

    /// A per-dimension link list: the TP all-reduce takes dimension 0 of the peer's topology
    /// (`[tp 2, 2 ranks]` here, its dual-node example), and a list of another length is
    /// refused as the peer refuses it.
    #[test]
    fn a_per_dimension_link_list_gives_the_tp_link_its_first_dimension() {
        let inst = json!({"hardware": "RTXPRO6000", "num_npus": 2, "tp_size": 2,
                          "ep_size": 4, "dp_group": "A", "pd_type": null});
        let cluster = |bw: Value| {
            json!({"num_nodes": 2, "link_bw": bw, "link_latency": [500, 20000],
                   "nodes": [{"num_instances": 1, "instances": [inst.clone()]},
                             {"num_instances": 1, "instances": [inst.clone()]}]})
        };
        let meta = json!({"engine_kwargs": {"tensor_parallel_size": 2,
                                            "data_parallel_size": 2,
                                            "enable_expert_parallel": true}});
        let r = read(meta.clone(), Some(cluster(json!([128, 16])))).unwrap();
        let link = r.facts.tp_link.as_ref().unwrap();
        assert_eq!(
            (link.bandwidth_gbs, link.latency_ns),
            (cluster_link_gbs(128.0), 500.0)
        );
        let e = read(meta, Some(cluster(json!([128]))))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("link_bw lists 1 value(s)") && e.contains("2 dimension"),
            "{e}"
        );
    }

    /// One instance's runtime fields fill what meta.json did not record, as the peer's
    /// `instance.get(field, args.field)`; beside a recorded value the record wins, said.
    #[test]
    fn a_single_instance_fills_the_runtime_fields_meta_json_lacks() {
        let cluster = json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
            "nodes": [{"num_instances": 1, "instances": [{
                "hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1, "pd_type": null,
                "max_num_seqs": 64, "block_size": 32, "enable_prefix_caching": false}]}]});
        let f = read(json!({"engine_kwargs": {}}), Some(cluster.clone()))
            .unwrap()
            .facts;
        assert_eq!(f.max_num_seqs.as_ref().unwrap().value, 64);
        assert_eq!(f.block_size.as_ref().unwrap().value, 32);
        assert!(!f.enable_prefix_caching.as_ref().unwrap().value);
        assert!(f.max_num_seqs.unwrap().source.contains("max_num_seqs"));
        let f = read(
            json!({"engine_kwargs": {"max_num_seqs": 128}}),
            Some(cluster),
        )
        .unwrap()
        .facts;
        assert_eq!(f.max_num_seqs.as_ref().unwrap().value, 128);
        assert!(
            f.notes
                .iter()
                .any(|n| n.contains("instance max_num_seqs = 64 but") && n.contains("= 128")),
            "{:?}",
            f.notes
        );
    }

    #[test]
    fn version_defaults() {
        assert_eq!(VllmDefaults::for_version(Some("0.17.0")).0.version, "0.17");
        assert!(VllmDefaults::for_version(Some("0.19.0")).1.is_none());
        let (d, note) = VllmDefaults::for_version(Some("0.8.5"));
        assert_eq!(d.version, "0.19");
        assert!(note.unwrap().contains("vLLM 0.8.5"));
        assert!(VllmDefaults::for_version(None).1.is_some());
        // Async scheduling is on by default from 0.14; the capture rule changed in 0.12.
        for (v, async_on, rule) in [
            ("0.10.1.1", false, CaptureRule::EveryEighth),
            ("0.11.0", false, CaptureRule::EveryEighth),
            ("0.12.0", false, CaptureRule::SixteenthsFrom256),
            ("0.13.0", false, CaptureRule::SixteenthsFrom256),
            ("0.14.1", true, CaptureRule::SixteenthsFrom256),
            ("v0.19.1.dev3+g1", true, CaptureRule::SixteenthsFrom256),
        ] {
            let (d, note) = VllmDefaults::for_version(Some(v));
            assert!(note.is_none(), "{v}");
            assert_eq!(
                (d.async_scheduling, d.capture_rule),
                (async_on, rule),
                "{v}"
            );
        }
        assert_eq!(VllmDefaults::for_version(Some("0.11.0")).0.version, "0.11");
        let (d, note) = VllmDefaults::for_version(Some("0.20.0"));
        assert!(d.async_scheduling && note.unwrap().contains("checked: 0.10 to 0.19"));
        let (_, note) = VllmDefaults::for_version(Some(" "));
        assert!(note.unwrap().contains("(version not recorded)"));
    }

    #[test]
    fn cudagraph_modes() {
        for (v, m) in [
            (json!(0), CudaGraphMode::None),
            (json!([2, 0]), CudaGraphMode::FullDecodeOnly),
            (json!("PIECEWISE"), CudaGraphMode::Piecewise),
        ] {
            assert_eq!(CudaGraphMode::from_value(&v), Some(m));
        }
        assert_eq!(CudaGraphMode::from_value(&json!([3])), None);
    }

    #[test]
    fn cuda_graph_arguments_asked_in_engine_kwargs_are_read() {
        let facts = |ek: Value| read(json!({ "engine_kwargs": ek }), None).unwrap().facts;
        // The sizes themselves, under each of vLLM's spellings.
        for ek in [
            json!({"cudagraph_capture_sizes": [8, 1, 4]}),
            json!({"compilation_config": {"cudagraph_capture_sizes": [8, 1, 4]}}),
            json!({"cuda_graph_sizes": [8, 1, 4]}),
        ] {
            let f = facts(ek.clone());
            assert_eq!(f.cudagraph_capture_sizes.unwrap().value, [1, 4, 8], "{ek}");
            assert!(f.max_cudagraph_capture_size.is_none(), "{ek}");
        }
        // Only the largest: 0.12's flag, or 0.10/0.11's one-element list.
        for ek in [
            json!({"max_cudagraph_capture_size": 64}),
            json!({"compilation_config": {"max_cudagraph_capture_size": 64}}),
            json!({"cuda_graph_sizes": [64]}),
        ] {
            let f = facts(ek.clone());
            assert!(f.cudagraph_capture_sizes.is_none(), "{ek}");
            assert_eq!(f.max_cudagraph_capture_size.unwrap().value, 64, "{ek}");
        }
        // The mode asked, and what vLLM resolved winning over what was asked.
        let f = facts(json!({"compilation_config": {"cudagraph_mode": "NONE"}}));
        assert_eq!(f.cudagraph_mode.unwrap().value, CudaGraphMode::None);
        let f = read(
            json!({"engine_kwargs": {"cudagraph_capture_sizes": [1, 2]},
                   "resolved_config": {"compilation_config": {"cudagraph_capture_sizes": [1, 2, 4]}}}),
            None,
        )
        .unwrap()
        .facts;
        assert_eq!(f.cudagraph_capture_sizes.unwrap().value, [1, 2, 4]);
        // Other compilation settings are named as not modelled.
        let r = read(
            json!({"engine_kwargs": {"compilation_config": {"level": 3, "cudagraph_mode": 0}}}),
            None,
        )
        .unwrap();
        assert!(
            r.facts
                .notes
                .iter()
                .any(|n| n.contains("engine_kwargs.compilation_config.level")),
            "{:?}",
            r.facts.notes
        );
    }
}
