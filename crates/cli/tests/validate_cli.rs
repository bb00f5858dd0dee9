//! `llm-emu validate` on the shared real run.

use serde_json::Value;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use validate_support::validate_run;

mod validate_support;

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
    let (stdout, _, m) = validate_run(&case, "keys", &[] as &[&str]);
    assert!(
        stdout.contains("max_num_seqs 128, max_num_batched_tokens 2048"),
        "{stdout}"
    );
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
    // Removed when `w_file` drops, whether the test passes or fails.
    let w_file = tempfile::Builder::new()
        .prefix("llm-emu-validate-w-")
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    let w = w_file.path();
    std::fs::write(
        w,
        "{\"arrival_s\": 0.0, \"prompt_len\": 10, \"output_len\": 5}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(case.join("vllm"))
        .arg("--workload")
        .arg(w)
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
    let (_, _, m) = validate_run(
        &case,
        "profile",
        &[
            "--latency".into(),
            format!(
                "profile:dir={},step_overhead_us=0",
                case.join("profile").display()
            ),
            // The peer prices the exact tokens (no CUDA-graph padding) and adds no step
            // overhead.
            "--enforce-eager".into(),
        ],
    );
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

#[test]
fn default_latency_meets_the_fidelity_targets() {
    // The built-in profile with CUDA-graph padding and its measured step overhead: every mean
    // within 2 % of the real run, every median/p90/p99 within 5 % (docs/fidelity.md).
    let Some(case) = shared_case() else { return };
    let (_, _, m) = validate_run(&case, "default", &[] as &[&str]);
    let err = |k: &str| m[k].as_f64().unwrap();
    assert!(err("output_throughput_err_pct").abs() < 2.0);
    for metric in ["ttft", "tpot", "e2el"] {
        let mean = err(&format!("{metric}_mean_err_pct"));
        assert!(mean.abs() < 2.0, "{metric} mean {mean:+.2}%");
        for st in ["median", "p90", "p99"] {
            let e = err(&format!("{metric}_{st}_err_pct"));
            assert!(e.abs() < 5.0, "{metric} {st} {e:+.2}%");
        }
    }
}

#[test]
fn recorded_engine_arguments_are_used_and_unknown_ones_reported() {
    // A copy of the real run whose meta.json records a small KV cache, CUDA graphs off and an
    // engine argument the emulator does not model: the KV count is used (preemptions follow),
    // the unknown key is named, and per-request pairs are written.
    let Some(case) = shared_case() else { return };
    // Removed when `scratch` drops, whether the test passes or fails.
    let scratch = tempfile::Builder::new()
        .prefix("llm-emu-validate-meta-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    let mut meta: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("vllm/meta.json")).unwrap())
            .unwrap();
    meta["engine_kwargs"]["num_gpu_blocks"] = 3000.into();
    // 3000 blocks hold 48,000 tokens: vLLM starts only with a context length that fits.
    meta["engine_kwargs"]["max_model_len"] = 32768.into();
    meta["engine_kwargs"]["enforce_eager"] = true.into();
    meta["engine_kwargs"]["swap_space"] = 4.into();
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    std::fs::copy(case.join("vllm/requests.jsonl"), dir.join("requests.jsonl")).unwrap();
    let pairs = dir.join("pairs.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(dir)
        .arg("--workload")
        .arg(case.join("workload.jsonl"))
        .arg("--requests")
        .arg(&pairs)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("3000 KV blocks"), "{stdout}");
    assert!(stderr.contains("engine_kwargs.swap_space"), "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&pairs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    assert_eq!(lines[0]["real_id"], "bench-0");
    assert!(lines
        .iter()
        .all(|l| l["ttft_ms_sim"].as_f64().is_some() && l["ttft_ms_real"].as_f64().is_some()));
}

/// The shared run with `edit` applied to a copy of its `meta.json` and `requests.jsonl` lines;
/// `validate`'s exit status, stderr and `--json` output (when it succeeded).
fn validate_edited(
    case: &Path,
    edit_meta: impl Fn(&mut Value),
    edit_line: impl Fn(usize, &mut Value),
) -> (bool, String, Option<Value>) {
    let scratch = tempfile::Builder::new()
        .prefix("llm-emu-validate-edit-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    let mut meta: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("vllm/meta.json")).unwrap())
            .unwrap();
    edit_meta(&mut meta);
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(case.join("vllm/requests.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            edit_line(i, &mut v);
            v.to_string()
        })
        .collect();
    std::fs::write(dir.join("requests.jsonl"), lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "validate",
            "--latency",
            "linear:base_us=20000,per_token_us=5",
        ])
        .arg("--real")
        .arg(dir)
        .arg("--workload")
        .arg(case.join("workload.jsonl"))
        .arg("--json")
        .arg(dir.join("out.json"))
        .output()
        .unwrap();
    let json = std::fs::read_to_string(dir.join("out.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    )
}

#[test]
fn requests_the_replay_refuses_or_the_run_did_not_complete_are_named() {
    let Some(case) = shared_case() else { return };
    // A max_model_len below some of the run's prompts: the replay refuses those requests,
    // which the real run served; pairing around them would shift every later pair.
    let (ok, err, _) = validate_edited(
        &case,
        |m| m["engine_kwargs"]["max_model_len"] = 1024.into(),
        |_, _| {},
    );
    assert!(!ok, "accepted");
    assert!(
        err.contains("the emulated engine refused") && err.contains("the real run served"),
        "{err}"
    );
    // Requests that stopped early (EOS): replayed to the lengths they reached, and said.
    let (ok, err, _) = validate_edited(
        &case,
        |_| {},
        |i, v| {
            if i < 2 {
                v["output_toks"] = 7.into();
            }
        },
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "note: 2 of the real run's requests stopped before the workload's output length"
        ),
        "{err}"
    );
    // An aborted request: no first token.
    let (ok, err, _) = validate_edited(
        &case,
        |_| {},
        |i, v| {
            if i == 10 {
                v["first_token_ts"] = Value::Null;
            }
        },
    );
    assert!(!ok, "accepted");
    assert!(
        err.contains("line 11: no `first_token_ts`: a request that did not complete"),
        "{err}"
    );
    // One request recorded twice: two records mixed, not one run.
    let (ok, err, _) = validate_edited(
        &case,
        |_| {},
        |i, v| {
            if i == 7 {
                v["request_id"] = "bench-6".into();
            }
        },
    );
    assert!(!ok, "accepted");
    assert!(
        err.contains("request_id `bench-6` is recorded twice (requests 7 and 8 of the file)"),
        "{err}"
    );
}

#[test]
fn an_older_vllm_version_gets_its_own_defaults_and_vllms_refusals() {
    let Some(case) = shared_case() else { return };
    // vLLM 0.11: async scheduling off, capture sizes every multiple of 8 up to
    // min(2 × max_num_seqs, 512) (256 sequences: up to 512, 264 among them).
    let (ok, err, json) = validate_edited(
        &case,
        |m| {
            m["vllm_version"] = "0.11.0".into();
            m["engine_kwargs"]["max_num_seqs"] = 256.into();
        },
        |_, _| {},
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("vLLM 0.11 defaults used")
            && err.contains("async scheduling off")
            && err.contains("before 0.12 (every multiple of 8)"),
        "{err}"
    );
    let engine = &json.unwrap()["engine"];
    assert_eq!(engine["async_scheduling"], false);
    let sizes: Vec<u64> = engine["cudagraph_capture_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(sizes.len(), 3 + 64);
    assert!(sizes.contains(&264) && sizes.last() == Some(&512));
    // vLLM 0.19, the same run: async on, vLLM's own rule: 16-steps from 256.
    let (ok, err, json) = validate_edited(
        &case,
        |m| m["engine_kwargs"]["max_num_seqs"] = 256.into(),
        |_, _| {},
    );
    assert!(ok, "{err}");
    let engine = &json.unwrap()["engine"];
    assert_eq!(engine["async_scheduling"], true);
    let sizes = engine["cudagraph_capture_sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 3 + 31 + 17);
    assert!(sizes.contains(&272.into()) && !sizes.contains(&264.into()));
    // Chunked prefill off and no budget recorded: the run's engine was built in the engine
    // context, whose budget is max(max_model_len, 2048) in 0.11 and 0.19 alike (the API
    // server's would be 6000 and 8192 on the 96 GB RTX PRO 6000).
    for (version, budget) in [("0.11.0", 6000), ("0.19.0", 6000)] {
        let (ok, err, json) = validate_edited(
            &case,
            |m| {
                m["vllm_version"] = version.into();
                m["engine_kwargs"]["enable_chunked_prefill"] = false.into();
                m["engine_kwargs"]["max_num_batched_tokens"] = Value::Null;
                m["engine_kwargs"]["max_model_len"] = 6000.into();
            },
            |_, _| {},
        );
        assert!(ok, "{version}: {err}");
        assert_eq!(
            json.unwrap()["engine"]["max_num_batched_tokens"],
            budget,
            "{version}"
        );
    }
    // A token budget below max_num_seqs: vLLM does not start, nor does the replay.
    let (ok, err, _) = validate_edited(
        &case,
        |m| m["engine_kwargs"]["max_num_batched_tokens"] = 64.into(),
        |_, _| {},
    );
    assert!(!ok, "accepted");
    assert!(
        err.contains(
            "max_num_batched_tokens (64) must be greater than or equal to max_num_seqs (128)"
        ),
        "{err}"
    );
}
