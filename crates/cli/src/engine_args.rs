//! The engine flags shared by the subcommands, named as `vllm serve` names them, mapped to
//! [`EngineArgs`] (with a replayed run's facts under them) and resolved by
//! [`llm_emu_perf::resolve`], which holds vLLM's rules.

use anyhow::{anyhow, bail, Result};
use clap::{ArgAction, Args};
use llm_emu_core::cudagraph::CaptureRule;
use llm_emu_core::sampler::{HashSampler, TokenSampler};
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use llm_emu_fleet::{ClusterSpec, InstanceSpec, Topology};
use llm_emu_perf::gpu::{GpuSpec, DEFAULT_GPU};
use llm_emu_perf::latency::{LatencySpec, RecordedTpLink};
use llm_emu_perf::sizing::{same_weights_key, KvCacheDtype, ModelShape, OnlineQuantization};
use llm_emu_perf::{resolve, BatchContext, EngineArgs, ResolvedEngine, RunFacts};
use llm_emu_sim::run_record::{CudaGraphMode, PerformanceMode, Recorded, RunRecord, VllmDefaults};
use std::path::PathBuf;

#[derive(Args)]
pub struct EngineFlags {
    /// Step latency model: `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]` (µs),
    /// `profile:dir=PATH[,tp=N]` for real-GPU operator profiles (the layout of
    /// `../shared/data/real-runs/*/profile/`, composed for the model of `--model-config`), or
    /// `roofline[:gpu=NAME,tp=N,dtype=bf16|fp8,...]` for any model on any known GPU (gpu and
    /// tp default to `--gpu` and `--tensor-parallel-size`; see docs/roofline.md). Default: the
    /// built-in RTX PRO 6000 profile when the model is Llama-3.1-8B on that GPU at TP 1, else
    /// the roofline of the model on the `--gpu`.
    #[arg(long)]
    latency: Option<String>,
    /// A measured profile, its format detected: a directory with `meta.yaml` and `tp<N>/` tables
    /// (operator profile, as `--latency profile:dir=PATH`), a step-cycle pack JSON
    /// (`"profile_type": "serving_step_cycle_2d"`, as `--latency step-cycle:path=PATH`), Vidur's
    /// `mlp.csv` + `attention.csv` directory (`vidur:dir=PATH`) or aiconfigurator's
    /// `gemm_perf.txt` + attention tables (`aiconfigurator:dir=PATH`); see
    /// docs/operator-profiles-public.md.
    #[arg(long, conflicts_with = "latency")]
    profile: Option<PathBuf>,
    /// Hugging Face config.json of the model (overrides the shape `--model` names).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Model name (`meta-llama/Llama-3.1-8B`, `Qwen/Qwen3-30B-A3B`, ...) or a path to its
    /// config.json or directory: looked up in the local Hugging Face cache, then in the
    /// built-in table (default: meta-llama/Llama-3.1-8B).
    #[arg(long)]
    pub model: Option<String>,
    /// GPU model (`h100`, `h200`, `b200`, `a100-80gb`, `l40s`, `rtx-4090`, `rtx-pro-6000`, ...):
    /// sets the GPU memory and vLLM's batch defaults, and the roofline latency's hardware
    /// (default: rtx-pro-6000).
    #[arg(long)]
    gpu: Option<String>,
    /// GPU memory in GiB, for the KV cache size and vLLM's batch defaults (default: the
    /// `--gpu`'s memory, 96 for the default RTX PRO 6000).
    #[arg(long)]
    gpu_memory_gib: Option<f64>,
    /// Fraction of GPU memory vLLM may use (weights, activations, KV cache) [default: 0.9].
    #[arg(long)]
    gpu_memory_utilization: Option<f64>,
    /// Tensor-parallel ranks (divides weights and KV heads per rank; default 1).
    #[arg(long)]
    tensor_parallel_size: Option<u64>,
    /// KV blocks, replacing the count derived from GPU memory (the null block included).
    #[arg(long)]
    num_gpu_blocks_override: Option<u32>,
    /// KV-cache bytes per GPU, as vLLM's `--kv-cache-memory-bytes` (`8G` = 8 GiB, `8g` =
    /// 8·10⁹, as vLLM reads them): the blocks are these bytes over the block size, and
    /// `--gpu-memory-utilization` does not apply to them.
    #[arg(long, value_name = "BYTES")]
    kv_cache_memory_bytes: Option<String>,
    /// Maximum running requests (default: vLLM's rule for the GPU's memory).
    #[arg(long)]
    max_num_seqs: Option<usize>,
    /// Maximum tokens per step (default: vLLM's rule for the GPU's memory).
    #[arg(long)]
    max_num_batched_tokens: Option<usize>,
    /// Context length, prompt plus output (default: the model's).
    #[arg(long)]
    max_model_len: Option<usize>,
    /// Tokens per KV block [default: 16].
    #[arg(long)]
    block_size: Option<usize>,
    /// Quantize an unquantized checkpoint at load, as vLLM's `--quantization`: `fp8` (weights
    /// at one byte in the KV sizing, FP8 tensor cores in the roofline).
    #[arg(long)]
    quantization: Option<String>,
    /// KV cache element type, as vLLM's `--kv-cache-dtype`: `auto` (the model's), `bfloat16`,
    /// `fp8`, `fp8_e4m3`, `fp8_e5m2` (one byte: twice the blocks) [default: auto, or what a
    /// replayed run recorded].
    #[arg(long)]
    kv_cache_dtype: Option<String>,
    /// Prefix caching (on by default).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enable_prefix_caching")]
    enable_prefix_caching: bool,
    /// Turn prefix caching off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_enable_prefix_caching: bool,
    /// Chunked prefill (on by default).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enable_chunked_prefill")]
    enable_chunked_prefill: bool,
    /// Turn chunked prefill off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_enable_chunked_prefill: bool,
    /// Cap on one request's tokens per step; 0 = none [default: 0].
    #[arg(long)]
    long_prefill_token_threshold: Option<usize>,
    /// `fcfs` or `priority` (lower `priority` first), vLLM's; or, not vLLM's: `sjf` (shortest
    /// prompt first), `lwf` (longest waiting first, priorities aged 1 level/s), `fair` (round-robin
    /// over tenants, the `user` field) [default: fcfs].
    #[arg(long)]
    scheduling_policy: Option<String>,
    /// Async scheduling (on by default): the next step is scheduled while the current one runs.
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_async_scheduling")]
    async_scheduling: bool,
    /// Turn async scheduling off.
    #[arg(long, action = ArgAction::SetTrue)]
    no_async_scheduling: bool,
    /// Run without CUDA graphs, as vLLM's `--enforce-eager`: steps are not padded to the
    /// captured batch sizes (latency models that price padding then price the exact tokens).
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "no_enforce_eager")]
    enforce_eager: bool,
    /// Use CUDA graphs (the default).
    #[arg(long, action = ArgAction::SetTrue)]
    no_enforce_eager: bool,
    /// Seed of the synthetic workload and of synthetic prompt tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// How many engines `simulate` runs and how requests reach them, as `vllm serve` names the
/// data-parallel flags and as llm-d and Dynamo name routers (docs/fleet.md).
#[derive(Args, Clone)]
pub struct FleetFlags {
    /// Data-parallel ranks (vLLM's `--data-parallel-size`): that many engine cores, each with
    /// its own scheduler and KV cache, requests placed by vLLM's load balancer.
    #[arg(long, default_value_t = 1)]
    pub data_parallel_size: usize,
    /// API servers in front of the DP ranks (vLLM's `--api-server-count`; default: the DP
    /// size, as vLLM 0.19 does). Each keeps its own copy of the balancer's counts.
    #[arg(long)]
    pub api_server_count: Option<usize>,
    /// Expert parallelism over the DP ranks (vLLM's `--enable-expert-parallel`, MoE models
    /// only): EP size = DP × TP, experts split over the ranks, which step in lockstep with the
    /// expert all-to-all between them.
    #[arg(long, action = ArgAction::SetTrue)]
    pub enable_expert_parallel: bool,
    /// Independent replicas of the engine behind a router.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// How requests are routed among replicas: `round-robin` (default), `least-loaded`,
    /// `prefix-aware` or `session`.
    #[arg(long)]
    pub router: Option<String>,
    /// The fleet as LLMServingSim's cluster config describes it (`nodes[].instances[]`, each
    /// with its own model, GPU, TP, role and DP group; docs/fleet.md). Replaces the other fleet
    /// flags; the engine flags fill what an instance does not say.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data_parallel_size", "replicas"])]
    pub cluster: Option<PathBuf>,
    /// vLLM's `--pipeline-parallel-size`: only 1, since pipeline parallelism is not modelled
    /// (any other value is refused with the reason, docs/fleet.md).
    #[arg(long, value_name = "N")]
    pub pipeline_parallel_size: Option<usize>,

    /// Set by a replay: `enable_expert_parallel` came from the run's record, not the command
    /// line (on a dense model vLLM then runs as if it were off).
    #[arg(skip)]
    pub expert_parallel_recorded: bool,
}

/// The fleet the flags describe.
#[derive(Clone, Debug, PartialEq)]
pub enum FleetPlan {
    /// One engine.
    Single,
    DataParallel {
        size: usize,
        api_servers: usize,
    },
    Replicas {
        count: usize,
        router: String,
    },
    /// DP ranks in expert-parallel lockstep (`--enable-expert-parallel`); `ep` = DP × TP.
    ExpertParallel {
        size: usize,
        api_servers: usize,
        ep: u64,
    },
    /// Replicas of a data-parallel engine (`--replicas M --data-parallel-size N`): `count`
    /// groups of `size` ranks behind `router`, which sees every rank; `ep` > 1: each group in
    /// expert-parallel lockstep (`ep` = DP × TP).
    ReplicatedDp {
        count: usize,
        size: usize,
        api_servers: usize,
        router: String,
        ep: u64,
    },
    /// A cluster config's instances (`--cluster FILE`), routed by `router` where they are
    /// replicas or decode instances.
    Cluster {
        spec: Box<ClusterSpec>,
        router: String,
    },
}

impl FleetPlan {
    /// The fleet's shape, for the `engine` object of a JSON report: `engines` (every engine
    /// core) and, where the plan says them, the data-parallel size, the expert-parallel size
    /// and the replicas (a cluster config's instances name their own).
    pub fn shape_json(&self, engines: usize) -> serde_json::Map<String, serde_json::Value> {
        let (dp, ep, replicas) = match self {
            FleetPlan::Single => (Some(1), Some(1), Some(1)),
            FleetPlan::DataParallel { size, .. } => (Some(*size), Some(1), Some(1)),
            FleetPlan::Replicas { count, .. } => (Some(1), Some(1), Some(*count)),
            FleetPlan::ExpertParallel { size, ep, .. } => {
                (Some(*size), Some(*ep as usize), Some(1))
            }
            FleetPlan::ReplicatedDp {
                count, size, ep, ..
            } => (Some(*size), Some(*ep as usize), Some(*count)),
            FleetPlan::Cluster { spec, .. } => match &spec.topology {
                Topology::Single => (Some(1), Some(1), Some(1)),
                Topology::Replicas => (Some(1), Some(1), Some(spec.instances.len())),
                Topology::DataParallel { ep, .. } => {
                    (Some(spec.instances.len()), Some(*ep as usize), Some(1))
                }
                // Groups may differ, and a prefill/decode split has two sides: the counts are
                // the cluster config's own.
                Topology::DataParallelGroups { .. } | Topology::Disaggregated { .. } => {
                    (None, None, None)
                }
            },
        };
        let mut m = serde_json::Map::new();
        m.insert("engines".into(), engines.into());
        for (k, v) in [
            ("data_parallel_size", dp),
            ("expert_parallel_size", ep),
            ("replicas", replicas),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        m
    }
}

impl FleetFlags {
    /// Checks the flags against each other, the TP degree and the GPUs a replayed run
    /// recorded (`(count, where it was recorded)`), and says what fleet they describe.
    pub fn plan(&self, tp: u64, gpus: Option<(u64, &str)>) -> Result<FleetPlan> {
        if self.data_parallel_size == 0 {
            bail!("--data-parallel-size must be at least 1");
        }
        if self.replicas == 0 {
            bail!("--replicas must be at least 1");
        }
        if self.api_server_count == Some(0) {
            bail!("--api-server-count must be at least 1");
        }
        match self.pipeline_parallel_size {
            Some(0) => bail!("--pipeline-parallel-size must be at least 1"),
            Some(pp) if pp > 1 => bail!(
                "--pipeline-parallel-size {pp}: {}",
                llm_emu_fleet::cluster::PP_NOT_MODELLED
            ),
            _ => {}
        }
        if let Some(r) = &self.router {
            llm_emu_fleet::router_by_name(r).map_err(|e| anyhow::anyhow!("--router: {e}"))?;
        }
        if let Some(path) = &self.cluster {
            let spec = ClusterSpec::load(path)?;
            let npus: u64 = spec.instances.iter().map(|i| i.num_npus).sum();
            if let Some((count, source)) = gpus {
                if npus > count {
                    bail!(
                        "{}: the instances' num_npus add up to {npus} GPUs, but the run has \
                         {count} ({source})",
                        path.display()
                    );
                }
            }
            return Ok(FleetPlan::Cluster {
                spec: Box::new(spec),
                router: self.router.clone().unwrap_or_else(|| "round-robin".into()),
            });
        }
        let engines = (self.data_parallel_size * self.replicas) as u64;
        if let Some((count, source)) = gpus {
            if engines * tp.max(1) > count {
                bail!(
                    "--data-parallel-size {} x --replicas {} x --tensor-parallel-size {tp} needs \
                     {} GPUs, but the run has {count} ({source})",
                    self.data_parallel_size,
                    self.replicas,
                    engines * tp.max(1)
                );
            }
        }
        let api_servers = self.api_server_count.unwrap_or(self.data_parallel_size);
        let router = || self.router.clone().unwrap_or_else(|| "round-robin".into());
        // vLLM's EP size is DP × TP (`FusedMoEParallelConfig.make`); at 1 GPU the flag changes
        // nothing (`use_ep` needs more than one).
        let ep = match self.data_parallel_size as u64 * tp.max(1) {
            n if self.enable_expert_parallel && n > 1 => n,
            _ => 1,
        };
        if self.replicas > 1 && (self.data_parallel_size > 1 || ep > 1) {
            return Ok(FleetPlan::ReplicatedDp {
                count: self.replicas,
                size: self.data_parallel_size,
                api_servers,
                router: router(),
                ep,
            });
        }
        Ok(if ep > 1 {
            FleetPlan::ExpertParallel {
                size: self.data_parallel_size,
                api_servers,
                ep,
            }
        } else if self.data_parallel_size > 1 {
            FleetPlan::DataParallel {
                size: self.data_parallel_size,
                api_servers,
            }
        } else if self.replicas > 1 {
            FleetPlan::Replicas {
                count: self.replicas,
                router: router(),
            }
        } else {
            FleetPlan::Single
        })
    }
}

/// One cluster instance's runtime fields against a replayed run's record: what the run
/// recorded (or a flag given over it) wins, the instance fills what the run left out, and a
/// difference is said.
struct InstanceOverride<'a> {
    inst: &'a InstanceSpec,
    say: &'a mut dyn FnMut(String),
}

impl InstanceOverride<'_> {
    /// The value of the instance's `field`: `current` (the flags over the record) where the
    /// run recorded the fact, else the instance's, else `current`.
    fn pick<T: PartialEq + std::fmt::Display + Copy>(
        &mut self,
        field: &str,
        instance: Option<T>,
        current: Option<T>,
        recorded: Option<&Recorded<T>>,
    ) -> Option<T> {
        match (instance, recorded) {
            (Some(i), Some(r)) => {
                if i != r.value {
                    (self.say)(format!(
                        "note: cluster config `{}` = {i} but {} = {}: using the latter",
                        self.inst.field_path(field),
                        r.source,
                        r.value
                    ));
                }
                current
            }
            (_, Some(_)) => current,
            (i, None) => i.or(current),
        }
    }
}

impl EngineFlags {
    /// The flags given that a cluster config's instances also say (`Prepared::for_instance`
    /// takes the instance's): a replayed fleet honours them only when built from `meta.json`.
    pub fn instance_flags_given(&self) -> Result<Vec<&'static str>> {
        let a = self.to_args()?;
        Ok([
            ("--model", a.model.is_some()),
            ("--model-config", a.model_config.is_some()),
            ("--gpu", a.gpu.is_some()),
            ("--gpu-memory-gib", a.gpu_memory_gib.is_some()),
            (
                "--gpu-memory-utilization",
                a.gpu_memory_utilization.is_some(),
            ),
            ("--tensor-parallel-size", a.tensor_parallel_size.is_some()),
            ("--max-num-seqs", a.max_num_seqs.is_some()),
            (
                "--max-num-batched-tokens",
                a.max_num_batched_tokens.is_some(),
            ),
            (
                "--long-prefill-token-threshold",
                a.long_prefill_token_threshold.is_some(),
            ),
            ("--block-size", a.block_size.is_some()),
            (
                "--enable-chunked-prefill",
                a.enable_chunked_prefill.is_some(),
            ),
            ("--enable-prefix-caching", a.enable_prefix_caching.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect())
    }

    /// The engine arguments the flags give (`None` where a flag is absent). The two typed
    /// values are parsed here rather than by clap so that their errors read as the engine's.
    pub fn to_args(&self) -> Result<EngineArgs> {
        Ok(EngineArgs {
            model: self.model.clone(),
            model_config: self.model_config.clone(),
            gpu: self.gpu.clone(),
            gpu_memory_gib: self.gpu_memory_gib,
            gpu_memory_utilization: self.gpu_memory_utilization,
            tensor_parallel_size: self.tensor_parallel_size,
            expert_shards: None,
            num_gpu_blocks_override: self.num_gpu_blocks_override,
            kv_cache_memory_bytes: self
                .kv_cache_memory_bytes
                .as_deref()
                .map(|t| {
                    human_readable_int(t).ok_or_else(|| {
                        anyhow!(
                            "--kv-cache-memory-bytes {t:?}: a whole number of bytes, or one with \
                             k/m/g/t (powers of 1000) or K/M/G/T (powers of 1024) as vLLM reads it"
                        )
                    })
                })
                .transpose()?,
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            max_model_len: self.max_model_len,
            block_size: self.block_size,
            quantization: self.quantization.as_deref().map(str::parse).transpose()?,
            kv_cache_dtype: self.kv_cache_dtype.as_deref().map(str::parse).transpose()?,
            enable_prefix_caching: given_switch(
                self.enable_prefix_caching,
                self.no_enable_prefix_caching,
            ),
            enable_chunked_prefill: given_switch(
                self.enable_chunked_prefill,
                self.no_enable_chunked_prefill,
            ),
            long_prefill_token_threshold: self.long_prefill_token_threshold,
            max_num_partial_prefills: None,
            scheduling_policy: self
                .scheduling_policy
                .as_deref()
                .map(str::parse::<SchedulingPolicy>)
                .transpose()?,
            async_scheduling: given_switch(self.async_scheduling, self.no_async_scheduling),
            enforce_eager: given_switch(self.enforce_eager, self.no_enforce_eager),
            scheduler_reserve_full_isl: None,
            cudagraph_capture_sizes: None,
            latency: self
                .latency
                .as_deref()
                .map(str::parse::<LatencySpec>)
                .transpose()?,
            profile: self.profile.clone(),
            seed: self.seed,
            run: RunFacts::default(),
        })
    }

    /// Takes `name` as `--model` when neither `--model` nor `--model-config` is given.
    pub fn default_model(&mut self, name: Option<&str>) {
        if self.model.is_none() && self.model_config.is_none() {
            self.model = name.map(str::to_string);
        }
    }
}

/// A switch flag pair as an optional value: `Some` when either flag is given.
fn given_switch(on: bool, off: bool) -> Option<bool> {
    (on || off).then_some(!off)
}

/// The engine of a run: its arguments, the model's shape and what vLLM's rules make of them.
pub struct Prepared {
    pub args: EngineArgs,
    pub shape: ModelShape,
    pub resolved: ResolvedEngine,
}

impl Prepared {
    /// The flags, under them the facts of `record` when replaying a run (each substitution
    /// said on stderr), resolved by vLLM's rules; the rules' notes go to stderr.
    pub fn new(flags: &EngineFlags, record: Option<&RunRecord>) -> Result<Prepared> {
        Prepared::from_args(Prepared::args_of(flags, record)?, record.is_some())
    }

    /// The flags, under them the facts of `record` (each substitution said on stderr).
    pub fn args_of(flags: &EngineFlags, record: Option<&RunRecord>) -> Result<EngineArgs> {
        let mut args = flags.to_args()?;
        if let Some(rec) = record {
            replay(&mut args, rec, None, &mut |line| eprintln!("{line}"))?;
        }
        Ok(args)
    }

    /// `args` resolved by vLLM's rules (`replaying`: a recorded run's engine); the rules'
    /// notes go to stderr.
    pub fn from_args(args: EngineArgs, replaying: bool) -> Result<Prepared> {
        let shape = args.model_shape()?;
        Prepared::resolve(args, shape, replaying, &mut |line| eprintln!("{line}"))
    }

    /// One instance of a cluster config: the flags (and a replayed run's facts) under what
    /// the instance says — its model, GPU, GPU memory, TP degree and runtime overrides, as
    /// the peer's `instance.get(field, args.field)` does. `ep` is the expert-parallel degree
    /// its experts are split over (1: none) and `group_size` its data-parallel group's ranks
    /// (1: none), whose GPUs a MoE model's experts are spread over; an unknown model or GPU,
    /// or EP on a dense model, is refused naming the instance's field.
    pub fn for_instance(
        flags: &EngineFlags,
        record: Option<&RunRecord>,
        inst: &InstanceSpec,
        (ep, group_size): (u64, usize),
        say: &mut dyn FnMut(String),
    ) -> Result<Prepared> {
        let mut args = flags.to_args()?;
        if let Some(rec) = record {
            replay(&mut args, rec, Some(inst), say)?;
        }
        args.model = Some(inst.model_name.clone());
        args.model_config = None;
        let labelled = GpuSpec::lookup(&inst.hardware).map_err(|e| {
            anyhow::anyhow!("cluster config: `{}`: {e}", inst.field_path("hardware"))
        })?;
        // A family label (`RTXPRO6000`) beside the run's driver name of one of its variants:
        // the driver's, more specific, as `run_record` said.
        let gpu = match record.and_then(|r| r.facts.gpu.as_ref()) {
            Some(g) if g.value.is_variant_of(&inst.hardware, labelled) => g.value,
            _ => labelled,
        };
        // A replayed run's instance memory far from its GPU's is a contradiction, as for one
        // instance (`run_record`); `simulate --cluster` takes it as a what-if.
        if let (Some(_), Some(gb)) = (record, inst.mem_size_gb) {
            if !gpu.holds_about(gb) {
                bail!(
                    "cluster config: `{}` = {gb} GiB, but the run's GPU ({}) holds {} GiB",
                    inst.field_path("npu_mem.mem_size"),
                    gpu.device_name,
                    gpu.memory_gib
                );
            }
        }
        args.gpu = Some(gpu.name.to_string());
        args.tensor_parallel_size = Some(inst.tp_size);
        args.expert_shards = Some(group_size as u64 * inst.tp_size);
        // What the run recorded wins over the instance's runtime fields, which fill only what
        // it left out; a difference is said (as for a single instance, `run_record`).
        let facts = record.map(|r| &r.facts);
        let mut over = InstanceOverride {
            inst,
            say: &mut *say,
        };
        // In GiB to 0.1, as an instance's `mem_size` is written.
        let memory = facts
            .and_then(|f| f.device_memory_bytes.as_ref())
            .map(|m| Recorded {
                value: (m.value as f64 / (1u64 << 30) as f64 * 10.0).round() / 10.0,
                source: format!("{} (in GiB)", m.source),
            });
        args.gpu_memory_gib = over.pick(
            "npu_mem.mem_size",
            inst.mem_size_gb,
            args.gpu_memory_gib,
            memory.as_ref(),
        );
        args.gpu_memory_utilization = over.pick(
            "npu_mem.mem_util",
            inst.mem_util,
            args.gpu_memory_utilization,
            facts.and_then(|f| f.gpu_memory_utilization.as_ref()),
        );
        // The runtime fields an instance, the engine arguments and the record name alike.
        macro_rules! same_named {
            ($($field:ident),+) => {$(
                args.$field = over.pick(
                    stringify!($field),
                    inst.$field,
                    args.$field,
                    facts.and_then(|f| f.$field.as_ref()),
                );
            )+};
        }
        same_named!(
            max_num_seqs,
            max_num_batched_tokens,
            long_prefill_token_threshold,
            block_size,
            enable_chunked_prefill,
            enable_prefix_caching
        );
        let shape = args.model_shape().map_err(|e| {
            anyhow::anyhow!(
                "cluster config: `{}` = {}: {e}",
                inst.field_path("model_name"),
                inst.model_name
            )
        })?;
        let mut prepared = Prepared::resolve(args, shape, false, say)
            .map_err(|e| anyhow::anyhow!("cluster config: {}: {e:#}", inst.field))?;
        prepared.with_expert_parallel(ep).map_err(|e| {
            anyhow::anyhow!("cluster config: `{}`: {e:#}", inst.field_path("ep_size"))
        })?;
        Ok(prepared)
    }

    /// Resolves `args` for the model of `shape` (notes through `say`); `replaying`: the engine of a
    /// recorded run, which no non-vLLM policy can have run.
    fn resolve(
        args: EngineArgs,
        shape: ModelShape,
        replaying: bool,
        say: &mut dyn FnMut(String),
    ) -> Result<Prepared> {
        let gpu = args.gpu_spec()?;
        let resolved = resolve(&args, &shape, gpu)?;
        for n in &resolved.notices {
            say(n.to_string());
        }
        let policy = resolved.config.scheduling_policy;
        if !policy.is_vllm() {
            say(format!(
                "note: --scheduling-policy {}: vLLM has no such policy; results show what it \
                 would do, not what vLLM does{}",
                policy.label(),
                if replaying {
                    " (the recorded run cannot have used it)"
                } else {
                    ""
                }
            ));
        }
        Ok(Prepared {
            args,
            shape,
            resolved,
        })
    }

    /// Splits the model's experts over `ep` expert-parallel ranks (vLLM's
    /// `--enable-expert-parallel`: EP size = DP × TP): an operator profile or the roofline then
    /// prices `experts / ep` experts per rank (their `ep=` parameter, unless given). Refused on a dense
    /// model. `ep` 1 changes nothing.
    pub fn with_expert_parallel(&mut self, ep: u64) -> Result<()> {
        if ep <= 1 {
            return Ok(());
        }
        let Some(moe) = &self.shape.moe else {
            bail!(
                "expert parallelism of size {ep} on a dense model ({}): it has no experts",
                self.args.model.as_deref().unwrap_or("the model")
            );
        };
        if !moe.num_experts.is_multiple_of(ep) {
            bail!(
                "expert parallelism of size {ep}: the model's {} experts do not split evenly",
                moe.num_experts
            );
        }
        match &mut self.resolved.latency {
            llm_emu_perf::latency::LatencySpec::Profile { ep: e @ None, .. } => {
                *e = Some(u32::try_from(ep)?)
            }
            llm_emu_perf::latency::LatencySpec::Roofline { ep: e @ None, .. } => *e = Some(ep),
            _ => {}
        }
        Ok(())
    }

    /// Makes the engine a rank of a data-parallel group of `size` ranks without expert
    /// parallelism: on a mixture-of-experts model vLLM 0.19 splits each expert's width over
    /// DP × TP GPUs and runs the MoE layers on the group's gathered batch, which the `profile`
    /// and `roofline` latency models then price (docs/fleet.md). A dense model, or `size` 1,
    /// changes nothing.
    pub fn with_moe_data_parallel(&mut self, size: usize) {
        if size > 1 && self.shape.moe.is_some() {
            self.resolved.hardware.moe_data_parallel = Some(size as u64);
        }
    }

    /// Whether the engine's model is a mixture of experts.
    pub fn is_moe(&self) -> bool {
        self.shape.moe.is_some()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.resolved.config
    }

    /// The engine with the resolved latency model and the given token sampler.
    /// The engine with the resolved latency model and synthetic tokens; also the model's
    /// description.
    pub fn build_engine(&self) -> Result<(Engine, String)> {
        self.build_engine_with(Box::new(HashSampler::default()))
    }

    pub fn build_engine_with(&self, sampler: Box<dyn TokenSampler>) -> Result<(Engine, String)> {
        let (latency, notices) = self.resolved.build_latency(&self.shape)?;
        for n in &notices {
            eprintln!("{n}");
        }
        let desc = latency.describe();
        Ok((
            Engine::new(self.resolved.config.clone(), latency, sampler)?,
            desc,
        ))
    }

    /// The engine as configured, for reports: the [`EngineConfig`] fields plus the GPU, its
    /// memory, the TP degree and the latency model.
    pub fn engine_json(&self, latency: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = match serde_json::to_value(&self.resolved.config)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        // The capture sizes the engine runs with, also where vLLM's rule gives them.
        m.insert(
            "cudagraph_capture_sizes".into(),
            serde_json::to_value(self.resolved.config.cuda_graph_sizes().sizes())?,
        );
        m.insert("gpu".into(), self.args.gpu_spec()?.name.into());
        m.insert(
            "tensor_parallel_size".into(),
            self.args.tensor_parallel_size.unwrap_or(1).into(),
        );
        m.insert("latency".into(), latency.into());
        // What the emulated model is: its name, or the config.json it was read from, and the
        // weight and KV formats given or replayed (absent: the checkpoint's own).
        let model = match (&self.args.model, &self.args.model_config) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(path)) => Some(path.display().to_string()),
            (None, None) => None,
        };
        if let Some(model) = model {
            m.insert("model".into(), model.into());
        }
        if let Some(q) = self.args.quantization {
            let name = match q {
                OnlineQuantization::Fp8 => "fp8",
            };
            m.insert("quantization".into(), name.into());
        }
        let kv = self
            .args
            .kv_cache_dtype
            .map(|d| kv_dtype_label(d).to_string())
            .or_else(|| self.args.run.kv_cache_dtype.clone());
        if let Some(kv) = kv {
            m.insert("kv_cache_dtype".into(), kv.into());
        }
        m.insert(
            "scheduling_policy".into(),
            self.resolved.config.scheduling_policy.label().into(),
        );
        Ok(m)
    }
}

/// Names a flag that replaces a recorded fact, when the two differ.
fn overridden<T: std::fmt::Display + PartialEq>(
    out: &mut Vec<String>,
    flag: &str,
    given: Option<&T>,
    recorded: Option<&Recorded<T>>,
) {
    if let (Some(g), Some(r)) = (given, recorded) {
        if *g != r.value {
            out.push(format!("{flag} {g} (recorded {}: {})", r.value, r.source));
        }
    }
}

/// Applies the facts a real run recorded (`validate`, `simulate --like`): each fills the
/// argument the command line left unset, vLLM's defaults of the run's version fill what it did
/// not record, and each substitution is said through `say` (one line for the flags that
/// replace recorded facts, one for the defaults used, one per recorded fact not modelled):
/// stderr, and once per fleet when every instance replays the same run. `instance`: the
/// cluster instance the engine is built for, whose runtime fields fill what the run did not
/// record (so they are not vLLM defaults).
pub fn replay(
    a: &mut EngineArgs,
    rec: &RunRecord,
    instance: Option<&InstanceSpec>,
    say: &mut dyn FnMut(String),
) -> Result<()> {
    let f = &rec.facts;
    let instance_sets = |field: fn(&InstanceSpec) -> bool| instance.is_some_and(field);
    for n in &f.notes {
        say(format!("note: {n}"));
    }
    let (vd, version_note) = VllmDefaults::for_version(f.vllm_version.as_deref());
    if let Some(n) = version_note {
        say(format!("note: {n}"));
    }
    let mode = f.performance_mode.as_ref().map(|m| m.value);
    let capture_rule = match (vd.capture_rule, mode) {
        (CaptureRule::SixteenthsFrom256, Some(PerformanceMode::Interactivity)) => {
            CaptureRule::Interactivity
        }
        (rule, _) => rule,
    };
    let mut over = Vec::new();
    let mut defaulted = Vec::new();

    // GPU and its memory. A device name llm-emu does not know needs --gpu to say which GPU to
    // emulate in its place.
    if let Some(u) = &f.unknown_gpu {
        let known = GpuSpec::lookup(&u.value)
            .err()
            .map(|e| e.known)
            .unwrap_or_default();
        match (&a.gpu, &f.gpu) {
            (None, None) => bail!(
                "{} `{}` is not a GPU llm-emu knows (known: {known}); pass --gpu NAME to say \
                 which to emulate in its place",
                u.source,
                u.value
            ),
            (Some(name), _) => say(format!(
                "note: {} `{}` is not a GPU llm-emu knows: emulated as --gpu {name}",
                u.source, u.value
            )),
            (None, Some(g)) => say(format!(
                "note: {} `{}` is not a GPU llm-emu knows: emulated as {} ({})",
                u.source, u.value, g.value.name, g.source
            )),
        }
    }
    match (&a.gpu, &f.gpu) {
        (None, Some(g)) => a.gpu = Some(g.value.name.to_string()),
        (Some(name), Some(g)) => {
            if GpuSpec::lookup(name)?.name != g.value.name {
                over.push(format!(
                    "--gpu {name} (recorded {}: {})",
                    g.value.device_name, g.source
                ));
            }
        }
        (None, None) => say(format!(
            "note: the run records no GPU (no meta.json hardware.device_name, no cluster \
             config): emulating the {DEFAULT_GPU} (pass --gpu NAME)"
        )),
        (Some(_), None) => {}
    }
    let recorded_gib = f
        .device_memory_bytes
        .as_ref()
        .map(|m| m.value as f64 / (1u64 << 30) as f64);
    if let (Some(g), Some(r), Some(m)) = (a.gpu_memory_gib, recorded_gib, &f.device_memory_bytes) {
        if (g - r).abs() > 1e-6 {
            over.push(format!(
                "--gpu-memory-gib {g} (recorded {r:.2} GiB: {})",
                m.source
            ));
        }
    }
    // A --gpu other than the recorded one brings its own memory.
    let recorded_gib = if over.iter().any(|o| o.starts_with("--gpu ")) {
        None
    } else {
        recorded_gib
    };

    overridden(&mut over, "--model", a.model.as_ref(), f.model.as_ref());
    if let (None, Some(path), Some(m)) = (&a.model, &a.model_config, &f.model) {
        over.push(format!(
            "--model-config {} (recorded {}: {})",
            path.display(),
            m.value,
            m.source
        ));
    }
    if a.model.is_none() && a.model_config.is_none() {
        a.model = f.model.as_ref().map(|m| m.value.clone());
    }
    overridden(
        &mut over,
        "--tensor-parallel-size",
        a.tensor_parallel_size.as_ref(),
        f.tensor_parallel_size.as_ref(),
    );
    a.tensor_parallel_size = a
        .tensor_parallel_size
        .or(f.tensor_parallel_size.as_ref().map(|t| t.value));
    overridden(
        &mut over,
        "--max-num-seqs",
        a.max_num_seqs.as_ref(),
        f.max_num_seqs.as_ref(),
    );
    overridden(
        &mut over,
        "--max-num-batched-tokens",
        a.max_num_batched_tokens.as_ref(),
        f.max_num_batched_tokens.as_ref(),
    );
    overridden(
        &mut over,
        "--max-model-len",
        a.max_model_len.as_ref(),
        f.max_model_len.as_ref(),
    );
    overridden(
        &mut over,
        "--block-size",
        a.block_size.as_ref(),
        f.block_size.as_ref(),
    );
    overridden(
        &mut over,
        "--num-gpu-blocks-override",
        a.num_gpu_blocks_override.as_ref(),
        f.num_gpu_blocks.as_ref(),
    );
    overridden(
        &mut over,
        "--kv-cache-memory-bytes",
        a.kv_cache_memory_bytes.as_ref(),
        f.kv_cache_memory_bytes.as_ref(),
    );
    overridden(
        &mut over,
        "--gpu-memory-utilization",
        a.gpu_memory_utilization.as_ref(),
        f.gpu_memory_utilization.as_ref(),
    );
    overridden(
        &mut over,
        "--long-prefill-token-threshold",
        a.long_prefill_token_threshold.as_ref(),
        f.long_prefill_token_threshold.as_ref(),
    );
    overridden(
        &mut over,
        "--scheduling-policy",
        a.scheduling_policy.map(policy_name).as_ref(),
        f.scheduling_policy.as_ref(),
    );
    let graphs_off = f
        .cudagraph_mode
        .as_ref()
        .is_some_and(|m| m.value == CudaGraphMode::None);
    for (flag, given, recorded) in [
        (
            "prefix caching",
            a.enable_prefix_caching,
            f.enable_prefix_caching.as_ref(),
        ),
        (
            "chunked prefill",
            a.enable_chunked_prefill,
            f.enable_chunked_prefill.as_ref(),
        ),
        (
            "async scheduling",
            a.async_scheduling,
            f.async_scheduling.as_ref(),
        ),
        ("enforce eager", a.enforce_eager, f.enforce_eager.as_ref()),
    ] {
        overridden(&mut over, &format!("{flag}:"), given.as_ref(), recorded);
    }
    let kv_bits = |d: KvCacheDtype| match d {
        KvCacheDtype::Auto | KvCacheDtype::Bits16 => KvCacheDtype::Bits16,
        other => other,
    };
    let recorded_kv = f
        .kv_cache_dtype
        .as_ref()
        .and_then(|r| r.value.parse::<KvCacheDtype>().ok())
        .unwrap_or_default();
    let kv_replaced = a
        .kv_cache_dtype
        .filter(|given| kv_bits(*given) != kv_bits(recorded_kv));
    if let (Some(given), Some(r)) = (kv_replaced, &f.kv_cache_dtype) {
        over.push(format!(
            "--kv-cache-dtype {} (recorded {}: {})",
            kv_dtype_label(given),
            r.value,
            r.source
        ));
    }
    let recorded_quantization = f
        .quantization
        .as_ref()
        .and_then(|q| q.value.parse::<OnlineQuantization>().ok());
    let quantization_replaced = a.quantization.is_some() && a.quantization != recorded_quantization;
    if !over.is_empty() {
        say(format!(
            "note: given on the command line, replacing what the run recorded: {}",
            over.join("; ")
        ));
    }

    // vLLM's defaults for what the run did not record and no flag gives.
    let mut default_of = |absent: bool, what: String| {
        if absent {
            defaulted.push(what);
        }
    };
    default_of(
        f.block_size.is_none()
            && a.block_size.is_none()
            && !instance_sets(|i| i.block_size.is_some()),
        format!("block_size {}", vd.block_size),
    );
    default_of(
        f.gpu_memory_utilization.is_none()
            && a.gpu_memory_utilization.is_none()
            && !instance_sets(|i| i.mem_util.is_some()),
        format!("gpu_memory_utilization {}", vd.gpu_memory_utilization),
    );
    let on_off = |b: bool| if b { "on" } else { "off" };
    default_of(
        f.enable_prefix_caching.is_none()
            && a.enable_prefix_caching.is_none()
            && !instance_sets(|i| i.enable_prefix_caching.is_some()),
        format!("prefix caching {}", on_off(vd.enable_prefix_caching)),
    );
    default_of(
        f.enable_chunked_prefill.is_none()
            && a.enable_chunked_prefill.is_none()
            && !instance_sets(|i| i.enable_chunked_prefill.is_some()),
        format!("chunked prefill {}", on_off(vd.enable_chunked_prefill)),
    );
    default_of(
        f.async_scheduling.is_none() && a.async_scheduling.is_none(),
        format!("async scheduling {}", on_off(vd.async_scheduling)),
    );
    let eager_given = a.enforce_eager.is_some();
    default_of(
        f.enforce_eager.is_none() && f.cudagraph_mode.is_none() && !eager_given,
        "CUDA graphs on".into(),
    );
    default_of(
        f.cudagraph_capture_sizes.is_none()
            && f.max_cudagraph_capture_size.is_none()
            && !graphs_off
            && !eager_given,
        match capture_rule {
            CaptureRule::EveryEighth => "capture sizes by vLLM's rule before 0.12 (every \
                                         multiple of 8)"
                .into(),
            CaptureRule::SixteenthsFrom256 => "capture sizes by vLLM's rule".into(),
            CaptureRule::Interactivity => "capture sizes by vLLM's rule for performance_mode \
                                           interactivity (every size to 32)"
                .into(),
        },
    );
    // The engine context's batch defaults (`SchedulerConfig`'s), doubled in throughput mode.
    let double = if mode == Some(PerformanceMode::Throughput) {
        " × 2 (performance_mode throughput)"
    } else {
        ""
    };
    default_of(
        f.max_num_seqs.is_none()
            && a.max_num_seqs.is_none()
            && !instance_sets(|i| i.max_num_seqs.is_some()),
        format!(
            "max_num_seqs 128{double} (an engine built directly, not the API server; at most \
             the token budget)"
        ),
    );
    default_of(
        f.max_num_batched_tokens.is_none()
            && a.max_num_batched_tokens.is_none()
            && !instance_sets(|i| i.max_num_batched_tokens.is_some()),
        if a.enable_chunked_prefill
            .or(f.enable_chunked_prefill.as_ref().map(|c| c.value))
            == Some(false)
        {
            format!(
                "max_num_batched_tokens max(2048{double}, max_model_len) (an engine built \
                 directly, chunked prefill off; at most max_num_seqs × max_model_len)"
            )
        } else {
            format!(
                "max_num_batched_tokens 2048{double} (an engine built directly; at most \
                 max_num_seqs × max_model_len)"
            )
        },
    );
    default_of(
        f.max_model_len.is_none() && a.max_model_len.is_none(),
        match &f.max_model_len_auto_fit {
            Some(src) => format!(
                "max_model_len from the model config, fitted to the KV cache ({src}, as \
                 vLLM 0.19's engine fits it; its front end keeps the model's length, and a \
                 longer request, which it would pass on, is refused here)"
            ),
            None => "max_model_len from the model config".into(),
        },
    );
    let kv_bytes_given = f.kv_cache_memory_bytes.is_some() || a.kv_cache_memory_bytes.is_some();
    default_of(
        f.num_gpu_blocks.is_none() && a.num_gpu_blocks_override.is_none() && !kv_bytes_given,
        "KV blocks sized from the GPU memory".into(),
    );
    default_of(
        f.num_gpu_blocks.is_none()
            && a.num_gpu_blocks_override.is_none()
            && !kv_bytes_given
            && f.device_memory_bytes.is_none()
            && a.gpu_memory_gib.is_none()
            && !instance_sets(|i| i.mem_size_gb.is_some()),
        "the GPU memory of its datasheet".into(),
    );
    default_of(
        f.scheduling_policy.is_none() && a.scheduling_policy.is_none(),
        "scheduling policy fcfs".into(),
    );
    if !defaulted.is_empty() {
        say(format!(
            "note: not recorded by the run, vLLM {} defaults used: {}",
            vd.version,
            defaulted.join(", ")
        ));
    }
    if let Some(q) = &f.quantization {
        match (q.value.parse::<OnlineQuantization>(), a.quantization) {
            (Ok(recorded), None) => {
                a.quantization = Some(recorded);
                say(format!(
                    "note: {} = {}: linear-layer weights in FP8, as vLLM quantizes an unquantized \
                     checkpoint at load (a checkpoint already in FP8 is read as it is)",
                    q.source, q.value
                ));
            }
            (Ok(_), Some(_)) => {}
            (Err(_), _) => say(format!(
                "note: {} = {}: the method of a pre-quantized checkpoint, whose weights are read \
                 from the model's config.json",
                q.source, q.value
            )),
        }
    }
    if let Some(d) = f.kv_cache_dtype.as_ref().filter(|d| d.value != "auto") {
        say(format!(
            "note: {} = {}: sizes the KV blocks and the roofline's KV reads; measured \
             profiles keep the KV dtype they were measured with",
            d.source, d.value
        ));
    }

    if let Some(l) = &f.tp_link {
        a.run.tp_link = Some(RecordedTpLink {
            gbps: l.bandwidth_gbs,
            hop_latency_us: l.latency_ns / 1e3,
            source: l.source.clone(),
        });
        // LLMServingSim's example cluster configs carry `link_bw: 16` whatever the GPUs; on
        // NVLink GPUs that is a fraction of the link. Replayed as recorded, and said.
        let gpus = a
            .tensor_parallel_size
            .or(f.tensor_parallel_size.as_ref().map(|t| t.value))
            .unwrap_or(1)
            .max(f.data_parallel_size.as_ref().map_or(1, |d| d.value));
        let gpu = a.gpu.as_deref().and_then(|g| GpuSpec::lookup(g).ok());
        if let Some(g) = gpu.filter(|g| gpus > 1 && g.uses_nvlink(gpus)) {
            let nvlink = g.link_gbs(gpus);
            if l.bandwidth_gbs < 0.25 * nvlink {
                say(format!(
                    "note: the recorded link, {:.2} GB/s ({}), is under a quarter of the {}'s \
                     NVLink ({nvlink} GB/s per direction): replayed as recorded; if the run's \
                     GPUs were joined by NVLink, `--latency profile:…,tp_link_gbps=N` or \
                     `roofline:link_eff=F` prices that link",
                    l.bandwidth_gbs, l.source, g.name
                ));
            }
        }
    }

    // The recorded facts, else vLLM's defaults of the run's version, fill what no flag gives.
    fn fill<T: Clone>(arg: &mut Option<T>, recorded: &Option<Recorded<T>>) {
        if arg.is_none() {
            *arg = recorded.as_ref().map(|r| r.value.clone());
        }
    }
    a.gpu_memory_gib = a.gpu_memory_gib.or(recorded_gib);
    fill(&mut a.max_num_seqs, &f.max_num_seqs);
    fill(&mut a.max_num_batched_tokens, &f.max_num_batched_tokens);
    fill(&mut a.max_model_len, &f.max_model_len);
    fill(&mut a.block_size, &f.block_size);
    // The KV memory given on the command line sizes the cache anew even where the run recorded
    // none (it then replaces the recorded block count, below).
    let kv_bytes_flag = a.kv_cache_memory_bytes.is_some_and(|b| b > 0)
        && !over
            .iter()
            .any(|o| o.starts_with("--kv-cache-memory-bytes "));
    fill(&mut a.kv_cache_memory_bytes, &f.kv_cache_memory_bytes);
    a.block_size.get_or_insert(vd.block_size);
    fill(&mut a.gpu_memory_utilization, &f.gpu_memory_utilization);
    a.gpu_memory_utilization
        .get_or_insert(vd.gpu_memory_utilization);
    fill(&mut a.enable_prefix_caching, &f.enable_prefix_caching);
    a.enable_prefix_caching
        .get_or_insert(vd.enable_prefix_caching);
    fill(&mut a.enable_chunked_prefill, &f.enable_chunked_prefill);
    a.enable_chunked_prefill
        .get_or_insert(vd.enable_chunked_prefill);
    fill(
        &mut a.long_prefill_token_threshold,
        &f.long_prefill_token_threshold,
    );
    fill(&mut a.max_num_partial_prefills, &f.max_num_partial_prefills);
    if a.scheduling_policy.is_none() {
        if let Some(p) = &f.scheduling_policy {
            a.scheduling_policy = Some(p.value.parse()?);
        }
    }

    fill(&mut a.async_scheduling, &f.async_scheduling);
    a.async_scheduling.get_or_insert(vd.async_scheduling);
    a.run.capture_rule = capture_rule;
    a.run.max_capture_size = f.max_cudagraph_capture_size.as_ref().map(|r| r.value);
    // A run in this layout is the record of an engine built with `AsyncLLM.from_engine_args`
    // (the peer's bench runner), whose usage context is the engine context.
    a.run.batch_context = BatchContext::EngineContext;
    a.run.doubled_batch_defaults = mode == Some(PerformanceMode::Throughput);
    a.run.auto_fit_max_model_len = f.max_model_len_auto_fit.is_some();
    fill(&mut a.enforce_eager, &f.enforce_eager);
    fill(
        &mut a.scheduler_reserve_full_isl,
        &f.scheduler_reserve_full_isl,
    );
    if a.cudagraph_capture_sizes.is_none() {
        a.cudagraph_capture_sizes = if graphs_off {
            Some(Vec::new())
        } else {
            f.cudagraph_capture_sizes.as_ref().map(|r| r.value.clone())
        };
    }
    // The recorded block count is what vLLM sized for the recorded GPU, memory, utilization,
    // TP degree, batch limits (its profile run), model, weight and KV formats: a flag
    // replacing one of those asks what another setup would do, and the blocks are sized anew
    // for it. The same weights under another name, and `auto` against the 16-bit KV format
    // it stands for, replace nothing.
    let same_weights = match (&a.model, &f.model) {
        (Some(given), Some(rec)) => same_weights_key(given) == same_weights_key(&rec.value),
        _ => false,
    };
    let resized_by: Vec<&str> = [
        "--gpu",
        "--gpu-memory-gib",
        "--gpu-memory-utilization",
        "--kv-cache-memory-bytes",
        "--tensor-parallel-size",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--block-size",
        "--model",
        "--model-config",
    ]
    .into_iter()
    .filter(|flag| over.iter().any(|o| o.starts_with(&format!("{flag} "))))
    .filter(|flag| !(*flag == "--model" && same_weights))
    .chain(kv_replaced.map(|_| "--kv-cache-dtype"))
    .chain(quantization_replaced.then_some("--quantization"))
    .chain(kv_bytes_flag.then_some("--kv-cache-memory-bytes"))
    .collect();
    match (&f.num_gpu_blocks, resized_by.is_empty()) {
        (Some(r), false) if a.num_gpu_blocks_override.is_none() => say(format!(
            "note: {} ({} KV blocks) was sized for the run's own setup, which {} replaces: \
             the KV blocks are sized anew (--num-gpu-blocks-override {} keeps the recorded \
             count)",
            r.source,
            r.value,
            resized_by.join(", "),
            r.value
        )),
        _ => {
            a.run.num_gpu_blocks = f.num_gpu_blocks.as_ref().map(|r| r.value);
            a.run.num_gpu_blocks_source = f.num_gpu_blocks.as_ref().map(|r| r.source.clone());
        }
    }
    a.run.cudagraph_capture_sizes_source = if graphs_off {
        f.cudagraph_mode
            .as_ref()
            .map(|r| format!("{} NONE", r.source))
    } else {
        f.cudagraph_capture_sizes.as_ref().map(|r| r.source.clone())
    };
    a.run.kv_cache_dtype = f.kv_cache_dtype.as_ref().map(|r| r.value.clone());
    Ok(())
}

/// A KV cache dtype as the reports name it.
fn kv_dtype_label(d: KvCacheDtype) -> &'static str {
    match d {
        KvCacheDtype::Auto => "auto",
        KvCacheDtype::Bits16 => "16-bit",
        KvCacheDtype::Fp8 => "fp8",
    }
}

/// A policy as `--scheduling-policy` spells it.
fn policy_name(p: SchedulingPolicy) -> String {
    p.name().to_string()
}

/// vLLM's `human_readable_int` (`engine/arg_utils.py`): a whole number, or a number with a
/// decimal suffix (`k`, `m`, `g`, `t`: powers of 1000, decimals allowed) or a binary one (`K`,
/// `M`, `G`, `T`: powers of 1024, whole numbers only).
fn human_readable_int(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, suffix) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c)),
        _ => (t, None),
    };
    let valid = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.chars().filter(|&c| c == '.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !valid {
        return None;
    }
    let decimal = |exp: i32| -> Option<u64> {
        let x = number.parse::<f64>().ok()? * 10f64.powi(exp);
        (x.is_finite() && x < u64::MAX as f64).then_some(x as u64)
    };
    match suffix {
        None => number.parse().ok(),
        Some('k') => decimal(3),
        Some('m') => decimal(6),
        Some('g') => decimal(9),
        Some('t') => decimal(12),
        Some(c @ ('K' | 'M' | 'G' | 'T')) => {
            let shift = match c {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => 40,
            };
            number.parse::<u64>().ok()?.checked_mul(1u64 << shift)
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::human_readable_int;

    #[test]
    fn byte_counts_read_as_vllm_reads_them() {
        // vLLM's `human_readable_int` examples and its two families of suffixes.
        assert_eq!(human_readable_int("1k"), Some(1_000));
        assert_eq!(human_readable_int("1K"), Some(1_024));
        assert_eq!(human_readable_int("25.6k"), Some(25_600));
        assert_eq!(human_readable_int("8G"), Some(8 << 30));
        assert_eq!(human_readable_int("8g"), Some(8_000_000_000));
        assert_eq!(human_readable_int(" 4294967296 "), Some(4 << 30));
        // Decimals with a binary suffix, and anything else, are refused.
        for bad in ["1.5G", "", "G", "-1", "1e9", "12x", "1..2k", ".5k"] {
            assert_eq!(human_readable_int(bad), None, "{bad}");
        }
    }
}
