//! `llm-emu bench` and `llm-emu compare` end to end, against a local streaming server.

#[path = "../../bench/tests/support/server.rs"]
mod server;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use tempfile::TempDir;

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-bench-cli-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs the binary off the runtime's threads so the server keeps serving.
async fn llm_emu(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_llm-emu"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn workload(dir: &std::path::Path, n: usize) -> PathBuf {
    let p = dir.join("w.jsonl");
    let mut text = String::new();
    for i in 0..n {
        text += &format!(
            "{{\"arrival_time_ns\": {}, \"input_tok_ids\": [1, 2, 3, {i}], \"output_toks\": 5}}\n",
            i * 10_000_000
        );
    }
    text += "{\"arrival_time_ns\": 1, \"input_tok_ids\": [1, 2\n";
    std::fs::write(&p, text).unwrap();
    p
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The keys of `vllm bench serve`'s result (without --save-detailed), before the latency
/// statistics.
const VLLM_KEYS: [&str; 22] = [
    "date",
    "endpoint_type",
    "backend",
    "label",
    "model_id",
    "tokenizer_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
    "max_concurrent_requests",
    "rtfx",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_workload_and_writes_vllms_result_file() {
    let srv = server::start(server::ServerOpts::default()).await;
    let scratch = tmp("replay");
    let d = scratch.path();
    let w = workload(d, 6);
    let base = vec![
        s("bench"),
        s("--base-url"),
        srv.base_url(),
        s("--dataset-name"),
        s("workload"),
        s("--dataset-path"),
        w.display().to_string(),
        s("--skip-tokenizer-init"),
        s("--disable-tqdm"),
        s("--save-result"),
        s("--result-dir"),
        d.display().to_string(),
    ];
    let mut args = base.clone();
    args.extend([
        s("--model"),
        s("org/m"),
        s("--result-filename"),
        s("plain.json"),
    ]);
    args.extend([
        s("--percentile-metrics"),
        s("ttft,e2el"),
        s("--metric-percentiles"),
        s("50,99.9"),
    ]);
    let out = llm_emu(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("============ Serving Benchmark Result ============"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{:<40} {:<10}", "Successful requests:", 6)),
        "{stdout}"
    );
    assert!(stderr.contains("1 malformed skipped"), "{stderr}");
    let text = std::fs::read_to_string(d.join("plain.json")).unwrap();
    assert!(
        text.starts_with("{\"date\": \""),
        "Python's json.dump layout: {text}"
    );
    let r: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    // Without a tokenizer vLLM reports only E2EL statistics.
    let mut want = VLLM_KEYS.to_vec();
    want.extend([
        "mean_e2el_ms",
        "median_e2el_ms",
        "std_e2el_ms",
        "p50_e2el_ms",
        "p99.9_e2el_ms",
    ]);
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(r["completed"], 6);
    assert_eq!(r["total_output_tokens"], 30);
    assert_eq!(r["total_input_tokens"], 24);
    assert_eq!(r["request_rate"], "inf");
    assert_eq!(r["model_id"], "org/m");
    assert!(r["tokenizer_id"].is_null());
    // The replay kept the workload's 10 ms spacing.
    assert!(r["duration"].as_f64().unwrap() >= 0.05);
    let sent: Vec<Value> = srv
        .stats
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.body.clone())
        .collect();
    assert_eq!(sent[0]["prompt"], serde_json::json!([1, 2, 3, 0]));
    assert_eq!(sent[0]["max_tokens"], 5);
    assert_eq!(sent[0]["ignore_eos"], true);

    // Model from /v1/models, detailed arrays, vLLM's default file name.
    let mut args = base.clone();
    args.extend([
        s("--save-detailed"),
        s("--max-concurrency"),
        s("2"),
        s("--goodput"),
        s("ttft:10000"),
    ]);
    let out = llm_emu(args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("First model name: served-name, first model id: org/test-model"));
    assert!(stdout.contains("Request goodput (req/s):"));
    let name = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("openai-infqps-concurrency2-test-model-"))
        .expect("vLLM's default result name");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(d.join(&name)).unwrap()).unwrap();
    assert_eq!(r["max_concurrency"], 2);
    assert_eq!(
        r["request_goodput"].as_f64().unwrap(),
        r["request_throughput"].as_f64().unwrap()
    );
    assert_eq!(r["output_lens"], serde_json::json!([5, 5, 5, 5, 5, 5]));
    assert_eq!(r["itls"][0].as_array().unwrap().len(), 4);
    assert_eq!(r["errors"][0], "");
    assert_eq!(r["generated_texts"][0], " tok0 tok1 tok2 tok3 tok4");

    // compare: a file against itself is 0 % everywhere; against the other, signed errors.
    let out = llm_emu(vec![
        s("compare"),
        d.join("plain.json").display().to_string(),
        d.join(&name).display().to_string(),
        s("--output-json"),
        d.join("cmp.json").display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("duration") && stdout.contains("+0.00%"),
        "{stdout}"
    );
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("cmp.json")).unwrap()).unwrap();
    assert_eq!(c["completed"]["err_pct"], 0.0);
}

/// A Mooncake trace goes out as token-id prompts built from its hash ids (blocks of
/// `--hash-block-size` tokens), at its own timestamps, each asking for its `output_length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_mooncake_trace() {
    let srv = server::start(server::ServerOpts::default()).await;
    let scratch = tmp("mooncake");
    let d = scratch.path();
    let w = d.join("trace.jsonl");
    std::fs::write(
        &w,
        concat!(
            "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [0, 1, 2]}\n",
            "{\"timestamp\": 50, \"input_length\": 9, \"output_length\": 2, \"hash_ids\": [0, 1, 7]}\n",
            "{\"timestamp\": 100, \"input_length\": 12, \"output_length\": 4, \"hash_ids\": [0, 1, 2]}\n",
        ),
    )
    .unwrap();
    let out = llm_emu(vec![
        s("bench"),
        s("--base-url"),
        srv.base_url(),
        s("--model"),
        s("org/m"),
        s("--dataset-name"),
        s("mooncake"),
        s("--dataset-path"),
        w.display().to_string(),
        s("--hash-block-size"),
        s("4"),
        s("--skip-tokenizer-init"),
        s("--disable-tqdm"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for (k, v) in [("Successful requests:", "3"), ("Total input tokens:", "31")] {
        assert!(
            stdout.contains(&format!("{k:<40} {v:<10}")),
            "{k} {v}: {stdout}"
        );
    }
    // The last request goes out 100 ms after the first: `timestamp` is in milliseconds.
    let duration: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Benchmark duration (s):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no duration: {stdout}"));
    assert!((0.1..5.0).contains(&duration), "{duration} s: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_and_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let scratch = tmp("refused");
    let d = scratch.path();
    let w = workload(d, 3);
    let out = llm_emu(vec![
        s("bench"),
        s("--port"),
        port.to_string(),
        s("--model"),
        s("m"),
        s("--dataset-name"),
        s("workload"),
        s("--dataset-path"),
        w.display().to_string(),
        s("--skip-tokenizer-init"),
        s("--disable-tqdm"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Failed requests are counted and the table still printed, but a run in which every
    // request failed measured nothing: its exit status says so.
    assert!(
        !out.status.success(),
        "every request failed: non-zero exit: {stdout}"
    );
    assert!(stderr.contains("no request succeeded"), "{stderr}");
    assert!(
        stdout.contains(&format!("{:<40} {:<10}", "Failed requests:", 3)),
        "{stdout}"
    );
    assert!(stdout.contains("Error 0: "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_clear_errors() {
    let scratch = tmp("bad");
    let d = scratch.path();
    let w = workload(d, 1);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![s("--dataset-name"), s("nope")],
            "unknown --dataset-name",
        ),
        (
            vec![s("--request-rate"), s("0")],
            "--request-rate must be positive",
        ),
        (vec![s("--backend"), s("tgi")], "unsupported --backend"),
        (vec![s("--backend"), s("openai-chat")], "URL must end with"),
        (vec![s("--goodput"), s("ttft=5")], "invalid --goodput"),
        (
            vec![s("--dataset-name"), s("sharegpt")],
            "needs --dataset-path",
        ),
        (
            vec![
                s("--dataset-name"),
                s("workload"),
                s("--dataset-path"),
                w.display().to_string(),
                s("--request-rate"),
                s("5"),
            ],
            "replayed at its own arrival times",
        ),
        (
            vec![
                s("--dataset-name"),
                s("workload"),
                s("--dataset-path"),
                d.join("absent").display().to_string(),
            ],
            "absent",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            s("bench"),
            s("--model"),
            s("m"),
            s("--skip-tokenizer-init"),
            s("--port"),
            s("1"),
        ];
        args.extend(extra.clone());
        let out = llm_emu(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} should fail");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = llm_emu(vec![
        s("compare"),
        w.display().to_string(),
        w.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
}

const LATENCY_KEYS: [&str; 12] = [
    "mean_ttft_ms",
    "median_ttft_ms",
    "std_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "std_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "std_itl_ms",
    "p99_itl_ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_sharegpt_with_a_tokenizer_report_every_vllm_key() {
    let srv = server::start(server::ServerOpts::default()).await;
    let scratch = tmp("tok");
    let d = scratch.path();
    let golden =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/tests/golden/sharegpt_small.json");
    // A ShareGPT file cut off mid-entry, as the PyPI copy is.
    let text = std::fs::read_to_string(&golden).unwrap();
    let cut = d.join("cut.json");
    std::fs::write(&cut, &text[..text.len() * 2 / 3]).unwrap();
    for (name, extra) in [
        (
            "random",
            vec![
                s("--random-input-len"),
                s("40"),
                s("--random-output-len"),
                s("6"),
                s("--request-rate"),
                s("200"),
            ],
        ),
        (
            "sharegpt",
            vec![
                s("--dataset-path"),
                cut.display().to_string(),
                s("--sharegpt-output-len"),
                s("4"),
                s("--request-rate"),
                s("100"),
                s("--burstiness"),
                s("0.5"),
            ],
        ),
    ] {
        let mut args = vec![
            s("bench"),
            s("--base-url"),
            srv.base_url(),
            s("--model"),
            s("m"),
            s("--tokenizer"),
            s("builtin"),
            s("--dataset-name"),
            s(name),
            s("--num-prompts"),
            s("12"),
            s("--disable-tqdm"),
            s("--save-result"),
            s("--result-dir"),
            d.display().to_string(),
            s("--result-filename"),
            format!("{name}.json"),
        ];
        args.extend(extra);
        let out = llm_emu(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        for line in [
            "Total generated tokens:",
            "Output token throughput (tok/s):",
            "Mean TTFT (ms):",
            "P99 ITL (ms):",
            "Request rate configured (RPS):",
        ] {
            assert!(stdout.contains(line), "{name}: no `{line}` in\n{stdout}");
        }
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let mut want: Vec<&str> = VLLM_KEYS
            .iter()
            .chain(LATENCY_KEYS.iter())
            .copied()
            .collect();
        want.sort();
        let mut got: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, want, "{name}");
        assert_eq!(r["completed"], 12, "{name}");
        assert_eq!(r["tokenizer_id"], "builtin");
        if name == "sharegpt" {
            assert!(stderr.contains("file cut off mid-entry"), "{stderr}");
            assert_eq!(r["total_output_tokens"], 48);
        } else {
            assert_eq!(r["total_output_tokens"], 72);
            assert_eq!(r["request_rate"], 200.0);
        }
    }
    // The random prompts went out with vLLM's random-dataset ignore_eos.
    let seen = srv.stats.seen.lock().unwrap();
    assert!(seen.iter().all(|x| x.body["prompt"].is_string()));
    assert_eq!(seen[0].body["ignore_eos"], true);
}
