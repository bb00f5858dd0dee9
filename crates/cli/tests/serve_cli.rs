//! `llm-emu serve` as a process: `--port 0` prints the bound port, it answers, SIGTERM stops it
//! cleanly.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

mod support;
use support::http;

/// Starts `llm-emu serve` on a port the OS picks (served name `emu`, `max_model_len` 2048,
/// the given latency); returns the process and its `host:port`.
fn start_serve(latency: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--served-model-name",
            "emu",
            "--max-model-len",
            "2048",
            "--latency",
            latency,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("listening line")
        .to_string();
    (child, addr)
}

#[test]
fn serve_binds_port_zero_answers_and_stops_on_sigterm() {
    let (mut child, addr) = start_serve("linear:base_us=500,per_token_us=1");
    assert!(!addr.ends_with(":0"), "a real port: {addr}");
    let (st, _) = http(&addr, "GET", "/health", "");
    assert_eq!(st, 200);
    let (st, body) = http(
        &addr,
        "POST",
        "/v1/completions",
        r#"{"model":"emu","prompt":[1,2,3],"max_tokens":4}"#,
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["model"], "emu");
    let (_, models) = http(&addr, "GET", "/v1/models", "");
    let m: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(m["data"][0]["max_model_len"], 2048);
    assert_eq!(m["data"][0]["root"], "meta-llama/Llama-3.1-8B-Instruct");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopped"), "{err}");
}

#[test]
fn serve_help_explains_the_vllm_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--served-model-name",
        "--api-key",
        "--max-model-len",
        "--max-num-seqs",
        "--enable-prefix-caching",
        "--latency",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}

/// `llm-emu bench` against `llm-emu serve` (two processes on loopback): vLLM's result file,
/// every request served, inter-token gaps no shorter than the emulated step, and `compare`
/// reading the result beside `simulate`'s summary of the same workload.
#[test]
fn bench_against_serve_writes_vllms_result_and_compare_reads_it() {
    // Removed when `scratch` drops at the end of the test (after the server is stopped),
    // whether it passes or fails.
    let scratch = tempfile::Builder::new()
        .prefix("llm-emu-serve-bench-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    let w = dir.join("w.jsonl");
    let mut text = String::new();
    for i in 0..20u64 {
        text += &format!(
            "{{\"arrival_time_ns\": {}, \"input_tok_ids\": [{}, 2, 3, 4, 5, 6, 7, 8], \"output_toks\": 8}}\n",
            i * 5_000_000,
            100 + i
        );
    }
    std::fs::write(&w, text).unwrap();
    let (mut child, addr) = start_serve("linear:base_us=2000");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let base_url = format!("http://{addr}");
    let (w_s, d_s) = (w.to_str().unwrap(), dir.to_str().unwrap());
    run(&[
        "bench",
        "--base-url",
        &base_url,
        "--model",
        "emu",
        "--dataset-name",
        "workload",
        "--dataset-path",
        w_s,
        "--skip-tokenizer-init",
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        d_s,
        "--result-filename",
        "bench.json",
    ]);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    for k in [
        "date",
        "backend",
        "model_id",
        "num_prompts",
        "duration",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "output_throughput",
        "max_concurrent_requests",
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "start_times",
        "errors",
    ] {
        assert!(r.get(k).is_some(), "result lacks {k}: {r}");
    }
    assert_eq!(r["completed"], 20, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["total_input_tokens"], 160);
    assert_eq!(r["total_output_tokens"], 160);
    // Each token comes out of its own step, and a step lasts 2 ms on the wall clock: the 7 gaps
    // after the first token cannot add up to much less than 14 ms (the receipt times of the
    // first and last chunks may each be a little late; merged chunks only move time between
    // gaps).
    let totals: Vec<f64> = r["itls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .sum()
        })
        .collect();
    // Per request, a first chunk received late (a busy machine delays the client, not the
    // server) shortens that request's sum, down to 0 when every chunk is read at once, so
    // neither the mean nor any one request is a safe bound: the slowest-read requests are
    // left out by taking the median, and the longest sum must show all 7 steps.
    let mut sorted = totals.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(median >= 0.012, "median {median} s: {totals:?}");
    let longest = sorted[sorted.len() - 1];
    assert!(
        longest >= 0.013,
        "7 gaps of 2-ms steps, longest sum {longest} s: {totals:?}"
    );

    run(&[
        "simulate",
        "--workload",
        w_s,
        "--quiet",
        "--max-model-len",
        "2048",
        "--latency",
        "linear:base_us=2000",
        "--output-json",
        dir.join("sim.json").to_str().unwrap(),
    ]);
    run(&[
        "compare",
        dir.join("bench.json").to_str().unwrap(),
        dir.join("sim.json").to_str().unwrap(),
        "--output-json",
        dir.join("cmp.json").to_str().unwrap(),
    ]);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cmp.json")).unwrap()).unwrap();
    let thr = &c["output_throughput"];
    assert!(
        thr["a"].as_f64().unwrap() > 0.0 && thr["b"].as_f64().unwrap() > 0.0,
        "{c}"
    );
}
