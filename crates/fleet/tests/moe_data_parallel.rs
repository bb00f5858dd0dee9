//! A mixture-of-experts model's data-parallel ranks without expert parallelism, derived by
//! hand: vLLM 0.19 runs them as `DPEngineCoreProc` in lockstep exactly as with expert
//! parallelism (waves, dummy batches, padding, counts reported to the coordinator), each
//! expert's width split over DP × TP GPUs and every rank's MoE layers on the gathered batch.

mod common;

use common::{item, ns, run, tokens};
use llm_emu_core::latency::LatencyModel;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_fleet::{AllToAll, DataParallel, EpGroup, ExpertLayout, Link};

/// The MoE operator profile of `llm-emu-perf`'s tests (`tests/data/moe-profile`): 4 MoE
/// layers, 8 experts, top-2, hidden 64, bf16, TP 1; each expert's width split over the `dp`
/// ranks of a group without expert parallelism.
fn sharded_profile(dp: u32) -> Box<dyn LatencyModel> {
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
            .and_then(|m| m.with_moe_data_parallel(dp))
            .expect("profile"),
    )
}

/// `n` eager ranks of the sharded profile in lockstep, the dispatch and combine of its 4 MoE
/// layers over a ring of `n` at 16 GB/s + 20 µs.
fn group(n: usize) -> DataParallel {
    let a2a = AllToAll {
        hidden_size: 64,
        dtype_bytes: 2,
        num_experts: 8,
        moe_layers: 4,
        ranks: n as u64,
        link: Link {
            bandwidth_gbs: 16.0,
            latency_ns: 20_000.0,
        },
    };
    let models = (0..n).map(|_| sharded_profile(n as u32)).collect();
    let (g, lat) = EpGroup::with_layout(models, a2a, ExpertLayout::TpSharded);
    let engines = lat
        .into_iter()
        .map(|l| {
            let mut cfg = EngineConfig::with_defaults(1000, 8192);
            cfg.async_scheduling = false;
            cfg.enforce_eager = true;
            Engine::new(cfg, Box::new(l), Box::new(HashSampler::default())).expect("valid")
        })
        .collect();
    DataParallel::expert_parallel(engines, 1, g)
}

/// Profile rows used below (tests/data/moe-profile): per layer the 1-token rows (layernorm
/// 2 × 2, qkv 10, rotary 1, o_proj 5, qk_norm 1) = 21 µs and the 9-token ones (2 × 4, 18, 2,
/// 9, 1) = 38 µs; attention 10 µs; outside the layers a 1-token step adds embedding 1 +
/// final_layernorm 2 + lm_head 100 + sampler 30 = 133 µs, the 9-token prompt 3 + 2 + 100 + 30
/// = 135 µs.
#[test]
fn dp2_without_ep_steps_in_lockstep_with_dummy_batches_and_waves() {
    let mut dp = group(2);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 9), 2, Nanos::ZERO),
            item("b", tokens(2, 0, 9), 1, Nanos::from_millis(300)),
        ],
    );
    // Step 1: a's 9-token prompt on rank 0, a 1-token dummy batch on rank 1 (eager: not
    // padded); gathered G = 10. Each expert's width over DP 2 × TP 1 = 2 GPUs: every GPU runs
    // all 10 · 2 = 20 pairs over min(20, 8) = 8 experts at half width = the row of
    // round(10 / 2) = 5 tokens over 8 / 2 = 4 experts: moe(5, 4) = 54 + (62 − 54) / 4 = 56 µs.
    // Rank 0: (38 + 10 + 56) · 4 + 135 = 551 µs; rank 1: (21 + 10 + 56) · 4 + 133 = 481 µs.
    // Dispatch and combine per MoE layer over a ring of 2 at the largest chunk, 9 tokens:
    // (20 µs + 9 · 72 · 2 B / 16 = 81 ns) + (20 µs + 9 · 64 · 2 B / 16 = 72 ns); × 4 layers.
    let step1 = 551_000 + 4 * (20_081 + 20_072);
    assert_eq!(recs[0].engine, Some(0));
    assert_eq!(ns(recs[0].first_token_s), step1);
    // Step 2: a's decode and a dummy batch, G = 2: 4 pairs over 4 experts at half width = the
    // row of 1 token over 2 experts, 30 µs: (21 + 10 + 30) · 4 + 133 = 377 µs; a one-token
    // exchange: 4 · ((20 µs + 9 ns) + (20 µs + 8 ns)).
    let step2 = 377_000 + 4 * (20_009 + 20_008);
    assert_eq!(ns(recs[0].last_token_s), step1 + step2);
    // b arrives at 300 ms, after the wave ended: a new wave. The coordinator published the
    // ranks' reported zeros in between (MoE ranks report, vLLM's DPEngineCoreProc), replacing
    // the balancer's local increment on rank 0, so b goes to rank 0 again (a dense model's
    // ranks never report, and its balancer would send b to rank 1).
    assert_eq!(recs[1].engine, Some(0));
    assert_eq!(ns(recs[1].first_token_s), 300_000_000 + step1);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!(r.waves, 2, "a's wave, then b's");
    assert_eq!(r.steps, 3);
    assert_eq!(
        r.dummy_steps,
        vec![0, 3],
        "rank 1 ran a dummy batch each step"
    );
    assert!(!r.in_wave, "the second wave ended too");
    let last = r.last_step.expect("priced");
    assert_eq!(last.gathered_tokens, 10);
    assert_eq!(last.rank_ns, vec![551_000, 481_000]);
}

#[test]
fn dp3_without_ep_shards_experts_that_ep_could_not_split() {
    // 8 experts do not split over 3 EP ranks, but vLLM without expert parallelism splits
    // each expert's width over the 3 GPUs. A 9-token prompt on rank 0, dummy batches on ranks
    // 1 and 2: G = 11, 22 pairs over all 8 experts at a third of their width = the row of
    // round(11 / 3) = 4 tokens over round(8 / 3) = 3 experts: moe(4, 3) = (36 + 54) / 2 =
    // 45 µs. Rank 0: (38 + 10 + 45) · 4 + 135 = 507 µs; ranks 1, 2: (21 + 10 + 45) · 4 + 133 =
    // 437 µs. Dispatch and combine over a ring of 3 (2 hops each) at 9 tokens, 4 layers.
    let mut dp = group(3);
    let recs = run(&mut dp, vec![item("a", tokens(1, 0, 9), 2, Nanos::ZERO)]);
    let step1 = 507_000 + 4 * 2 * (20_081 + 20_072);
    assert_eq!(ns(recs[0].first_token_s), step1);
    // Step 2: G = 3: the row of 1 token over round(6 / 3) = 2 experts, 30 µs: 377 µs on every
    // rank, plus 4 · 2 one-token hops of each.
    let step2 = 377_000 + 4 * 2 * (20_009 + 20_008);
    assert_eq!(ns(recs[0].last_token_s), step1 + step2);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!(r.dummy_steps, vec![0, 2, 2]);
    let last = r.last_step.expect("priced");
    assert_eq!(last.gathered_tokens, 3);
    assert_eq!(last.rank_ns, vec![377_000, 377_000, 377_000]);
    assert_eq!(last.all_to_all_ns, 4 * 2 * (20_009 + 20_008));
}

#[test]
fn graph_ranks_pad_to_the_largest_batch_without_ep_too() {
    // With CUDA graphs on every rank (vLLM's defaults: sizes 1, 2, 4, 8, 16, 24, … up to 512),
    // a's 9-token prompt runs the 16 graph and rank 1's dummy batch the 1 graph; both run a
    // graph, so `should_dp_pad`: both compute 16 tokens, G = 32.
    let a2a = AllToAll {
        hidden_size: 64,
        dtype_bytes: 2,
        num_experts: 8,
        moe_layers: 4,
        ranks: 2,
        link: Link::default(),
    };
    let (g, lat) = EpGroup::with_layout(
        vec![sharded_profile(2), sharded_profile(2)],
        a2a,
        ExpertLayout::TpSharded,
    );
    let engines = lat
        .into_iter()
        .map(|l| {
            let mut cfg = EngineConfig::with_defaults(1000, 8192);
            cfg.async_scheduling = false;
            Engine::new(cfg, Box::new(l), Box::new(HashSampler::default())).expect("valid")
        })
        .collect();
    let mut dp = DataParallel::expert_parallel(engines, 1, g);
    run(&mut dp, vec![item("a", tokens(1, 0, 9), 1, Nanos::ZERO)]);
    let last = dp
        .lockstep_report()
        .and_then(|r| r.last_step)
        .expect("priced");
    assert!(last.dp_padded);
    assert_eq!(last.rank_tokens, vec![16, 16]);
    assert_eq!(last.gathered_tokens, 32);
    assert_eq!(last.dummy_ranks, vec![1]);
}
