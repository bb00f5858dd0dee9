//! vLLM 0.19's data parallelism (`--data-parallel-size N`) without expert parallelism: N
//! engine cores, each with its own scheduler and KV cache, stepping independently; each
//! request placed on one rank by the API servers' load balancer ([`LoadBalancer`]) or on the
//! rank it names (`data_parallel_rank`). Engine index = rank.

use crate::dp_lb::LoadBalancer;
use crate::member::{earliest_wake, Member};
use llm_emu_core::engine::RequestError;
use llm_emu_core::{
    Engine, EngineCore, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput, StepStats,
    Wake,
};
use rustc_hash::FxHashMap;
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
}

impl DataParallel {
    /// One rank per engine, in rank order; each engine's index is set to its rank.
    /// `api_servers` is vLLM's `--api-server-count` (it defaults to the DP size). Panics
    /// without engines (a caller's mistake: the CLI refuses `--data-parallel-size 0`).
    pub fn new(engines: Vec<Engine>, api_servers: usize) -> DataParallel {
        assert!(
            !engines.is_empty(),
            "a data-parallel fleet needs at least one rank"
        );
        let n = engines.len();
        DataParallel {
            ranks: engines
                .into_iter()
                .enumerate()
                .map(|(i, e)| Member::new(e.with_engine_index(i)))
                .collect(),
            lb: LoadBalancer::new(n, api_servers),
            owner: FxHashMap::default(),
        }
    }

    /// The engines, in rank order.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.ranks.iter().map(|m| &m.engine)
    }

    /// The engines, mutably, in order: for layering over each engine's token sampler before
    /// the fleet runs (a served fleet's structured outputs and seeds).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.ranks.iter_mut().map(|m| &mut m.engine)
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
        let size = self.ranks.len();
        match rank {
            Some(r) if r >= size => Err(AddError::RankOutOfRange { rank: r, size }),
            Some(r) => {
                self.place(req, tag, r)?;
                self.lb.pass_turn();
                Ok(r)
            }
            None => Ok(self.balance(req, tag)?),
        }
    }

    /// Places `req` where the balancer chooses at its arrival.
    fn balance(&mut self, req: NewRequest, tag: u64) -> Result<usize, RequestError> {
        self.lb.advance(req.arrival);
        let r = self.lb.peek();
        self.place(req, tag, r)?;
        self.lb.commit(r);
        Ok(r)
    }

    /// Queues `req` on rank `r` (in range).
    fn place(&mut self, req: NewRequest, tag: u64, r: usize) -> Result<(), RequestError> {
        let id = req.request_id.clone();
        if self.owner.contains_key(&id) {
            return Err(RequestError::DuplicateId(id));
        }
        let m = &mut self.ranks[r];
        m.engine.add_tagged(req, tag)?;
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
        self.balance(req, tag).map(|_| ())
    }

    fn abort(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.abort(id));
    }

    fn finish_stopped(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.finish_stopped(id));
    }

    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        self.lb.advance(now);
        for (rank, m) in self.ranks.iter_mut().enumerate() {
            if m.is_due(now) {
                let mut tap = RankTap {
                    rank,
                    now,
                    lb: &mut self.lb,
                    owner: &mut self.owner,
                    out: sink,
                };
                m.run(now, &mut tap);
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
