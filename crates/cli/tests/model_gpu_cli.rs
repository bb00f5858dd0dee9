//! `--model NAME`, `--gpu NAME` and the roofline latency from the command line.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn simulate(name: &str, args: &[&str]) -> (std::process::Output, Option<Value>) {
    // Removed when `d` drops at the end of this function, after the run and the read.
    let d = tempfile::Builder::new()
        .prefix(&format!("llm-emu-cli-{name}-"))
        .tempdir()
        .unwrap();
    let json: PathBuf = d.path().join("s.json");
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["simulate", "--quiet", "--synthetic", "40", "--output-json"])
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (out, summary)
}

#[test]
fn a_model_name_and_a_gpu_are_enough() {
    let (out, s) = simulate(
        "moe-h100",
        &[
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--gpu",
            "h100",
            "--latency",
            "roofline",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = s.unwrap();
    assert_eq!(s["completed"], 40);
    assert!(s["latency_model"]
        .as_str()
        .unwrap()
        .contains("1 × h100-sxm"));
    // vLLM 0.19 on an 80 GiB GPU that is not an A100: 8192 tokens / 1024 sequences.
    assert_eq!(s["engine_config"]["max_num_batched_tokens"], 8192);
    assert_eq!(s["engine_config"]["max_num_seqs"], 1024);
    assert_eq!(s["engine_config"]["max_model_len"], 40960);
    // 72 GiB − 57 GiB weights − activations ≈ 13 GiB of 1.5 MiB blocks.
    let blocks = s["engine_config"]["num_gpu_blocks"].as_u64().unwrap();
    assert!((6_000..10_000).contains(&blocks), "{blocks}");

    let (out, s) = simulate("a100", &["--gpu", "a100-80gb", "--latency", "roofline"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = s.unwrap();
    // A100s keep the small defaults.
    assert_eq!(s["engine_config"]["max_num_batched_tokens"], 2048);
    assert_eq!(s["engine_config"]["max_num_seqs"], 256);
    assert!(s["latency_model"].as_str().unwrap().contains("a100-80gb"));
}

#[test]
fn deepseek_on_eight_h200s() {
    let (out, s) = simulate(
        "deepseek",
        &[
            "--model",
            "deepseek-ai/DeepSeek-R1",
            "--gpu",
            "h200",
            "--tensor-parallel-size",
            "8",
            "--latency",
            "roofline",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = s.unwrap();
    assert_eq!(s["completed"], 40);
    assert!(s["latency_model"].as_str().unwrap().contains("8 × h200"));
    assert!(s["mean_tpot_ms"].as_f64().unwrap() > 5.0);
}

#[test]
fn unknown_names_and_impossible_setups_are_clear_errors() {
    for (args, needle) in [
        (vec!["--gpu", "tpu-v5e"], "unknown GPU `tpu-v5e`"),
        (
            vec!["--model", "acme/nothing-7b"],
            "unknown model `acme/nothing-7b`",
        ),
        (
            vec!["--model", "meta-llama/Llama-3.1-70B", "--gpu", "h100"],
            "no memory left for the KV cache",
        ),
        (vec!["--latency", "roofline:tp=3"], "not divisible by tp=3"),
    ] {
        let (out, _) = simulate("errors", &args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
