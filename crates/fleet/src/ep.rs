//! The lockstep of a mixture-of-experts model's data-parallel ranks (`--data-parallel-size N`
//! on a MoE model, with or without `--enable-expert-parallel`), as vLLM 0.19 runs it: every
//! MoE model with DP > 1 runs its ranks as `DPEngineCoreProc` (`core.py::run_engine_core`,
//! lines 1071–1081), and the ranks step in lockstep.
//!
//! - **Waves** (`vllm/v1/engine/coordinator.py`, `core.py::DPEngineCoreProc`): while any rank
//!   has work, every rank runs one forward pass per step, each step's MoE layers exchanging
//!   tokens with every other rank; a rank with nothing scheduled runs a dummy batch
//!   (`execute_dummy_batch`) so that the collectives complete. When every rank is idle the wave
//!   ends; a request arriving afterwards starts the next wave on every rank.
//! - **Padding** (`vllm/v1/worker/dp_utils.py`, `coordinate_batch_across_dp` and
//!   `_synchronize_dp_ranks`; `gpu_model_runner.py`, `_determine_batch_execution_and_padding`):
//!   each rank pads its batch to its own CUDA-graph size and all-reduces that count with its
//!   CUDA-graph mode; the group's mode is the smallest (`_post_process_cudagraph_mode`: `NONE`
//!   if any rank runs without a graph — eager, or a step above the largest captured size), and
//!   only when it is not `NONE` does every rank pad to the largest count
//!   (`should_dp_pad = synced_cudagraph_mode != 0`, `_post_process_dp_padding`); otherwise
//!   each rank computes its own count. (Micro-batching, the other cause, is off by default.)
//! - **MoE on the gathered batch** (`all2all.py`, `AgRsAll2AllManager`;
//!   `fused_moe/runner/default_moe_runner.py`, `_maybe_dispatch`: `do_naive_dispatch_combine`
//!   whenever the DP size is above 1): each MoE layer all-gathers every rank's tokens, so each
//!   rank's experts run on the tokens of the whole group; each rank's model prices its MoE
//!   layers at the gathered count ([`LatencyModel::step_time_gathered`]), the rest of its step
//!   at its own. How the experts are laid out is the latency model's: split over the ranks
//!   with expert parallelism (EP = DP × TP, each rank `E / EP` whole experts), else each
//!   expert's width split over DP × TP GPUs (`FusedMoEParallelConfig.make` flattens the MoE
//!   layers' TP over DP), every GPU computing every gathered token-expert pair.
//! - **Step time**: the slowest rank, plus the dispatch and combine collectives of every MoE
//!   layer priced from their bytes over the link ([`AllToAll`]) — the same collectives with or
//!   without expert parallelism.
//!
//! Mechanism: each rank's engine is built with a [`RankLatency`] that records the batch it
//! schedules and answers a provisional 1 ns; the group ([`EpGroup`]) then prices every rank's
//! batch (padded as above, MoE layers at the gathered count) with the rank's own latency model
//! and holds all ranks until the step ends. Whether a rank runs a CUDA graph comes from its
//! engine's capture sizes ([`llm_emu_core::Engine::cuda_graph_sizes`]).
//!
//! Scheduling, synchronous or asynchronous, is each rank's engine's
//! ([`crate::DataParallel::expert_parallel`] keeps the group's steps in order): under async
//! scheduling a rank schedules its next step while the group's current one runs, and that step
//! joins the group's next step.

use crate::cluster::Link;
use llm_emu_core::cudagraph::CudaGraphSizes;
use llm_emu_core::latency::{BatchRequest, LatencyModel, StepBatch};
use llm_emu_core::Nanos;
use std::sync::{Arc, Mutex, MutexGuard};

/// The expert all-to-all of one step as vLLM 0.19 runs it by default (`all2all_backend =
/// "allgather_reducescatter"`, `AgRsAll2AllManager` in
/// `vllm/distributed/device_communicators/all2all.py`; the EP group's communicator has it
/// whenever the DP size is above 1, `base_device_communicator.py`, with or without expert
/// parallelism, and both gather over the DP group): in each of `moe_layers` MoE layers the
/// data-parallel group all-gathers every rank's hidden states and router logits (dispatch) and
/// reduce-scatters the experts' outputs (combine). Each rank contributes the tokens it computes
/// (one count for all when the ranks pad to each other, else each its own: `all_gatherv`).
/// Both are ring collectives over `ranks`: `ranks − 1` hops, each priced at the largest rank's
/// chunk over `link`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AllToAll {
    pub hidden_size: u64,
    /// Bytes per activation element (2 for bf16); router logits are in the same dtype.
    pub dtype_bytes: u64,
    /// The model's routed experts: the router logits gathered with each token.
    pub num_experts: u64,
    pub moe_layers: u64,
    /// Ranks the collectives span: the data-parallel group.
    pub ranks: u64,
    pub link: Link,
}

impl AllToAll {
    /// Bytes of one rank's dispatch chunk for `tokens` tokens: hidden states and router logits.
    pub fn dispatch_bytes(&self, tokens: u64) -> u64 {
        tokens * (self.hidden_size + self.num_experts) * self.dtype_bytes
    }

    /// Bytes of one rank's combine chunk for `tokens` tokens: the experts' outputs.
    pub fn combine_bytes(&self, tokens: u64) -> u64 {
        tokens * self.hidden_size * self.dtype_bytes
    }

    /// The step's all-to-all time when the largest rank computes `tokens` tokens, ns:
    /// `moe_layers · (ranks − 1) · (transfer(dispatch chunk) + transfer(combine chunk))`, each
    /// transfer `link latency + bytes / bandwidth`.
    pub fn step_ns(&self, tokens: u64) -> u64 {
        if tokens == 0 || self.ranks < 2 {
            return 0;
        }
        let hop = self.link.transfer_ns(self.dispatch_bytes(tokens))
            + self.link.transfer_ns(self.combine_bytes(tokens));
        self.moe_layers * (self.ranks - 1) * hop
    }
}

/// A batch recorded by a rank's [`RankLatency`], owned.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorded {
    requests: Vec<BatchRequest>,
    total_tokens: usize,
    padded_tokens: usize,
    num_running: usize,
}

/// What the ranks' latency wrappers and the group share.
struct Shared {
    /// Each rank's own latency model.
    models: Vec<Box<dyn LatencyModel>>,
    /// The batches each rank scheduled since the group last took them, oldest first.
    batches: Vec<Vec<Recorded>>,
}

/// The latency model a lockstep rank's engine is built with: it records the batch and answers
/// a provisional 1 ns; [`EpGroup::price_step`] prices the step.
pub struct RankLatency {
    rank: usize,
    shared: Arc<Mutex<Shared>>,
    describe: String,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LatencyModel for RankLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        lock(&self.shared).batches[self.rank].push(Recorded {
            requests: batch.requests.to_vec(),
            total_tokens: batch.total_tokens,
            padded_tokens: batch.padded_tokens,
            num_running: batch.num_running,
        });
        Nanos(1)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn warnings(&self) -> Vec<String> {
        lock(&self.shared).models[self.rank].warnings()
    }
}

/// How one lockstep step was priced (for tests and reports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedStep {
    /// The largest token count a rank computed (the group's count when the ranks padded to
    /// each other).
    pub padded_tokens: usize,
    /// Whether every rank ran a CUDA graph, so all padded to the largest count.
    pub dp_padded: bool,
    /// Tokens each rank computed (its batch after padding; 1 before padding for a dummy batch).
    pub rank_tokens: Vec<usize>,
    /// Tokens entering every rank's MoE layers: the sum of `rank_tokens`, the gathered batch.
    pub gathered_tokens: usize,
    /// Each rank's padded batch time, ns (a dummy batch for a rank with nothing scheduled).
    pub rank_ns: Vec<u64>,
    /// Ranks that ran a dummy batch.
    pub dummy_ranks: Vec<usize>,
    /// The all-to-all, ns.
    pub all_to_all_ns: u64,
    /// max(rank_ns) + all_to_all_ns, at least 1.
    pub step_ns: u64,
}

/// The ranks' shared pricing: their latency models and the all-to-all.
pub struct EpGroup {
    shared: Arc<Mutex<Shared>>,
    a2a: AllToAll,
    /// Each rank's CUDA-graph sizes (its engine's; empty = eager), which decide whether the
    /// ranks pad to each other.
    graphs: Vec<CudaGraphSizes>,
    /// Dummy batches run, per rank.
    pub(crate) dummy_steps: Vec<u64>,
}

/// How a lockstep group's experts are laid out over its GPUs (for its description; the
/// pricing is the ranks' latency models').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertLayout {
    /// `--enable-expert-parallel`: each rank holds `E / EP` whole experts.
    Split,
    /// No expert parallelism: every GPU holds every expert, each at `1 / (DP × TP)` of its
    /// width.
    TpSharded,
}

impl EpGroup {
    /// An expert-parallel group over `models` (rank order); returns it with the latency model
    /// each rank's engine must be built with.
    pub fn new(models: Vec<Box<dyn LatencyModel>>, a2a: AllToAll) -> (EpGroup, Vec<RankLatency>) {
        EpGroup::with_layout(models, a2a, ExpertLayout::Split)
    }

    /// [`EpGroup::new`] for a MoE model's ranks laid out as `layout` says: `TpSharded` is
    /// `--data-parallel-size N` without `--enable-expert-parallel`, which vLLM 0.19 runs in the
    /// same lockstep.
    pub fn with_layout(
        models: Vec<Box<dyn LatencyModel>>,
        a2a: AllToAll,
        layout: ExpertLayout,
    ) -> (EpGroup, Vec<RankLatency>) {
        let n = models.len();
        let what = match layout {
            ExpertLayout::Split => "expert-parallel lockstep",
            ExpertLayout::TpSharded => "MoE data-parallel lockstep without expert parallelism",
        };
        // One rank (expert parallelism over one engine's TP GPUs, no DP) gathers nothing: its
        // GPUs hold the same tokens and vLLM runs no all-to-all (`use_all2all_kernels` needs a
        // DP size above 1); the MoE output is reduced by the TP all-reduce.
        let collective = if n > 1 {
            format!(
                "all-to-all over {} GB/s + {} ns",
                a2a.link.bandwidth_gbs, a2a.link.latency_ns
            )
        } else {
            "no all-to-all: one data-parallel rank".to_string()
        };
        let describe: Vec<String> = models
            .iter()
            .map(|m| format!("{} ({what} over {n} ranks, {collective})", m.describe()))
            .collect();
        let shared = Arc::new(Mutex::new(Shared {
            models,
            batches: vec![Vec::new(); n],
        }));
        let ranks = describe
            .into_iter()
            .enumerate()
            .map(|(rank, describe)| RankLatency {
                rank,
                shared: Arc::clone(&shared),
                describe,
            })
            .collect();
        (
            EpGroup {
                shared,
                a2a,
                graphs: vec![CudaGraphSizes::default(); n],
                dummy_steps: vec![0; n],
            },
            ranks,
        )
    }

    /// Sets each rank's CUDA-graph sizes (rank order), read from the ranks' engines when the
    /// group is assembled ([`crate::DataParallel::expert_parallel`]). Until then every rank
    /// counts as eager.
    pub(crate) fn set_cuda_graphs(&mut self, graphs: Vec<CudaGraphSizes>) {
        self.graphs = graphs;
    }

    pub fn all_to_all(&self) -> &AllToAll {
        &self.a2a
    }

    /// Dummy batches each rank has run.
    pub fn dummy_steps(&self) -> &[u64] {
        &self.dummy_steps
    }

    /// The batches rank `rank` scheduled since the last call, oldest first.
    pub(crate) fn take_batches(&mut self, rank: usize) -> Vec<Recorded> {
        std::mem::take(&mut lock(&self.shared).batches[rank])
    }

    /// Prices one step of the group from each rank's batch, as vLLM 0.19 runs the step (module
    /// doc): a rank without a batch runs a dummy one (one token of no context); the ranks pad
    /// to the largest count only when every rank runs a CUDA graph; every rank's MoE layers
    /// take the gathered batch; plus the all-to-all. `None` when no rank scheduled anything.
    pub(crate) fn price_step(&mut self, batches: &[Option<Recorded>]) -> Option<PricedStep> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        let n = s.models.len();
        debug_assert_eq!(batches.len(), n);
        if batches.iter().all(Option::is_none) {
            return None;
        }
        let dummy = Recorded {
            requests: vec![BatchRequest {
                num_tokens: 1,
                num_computed_before: 0,
                num_prompt_tokens: 1,
                samples: false,
            }],
            total_tokens: 1,
            padded_tokens: 1,
            num_running: 0,
        };
        let eager = CudaGraphSizes::default();
        // Each rank's own count after its CUDA-graph padding, and whether it runs a graph.
        let own: Vec<(usize, bool)> = batches
            .iter()
            .enumerate()
            .map(|(r, b)| {
                let g = self.graphs.get(r).unwrap_or(&eager);
                match b {
                    Some(b) => (b.padded_tokens, g.runs_graph(b.total_tokens)),
                    None => (g.padded_tokens(1), g.runs_graph(1)),
                }
            })
            .collect();
        let largest = own.iter().map(|&(t, _)| t).max().unwrap_or(1);
        let dp_padded = own.iter().all(|&(_, graph)| graph);
        let rank_tokens: Vec<usize> = own
            .iter()
            .map(|&(t, _)| if dp_padded { largest } else { t })
            .collect();
        let gathered_tokens: usize = rank_tokens.iter().sum();
        let mut rank_ns = Vec::with_capacity(n);
        let mut dummy_ranks = Vec::new();
        for (r, (b, model)) in batches.iter().zip(s.models.iter_mut()).enumerate() {
            let b = b.as_ref().unwrap_or_else(|| {
                dummy_ranks.push(r);
                &dummy
            });
            let t = model.step_time_gathered(
                &StepBatch {
                    requests: &b.requests,
                    total_tokens: b.total_tokens,
                    padded_tokens: rank_tokens[r],
                    num_running: b.num_running,
                },
                gathered_tokens,
            );
            rank_ns.push(t.0);
        }
        for &r in &dummy_ranks {
            self.dummy_steps[r] += 1;
        }
        let all_to_all_ns = self.a2a.step_ns(largest as u64);
        let step_ns = (rank_ns.iter().copied().max().unwrap_or(0) + all_to_all_ns).max(1);
        Some(PricedStep {
            padded_tokens: largest,
            dp_padded,
            rank_tokens,
            gathered_tokens,
            rank_ns,
            dummy_ranks,
            all_to_all_ns,
            step_ns,
        })
    }
}
