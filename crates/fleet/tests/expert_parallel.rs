//! Expert-parallel lockstep, derived by hand: waves, dummy batches, the padding rule and the
//! all-to-all.

mod common;

use common::{item, ns, run, tokens};
use llm_emu_core::engine::RequestError;
use llm_emu_core::latency::{LatencyModel, StepBatch};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, EngineCore, EngineSink, Nanos, NewRequest, Wake};
use llm_emu_fleet::{AllToAll, DataParallel, EpGroup, Link, PricedStep};
use llm_emu_sim::RequestRecord;

/// 1 ms + 1 µs per padded token: a model that prices the padding.
struct Padded;
impl LatencyModel for Padded {
    fn step_time(&mut self, b: &StepBatch<'_>) -> Nanos {
        Nanos(1_000_000 + 1_000 * b.padded_tokens as u64)
    }
    fn describe(&self) -> String {
        "padded".into()
    }
}

/// hidden 1000, 24 experts, bf16, one MoE layer, two ranks, 16 GB/s + 20 µs: for T tokens a
/// dispatch hop of 20 000 + T·2048/16 ns (hidden states and router logits) and a combine hop
/// of 20 000 + T·2000/16 ns.
fn a2a() -> AllToAll {
    AllToAll {
        hidden_size: 1000,
        dtype_bytes: 2,
        num_experts: 24,
        moe_layers: 1,
        ranks: 2,
        link: Link {
            bandwidth_gbs: 16.0,
            latency_ns: 20_000.0,
        },
    }
}

/// `n` eager ranks (no CUDA graphs).
fn group(n: usize) -> DataParallel {
    group_with(n, |cfg| cfg.enforce_eager = true)
}

/// `n` ranks of [`Padded`], each engine's configuration set by `set`.
fn group_with(n: usize, set: impl Fn(&mut EngineConfig)) -> DataParallel {
    let models: Vec<Box<dyn LatencyModel>> = (0..n).map(|_| Box::new(Padded) as _).collect();
    let (g, lat) = EpGroup::new(models, a2a());
    let engines = lat
        .into_iter()
        .map(|l| {
            let mut cfg = EngineConfig::with_defaults(1000, 8192);
            cfg.async_scheduling = false;
            set(&mut cfg);
            Engine::new(cfg, Box::new(l), Box::new(HashSampler::default())).expect("valid")
        })
        .collect();
    DataParallel::expert_parallel(engines, 1, g)
}

#[test]
fn all_to_all_is_priced_from_bytes_over_the_link() {
    let a = a2a();
    assert_eq!(a.dispatch_bytes(100), 100 * 1024 * 2);
    assert_eq!(a.combine_bytes(100), 100 * 1000 * 2);
    // (20 µs + 204 800 B / 16 GB/s = 12.8 µs) + (20 µs + 200 000 B / 16 GB/s = 12.5 µs).
    assert_eq!(a.step_ns(100), 32_800 + 32_500);
    assert_eq!(a.step_ns(0), 0);
    // A ring over 4 ranks is 3 hops of each; one rank exchanges nothing.
    assert_eq!(AllToAll { ranks: 4, ..a }.step_ns(100), 3 * 65_300);
    assert_eq!(AllToAll { ranks: 1, ..a }.step_ns(100), 0);
}

#[test]
fn a_lone_request_runs_with_dummy_batches_on_the_idle_rank_in_one_wave() {
    let mut dp = group(2);
    let recs = run(&mut dp, vec![item("a", tokens(1, 0, 100), 3, Nanos::ZERO)]);
    // Step 1: the 100-token prompt on rank 0, a dummy batch padded to 100 on rank 1:
    // 1 ms + 100 µs, plus 65.3 µs of all-to-all. Steps 2 and 3: one token each:
    // 1.001 ms + (20 µs + 128 ns) + (20 µs + 125 ns).
    let step1 = 1_100_000 + 65_300;
    let decode = 1_001_000 + 40_253;
    assert_eq!(recs[0].engine, Some(0));
    assert_eq!(ns(recs[0].first_token_s), step1);
    assert_eq!(ns(recs[0].last_token_s), step1 + 2 * decode);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!(r.waves, 1);
    assert_eq!(r.steps, 3);
    assert_eq!(
        r.dummy_steps,
        vec![0, 3],
        "rank 1 ran a dummy batch each step"
    );
    assert!(!r.in_wave, "the wave ended when no rank had work");
}

/// A 100-token prompt on rank 0 and a 20-token one on rank 1 (the balancer alternates
/// through its local increments), one output token each: one step. Returns the records and
/// how the step was priced.
fn two_prompts(mut dp: DataParallel) -> (Vec<RequestRecord>, PricedStep) {
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 1, Nanos::ZERO),
            item("b", tokens(2, 0, 20), 1, Nanos::ZERO),
        ],
    );
    assert_eq!(recs[0].engine, Some(0));
    assert_eq!(recs[1].engine, Some(1));
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!((r.steps, r.dummy_steps.clone()), (1, vec![0, 0]));
    (recs, r.last_step.expect("priced"))
}

#[test]
fn ranks_that_all_run_a_cuda_graph_pad_to_the_group_s_largest_batch() {
    // vLLM's default capture sizes here (max_num_seqs 1024, 8192 batched tokens) go up to 512
    // in steps of 8: rank 0's 100 tokens run the 104 graph, rank 1's 20 the 24 graph. Both
    // run a graph, so both pad to 104 (`should_dp_pad`): 1 ms + 104 µs each, b's 20-token
    // prompt as long as a's. All-to-all of 104 tokens: (20 µs + 212 992 B / 16 GB/s =
    // 13.312 µs) + (20 µs + 208 000 B / 16 GB/s = 13 µs).
    let (recs, last) = two_prompts(group_with(2, |_| {}));
    assert!(last.dp_padded);
    assert_eq!(last.rank_tokens, vec![104, 104]);
    assert_eq!(last.gathered_tokens, 208);
    assert_eq!(last.rank_ns, vec![1_104_000, 1_104_000]);
    let step = 1_104_000 + 66_312;
    assert_eq!(ns(recs[0].first_token_s), step);
    assert_eq!(ns(recs[1].first_token_s), step);
}

#[test]
fn eager_ranks_do_not_pad_and_wait_for_the_slowest() {
    // Without graphs the synced mode is NONE: each rank computes its own tokens, 100 and 20
    // (1.1 ms and 1.02 ms), and the step waits for the slower; the all-gather's largest chunk
    // is 100 tokens (65.3 µs).
    let (recs, last) = two_prompts(group(2));
    assert!(!last.dp_padded);
    assert_eq!(last.rank_tokens, vec![100, 20]);
    assert_eq!(last.gathered_tokens, 120);
    assert_eq!(last.rank_ns, vec![1_100_000, 1_020_000]);
    assert_eq!(last.padded_tokens, 100);
    assert_eq!(ns(recs[1].first_token_s), 1_100_000 + 65_300);
}

#[test]
fn one_rank_above_the_largest_graph_turns_padding_off_for_all() {
    // max_num_seqs 8: captured sizes 1, 2, 4, 8, 16. Rank 0's 100 tokens exceed 16 and run
    // without a graph (mode NONE), so the synced mode is NONE: rank 1's 5-token prompt runs
    // at its own graph size, 8, not padded to 100.
    let mut dp = group_with(2, |cfg| cfg.max_num_seqs = 8);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 1, Nanos::ZERO),
            item("b", tokens(2, 0, 5), 1, Nanos::ZERO),
        ],
    );
    assert_eq!((recs[0].engine, recs[1].engine), (Some(0), Some(1)));
    let last = dp
        .lockstep_report()
        .and_then(|r| r.last_step)
        .expect("priced");
    assert!(!last.dp_padded);
    assert_eq!(last.rank_tokens, vec![100, 8]);
    assert_eq!(last.rank_ns, vec![1_100_000, 1_008_000]);
    assert_eq!(ns(recs[1].first_token_s), 1_100_000 + 65_300);
}

#[test]
fn a_request_after_the_wave_ended_starts_the_next_one() {
    let mut dp = group(2);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 1, Nanos::ZERO),
            item("b", tokens(2, 0, 100), 1, Nanos::from_millis(50)),
        ],
    );
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!(r.waves, 2, "a then b: two waves");
    assert_eq!(r.steps, 2);
    // b starts at its arrival: the group was idle.
    assert_eq!(ns(recs[1].first_token_s), 50_000_000 + 1_100_000 + 65_300);
}

#[test]
fn an_arrival_during_a_step_waits_for_the_group_s_step_to_end() {
    let mut dp = group(2);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 2, Nanos::ZERO),
            item("b", tokens(2, 0, 10), 1, Nanos::from_micros(500)),
        ],
    );
    // b reaches rank 1 while rank 1 runs step 1's dummy batch: it is scheduled at 1.1653 ms,
    // in a step padded to 10 tokens (a decodes 1): 1.01 ms + (20 µs + 1.28 µs) + (20 µs +
    // 1.25 µs).
    assert_eq!(recs[1].engine, Some(1));
    let step1 = 1_100_000 + 65_300;
    assert_eq!(ns(recs[1].first_token_s), step1 + 1_010_000 + 42_530);
    assert_eq!(ns(recs[0].last_token_s), step1 + 1_010_000 + 42_530);
}

/// The MoE operator profile of `llm-emu-perf`'s tests (`tests/data/moe-profile`, hand-computed
/// there): 4 MoE layers, 8 experts, top-2, hidden 64, bf16.
fn moe_profile(ep: u32) -> Box<dyn LatencyModel> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/tests/data/moe-profile");
    let shape = llm_emu_perf::sizing::ModelShape::from_hf_config_json(
        r#"{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 1000, "num_experts": 8,
            "num_experts_per_tok": 2, "moe_intermediate_size": 32, "mlp_only_layers": []}"#,
    )
    .expect("shape");
    Box::new(
        llm_emu_perf::latency::ProfileLatency::load(&dir, &shape, 1)
            .and_then(|m| m.with_ep_size(ep))
            .expect("profile"),
    )
}

#[test]
fn a_moe_csv_profile_composes_with_the_all_to_all() {
    let a2a = AllToAll {
        hidden_size: 64,
        dtype_bytes: 2,
        num_experts: 8,
        moe_layers: 4,
        ranks: 2,
        link: Link {
            bandwidth_gbs: 16.0,
            latency_ns: 20_000.0,
        },
    };
    let (g, lat) = EpGroup::new(vec![moe_profile(2), moe_profile(2)], a2a);
    let engines = lat
        .into_iter()
        .map(|l| {
            let mut cfg = EngineConfig::with_defaults(1000, 8192);
            cfg.async_scheduling = false;
            cfg.enforce_eager = true;
            Engine::new(cfg, Box::new(l), Box::new(HashSampler::default())).expect("valid")
        })
        .collect();
    let mut dp = DataParallel::expert_parallel(engines, 1, g);
    let recs = run(&mut dp, vec![item("a", tokens(1, 0, 9), 2, Nanos::ZERO)]);
    // Eager ranks: no padding; each MoE layer's experts run on the gathered batch (vLLM's
    // all-gather dispatch), rank 0's 9 tokens and rank 1's 1-token dummy batch: 10 tokens,
    // 10 · 2 = 20 token-expert pairs, 20 / 2 = 10 of them on each rank's 4 experts: the row of
    // round(10 / 2) = 5 tokens over min(10, 4) = 4 experts, moe(5, 4) = 54 + (62 − 54)/4 = 56 µs.
    // Step 1, rank 0: per layer the 9-token rows 38 + attention 10 + MoE 56 = 104; ×4 = 416;
    // + embedding 3 + final_layernorm 2 + lm_head 100 + sampler 30 = 551 µs. Rank 1's dummy
    // batch: per layer 21 + 10 + 56 = 87; ×4 = 348; + 133 = 481 µs. All-to-all per MoE layer
    // at the largest chunk, 9 tokens: a dispatch of 9 · (64 + 8) · 2 B = 1296 B (20 µs + 81 ns)
    // and a combine of 9 · 64 · 2 B = 1152 B (20 µs + 72 ns); 4 layers: 160 612 ns.
    let step1 = 551_000 + 160_612;
    assert_eq!(ns(recs[0].first_token_s), step1);
    // Step 2: one decode and a dummy batch, 2 gathered tokens, 4 pairs, 2 per rank: the row of
    // round(2 / 2) = 1 token over min(2, 4) = 2 experts, moe(1, 2) = 30 µs. Per layer 21 + 10 +
    // 30 = 61; ×4 = 244; + 133 = 377 µs on both ranks (the peer's rule would charge
    // round(2 · ¾) = 2 tokens with 2 pairs each, moe(2, 2) = 32 µs: 385 µs). All-to-all of one
    // token: 4 · ((20 µs + 9 ns) + (20 µs + 8 ns)) = 160 068 ns.
    let step2 = 377_000 + 160_068;
    assert_eq!(ns(recs[0].last_token_s), step1 + step2);
    let r = dp.lockstep_report().expect("lockstep");
    let last = r.last_step.expect("priced");
    assert_eq!(last.gathered_tokens, 2);
    assert_eq!(last.rank_ns, vec![377_000, 377_000]);
    assert_eq!(last.all_to_all_ns, 160_068);
    assert_eq!(r.dummy_steps, vec![0, 2]);
}

/// Two eager ranks with async scheduling on or off.
fn eager_pair(async_scheduling: bool) -> DataParallel {
    group_with(2, |cfg| {
        cfg.enforce_eager = true;
        cfg.async_scheduling = async_scheduling;
    })
}

/// A 100-token prompt (`a`, rank 0) and a 20-token one (`b`, rank 1) at 0, four output tokens
/// each, and `c`, 10 tokens and one output token, arriving at 0.5 ms, during the group's first
/// step. Returns the records sorted by id.
fn third_request_during_a_step(dp: &mut dyn EngineCore) -> Vec<RequestRecord> {
    let recs = run(
        dp,
        vec![
            item("a", tokens(1, 0, 100), 4, Nanos::ZERO),
            item("b", tokens(2, 0, 20), 4, Nanos::ZERO),
            item("c", tokens(3, 0, 10), 1, Nanos::from_micros(500)),
        ],
    );
    assert_eq!((recs[0].engine, recs[1].engine), (Some(0), Some(1)));
    recs
}

#[test]
fn under_async_scheduling_a_busy_rank_s_new_request_joins_the_step_after_next() {
    // Step 1: 100 and 20 prompt tokens, 1.1 ms (the slower rank) + 65.3 µs of all-to-all.
    let t1 = 1_165_300;
    // One-token decodes on both ranks: 1.001 ms + (20 µs + 128 ns) + (20 µs + 125 ns).
    let decode = 1_041_253;
    // c's prefill beside its rank's decode, 11 tokens: 1.011 ms + (20 µs + 1 408 ns) +
    // (20 µs + 1 375 ns).
    let with_c = 1_053_783;

    // Synchronous: c reaches its rank during step 1 and is scheduled when it ends, into step
    // 2, beside the decodes; its token comes with step 2.
    let mut dp = eager_pair(false);
    let recs = third_request_during_a_step(&mut dp);
    assert_eq!(ns(recs[2].first_token_s), t1 + with_c);
    assert_eq!(ns(recs[0].last_token_s), t1 + with_c + 2 * decode);
    assert_eq!(dp.lockstep_report().expect("lockstep").steps, 4);

    // Async: at 0 each rank scheduled its prefill and, while it runs, its first decode (step
    // 2). When step 1 ends c's rank schedules step 3, so c joins step 3; step 2 is the two
    // decodes alone.
    let mut dp = eager_pair(true);
    let recs = third_request_during_a_step(&mut dp);
    assert_eq!(ns(recs[0].first_token_s), t1);
    assert_eq!(ns(recs[1].first_token_s), t1);
    assert_eq!(ns(recs[2].first_token_s), t1 + decode + with_c);
    // a and b: tokens at the ends of steps 1–4; step 4 is the two decodes again.
    assert_eq!(ns(recs[0].last_token_s), t1 + decode + with_c + decode);
    assert_eq!(ns(recs[1].last_token_s), t1 + decode + with_c + decode);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!((r.steps, r.dummy_steps), (4, vec![0, 0]));
    assert!(!r.in_wave);
}

#[test]
fn under_async_scheduling_an_idle_rank_s_new_request_joins_the_next_step() {
    // a alone on rank 0 (two output tokens), b reaching rank 1 during step 1. Rank 1 has no
    // step in flight, so the batch it schedules when step 1 ends runs in step 2, with a's
    // decode, which rank 0 scheduled at 0: the group reprices step 2 with it. Step 1: 1.1 ms
    // + 65.3 µs against rank 1's dummy batch; step 2: b's 20 tokens, 1.02 ms + (20 µs + 2 560
    // ns) + (20 µs + 2 500 ns).
    let mut dp = eager_pair(true);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 2, Nanos::ZERO),
            item("b", tokens(2, 0, 20), 1, Nanos::from_micros(500)),
        ],
    );
    assert_eq!((recs[0].engine, recs[1].engine), (Some(0), Some(1)));
    let (t1, step2) = (1_165_300, 1_065_060);
    assert_eq!(ns(recs[0].first_token_s), t1);
    assert_eq!(ns(recs[1].first_token_s), t1 + step2);
    assert_eq!(ns(recs[0].last_token_s), t1 + step2);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!((r.steps, r.dummy_steps), (2, vec![0, 1]));
}

/// A fleet run a fixed time after each wake-up it asks for, as a served fleet's engine thread
/// is.
struct Late(DataParallel, Nanos);

impl EngineCore for Late {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.0.add(req, tag)
    }
    fn abort(&mut self, request_id: &str) {
        self.0.abort(request_id)
    }
    fn finish_stopped(&mut self, request_id: &str) {
        self.0.finish_stopped(request_id)
    }
    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        match self.0.run(now, sink) {
            Wake::At(t) => Wake::At(t + self.1),
            Wake::Idle => Wake::Idle,
        }
    }
    fn has_work(&self) -> bool {
        self.0.has_work()
    }
    fn num_unfinished(&self) -> usize {
        self.0.num_unfinished()
    }
}

#[test]
fn under_async_scheduling_a_late_round_still_takes_one_step_at_a_time() {
    // The busy-rank case run 50 µs after every step's end: each step starts 50 µs late, and
    // nothing else changes; in particular the step scheduled ahead is not taken as ended
    // because the round came after its provisional end.
    let late = Nanos::from_micros(50);
    let mut dp = Late(eager_pair(true), late);
    let recs = third_request_during_a_step(&mut dp);
    let (t1, decode, with_c, l) = (1_165_300, 1_041_253, 1_053_783, late.0);
    assert_eq!(ns(recs[0].first_token_s), t1 + l);
    assert_eq!(ns(recs[2].first_token_s), t1 + decode + with_c + 3 * l);
    assert_eq!(ns(recs[0].last_token_s), t1 + 2 * decode + with_c + 4 * l);
    assert_eq!(dp.0.lockstep_report().expect("lockstep").steps, 4);
}
