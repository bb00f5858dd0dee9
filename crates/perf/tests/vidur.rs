//! Vidur's operator tables as a latency model: step times computed by hand from the excerpt in
//! tests/data/vidur (real mlp.csv and all_reduce.csv rows, a synthetic attention.csv in Vidur's
//! columns; see its README), detection by `--profile`, and the errors.

use llm_emu_perf::latency::vidur::VidurLatency;
use llm_emu_perf::latency::{
    latency_spec_for_profile, BatchRequest, HardwareDefaults, LatencySpec, StepBatch,
};
use llm_emu_perf::sizing::ModelShape;
use std::path::PathBuf;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vidur")
}

fn compute_dir() -> PathBuf {
    data().join("compute/h100/meta-llama/Llama-2-7b-hf")
}

fn all_reduce() -> PathBuf {
    data().join("network/h100_pairwise_nvlink/all_reduce.csv")
}

fn llama2() -> ModelShape {
    ModelShape::builtin("meta-llama/Llama-2-7b-hf").unwrap()
}

fn load(tp: u32) -> VidurLatency {
    let ar = all_reduce();
    VidurLatency::load(&compute_dir(), &llama2(), tp, Some(&ar), 0.0).unwrap()
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

/// Σ of the nine token-linear medians of mlp.csv at TP 1 (ms): 0.036 + 0.016 + 0.004 + 0.004
/// + 0.004 + 0.064 + 0.036 + 0.007 + 0.001 at 8 tokens, and so on.
const COMPUTE_TP1_8: f64 = 0.172;
const COMPUTE_TP1_64: f64 = 0.183;
const COMPUTE_TP1_512: f64 = 0.3745;
const COMPUTE_TP2_1: f64 = 0.1;

#[test]
fn decode_step_by_hand() {
    let mut m = load(1);
    // 8 decodes at 1000 tokens of context: mean 1000 → 1024 (Vidur's 64-token granularity);
    // decode(8, 1024) = 0.06; kv_cache_save at 8 tokens = 0.003; MHA: no batching overhead.
    let reqs = vec![(1, 1000, true); 8];
    let per_layer = COMPUTE_TP1_8 + 0.003 + 0.06;
    close(m.step_ms(&reqs, 8), 32.0 * per_layer);
}

#[test]
fn prefill_step_by_hand() {
    let mut m = load(1);
    // One 512-token prefill from nothing: prefill(0, 512) = 0.1, kv save 0.01.
    close(
        m.step_ms(&[(512, 0, false)], 512),
        32.0 * (COMPUTE_TP1_512 + 0.01 + 0.1),
    );
    // Two prefills of 300 and 400 tokens: contexts 0 and 100 → 0 + 128; chunk √(300² + 400²)
    // = 500. prefill(128, 500) between chunk 64 and 512 at kv 0 and 1024, read at kv 128:
    // at chunk 500, kv 0: 0.02 + 0.08 × 436/448; kv 1024: 0.03 + 0.11 × 436/448.
    let at0 = 0.02 + 0.08 * 436.0 / 448.0;
    let at1024 = 0.03 + 0.11 * 436.0 / 448.0;
    let prefill = at0 + (at1024 - at0) * 128.0 / 1024.0;
    // 700 tokens: compute and kv save extrapolate along their last segment (64 → 512).
    let compute = COMPUTE_TP1_512 + (COMPUTE_TP1_512 - COMPUTE_TP1_64) * 188.0 / 448.0;
    let save = 0.01 + 0.006 * 188.0 / 448.0;
    close(
        m.step_ms(&[(300, 0, false), (400, 100, false)], 700),
        32.0 * (compute + save + prefill),
    );
    assert!(m.step_ms(&[(8192, 0, false)], 8192) > 0.0);
}

#[test]
fn mixed_step_interpolates_every_table() {
    let mut m = load(1);
    // A 64-token chunk at context 1000 (→ 1024) and one decode at context 100 (→ 128);
    // 65 tokens padded to 72.
    let compute = COMPUTE_TP1_64 + (COMPUTE_TP1_512 - COMPUTE_TP1_64) * 8.0 / 448.0;
    let save = 0.004 + 0.006 * 1.0 / 448.0;
    let decode = 0.01 + 0.01 * 128.0 / 1024.0;
    let prefill = 0.03;
    close(
        m.step_ms(&[(64, 1000, false), (1, 100, true)], 72),
        32.0 * (compute + save + decode + prefill),
    );
}

#[test]
fn tensor_parallel_adds_two_measured_all_reduces_per_layer() {
    let mut m = load(2);
    // One decode at 1024: TP-2 rows; all-reduce of 1 token (8 KiB): between 2048 B (0.25
    // tokens, 0.028 ms) and 2 MiB (256 tokens, 0.03 ms); + 0.02 ms launch, twice per layer.
    let ar = 0.028 + 0.002 * 0.75 / 255.75;
    let per_layer = COMPUTE_TP2_1 + 0.001 + 0.011 + 2.0 * (ar + 0.02);
    close(m.step_ms(&[(1, 1024, true)], 1), 32.0 * per_layer);
    // TP 2 without a network table is an error naming what to give.
    let e = VidurLatency::load(&compute_dir(), &llama2(), 2, None, 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("all_reduce=FILE"), "{e}");
}

#[test]
fn detected_by_profile_and_built_through_the_spec() {
    let spec = latency_spec_for_profile(&compute_dir()).unwrap();
    assert_eq!(spec, LatencySpec::vidur(compute_dir()));
    let text = format!("vidur:dir={},overhead_us=500", compute_dir().display());
    let spec: LatencySpec = text.parse().unwrap();
    assert_eq!(spec.to_string(), text);
    let mut model = spec.build(&llama2(), &HardwareDefaults::default()).unwrap();
    assert_eq!(
        model.measured_on(),
        (Some("h100"), Some("meta-llama/Llama-2-7b-hf"))
    );
    let reqs = [BatchRequest {
        num_tokens: 512,
        num_computed_before: 0,
        num_prompt_tokens: 512,
        samples: true,
    }];
    let t = model.step_time(&StepBatch {
        requests: &reqs,
        total_tokens: 512,
        padded_tokens: 512,
        num_running: 1,
    });
    let want_ms = 32.0 * (COMPUTE_TP1_512 + 0.01 + 0.1) + 0.5;
    assert!((t.0 as f64 / 1e6 - want_ms).abs() < 1e-5, "{t:?}");
}

#[test]
fn another_models_shape_is_refused_naming_what_the_file_holds() {
    let e = VidurLatency::load(&compute_dir(), &ModelShape::llama_3_1_8b(), 1, None, 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("n_kv_head 8") && e.contains("heads 32 / kv 32 / hidden 4096 at TP 1"),
        "{e}"
    );
    let missing = data().join("nowhere");
    assert!(VidurLatency::load(&missing, &llama2(), 1, None, 0.0).is_err());
}

#[test]
fn a_vidur_profile_names_the_model_it_was_measured_with() {
    use llm_emu_perf::EngineArgs;
    let args = EngineArgs {
        profile: Some(compute_dir()),
        ..Default::default()
    };
    // No --model: the model of Vidur's layout (Llama-2-7B), not the default Llama-3.1-8B.
    assert_eq!(args.model_shape().unwrap(), llama2());
}
