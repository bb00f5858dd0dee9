//! The `profile` latency model: the peer's composition of measured operator profiles.

mod support;

use llm_emu_core::Nanos;
use llm_emu_perf::latency::BatchRequest;
use llm_emu_perf::latency::{
    parse_latency_spec, parse_latency_spec_with, BatchShape, ProfileError, ProfileLatency,
    StepBatch,
};
use llm_emu_perf::sizing::ModelShape;
use std::path::{Path, PathBuf};

fn profile_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b/profile");
    if p.join("meta.yaml").is_file() {
        Some(p)
    } else {
        eprintln!("skipping: no profile at {}", p.display());
        None
    }
}

/// The profile compiled into the binary (a copy of the shared one).
fn load() -> Option<ProfileLatency> {
    let dir = Path::new("builtin:rtxpro6000-llama-3.1-8b");
    Some(ProfileLatency::load(dir, &ModelShape::llama_3_1_8b(), 1).expect("built-in profile loads"))
}

#[test]
fn builtin_profile_equals_the_shared_one() {
    let Some(dir) = profile_dir() else { return };
    let shared = ProfileLatency::load(&dir, &ModelShape::llama_3_1_8b(), 1).unwrap();
    let builtin = load().unwrap();
    let shapes = [
        BatchShape::decodes(1, 1000),
        BatchShape::decodes(77, 3000),
        BatchShape::from_requests([(2048, 0)]),
        BatchShape::from_requests([(300, 700), (1, 20), (1, 5000), (1, 900)]),
    ];
    for b in &shapes {
        assert_eq!(shared.step_ns(b), builtin.step_ns(b));
    }
    let missing = ProfileLatency::load(
        Path::new("builtin:rtxpro6000-llama-3.1-8b"),
        &ModelShape::llama_3_1_8b(),
        2,
    );
    assert!(missing
        .unwrap_err()
        .to_string()
        .contains("no such built-in profile file"));
}

#[test]
fn a_tp_degree_the_profile_lacks_is_named_with_those_it_has() {
    let Some(dir) = profile_dir() else { return };
    let e = ProfileLatency::load(&dir, &ModelShape::llama_3_1_8b(), 4)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no tp4 folder: the profile was measured at tensor-parallel degree 1 only"),
        "{e}"
    );
}

fn assert_ms(got: f64, want: f64, what: &str) {
    eprintln!("{what}: {got:.4} ms (doc {want})");
    assert!(
        (got - want).abs() <= 0.1,
        "{what}: {got} ms, doc says {want}"
    );
}

#[test]
fn sanity_values_from_the_doc() {
    let Some(m) = load() else { return };
    assert_ms(
        m.step_ms(&BatchShape::decodes(1, 1000)),
        11.3,
        "1 decode @1000",
    );
    // The doc gives no KV for "32 decodes"; KV 1000 as its neighbours.
    assert_ms(
        m.step_ms(&BatchShape::decodes(32, 1000)),
        15.0,
        "32 decodes @1000",
    );
    assert_ms(
        m.step_ms(&BatchShape::decodes(128, 1000)),
        25.1,
        "128 decodes @1000",
    );
    assert_ms(
        m.step_ms(&BatchShape::from_requests([(2048, 0)])),
        83.0,
        "2048 prefill",
    );
    let mixed =
        BatchShape::from_requests(std::iter::once((512, 0)).chain((0..127).map(|_| (1, 1000))));
    assert_ms(m.step_ms(&mixed), 48.4, "512 prefill + 127 decodes @1000");
}

#[test]
fn through_the_trait_and_the_spec() {
    let Some(dir) = profile_dir() else { return };
    let shape = ModelShape::llama_3_1_8b();
    let reqs: Vec<BatchRequest> = (0..32)
        .map(|i| BatchRequest {
            num_tokens: 1,
            num_computed_before: 500 + 50 * i,
            num_prompt_tokens: 400,
            samples: true,
        })
        .collect();
    let batch = StepBatch {
        requests: &reqs,
        total_tokens: 32,
        padded_tokens: 32,
        num_running: 32,
    };
    let spec = format!("profile:dir={}", dir.display());
    let mut m = parse_latency_spec_with(&spec, &shape).expect("spec parses");
    assert!(m.describe().starts_with("profile:"));
    let skewed = m.step_time(&batch);
    // Mean context 1275; bucket pc=0|n<=32|sr<=70%|kvB<=4k|kp=0 holds a small fitted alpha
    // (negative alphas are legitimate fits), so the skewed batch lands near the uniform one.
    let direct = ProfileLatency::load(&dir, &shape, 1).unwrap();
    let uniform = Nanos(direct.step_ns(&BatchShape::decodes(32, 1275)));
    eprintln!("32 decodes 500..2050: {skewed:?} vs uniform at mean {uniform:?}");
    assert_ne!(skewed, uniform, "skew correction applied");
    assert!((skewed.0 as f64 / uniform.0 as f64 - 1.0).abs() < 0.05);
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
    // Padding prices the token-wise operators at the padded batch; the step overhead is added
    // as given, in µs.
    let padded = m.step_time(&StepBatch {
        padded_tokens: 40,
        ..batch
    });
    assert!(padded > skewed, "{padded:?} vs {skewed:?}");
    // This profile is the one the built-in calibration was measured for: it carries its step
    // overhead; an explicit value replaces it.
    assert!(
        m.describe().contains("built-in calibration"),
        "{}",
        m.describe()
    );
    let mut no_overhead =
        parse_latency_spec_with(&format!("{spec},step_overhead_us=0"), &shape).unwrap();
    let bare = no_overhead.step_time(&batch);
    assert!(bare < skewed);
    let mut with_overhead =
        parse_latency_spec_with(&format!("{spec},step_overhead_us=250"), &shape).unwrap();
    assert_eq!(with_overhead.step_time(&batch), bare + Nanos(250_000));
    assert!(with_overhead.describe().contains("step overhead 250 µs"));
    assert!(parse_latency_spec_with(&format!("{spec},step_overhead_us=-1"), &shape).is_err());
    // A step beyond the profiled token range is priced and reported.
    let big: Vec<BatchRequest> = (0..3)
        .map(|_| BatchRequest {
            num_tokens: 1500,
            num_computed_before: 0,
            num_prompt_tokens: 1500,
            samples: true,
        })
        .collect();
    let t_big = m.step_time(&StepBatch {
        requests: &big,
        total_tokens: 4500,
        padded_tokens: 4500,
        num_running: 3,
    });
    assert!(t_big > skewed);
    let w = m.warnings();
    assert!(
        w.iter()
            .any(|x| x.contains("4500") && x.contains("dense.csv") && x.contains("2048")),
        "{w:?}"
    );
    assert!(parse_latency_spec(&spec).is_err(), "needs the shape");
    assert!(parse_latency_spec_with("profile:tp=1", &shape).is_err());
    assert!(parse_latency_spec_with("profile:dir=/nonexistent", &shape).is_err());
    assert!(parse_latency_spec_with("linear:base_us=1", &shape).is_ok());

    // Rough cost per step_time call (reported, not asserted).
    let n = 200_000;
    let t0 = std::time::Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        let mut b = batch;
        b.requests = &reqs[..1 + i % 32];
        acc = acc.wrapping_add(m.step_time(&b).0);
    }
    let per = t0.elapsed().as_secs_f64() / n as f64;
    eprintln!("step_time: {:.3} µs/call (acc {acc})", per * 1e6);
}

/// A minimal valid profile in a temp dir; `edit` may overwrite one file before loading.
fn tiny_profile(name: &str, edit: &[(&str, &str)]) -> Result<ProfileLatency, ProfileError> {
    // Removed when `scratch` drops on return (or on a panic).
    let scratch = tempfile::Builder::new()
        .prefix(&format!("llm-emu-profile-{name}-"))
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("tp1")).unwrap();
    let files = support::minimal_profile("model: x\nskew_fit:\n  enabled: false\n");
    for (f, text) in files {
        let text = edit
            .iter()
            .find(|(e, _)| *e == f)
            .map(|(_, t)| t.to_string())
            .unwrap_or(text);
        std::fs::write(dir.join(f), text).unwrap();
    }
    ProfileLatency::load(dir, &ModelShape::llama_3_1_8b(), 1)
}

fn err(name: &str, file: &str, text: &str) -> String {
    let e = tiny_profile(name, &[(file, text)]).expect_err("must fail");
    let s = e.to_string();
    eprintln!("{name}: {s}");
    s
}

#[test]
fn tiny_profile_composes() {
    let m = tiny_profile("ok", &[]).unwrap();
    // 1 decode at KV 24: embedding 1 µs + 32 × (8 dense rows × 1 µs + attention 4 µs)
    // + final_layernorm 1 µs + lm_head 10 µs + sampler 5 µs.
    let ns = m.step_ns(&BatchShape::decodes(1, 24));
    assert_eq!(ns, 1000 + 32 * (8000 + 4000) + 1000 + 10_000 + 5000);
}

#[test]
fn malformed_profiles_are_located_errors() {
    let s = err(
        "trunc",
        "tp1/attention.csv",
        "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,3\n0,0,1",
    );
    assert!(
        s.contains("attention.csv") && s.contains("line 3") && s.contains("column 4"),
        "{s}"
    );
    assert!(s.contains("truncated"), "{s}");
    let s = err(
        "header",
        "tp1/per_sequence.csv",
        "layer,seqs,time_us\nlm_head,1,10\n",
    );
    assert!(
        s.contains("per_sequence.csv") && s.contains("line 1"),
        "{s}"
    );
    let s = err(
        "nan",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,10\nsampler,1,abc\n",
    );
    assert!(
        s.contains("line 3") && s.contains("column 3") && s.contains("time_us"),
        "{s}"
    );
    let s = err(
        "neg",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,10\nsampler,1,-5\n",
    );
    assert!(s.contains("line 3") && s.contains("negative"), "{s}");
    let s = err(
        "nan2",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,NaN\nsampler,1,5\n",
    );
    assert!(s.contains("line 2") && s.contains("finite"), "{s}");
    let s = err(
        "missing",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,10\n",
    );
    assert!(
        s.contains("per_sequence.csv") && s.contains("`sampler` missing"),
        "{s}"
    );
    let s = err(
        "extra",
        "tp1/attention.csv",
        "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,3,9\n",
    );
    assert!(s.contains("line 2") && s.contains("6 fields"), "{s}");
    let s = err(
        "keyfrac",
        "tp1/attention.csv",
        "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1.5,16,3\n",
    );
    assert!(s.contains("column 3") && s.contains("n_decode"), "{s}");
    let s = err("empty", "tp1/dense.csv", "");
    assert!(s.contains("dense.csv") && s.contains("empty"), "{s}");
}

#[test]
fn garbage_meta_duplicate_rows_and_zero_times_are_refused() {
    // A meta.yaml that is not YAML at all (it used to be read as a profile without fields).
    let s = err(
        "garbage-meta",
        "meta.yaml",
        "\u{7f}ELF\u{2}\u{1}\u{1} binary junk\nmore junk\n",
    );
    assert!(
        s.contains("meta.yaml: line 1") && s.contains("control character"),
        "{s}"
    );
    let s = err(
        "prose-meta",
        "meta.yaml",
        "model: x\nthis is prose, not a field\n",
    );
    assert!(
        s.contains("meta.yaml: line 2") && s.contains("expected `key: value`"),
        "{s}"
    );
    let s = err("dup-meta", "meta.yaml", "model: x\nmodel: y\n");
    assert!(
        s.contains("line 2") && s.contains("defined twice (first on line 1)"),
        "{s}"
    );
    // The same grid point twice (the second used to win silently).
    let s = err(
        "dup-seq",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,10\nsampler,1,5\nlm_head,1,12\n",
    );
    assert!(
        s.contains("per_sequence.csv: line 4") && s.contains("repeats line 2"),
        "{s}"
    );
    let s = err(
        "dup-attn",
        "tp1/attention.csv",
        "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,3\n0,0,1,16,3\n",
    );
    assert!(
        s.contains("attention.csv: line 3") && s.contains("repeats line 2"),
        "{s}"
    );
    // Zero times (used to become 1 ns each: free steps).
    let s = err(
        "zero-seq",
        "tp1/per_sequence.csv",
        "layer,sequences,time_us\nlm_head,1,0\nsampler,1,0.0\n",
    );
    assert!(
        s.contains("line 2") && s.contains("column 3") && s.contains("zero"),
        "{s}"
    );
    let s = err(
        "zero-attn",
        "tp1/attention.csv",
        "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,0\n",
    );
    assert!(s.contains("line 2") && s.contains("zero"), "{s}");
}

#[test]
fn tensor_parallel_all_reduce_is_priced_when_the_link_is_known() {
    // A TP2 profile made of the TP1 tables: only the all-reduce term differs.
    let Some(src) = profile_dir() else { return };
    // Removed when `scratch` drops, whether the test passes or fails.
    let scratch = tempfile::Builder::new()
        .prefix("llm-emu-tp2-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("tp2")).unwrap();
    std::fs::copy(src.join("meta.yaml"), dir.join("meta.yaml")).unwrap();
    for f in [
        "dense.csv",
        "per_sequence.csv",
        "attention.csv",
        "skew_fit.csv",
    ] {
        std::fs::copy(src.join("tp1").join(f), dir.join("tp2").join(f)).unwrap();
    }
    // meta.yaml names tp2/skew_fit.csv for TP2 already.
    let shape = ModelShape::llama_3_1_8b();
    let b = BatchShape::decodes(64, 1000);
    let base = ProfileLatency::load(dir, &shape, 2).unwrap().step_ns(&b);
    let spec = |extra: &str| {
        format!(
            "profile:dir={},tp=2,step_overhead_us=0{extra}",
            dir.display()
        )
    };
    let mut plain = parse_latency_spec_with(&spec(""), &shape).unwrap();
    let mut linked =
        parse_latency_spec_with(&spec(",tp_link_gbps=50,tp_link_latency_us=5"), &shape).unwrap();
    let reqs: Vec<BatchRequest> = (0..64)
        .map(|_| BatchRequest {
            num_tokens: 1,
            num_computed_before: 1000,
            num_prompt_tokens: 900,
            samples: true,
        })
        .collect();
    let batch = StepBatch {
        requests: &reqs,
        total_tokens: 64,
        padded_tokens: 64,
        num_running: 64,
    };
    assert_eq!(plain.step_time(&batch), Nanos(base));
    assert!(plain.warnings().iter().any(|w| w.contains("tp_link_gbps")));
    // 64 tokens × 4096 × 2 bytes = 524288 B per all-reduce; 2 ranks: 524288/50 ns + 2 hops ×
    // 5 µs = 20485.76 ns; 2 per layer × 32 layers.
    let want = base as f64 + 64.0 * (524_288.0 / 50.0 + 10_000.0);
    let got = linked.step_time(&batch).0 as f64;
    assert!((got - want).abs() < 2.0, "{got} vs {want}");
    assert!(linked.warnings().is_empty());
    assert!(linked.describe().contains("all-reduce at 50 GB/s"));
    // With the engine's TP and GPU known, the per-rank tables and the datasheet link are used.
    let hw = llm_emu_perf::latency::HardwareDefaults {
        gpu: Some(llm_emu_perf::gpu::GpuSpec::lookup("rtx-pro-6000").unwrap()),
        tensor_parallel_size: Some(2),
        seed: 0,
        tp_link: None,
        moe_data_parallel: None,
    };
    let from_engine = llm_emu_perf::latency::parse_latency_spec_on(
        &format!("profile:dir={},step_overhead_us=0", dir.display()),
        &shape,
        &hw,
    )
    .unwrap();
    let d = from_engine.describe();
    assert!(d.contains("tp2") && d.contains("datasheet"), "{d}");
    // A run's recorded link (its cluster config: 16 GB/s, 20 µs per hop) replaces the
    // datasheet's; a link given in the spec still wins over it.
    let recorded = llm_emu_perf::latency::HardwareDefaults {
        tp_link: Some(llm_emu_perf::latency::RecordedTpLink {
            gbps: 16.0,
            hop_latency_us: 20.0,
            source: "config.json".into(),
        }),
        ..hw.clone()
    };
    let mut from_run = llm_emu_perf::latency::parse_latency_spec_on(
        &format!("profile:dir={},step_overhead_us=0", dir.display()),
        &shape,
        &recorded,
    )
    .unwrap();
    let d = from_run.describe();
    assert!(d.contains("16 GB/s, 20.0 µs per hop (config.json)"), "{d}");
    // 524288 B / 16 GB/s + 2 hops × 20 µs per all-reduce, 64 of them.
    let want = base as f64 + 64.0 * (524_288.0 / 16.0 + 40_000.0);
    let got = from_run.step_time(&batch).0 as f64;
    assert!((got - want).abs() < 2.0, "{got} vs {want}");
    let spec_wins = llm_emu_perf::latency::parse_latency_spec_on(
        &format!(
            "profile:dir={},step_overhead_us=0,tp_link_gbps=50",
            dir.display()
        ),
        &shape,
        &recorded,
    )
    .unwrap();
    assert!(spec_wins.describe().contains("at 50 GB/s"));
}
