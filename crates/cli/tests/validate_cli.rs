//! `llm-emu validate` on the shared real run.

use serde_json::Value;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

/// The shared real-run case, or `None` (with a notice) where `../shared` is absent.
fn shared_case() -> Option<PathBuf> {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b");
    if case.exists() {
        Some(case)
    } else {
        println!("skipped: {} is absent", case.display());
        None
    }
}

#[test]
fn validate_reads_the_real_run_and_writes_every_key() {
    let Some(case) = shared_case() else { return };
    let json = std::env::temp_dir().join(format!("llm-emu-validate-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(case.join("vllm"))
        .arg("--workload")
        .arg(case.join("workload.jsonl"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("max_num_seqs 128, max_num_batched_tokens 2048"),
        "{stdout}"
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for metric in ["ttft", "tpot", "e2el"] {
        for stat in ["mean", "median", "p90", "p95", "p99"] {
            for side in ["real", "sim", "err_pct"] {
                let k = format!("{metric}_{stat}_{side}");
                assert!(m[&k].as_f64().is_some_and(f64::is_finite), "{k}");
            }
        }
    }
    // The real side reproduces the "vLLM" column of the peer simulator's own summary
    // (llmservingsim-summary.txt), which uses the same engine-side definitions.
    let close = |k: &str, v: f64| (m[k].as_f64().unwrap() - v).abs() < 0.06;
    assert!(close("ttft_mean_real", 7097.2), "{}", m["ttft_mean_real"]);
    assert!(close("ttft_median_real", 9442.7));
    assert!(close("ttft_p99_real", 19755.3));
    assert!(close("tpot_mean_real", 32.46));
    assert!(close("e2el_mean_real", 28200.7));
    assert!(close("e2el_p95_real", 36617.4));
}

#[test]
fn validate_refuses_a_workload_of_another_run() {
    let Some(case) = shared_case() else { return };
    let w = std::env::temp_dir().join(format!("llm-emu-validate-w-{}.jsonl", std::process::id()));
    std::fs::write(
        &w,
        "{\"arrival_s\": 0.0, \"prompt_len\": 10, \"output_len\": 5}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(case.join("vllm"))
        .arg("--workload")
        .arg(&w)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not describe the same run"));
}

#[test]
fn profile_latency_reproduces_the_peer_simulators_errors() {
    // The operator-profile composition is the peer simulator's own; driven by a vLLM-faithful
    // scheduler it must land where the peer does (llmservingsim-summary.txt: TTFT mean −4.0 %,
    // TPOT mean −1.0 %, E2E mean −1.8 %).
    let Some(case) = shared_case() else { return };
    let json = std::env::temp_dir().join(format!(
        "llm-emu-validate-profile-{}.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(case.join("vllm"))
        .arg("--workload")
        .arg(case.join("workload.jsonl"))
        .arg("--latency")
        .arg(format!("profile:dir={}", case.join("profile").display()))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let err = |k: &str| m[k].as_f64().unwrap();
    assert!(
        (err("ttft_mean_err_pct") + 4.0).abs() < 1.0,
        "{}",
        err("ttft_mean_err_pct")
    );
    assert!(
        (err("tpot_mean_err_pct") + 1.0).abs() < 0.5,
        "{}",
        err("tpot_mean_err_pct")
    );
    assert!(
        (err("e2el_mean_err_pct") + 1.8).abs() < 0.5,
        "{}",
        err("e2el_mean_err_pct")
    );
}
