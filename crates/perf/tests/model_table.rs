//! The built-in model table: every entry parses, parameter counts match the published figures,
//! KV bytes per token match hand computations, and lookups fail with clear errors.

use llm_emu_perf::sizing::{
    builtin_model_names, check_max_model_len, kv_bytes_for_one_request, num_gpu_blocks, GpuBudget,
    ModelShape, SizingError, WeightFormat,
};

fn model(name: &str) -> ModelShape {
    ModelShape::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn billions(n: u64) -> f64 {
    n as f64 / 1e9
}

#[track_caller]
fn close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "got {got:.3}, want {want} ± {tol}"
    );
}

#[test]
fn every_entry_parses_and_is_sane() {
    let names = builtin_model_names();
    assert!(names.len() >= 45, "{}", names.len());
    for name in names {
        let m = model(name);
        assert_eq!(m.layers.len() as u64, m.num_hidden_layers, "{name}");
        assert!(m.max_position_embeddings.is_some(), "{name}");
        assert!(m.num_parameters() > 500_000_000, "{name}");
        assert!(m.kv_bytes_per_token_per_layer(1) > 0, "{name}");
    }
}

/// Totals as the model cards publish them (billions).
#[test]
fn parameter_counts_match_published_figures() {
    for (name, total, tol) in [
        ("meta-llama/Llama-3.1-8B", 8.03, 0.01),
        ("meta-llama/Llama-3.1-70B-Instruct", 70.6, 0.1),
        ("meta-llama/Llama-3.3-70B-Instruct", 70.6, 0.1),
        ("meta-llama/Llama-3.1-405B", 405.9, 0.5),
        ("meta-llama/Llama-3.2-1B", 1.24, 0.01),
        ("meta-llama/Llama-3.2-3B", 3.21, 0.01),
        ("Qwen/Qwen2.5-7B-Instruct", 7.61, 0.01),
        ("Qwen/Qwen2.5-14B", 14.7, 0.1),
        ("Qwen/Qwen2.5-32B", 32.5, 0.1),
        ("Qwen/Qwen2.5-72B-Instruct", 72.7, 0.1),
        ("Qwen/Qwen3-0.6B", 0.6, 0.01),
        ("Qwen/Qwen3-1.7B", 1.7, 0.03),
        ("Qwen/Qwen3-4B", 4.0, 0.03),
        ("Qwen/Qwen3-8B", 8.2, 0.01),
        ("Qwen/Qwen3-14B", 14.8, 0.05),
        ("Qwen/Qwen3-32B", 32.8, 0.05),
        ("mistralai/Mistral-7B-v0.1", 7.24, 0.01),
        ("mistralai/Mixtral-8x7B-v0.1", 46.7, 0.1),
        ("mistralai/Mixtral-8x22B-v0.1", 140.6, 0.2),
        ("openai/gpt-oss-20b", 20.9, 0.05),
        ("openai/gpt-oss-120b", 116.8, 0.1),
        ("deepseek-ai/DeepSeek-V3", 671.0, 1.0),
        ("deepseek-ai/DeepSeek-R1", 671.0, 1.0),
    ] {
        let got = billions(model(name).num_parameters());
        assert!(
            (got - total).abs() <= tol,
            "{name}: {got:.3} B, published {total} B"
        );
    }
}

#[test]
fn active_parameters_of_moe_models() {
    // Qwen3-30B-A3B: 30.5 B total, 3.3 B activated (Qwen counts the embeddings).
    let q = model("Qwen/Qwen3-30B-A3B");
    close(billions(q.num_parameters()), 30.5, 0.05);
    close(billions(q.num_active_parameters()), 3.3, 0.06);
    close(
        billions(model("Qwen/Qwen3-235B-A22B").num_active_parameters()),
        22.0,
        0.3,
    );
    // DeepSeek-V3: 671 B total, 37 B activated.
    close(
        billions(model("deepseek-ai/DeepSeek-V3").num_active_parameters()),
        37.0,
        0.6,
    );
    // Mixtral-8x7B: 12.9 B active.
    close(
        billions(model("Mixtral-8x7B-v0.1").num_active_parameters()),
        12.9,
        0.05,
    );
    // gpt-oss: OpenAI's active counts exclude the input embedding (3.61 B and 5.13 B).
    for (name, active) in [("openai/gpt-oss-20b", 3.61), ("openai/gpt-oss-120b", 5.13)] {
        let m = model(name);
        let c = m.param_counts();
        close(billions(c.active(&m) - c.embedding), active, 0.02);
    }
}

#[test]
fn kv_bytes_per_token_by_attention_kind() {
    // GQA: 2 (K, V) × kv heads × head dim × 2 bytes per layer.
    let l8 = model("meta-llama/Llama-3.1-8B");
    assert_eq!(l8.kv_bytes_per_token_per_layer(1), 2 * 8 * 128 * 2);
    assert_eq!(l8.bytes_per_block(16, 1), 16 * 32 * 4096);
    let l70 = model("meta-llama/Llama-3.1-70B");
    assert_eq!(l70.kv_bytes_per_token_per_layer(1) * 80, 327_680);
    assert_eq!(l70.kv_bytes_per_token_per_layer(8), 2 * 128 * 2);
    // 8 KV heads on 16 ranks: replicated, one head each (vLLM get_num_kv_heads).
    assert_eq!(l70.kv_bytes_per_token_per_layer(16), 2 * 128 * 2);
    let q = model("Qwen/Qwen3-30B-A3B");
    assert_eq!(q.kv_bytes_per_token_per_layer(1) * 48, 98_304);
    // MLA: one latent of 512 + 64 per token and layer, same on every rank.
    let ds = model("deepseek-ai/DeepSeek-V3");
    assert_eq!(ds.kv_bytes_per_token_per_layer(1), 576 * 2);
    assert_eq!(ds.kv_bytes_per_token_per_layer(8), 576 * 2);
    assert_eq!(ds.bytes_per_block(16, 8), 61 * 16 * 576 * 2);
    // gpt-oss-20b: 12 sliding + 12 full layers → 2 groups of 12 layers share block ids.
    let g = model("openai/gpt-oss-20b");
    assert_eq!(g.num_sliding_layers(), 12);
    let layout = g.kv_layout(16, 1);
    assert_eq!(layout.page_bytes, 16 * 2 * 8 * 64 * 2);
    assert_eq!((layout.group_size, layout.num_groups), (12, 2));
    assert_eq!(g.bytes_per_block(16, 1), 12 * 16 * 2 * 8 * 64 * 2);
    assert_eq!(model("openai/gpt-oss-120b").kv_layout(16, 1).group_size, 18);
    // Mistral-7B-v0.1's model-wide window of 4096 goes to vLLM's CacheConfig and so to every
    // layer: one group of sliding layers, the same block pool as full attention.
    let m = model("mistralai/Mistral-7B-v0.1");
    assert_eq!(m.num_sliding_layers(), 32);
    assert!(m.layers.iter().all(|l| l.sliding_window == Some(4096)));
    assert_eq!(m.kv_layout(16, 1).num_groups, 1);
    assert_eq!(model("mistralai/Mistral-7B-v0.3").num_sliding_layers(), 0);
}

#[test]
fn weight_bytes_follow_the_checkpoint_format() {
    let ds = model("deepseek-ai/DeepSeek-V3");
    assert_eq!(ds.weight_format, WeightFormat::Fp8 { block: 128 });
    // Block FP8: ~1 byte per linear weight; embeddings and LM head in bf16: ≈ 673 GB.
    close(ds.weight_bytes() / 1e9, 673.0, 3.0);
    let g = model("openai/gpt-oss-20b");
    assert_eq!(g.weight_format, WeightFormat::Mxfp4Experts);
    // The published checkpoint is 13.8 GB: MXFP4 experts, bf16 elsewhere.
    close(g.weight_bytes() / 1e9, 13.8, 0.3);
    close(model("Qwen/Qwen3-8B").weight_bytes() / 1e9, 16.4, 0.1);
}

#[test]
fn a_data_parallel_group_spreads_only_the_routed_experts() {
    // Qwen3-30B-A3B: 61 GB in bf16, of which the 128 routed experts of 48 layers take
    // 48 × 128 × 3 × 2048 × 768 × 2 B = 58.0 GB.
    let q = model("Qwen/Qwen3-30B-A3B");
    let all = q.weight_bytes();
    let experts = 48.0 * 128.0 * 3.0 * 2048.0 * 768.0 * 2.0;
    close(q.weight_bytes_per_gpu(1, 1), all, 1.0);
    // DP2 (× TP1): each GPU holds half the experts and all of the rest.
    close(q.weight_bytes_per_gpu(1, 2), all - experts / 2.0, 1.0);
    // TP2 alone, and shards at or below TP, split everything over TP.
    close(q.weight_bytes_per_gpu(2, 2), all / 2.0, 1.0);
    close(q.weight_bytes_per_gpu(2, 1), all / 2.0, 1.0);
    // DP2 × TP2: the experts over 4 GPUs, the rest over 2.
    close(
        q.weight_bytes_per_gpu(2, 4),
        (all - experts) / 2.0 + experts / 4.0,
        1.0,
    );
    // A dense model has no routed experts: shards change nothing.
    let l = model("meta-llama/Llama-3.1-8B");
    close(l.weight_bytes_per_gpu(1, 4), l.weight_bytes(), 1.0);
}

#[test]
fn kv_blocks_on_real_configurations() {
    let budget = |gib: u64, tp: u64| GpuBudget {
        expert_shards: 1,
        gpu_memory_bytes: gib << 30,
        gpu_memory_utilization: 0.9,
        tensor_parallel_size: tp,
        block_size: 16,
        max_num_batched_tokens: 8192,
        max_num_seqs: 1024,
    };
    // DeepSeek-V3 on 8 × H200: ≈ 84 GB weights per rank leaves ≈ 40 GiB for latents.
    let n = num_gpu_blocks(&model("deepseek-ai/DeepSeek-V3"), &budget(141, 8)).unwrap();
    assert!((30_000..45_000).contains(&n), "{n}");
    // Llama-3.1-70B does not fit one 80 GiB GPU.
    let e = num_gpu_blocks(&model("meta-llama/Llama-3.1-70B"), &budget(80, 1)).unwrap_err();
    assert!(matches!(e, SizingError::NoRoom { .. }), "{e}");
    // ...but does on four.
    assert!(num_gpu_blocks(&model("meta-llama/Llama-3.1-70B"), &budget(80, 4)).is_ok());
}

#[test]
fn lookup_by_short_name_and_case() {
    assert_eq!(model("llama-3.1-8b"), model("meta-llama/Llama-3.1-8B"));
    assert_eq!(
        model("Meta-Llama-3.1-8B-Instruct"),
        ModelShape::llama_3_1_8b()
    );
    assert_eq!(model("qwen/qwen3-30b-a3b").num_moe_layers(), 48);
    let e = ModelShape::builtin("acme/unknown-7b")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("acme/unknown-7b")
            && e.contains("Qwen/Qwen3-8B")
            && e.contains("--model-config"),
        "{e}"
    );
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn resolve_prefers_paths_then_the_hf_cache_then_the_table() {
    let cache_scratch = scratch("hf-cache");
    let cache = cache_scratch.path().to_path_buf();
    let repo = cache.join("models--Qwen--Qwen3-8B");
    let snap = repo.join("snapshots").join("abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
    // A cached config that differs from the table's (fewer layers) wins.
    let text = r#"{"num_hidden_layers": 2, "hidden_size": 4096, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288,
        "vocab_size": 151936, "max_position_embeddings": 40960, "model_type": "qwen3"}"#;
    std::fs::write(snap.join("config.json"), text).unwrap();
    let from_cache = ModelShape::resolve_in("Qwen/Qwen3-8B", std::slice::from_ref(&cache)).unwrap();
    assert_eq!(from_cache.num_hidden_layers, 2);
    // Not cached: the table.
    let from_table =
        ModelShape::resolve_in("Qwen/Qwen3-14B", std::slice::from_ref(&cache)).unwrap();
    assert_eq!(from_table.num_hidden_layers, 40);
    // A directory or a file path.
    assert_eq!(
        ModelShape::resolve_in(snap.to_str().unwrap(), &[])
            .unwrap()
            .num_hidden_layers,
        2
    );
    // A config missing a required key names it, with the file.
    let bad = snap.join("bad.json");
    std::fs::write(&bad, r#"{"num_hidden_layers": 2, "hidden_size": 64}"#).unwrap();
    let e = ModelShape::resolve_in(bad.to_str().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("num_attention_heads") && e.contains("bad.json"),
        "{e}"
    );
    let e = ModelShape::resolve_in("nobody/nothing", std::slice::from_ref(&cache))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown model `nobody/nothing`"), "{e}");
}

#[test]
fn one_max_length_request_must_fit_as_vllm_checks() {
    let gpu = GpuBudget {
        expert_shards: 1,
        gpu_memory_bytes: 24 << 30,
        gpu_memory_utilization: 0.9,
        tensor_parallel_size: 1,
        block_size: 16,
        max_num_batched_tokens: 2048,
        max_num_seqs: 256,
    };
    let l8 = model("meta-llama/Llama-3.1-8B");
    // 131072 tokens × 128 KiB = 16 GiB.
    assert_eq!(kv_bytes_for_one_request(&l8, &gpu, 131_072), 16 << 30);
    let blocks = num_gpu_blocks(&l8, &gpu).unwrap();
    let e = check_max_model_len(&l8, &gpu, blocks, 131_072)
        .unwrap_err()
        .to_string();
    let fits = u64::from(blocks) * 16;
    assert!(
        e.contains(&format!("estimated maximum model length is {fits}")),
        "{e}"
    );
    assert!(check_max_model_len(&l8, &gpu, blocks, fits).is_ok());
    // gpt-oss: sliding layers need at most window − 1 + max_num_batched_tokens tokens, plus
    // one block for a window that starts mid-block.
    let g = model("openai/gpt-oss-20b");
    let page = 16 * 2 * 8 * 64 * 2;
    assert_eq!(
        kv_bytes_for_one_request(&g, &gpu, 131_072),
        12 * 8192 * page + 12 * ((127u64 + 2048).div_ceil(16) + 1) * page
    );
}

/// The shapes users ask for, against the totals their publishers state (billions), within 1 %.
/// Llama-4-Scout's 109 B includes its vision encoder, which vLLM loads too but the decoder
/// count here leaves out; its text-only total is checked against the 17 B active figure.
#[test]
fn requested_shapes_match_published_parameter_counts() {
    for (name, published) in [
        ("meta-llama/Llama-2-7b-hf", 6.74),
        ("meta-llama/Llama-2-7b-chat-hf", 6.74),
        ("meta-llama/Llama-2-70b-hf", 68.98),
        ("codellama/CodeLlama-34b-hf", 33.74),
        ("codellama/CodeLlama-34b-Instruct-hf", 33.74),
        ("mistralai/Mistral-Nemo-Base-2407", 12.25),
        ("mistralai/Mistral-Nemo-Instruct-2407", 12.25),
        ("01-ai/Yi-34B", 34.39),
        ("microsoft/Phi-mini-MoE-instruct", 7.6),
    ] {
        let got = billions(model(name).num_parameters());
        assert!(
            (got / published - 1.0).abs() <= 0.01,
            "{name}: {got:.3} B, published {published} B"
        );
    }
    // Phi-mini-MoE: 2.4 B activated (model card), every layer within its 2047-token window.
    let phi = model("microsoft/Phi-mini-MoE-instruct");
    let active = billions(phi.num_active_parameters());
    assert!((active / 2.4 - 1.0).abs() <= 0.02, "active {active:.3} B");
    assert_eq!(phi.num_sliding_layers(), 32);
    let scout = model("meta-llama/Llama-4-Scout-17B-16E-Instruct");
    let moe = scout.moe.as_ref().expect("Scout is MoE");
    assert_eq!((moe.num_experts, moe.experts_per_token), (16, 1));
    assert_eq!(
        (moe.expert_intermediate_size, moe.shared_experts),
        (8192, 1)
    );
    assert_eq!(scout.num_moe_layers(), 48);
    let active = billions(scout.num_active_parameters());
    assert!((active / 17.0 - 1.0).abs() <= 0.02, "active {active:.3} B");
    let total = billions(scout.num_parameters());
    assert!((total / 109.0 - 1.0).abs() <= 0.02, "total {total:.3} B");
    // Chunked local attention on the 36 rotary layers, full attention on every 4th.
    assert_eq!(scout.num_sliding_layers(), 36);
    assert_eq!(scout.layers[3].sliding_window, None);
    assert_eq!(scout.layers[0].sliding_window, Some(8192));
}

#[test]
fn fp8_kv_cache_halves_block_bytes_and_doubles_blocks() {
    use llm_emu_perf::sizing::KvCacheDtype;
    let budget = GpuBudget {
        expert_shards: 1,
        gpu_memory_bytes: 80 << 30,
        gpu_memory_utilization: 0.9,
        tensor_parallel_size: 1,
        block_size: 16,
        max_num_batched_tokens: 8192,
        max_num_seqs: 1024,
    };
    for name in [
        "meta-llama/Llama-2-7b-hf",
        "mistralai/Mistral-Nemo-Base-2407",
        "meta-llama/Llama-3.1-8B",
    ] {
        let auto = model(name);
        let fp8 = auto.clone().with_kv_cache_dtype("fp8".parse().unwrap());
        assert_eq!(fp8.kv_cache_dtype, KvCacheDtype::Fp8);
        // 2 (K, V) × KV heads × head dim × 1 byte per layer.
        assert_eq!(
            fp8.kv_bytes_per_token_per_layer(1),
            2 * auto.kv_heads() * auto.head_dim(),
            "{name}"
        );
        assert_eq!(
            2 * fp8.bytes_per_block(16, 1),
            auto.bytes_per_block(16, 1),
            "{name}"
        );
        // vLLM's `available // page_size // group_size`: the same bytes hold twice the blocks
        // (±1 for the integer division).
        let (a, f) = (
            num_gpu_blocks(&auto, &budget).unwrap(),
            num_gpu_blocks(&fp8, &budget).unwrap(),
        );
        assert!(
            (f64::from(f) - 2.0 * f64::from(a)).abs() <= 1.0,
            "{name}: {a} vs {f}"
        );
    }
    // Llama-2-7B, MHA: 2 × 32 heads × 128 × 32 layers × 16 tokens × 1 byte = 4 MiB per fp8 block.
    let l2 = model("meta-llama/Llama-2-7b-hf").with_kv_cache_dtype("fp8_e4m3".parse().unwrap());
    assert_eq!(l2.bytes_per_block(16, 1), 4 << 20);
    assert!("int4".parse::<KvCacheDtype>().is_err());
}

#[test]
fn fp8_weights_from_the_flag_or_the_checkpoint() {
    use llm_emu_perf::sizing::OnlineQuantization;
    let bf16 = model("codellama/CodeLlama-34b-hf");
    let fp8 = bf16
        .clone()
        .with_online_quantization(OnlineQuantization::Fp8);
    assert_eq!(fp8.weight_format, WeightFormat::Fp8 { block: 0 });
    // Linear layers at 1 byte, embeddings, LM head and norms at 2: 2 × 32000 × 8192 × 2 B
    // = 1.05 GB on top of one byte per other parameter.
    let c = fp8.param_counts();
    let embed = (c.embedding + c.lm_head + c.norms) as f64;
    let want = (c.total() as f64 - embed) + 2.0 * embed;
    close(fp8.weight_bytes(), want, 1.0);
    assert!(fp8.weight_bytes() < 0.52 * bf16.weight_bytes());
    // A checkpoint quantized already keeps its own format.
    let ds = model("deepseek-ai/DeepSeek-V3").with_online_quantization(OnlineQuantization::Fp8);
    assert_eq!(ds.weight_format, WeightFormat::Fp8 { block: 128 });
    // The llm-compressor FP8 checkpoints of Llama 4 (text_config nested, compressed-tensors).
    let text = r#"{"model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"],
        "quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized"},
        "text_config": {"model_type": "llama4_text", "hidden_size": 64, "intermediate_size": 32,
        "intermediate_size_mlp": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100, "num_local_experts": 4,
        "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "attention_chunk_size": 8,
        "max_position_embeddings": 1024}}"#;
    let m = ModelShape::from_hf_config_json(text).unwrap();
    assert_eq!(m.weight_format, WeightFormat::Fp8 { block: 0 });
    // Every 2nd layer MoE; dense layers use intermediate_size_mlp.
    assert_eq!(
        m.layers.iter().map(|l| l.moe).collect::<Vec<_>>(),
        [false, true, false, true]
    );
    assert_eq!(m.intermediate_size, 128);
    // No `no_rope_layers`: transformers' default, every 4th layer without rotary (full).
    assert_eq!(m.num_sliding_layers(), 3);
    assert!("int8".parse::<OnlineQuantization>().is_err());
}

/// Gemma 3: the 1B is text only; the 4B, 12B and 27B are multimodal checkpoints whose
/// `text_config` leaves Gemma3TextConfig's defaults out and whose SigLIP vision encoder vLLM
/// loads too. Totals as Google publishes them (with the encoder), the encoder alone as
/// SigLIP-So400m/14 at 896 px counts it, and the decoder's sliding layers as transformers
/// derives them.
#[test]
fn gemma_3_with_its_vision_encoder() {
    for (name, total, tol) in [
        ("google/gemma-3-1b-it", 1.0, 0.01),
        ("google/gemma-3-4b-it", 4.30, 0.01),
        ("google/gemma-3-12b-it", 12.19, 0.02),
        ("google/gemma-3-27b-it", 27.43, 0.03),
    ] {
        let got = billions(model(name).num_parameters());
        assert!(
            (got - total).abs() <= tol,
            "{name}: {got:.3} B, published {total} B"
        );
    }
    let small = model("google/gemma-3-1b-it");
    assert_eq!(small.vision, None);
    let g = model("google/gemma-3-27b-it");
    let v = g.vision.clone().expect("a vision encoder");
    assert_eq!(v.model_type, "siglip_vision_model");
    // SigLIP: 416,866,032 parameters; the projector 1152 × 5376 + 1152.
    assert_eq!(v.params, Some(416_866_032 + 1152 * 5376 + 1152));
    let c = g.param_counts();
    assert_eq!(c.vision, v.params.unwrap());
    // Text tokens do not run the encoder; its weights are in the checkpoint's bf16.
    assert_eq!(g.num_active_parameters(), g.num_parameters() - c.vision);
    close(
        g.weight_bytes() / 1e9,
        2.0 * billions(g.num_parameters()),
        0.01,
    );
    // The defaults the 27B's text_config leaves out.
    assert_eq!(g.vocab_size, 262_208);
    assert_eq!(g.max_position_embeddings, Some(131_072));
    assert!(g.tie_word_embeddings);
    // 62 layers, every 6th full: 10 full, 52 within 1024 tokens.
    assert_eq!(g.num_sliding_layers(), 52);
    assert_eq!(model("google/gemma-3-1b-it").num_sliding_layers(), 22);
    // The pre-trained checkpoints share the shapes.
    assert_eq!(model("google/gemma-3-27b-pt"), g);
}

/// A multimodal config whose encoder's layout is not known keeps its decoder's shape and
/// names the encoder as not counted; a malformed Gemma 3 encoder size is an error naming it.
#[test]
fn other_vision_encoders_are_named_not_counted() {
    let llava = r#"{"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"},
        "text_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32064,
        "max_position_embeddings": 4096}}"#;
    let m = ModelShape::from_hf_config_json(llava).unwrap();
    let v = m.vision.clone().unwrap();
    assert_eq!(
        (v.model_type.as_str(), v.params),
        ("clip_vision_model", None)
    );
    assert_eq!(m.param_counts().vision, 0);
    let bad = r#"{"model_type": "gemma3", "vision_config": {"hidden_size": -3},
        "text_config": {"hidden_size": 2560, "num_hidden_layers": 2}}"#;
    let e = ModelShape::from_hf_config_json(bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vision_config.hidden_size"), "{e}");
    let text = r#""text_config": {"hidden_size": 2560, "num_hidden_layers": 2}"#;
    let parse = |vision: &str| {
        ModelShape::from_hf_config_json(&format!(
            r#"{{"model_type": "gemma3", "vision_config": {vision}, {text}}}"#
        ))
    };
    // Gemma 3 with another encoder than SigLIP, or a vision_config that is not an object:
    // named, not counted.
    let clip = parse(r#"{"model_type": "clip_vision_model"}"#).unwrap();
    assert_eq!(clip.vision.unwrap().params, None);
    let odd = parse(r#""siglip""#).unwrap();
    assert!(odd.vision.unwrap().model_type.contains("not an object"));
    // SigLIP by default when the type is left out.
    let plain = parse("{}").unwrap().vision.unwrap();
    assert_eq!(plain.model_type, "siglip_vision_model");
    assert!(plain.params.is_some());
    // Sizes that overflow a parameter count are an error, not a wrapped-around count.
    let e = parse(r#"{"num_hidden_layers": 4611686018427387904}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("impossible parameter count"), "{e}");
    // A multimodal config without its decoder's config says so.
    let e = ModelShape::from_hf_config_json(r#"{"model_type": "gemma3", "vision_config": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("without `text_config`"), "{e}");
    // Layer counts no model has are refused before anything is sized per layer.
    let e = ModelShape::from_hf_config_json(
        r#"{"model_type": "gemma3_text", "num_hidden_layers": 1000000000, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`num_hidden_layers` 1000000000 is above"), "{e}");
}
