//! vLLM 0.19's data parallelism (`--data-parallel-size N`): N engine cores, each with its own
//! scheduler and KV cache; each request placed on one rank by the API servers' load balancer
//! ([`LoadBalancer`]) or on the rank it names (`data_parallel_rank`). Engine index = rank.
//! A dense model's ranks step independently ([`DataParallel::new`]); a mixture-of-experts
//! model's step in lockstep ([`DataParallel::expert_parallel`], [`crate::ep`]), with or
//! without expert parallelism, as vLLM 0.19 runs every MoE model with DP > 1.

use crate::dp_lb::LoadBalancer;
use crate::ep::{EpGroup, PricedStep, Recorded};
use crate::member::{earliest_wake, Member};
use llm_emu_core::engine::RequestError;
use llm_emu_core::{
    Engine, EngineCore, EngineScratch, EngineSink, IterationStats, Nanos, NewRequest,
    RequestOutput, StepStats, Wake,
};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use thiserror::Error;

/// Why a request was not placed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddError {
    /// vLLM's `data_parallel_rank ... is out of range` check.
    #[error("data_parallel_rank {rank} is out of range [0, {size})")]
    RankOutOfRange { rank: usize, size: usize },
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// N data-parallel engine cores behind vLLM's load balancer.
pub struct DataParallel {
    ranks: Vec<Member>,
    lb: LoadBalancer,
    /// Which rank holds each live request (vLLM's `reqs_in_flight`, for aborts).
    owner: FxHashMap<String, usize>,
    /// MoE lockstep (with or without expert parallelism), when on.
    lockstep: Option<Lockstep>,
    /// Lent to each rank while it runs ([`EngineScratch`]).
    scratch: EngineScratch,
}

/// The state of MoE lockstep: the group's steps and its waves.
struct Lockstep {
    group: EpGroup,
    /// When the group's current step ends (every rank is busy until then).
    free_at: Nanos,
    /// Whether a wave is running (some rank has work).
    in_wave: bool,
    /// Waves started so far.
    waves: u64,
    /// Steps the group ran.
    steps: u64,
    /// How the latest step was priced.
    last: Option<PricedStep>,
    /// The group's steps scheduled and not ended, oldest first: the one running (priced when
    /// it started) and, under async scheduling, the next (scheduled while it runs).
    queue: VecDeque<GroupStep>,
    /// Steps that ended before `queue`'s front: `queue[i]` is step `ended + i`.
    ended: u64,
    /// Per rank, the group step of each of its engine's executing steps in flight, oldest
    /// first (what [`Engine::retime_executing_steps`] sets).
    joined: Vec<VecDeque<u64>>,
}

/// One step of a lockstep group.
#[derive(Default)]
struct GroupStep {
    /// Each rank's batch; `None`: the rank runs a dummy batch.
    batches: Vec<Option<Recorded>>,
    /// The ranks' records of the step, held until it is priced.
    records: Vec<StepStats>,
    /// When it ends, once priced.
    end: Option<Nanos>,
}

/// What lockstep did so far (for tests and reports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockstepReport {
    pub waves: u64,
    pub steps: u64,
    pub in_wave: bool,
    /// Dummy batches per rank.
    pub dummy_steps: Vec<u64>,
    pub last_step: Option<PricedStep>,
}

impl DataParallel {
    /// One rank per engine, in rank order; each engine's index is set to its rank.
    /// `api_servers` is vLLM's `--api-server-count` (it defaults to the DP size). Panics
    /// without engines (a caller's mistake: the CLI refuses `--data-parallel-size 0`).
    pub fn new(engines: Vec<Engine>, api_servers: usize) -> DataParallel {
        DataParallel::new_at(engines, api_servers, 0)
    }

    /// [`DataParallel::new`] with engine indexes `first`, `first + 1`, … (a group among
    /// several behind a router, whose engines are numbered across the fleet); ranks are still
    /// 0…N−1. The ranks are a dense model's, which never report their counts to the
    /// coordinator (`docs/fleet.md`; [`DataParallel::with_count_reports`] for a MoE model's).
    pub fn new_at(engines: Vec<Engine>, api_servers: usize, first: usize) -> DataParallel {
        assert!(
            !engines.is_empty(),
            "a data-parallel fleet needs at least one rank"
        );
        let n = engines.len();
        DataParallel {
            ranks: engines
                .into_iter()
                .enumerate()
                .map(|(i, e)| Member::new(e.with_engine_index(first + i)))
                .collect(),
            lb: LoadBalancer::new(n, api_servers).without_count_reports(),
            owner: FxHashMap::default(),
            lockstep: None,
            scratch: EngineScratch::default(),
        }
    }

    /// Whether the ranks report their `(waiting, running)` counts to the coordinator, which
    /// publishes them to the API servers: vLLM 0.19 runs a mixture-of-experts model's ranks as
    /// `DPEngineCoreProc`, which report (`core.py`, `_maybe_publish_request_counts`), and a
    /// dense model's as independent `EngineCoreProc`s, which never do. Expert-parallel groups
    /// report; [`DataParallel::new`] ranks do not unless this turns it on.
    pub fn with_count_reports(mut self, on: bool) -> DataParallel {
        let (n, api_servers) = (self.ranks.len(), self.lb.api_servers());
        self.lb = if on {
            LoadBalancer::new(n, api_servers)
        } else {
            LoadBalancer::new(n, api_servers).without_count_reports()
        };
        self
    }

    /// Ranks of a mixture-of-experts model in lockstep, with or without expert parallelism
    /// (the group's [`crate::ExpertLayout`]): `engines` must be built with the latency models
    /// [`EpGroup::new`] / [`EpGroup::with_layout`] returned with `group` (rank order), with
    /// synchronous or asynchronous scheduling. Their counts are reported to the coordinator.
    pub fn expert_parallel(
        engines: Vec<Engine>,
        api_servers: usize,
        group: EpGroup,
    ) -> DataParallel {
        DataParallel::expert_parallel_at(engines, api_servers, group, 0)
    }

    /// [`DataParallel::expert_parallel`] with engine indexes from `first`
    /// ([`DataParallel::new_at`]).
    pub fn expert_parallel_at(
        engines: Vec<Engine>,
        api_servers: usize,
        group: EpGroup,
        first: usize,
    ) -> DataParallel {
        let mut dp = DataParallel::new_at(engines, api_servers, first).with_count_reports(true);
        let mut group = group;
        group.set_cuda_graphs(
            dp.ranks
                .iter()
                .map(|m| m.engine.cuda_graph_sizes().clone())
                .collect(),
        );
        let n = dp.ranks.len();
        dp.lockstep = Some(Lockstep {
            group,
            free_at: Nanos::ZERO,
            in_wave: false,
            waves: 0,
            steps: 0,
            last: None,
            queue: VecDeque::new(),
            ended: 0,
            joined: vec![VecDeque::new(); n],
        });
        dp
    }

    /// Lockstep's figures (`None` for independent ranks).
    pub fn lockstep_report(&self) -> Option<LockstepReport> {
        self.lockstep.as_ref().map(|l| LockstepReport {
            waves: l.waves,
            steps: l.steps,
            in_wave: l.in_wave,
            dummy_steps: l.group.dummy_steps().to_vec(),
            last_step: l.last.clone(),
        })
    }

    /// One lockstep round at `now`: nothing before the group's step ends; then every rank
    /// takes its outputs and inputs and schedules, and the group prices the step that starts
    /// now.
    ///
    /// A rank's engine schedules one step a round, or, under async scheduling and with nothing
    /// in flight, two (the second while the first runs). Each step a rank schedules joins the
    /// group's step that starts now or, when the rank already has one there, the next; a step
    /// is priced when it starts, from the batches its ranks scheduled (a dummy batch for a rank
    /// without one), and the engines then learn when their steps end.
    fn run_lockstep(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        let Some(ls) = self.lockstep.as_mut() else {
            return Wake::Idle;
        };
        if now < ls.free_at {
            return Wake::At(ls.free_at);
        }
        while ls
            .queue
            .front()
            .is_some_and(|s| s.end.is_some_and(|end| end <= now))
        {
            ls.queue.pop_front();
            ls.ended += 1;
        }
        // The engines process the steps that ended and no other: a served fleet runs a little
        // after a step's end, past the provisional end of the next one.
        let ended = ls.ended;
        retime(&mut self.ranks, &ls.joined, |step| {
            if step < ended {
                now
            } else {
                now + Nanos(1)
            }
        });
        for joined in &mut ls.joined {
            while joined.front().is_some_and(|&step| step < ended) {
                joined.pop_front();
            }
        }
        if !self.ranks.iter().any(|m| m.pending || m.engine.has_work()) {
            ls.in_wave = false;
            return Wake::Idle;
        }
        if !ls.in_wave {
            // A request reached an idle group: every rank starts the next wave.
            ls.in_wave = true;
            ls.waves += 1;
        }
        let n = self.ranks.len();
        // The step starting now is `ls.ended`. Its records from this round, with those of the
        // steps that compute nothing, keep the order the ranks made them in.
        let mut starting = Vec::new();
        let mut records = Vec::new();
        for (rank, m) in self.ranks.iter_mut().enumerate() {
            let mut buf = StepBuffer {
                out: &mut *sink,
                steps: &mut records,
            };
            let mut tap = RankTap {
                rank,
                now,
                lb: &mut self.lb,
                owner: &mut self.owner,
                out: &mut buf,
            };
            m.run(now, &mut tap, &mut self.scratch);
            let mut batches = ls.group.take_batches(rank).into_iter();
            for s in records.drain(..) {
                if s.num_scheduled_tokens == 0 {
                    starting.push(s);
                    continue;
                }
                let batch = batches.next().expect("a step with tokens was priced");
                let joined = &mut ls.joined[rank];
                let step = joined
                    .back()
                    .map_or(ls.ended, |&last| (last + 1).max(ls.ended));
                joined.push_back(step);
                let i = (step - ls.ended) as usize;
                while ls.queue.len() <= i {
                    ls.queue.push_back(GroupStep {
                        batches: vec![None; n],
                        ..GroupStep::default()
                    });
                }
                ls.queue[i].batches[rank] = Some(batch);
                if i == 0 {
                    starting.push(s);
                } else {
                    ls.queue[i].records.push(s);
                }
            }
            debug_assert!(batches.next().is_none(), "each priced batch has its record");
        }
        let Some(step) = ls.queue.front_mut() else {
            for s in &starting {
                sink.on_step(s);
            }
            // Nothing scheduled anywhere: the wave ends when no rank has work left.
            let wake = earliest_wake(self.ranks.iter());
            if wake == Wake::Idle && !self.ranks.iter().any(|m| m.engine.has_work()) {
                ls.in_wave = false;
            }
            return wake;
        };
        let priced = ls
            .group
            .price_step(&step.batches)
            .expect("a queued step has a batch");
        let end = now + Nanos(priced.step_ns);
        step.end = Some(end);
        for mut s in step.records.drain(..).chain(starting) {
            if s.num_scheduled_tokens > 0 {
                s.device_start = now;
                s.device_end = end;
            }
            sink.on_step(&s);
        }
        // The next step (async scheduling) starts at `end`; until it is priced its ranks'
        // engines hold it as ending just after that (and, when the next round comes, just after
        // it).
        let started = ls.ended;
        retime(&mut self.ranks, &ls.joined, |step| {
            if step == started {
                end
            } else {
                end + Nanos(1)
            }
        });
        ls.free_at = end;
        ls.steps += 1;
        ls.last = Some(priced);
        Wake::At(end)
    }

    /// The engines, in rank order.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.ranks.iter().map(|m| &m.engine)
    }

    /// The engines, mutably, in order: for setting each one up before the fleet runs (a served
    /// fleet's sampler layer and KV cache events).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.ranks.iter_mut().map(|m| &mut m.engine)
    }

    /// The engine of rank `r`. Panics if `r` is not a rank (a caller's mistake).
    pub fn rank_engine(&self, r: usize) -> &Engine {
        &self.ranks[r].engine
    }

    pub fn size(&self) -> usize {
        self.ranks.len()
    }

    /// The balancer's state (for tests and reports).
    pub fn load_balancer(&self) -> &LoadBalancer {
        &self.lb
    }

    /// The rank a request arriving at `now` without a rank would be placed on.
    pub fn peek_rank(&mut self, now: Nanos) -> usize {
        self.lb.advance(now);
        self.lb.peek()
    }

    /// The rank holding a live request.
    pub fn rank_of(&self, request_id: &str) -> Option<usize> {
        self.owner.get(request_id).copied()
    }

    /// Places `req` on `rank` if given (`data_parallel_rank`, no balancer increment), else
    /// where the balancer chooses at the request's arrival. Validation comes first, as in
    /// vLLM's frontend: a refused request moves no count.
    pub fn add_to_rank(
        &mut self,
        req: NewRequest,
        tag: u64,
        rank: Option<usize>,
    ) -> Result<usize, AddError> {
        self.add_to_rank_lora(req, tag, rank, None)
    }

    /// [`DataParallel::add_to_rank`] for a request running with LoRA adapter `lora` (the
    /// scheduler's `max_loras` rule, [`Engine::set_max_loras`]).
    pub fn add_to_rank_lora(
        &mut self,
        req: NewRequest,
        tag: u64,
        rank: Option<usize>,
        lora: Option<u64>,
    ) -> Result<usize, AddError> {
        let size = self.ranks.len();
        match rank {
            Some(r) if r >= size => Err(AddError::RankOutOfRange { rank: r, size }),
            Some(r) => {
                self.place(req, tag, r, lora)?;
                self.lb.pass_turn();
                Ok(r)
            }
            None => Ok(self.balance(req, tag, lora)?),
        }
    }

    /// Places `req` where the balancer chooses at its arrival.
    fn balance(
        &mut self,
        req: NewRequest,
        tag: u64,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        self.lb.advance(req.arrival);
        let r = self.lb.peek();
        self.place(req, tag, r, lora)?;
        self.lb.commit(r);
        Ok(r)
    }

    /// Queues `req` on rank `r` (in range).
    fn place(
        &mut self,
        req: NewRequest,
        tag: u64,
        r: usize,
        lora: Option<u64>,
    ) -> Result<(), RequestError> {
        let id = req.request_id.clone();
        if self.owner.contains_key(&id) {
            return Err(RequestError::DuplicateId(id));
        }
        let m = &mut self.ranks[r];
        m.engine.add_tagged_lora(req, tag, lora)?;
        m.pending = true;
        self.owner.insert(id, r);
        Ok(())
    }

    fn with_owner(&mut self, request_id: &str, f: impl FnOnce(&mut Engine, &str)) {
        if let Some(&r) = self.owner.get(request_id) {
            let m = &mut self.ranks[r];
            f(&mut m.engine, request_id);
            m.pending = true;
        }
    }
}

/// Sets the end of every executing step in flight on every rank from the group step it joined
/// (`joined`, per rank, oldest first, as [`Lockstep::joined`] holds them).
fn retime(ranks: &mut [Member], joined: &[VecDeque<u64>], end_of: impl Fn(u64) -> Nanos) {
    for (m, joined) in ranks.iter_mut().zip(joined) {
        debug_assert_eq!(joined.len(), m.engine.num_executing_steps());
        m.engine.retime_executing_steps(|i| end_of(joined[i]));
    }
}

/// Holds back a lockstep round's step records until the group has priced the step.
struct StepBuffer<'a> {
    out: &'a mut dyn EngineSink,
    steps: &'a mut Vec<StepStats>,
}

impl EngineSink for StepBuffer<'_> {
    fn on_step(&mut self, s: &StepStats) {
        self.steps.push(*s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        self.out.on_iteration(it, outputs);
    }
}

/// Forwards a rank's stats and reports its counts to the coordinator; forgets finished
/// requests.
struct RankTap<'a> {
    rank: usize,
    now: Nanos,
    lb: &'a mut LoadBalancer,
    owner: &'a mut FxHashMap<String, usize>,
    out: &'a mut dyn EngineSink,
}

impl EngineSink for RankTap<'_> {
    fn on_step(&mut self, s: &StepStats) {
        self.lb.report(
            self.rank,
            s.scheduler.num_waiting_reqs,
            s.scheduler.num_running_reqs,
            self.now,
        );
        self.out.on_step(s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        self.lb.report(
            self.rank,
            it.scheduler.num_waiting_reqs,
            it.scheduler.num_running_reqs,
            self.now,
        );
        for f in &it.finished_requests {
            self.owner.remove(&f.request_id);
        }
        self.out.on_iteration(it, outputs);
    }
}

impl EngineCore for DataParallel {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.balance(req, tag, None).map(|_| ())
    }

    fn abort(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.abort(id));
    }

    fn finish_stopped(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.finish_stopped(id));
    }

    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        self.lb.advance(now);
        if self.lockstep.is_some() {
            return self.run_lockstep(now, sink);
        }
        for (rank, m) in self.ranks.iter_mut().enumerate() {
            if m.is_due(now) {
                let mut tap = RankTap {
                    rank,
                    now,
                    lb: &mut self.lb,
                    owner: &mut self.owner,
                    out: sink,
                };
                m.run(now, &mut tap, &mut self.scratch);
            }
        }
        earliest_wake(self.ranks.iter())
    }

    fn has_work(&self) -> bool {
        self.ranks.iter().any(|m| m.engine.has_work())
    }

    fn num_unfinished(&self) -> usize {
        self.ranks.iter().map(|m| m.engine.num_unfinished()).sum()
    }
}
