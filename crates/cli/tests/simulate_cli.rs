//! `llm-emu simulate` end to end, as a user runs it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-cli-{name}-"))
        .tempdir()
        .unwrap()
}

fn real_run_workload() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b/workload.jsonl");
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: {} is absent", p.display());
        None
    }
}

#[test]
fn runs_the_real_run_workload_and_writes_every_output() {
    let Some(w) = real_run_workload() else { return };
    let scratch = tmp("real");
    let d = scratch.path();
    let out = bin()
        .args([
            "simulate",
            "--quiet",
            "--max-num-seqs",
            "128",
            "--max-num-batched-tokens",
            "2048",
            "--workload",
        ])
        .arg(&w)
        .arg("--output-json")
        .arg(d.join("s.json"))
        .arg("--requests-out")
        .arg(d.join("r.jsonl"))
        .arg("--steps-out")
        .arg(d.join("st.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("s.json")).unwrap()).unwrap();
    assert_eq!(s["completed"], 300);
    assert_eq!(s["failed"], 0);
    for k in [
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "num_preemptions",
        "prefix_cache_hit_rate",
    ] {
        assert!(s[k].is_number(), "{k}");
    }
    for m in ["ttft", "tpot", "itl", "e2el"] {
        for st in ["mean", "median", "std", "p90", "p99"] {
            let v = s[format!("{st}_{m}_ms")].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{st}_{m}_ms = {v}");
        }
    }
    assert_eq!(s["engine_config"]["max_num_seqs"], 128);
    // The workload's output lengths are honoured exactly.
    assert_eq!(s["total_output_tokens"], 195753);
    let reqs: Vec<Value> = std::fs::read_to_string(d.join("r.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reqs.len(), 300);
    for r in &reqs {
        let (a, q, f, l) = (
            r["arrival_s"].as_f64().unwrap(),
            r["queued_s"].as_f64().unwrap(),
            r["first_token_s"].as_f64().unwrap(),
            r["last_token_s"].as_f64().unwrap(),
        );
        assert!(
            a <= q && q <= r["first_scheduled_s"].as_f64().unwrap() && f > q && l >= f,
            "{r}"
        );
        assert_eq!(r["finish_reason"], "length");
    }
    let steps = std::fs::read_to_string(d.join("st.jsonl")).unwrap();
    assert_eq!(
        steps.lines().count() as u64,
        s["num_steps"].as_u64().unwrap()
    );
    let first: Value = serde_json::from_str(steps.lines().next().unwrap()).unwrap();
    assert!(first["num_tokens"].as_u64().unwrap() <= 2048);
}

#[test]
fn default_run_needs_no_arguments() {
    let out = bin()
        .args(["simulate", "--synthetic", "200"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Successful requests:                    200"),
        "{table}"
    );
    assert!(table.contains("Mean TTFT (ms):"));
}

#[test]
fn bad_flag_values_are_clear_errors() {
    for (args, needle) in [
        (
            vec!["--scheduling-policy", "lifo"],
            "unknown scheduling policy `lifo`",
        ),
        (
            vec!["--latency", "cubic:a=1"],
            "unknown latency model `cubic`",
        ),
        (vec!["--latency", "linear:base_us=fast"], "not a number"),
        (
            vec!["--gpu-memory-utilization", "1.5"],
            "--gpu-memory-utilization",
        ),
        (vec!["--num-gpu-blocks-override", "1"], "at least 2"),
        (
            vec!["--request-timeout", "0"],
            "--request-timeout 0: must be a number of seconds > 0",
        ),
        (
            vec!["--request-timeout", "inf"],
            "must be a number of seconds > 0",
        ),
        (
            vec!["--workload", "/nonexistent/w.jsonl"],
            "opening workload",
        ),
    ] {
        let out = bin().arg("simulate").args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn malformed_lines_and_impossible_requests_fail_alone() {
    let scratch = tmp("bad");
    let d = scratch.path();
    let w = d.join("w.jsonl");
    std::fs::write(
        &w,
        concat!(
            "{\"arrival_s\": 0.0, \"prompt_len\": 100, \"output_len\": 10}\n",
            "{\"arrival_s\": 0.1, \"prompt_len\": \"many\", \"output_len\": 10}\n",
            "{\"arrival_s\": 0.2, \"prompt_len\": 5000, \"output_len\": 10}\n",
            "{\"arrival_s\": 0.3, \"prompt_len\": 50, \"output_len\": 10}\n",
            "{\"arrival_s\": 0.35, \"prompt_len\": 4000, \"output_len\": 200}\n",
            "{\"arrival_s\": 0.4, \"prompt_l",
        ),
    )
    .unwrap();
    let out = bin()
        .args([
            "simulate",
            "--quiet",
            "--max-model-len",
            "4096",
            "--workload",
        ])
        .arg(&w)
        .arg("--output-json")
        .arg(d.join("s.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 request(s) failed"), "{err}");
    assert!(err.contains("w.jsonl:2"), "{err}");
    assert!(
        err.contains("w.jsonl:3: The decoder prompt (length 5000) is longer than the maximum model length of 4096"),
        "{err}"
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("s.json")).unwrap()).unwrap();
    assert_eq!(s["completed"], 2);
    assert_eq!(s["failed"], 4);
}

/// `--request-timeout`: on an overloaded engine the client gives up on requests still running
/// at their deadline; they are aborted, counted as failed and as timed out, and nothing else
/// fails. Every successful request ended within the limit.
#[test]
fn a_client_timeout_aborts_what_runs_past_it() {
    let dir = tmp("timeout");
    let json = dir.path().join("out.json");
    let reqs = dir.path().join("requests.jsonl");
    let out = bin()
        .args([
            "simulate",
            "--synthetic",
            "1000",
            "--request-rate",
            "100",
            "--request-timeout",
            "15",
            "--output-json",
        ])
        .arg(&json)
        .arg("--requests-out")
        .arg(&reqs)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let n = |k: &str| m[k].as_u64().unwrap();
    assert!(n("timed_out") > 0, "{m}");
    assert_eq!(m["request_timeout_s"], 15.0, "{m}");
    assert_eq!(n("failed"), n("timed_out"), "{m}");
    assert_eq!(n("completed") + n("failed"), 1000, "{m}");
    assert!(table.contains("of which timed out (client):"), "{table}");
    // The run lasts until its last request ends, answered or given up on (the engine applies
    // an abort between steps: up to a step after the deadline).
    let mut last_end: f64 = 0.0;
    for line in std::fs::read_to_string(&reqs).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["finish_reason"] == "abort" {
            let sent = r["arrival_s"].as_f64().unwrap();
            last_end = last_end.max(sent + 15.0);
            continue;
        }
        last_end = last_end.max(r["last_token_s"].as_f64().unwrap());
        let e2e = r["last_token_s"].as_f64().unwrap() - r["arrival_s"].as_f64().unwrap();
        assert!(e2e <= 15.0, "{r}");
    }
    let duration = m["duration"].as_f64().unwrap();
    assert!(
        duration >= last_end - 1e-6 && duration < last_end + 0.5,
        "{duration} vs {last_end}"
    );
}
