//! A post-trained release of a known base resolves to the base's shape, with a note; only
//! release tags are stripped, and only when the base is known.

use llm_emu_perf::args::EngineArgs;
use llm_emu_perf::latency::{LatencySpec, ProfileLatency};
use llm_emu_perf::sizing::{release_bases, same_weights_key, ModelShape};
use std::path::Path;
use tempfile::TempDir;

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-release-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn release_tags_and_dates_are_stripped_one_at_a_time() {
    assert_eq!(
        release_bases("Qwen/Qwen3-30B-A3B-Instruct-2507"),
        ["Qwen/Qwen3-30B-A3B-Instruct", "Qwen/Qwen3-30B-A3B"]
    );
    assert_eq!(
        release_bases("Qwen3-4B-thinking-2507"),
        ["Qwen3-4B-thinking", "Qwen3-4B"]
    );
    assert_eq!(
        release_bases("deepseek-ai/DeepSeek-V3-0324"),
        ["deepseek-ai/DeepSeek-V3"]
    );
    // Architecture-bearing parts stay: sizes, active parameters, versions, quantization.
    assert!(release_bases("Qwen/Qwen3-30B-A3B").is_empty());
    assert!(release_bases("mistralai/Mistral-7B-Instruct-v0.3").is_empty());
    assert!(release_bases("Qwen/Qwen3-30B-A3B-Instruct-2507-FP8").is_empty());
    // Never a path, never an empty base.
    assert!(release_bases("/models/Qwen3-8B-Instruct").is_empty());
    assert!(release_bases("Instruct").is_empty());
}

#[test]
fn one_key_names_the_same_weights_under_each_name() {
    // The older repo name and a post-trained release are the profile's model; another size
    // or another family is not.
    let key = same_weights_key("meta-llama/Llama-3.1-8B");
    for same in [
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "meta-llama/Meta-Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "/models/Llama-3.1-8B",
    ] {
        assert_eq!(same_weights_key(same), key, "{same}");
    }
    for other in [
        "meta-llama/Llama-3.1-70B",
        "Qwen/Qwen3-8B",
        "acme/Llama-3.1-8B-FP8",
    ] {
        assert_ne!(same_weights_key(other), key, "{other}");
    }
    assert_eq!(
        same_weights_key("Qwen/Qwen3-30B-A3B-Instruct-2507"),
        same_weights_key("Qwen/Qwen3-30B-A3B")
    );
    assert_eq!(same_weights_key("acme/Foo-7B-Instruct"), "foo-7b");
}

#[test]
fn a_release_of_a_built_in_base_resolves_with_a_note() {
    let r = ModelShape::resolve_noted_in("Qwen/Qwen3-30B-A3B-Instruct-2507", &[]).unwrap();
    assert_eq!(r.shape, ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap());
    assert_eq!(r.shape.moe.as_ref().map(|m| m.num_experts), Some(128));
    let note = r.note.expect("a note");
    assert!(
        note.contains("Qwen/Qwen3-30B-A3B-Instruct-2507") && note.contains("`Qwen/Qwen3-30B-A3B`"),
        "{note}"
    );
    // `resolve_in` (what `--model` uses) resolves it too.
    assert_eq!(
        ModelShape::resolve_in("Qwen/Qwen3-30B-A3B-Instruct-2507", &[]).unwrap(),
        r.shape
    );
    // A name known as given gets no note.
    let exact = ModelShape::resolve_noted_in("meta-llama/Llama-3.1-8B-Instruct", &[]).unwrap();
    assert!(exact.note.is_none());
    // An unknown base is the error for the name as given.
    let e = ModelShape::resolve_noted_in("acme/Foo-7B-Instruct-2507", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown model `acme/Foo-7B-Instruct-2507`"),
        "{e}"
    );
    // A quantized release is not its base (weight format differs): no stripping.
    assert!(ModelShape::resolve_noted_in("Qwen/Qwen3-30B-A3B-FP8", &[]).is_err());
}

#[test]
fn a_release_of_a_cached_base_resolves_from_the_cache() {
    let cache_scratch = scratch("cache");
    let cache = cache_scratch.path().to_path_buf();
    let snap = cache.join("models--acme--Tiny-MoE/snapshots/r1");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(
        snap.join("config.json"),
        r#"{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 1000, "num_experts": 8,
            "num_experts_per_tok": 2, "moe_intermediate_size": 32}"#,
    )
    .unwrap();
    let r =
        ModelShape::resolve_noted_in("acme/Tiny-MoE-Chat", std::slice::from_ref(&cache)).unwrap();
    assert_eq!(r.shape.num_hidden_layers, 4);
    assert!(r.note.unwrap().contains("`acme/Tiny-MoE`"));
}

#[test]
fn the_profile_meta_names_the_model_when_no_model_is_given() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/moe-profile");
    assert_eq!(
        ProfileLatency::measured_model(&fixture).unwrap().as_deref(),
        Some("acme/Tiny-MoE")
    );
    // A profile whose meta.yaml names a post-trained release of a built-in base.
    let dir_scratch = scratch("meta");
    let dir = dir_scratch.path().to_path_buf();
    std::fs::write(
        dir.join("meta.yaml"),
        "model: 'Qwen/Qwen3-30B-A3B-Instruct-2507'\n",
    )
    .unwrap();
    let args = EngineArgs {
        latency: Some(LatencySpec::profile(&dir)),
        ..Default::default()
    };
    let (shape, notes) = args.model_shape_noted().unwrap();
    assert_eq!(shape, ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].to_string().starts_with("note: "), "{}", notes[0]);
    // Through `--profile` too; a `model` given wins over the profile's.
    let args = EngineArgs {
        profile: Some(dir.clone()),
        ..Default::default()
    };
    assert_eq!(args.model_shape().unwrap(), shape);
    let args = EngineArgs {
        profile: Some(dir.clone()),
        model: Some("Qwen/Qwen3-8B".into()),
        ..Default::default()
    };
    assert_eq!(
        args.model_shape().unwrap().model_type.as_deref(),
        Some("qwen3")
    );
    // Without a profile, the default Llama-3.1-8B as before.
    assert_eq!(
        EngineArgs::default().model_shape().unwrap(),
        ModelShape::llama_3_1_8b()
    );
}

#[test]
fn a_profile_of_a_release_is_not_of_another_model() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/moe-profile");
    let shape = ModelShape::from_hf_config_json(
        r#"{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 1000, "num_experts": 8,
            "num_experts_per_tok": 2, "moe_intermediate_size": 32,
            "max_position_embeddings": 4096}"#,
    )
    .unwrap();
    let gpu = llm_emu_perf::gpu::GpuSpec::lookup("rtx-pro-6000").unwrap();
    let warned = |served: &str| {
        let args = EngineArgs {
            model: Some(served.into()),
            latency: Some(LatencySpec::profile(&fixture)),
            ..Default::default()
        };
        let engine = llm_emu_perf::args::resolve(&args, &shape, gpu).unwrap();
        let (_, notices) = engine.build_latency(&shape).unwrap();
        notices
            .iter()
            .any(|n| n.to_string().contains("measured with acme/Tiny-MoE"))
    };
    // The profile names acme/Tiny-MoE: its chat release is the same model, another is not.
    assert!(!warned("acme/Tiny-MoE-Chat-2507"));
    assert!(!warned("acme/Tiny-MoE"));
    assert!(warned("acme/Other-MoE"));
}

#[test]
fn the_engine_serves_the_profiled_release_and_notes_its_base() {
    let dir_scratch = scratch("served");
    let dir = dir_scratch.path();
    std::fs::write(
        dir.join("meta.yaml"),
        "model: Qwen/Qwen3-30B-A3B-Instruct-2507\n",
    )
    .unwrap();
    let args = EngineArgs {
        latency: Some(LatencySpec::profile(dir)),
        ..Default::default()
    };
    let shape = args.model_shape().unwrap();
    let gpu = llm_emu_perf::gpu::GpuSpec::lookup("h200").unwrap();
    let engine = llm_emu_perf::args::resolve(&args, &shape, gpu).unwrap();
    assert_eq!(
        engine.model_name.as_deref(),
        Some("Qwen/Qwen3-30B-A3B-Instruct-2507")
    );
    assert!(
        engine.notices.iter().any(|n| n
            .to_string()
            .contains("post-trained release of `Qwen/Qwen3-30B-A3B`")),
        "{:?}",
        engine.notices
    );
}

/// A model given by its config.json has no name: its shape is compared with the shape of the
/// model the profile names, and a profile of another architecture, or of a model whose shape
/// is not known, is named.
#[test]
fn a_profile_is_checked_against_a_model_config_by_shape() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/moe-profile");
    let config = r#"{"model_type": "qwen3_moe", "num_hidden_layers": 4, "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 128, "vocab_size": 1000, "num_experts": 8,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "max_position_embeddings": 4096}"#;
    let shape = ModelShape::from_hf_config_json(config).unwrap();
    let dir_scratch = scratch("config");
    let config_path = dir_scratch.path().join("config.json");
    std::fs::write(&config_path, config).unwrap();
    let gpu = llm_emu_perf::gpu::GpuSpec::lookup("rtx-pro-6000").unwrap();
    let warnings = |profile: &Path| -> Vec<String> {
        let args = EngineArgs {
            model_config: Some(config_path.clone()),
            latency: Some(LatencySpec::profile(profile)),
            ..Default::default()
        };
        let engine = llm_emu_perf::args::resolve(&args, &shape, gpu).unwrap();
        let (_, notices) = engine.build_latency(&shape).unwrap();
        notices
            .iter()
            .map(|n| n.to_string())
            .filter(|n| n.contains("its timings are not of this engine"))
            .collect()
    };
    // The fixture names acme/Tiny-MoE, which no table holds.
    let w = warnings(&fixture);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("with acme/Tiny-MoE, whose shape is not known here"),
        "{}",
        w[0]
    );
    // The same tables said to be of Qwen3-30B-A3B: another architecture, named dimension by
    // dimension.
    let renamed_scratch = scratch("renamed");
    let renamed = renamed_scratch.path();
    std::fs::create_dir_all(renamed.join("tp1")).unwrap();
    for f in std::fs::read_dir(fixture.join("tp1")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, renamed.join("tp1").join(f.file_name().unwrap())).unwrap();
    }
    let meta = std::fs::read_to_string(fixture.join("meta.yaml")).unwrap();
    std::fs::write(
        renamed.join("meta.yaml"),
        meta.replace("acme/Tiny-MoE", "Qwen/Qwen3-30B-A3B"),
    )
    .unwrap();
    let w = warnings(renamed);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("with Qwen/Qwen3-30B-A3B but the engine serves the model of"),
        "{}",
        w[0]
    );
    assert!(w[0].contains("layers 48 → 4"), "{}", w[0]);
    assert!(w[0].contains("MoE 128 experts, top-8"), "{}", w[0]);
    // A model given by name whose shape is known gets the same list.
    let args = EngineArgs {
        model: Some("Qwen/Qwen3-8B".into()),
        latency: Some(LatencySpec::profile(renamed)),
        ..Default::default()
    };
    let qwen8 = args.model_shape().unwrap();
    let engine = llm_emu_perf::args::resolve(&args, &qwen8, gpu).unwrap();
    let (_, notices) = engine.build_latency(&qwen8).unwrap();
    let named: Vec<String> = notices.iter().map(|n| n.to_string()).collect();
    assert!(
        named.iter().any(|n| n.contains(
            "with Qwen/Qwen3-30B-A3B but the engine serves Qwen/Qwen3-8B (layers 48 → 36"
        )),
        "{named:?}"
    );
    // One architecture has no differences from itself.
    let qwen = ModelShape::builtin("Qwen/Qwen3-30B-A3B").unwrap();
    assert!(qwen.architecture_differences(&qwen).is_empty());
    assert!(!shape.architecture_differences(&qwen).is_empty());
}
