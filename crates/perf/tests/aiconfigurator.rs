//! aiconfigurator's operator tables as a latency model: step times computed by hand from the
//! excerpt in tests/data/aiconfigurator (rows of its H100 SXM vLLM 0.19.0 tables, unchanged),
//! detection by `--profile`, and the refusals.

use llm_emu_perf::latency::aiconfigurator::AiconfiguratorLatency;
use llm_emu_perf::latency::{latency_spec_for_profile, HardwareDefaults, LatencySpec};
use llm_emu_perf::sizing::{ModelShape, OnlineQuantization};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/aiconfigurator/h100_sxm/vllm/0.19.0")
}

/// A two-layer decoder whose projections fall on the tables' grid: hidden 4096, 32 query and 8
/// KV heads of 128, MLP 8192, vocabulary 51200.
fn shape() -> ModelShape {
    ModelShape::from_hf_config_json(
        r#"{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 4096,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 8192, "vocab_size": 51200, "max_position_embeddings": 4096}"#,
    )
    .unwrap()
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() < 1e-9 * want.max(1.0),
        "got {got}, want {want}"
    );
}

/// Elementwise bytes of one token in one layer (two RMSNorms, rotary on q and k, SiLU × mul),
/// bf16, over H100 SXM's 3350 GB/s × 0.85, ms.
fn elementwise_ms(tokens: f64) -> f64 {
    let bytes = (6.0 * 4096.0 + 2.0 * 40.0 * 128.0 + 3.0 * 8192.0) * 2.0;
    tokens * bytes / (3350.0e6 * 0.85)
}

#[test]
fn decode_step_by_hand() {
    let m = AiconfiguratorLatency::load(&dir(), &shape(), 1, 0.0).unwrap();
    // 16 decodes at context 1023, each sampled; GEMMs at m = 16 (gemm_perf rows).
    let gemms = 0.021566222111384075 // qkv: n 6144, k 4096
        + 0.016587555408477783 // o: n 4096, k 4096
        + 0.04910755488607618 // gate_up: n 16384, k 4096
        + 0.02831022275818719; // down: n 4096, k 8192
    let attention = 0.03330666571855545; // generation: batch 16, step 1023
    let lm_head = 0.15102044741312662; // n 51200, k 4096
    let layer = gemms + attention + elementwise_ms(16.0);
    let reqs = vec![(1, 1023, true, true); 16];
    close(m.step_ms(&reqs, 16), 2.0 * layer + lm_head);
}

#[test]
fn prefill_step_interpolates_in_m_and_scales_chunks_by_causal_pairs() {
    let m = AiconfiguratorLatency::load(&dir(), &shape(), 1, 0.0).unwrap();
    // One 512-token prefill from scratch, not sampled: GEMMs at m = 512, context
    // attention at (batch 1, isl 512), no LM head.
    let gemms =
        0.03351199958059523 + 0.02460711035463545 + 0.10949066612455581 + 0.04525422387652927;
    let attention = 0.01729600007335345;
    let full = m.step_ms(&[(512, 0, false, false)], 512);
    close(full, 2.0 * (gemms + attention + elementwise_ms(512.0)));
    // The second half of a 1024-token prompt (512 new after 512): context attention at
    // (1, 1024) × pairs(512 after 512) / pairs(1024) = (512·512 + 512·513/2) / (1024·1025/2).
    let share = (512.0 * 512.0 + 512.0 * 513.0 / 2.0) / (1024.0 * 1025.0 / 2.0);
    let chunk = m.step_ms(&[(512, 512, false, false)], 512);
    close(
        chunk,
        2.0 * (gemms + 0.02903466671705246 * share + elementwise_ms(512.0)),
    );
    // 40 tokens: between the m = 16 and m = 64 rows of every GEMM.
    let at = |a: f64, b: f64| a + (b - a) * (40.0 - 16.0) / 48.0;
    let gemms40 = at(0.021566222111384075, 0.02102577851878272)
        + at(0.016587555408477783, 0.015258666541841296)
        + at(0.04910755488607618, 0.060230222013261586)
        + at(0.02831022275818719, 0.0303164455625746);
    // Context attention at isl 40: between isl 16 and 512 at batch 1.
    let att40 = 0.009850666547815004 + (0.01729600007335345 - 0.009850666547815004) * 24.0 / 496.0;
    close(
        m.step_ms(&[(40, 0, false, false)], 40),
        2.0 * (gemms40 + att40 + elementwise_ms(40.0)),
    );
}

#[test]
fn tensor_parallel_reads_per_rank_shapes_and_the_custom_all_reduce() {
    let m = AiconfiguratorLatency::load(&dir(), &shape(), 2, 0.0).unwrap();
    // One decode at 2047, not sampled: per rank 16 query / 4 KV heads; qkv n 3072, o k 2048,
    // gate_up n 8192, down k 4096 at m = 1; all-reduce of 4096 elements (vllm_graph, 2 GPUs).
    let t = |n: u64, k: u64| -> f64 {
        let text = std::fs::read_to_string(dir().join("gemm_perf.txt")).unwrap();
        text.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| {
                f[5] == "bfloat16" && f[6] == "1" && f[7] == n.to_string() && f[8] == k.to_string()
            })
            .map(|f| f[9].parse().unwrap())
            .unwrap()
    };
    let gemms = t(3072, 4096) + t(4096, 2048) + t(8192, 4096) + t(4096, 4096);
    let attention = 0.012122667084137598; // generation: 16/4 heads, batch 1, step 2047
    let all_reduce = 0.004362879991531373;
    let bytes = (6.0 * 4096.0 + 2.0 * 20.0 * 128.0 + 3.0 * 4096.0) * 2.0;
    let layer = gemms + attention + 2.0 * all_reduce + bytes / (3350.0e6 * 0.85);
    close(m.step_ms(&[(1, 2047, true, false)], 1), 2.0 * layer);
}

#[test]
fn detected_built_and_checked_against_the_model() {
    assert_eq!(
        latency_spec_for_profile(&dir()).unwrap(),
        LatencySpec::aiconfigurator(dir())
    );
    let model = LatencySpec::aiconfigurator(dir())
        .build(&shape(), &HardwareDefaults::default())
        .unwrap();
    assert_eq!(model.measured_on(), (Some("NVIDIA H100 80GB HBM3"), None));
    // FP8 weights read the fp8 GEMM rows, which the excerpt does not hold: named.
    let fp8 = shape().with_online_quantization(OnlineQuantization::Fp8);
    let e = AiconfiguratorLatency::load(&dir(), &fp8, 1, 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gemm_dtype fp8") && e.contains("bfloat16"),
        "{e}"
    );
    // Heads the tables do not hold, and MoE models, are refused with the reason.
    let e = AiconfiguratorLatency::load(
        &dir(),
        &ModelShape::builtin("Qwen/Qwen3-0.6B").unwrap(),
        1,
        0.0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("16 heads") && e.contains("num_heads 32"), "{e}");
    let e = AiconfiguratorLatency::load(
        &dir(),
        &ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap(),
        1,
        0.0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("dense decoders"), "{e}");
}
