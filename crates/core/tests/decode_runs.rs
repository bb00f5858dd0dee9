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
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{EngineConfig, FinishReason, Nanos, NewRequest};
use support::{mix, request, small_config, Record, SometimesEos};

mod support;

/// `n` requests ([`support::request`]), one every `gap_ns` on average (jittered), outputs of
/// 1–`max_out` tokens; every `eos_every`-th request may stop on EOS (none for 0).
fn workload(n: usize, gap_ns: u64, max_out: u64, eos_every: usize) -> Vec<NewRequest> {
    let mut at = 0u64;
    (0..n)
        .map(|i| {
            at += gap_ns / 2 + mix(mix(i as u64) ^ 3) % gap_ns;
            request(i, Nanos(at), max_out, eos_every != 0 && i % eos_every == 0)
        })
        .collect()
}

/// Runs the workload in virtual time, the engine run at each arrival and each wake-up; with
/// `runs`, told at each call that nothing arrives before the next request. Returns the record
/// and the steps taken in decode runs.
fn run(cfg: &EngineConfig, requests: &[NewRequest], runs: bool) -> (Record, u64) {
    let mut engine = support::engine(cfg, Box::new(SometimesEos(HashSampler::new(1000, 1200))));
    engine.enable_kv_cache_events();
    let mut rec = Record::default();
    support::drive(&mut engine, requests, &mut rec, runs, |engine, rec| {
        rec.events.extend(engine.take_kv_cache_events())
    });
    (rec, engine.num_decode_run_steps())
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
    let (r, run_steps) = check_same(&small_config(6000), &requests);
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
    let (r, run_steps) = check_same(&small_config(160), &requests);
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
    let (r, run_steps) = check_same(&small_config(4000), &requests);
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
