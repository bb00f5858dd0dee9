//! Expert parallelism over data-parallel ranks (`--data-parallel-size N
//! --enable-expert-parallel` on a mixture-of-experts model), as vLLM 0.19 runs it: the ranks
//! step in lockstep.
//!
//! - **Waves** (`vllm/v1/engine/coordinator.py`, `core.py::DPEngineCoreProc`): while any rank
//!   has work, every rank runs one forward pass per step, each step's MoE layers exchanging
//!   tokens with every other rank; a rank with nothing scheduled runs a dummy batch
//!   (`execute_dummy_batch`) so that the collectives complete. When every rank is idle the wave
//!   ends; a request arriving afterwards starts the next wave on every rank.
//! - **Padding** (`vllm/forward_context.py`, `DPMetadata`; `coordinate_batch_across_dp`): the
//!   ranks agree on the step's token count, the largest of theirs, and each pads its batch to
//!   it (a dummy batch too).
//! - **Step time**: the slowest rank's padded batch, plus the expert all-to-all (dispatch and
//!   combine in every MoE layer) priced from its bytes over the link ([`AllToAll`]).
//!
//! Mechanism: each rank's engine is built with a [`RankLatency`] that records the batch it
//! schedules and answers a provisional 1 ns; the group ([`EpGroup`]) then prices every rank's
//! padded batch with the rank's own latency model and holds all ranks until the step ends.
//! Lockstep ranks schedule synchronously (`async_scheduling` off): the next step is scheduled
//! when the group's step ends.

use crate::cluster::Link;
use llm_emu_core::latency::{BatchRequest, LatencyModel, StepBatch};
use llm_emu_core::Nanos;
use std::sync::{Arc, Mutex, MutexGuard};

/// The expert all-to-all of one step as vLLM 0.19 runs it by default (`all2all_backend =
/// "allgather_reducescatter"`, `AgRsAll2AllManager` in
/// `vllm/distributed/device_communicators/all2all.py`): in each of `moe_layers` MoE layers the
/// data-parallel group all-gathers every rank's hidden states and router logits (dispatch) and
/// reduce-scatters the experts' outputs (combine). Each rank contributes its padded token
/// count (the ranks agree on one count). Both are ring collectives over `ranks`: `ranks − 1`
/// hops, each moving one rank's chunk over `link`.
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

    /// The step's all-to-all time for `tokens` (padded) tokens per rank, ns:
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
struct Recorded {
    requests: Vec<BatchRequest>,
    total_tokens: usize,
    padded_tokens: usize,
    num_running: usize,
}

/// What the ranks' latency wrappers and the group share.
struct Shared {
    /// Each rank's own latency model.
    models: Vec<Box<dyn LatencyModel>>,
    /// The batch each rank scheduled in the current round (`None`: nothing scheduled).
    batches: Vec<Option<Recorded>>,
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
        lock(&self.shared).batches[self.rank] = Some(Recorded {
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
    /// The group's token count: the largest padded batch of the ranks.
    pub padded_tokens: usize,
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
    /// Dummy batches run, per rank.
    pub(crate) dummy_steps: Vec<u64>,
}

impl EpGroup {
    /// A group over `models` (rank order); returns it with the latency model each rank's
    /// engine must be built with.
    pub fn new(models: Vec<Box<dyn LatencyModel>>, a2a: AllToAll) -> (EpGroup, Vec<RankLatency>) {
        let n = models.len();
        let describe: Vec<String> = models
            .iter()
            .map(|m| {
                format!(
                    "{} (expert-parallel lockstep over {n} ranks, all-to-all over {} GB/s + {} ns)",
                    m.describe(),
                    a2a.link.bandwidth_gbs,
                    a2a.link.latency_ns
                )
            })
            .collect();
        let shared = Arc::new(Mutex::new(Shared {
            models,
            batches: vec![None; n],
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
                dummy_steps: vec![0; n],
            },
            ranks,
        )
    }

    pub fn all_to_all(&self) -> &AllToAll {
        &self.a2a
    }

    /// Dummy batches each rank has run.
    pub fn dummy_steps(&self) -> &[u64] {
        &self.dummy_steps
    }

    /// Prices the round's batches (then forgets them): every rank's batch padded to the
    /// group's largest, a rank without one running a dummy batch of that size (one token of
    /// no context, padded), plus the all-to-all. `None` when no rank scheduled anything.
    pub(crate) fn price_step(&mut self) -> Option<PricedStep> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        let n = s.models.len();
        let batches = std::mem::replace(&mut s.batches, vec![None; n]);
        let padded = batches.iter().flatten().map(|b| b.padded_tokens).max()?;
        let dummy = [BatchRequest {
            num_tokens: 1,
            num_computed_before: 0,
            num_prompt_tokens: 1,
            samples: false,
        }];
        let mut rank_ns = Vec::with_capacity(batches.len());
        let mut dummy_ranks = Vec::new();
        for (r, (b, model)) in batches.iter().zip(s.models.iter_mut()).enumerate() {
            let t = match b {
                Some(b) => model.step_time(&StepBatch {
                    requests: &b.requests,
                    total_tokens: b.total_tokens,
                    padded_tokens: padded,
                    num_running: b.num_running,
                }),
                None => {
                    dummy_ranks.push(r);
                    model.step_time(&StepBatch {
                        requests: &dummy,
                        total_tokens: 1,
                        padded_tokens: padded,
                        num_running: 0,
                    })
                }
            };
            rank_ns.push(t.0);
        }
        for &r in &dummy_ranks {
            self.dummy_steps[r] += 1;
        }
        let all_to_all_ns = self.a2a.step_ns(padded as u64);
        let step_ns = (rank_ns.iter().copied().max().unwrap_or(0) + all_to_all_ns).max(1);
        Some(PricedStep {
            padded_tokens: padded,
            rank_ns,
            dummy_ranks,
            all_to_all_ns,
            step_ns,
        })
    }
}
