//! Expert-parallel lockstep, derived by hand: waves, dummy batches, the padding rule and the
//! all-to-all.

mod common;

use common::{item, tokens};
use llm_emu_core::latency::{LatencyModel, StepBatch};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_fleet::{AllToAll, DataParallel, EpGroup, Link};
use llm_emu_sim::{RequestRecord, Sinks, WorkloadItem};

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

fn group(n: usize) -> DataParallel {
    let models: Vec<Box<dyn LatencyModel>> = (0..n).map(|_| Box::new(Padded) as _).collect();
    let (g, lat) = EpGroup::new(models, a2a());
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

fn run(dp: &mut DataParallel, w: Vec<WorkloadItem>) -> Vec<RequestRecord> {
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    llm_emu_sim::run(dp, w.into_iter().map(Ok), &mut sinks, &mut |_| {}).expect("runs");
    let mut r = sinks.records.take().expect("kept");
    r.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    r
}

fn ns(s: Option<f64>) -> u64 {
    (s.expect("set") * 1e9).round() as u64
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

#[test]
fn ranks_pad_to_the_group_s_largest_batch_and_wait_for_the_slowest() {
    let mut dp = group(2);
    let recs = run(
        &mut dp,
        vec![
            item("a", tokens(1, 0, 100), 2, Nanos::ZERO),
            item("b", tokens(2, 0, 20), 2, Nanos::ZERO),
        ],
    );
    // The balancer alternates (local increments): a on rank 0, b on rank 1. Step 1 is padded
    // to 100 tokens on both ranks, so b's 20-token prompt takes as long as a's.
    assert_eq!(recs[0].engine, Some(0));
    assert_eq!(recs[1].engine, Some(1));
    let step1 = 1_100_000 + 65_300;
    assert_eq!(ns(recs[0].first_token_s), step1);
    assert_eq!(ns(recs[1].first_token_s), step1);
    let r = dp.lockstep_report().expect("lockstep");
    assert_eq!(r.dummy_steps, vec![0, 0]);
    let last = r.last_step.expect("priced");
    assert_eq!(last.padded_tokens, 1);
    assert_eq!(last.rank_ns, vec![1_001_000, 1_001_000]);
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
    // Step 1, rank 0: the 9-token prefill with 4 of the 8 experts per rank (EP 2): 567 µs
    // (profile_moe.rs, `expert_parallel_split`); rank 1's dummy batch, padded to 9 tokens, is
    // no slower. All-to-all per MoE layer: a dispatch of 9 · (64 + 8) · 2 B = 1296 B (20 µs +
    // 81 ns) and a combine of 9 · 64 · 2 B = 1152 B (20 µs + 72 ns); 4 layers: 160 612 ns.
    let step1 = 567_000 + 160_612;
    assert_eq!(ns(recs[0].first_token_s), step1);
    // Step 2: one decode; EP 2 routes round(1 · (1 − ¼)) = 1 token to 1 expert per rank:
    // moe(1, 1) = 30 µs as at EP 1 → 377 µs (attention is flat in the fixture). All-to-all of
    // one token: 4 · ((20 µs + 9 ns) + (20 µs + 8 ns)) = 160 068 ns.
    let step2 = 377_000 + 160_068;
    assert_eq!(ns(recs[0].last_token_s), step1 + step2);
    let r = dp.lockstep_report().expect("lockstep");
    let last = r.last_step.expect("priced");
    assert_eq!(last.rank_ns[0], 377_000);
    assert!(last.rank_ns[1] <= last.rank_ns[0], "{last:?}");
    assert_eq!(last.all_to_all_ns, 160_068);
    assert_eq!(r.dummy_steps, vec![0, 2]);
}
