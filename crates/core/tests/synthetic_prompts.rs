//! A synthetic prompt carried as its rule ([`PromptTokens::Synthetic`]) runs exactly as the
//! same ids given ([`PromptTokens::Ids`]): the same steps, prefix hits, preemptions and
//! finished requests, on a pool small enough to evict and preempt, with prompts that share
//! prefixes (one stream and key at several lengths), salted prompts, and decode runs. Only
//! the block hashes' values differ (their own domain), so the KV cache events agree on
//! everything else, and a synthetic prompt's `BlockStored` events carry the ids of its rule.

use llm_emu_core::engine::{DecodeRunUpdate, EngineObserver};
use llm_emu_core::kv::KvCacheEvent;
use llm_emu_core::sampler::{HashSampler, SampleContext, TokenSampler};
use llm_emu_core::sched::RequestUpdate;
use llm_emu_core::{
    EngineConfig, HashIdPrompt, Nanos, NewRequest, PromptTokens, Request, SamplingParams,
    Scheduler, SyntheticPrompt,
};
use support::{mix, small_config, Record};

#[allow(dead_code)]
mod support;

/// `n` requests whose prompts are synthetic: eight keys, so that prompts of one key share
/// their common whole blocks; lengths 20–600; every seventh salted. With `unique`, each
/// prompt has a key of its own, vouched for ([`SyntheticPrompt::unique_key`]).
fn synthetic_workload(n: usize, unique: bool) -> Vec<NewRequest> {
    let mut at = 0u64;
    (0..n)
        .map(|i| {
            let r = mix(i as u64);
            at += 1_000_000 + r % 4_000_000;
            let prompt = SyntheticPrompt {
                stream: 5,
                key: if unique { i as u64 } else { r % 8 },
                len: 20 + (mix(r) % 580) as usize,
                unique_key: unique,
            };
            let salt = (i % 7 == 0).then_some("tenant-a");
            new_request(
                format!("r{i}"),
                at,
                prompt.into(),
                1 + mix(r ^ 7) % 150,
                salt,
            )
        })
        .collect()
}

/// A request arriving at `at` ns that generates `max_tokens` tokens, EOS ignored.
fn new_request(
    id: String,
    at: u64,
    prompt: PromptTokens,
    max_tokens: u64,
    cache_salt: Option<&str>,
) -> NewRequest {
    NewRequest {
        request_id: id,
        prompt_token_ids: prompt,
        sampling: SamplingParams {
            max_tokens: max_tokens as u32,
            ignore_eos: true,
            ..Default::default()
        },
        priority: 0,
        cache_salt: cache_salt.map(str::to_string),
        tenant: None,
        arrival: Nanos(at),
    }
}

/// The same requests with each prompt's ids drawn and given.
fn as_ids(requests: &[NewRequest]) -> Vec<NewRequest> {
    requests
        .iter()
        .map(|r| NewRequest {
            prompt_token_ids: PromptTokens::Ids(r.prompt_token_ids.to_arc()),
            ..r.clone()
        })
        .collect()
}

/// The run's record and the blocks whose hash the pool holds at the end (cached blocks).
fn run(cfg: &EngineConfig, requests: &[NewRequest], events: bool) -> (Record, usize) {
    let mut engine = support::engine(cfg, Box::new(HashSampler::new(1000, 1200)));
    if events {
        engine.enable_kv_cache_events();
    }
    let mut rec = Record::default();
    support::drive(&mut engine, requests, &mut rec, true, |engine, rec| {
        rec.events.extend(engine.take_kv_cache_events())
    });
    let pool = engine.scheduler().kv().pool();
    let hashed = (1..pool.num_gpu_blocks())
        .filter(|&b| pool.block_hash(b).is_some())
        .count();
    (rec, hashed)
}

/// Every field of an event but the hashes' values.
fn without_hashes(e: &KvCacheEvent) -> String {
    match e {
        KvCacheEvent::BlockStored {
            block_hashes,
            parent_block_hash,
            token_ids,
            block_size,
            ..
        } => format!(
            "stored {} parent {} ids {token_ids:?} size {block_size}",
            block_hashes.len(),
            parent_block_hash.is_some()
        ),
        KvCacheEvent::BlockRemoved { block_hashes, .. } => {
            format!("removed {}", block_hashes.len())
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn a_synthetic_prompt_runs_as_its_ids_given() {
    let synthetic = synthetic_workload(300, false);
    let given = as_ids(&synthetic);
    for (blocks, events) in [(150, false), (150, true), (4000, false)] {
        let cfg = small_config(blocks);
        let (a, _) = run(&cfg, &synthetic, events);
        let (b, _) = run(&cfg, &given, events);
        assert_eq!(a.steps, b.steps, "{blocks} blocks, events {events}");
        assert_eq!(
            a.iterations, b.iterations,
            "{blocks} blocks, events {events}"
        );
        let last = a.steps.last().unwrap().scheduler;
        assert!(last.prefix_cache_hits > 0, "no prefix hit");
        if blocks == 150 {
            assert!(last.num_preemptions > 0, "no preemption");
        }
        if events {
            assert!(!a.events.is_empty());
            let strip = |r: &Record| r.events.iter().map(without_hashes).collect::<Vec<_>>();
            assert_eq!(strip(&a), strip(&b), "events but for the hashes");
            assert!(a
                .events
                .iter()
                .any(|e| matches!(e, KvCacheEvent::BlockRemoved { .. })));
            // The hashes themselves are the synthetic domain's.
            assert_ne!(a.events, b.events);
        }
    }
}

/// Prompts whose keys are vouched unique: their blocks are hashed and indexed only when their
/// request is preempted, and the run is the same as with the ids given (every block cached
/// as it fills), preemptions and the preempted requests' own prefix hits included.
#[test]
fn deferred_caching_of_unique_prompts_changes_nothing() {
    let synthetic = synthetic_workload(300, true);
    let given = as_ids(&synthetic);
    for blocks in [120, 150, 4000] {
        let cfg = small_config(blocks);
        let (a, deferred) = run(&cfg, &synthetic, false);
        let (b, eager) = run(&cfg, &given, false);
        assert_eq!(a.steps.len(), b.steps.len(), "{blocks} blocks: step count");
        for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
            assert_eq!(x, y, "{blocks} blocks: step {i}");
        }
        assert_eq!(a.iterations, b.iterations, "{blocks} blocks");
        let last = a.steps.last().unwrap().scheduler;
        assert!(eager > 0);
        if blocks < 4000 {
            assert!(last.num_preemptions > 0, "{blocks} blocks: no preemption");
            // Only the preempted requests' blocks were ever hashed.
            assert!(
                deferred < eager,
                "{blocks} blocks: {deferred} of {eager} hashed"
            );
        } else {
            assert_eq!(last.num_preemptions, 0);
            assert_eq!(deferred, 0, "nothing preempted, nothing hashed");
        }
        // With events on, nothing is deferred: every cached block is reported.
        let (c, hashed) = run(&cfg, &synthetic, true);
        assert_eq!(c.steps, a.steps, "{blocks} blocks, events on");
        assert_eq!(hashed, eager, "{blocks} blocks, events on");
    }
}

/// `n` requests whose prompts are hash-id blocks of `block_tokens` (a Mooncake trace's): a
/// shared stem of one of four id chains, then ids of their own; the last block partial.
fn hash_id_workload(n: usize, block_tokens: usize) -> Vec<NewRequest> {
    let mut at = 0u64;
    (0..n)
        .map(|i| {
            let r = mix(i as u64 ^ 0xabc);
            at += 1_000_000 + r % 4_000_000;
            let chain = r % 4;
            let shared = 1 + (mix(r) % 6) as usize;
            let own = (mix(r ^ 1) % 5) as usize;
            let ids: Vec<u64> = (0..shared as u64)
                .map(|k| chain * 100 + k)
                .chain((0..own as u64).map(|k| 10_000 + i as u64 * 10 + k))
                .collect();
            let len = (ids.len() - 1) * block_tokens + 1 + (mix(r ^ 2) as usize % block_tokens);
            let prompt = HashIdPrompt {
                stream: 11,
                ids: ids.into(),
                block_tokens,
                len,
            };
            let salt = (i % 9 == 0).then_some("tenant-b");
            new_request(
                format!("m{i}"),
                at,
                prompt.into(),
                1 + mix(r ^ 7) % 120,
                salt,
            )
        })
        .collect()
}

/// A Mooncake prompt carried as its hash ids runs as its ids given: hash blocks that align
/// with the engine's blocks (16), that hold several (64) and that straddle them (12).
#[test]
fn a_hash_id_prompt_runs_as_its_ids_given() {
    for block_tokens in [16, 64, 12] {
        let rule = hash_id_workload(250, block_tokens);
        let given = as_ids(&rule);
        for blocks in [200, 4000] {
            let cfg = small_config(blocks);
            let (a, _) = run(&cfg, &rule, false);
            let (b, _) = run(&cfg, &given, false);
            let what = format!("hash blocks of {block_tokens}, {blocks} blocks");
            assert_eq!(a.steps, b.steps, "{what}");
            assert_eq!(a.iterations, b.iterations, "{what}");
            let last = a.steps.last().unwrap().scheduler;
            assert!(
                last.prefix_cache_hits * 10 > last.prefix_cache_queries,
                "{what}: {} of {} tokens hit",
                last.prefix_cache_hits,
                last.prefix_cache_queries
            );
        }
    }
}

/// A finished request as the engine hands it over.
struct Done {
    id: String,
    /// Its output ids as the request holds them (`None`: counted but not drawn).
    output: Option<Vec<u32>>,
    preemptions: u32,
    seed: u64,
    sampling: SamplingParams,
}

/// Every finished request, in order.
#[derive(Default)]
struct Finished {
    requests: Vec<Done>,
}

impl Finished {
    fn take(&mut self, r: &Request) {
        self.requests.push(Done {
            id: r.request_id.clone(),
            output: r.output_token_ids().map(<[u32]>::to_vec),
            preemptions: r.num_preemptions,
            seed: r.sample_seed,
            sampling: r.sampling.clone(),
        });
    }
}

impl EngineObserver for Finished {
    fn on_update(&mut self, _: Nanos, updates: &[RequestUpdate], _: &Scheduler) {
        for r in updates.iter().filter_map(|u| u.finished.as_deref()) {
            self.take(r);
        }
    }
    fn accepts_decode_runs(&self) -> bool {
        true
    }
    fn on_decode_run_update(&mut self, u: &DecodeRunUpdate<'_>) {
        for r in u.finished {
            self.take(r);
        }
    }
}

/// Decode runs count a deferring request's outputs without drawing them; a preemption draws
/// them before hashing its blocks, to the sampler's tokens, and a request that was never
/// preempted finishes with them undrawn (nothing read them). The workload: bursts of 24
/// requests with unique keys and long outputs, which decode in runs until their growth fills
/// the pool and the last of them is preempted.
#[test]
fn outputs_left_undrawn_are_drawn_at_preemption() {
    let requests: Vec<NewRequest> = (0..96u64)
        .map(|i| {
            let r = mix(i ^ 0x5eed);
            let prompt = SyntheticPrompt {
                stream: 9,
                key: i,
                len: 64 + (r % 100) as usize,
                unique_key: true,
            };
            let at = (i / 24) * 2_000_000_000 + (i % 24) * 1_000;
            new_request(format!("b{i}"), at, prompt.into(), 200 + mix(r) % 100, None)
        })
        .collect();
    let cfg = small_config(200);
    let sampler = HashSampler::new(1000, 1200);
    let mut engine = support::engine(&cfg, Box::new(sampler.clone()));
    let mut seen = Finished::default();
    support::drive_with(&mut engine, &requests, true, |engine, now, horizon| {
        engine.run_until(now, horizon, &mut seen)
    });
    assert_eq!(seen.requests.len(), requests.len());
    let (mut undrawn, mut preempted) = (0, 0);
    let mut sampler = sampler;
    for d in &seen.requests {
        let Some(output) = &d.output else {
            assert_eq!(d.preemptions, 0, "{}: preempted with outputs undrawn", d.id);
            undrawn += 1;
            continue;
        };
        preempted += usize::from(d.preemptions > 0);
        for (i, &t) in output.iter().enumerate() {
            let ctx = SampleContext::for_token(&d.id, d.seed, i, &d.sampling);
            assert_eq!(t, sampler.sample(&ctx), "{}: output {i}", d.id);
        }
    }
    assert!(undrawn > 0, "no decode run left outputs undrawn");
    assert!(preempted > 0, "no preempted request to draw them");
    // The same run as with the ids given, every block hashed and cached as it fills.
    let (a, _) = run(&cfg, &requests, false);
    let (b, _) = run(&cfg, &as_ids(&requests), false);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.iterations, b.iterations);
}
