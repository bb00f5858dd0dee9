//! Shared helpers of the fleet tests.
#![allow(dead_code)]

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, EngineCore, Nanos, NewRequest, SamplingParams};
use llm_emu_sim::{RequestRecord, Sinks, WorkloadItem};

/// A small engine: `blocks` KV blocks of 16 tokens, step = 1 ms + `per_token_us` per token.
pub fn engine(blocks: u32, per_token_us: f64) -> Engine {
    let mut cfg = EngineConfig::with_defaults(blocks, 8192);
    cfg.max_num_batched_tokens = 2048;
    Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, per_token_us)),
        Box::new(HashSampler::default()),
    )
    .expect("valid config")
}

pub fn req(id: &str, prompt: Vec<u32>, max_tokens: u32, arrival: Nanos) -> NewRequest {
    NewRequest {
        tenant: None,
        request_id: id.into(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(prompt),
        sampling: SamplingParams {
            max_tokens,
            min_tokens: max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        arrival,
    }
}

pub fn item(id: &str, prompt: Vec<u32>, output_len: u32, arrival: Nanos) -> WorkloadItem {
    WorkloadItem {
        request_id: id.into(),
        arrival,
        prompt_token_ids: llm_emu_core::PromptTokens::from(prompt),
        output_len,
        priority: 0,
        cache_salt: None,
        tenant: None,
    }
}

/// Distinct tokens for a (stream, position): different streams never share a block.
pub fn tokens(stream: u32, from: usize, len: usize) -> Vec<u32> {
    (from..from + len)
        .map(|i| 1000 + stream * 100_000 + i as u32)
        .collect()
}

/// A multi-turn workload: `sessions` conversations of `turns` turns each, every prompt
/// starting with a shared 128-token system prompt, then the session's whole history (each
/// turn adds 256 tokens); turn k of every session arrives around `k · 2 s`, sessions 50 ms
/// apart; 16 output tokens.
pub fn multi_turn(sessions: u32, turns: usize) -> Vec<WorkloadItem> {
    let mut items = Vec::new();
    for k in 0..turns {
        for s in 0..sessions {
            let mut prompt = tokens(0, 0, 128);
            prompt.extend(tokens(s + 1, 0, 256 * (k + 1)));
            let arrival = Nanos::from_millis(2000 * k as u64 + 50 * s as u64);
            items.push(item(&format!("s{s}-t{k}"), prompt, 16, arrival));
        }
    }
    items
}

/// Runs `w` through `e` in virtual time: the per-request records, sorted by id, and how many
/// requests failed.
pub fn run_counting_failed(
    e: &mut dyn EngineCore,
    w: Vec<WorkloadItem>,
) -> (Vec<RequestRecord>, usize) {
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    let res = llm_emu_sim::run(e, w.into_iter().map(Ok), &mut sinks, &mut |_| {}).expect("runs");
    let mut r = sinks.records.take().expect("kept");
    r.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    (r, res.failed)
}

/// [`run_counting_failed`]'s records.
pub fn run(e: &mut dyn EngineCore, w: Vec<WorkloadItem>) -> Vec<RequestRecord> {
    run_counting_failed(e, w).0
}

/// A record's time in seconds as whole ns (panics if unset).
pub fn ns(s: Option<f64>) -> u64 {
    (s.expect("set") * 1e9).round() as u64
}
