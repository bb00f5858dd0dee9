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
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput,
    SamplingParams, StepStats,
};
use support::SometimesEos;

mod support;

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

/// `n` requests, one every `gap_ns` ([`support::request`]), a third of them stopping on EOS.
fn workload(n: usize, gap_ns: u64) -> Vec<NewRequest> {
    (0..n)
        .map(|i| support::request(i, Nanos(i as u64 * gap_ns), 120, i % 3 == 0))
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
    support::drive(&mut engine, requests, &mut rec, false, |engine, rec| {
        rec.events.extend(engine.take_kv_cache_events())
    });
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
            prompt_token_ids: llm_emu_core::PromptTokens::from(
                (0..len as u32).map(|t| 2000 + t).collect::<Vec<_>>(),
            ),
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
