//! Independent instances behind a router: each instance is its own engine (its own
//! configuration, KV cache and latency model, so fleets may be heterogeneous); each request
//! goes to the one instance its [`Router`] picks. Engine index = instance index.

use crate::member::{earliest_wake, Member};
use crate::router::{InstanceView, RouteRequest, RoutedLoad, Router};
use llm_emu_core::engine::RequestError;
use llm_emu_core::{
    Engine, EngineCore, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput, StepStats,
    Wake,
};
use rustc_hash::FxHashMap;

/// What the router counted for one routed request, keyed by instance and caller tag (tags
/// are expected to be unique among live requests, as the drivers make them).
struct Routed {
    prefill_tokens: usize,
    blocks: usize,
    prefilled: bool,
}

/// M instances behind a router.
pub struct Replicas {
    members: Vec<Member>,
    router: Box<dyn Router>,
    loads: Vec<RoutedLoad>,
    routed: FxHashMap<(usize, u64), Routed>,
    /// Which instance holds each live request (for aborts).
    owner: FxHashMap<String, usize>,
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
            members: engines
                .into_iter()
                .enumerate()
                .map(|(i, e)| Member::new(e.with_engine_index(i)))
                .collect(),
            router,
            loads: vec![RoutedLoad::default(); n],
            routed: FxHashMap::default(),
            owner: FxHashMap::default(),
        }
    }

    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.members.iter().map(|m| &m.engine)
    }

    /// The engines, mutably, in order: for setting each one up before the fleet runs (a served
    /// fleet's sampler layer and KV cache events).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.members.iter_mut().map(|m| &mut m.engine)
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
        if self.owner.contains_key(&req.request_id) {
            return Err(RequestError::DuplicateId(req.request_id));
        }
        let views: Vec<InstanceView<'_>> = self
            .members
            .iter()
            .zip(&self.loads)
            .map(|(m, load)| InstanceView {
                engine: &m.engine,
                load,
            })
            .collect();
        let i = self
            .router
            .route(
                &RouteRequest {
                    request: &req,
                    session,
                },
                &views,
            )
            .min(self.members.len() - 1);
        self.add_to_instance(req, tag, i)
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
        if self.owner.contains_key(&req.request_id) {
            return Err(RequestError::DuplicateId(req.request_id));
        }
        let view = InstanceView {
            engine: &self.members[i].engine,
            load: &self.loads[i],
        };
        let cached = view.cached_prefix_blocks(&prompt_hashes(&view, &req));
        let bs = self.members[i].engine.config().block_size.max(1);
        let prompt = req.prompt_token_ids.len();
        let id = req.request_id.clone();
        let m = &mut self.members[i];
        m.engine.add_tagged(req, tag)?;
        m.pending = true;
        let r = Routed {
            prefill_tokens: prompt.saturating_sub(cached * bs),
            blocks: prompt.div_ceil(bs),
            prefilled: false,
        };
        let load = &mut self.loads[i];
        load.requests += 1;
        load.prefill_tokens += r.prefill_tokens;
        load.active_blocks += r.blocks;
        self.routed.insert((i, tag), r);
        self.owner.insert(id, i);
        Ok(i)
    }

    fn with_owner(&mut self, request_id: &str, f: impl FnOnce(&mut Engine, &str)) {
        if let Some(&i) = self.owner.get(request_id) {
            let m = &mut self.members[i];
            f(&mut m.engine, request_id);
            m.pending = true;
        }
    }
}

/// The request's prompt block hashes as instance `v`'s KV manager computes them.
fn prompt_hashes(v: &InstanceView<'_>, req: &NewRequest) -> Vec<llm_emu_core::kv::hash::BlockHash> {
    let mut h = Vec::new();
    llm_emu_core::kv::hash::extend_block_hashes(
        &mut h,
        &req.prompt_token_ids,
        v.engine.config().block_size.max(1),
        req.cache_salt.as_deref(),
    );
    h
}

/// Forwards an instance's stats and keeps the router's load up to date.
struct InstanceTap<'a> {
    instance: usize,
    load: &'a mut RoutedLoad,
    routed: &'a mut FxHashMap<(usize, u64), Routed>,
    owner: &'a mut FxHashMap<String, usize>,
    out: &'a mut dyn EngineSink,
}

impl EngineSink for InstanceTap<'_> {
    fn on_step(&mut self, s: &StepStats) {
        self.out.on_step(s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        for o in outputs {
            let key = (self.instance, o.tag);
            let Some(r) = self.routed.get_mut(&key) else {
                continue;
            };
            if (o.new_token.is_some() || o.finish.is_some()) && !r.prefilled {
                r.prefilled = true;
                self.load.prefill_tokens =
                    self.load.prefill_tokens.saturating_sub(r.prefill_tokens);
            }
            if o.finish.is_some() {
                self.load.active_blocks = self.load.active_blocks.saturating_sub(r.blocks);
                self.load.requests = self.load.requests.saturating_sub(1);
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
        for (i, (m, load)) in self.members.iter_mut().zip(&mut self.loads).enumerate() {
            if m.is_due(now) {
                let mut tap = InstanceTap {
                    instance: i,
                    load,
                    routed: &mut self.routed,
                    owner: &mut self.owner,
                    out: sink,
                };
                m.run(now, &mut tap);
            }
        }
        earliest_wake(self.members.iter())
    }

    fn has_work(&self) -> bool {
        self.members.iter().any(|m| m.engine.has_work())
    }

    fn num_unfinished(&self) -> usize {
        self.members.iter().map(|m| m.engine.num_unfinished()).sum()
    }
}
