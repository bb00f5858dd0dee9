//! How a request is given to one of several independent instances. A [`Router`] sees the
//! request and, per instance, the engine (its scheduler and KV cache, read only) and the load
//! the router itself has tracked ([`RoutedLoad`]). New policies implement the trait and are
//! named in [`router_by_name`].

use llm_emu_core::kv::hash::BlockHash;
use llm_emu_core::{Engine, NewRequest};
use rustc_hash::FxHashMap;
use std::cell::{Ref, RefCell};
use thiserror::Error;

/// The router names `--router` accepts.
pub const ROUTER_NAMES: [&str; 4] = ["round-robin", "least-loaded", "prefix-aware", "session"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouterError {
    #[error("unknown router `{0}` (known: round-robin, least-loaded, prefix-aware, session)")]
    Unknown(String),
}

/// The load a router has put on one instance and not yet seen finish, tracked from its own
/// decisions as Dynamo's KV router tracks active sequences (its "slot manager").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutedLoad {
    /// Requests routed there and not finished.
    pub requests: usize,
    /// Prompt tokens still to prefill (not found cached when routed) of requests without
    /// their first token yet.
    pub prefill_tokens: usize,
    /// KV blocks of the prompts of requests not finished.
    pub active_blocks: usize,
}

/// What a router sees of a request.
pub struct RouteRequest<'a> {
    pub request: &'a NewRequest,
    /// The session it belongs to (the OpenAI `user` field or a session header), if known.
    pub session: Option<&'a str>,
    /// The prompt's block hashes per block size, computed on first use: a prompt is hashed
    /// once per request whoever asks (the router, the fleet's load bookkeeping, the engine).
    hashes: RefCell<Vec<(usize, Vec<BlockHash>)>>,
}

impl<'a> RouteRequest<'a> {
    pub fn new(request: &'a NewRequest, session: Option<&'a str>) -> RouteRequest<'a> {
        RouteRequest {
            request,
            session,
            hashes: RefCell::new(Vec::new()),
        }
    }

    /// The prompt's full-block hashes at `block_size` tokens a block, salt included, as an
    /// engine's KV manager computes them.
    pub fn prompt_hashes(&self, block_size: usize) -> Ref<'_, [BlockHash]> {
        let k = self.hashed_at(block_size);
        Ref::map(self.hashes.borrow(), |sets| sets[k].1.as_slice())
    }

    /// Takes the prompt's hashes at `block_size` out (computing them if no one asked yet), for
    /// the engine the request goes to.
    pub fn take_prompt_hashes(&self, block_size: usize) -> Vec<BlockHash> {
        let k = self.hashed_at(block_size);
        std::mem::take(&mut self.hashes.borrow_mut()[k].1)
    }

    /// Where the hashes at `block_size` are, computed if absent.
    fn hashed_at(&self, block_size: usize) -> usize {
        let mut sets = self.hashes.borrow_mut();
        if let Some(k) = sets.iter().position(|(bs, _)| *bs == block_size) {
            return k;
        }
        let mut h = Vec::new();
        let r = self.request;
        r.prompt_token_ids
            .extend_block_hashes(&mut h, block_size, r.cache_salt.as_deref());
        sets.push((block_size, h));
        sets.len() - 1
    }
}

/// What a router sees of one instance.
pub struct InstanceView<'a> {
    pub engine: &'a Engine,
    pub load: &'a RoutedLoad,
}

impl InstanceView<'_> {
    /// Requests in the waiting queue, the engine's input queue included (those routed but not
    /// yet taken in).
    pub fn waiting(&self) -> usize {
        self.engine
            .num_unfinished()
            .saturating_sub(self.engine.scheduler().num_running())
    }

    /// Fraction of KV blocks in use, 0–1.
    pub fn kv_usage(&self) -> f64 {
        self.engine.scheduler().kv().usage()
    }

    /// Leading blocks of `hashes` cached on this instance (in use or free but not evicted).
    pub fn cached_prefix_blocks(&self, hashes: &[BlockHash]) -> usize {
        let kv = self.engine.scheduler().kv();
        if !kv.enable_caching() {
            return 0;
        }
        hashes
            .iter()
            .take_while(|h| kv.pool().get_cached_block(**h).is_some())
            .count()
    }
}

/// A routing policy. `route` returns an index into `instances` (never empty).
pub trait Router: Send {
    fn name(&self) -> &'static str;
    fn route(&mut self, req: &RouteRequest<'_>, instances: &[InstanceView<'_>]) -> usize;
}

/// The router `name` names.
pub fn router_by_name(name: &str) -> Result<Box<dyn Router>, RouterError> {
    Ok(match name {
        "round-robin" => Box::new(RoundRobin::default()),
        "least-loaded" => Box::new(LeastLoaded::default()),
        "prefix-aware" => Box::new(PrefixAware::default()),
        "session" => Box::new(Session::default()),
        _ => return Err(RouterError::Unknown(name.to_string())),
    })
}

/// Instances in turn, 0, 1, …, M−1, 0, …
#[derive(Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }
    fn route(&mut self, _: &RouteRequest<'_>, instances: &[InstanceView<'_>]) -> usize {
        let i = self.next % instances.len();
        self.next = i + 1;
        i
    }
}

/// Picks the highest of `scores`; among equal scores, the first at or after `start`
/// (wrapping), so that ties rotate instead of piling onto instance 0 (llm-d's
/// `max-score-picker` and Dynamo's KV router pick among ties at random; rotating keeps runs
/// reproducible).
fn pick_max(scores: &[f64], start: usize) -> usize {
    let n = scores.len();
    let mut best = (f64::NEG_INFINITY, start % n.max(1));
    for k in 0..n {
        let i = (start + k) % n;
        if scores[i] > best.0 {
            best = (scores[i], i);
        }
    }
    best.1
}

/// The tie rotation of a scoring router: where the next scan starts.
#[derive(Default)]
struct TieBreak {
    next: usize,
}

impl TieBreak {
    fn pick(&mut self, scores: &[f64]) -> usize {
        let i = pick_max(scores, self.next);
        self.next = i + 1;
        i
    }
}

/// llm-d's load scorers as its inference-scheduling profile weighs them: `queue-scorer`
/// (weight 2: `(max − waiting) / (max − min)` over the instances, 1 when all are equal) plus
/// `kv-cache-utilization-scorer` (weight 2: `1 − KV usage`); the highest total wins, ties
/// rotating. Counts are read live (llm-d scrapes them every 50 ms).
#[derive(Default)]
pub struct LeastLoaded {
    ties: TieBreak,
}

/// Weights of llm-d's `queue-scorer` and `kv-cache-utilization-scorer`.
pub const QUEUE_SCORER_WEIGHT: f64 = 2.0;
pub const KV_USAGE_SCORER_WEIGHT: f64 = 2.0;

impl Router for LeastLoaded {
    fn name(&self) -> &'static str {
        "least-loaded"
    }
    fn route(&mut self, _: &RouteRequest<'_>, instances: &[InstanceView<'_>]) -> usize {
        let waiting: Vec<usize> = instances.iter().map(InstanceView::waiting).collect();
        let (min, max) = (
            waiting.iter().copied().min().unwrap_or(0),
            waiting.iter().copied().max().unwrap_or(0),
        );
        let scores: Vec<f64> = instances
            .iter()
            .zip(&waiting)
            .map(|(v, &w)| {
                let queue = if max == min {
                    1.0
                } else {
                    (max - w) as f64 / (max - min) as f64
                };
                QUEUE_SCORER_WEIGHT * queue + KV_USAGE_SCORER_WEIGHT * (1.0 - v.kv_usage())
            })
            .collect();
        self.ties.pick(&scores)
    }
}

/// Dynamo's KV router cost with `--kv-overlap-score-weight` 1 and temperature 0: for each
/// instance, `weight · prefill_blocks + decode_blocks`, where prefill blocks are the prompt
/// tokens not cached there plus the prefill still outstanding there, over the block size, and
/// decode blocks are the instance's active blocks plus the request's; the lowest cost wins,
/// ties rotating. The cached prefix is the longest run of the request's block
/// hashes (as the instance's KV manager computes them, salt included) present in the
/// instance's cache: what Dynamo's indexer learns from KV events.
#[derive(Default)]
pub struct PrefixAware {
    ties: TieBreak,
}

/// Dynamo's `--kv-overlap-score-weight` default.
pub const OVERLAP_SCORE_WEIGHT: f64 = 1.0;

impl Router for PrefixAware {
    fn name(&self) -> &'static str {
        "prefix-aware"
    }
    fn route(&mut self, req: &RouteRequest<'_>, instances: &[InstanceView<'_>]) -> usize {
        let prompt = &req.request.prompt_token_ids;
        let costs: Vec<f64> = instances
            .iter()
            .map(|v| {
                let bs = v.engine.config().block_size.max(1);
                let cached = v.cached_prefix_blocks(&req.prompt_hashes(bs)) * bs;
                let prefill = (v.load.prefill_tokens + prompt.len().saturating_sub(cached)) as f64
                    / bs as f64;
                let decode = (v.load.active_blocks + prompt.len().div_ceil(bs)) as f64;
                -(OVERLAP_SCORE_WEIGHT * prefill + decode)
            })
            .collect();
        self.ties.pick(&costs)
    }
}

/// Session affinity: every request of a session goes where its first went; a new session
/// goes to the next instance in turn. The session is the request's `user` (or session
/// header), else its `cache_salt` (one per tenant); a request with neither is routed in turn.
#[derive(Default)]
pub struct Session {
    placed: FxHashMap<String, usize>,
    next: RoundRobin,
}

impl Router for Session {
    fn name(&self) -> &'static str {
        "session"
    }
    fn route(&mut self, req: &RouteRequest<'_>, instances: &[InstanceView<'_>]) -> usize {
        let key = req.session.or(req.request.cache_salt.as_deref());
        let Some(key) = key else {
            return self.next.route(req, instances);
        };
        if let Some(&i) = self.placed.get(key).filter(|&&i| i < instances.len()) {
            return i;
        }
        let i = self.next.route(req, instances);
        self.placed.insert(key.to_string(), i);
        i
    }
}
