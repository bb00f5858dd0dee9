//! Independent instances behind a router: each instance is its own engine (its own
//! configuration, KV cache and latency model, so fleets may be heterogeneous); each request
//! goes to the one instance its [`Router`] picks. Engine index = instance index.
//!
//! The replicas may also be data-parallel groups ([`Replicas::of_groups`]): then every rank
//! of every group is an instance the router sees, and the request goes to the rank it picks
//! with that rank named (`data_parallel_rank`), as llm-d's scheduler and Dynamo's KV router
//! route to a DP rank of a vLLM engine; within a group the ranks run as the group runs them
//! (independently, or in expert-parallel lockstep).

use crate::dp::{AddError, DataParallel};
use crate::member::{earliest_wake, Member};
use crate::router::{InstanceView, RouteRequest, RoutedLoad, Router};
use crate::unprefilled::Unprefilled;
use llm_emu_core::engine::RequestError;
use llm_emu_core::kv::hash::BlockHash;
use llm_emu_core::{
    Engine, EngineCore, EngineScratch, EngineSink, IterationStats, Nanos, NewRequest,
    RequestOutput, StepStats, Wake,
};
use rustc_hash::FxHashMap;

/// What the router counted for one routed request, keyed by instance and caller tag (tags
/// are expected to be unique among live requests, as the drivers make them).
struct Routed {
    prefill_tokens: usize,
    blocks: usize,
    prefilled: bool,
}

/// One replica: an engine, or a data-parallel group whose ranks are instances. The engine is
/// kept inline (the hot case: plain replicas run by the million requests), the group boxed.
#[allow(clippy::large_enum_variant)]
enum Unit {
    One(Member),
    Group(Box<DataParallel>),
}

/// M instances behind a router.
pub struct Replicas {
    units: Vec<Unit>,
    /// Each instance: (unit, rank in the unit).
    slots: Vec<(usize, usize)>,
    router: Box<dyn Router>,
    loads: Vec<RoutedLoad>,
    routed: FxHashMap<(usize, u64), Routed>,
    /// Per instance, the entries of `routed` not yet prefilled: an output that does not finish
    /// its request and is not one of them changes nothing and is not looked up.
    unprefilled: Vec<Unprefilled>,
    /// Which instance holds each live request (for aborts).
    owner: FxHashMap<String, usize>,
    /// Lent to each instance while it runs ([`EngineScratch`]).
    scratch: EngineScratch,
}

impl Replicas {
    /// One instance per engine, in order; each engine's index is set to its position.
    /// Panics without engines (a caller's mistake: the CLI refuses `--replicas 0`).
    pub fn new(engines: Vec<Engine>, router: Box<dyn Router>) -> Replicas {
        assert!(
            !engines.is_empty(),
            "a fleet of replicas needs at least one instance"
        );
        let n = engines.len();
        Replicas {
            units: engines
                .into_iter()
                .enumerate()
                .map(|(i, e)| Unit::One(Member::new(e.with_engine_index(i))))
                .collect(),
            slots: (0..n).map(|i| (i, 0)).collect(),
            router,
            loads: vec![RoutedLoad::default(); n],
            routed: FxHashMap::default(),
            unprefilled: vec![Unprefilled::default(); n],
            owner: FxHashMap::default(),
            scratch: EngineScratch::default(),
        }
    }

    /// Data-parallel groups behind a router, each rank an instance. The groups' engine indexes
    /// must number the ranks across the fleet in order (group 0's ranks first), as
    /// [`DataParallel::new_at`] makes them. Panics without groups.
    pub fn of_groups(groups: Vec<DataParallel>, router: Box<dyn Router>) -> Replicas {
        assert!(
            !groups.is_empty(),
            "a fleet of replicas needs at least one instance"
        );
        let slots: Vec<(usize, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, dp)| (0..dp.size()).map(move |r| (g, r)))
            .collect();
        let n = slots.len();
        Replicas {
            units: groups
                .into_iter()
                .map(|dp| Unit::Group(Box::new(dp)))
                .collect(),
            slots,
            router,
            loads: vec![RoutedLoad::default(); n],
            routed: FxHashMap::default(),
            unprefilled: vec![Unprefilled::default(); n],
            owner: FxHashMap::default(),
            scratch: EngineScratch::default(),
        }
    }

    /// The engine of instance `i`.
    fn engine(&self, i: usize) -> &Engine {
        engine_of(&self.units, self.slots[i])
    }

    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        (0..self.slots.len()).map(move |i| self.engine(i))
    }

    /// The engines, mutably, in order: for setting each one up before the fleet runs (a served
    /// fleet's sampler layer and KV cache events).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.units
            .iter_mut()
            .flat_map(|u| -> Box<dyn Iterator<Item = &mut Engine>> {
                match u {
                    Unit::One(m) => Box::new(std::iter::once(&mut m.engine)),
                    Unit::Group(dp) => Box::new(dp.engines_mut()),
                }
            })
    }

    /// The data-parallel groups, when the replicas are groups.
    pub fn groups(&self) -> impl Iterator<Item = &DataParallel> {
        self.units.iter().filter_map(|u| match u {
            Unit::Group(dp) => Some(dp.as_ref()),
            Unit::One(_) => None,
        })
    }

    pub fn router_name(&self) -> &'static str {
        self.router.name()
    }

    /// The load the router has tracked on each instance.
    pub fn routed_loads(&self) -> &[RoutedLoad] {
        &self.loads
    }

    /// The instance holding a live request.
    pub fn instance_of(&self, request_id: &str) -> Option<usize> {
        self.owner.get(request_id).copied()
    }

    /// Routes and queues `req`, with the session it belongs to if known; returns the
    /// instance. The request is validated by the chosen instance.
    pub fn add_in_session(
        &mut self,
        req: NewRequest,
        tag: u64,
        session: Option<&str>,
    ) -> Result<usize, RequestError> {
        self.add_in_session_lora(req, tag, session, None)
    }

    /// [`Replicas::add_in_session`] for a request running with LoRA adapter `lora` (the
    /// scheduler's `max_loras` rule, [`Engine::set_max_loras`]).
    pub fn add_in_session_lora(
        &mut self,
        req: NewRequest,
        tag: u64,
        session: Option<&str>,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        if self.owner.contains_key(&req.request_id) {
            return Err(RequestError::DuplicateId(req.request_id));
        }
        let units = &self.units;
        let views: Vec<InstanceView<'_>> = self
            .slots
            .iter()
            .zip(&self.loads)
            .map(|(&slot, load)| InstanceView {
                engine: engine_of(units, slot),
                load,
            })
            .collect();
        let route = RouteRequest::new(&req, session);
        let i = self.router.route(&route, &views).min(self.slots.len() - 1);
        drop(views);
        let bs = self.engine(i).config().block_size.max(1);
        let hashes = route.take_prompt_hashes(bs);
        drop(route);
        self.add_hashed(req, tag, i, hashes, lora)
    }

    /// Queues `req` on instance `i` without asking the router (a request sent to that
    /// instance's own address), counted in the load the router tracks; returns `i`. Panics if
    /// `i` is not an instance (a caller's mistake).
    pub fn add_to_instance(
        &mut self,
        req: NewRequest,
        tag: u64,
        i: usize,
    ) -> Result<usize, RequestError> {
        self.add_to_instance_lora(req, tag, i, None)
    }

    /// [`Replicas::add_to_instance`] for a request running with LoRA adapter `lora`.
    pub fn add_to_instance_lora(
        &mut self,
        req: NewRequest,
        tag: u64,
        i: usize,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        if self.owner.contains_key(&req.request_id) {
            return Err(RequestError::DuplicateId(req.request_id));
        }
        let bs = self.engine(i).config().block_size.max(1);
        let hashes = RouteRequest::new(&req, None).take_prompt_hashes(bs);
        self.add_hashed(req, tag, i, hashes, lora)
    }

    /// Queues `req` on instance `i`, whose prompt hashes at that instance's block size are
    /// `hashes`, with LoRA adapter `lora`, counted in the load the router tracks.
    fn add_hashed(
        &mut self,
        req: NewRequest,
        tag: u64,
        i: usize,
        hashes: Vec<BlockHash>,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        let view = InstanceView {
            engine: self.engine(i),
            load: &self.loads[i],
        };
        let cached = view.cached_prefix_blocks(&hashes);
        let bs = self.engine(i).config().block_size.max(1);
        let prompt = req.prompt_token_ids.len();
        let id = req.request_id.clone();
        let (u, rank) = self.slots[i];
        match &mut self.units[u] {
            Unit::One(m) => {
                m.engine
                    .add_tagged_hashed_lora(req, tag, Some((bs, hashes)), lora)?;
                m.pending = true;
            }
            Unit::Group(dp) => {
                dp.add_to_rank_lora(req, tag, Some(rank), lora)
                    .map_err(|e| match e {
                        AddError::Request(e) => e,
                        AddError::RankOutOfRange { .. } => unreachable!("a slot is a rank"),
                    })?;
            }
        }
        let r = Routed {
            prefill_tokens: prompt.saturating_sub(cached * bs),
            blocks: prompt.div_ceil(bs),
            prefilled: false,
        };
        let load = &mut self.loads[i];
        load.requests += 1;
        load.prefill_tokens += r.prefill_tokens;
        load.active_blocks += r.blocks;
        self.unprefilled[i].insert(tag);
        if let Some(old) = self.routed.insert((i, tag), r) {
            if !old.prefilled {
                self.unprefilled[i].remove(tag);
            }
        }
        self.owner.insert(id, i);
        Ok(i)
    }

    fn with_owner(&mut self, request_id: &str, f: impl FnOnce(&mut dyn EngineCore, &str)) {
        if let Some(&i) = self.owner.get(request_id) {
            match &mut self.units[self.slots[i].0] {
                Unit::One(m) => {
                    f(&mut m.engine, request_id);
                    m.pending = true;
                }
                Unit::Group(dp) => f(dp.as_mut(), request_id),
            }
        }
    }
}

/// The engine of the instance at `slot` (unit, rank).
fn engine_of(units: &[Unit], (u, r): (usize, usize)) -> &Engine {
    match &units[u] {
        Unit::One(m) => &m.engine,
        Unit::Group(dp) => dp.rank_engine(r),
    }
}

/// Forwards an instance's stats and keeps the router's load up to date.
struct InstanceTap<'a> {
    loads: &'a mut [RoutedLoad],
    routed: &'a mut FxHashMap<(usize, u64), Routed>,
    unprefilled: &'a mut [Unprefilled],
    owner: &'a mut FxHashMap<String, usize>,
    out: &'a mut dyn EngineSink,
}

impl EngineSink for InstanceTap<'_> {
    fn on_step(&mut self, s: &StepStats) {
        self.out.on_step(s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        // The engine index is the instance (across groups, as the groups number them).
        let instance = it.engine_index;
        let Some(load) = self.loads.get_mut(instance) else {
            self.out.on_iteration(it, outputs);
            return;
        };
        let unprefilled = &mut self.unprefilled[instance];
        for o in outputs {
            if o.finish.is_none() && !unprefilled.may_hold(o.tag) {
                continue;
            }
            let key = (instance, o.tag);
            let Some(r) = self.routed.get_mut(&key) else {
                continue;
            };
            if (o.new_token.is_some() || o.finish.is_some()) && !r.prefilled {
                r.prefilled = true;
                unprefilled.remove(o.tag);
                load.prefill_tokens = load.prefill_tokens.saturating_sub(r.prefill_tokens);
            }
            if o.finish.is_some() {
                load.active_blocks = load.active_blocks.saturating_sub(r.blocks);
                load.requests = load.requests.saturating_sub(1);
                self.routed.remove(&key);
            }
        }
        for f in &it.finished_requests {
            self.owner.remove(&f.request_id);
        }
        self.out.on_iteration(it, outputs);
    }
}

impl EngineCore for Replicas {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.add_in_session(req, tag, None).map(|_| ())
    }

    fn abort(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.abort(id));
    }

    fn finish_stopped(&mut self, request_id: &str) {
        self.with_owner(request_id, |e, id| e.finish_stopped(id));
    }

    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        let mut wake = Wake::Idle;
        for unit in &mut self.units {
            let mut tap = InstanceTap {
                loads: &mut self.loads,
                routed: &mut self.routed,
                unprefilled: &mut self.unprefilled,
                owner: &mut self.owner,
                out: &mut *sink,
            };
            let w = match unit {
                Unit::One(m) => {
                    if m.is_due(now) {
                        m.run(now, &mut tap, &mut self.scratch);
                    }
                    earliest_wake(std::iter::once(&*m))
                }
                // A group decides itself which ranks are due (and, in lockstep, whether its
                // step has ended).
                Unit::Group(dp) => dp.run(now, &mut tap),
            };
            wake = match (wake, w) {
                (Wake::At(a), Wake::At(b)) => Wake::At(a.min(b)),
                (Wake::Idle, w) | (w, Wake::Idle) => w,
            };
        }
        wake
    }

    fn has_work(&self) -> bool {
        self.units.iter().any(|u| match u {
            Unit::One(m) => m.engine.has_work(),
            Unit::Group(dp) => dp.has_work(),
        })
    }

    fn num_unfinished(&self) -> usize {
        self.units
            .iter()
            .map(|u| match u {
                Unit::One(m) => m.engine.num_unfinished(),
                Unit::Group(dp) => dp.num_unfinished(),
            })
            .sum()
    }
}
