//! Prefill/decode disaggregation (vLLM's `kv_transfer_config`: prefill instances are
//! `kv_producer`s, decode instances `kv_consumer`s), as a disaggregating proxy runs it:
//!
//! 1. a request arrives; the router picks a prefill instance and a decode instance (as vLLM's
//!    disaggregation proxy and llm-d's P/D scheduler pick both up front);
//! 2. the prefill instance runs it with `max_tokens = 1`: the whole prompt and one token, which
//!    the client does not see;
//! 3. its KV blocks then move to the decode instance: `⌈prompt / block_size⌉` blocks of the
//!    model's block bytes over the link ([`Link::transfer_ns`]);
//! 4. the decode instance admits the request with the prompt computed but for its last token
//!    ([`Engine::add_prefilled`], vLLM's `get_num_new_matched_tokens` and the
//!    `WAITING_FOR_REMOTE_KVS` → `WAITING` path); its first step recomputes that token and
//!    samples the first token the client sees.
//!
//! TTFT is therefore prefill step(s) + transfer + the decode instance's first step; TPOT and
//! E2E come from the decode instance; every time is measured from the client's arrival.
//! Engine index = the instance's position in the cluster.
//!
//! A side may be one vLLM data-parallel deployment instead
//! ([`Disaggregated::with_data_parallel_side`]): its ranks are chosen by vLLM's DP load
//! balancer ([`LoadBalancer`], the counts each rank reports, published with vLLM's delays), as
//! a proxy in front of a `--data-parallel-size N` server reaches one rank. The prefill rank is
//! chosen when the request arrives; the decode rank when the prefill half is done, when the
//! proxy sends the decode request (with the transfer parameters) to the decode deployment — the
//! KV then moves to that rank. A decode rank counts a request whose KV is on its way as waiting
//! (vLLM's `WAITING_FOR_REMOTE_KVS` requests are in the scheduler's waiting queue).

use crate::cluster::{Link, PdRole};
use crate::dp_lb::LoadBalancer;
use crate::member::{earliest_wake, Member};
use crate::router::{InstanceView, RouteRequest, RoutedLoad, Router};
use llm_emu_core::engine::RequestError;
use llm_emu_core::{
    Engine, EngineCore, EngineScratch, EngineSink, IterationStats, Nanos, NewRequest,
    RequestOutput, StepStats, Wake,
};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Where a live request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Prefill,
    Transfer,
    Decode,
}

struct Live {
    /// The client's request, to hand to the decode instance.
    req: NewRequest,
    prefill: usize,
    /// `None` until the decode side's balancer places it (a data-parallel decode side).
    decode: Option<usize>,
    phase: Phase,
    aborted: bool,
    /// The LoRA adapter it runs with on both instances.
    lora: Option<u64>,
}

/// Prefill and decode instances with KV transfer between them.
pub struct Disaggregated {
    /// Every instance, in cluster order.
    members: Vec<Member>,
    /// Lent to each instance while it runs ([`EngineScratch`]).
    scratch: EngineScratch,
    roles: Vec<PdRole>,
    prefill_idx: Vec<usize>,
    decode_idx: Vec<usize>,
    /// Each instance's position among its side's instances (its rank on a data-parallel side).
    rank_in_side: Vec<usize>,
    prefill_router: Box<dyn Router>,
    decode_router: Box<dyn Router>,
    /// Each side's DP load balancer (prefill, decode) when that side is one data-parallel
    /// deployment; its ranks are the side's instances in cluster order.
    balancers: [Option<LoadBalancer>; 2],
    /// Each instance's `(waiting, running)` as its engine last reported them.
    counts: Vec<[usize; 2]>,
    /// KV transfers in flight to each instance.
    in_transfer: Vec<usize>,
    loads: Vec<RoutedLoad>,
    /// Bytes of one KV block on each instance (all layers, K and V).
    block_bytes: Vec<u64>,
    link: Link,
    live: FxHashMap<u64, Live>,
    by_id: FxHashMap<String, u64>,
    /// KV transfers in flight: (arrival at the decode instance, sequence, tag).
    transfers: BinaryHeap<Reverse<(Nanos, u64, u64)>>,
    seq: u64,
    transferred_bytes: u64,
    /// Requests sent to one instance directly (an instance's own port), by tag: each runs
    /// whole there, as a vLLM instance with a KV connector runs a request that carries no
    /// transfer parameters; the value says whether it has its first token.
    direct: FxHashMap<u64, bool>,
    /// Which instance holds each live direct request (for aborts).
    direct_owner: FxHashMap<String, usize>,
}

/// Why a disaggregated fleet could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PdError {
    #[error("a prefill/decode fleet needs at least one {0} instance")]
    MissingRole(&'static str),
    #[error("{instances} instances but {roles} roles and {bytes} block sizes")]
    Mismatch {
        instances: usize,
        roles: usize,
        bytes: usize,
    },
}

impl Disaggregated {
    /// `engines` in cluster order with their roles and KV bytes per block; `prefill_router`
    /// picks among prefill instances, `decode_router` among decode instances.
    pub fn new(
        engines: Vec<Engine>,
        roles: Vec<PdRole>,
        block_bytes: Vec<u64>,
        link: Link,
        prefill_router: Box<dyn Router>,
        decode_router: Box<dyn Router>,
    ) -> Result<Disaggregated, PdError> {
        if engines.len() != roles.len() || engines.len() != block_bytes.len() {
            return Err(PdError::Mismatch {
                instances: engines.len(),
                roles: roles.len(),
                bytes: block_bytes.len(),
            });
        }
        let idx =
            |r: PdRole| -> Vec<usize> { (0..roles.len()).filter(|&i| roles[i] == r).collect() };
        let (prefill_idx, decode_idx) = (idx(PdRole::Prefill), idx(PdRole::Decode));
        if prefill_idx.is_empty() {
            return Err(PdError::MissingRole("prefill"));
        }
        if decode_idx.is_empty() {
            return Err(PdError::MissingRole("decode"));
        }
        let n = engines.len();
        let mut rank_in_side = vec![0; n];
        for side in [&prefill_idx, &decode_idx] {
            for (r, &i) in side.iter().enumerate() {
                rank_in_side[i] = r;
            }
        }
        Ok(Disaggregated {
            scratch: EngineScratch::default(),
            rank_in_side,
            members: engines
                .into_iter()
                .enumerate()
                .map(|(i, e)| Member::new(e.with_engine_index(i)))
                .collect(),
            roles,
            prefill_idx,
            decode_idx,
            prefill_router,
            decode_router,
            balancers: [None, None],
            counts: vec![[0, 0]; n],
            in_transfer: vec![0; n],
            loads: vec![RoutedLoad::default(); n],
            block_bytes,
            link,
            live: FxHashMap::default(),
            by_id: FxHashMap::default(),
            transfers: BinaryHeap::new(),
            seq: 0,
            transferred_bytes: 0,
            direct: FxHashMap::default(),
            direct_owner: FxHashMap::default(),
        })
    }

    /// Makes the `role` side one vLLM data-parallel deployment behind `api_servers` API servers
    /// (vLLM's `--api-server-count`, default the DP size): its instances, in cluster order, are
    /// ranks 0…N−1, chosen by vLLM's DP load balancer instead of a router.
    pub fn with_data_parallel_side(mut self, role: PdRole, api_servers: usize) -> Disaggregated {
        let ranks = self.side(role).len();
        self.balancers[side_of(role)] = Some(LoadBalancer::new(ranks, api_servers));
        self
    }

    /// The balancer of the `role` side, when it is a data-parallel deployment (for tests and
    /// reports).
    pub fn load_balancer(&self, role: PdRole) -> Option<&LoadBalancer> {
        self.balancers[side_of(role)].as_ref()
    }

    fn side(&self, role: PdRole) -> &[usize] {
        match role {
            PdRole::Prefill => &self.prefill_idx,
            PdRole::Decode => &self.decode_idx,
        }
    }

    /// The engines, mutably, in cluster order: for setting each one up before the fleet runs
    /// (a served fleet's sampler layer and KV cache events).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.members.iter_mut().map(|m| &mut m.engine)
    }

    /// Routes `req` through the fleet (a prefill instance, the transfer, a decode instance),
    /// the decode router seeing `session`; returns the decode instance, or the prefill
    /// instance where a data-parallel decode side places the request only once its prefill is
    /// done.
    pub fn add_in_session(
        &mut self,
        req: NewRequest,
        tag: u64,
        session: Option<&str>,
    ) -> Result<usize, RequestError> {
        self.add_in_session_lora(req, tag, session, None)
    }

    /// [`Disaggregated::add_in_session`] for a request running with LoRA adapter `lora`
    /// (on both instances; the scheduler's `max_loras` rule, [`Engine::set_max_loras`]).
    pub fn add_in_session_lora(
        &mut self,
        req: NewRequest,
        tag: u64,
        session: Option<&str>,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        self.check_new_id(&req.request_id)?;
        let d = match self.balancers[side_of(PdRole::Decode)] {
            Some(_) => None,
            None => Some(self.pick(&req, PdRole::Decode, session)),
        };
        // A data-parallel side's ranks are configured alike: its first answers for all.
        let dcfg = self.members[d.unwrap_or(self.decode_idx[0])]
            .engine
            .config();
        let prompt_len = req.prompt_token_ids.len();
        if prompt_len >= dcfg.max_model_len {
            return Err(RequestError::PromptTooLong {
                prompt_len,
                max_model_len: dcfg.max_model_len,
            });
        }
        let balanced = self.balancers[side_of(PdRole::Prefill)].as_mut().map(|lb| {
            lb.advance(req.arrival);
            lb.peek()
        });
        let p = match balanced {
            Some(r) => self.prefill_idx[r],
            None => self.pick(&req, PdRole::Prefill, session),
        };
        let mut first = req.clone();
        first.sampling.max_tokens = 1;
        first.sampling.min_tokens = first.sampling.min_tokens.min(1);
        let m = &mut self.members[p];
        m.engine.add_tagged_lora(first, tag, lora)?;
        m.pending = true;
        if let (Some(r), Some(lb)) = (balanced, self.balancers[side_of(PdRole::Prefill)].as_mut()) {
            lb.commit(r);
        }
        self.loads[p].requests += 1;
        if let Some(d) = d {
            self.loads[d].requests += 1;
        }

        self.by_id.insert(req.request_id.clone(), tag);
        self.live.insert(
            tag,
            Live {
                req,
                prefill: p,
                decode: d,
                phase: Phase::Prefill,
                aborted: false,
                lora,
            },
        );
        Ok(d.unwrap_or(p))
    }

    /// Runs `req` whole on instance `i`, without the other role (a request sent to that
    /// instance's own address); returns `i`. Panics if `i` is not an instance (a caller's
    /// mistake).
    pub fn add_to_instance(
        &mut self,
        req: NewRequest,
        tag: u64,
        i: usize,
    ) -> Result<usize, RequestError> {
        self.add_to_instance_lora(req, tag, i, None)
    }

    /// [`Disaggregated::add_to_instance`] for a request running with LoRA adapter `lora`.
    pub fn add_to_instance_lora(
        &mut self,
        req: NewRequest,
        tag: u64,
        i: usize,
        lora: Option<u64>,
    ) -> Result<usize, RequestError> {
        self.check_new_id(&req.request_id)?;
        let id = req.request_id.clone();
        let m = &mut self.members[i];
        m.engine.add_tagged_lora(req, tag, lora)?;
        m.pending = true;
        self.direct.insert(tag, false);
        self.direct_owner.insert(id, i);
        Ok(i)
    }

    fn check_new_id(&self, id: &str) -> Result<(), RequestError> {
        if self.by_id.contains_key(id) || self.direct_owner.contains_key(id) {
            return Err(RequestError::DuplicateId(id.to_string()));
        }
        Ok(())
    }

    /// The engines, in cluster order.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.members.iter().map(|m| &m.engine)
    }

    pub fn roles(&self) -> &[PdRole] {
        &self.roles
    }

    /// KV bytes moved from prefill to decode instances so far.
    pub fn transferred_bytes(&self) -> u64 {
        self.transferred_bytes
    }

    /// The KV transfer time of a prompt of `prompt_len` tokens computed on instance `i`.
    pub fn transfer_ns(&self, i: usize, prompt_len: usize) -> u64 {
        self.link.transfer_ns(self.kv_bytes(i, prompt_len))
    }

    fn kv_bytes(&self, i: usize, prompt_len: usize) -> u64 {
        let bs = self.members[i].engine.config().block_size.max(1);
        prompt_len.div_ceil(bs) as u64 * self.block_bytes[i]
    }

    fn pick(&mut self, req: &NewRequest, role: PdRole, session: Option<&str>) -> usize {
        let (idx, router) = match role {
            PdRole::Prefill => (&self.prefill_idx, &mut self.prefill_router),
            PdRole::Decode => (&self.decode_idx, &mut self.decode_router),
        };
        let views: Vec<InstanceView<'_>> = idx
            .iter()
            .map(|&i| InstanceView {
                engine: &self.members[i].engine,
                load: &self.loads[i],
            })
            .collect();
        let k = router
            .route(&RouteRequest::new(req, session), &views)
            .min(idx.len() - 1);
        idx[k]
    }

    /// Starts due KV transfers' decode halves.
    fn deliver(&mut self, now: Nanos) {
        while let Some(&Reverse((t, _, tag))) = self.transfers.peek() {
            if t > now {
                break;
            }
            self.transfers.pop();
            let Some(l) = self.live.get_mut(&tag) else {
                continue;
            };
            let Some(d) = l.decode else {
                continue;
            };
            l.phase = Phase::Decode;
            self.in_transfer[d] = self.in_transfer[d].saturating_sub(1);
            let lora = l.lora;
            let m = &mut self.members[d];
            let id = l.req.request_id.clone();
            if m.engine
                .add_prefilled_lora(l.req.clone(), tag, lora)
                .is_ok()
            {
                if l.aborted {
                    m.engine.abort(&id);
                }
            } else {
                // Checked at submission; a refusal here would leave the request unanswered.
                self.live.remove(&tag);
                self.by_id.remove(&id);
            }
            m.pending = true;
        }
    }
}

/// Forwards an instance's stats. A prefill instance's outputs are the proxy's, not the
/// client's: they start the KV transfer and are otherwise swallowed, with its first-token and
/// finish statistics; its steps and prompt counts are reported.
struct Tap<'a> {
    instance: usize,
    role: PdRole,
    /// The instance's position among its side's instances.
    rank: usize,
    now: Nanos,
    balancers: &'a mut [Option<LoadBalancer>; 2],
    counts: &'a mut [[usize; 2]],
    in_transfer: &'a mut [usize],
    decode_idx: &'a [usize],
    transfer_ns: &'a dyn Fn(usize, usize) -> u64,
    live: &'a mut FxHashMap<u64, Live>,
    by_id: &'a mut FxHashMap<String, u64>,
    loads: &'a mut [RoutedLoad],
    transfers: &'a mut BinaryHeap<Reverse<(Nanos, u64, u64)>>,
    seq: &'a mut u64,
    transferred: &'a mut u64,
    kv_bytes: &'a dyn Fn(usize, usize) -> u64,
    direct: &'a mut FxHashMap<u64, bool>,
    direct_owner: &'a mut FxHashMap<String, usize>,
    out: &'a mut dyn EngineSink,
}

impl Tap<'_> {
    /// Records the instance's `(waiting, running)` and, on a data-parallel side, reports them
    /// to its balancer (the KV transfers on their way to it counted as waiting).
    fn report(&mut self, waiting: usize, running: usize) {
        self.counts[self.instance] = [waiting, running];
        let i = self.instance;
        if let Some(lb) = self.balancers[side_of(self.role)].as_mut() {
            lb.report(self.rank, waiting + self.in_transfer[i], running, self.now);
        }
    }

    /// The decode instance of a request whose prefill half is done: the router's choice made
    /// at its arrival, else the decode side's balancer's now (the decode request reaching
    /// that deployment). Counts the transfer on its way there.
    fn decode_instance(&mut self, chosen: Option<usize>) -> usize {
        let decode = side_of(PdRole::Decode);
        let d = match (chosen, self.balancers[decode].as_mut()) {
            (Some(d), _) => d,
            (None, Some(lb)) => {
                lb.advance(self.now);
                let r = lb.peek();
                lb.commit(r);
                let d = self.decode_idx[r];
                self.loads[d].requests += 1;
                d
            }
            (None, None) => unreachable!("a decode instance is routed at arrival"),
        };
        self.in_transfer[d] += 1;
        if let Some(lb) = self.balancers[decode].as_mut() {
            let [waiting, running] = self.counts[d];
            let r = self.decode_idx.iter().position(|&x| x == d).unwrap_or(0);
            lb.report(r, waiting + self.in_transfer[d], running, self.now);
        }
        d
    }
}

impl EngineSink for Tap<'_> {
    fn on_step(&mut self, s: &StepStats) {
        self.report(s.scheduler.num_waiting_reqs, s.scheduler.num_running_reqs);
        self.out.on_step(s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        self.report(it.scheduler.num_waiting_reqs, it.scheduler.num_running_reqs);
        for f in &it.finished_requests {
            if self.direct.contains_key(&f.tag) {
                self.direct_owner.remove(&f.request_id);
            }
        }
        match self.role {
            PdRole::Decode => {
                for o in outputs.iter().filter(|o| o.finish.is_some()) {
                    self.direct.remove(&o.tag);
                }
                for o in outputs.iter().filter(|o| o.finish.is_some()) {
                    if let Some(l) = self.live.remove(&o.tag) {
                        self.by_id.remove(&l.req.request_id);
                        if let Some(d) = l.decode {
                            self.loads[d].requests = self.loads[d].requests.saturating_sub(1);
                        }
                    }
                }
                self.out.on_iteration(it, outputs);
            }
            PdRole::Prefill => {
                // Which outputs are the proxy's (the prefill half of a routed request), before
                // the loop below moves them on.
                let proxied: Vec<bool> = outputs
                    .iter()
                    .map(|o| {
                        self.live.get(&o.tag).is_some_and(|l| {
                            l.phase == Phase::Prefill && l.prefill == self.instance
                        })
                    })
                    .collect();
                // Requests that ended on the prefill side without their token (aborted): the
                // client hears of them from here.
                let mut ended: Vec<u64> = Vec::new();
                for o in outputs.iter().filter(|o| o.finish.is_some()) {
                    let Some(l) = self.live.get_mut(&o.tag) else {
                        continue;
                    };
                    if l.phase != Phase::Prefill || l.prefill != self.instance {
                        continue;
                    }
                    self.loads[l.prefill].requests =
                        self.loads[l.prefill].requests.saturating_sub(1);
                    let prompt = l.req.prompt_token_ids.len();
                    if o.new_token.is_none() {
                        ended.push(o.tag);
                        let l = self.live.remove(&o.tag);
                        if let Some(l) = l {
                            self.by_id.remove(&l.req.request_id);
                            if let Some(d) = l.decode {
                                self.loads[d].requests = self.loads[d].requests.saturating_sub(1);
                            }
                        }
                        continue;
                    }
                    let chosen = l.decode;
                    let d = self.decode_instance(chosen);
                    let Some(l) = self.live.get_mut(&o.tag) else {
                        continue;
                    };
                    l.decode = Some(d);
                    l.phase = Phase::Transfer;
                    *self.transferred += (self.kv_bytes)(self.instance, prompt);
                    let at = self.now + Nanos((self.transfer_ns)(self.instance, prompt));
                    *self.seq += 1;
                    self.transfers.push(Reverse((at, *self.seq, o.tag)));
                }
                // What the client sees: requests sent here directly, and the proxied ones
                // that ended here. The proxy's first tokens (each a request's only token here)
                // are hidden, with their time-to-first-token entries, which come in output
                // order.
                let mut hidden = it.clone();
                hidden.time_to_first_tokens_iter.clear();
                let mut firsts = it.time_to_first_tokens_iter.iter();
                let mut shown: Vec<RequestOutput> = Vec::new();
                for (o, &proxy) in outputs.iter().zip(&proxied) {
                    let direct = self.direct.get_mut(&o.tag);
                    if o.new_token.is_some() {
                        let first = match &direct {
                            Some(got) => !**got,
                            None => proxy,
                        };
                        if first {
                            let ttft = firsts.next();
                            if let (Some(t), Some(_)) = (ttft, &direct) {
                                hidden.time_to_first_tokens_iter.push(*t);
                            }
                        }
                        if proxy {
                            hidden.num_generation_tokens =
                                hidden.num_generation_tokens.saturating_sub(1);
                        }
                    }
                    if let Some(got) = direct {
                        *got |= o.new_token.is_some();
                        shown.push(*o);
                        if o.finish.is_some() {
                            self.direct.remove(&o.tag);
                        }
                    } else if ended.contains(&o.tag) {
                        shown.push(*o);
                    }
                }
                let shown_tags: Vec<u64> = shown.iter().map(|o| o.tag).collect();
                hidden
                    .finished_requests
                    .retain(|f| shown_tags.contains(&f.tag));
                self.out.on_iteration(&hidden, &shown);
            }
        }
    }
}

impl EngineCore for Disaggregated {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.add_in_session(req, tag, None).map(|_| ())
    }

    fn abort(&mut self, request_id: &str) {
        if let Some(&i) = self.direct_owner.get(request_id) {
            let m = &mut self.members[i];
            m.engine.abort(request_id);
            m.pending = true;
            return;
        }
        let Some(l) = self
            .by_id
            .get(request_id)
            .and_then(|t| self.live.get_mut(t))
        else {
            return;
        };
        l.aborted = true;
        let i = match (l.phase, l.decode) {
            (Phase::Prefill, _) => l.prefill,
            (Phase::Decode, Some(d)) => d,
            // Aborted when it reaches the decode instance, which reports the finish.
            (Phase::Transfer, _) | (Phase::Decode, None) => return,
        };
        let m = &mut self.members[i];
        m.engine.abort(request_id);
        m.pending = true;
    }

    fn finish_stopped(&mut self, request_id: &str) {
        if let Some(&i) = self.direct_owner.get(request_id) {
            let m = &mut self.members[i];
            m.engine.finish_stopped(request_id);
            m.pending = true;
            return;
        }
        if let Some(l) = self.by_id.get(request_id).and_then(|t| self.live.get(t)) {
            if let (Phase::Decode, Some(d)) = (l.phase, l.decode) {
                let m = &mut self.members[d];
                m.engine.finish_stopped(request_id);
                m.pending = true;
            }
        }
    }

    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        for lb in self.balancers.iter_mut().flatten() {
            lb.advance(now);
        }
        self.deliver(now);
        let link = self.link;
        let block_bytes = self.block_bytes.clone();
        let block_sizes: Vec<usize> = self
            .members
            .iter()
            .map(|m| m.engine.config().block_size.max(1))
            .collect();
        let kv_bytes = |i: usize, prompt: usize| -> u64 {
            prompt.div_ceil(block_sizes[i]) as u64 * block_bytes[i]
        };
        let transfer_ns =
            |i: usize, prompt: usize| -> u64 { link.transfer_ns(kv_bytes(i, prompt)) };
        for (i, m) in self.members.iter_mut().enumerate() {
            if m.is_due(now) {
                let mut tap = Tap {
                    instance: i,
                    role: self.roles[i],
                    rank: self.rank_in_side[i],
                    now,
                    balancers: &mut self.balancers,
                    counts: &mut self.counts,
                    in_transfer: &mut self.in_transfer,
                    decode_idx: &self.decode_idx,
                    transfer_ns: &transfer_ns,
                    live: &mut self.live,
                    by_id: &mut self.by_id,
                    loads: &mut self.loads,
                    transfers: &mut self.transfers,
                    seq: &mut self.seq,
                    transferred: &mut self.transferred_bytes,
                    kv_bytes: &kv_bytes,
                    direct: &mut self.direct,
                    direct_owner: &mut self.direct_owner,
                    out: sink,
                };
                m.run(now, &mut tap, &mut self.scratch);
            }
        }
        // A transfer that ended at `now` reaches its decode instance now.
        if self
            .transfers
            .peek()
            .is_some_and(|Reverse((t, _, _))| *t <= now)
        {
            return self.run(now, sink);
        }
        let members = earliest_wake(self.members.iter());
        let transfer = self.transfers.peek().map(|Reverse((t, _, _))| *t);
        match (members, transfer) {
            (Wake::At(a), Some(b)) => Wake::At(a.min(b)),
            (Wake::At(a), None) => Wake::At(a),
            (Wake::Idle, Some(b)) => Wake::At(b),
            (Wake::Idle, None) => Wake::Idle,
        }
    }

    fn has_work(&self) -> bool {
        !self.transfers.is_empty() || self.members.iter().any(|m| m.engine.has_work())
    }

    fn num_unfinished(&self) -> usize {
        self.live.len() + self.direct.len()
    }
}

/// The index of `role`'s side in per-side arrays (prefill 0, decode 1).
fn side_of(role: PdRole) -> usize {
    match role {
        PdRole::Prefill => 0,
        PdRole::Decode => 1,
    }
}
