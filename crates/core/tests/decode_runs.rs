//! Decode runs change no result: a workload driven with [`Engine::run_with_stats_until`] (the
//! engine told that nothing arrives before the next request, so that it takes stretches of
//! decode steps as runs) gives the same step records, iteration records (tokens, first-token
//! and inter-token latencies, finished requests) and KV cache event stream as the same
//! workload driven step by step with [`Engine::run_with_stats`]. The cases put the runs'
//! bounds to work: requests stopping within a run, requests that can stop on a sampled token
//! (no run while one is running), a KV pool small enough that the free blocks end runs and
//! requests are preempted between them, prefix caching with shared prefixes, chunked
//! prefills, and a latency model that prices each step's context.

use llm_emu_core::kv::KvCacheEvent;
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::{HashSampler, SampleContext, TokenSampler};
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, FinishReason, IterationStats, Nanos, NewRequest,
    RequestOutput, SamplingParams, StepStats, Wake,
};
use std::sync::Arc;

#[derive(Default, PartialEq, Debug)]
struct Record {
    steps: Vec<StepStats>,
    iterations: Vec<IterationStats>,
    events: Vec<KvCacheEvent>,
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

/// SplitMix64: the workload's lengths and prefixes, reproducible.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`HashSampler`]'s tokens, but now and then the request's EOS where a request may stop on
/// it (the hash sampler never draws one). Stateless: a token depends on its context alone.
struct SometimesEos(HashSampler);

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

/// `n` requests, one every `gap_ns` (jittered): a shared prefix (one of four) then a tail of
/// their own, outputs of 1–`max_out` tokens; every `eos_every`-th request may stop on EOS.
fn workload(n: usize, gap_ns: u64, max_out: u64, eos_every: usize) -> Vec<NewRequest> {
    let mut at = 0u64;
    (0..n)
        .map(|i| {
            let r = mix(i as u64);
            let group = (r % 4) as u32;
            let prefix = 32 + 16 * group as usize;
            let tail = if i % 5 == 0 {
                200 + (mix(r) % 500) as usize
            } else {
                1 + (mix(r) % 90) as usize
            };
            let ids: Vec<u32> = (0..prefix as u32)
                .map(|t| 1000 + group * 100 + t)
                .chain((0..tail as u32).map(|t| 5000 + (mix(r ^ t as u64) % 20000) as u32))
                .collect();
            let max_tokens = 1 + (mix(r ^ 7) % max_out) as u32;
            at += gap_ns / 2 + mix(r ^ 3) % gap_ns;
            NewRequest {
                tenant: None,
                request_id: format!("r{i}"),
                prompt_token_ids: Arc::from(ids),
                sampling: SamplingParams {
                    max_tokens,
                    min_tokens: (mix(r ^ 11) % 8) as u32 % max_tokens,
                    ignore_eos: eos_every == 0 || i % eos_every != 0,
                    eos_token_id: Some(1000 + (i % 50) as u32),
                    stop_token_ids: Vec::new(),
                },
                priority: 0,
                cache_salt: None,
                arrival: Nanos(at),
            }
        })
        .collect()
}

/// Runs the workload in virtual time, the engine run at each arrival and each wake-up; with
/// `runs`, told at each call that nothing arrives before the next request. Returns the record
/// and the steps taken in decode runs.
fn run(cfg: &EngineConfig, requests: &[NewRequest], runs: bool) -> (Record, u64) {
    let mut engine = Engine::new(
        cfg.clone(),
        Box::new(LinearLatency {
            base_us: 1000.0,
            per_token_us: 2.0,
            per_ctx_us: 0.5,
            ..Default::default()
        }),
        Box::new(SometimesEos(HashSampler::new(1000, 1200))),
    )
    .unwrap();
    engine.enable_kv_cache_events();
    let mut rec = Record::default();
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
            Some(r) if runs => r.arrival,
            None if runs => Nanos::MAX,
            _ => now,
        };
        wake = match engine.run_with_stats_until(now, horizon, &mut rec) {
            Wake::At(t) => {
                assert!(t >= horizon, "woke before the horizon");
                Some(t)
            }
            Wake::Idle => None,
        };
        rec.events.extend(engine.take_kv_cache_events());
    }
    assert!(!engine.has_work());
    (rec, engine.num_decode_run_steps())
}

fn config(num_gpu_blocks: u32) -> EngineConfig {
    let mut cfg = EngineConfig::with_defaults(num_gpu_blocks, 2048);
    cfg.max_num_seqs = 24;
    cfg.max_num_batched_tokens = 256;
    cfg.async_scheduling = false;
    cfg
}

/// Both ways, compared record by record; returns the record and the steps taken in runs.
fn check_same(cfg: &EngineConfig, requests: &[NewRequest]) -> (Record, u64) {
    let (with, run_steps) = run(cfg, requests, true);
    let (without, none) = run(cfg, requests, false);
    assert_eq!(none, 0, "no runs without a horizon");
    assert_eq!(with.steps.len(), without.steps.len(), "step count");
    for (i, (a, b)) in with.steps.iter().zip(&without.steps).enumerate() {
        assert_eq!(a, b, "step {i}");
    }
    assert_eq!(
        with.iterations.len(),
        without.iterations.len(),
        "iterations"
    );
    for (i, (a, b)) in with.iterations.iter().zip(&without.iterations).enumerate() {
        assert_eq!(a, b, "iteration {i}");
    }
    assert_eq!(with.events, without.events, "KV cache events");
    (with, run_steps)
}

fn finished(r: &Record) -> usize {
    r.iterations.iter().map(|i| i.finished_requests.len()).sum()
}

#[test]
fn roomy_cache_long_runs() {
    let requests = workload(300, 40_000_000, 300, 0);
    let (r, run_steps) = check_same(&config(6000), &requests);
    assert_eq!(finished(&r), 300);
    assert!(
        run_steps * 2 > r.steps.len() as u64,
        "{run_steps} of {} steps in runs",
        r.steps.len()
    );
}

#[test]
fn kv_pressure_preemptions_and_prefix_hits() {
    let requests = workload(300, 3_000_000, 200, 0);
    let (r, run_steps) = check_same(&config(160), &requests);
    assert_eq!(finished(&r), 300);
    let last = r.steps.last().unwrap().scheduler;
    assert!(last.prefix_cache_hits > 0, "no prefix hit");
    assert!(last.num_preemptions > 0, "no preemption");
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, KvCacheEvent::BlockRemoved { .. })),
        "no eviction"
    );
    assert!(run_steps > 0, "no run");
}

#[test]
fn requests_that_may_stop_on_a_token() {
    let requests = workload(300, 20_000_000, 150, 4);
    let (r, run_steps) = check_same(&config(4000), &requests);
    let stopped = r
        .iterations
        .iter()
        .flat_map(|i| &i.finished_requests)
        .filter(|f| f.finish_reason == FinishReason::Stop)
        .count();
    assert!(stopped > 0, "no request stopped on a sampled token");
    assert!(run_steps > 0, "no run");
}

/// Many small engines of varied shape: pools from tight to roomy, budgets, sequence limits,
/// block sizes, with and without prefix caching, and varied step costs.
#[test]
fn varied_engines() {
    let mut run_steps_total = 0;
    for seed in 0..24u64 {
        let r = |k: u64| mix(seed * 1000 + k);
        let block_size = [16, 32, 8][(r(1) % 3) as usize];
        let mut cfg = EngineConfig::with_defaults(160 + (r(2) % 3000) as u32, 2048);
        cfg.block_size = block_size;
        cfg.max_num_seqs = 2 + (r(3) % 40) as usize;
        cfg.max_num_batched_tokens = 64 + (r(4) % 512) as usize;
        cfg.async_scheduling = false;
        cfg.enable_prefix_caching = r(5) % 4 != 0;
        let gap = 200_000 + r(6) % 20_000_000;
        let requests = workload(80, gap, 1 + r(7) % 250, (r(8) % 6) as usize);
        let (rec, run_steps) = check_same(&cfg, &requests);
        assert_eq!(finished(&rec), 80, "seed {seed}");
        run_steps_total += run_steps;
    }
    assert!(run_steps_total > 1000, "{run_steps_total} steps in runs");
}
