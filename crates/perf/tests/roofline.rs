//! The roofline latency model: monotonic in work, memory-bound decode and compute-bound
//! prefill, tensor parallelism, MoE expert coverage, errors, and per-operator agreement with the
//! RTX PRO 6000 operator profile (microbenchmarks, when ../shared is present).

use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::latency::roofline::{Bound, RooflineLatency, RooflineParams};
use llm_emu_perf::latency::{parse_latency_spec_on, parse_latency_spec_with, HardwareDefaults};
use llm_emu_perf::sizing::ModelShape;
use std::collections::HashMap;
use std::path::PathBuf;

fn roofline(model: &str, gpu: &str, tp: u64) -> RooflineLatency {
    let shape = ModelShape::builtin(model).unwrap();
    RooflineLatency::new(
        &shape,
        RooflineParams::new(GpuSpec::lookup(gpu).unwrap(), tp),
    )
    .unwrap()
}

fn decodes(n: u64, ctx: u64) -> Vec<(u64, u64)> {
    (0..n).map(|_| (1, ctx)).collect()
}

fn op_bound(m: &RooflineLatency, reqs: &[(u64, u64)], name: &str) -> Bound {
    m.breakdown(reqs)
        .into_iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .bound
}

fn total(m: &RooflineLatency, reqs: &[(u64, u64)], name: &str) -> f64 {
    m.breakdown(reqs)
        .iter()
        .filter(|o| o.name == name)
        .map(|o| o.total_us())
        .sum()
}

#[test]
fn monotonic_in_tokens_batch_and_context() {
    for (model, gpu) in [
        ("meta-llama/Llama-3.1-8B", "rtx-pro-6000"),
        ("Qwen/Qwen3-30B-A3B", "h100"),
        ("deepseek-ai/DeepSeek-V3", "h200"),
        ("openai/gpt-oss-20b", "b200"),
    ] {
        let tp = if model.contains("DeepSeek") { 8 } else { 1 };
        let m = roofline(model, gpu, tp);
        let mut prev = 0.0;
        for t in [1, 2, 16, 64, 256, 1024, 2048, 8192] {
            let us = m.step_us(&[(t, 0)]);
            assert!(us > prev, "{model}: prefill {t}: {us} <= {prev}");
            prev = us;
        }
        let mut prev = 0.0;
        for ctx in [0, 100, 1000, 10_000, 100_000] {
            let us = m.step_us(&decodes(32, ctx));
            assert!(us >= prev, "{model}: context {ctx}: {us} < {prev}");
            prev = us;
        }
        assert!(m.step_us(&decodes(32, 100_000)) > m.step_us(&decodes(32, 0)));
        let mut prev = 0.0;
        for n in [1, 8, 64, 256] {
            let us = m.step_us(&decodes(n, 1000));
            assert!(us > prev, "{model}: {n} decodes: {us} <= {prev}");
            prev = us;
        }
    }
}

#[test]
fn decode_is_memory_bound_and_prefill_compute_bound() {
    let m = roofline("meta-llama/Llama-3.1-8B", "h100", 1);
    let dec = decodes(8, 1000);
    for op in [
        "qkv_proj",
        "gate_up_proj",
        "down_proj",
        "attention_decode",
        "lm_head",
    ] {
        assert_eq!(op_bound(&m, &dec, op), Bound::Memory, "{op}");
    }
    let pre = [(4096, 0)];
    for op in ["qkv_proj", "gate_up_proj", "down_proj", "attention_prefill"] {
        assert_eq!(op_bound(&m, &pre, op), Bound::Compute, "{op}");
    }
    // A decode step of an 8B bf16 model reads ≈ 16 GB of weights: at 3.35 TB/s × 0.85 that is
    // ≈ 5.6 ms, and FLOPs are negligible.
    let us = m.step_us(&decodes(1, 100));
    assert!((5_500.0..7_500.0).contains(&us), "{us}");
    // A 4096-token prefill does ≈ 2 × 8 G × 4096 FLOPs ≈ 66 TFLOP: ≈ 89 ms at 989 × 0.75.
    let us = m.step_us(&pre);
    assert!((80_000.0..130_000.0).contains(&us), "{us}");
}

#[test]
fn tensor_parallel_splits_work_and_adds_all_reduce() {
    let reqs: Vec<(u64, u64)> = decodes(64, 2000).into_iter().chain([(512, 0)]).collect();
    let t1 = roofline("meta-llama/Llama-3.1-70B", "h100", 1);
    let t2 = roofline("meta-llama/Llama-3.1-70B", "h100", 2);
    let t4 = roofline("meta-llama/Llama-3.1-70B", "h100", 4);
    assert_eq!(total(&t1, &reqs, "all_reduce"), 0.0);
    let ar2 = total(&t2, &reqs, "all_reduce");
    let ar4 = total(&t4, &reqs, "all_reduce");
    // 2 per layer plus the embedding's.
    let n = t4
        .breakdown(&reqs)
        .iter()
        .filter(|o| o.name == "all_reduce")
        .map(|o| o.count)
        .sum::<u64>();
    assert_eq!(n, 2 * 80 + 1);
    assert!(ar2 > 0.0 && ar4 > ar2, "{ar2} {ar4}");
    let compute = |m: &RooflineLatency| m.step_us(&reqs) - total(m, &reqs, "all_reduce");
    assert!(compute(&t2) < 0.6 * compute(&t1));
    assert!(compute(&t4) < 0.6 * compute(&t2));
    assert!(t4.step_us(&reqs) < t2.step_us(&reqs));
    // PCIe all-reduces cost more than NVLink ones.
    let pcie = roofline("meta-llama/Llama-3.1-70B", "h100-pcie", 4);
    assert!(total(&pcie, &reqs, "all_reduce") > 2.0 * ar4);
}

/// A real run's recorded link (cluster `link_bw`, `link_latency`) prices the roofline's
/// all-reduces as it does the profile model's; a spec's own link factor still wins.
#[test]
fn recorded_tp_link_prices_the_all_reduces() {
    use llm_emu_perf::latency::RecordedTpLink;
    let shape = ModelShape::builtin("Qwen/Qwen3-32B").unwrap();
    let reqs: Vec<(u64, u64)> = decodes(64, 2000);
    let gpu = GpuSpec::lookup("rtx-pro-6000").unwrap();
    let hw = |link: Option<RecordedTpLink>| HardwareDefaults {
        gpu: Some(gpu),
        tensor_parallel_size: Some(2),
        tp_link: link,
        ..Default::default()
    };
    let link = RecordedTpLink {
        gbps: 16.0,
        hop_latency_us: 20.0,
        source: "config.json".into(),
    };
    let step = |spec: &str, h: &HardwareDefaults| {
        parse_latency_spec_on(spec, &shape, h).unwrap().describe()
    };
    let datasheet = step("roofline", &hw(None));
    let recorded = step("roofline", &hw(Some(link.clone())));
    assert!(recorded.contains("recorded link 16 GB/s"), "{recorded}");
    // 2 ring hops of 20 µs per all-reduce at TP 2.
    assert!(recorded.contains("all-reduce latency 40 µs"), "{recorded}");
    assert!(!datasheet.contains("recorded link"), "{datasheet}");
    let own = step("roofline:link_eff=0.5", &hw(Some(link.clone())));
    assert!(own.contains("link_eff 0.5"), "{own}");
    // The recorded bandwidth is used as achieved: the all-reduces of a 16 GB/s link cost
    // more than those of the GPU's PCIe 5 datasheet link at the default efficiency.
    // A 2048-token prefill, where the bytes dominate the all-reduce.
    let prefill = [(2048, 0)];
    let mut p = RooflineParams::new(gpu, 2);
    let base = RooflineLatency::new(&shape, p.clone()).unwrap();
    p.recorded_link_gbs = Some(16.0);
    let slow = RooflineLatency::new(&shape, p).unwrap();
    let (b, s) = (
        total(&base, &prefill, "all_reduce"),
        total(&slow, &prefill, "all_reduce"),
    );
    assert!(s > 2.0 * b, "{s} vs {b}");
    assert!(total(&slow, &reqs, "all_reduce") > total(&base, &reqs, "all_reduce"));
}

#[test]
fn moe_reads_only_the_experts_hit() {
    let m = roofline("Qwen/Qwen3-30B-A3B", "h100", 1);
    let one = total(&m, &[(1, 100)], "moe_gate_up");
    let many = total(&m, &decodes(64, 100), "moe_gate_up");
    // 1 token reads 8 experts' weights; 64 tokens hit ≈ 127 of 128.
    assert!(many > 8.0 * one, "{one} {many}");
    assert!(many < 17.0 * one, "{one} {many}");
    // A single decode of the 30B MoE is far cheaper than a dense model of the same size.
    let dense = roofline("Qwen/Qwen3-32B", "h100", 1);
    assert!(m.step_us(&[(1, 100)]) < 0.3 * dense.step_us(&[(1, 100)]));
}

fn qwen3_moe_ep(ep: u64) -> RooflineLatency {
    let shape = ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap();
    let mut p = RooflineParams::new(GpuSpec::lookup("rtx-pro-6000").unwrap(), 1);
    p.ep = ep;
    RooflineLatency::new(&shape, p).unwrap()
}

#[test]
fn expert_parallel_ranks_compute_their_share_of_the_pairs() {
    let shape = ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap();
    let moe = shape.moe.clone().unwrap();
    // 128 experts, top-8, expert intermediate 768: 128 tokens hit each expert with
    // probability 1 − (120/128)^128.
    let p_hit = 1.0 - (120.0f64 / 128.0).powi(128);
    let w = qwen3_moe_ep(2).routed_work(&moe, 128);
    assert_eq!(w.rows, 512.0); // 128 · 8 / 2 pairs on this rank
    assert!((w.experts_hit - 64.0 * p_hit).abs() < 1e-9, "{w:?}");
    assert_eq!(w.intermediate, 768.0); // whole experts under EP
                                       // Without EP at TP 2: every pair, every expert, each TP-sharded.
    let w = roofline("Qwen/Qwen3-30B-A3B", "rtx-pro-6000", 2).routed_work(&moe, 128);
    assert_eq!(w.rows, 1024.0);
    assert!((w.experts_hit - 128.0 * p_hit).abs() < 1e-9, "{w:?}");
    assert_eq!(w.intermediate, 384.0);
}

#[test]
fn a_data_parallel_rank_prices_its_experts_on_the_gathered_batch() {
    let m = qwen3_moe_ep(2);
    let own = [(1, 100)];
    let ops = m.breakdown_gathered(&own, 2);
    let gate_up = ops.iter().find(|o| o.name == "moe_gate_up").unwrap();
    // Hand-computed: 2 gathered tokens, 8 pairs on this rank; distinct experts hit
    // 128 (1 − (120/128)²) = 15.5, half of them local = 7.75; weights 2048 × 1536 × 2 B each,
    // plus the rows' activations 8 × (2048 + 1536) × 2 B, at 1597 GB/s × 0.85, + 2 µs kernel.
    let bytes = 7.75 * 2048.0 * 1536.0 * 2.0 + 8.0 * (2048.0 + 1536.0) * 2.0;
    let expect = bytes / (1597e3 * 0.85) + 2.0;
    assert!(
        (gate_up.each_us - expect).abs() < 1e-9,
        "{} {expect}",
        gate_up.each_us
    );
    assert_eq!(gate_up.count, 48);
    assert_eq!(gate_up.bound, Bound::Memory);
    // Everything but the routed experts runs on the rank's own batch: the same as ungathered.
    let own_ops = m.breakdown(&own);
    for (a, b) in ops.iter().zip(&own_ops) {
        if !matches!(a.name, "moe_gate_up" | "moe_down" | "act_fn") {
            assert_eq!(a, b);
        }
    }
    // One engine whose EP ranks hold the same token: 8 / 2 = 4 pairs over 4 local experts.
    let alone = own_ops.iter().find(|o| o.name == "moe_gate_up").unwrap();
    let bytes = 4.0 * 2048.0 * 1536.0 * 2.0 + 4.0 * (2048.0 + 1536.0) * 2.0;
    assert!((alone.each_us - (bytes / (1597e3 * 0.85) + 2.0)).abs() < 1e-9);
    // The gathered price is what the engine is charged.
    let mut boxed: Box<dyn llm_emu_perf::latency::LatencyModel> = Box::new(m.clone());
    let reqs = [llm_emu_perf::latency::BatchRequest {
        num_tokens: 1,
        num_computed_before: 100,
        num_prompt_tokens: 100,
        samples: true,
    }];
    let batch = llm_emu_perf::latency::StepBatch {
        requests: &reqs,
        total_tokens: 1,
        padded_tokens: 1,
        num_running: 1,
    };
    let ns = boxed.step_time_gathered(&batch, 2).0 as f64;
    assert!((ns - m.step_us_gathered(&own, 2) * 1000.0).abs() <= 0.5);
    assert!(ns > boxed.step_time(&batch).0 as f64);
    // A rank without EP reads every expert its tokens hit: 8 for one token, twice the EP rank's 4.
    let full = roofline("Qwen/Qwen3-30B-A3B", "rtx-pro-6000", 1);
    assert!(total(&full, &own, "moe_gate_up") > 1.9 * total(&m, &own, "moe_gate_up"));
}

#[test]
fn expert_parallel_spec() {
    let shape = ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap();
    let m = parse_latency_spec_with("roofline:ep=2", &shape).unwrap();
    assert!(
        m.describe().contains("experts over ep=2"),
        "{}",
        m.describe()
    );
    let err = |spec: &str| {
        parse_latency_spec_with(spec, &shape)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err("roofline:ep=3").contains("128 experts do not split evenly over ep=3"));
    assert!(err("roofline:ep=0").contains("positive integer"));
    // A dense model has no experts to split: any ep leaves it as it is.
    let dense = ModelShape::llama_3_1_8b();
    let a = RooflineLatency::parse_params("ep=4", &dense, None, 1).unwrap();
    let b = RooflineLatency::parse_params("", &dense, None, 1).unwrap();
    assert_eq!(a.step_us(&decodes(8, 100)), b.step_us(&decodes(8, 100)));
}

#[test]
fn fp8_and_quantized_formats() {
    let shape = ModelShape::builtin("meta-llama/Llama-3.1-8B").unwrap();
    let h100 = GpuSpec::lookup("h100").unwrap();
    let bf16 = parse_latency_spec_on(
        "roofline:dtype=bf16",
        &shape,
        &HardwareDefaults {
            gpu: Some(h100),
            tensor_parallel_size: None,
            seed: 0,
            tp_link: None,
            moe_data_parallel: None,
        },
    )
    .unwrap();
    let fp8 = RooflineLatency::parse_params("dtype=fp8", &shape, Some(h100), 1).unwrap();
    assert!(bf16.describe().contains("h100-sxm"));
    let as_bf16 = RooflineLatency::parse_params("dtype=bf16", &shape, Some(h100), 1).unwrap();
    // FP8 halves the linear layers' weight bytes (decode; the LM head stays bf16) and doubles
    // the peak (prefill).
    let d = as_bf16.step_us(&[(1, 10)]) / fp8.step_us(&[(1, 10)]);
    assert!(d > 1.5 && d < 2.0, "{d}");
    let p = as_bf16.step_us(&[(8192, 0)]) / fp8.step_us(&[(8192, 0)]);
    assert!(p > 1.4 && p < 2.1, "{p}");
    // On an A100 (no FP8 tensor cores) FP8 weights still halve decode time but not prefill.
    let a100 = GpuSpec::lookup("a100").unwrap();
    let a_fp8 = RooflineLatency::parse_params("dtype=fp8", &shape, Some(a100), 1).unwrap();
    let a_bf16 = RooflineLatency::parse_params("dtype=bf16", &shape, Some(a100), 1).unwrap();
    let p = a_bf16.step_us(&[(8192, 0)]) / a_fp8.step_us(&[(8192, 0)]);
    assert!(p < 1.1, "{p}");
    // gpt-oss's MXFP4 experts read ≈ 4× fewer bytes than bf16 experts would.
    let g = ModelShape::builtin("openai/gpt-oss-120b").unwrap();
    let mx = RooflineLatency::parse_params("", &g, Some(h100), 1).unwrap();
    let bf = RooflineLatency::parse_params("dtype=bf16", &g, Some(h100), 1).unwrap();
    let ratio = total(&bf, &decodes(4, 10), "moe_down") / total(&mx, &decodes(4, 10), "moe_down");
    assert!(ratio > 2.5, "{ratio}");
}

#[test]
fn sliding_window_caps_attention_reads() {
    let m = roofline("openai/gpt-oss-20b", "h100", 1);
    let short = total(&m, &decodes(64, 100), "attention_decode");
    let long = total(&m, &decodes(64, 100_000), "attention_decode");
    // Only the 12 full-attention layers grow with context; the 12 sliding ones stay at 128.
    let per_layer = m
        .breakdown(&decodes(64, 100_000))
        .into_iter()
        .filter(|o| o.name == "attention_decode")
        .map(|o| o.each_us)
        .collect::<Vec<_>>();
    assert_eq!(per_layer.len(), 2);
    assert!(per_layer[0] < per_layer[1] / 50.0 || per_layer[1] < per_layer[0] / 50.0);
    assert!(long > 10.0 * short);
}

#[test]
fn bad_specs_are_clear_errors() {
    let shape = ModelShape::llama_3_1_8b();
    let err = |spec: &str| match parse_latency_spec_with(spec, &shape) {
        Ok(_) => panic!("{spec} accepted"),
        Err(e) => e.to_string(),
    };
    let e = err("roofline:gpu=tpu-v5e");
    assert!(
        e.contains("unknown GPU `tpu-v5e`") && e.contains("h100-sxm"),
        "{e}"
    );
    assert!(err("roofline:tp=3").contains("not divisible by tp=3"));
    assert!(err("roofline:tp=0").contains("at least 1"));
    assert!(err("roofline:tp=x").contains("positive integer"));
    assert!(err("roofline:gemm_eff=1.5").contains("(0, 1]"));
    assert!(err("roofline:mem_eff=nan").contains("not a number"));
    assert!(err("roofline:overhead_us=-1").contains(">= 0"));
    assert!(err("roofline:dtype=int3").contains("bf16 or fp8"));
    assert!(err("roofline:speed=2").contains("unknown key"));
    assert!(err("roofline:gpu").contains("key=value"));
    // The default is the RTX PRO 6000 at TP 1.
    let m = parse_latency_spec_with("roofline", &shape).unwrap();
    assert!(
        m.describe().contains("1 × rtx-pro-6000"),
        "{}",
        m.describe()
    );
}

fn shared_profile() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b/profile/tp1");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not present", dir.display());
        None
    }
}

/// The large operators (≥ 20 µs measured) agree with the measured microbenchmarks within
/// 30 %: the efficiency factors are physically sensible for this GPU.
#[test]
fn large_operators_agree_with_the_rtx_pro_6000_profile() {
    let Some(dir) = shared_profile() else { return };
    let text = std::fs::read_to_string(dir.join("dense.csv")).unwrap();
    let mut measured: HashMap<(String, u64), f64> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        measured.insert((f[0].into(), f[1].parse().unwrap()), f[2].parse().unwrap());
    }
    let m = roofline("meta-llama/Llama-3.1-8B", "rtx-pro-6000", 1);
    let mut checked = 0;
    for op in ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"] {
        for t in [1u64, 16, 64, 128, 256, 512, 1024, 2048] {
            let real = measured[&(op.to_string(), t)];
            let ours = m
                .breakdown(&[(t, 0)])
                .into_iter()
                .find(|o| o.name == op)
                .unwrap()
                .each_us;
            let ratio = ours / real;
            assert!(
                (0.7..1.3).contains(&ratio),
                "{op} at {t}: {ours:.1} vs {real:.1} µs"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 32);
}

/// FP8 served as vLLM serves it: `--quantization fp8` halves the linear layers' weight bytes
/// and runs them at the GPU's FP8 tensor peak (datasheet figure in the GPU table); an FP8 KV
/// cache halves decode attention's KV reads. On Ampere (no FP8 tensor cores) the weights are
/// still read at one byte, the math stays at the BF16 peak.
#[test]
fn fp8_weights_and_kv_cache_in_the_roofline() {
    use llm_emu_perf::sizing::{KvCacheDtype, OnlineQuantization};
    let h100 = GpuSpec::lookup("h100").unwrap();
    let bf16 = ModelShape::builtin("codellama/CodeLlama-34b-hf").unwrap();
    let fp8w = bf16
        .clone()
        .with_online_quantization(OnlineQuantization::Fp8);
    let fp8kv = bf16.clone().with_kv_cache_dtype(KvCacheDtype::Fp8);
    let model = |s: &ModelShape| RooflineLatency::new(s, RooflineParams::new(h100, 1)).unwrap();
    let (base, w, kv) = (model(&bf16), model(&fp8w), model(&fp8kv));
    // Decode of 8 requests: the MLP weights dominate and are memory-bound: about half.
    let d = decodes(8, 4096);
    let ratio = total(&w, &d, "gate_up_proj") / total(&base, &d, "gate_up_proj");
    assert!((0.45..0.55).contains(&ratio), "{ratio}");
    // Prefill of 8192 tokens is compute-bound: FP8 peak is 2× BF16 on H100.
    let p = [(8192, 0)];
    let ratio = total(&w, &p, "gate_up_proj") / total(&base, &p, "gate_up_proj");
    assert!((0.45..0.55).contains(&ratio), "{ratio}");
    // FP8 KV: decode attention reads half the bytes (queries and outputs stay in bf16).
    let long = decodes(64, 16_384);
    let ratio = total(&kv, &long, "attention_decode") / total(&base, &long, "attention_decode");
    assert!((0.48..0.56).contains(&ratio), "{ratio}");
    // A100: FP8 weights are read at one byte but computed at the BF16 peak (Marlin).
    let a100 = GpuSpec::lookup("a100-80gb").unwrap();
    let on_a100 = |s: &ModelShape| RooflineLatency::new(s, RooflineParams::new(a100, 1)).unwrap();
    let ratio =
        total(&on_a100(&fp8w), &p, "gate_up_proj") / total(&on_a100(&bf16), &p, "gate_up_proj");
    assert!((0.95..1.05).contains(&ratio), "{ratio}");
}

/// The fitted efficiencies are the ones `roofline:eff=fitted` uses for those GPUs, were fitted
/// against the GPU table's own peaks, and are physical fractions; other GPUs, and the default
/// spec, keep the published defaults.
#[test]
fn fitted_efficiencies_apply_per_gpu() {
    use llm_emu_perf::latency::roofline::fitted::{fitted, fitted_gpus};
    let names = fitted_gpus();
    assert!(
        names.contains(&"h100-sxm") && names.contains(&"rtx-pro-6000"),
        "{names:?}"
    );
    for name in names {
        let gpu = GpuSpec::lookup(name).unwrap();
        let f = fitted(name).unwrap();
        assert_eq!(
            f.bf16_tflops, gpu.bf16_tflops,
            "{name}: peak differs from the GPU table"
        );
        assert_eq!(f.mem_bandwidth_gbs, gpu.mem_bandwidth_gbs, "{name}");
        for v in [f.gemm_efficiency, f.memory_efficiency] {
            assert!(v > 0.3 && v <= 1.0, "{name}: {v}");
        }
        assert!(f.kernel_us > 0.5 && f.kernel_us < 20.0, "{name}");
        let p = RooflineParams::fitted(gpu, 1);
        assert_eq!(
            (p.gemm_efficiency, p.memory_efficiency, p.kernel_us),
            (f.gemm_efficiency, f.memory_efficiency, f.kernel_us)
        );
        let model = parse_latency_spec_on(
            "roofline:eff=fitted",
            &ModelShape::llama_3_1_8b(),
            &HardwareDefaults {
                gpu: Some(gpu),
                ..Default::default()
            },
        )
        .unwrap();
        let gemm = format!("gemm_eff {}", f.gemm_efficiency);
        assert!(model.describe().contains(&gemm), "{}", model.describe());
        // The default spec keeps the published figures.
        assert_eq!(RooflineParams::new(gpu, 1).gemm_efficiency, 0.75);
    }
    let a40 = GpuSpec::lookup("a40").unwrap();
    assert_eq!(RooflineParams::fitted(a40, 1), RooflineParams::new(a40, 1));
}

/// A rank of a data-parallel group without expert parallelism (vLLM splits each expert's width
/// over DP × TP GPUs, `FusedMoEParallelConfig.make`, and runs the experts on the group's
/// gathered batch): its routed experts on `G` gathered tokens cost what a TP-(DP × TP)
/// engine's routed experts cost on `G` tokens of its own — the same roofline term, the same
/// FLOPs and bytes — while the router stays on the rank's own tokens.
#[test]
fn data_parallel_without_ep_runs_the_routed_experts_on_the_gathered_batch() {
    use llm_emu_core::latency::{BatchRequest, StepBatch};
    let shape = ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap();
    let gpu = GpuSpec::lookup("h100").unwrap();
    let hw = |dp: Option<u64>| HardwareDefaults {
        gpu: Some(gpu),
        moe_data_parallel: dp,
        ..Default::default()
    };
    let dp2 = parse_latency_spec_on("roofline", &shape, &hw(Some(2))).unwrap();
    assert!(
        dp2.describe()
            .contains("each expert's width split over 2 GPUs"),
        "{}",
        dp2.describe()
    );
    let mut p = RooflineParams::new(gpu, 1);
    p.moe_data_parallel = 2;
    let rank = RooflineLatency::new(&shape, p).unwrap();
    let tp2 = RooflineLatency::new(&shape, RooflineParams::new(gpu, 2)).unwrap();
    let own = decodes(4, 1000);
    let gathered = 64;
    let each = |ops: &[llm_emu_perf::latency::roofline::OpTime], name: &str| {
        ops.iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .each_us
    };
    let r = rank.breakdown_gathered(&own, gathered);
    let t = tp2.breakdown(&decodes(gathered, 1000));
    for name in ["moe_gate_up", "moe_down"] {
        assert_eq!(each(&r, name), each(&t, name), "{name}");
    }
    // The router runs on the rank's 4 own tokens, not the 64 gathered.
    let plain = rank.breakdown(&own);
    assert_eq!(each(&r, "moe_router"), each(&plain, "moe_router"));
    assert!(each(&r, "moe_gate_up") > each(&plain, "moe_gate_up"));
    // Through the trait: such a rank prices the gathered batch at the split width; the same
    // model outside a group prices its own batch.
    let reqs: Vec<BatchRequest> = (0..4)
        .map(|_| BatchRequest {
            num_tokens: 1,
            num_computed_before: 1000,
            num_prompt_tokens: 1000,
            samples: true,
        })
        .collect();
    let batch = StepBatch {
        requests: &reqs,
        total_tokens: 4,
        padded_tokens: 4,
        num_running: 4,
    };
    let sum = |ops: &[llm_emu_perf::latency::roofline::OpTime]| -> u64 {
        (ops.iter().map(|o| o.total_us()).sum::<f64>() * 1000.0).round() as u64
    };
    let mut m = parse_latency_spec_on("roofline", &shape, &hw(Some(2))).unwrap();
    assert_eq!(m.step_time_gathered(&batch, gathered as usize).0, sum(&r));
    let mut alone = parse_latency_spec_on("roofline", &shape, &hw(None)).unwrap();
    assert_eq!(alone.step_time(&batch).0, sum(&plain));
}

/// `attn_tiles=on` on a FlashAttention-2 GPU: decode attention does the FLOPs of whole 64-row
/// query tiles. Llama-3.1-8B at TP 1 on the RTX PRO 6000 (503.8 TFLOP/s × attn_eff 0.45 =
/// 226.71 × 10⁶ FLOP/µs; 1597 GB/s × 0.85 = 1.35745 × 10⁶ B/µs), 128 decodes at 1023 computed
/// tokens: 131 072 KV tokens, 538 968 064 B (4096 B of K and V per token, plus the queries and
/// outputs) = 397.05 µs of memory.
#[test]
fn fa2_decode_attention_in_query_tiles() {
    let shape = ModelShape::llama_3_1_8b();
    let gpu = GpuSpec::lookup("rtx-pro-6000").unwrap();
    let mut p = RooflineParams::new(gpu, 1);
    let off = RooflineLatency::new(&shape, p.clone()).unwrap();
    p.fa2_query_tiles = true;
    let on = RooflineLatency::new(&shape, p).unwrap();
    let each = |m: &RooflineLatency, reqs: &[(u64, u64)]| {
        m.breakdown(reqs)
            .into_iter()
            .find(|o| o.name == "attention_decode")
            .map(|o| (o.each_us, o.bound))
            .unwrap()
    };
    let pure = decodes(128, 1023);
    let mut mixed = pure.clone();
    mixed.push((16, 0));
    // With a prefill, each of the 32 query heads fills a 64-row tile: 4 · 8 KV heads · 128 ·
    // 256 rows · 131 072 = 1.374 × 10¹¹ FLOPs = 606.23 µs, compute-bound, + 2 µs kernel time.
    let (us, bound) = each(&on, &mixed);
    assert!((us - 608.23).abs() < 0.01, "{us}");
    assert_eq!(bound, Bound::Compute);
    // Without the term the same decodes are memory-bound: 397.05 + 2 µs.
    let (us, bound) = each(&off, &mixed);
    assert!((us - 399.05).abs() < 0.01, "{us}");
    assert_eq!(bound, Bound::Memory);
    // Decodes alone pack each KV head's 4 query heads into one tile: 64 rows, 151.6 µs of
    // compute under 397.05 µs of memory, so the time does not change.
    assert!((each(&on, &pure).0 - 399.05).abs() < 0.01);
    assert_eq!(each(&on, &pure).1, Bound::Memory);
    // FlashAttention 3 (H100) is not priced in FA2 tiles.
    let h100 = GpuSpec::lookup("h100-sxm").unwrap();
    let mut p = RooflineParams::new(h100, 1);
    let h_off = RooflineLatency::new(&shape, p.clone()).unwrap();
    p.fa2_query_tiles = true;
    let h_on = RooflineLatency::new(&shape, p).unwrap();
    assert_eq!(each(&h_on, &mixed), each(&h_off, &mixed));
    // The spec key.
    let spec = parse_latency_spec_with("roofline:attn_tiles=on", &shape).unwrap();
    assert!(
        spec.describe().contains("attn_tiles on"),
        "{}",
        spec.describe()
    );
    let e = parse_latency_spec_with("roofline:attn_tiles=maybe", &shape)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("on or off"), "{e}");
}
