//! The per-step hot paths' shortcuts change no result: the same workload run with them on and
//! forced off ([`Engine::set_fast_paths`]) gives the same step records, iteration records
//! (tokens, first-token and inter-token latencies, finished requests) and per-request outputs,
//! and the same KV cache event stream (which blocks were cached and evicted, in order), with
//! and without async scheduling, under prefix caching with shared prefixes and a pool small
//! enough that blocks are evicted and requests preempted while others decode. Without async
//! scheduling most steps take the decode-step path (`Scheduler::schedule_decode`), whose
//! records must be the general path's too, including steps in which a request stops on a
//! sampled stop token or after `min_tokens`.

use llm_emu_core::kv::KvCacheEvent;
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::{HashSampler, SampleContext, TokenSampler};
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput,
    SamplingParams, StepStats, Wake,
};
use std::sync::Arc;

#[derive(Default, PartialEq, Debug)]
struct Record {
    steps: Vec<StepStats>,
    iterations: Vec<IterationStats>,
    outputs: Vec<RequestOutput>,
    events: Vec<KvCacheEvent>,
    /// Steps the decode-step path took (compared only between runs with the shortcuts on).
    decode_steps: u64,
}

impl EngineSink for Record {
    fn on_step(&mut self, s: &StepStats) {
        self.steps.push(*s);
    }
    fn on_iteration(&mut self, stats: &IterationStats, outputs: &[RequestOutput]) {
        self.iterations.push(stats.clone());
        self.outputs.extend_from_slice(outputs);
    }
}

/// SplitMix64: the workload's lengths and prefixes, reproducible.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`HashSampler`]'s tokens, but now and then the request's EOS where stop tokens are allowed
/// (the hash sampler never draws one), so that requests also stop on a sampled token.
struct SometimesEos(HashSampler);

impl TokenSampler for SometimesEos {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        let t = self.0.sample(ctx);
        match ctx.sampling.eos_token_id {
            Some(eos) if !ctx.forbid_stop && t.is_multiple_of(37) => eos,
            _ => t,
        }
    }
}

/// `n` requests, one every `gap_ns`: a shared prefix (one of four, 2–5 blocks) then a tail of
/// their own, outputs of 1–120 tokens, some with a stop token the sampler may draw.
fn workload(n: usize, gap_ns: u64) -> Vec<NewRequest> {
    (0..n)
        .map(|i| {
            let r = mix(i as u64);
            let group = (r % 4) as u32;
            let prefix = 32 + 16 * group as usize;
            // Every fifth prompt is longer than a step's token budget: chunked prefills, some
            // leaving just their last prompt token for the next step.
            let tail = if i % 5 == 0 {
                200 + (mix(r) % 500) as usize
            } else {
                1 + (mix(r) % 90) as usize
            };
            let ids: Vec<u32> = (0..prefix as u32)
                .map(|t| 1000 + group * 100 + t)
                .chain((0..tail as u32).map(|t| 5000 + (mix(r ^ t as u64) % 20000) as u32))
                .collect();
            let max_tokens = 1 + (mix(r ^ 7) % 120) as u32;
            NewRequest {
                tenant: None,
                request_id: format!("r{i}"),
                prompt_token_ids: Arc::from(ids),
                sampling: SamplingParams {
                    max_tokens,
                    min_tokens: (mix(r ^ 11) % 8) as u32 % max_tokens,
                    ignore_eos: i % 3 != 0,
                    eos_token_id: Some(1000 + (i % 50) as u32),
                    stop_token_ids: Vec::new(),
                },
                priority: 0,
                cache_salt: None,
                arrival: Nanos(i as u64 * gap_ns),
            }
        })
        .collect()
}

/// Runs the workload in virtual time (arrivals taken in at their instant, the engine run at
/// each arrival and each wake-up) and records everything it reports.
fn run(cfg: &EngineConfig, requests: &[NewRequest], fast_paths: bool) -> Record {
    let mut engine = Engine::new(
        cfg.clone(),
        Box::new(LinearLatency::new(1000.0, 2.0)),
        Box::new(SometimesEos(HashSampler::new(1000, 1200))),
    )
    .unwrap();
    engine.set_fast_paths(fast_paths);
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
        wake = match engine.run_with_stats(now, &mut rec) {
            Wake::At(t) => Some(t),
            Wake::Idle => None,
        };
        rec.events.extend(engine.take_kv_cache_events());
    }
    assert!(!engine.has_work());
    rec.decode_steps = engine.num_decode_steps();
    rec
}

fn config(num_gpu_blocks: u32, async_scheduling: bool) -> EngineConfig {
    let mut cfg = EngineConfig::with_defaults(num_gpu_blocks, 2048);
    cfg.max_num_seqs = 24;
    cfg.max_num_batched_tokens = 256;
    cfg.async_scheduling = async_scheduling;
    cfg
}

fn check_same(num_gpu_blocks: u32, async_scheduling: bool, gap_ns: u64) -> Record {
    check_same_on(num_gpu_blocks, async_scheduling, &workload(400, gap_ns))
}

fn check_same_on(num_gpu_blocks: u32, async_scheduling: bool, requests: &[NewRequest]) -> Record {
    let cfg = config(num_gpu_blocks, async_scheduling);
    let requests = requests.to_vec();
    let on = run(&cfg, &requests, true);
    let mut off = run(&cfg, &requests, false);
    assert_eq!(off.decode_steps, 0, "the decode-step path is a shortcut");
    off.decode_steps = on.decode_steps;
    assert_eq!(on.steps.len(), off.steps.len(), "step count");
    for (i, (a, b)) in on.steps.iter().zip(&off.steps).enumerate() {
        assert_eq!(a, b, "step {i}");
    }
    for (i, (a, b)) in on.iterations.iter().zip(&off.iterations).enumerate() {
        assert_eq!(a, b, "iteration {i}");
    }
    assert_eq!(on, off);
    on
}

fn removed(r: &Record) -> usize {
    r.events
        .iter()
        .filter(|e| matches!(e, KvCacheEvent::BlockRemoved { .. }))
        .count()
}

#[test]
fn kv_pressure_with_prefix_caching_sync_and_async() {
    for async_scheduling in [false, true] {
        let r = check_same(120, async_scheduling, 300_000);
        let last = r.steps.last().unwrap().scheduler;
        // The case exercises what the shortcuts must not disturb: prefix hits, cached blocks
        // evicted (while requests decode) and preemptions.
        assert!(last.prefix_cache_hits > 0, "no prefix hit");
        assert!(last.num_preemptions > 0, "no preemption");
        assert!(removed(&r) > 0, "no eviction");
        let finished: usize = r.iterations.iter().map(|i| i.finished_requests.len()).sum();
        assert_eq!(finished, 400);
        let eos = r
            .iterations
            .iter()
            .flat_map(|i| &i.finished_requests)
            .filter(|f| f.finish_reason == llm_emu_core::FinishReason::Stop)
            .count();
        assert!(eos > 0, "no request stopped on a sampled token");
        if !async_scheduling {
            assert!(r.decode_steps > 0, "no decode step");
        }
    }
}

#[test]
fn roomy_cache_long_decode_runs_sync_and_async() {
    for async_scheduling in [false, true] {
        let r = check_same(4000, async_scheduling, 2_000_000);
        assert!(r
            .steps
            .iter()
            .any(|s| s.num_decode_reqs == s.num_reqs && s.num_reqs > 4));
        if !async_scheduling {
            assert!(r.decode_steps >= 50, "{} decode steps", r.decode_steps);
        }
    }
}

/// A prompt one token longer than the step's budget (256): its first chunk leaves the last
/// prompt token, which the next step computes alone, as a decode step computes a token, and
/// which samples the request's first output (its time to first token).
#[test]
fn prefill_leaving_its_last_token_to_a_decode_step() {
    let requests: Vec<NewRequest> = [257usize, 513, 300]
        .iter()
        .enumerate()
        .map(|(i, &len)| NewRequest {
            tenant: None,
            request_id: format!("long{i}"),
            prompt_token_ids: Arc::from((0..len as u32).map(|t| 2000 + t).collect::<Vec<_>>()),
            sampling: SamplingParams {
                max_tokens: 5,
                ..Default::default()
            },
            priority: 0,
            cache_salt: Some(format!("s{i}")),
            arrival: Nanos(i as u64 * 100_000_000),
        })
        .collect();
    for async_scheduling in [false, true] {
        let r = check_same_on(4000, async_scheduling, &requests);
        let ttfts: usize = r
            .iterations
            .iter()
            .map(|i| i.time_to_first_tokens_iter.len())
            .sum();
        assert_eq!(ttfts, 3);
        if !async_scheduling {
            assert!(r.decode_steps > 0, "no decode step");
        }
    }
}
