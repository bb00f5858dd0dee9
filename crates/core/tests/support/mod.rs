//! What the engine equivalence tests share: a reproducible mixer, a sampler that sometimes draws
//! EOS, and the requests of their workloads.

use llm_emu_core::kv::KvCacheEvent;
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::{HashSampler, SampleContext, TokenSampler};
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput,
    SamplingParams, StepStats, Wake,
};

/// A small synchronous engine's configuration: 24 sequences, 256 tokens per step, so that
/// steps batch, chunk prefills and queue requests; `num_gpu_blocks` sets the KV pressure.
#[allow(dead_code)]
pub fn small_config(num_gpu_blocks: u32) -> EngineConfig {
    let mut cfg = EngineConfig::with_defaults(num_gpu_blocks, 2048);
    cfg.max_num_seqs = 24;
    cfg.max_num_batched_tokens = 256;
    cfg.async_scheduling = false;
    cfg
}

/// An engine of `cfg` whose steps cost 1 ms plus 2 µs per token and 0.5 µs per context token,
/// drawing tokens with `sampler`.
#[allow(dead_code)]
pub fn engine(cfg: &EngineConfig, sampler: Box<dyn TokenSampler>) -> Engine {
    Engine::new(
        cfg.clone(),
        Box::new(LinearLatency {
            base_us: 1000.0,
            per_token_us: 2.0,
            per_ctx_us: 0.5,
            ..Default::default()
        }),
        sampler,
    )
    .unwrap()
}

/// What a run reports, to compare two ways of running one workload: every step record,
/// iteration record and KV cache event. Takes decode runs.
#[allow(dead_code)]
#[derive(Default, PartialEq, Debug)]
pub struct Record {
    pub steps: Vec<StepStats>,
    pub iterations: Vec<IterationStats>,
    pub events: Vec<KvCacheEvent>,
}

impl EngineSink for Record {
    fn on_step(&mut self, s: &StepStats) {
        self.steps.push(*s);
    }
    fn on_iteration(&mut self, stats: &IterationStats, _outputs: &[RequestOutput]) {
        self.iterations.push(stats.clone());
    }
    fn takes_decode_runs(&self) -> bool {
        true
    }
}

/// SplitMix64: the workloads' lengths and prefixes, reproducible.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`HashSampler`]'s tokens, but now and then the request's EOS where stop tokens are allowed
/// (the hash sampler never draws one), so that requests also stop on a sampled token.
/// Stateless: a token depends on its context alone.
pub struct SometimesEos(pub HashSampler);

impl TokenSampler for SometimesEos {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        let t = self.0.sample(ctx);
        match ctx.sampling.eos_token_id {
            Some(eos) if !ctx.forbid_stop && t.is_multiple_of(37) => eos,
            _ => t,
        }
    }
    fn is_stateless(&self) -> bool {
        true
    }
}

/// Request `i` of a workload, arriving at `arrival`: a shared prefix (one of four, 2–5
/// blocks) then a tail of its own (every fifth prompt longer than a 256-token step budget:
/// chunked prefills, some leaving just their last prompt token for the next step), 1 to
/// `max_out` output tokens, a `min_tokens` below that, and EOS honoured when `stops_on_eos`.
pub fn request(i: usize, arrival: Nanos, max_out: u64, stops_on_eos: bool) -> NewRequest {
    let r = mix(i as u64);
    let group = (r % 4) as u32;
    let prefix = 32 + 16 * group as usize;
    let tail = if i.is_multiple_of(5) {
        200 + (mix(r) % 500) as usize
    } else {
        1 + (mix(r) % 90) as usize
    };
    let ids: Vec<u32> = (0..prefix as u32)
        .map(|t| 1000 + group * 100 + t)
        .chain((0..tail as u32).map(|t| 5000 + (mix(r ^ t as u64) % 20000) as u32))
        .collect();
    let max_tokens = 1 + (mix(r ^ 7) % max_out) as u32;
    NewRequest {
        tenant: None,
        request_id: format!("r{i}"),
        prompt_token_ids: llm_emu_core::PromptTokens::from(ids),
        sampling: SamplingParams {
            max_tokens,
            min_tokens: (mix(r ^ 11) % 8) as u32 % max_tokens,
            ignore_eos: !stops_on_eos,
            eos_token_id: Some(1000 + (i % 50) as u32),
            stop_token_ids: Vec::new(),
        },
        priority: 0,
        cache_salt: None,
        arrival,
    }
}

/// Runs `requests` through `engine` in virtual time: arrivals taken in at their instant, the
/// engine run at each arrival and each wake-up, reporting to `sink`, and `after` called after
/// each run (to drain KV cache events). With `horizons`, each run is told that nothing arrives
/// before the next request ([`Engine::run_with_stats_until`]), and must not wake before it.
pub fn drive<S: EngineSink>(
    engine: &mut Engine,
    requests: &[NewRequest],
    sink: &mut S,
    horizons: bool,
    mut after: impl FnMut(&mut Engine, &mut S),
) {
    drive_with(engine, requests, horizons, |engine, now, horizon| {
        let wake = engine.run_with_stats_until(now, horizon, sink);
        after(engine, sink);
        wake
    });
}

/// [`drive`]'s loop with each run of the engine left to `run(engine, now, horizon)` (an
/// observer of the caller's, [`Engine::run_until`]).
pub fn drive_with(
    engine: &mut Engine,
    requests: &[NewRequest],
    horizons: bool,
    mut run: impl FnMut(&mut Engine, Nanos, Nanos) -> Wake,
) {
    let mut next = 0;
    let mut wake: Option<Nanos> = Some(Nanos::ZERO);
    loop {
        let arrival = requests.get(next).map(|r| r.arrival);
        let now = match (arrival, wake) {
            (Some(a), Some(w)) => a.min(w),
            (Some(a), None) => a,
            (None, Some(w)) => w,
            (None, None) => break,
        };
        while requests.get(next).is_some_and(|r| r.arrival <= now) {
            engine.add_request(requests[next].clone()).unwrap();
            next += 1;
        }
        let horizon = match requests.get(next) {
            Some(r) if horizons => r.arrival,
            None if horizons => Nanos::MAX,
            _ => now,
        };
        wake = match run(engine, now, horizon) {
            Wake::At(t) => {
                assert!(
                    t >= horizon,
                    "woke at {t:?}, before the horizon {horizon:?}"
                );
                Some(t)
            }
            Wake::Idle => None,
        };
    }
    assert!(!engine.has_work());
}
