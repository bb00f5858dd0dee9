//! Mixture-of-experts layers in the `profile` latency model, against step times computed by
//! hand from the fixture `tests/data/moe-profile` (times in µs):
//!
//! ```text
//! dense.csv, tokens 1 → 9 (linear between):   embedding 1→3, layernorm 2→4, qkv_proj 10→18,
//!   qk_norm 1→1, rotary_emb 1→2, o_proj 5→9, gate_up_proj 20→36, act_fn 3→5, down_proj 10→18,
//!   final_layernorm 2→2
//! per_sequence.csv, sequences 1 → 5:           lm_head 100→140, sampler 30→38
//! attention.csv:                               10 at every profiled point (so 10 for any batch)
//! moe.csv (tokens × activated experts):
//!            tokens 1   2   4   8  16
//!   experts 2:     30  32  36  44  60
//!   experts 4:      -  50  54  62  78
//!   experts 8:      -   -  90  98 122
//! ```
//!
//! The model: 4 layers, 8 experts, top-2 (`num_experts_per_tok`). Per layer, every layer runs
//! `2·layernorm + qkv_proj + qk_norm + rotary_emb + o_proj + attention`; a MoE layer adds the
//! MoE block, a dense layer `gate_up_proj + act_fn + down_proj`. The step adds `embedding +
//! final_layernorm + lm_head + sampler` once.

use llm_emu_perf::latency::{parse_latency_spec_with, BatchShape, ProfileError, ProfileLatency};
use llm_emu_perf::sizing::ModelShape;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/moe-profile")
}

/// A 4-layer Qwen3-MoE shape with 8 experts, top-2; `mlp_only_layers` lists dense layers.
fn shape(mlp_only_layers: &str) -> ModelShape {
    ModelShape::from_hf_config_json(&format!(
        r#"{{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 1000, "num_experts": 8,
            "num_experts_per_tok": 2, "moe_intermediate_size": 32,
            "mlp_only_layers": [{mlp_only_layers}]}}"#
    ))
    .unwrap()
}

fn load(shape: &ModelShape, ep: u32) -> ProfileLatency {
    ProfileLatency::load(&fixture(), shape, 1)
        .and_then(|m| m.with_ep_size(ep))
        .unwrap()
}

/// Step times of an all-MoE model, one expert-parallel rank.
#[test]
fn moe_step_times_match_the_hand_computation() {
    let m = load(&shape(""), 1);
    assert_eq!(
        m.moe_routing().map(|r| (r.num_experts, r.top_k)),
        Some((8, 2))
    );

    // One decode at context 100: T = 1, S = 1. Routing: 1 token, min(1·2, 8) = 2 experts →
    // moe(1, 2) = 30. Per layer 2·2 + 10 + 1 + 1 + 5 + 10 + 30 = 61; ×4 = 244;
    // + embedding 1 + final_layernorm 2 + lm_head 100 + sampler 30 = 377 µs.
    assert_eq!(m.step_ns(&BatchShape::decodes(1, 100)), 377_000);

    // Three decodes: T = 3 (a quarter of the way from 1 to 9), S = 3 (half-way from 1 to 5).
    // Rows: layernorm 2.5, qkv_proj 12, qk_norm 1, rotary_emb 1.25, o_proj 6 → 25.25.
    // Routing: 3 tokens, min(3·2, 8) = 6 experts → between the experts-4 row at 3 tokens
    // (between 50 and 54: 52) and the experts-8 row (below its first key: 90): 52 + ½·38 = 71.
    // Per layer 25.25 + 10 + 71 = 106.25; ×4 = 425; + embedding 1.5 + final_layernorm 2
    // + lm_head 120 + sampler 34 = 582.5 µs.
    assert_eq!(m.step_ns(&BatchShape::decodes(3, 100)), 582_500);

    // A 9-token prefill: T = 9 (the last dense key), S = 1. Rows 2·4 + 18 + 1 + 2 + 9 = 38.
    // Routing: 9 tokens, min(18, 8) = 8 experts → the experts-8 row at 9 tokens, an eighth of
    // the way from 98 to 122: 101. Per layer 38 + 10 + 101 = 149; ×4 = 596;
    // + 3 + 2 + 100 + 30 = 731 µs.
    assert_eq!(m.step_ns(&BatchShape::from_requests([(9, 0)])), 731_000);
}

/// Expert parallelism splits the experts and the tokens over the ranks (a balanced gate).
#[test]
fn expert_parallel_split() {
    let prefill = BatchShape::from_requests([(9, 0)]);
    // ep = 2: 4 experts per rank; activated min(round(9·2/2), 4) = 4; tokens per rank
    // round(9·(1 − (1/2)²)) = round(6.75) = 7 → experts-4 row at 7 tokens, between 54 (4) and
    // 62 (8): 60. Per layer 38 + 10 + 60 = 108; ×4 = 432; + 135 = 567 µs.
    assert_eq!(load(&shape(""), 2).step_ns(&prefill), 567_000);
    // ep = 4: 2 experts per rank; activated min(round(4.5) = 4 (ties to even), 2) = 2; tokens
    // round(9·(1 − (3/4)²)) = round(3.9375) = 4 → moe(4, 2) = 36. Per layer 84; ×4 = 336;
    // + 135 = 471 µs.
    assert_eq!(load(&shape(""), 4).step_ns(&prefill), 471_000);
    // ep = 4, one decode: the balanced load rounds to 0 tokens and 0 experts; the busiest rank
    // still runs one token on one expert: moe(1, 1) = the experts-2 row at 1 token = 30, as
    // with ep = 1 (377 µs).
    assert_eq!(
        load(&shape(""), 4).step_ns(&BatchShape::decodes(1, 100)),
        377_000
    );
    // EP must divide the 8 experts.
    let e = ProfileLatency::load(&fixture(), &shape(""), 1)
        .and_then(|m| m.with_ep_size(3))
        .unwrap_err();
    assert!(
        matches!(
            e,
            ProfileError::BadEp {
                ep: 3,
                num_experts: 8
            }
        ),
        "{e}"
    );
    // The spec's `ep=N` reaches the model.
    let spec = format!("profile:dir={},ep=2", fixture().display());
    let via_spec = parse_latency_spec_with(&spec, &shape("")).unwrap();
    assert!(
        via_spec.describe().contains("expert parallelism 2"),
        "{}",
        via_spec.describe()
    );
    for bad in ["ep=0", "ep=3"] {
        let spec = format!("profile:dir={},{bad}", fixture().display());
        assert!(parse_latency_spec_with(&spec, &shape("")).is_err(), "{bad}");
    }
}

/// A MoE model with dense layers runs the MLP rows in those and the MoE block in the rest.
#[test]
fn dense_layers_of_a_moe_model_run_the_mlp_rows() {
    let m = load(&shape("1"), 1);
    // 9-token prefill: 4 × (38 + 10) = 192; one dense layer 36 + 5 + 18 = 59; three MoE layers
    // 3 × 101 = 303; + 135 = 689 µs.
    assert_eq!(m.step_ns(&BatchShape::from_requests([(9, 0)])), 689_000);
}

/// A copy of the fixture in a fresh folder, removed when the returned handle drops (pass or
/// fail).
fn copy_fixture(name: &str, skip: &str, replace: Option<(&str, &str)>) -> TempDir {
    let copy = tempfile::Builder::new()
        .prefix(&format!("llm-emu-moe-{name}-"))
        .tempdir()
        .unwrap();
    let dir = copy.path();
    std::fs::create_dir_all(dir.join("tp1")).unwrap();
    for f in [
        "meta.yaml",
        "tp1/dense.csv",
        "tp1/per_sequence.csv",
        "tp1/attention.csv",
        "tp1/moe.csv",
    ] {
        if f == skip {
            continue;
        }
        let mut text = std::fs::read_to_string(fixture().join(f)).unwrap();
        if let Some((_, t)) = replace.filter(|(file, _)| *file == f) {
            text = t.to_string();
        }
        std::fs::write(dir.join(f), text).unwrap();
    }
    copy
}

#[test]
fn a_moe_profile_without_moe_csv_names_the_file() {
    let copy = copy_fixture("no-moe", "tp1/moe.csv", None);
    let dir = copy.path();
    let e = ProfileLatency::load(dir, &shape(""), 1).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ProfileError::MissingMoeTable { .. }), "{s}");
    assert!(
        s.contains("tp1/moe.csv") && s.contains("4 of 4 layers"),
        "{s}"
    );

    // The same profile serves a dense model (its MLP rows are there) without moe.csv.
    let copy = copy_fixture("dense-model", "tp1/moe.csv", None);
    let dir = copy.path();
    let dense = ModelShape::from_hf_config_json(
        r#"{"model_type": "qwen3", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 1000}"#,
    )
    .unwrap();
    let m = ProfileLatency::load(dir, &dense, 1);
    // 9-token prefill: 4 × (38 + 10 + 59) = 428; + 135 = 563 µs.
    assert_eq!(
        m.unwrap().step_ns(&BatchShape::from_requests([(9, 0)])),
        563_000
    );
}

#[test]
fn a_moe_model_with_a_dense_layer_needs_the_mlp_rows() {
    let dense_without_mlp: String = std::fs::read_to_string(fixture().join("tp1/dense.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("gate_up_proj"))
        .map(|l| format!("{l}\n"))
        .collect();
    let copy = copy_fixture(
        "no-mlp",
        "",
        Some(("tp1/dense.csv", dense_without_mlp.as_str())),
    );
    let dir = copy.path();
    // All layers MoE: the MLP rows are not needed.
    assert!(ProfileLatency::load(dir, &shape(""), 1).is_ok());
    let e = ProfileLatency::load(dir, &shape("1"), 1).unwrap_err();
    assert!(e.to_string().contains("`gate_up_proj` missing"), "{e}");
}

#[test]
fn moe_csv_rows_are_checked() {
    let cases = [
        ("tokens,experts,time_us\n1,2,3\n", "header"),
        (
            "tokens,activated_experts,time_us\n0,2,3\n",
            "zero (at least 1)",
        ),
        (
            "tokens,activated_experts,time_us\n1,2,3\n1,2,4\n",
            "repeats line 2",
        ),
        (
            "tokens,activated_experts,time_us\n1,2,0\n",
            "a measured latency is positive",
        ),
    ];
    for (i, (text, want)) in cases.into_iter().enumerate() {
        let copy = copy_fixture(&format!("bad{i}"), "", Some(("tp1/moe.csv", text)));
        let dir = copy.path();
        let e = ProfileLatency::load(dir, &shape(""), 1).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("moe.csv") && s.contains(want), "{s}");
    }
}

/// Under TP the per-rank tables are `tp<N>/`'s, the MoE block is always `tp1/moe.csv`, and a
/// TP run without expert parallelism is warned about.
#[test]
fn tensor_parallel_runs_read_the_tp1_moe_table() {
    use llm_emu_perf::latency::LatencyModel;
    let copy = copy_fixture("tp2", "", None);
    let dir = copy.path();
    std::fs::create_dir_all(dir.join("tp2")).unwrap();
    for f in ["dense.csv", "per_sequence.csv", "attention.csv"] {
        std::fs::copy(dir.join("tp1").join(f), dir.join("tp2").join(f)).unwrap();
    }
    let m = ProfileLatency::load(dir, &shape(""), 2).unwrap();
    let prefill = BatchShape::from_requests([(9, 0)]);
    // The tp2 tables equal tp1's here, so the step is the TP 1 step (731 µs, see above).
    assert_eq!(m.step_ns(&prefill), 731_000);
    let warned = |m: &ProfileLatency| m.warnings().iter().any(|w| w.contains("ep=2 prices it"));
    assert!(warned(&m), "{:?}", m.warnings());
    let m = m.with_ep_size(2).unwrap();
    assert!(!warned(&m), "{:?}", m.warnings());
    assert_eq!(m.step_ns(&prefill), 567_000);
}

/// A data-parallel group without expert parallelism: vLLM splits each expert's width over
/// DP × TP GPUs and runs every rank's MoE layers on the group's gathered batch. `moe.csv`
/// times whole experts, so the layer is priced at the row with the same work per GPU:
/// gathered / shards tokens over min(gathered · k, E) / shards experts.
#[test]
fn data_parallel_without_ep_prices_the_sharded_experts_on_the_gathered_batch() {
    use llm_emu_core::latency::{BatchRequest, StepBatch};
    use llm_emu_perf::latency::{parse_latency_spec_on, HardwareDefaults};
    let prompt = [BatchRequest {
        num_tokens: 9,
        num_computed_before: 0,
        num_prompt_tokens: 9,
        samples: true,
    }];
    let batch = StepBatch {
        requests: &prompt,
        total_tokens: 9,
        padded_tokens: 9,
        num_running: 1,
    };
    let dp2 = HardwareDefaults {
        moe_data_parallel: Some(2),
        ..Default::default()
    };
    let spec = format!("profile:dir={}", fixture().display());
    let mut m = parse_latency_spec_on(&spec, &shape(""), &dp2).unwrap();
    assert!(
        m.describe().contains("width split over 2 GPUs"),
        "{}",
        m.describe()
    );
    // DP 2 × TP 1: the 9-token prompt and a 1-token batch gathered, G = 10: 20 pairs over all
    // 8 experts at half width = the row of 5 tokens over 4 experts, moe(5, 4) = 56. Per layer
    // 38 + 10 + 56 = 104; ×4 = 416; + 135 = 551 µs.
    assert_eq!(m.step_time_gathered(&batch, 10).0, 551_000);
    // G = 40 (a larger group batch): the row of 20 tokens over 4 experts, beyond the table's
    // 16: the experts-4 row's line through (8, 62) and (16, 78), 86 µs. 4 × (38 + 10 + 86) +
    // 135 = 671 µs, and the run says the row was extrapolated.
    assert_eq!(m.step_time_gathered(&batch, 40).0, 671_000);
    let w = m.warnings();
    assert!(w.iter().any(|w| w.contains("20 tokens per rank")), "{w:?}");
    // The run says how the sharded experts are approximated.
    assert!(w.iter().any(|w| w.contains("DP x TP = 2 GPUs")), "{w:?}");
    // The rank's own step (not gathered) keeps the peer's rule on its own tokens (731 µs).
    assert_eq!(m.step_time(&batch).0, 731_000);
    // A spec that splits the experts (`ep=`) takes precedence over the sharding.
    let ep = format!("profile:dir={},ep=2", fixture().display());
    let e = parse_latency_spec_on(&ep, &shape(""), &dp2).unwrap();
    assert!(
        e.describe().contains("expert parallelism 2"),
        "{}",
        e.describe()
    );
    assert!(!e.warnings().iter().any(|w| w.contains("DP x TP")));
}

/// Under TP the width is split over DP × TP: DP 2 × TP 2 = 4 GPUs.
#[test]
fn data_parallel_without_ep_shards_over_dp_times_tp() {
    use llm_emu_perf::latency::LatencyModel;
    let copy = copy_fixture("dp-tp2", "", None);
    let dir = copy.path();
    std::fs::create_dir_all(dir.join("tp2")).unwrap();
    for f in ["dense.csv", "per_sequence.csv", "attention.csv"] {
        std::fs::copy(dir.join("tp1").join(f), dir.join("tp2").join(f)).unwrap();
    }
    let m = ProfileLatency::load(dir, &shape(""), 2)
        .and_then(|m| m.with_moe_data_parallel(2))
        .unwrap();
    assert_eq!(m.moe_routing().map(|r| r.shards()), Some(4));
    // G = 10 over 4 GPUs: the row of round(2.5) = 2 tokens (ties to even) over 8 / 4 = 2
    // experts, moe(2, 2) = 32. 4 × (38 + 10 + 32) + 135 = 455 µs (tp2 tables = tp1's here).
    let prefill = BatchShape::from_requests([(9, 0)]);
    assert_eq!(m.step_ns_moe(&prefill, Some(10)), 455_000);
    // The TP warning about a whole TP-1 block does not apply: the width is split.
    assert!(
        !m.warnings().iter().any(|w| w.contains("ep=2 prices it")),
        "{:?}",
        m.warnings()
    );
}

/// One TP2 engine with expert parallelism (vLLM's EP size = TP, no DP): the experts stay whole,
/// spread over the TP GPUs, so the engine's (data-parallel size 1) width split is not applied;
/// with a DP size above 1 both splits at once are still refused.
#[test]
fn tensor_parallel_with_ep_keeps_whole_experts() {
    let copy = copy_fixture("tp2-ep", "", None);
    let dir = copy.path();
    std::fs::create_dir_all(dir.join("tp2")).unwrap();
    for f in ["dense.csv", "per_sequence.csv", "attention.csv"] {
        std::fs::copy(dir.join("tp1").join(f), dir.join("tp2").join(f)).unwrap();
    }
    let m = ProfileLatency::load(dir, &shape(""), 2)
        .and_then(|m| m.with_ep_size(2))
        .and_then(|m| m.with_moe_data_parallel(1))
        .unwrap();
    let routing = m.moe_routing().unwrap();
    assert_eq!((routing.ep, routing.shards()), (2, 2));
    // No EP: the width is split over the TP GPUs.
    let m = ProfileLatency::load(dir, &shape(""), 2)
        .and_then(|m| m.with_moe_data_parallel(1))
        .unwrap();
    let routing = m.moe_routing().unwrap();
    assert_eq!((routing.ep, routing.tp_shards), (1, 2));
    let Err(e) = ProfileLatency::load(dir, &shape(""), 2)
        .and_then(|m| m.with_ep_size(2))
        .and_then(|m| m.with_moe_data_parallel(2))
    else {
        panic!("EP and a DP width split at once");
    };
    assert!(e.to_string().contains("expert parallelism 2"), "{e}");
}
