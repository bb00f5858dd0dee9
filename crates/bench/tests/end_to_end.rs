//! The client against a local streaming server: request bodies, measurements, faults.

mod support;

use llm_emu_bench::arrival::send_offsets;
use llm_emu_bench::client::{Api, Target};
use llm_emu_bench::dataset::{Prompt, SampleRequest};
use llm_emu_bench::metrics::{self, Goodput};
use llm_emu_bench::run::{self, Progress, RunOutput, RunPlan};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::server::{start, ServerOpts};
use support::tok::WordTokenizer;

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    done: AtomicUsize,
}

impl Progress for Log {
    fn line(&self, text: &str) {
        self.lines.lock().unwrap().push(text.to_string());
    }
    fn request_done(&self) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

fn requests(prompts: &[&str], output_len: usize) -> Vec<SampleRequest> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| SampleRequest {
            user: None,
            prompt: Prompt::Text(p.to_string()),
            prompt_len: p.split_whitespace().count(),
            expected_output_len: output_len,
            request_id: format!("bench-test-{i}"),
            send_at: None,
        })
        .collect()
}

fn target(base: &str, api: Api, extra: Map<String, Value>) -> Arc<Target> {
    let path = match api {
        Api::Completions => "/v1/completions",
        Api::Chat => "/v1/chat/completions",
    };
    Arc::new(Target {
        api,
        uri: format!("{base}{path}").parse().unwrap(),
        model: "test-model".into(),
        logprobs: None,
        ignore_eos: true,
        extra_body: extra,
        headers: Vec::new(),
        timeout: Duration::from_secs(20),
    })
}

async fn bench(
    t: Arc<Target>,
    reqs: Vec<SampleRequest>,
    offsets: Option<Vec<f64>>,
    max_concurrency: Option<usize>,
) -> (RunOutput, Arc<Log>) {
    let n = reqs.len();
    let log = Arc::new(Log::default());
    let plan = RunPlan {
        offsets: offsets.unwrap_or_else(|| vec![0.0; n]),
        max_concurrency,
        ready_check_timeout: Duration::ZERO,
        num_warmups: 0,
        traffic_lines: vec!["Traffic request rate: inf".into()],
    };
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        run::run(t, Arc::new(reqs), plan, log.clone()),
    )
    .await
    .expect("the run is bounded in time")
    .unwrap();
    assert_eq!(log.done.load(Ordering::SeqCst), n);
    (out, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_requests_and_measurements_match_vllm() {
    let server = start(ServerOpts {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(3),
        ..Default::default()
    })
    .await;
    let mut extra = Map::new();
    extra.insert("temperature".into(), json!(0.0));
    let t = target(&server.base_url(), Api::Completions, extra);
    let (out, log) = bench(t, requests(&["hello w5 w6 w7"; 6], 10), None, None).await;
    assert_eq!(out.outputs.len(), 6);
    for o in &out.outputs {
        assert!(o.success, "{}", o.error);
        assert_eq!(o.output_tokens, 10);
        assert_eq!(o.itl.len(), 9);
        assert!(o.ttft >= 0.029, "TTFT {} below the server's 30 ms", o.ttft);
        assert!(o.itl.iter().all(|&g| g >= 0.0));
        assert!((o.latency - (o.ttft + o.itl.iter().sum::<f64>())).abs() < 1e-9);
        assert_eq!(
            o.generated_text,
            (0..10).map(|i| format!(" tok{i}")).collect::<String>()
        );
        assert_eq!(o.prompt_len, 4);
    }
    assert!(log
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l == "Starting main benchmark run..."));

    let seen = server.stats.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    let body = &seen[0].body;
    assert_eq!(
        body,
        &json!({
            "model": "test-model", "prompt": "hello w5 w6 w7", "repetition_penalty": 1.0,
            "max_tokens": 10, "logprobs": null, "stream": true,
            "stream_options": {"include_usage": true}, "ignore_eos": true, "temperature": 0.0
        })
    );
    let mut ids: Vec<String> = seen.iter().map(|s| s.request_id.clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids[0], "bench-test-0");

    let m = metrics::calculate(
        &out.outputs,
        out.duration,
        None,
        &[50.0, 99.0],
        &Goodput::default(),
    );
    assert_eq!((m.completed, m.failed), (6, 0));
    assert_eq!(m.total_output, 60);
    assert_eq!(m.total_input, 24);
    assert!(m.tpot.mean_ms >= 2.5, "TPOT {} ms", m.tpot.mean_ms);
    assert_eq!(m.max_concurrent_requests, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_counts_the_role_chunk_as_vllm_does() {
    let server = start(ServerOpts::default()).await;
    let t = target(&server.base_url(), Api::Chat, Map::new());
    let (out, _) = bench(t, requests(&["hi there"; 3], 5), None, None).await;
    for o in &out.outputs {
        assert!(o.success, "{}", o.error);
        // role chunk + 5 tokens: 6 events, 5 gaps.
        assert_eq!(o.itl.len(), 5);
        assert_eq!(o.output_tokens, 5);
        assert_eq!(o.generated_text, " tok0 tok1 tok2 tok3 tok4");
    }
    let seen = server.stats.seen.lock().unwrap().clone();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body,
        json!({
            "model": "test-model",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
            "max_completion_tokens": 5, "stream": true,
            "stream_options": {"include_usage": true}, "ignore_eos": true
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_fails_its_request_and_the_run_goes_on() {
    let server = start(ServerOpts::default()).await;
    let t = target(&server.base_url(), Api::Completions, Map::new());
    let prompts = [
        "ok one",
        "http500 x",
        "early_close x",
        "malformed x",
        "error_event x",
        "http400 x",
        "no_tokens x",
        "ok two",
    ];
    let (out, _) = bench(t, requests(&prompts, 6), None, None).await;
    let o = &out.outputs;
    assert!(o[0].success && o[7].success);
    for (i, want) in [
        (1, "engine died"),
        (2, "stream broken"),
        (3, "malformed SSE event"),
        (4, "engine failed mid-stream"),
        (5, "maximum context length"),
        (6, "Never received a valid chunk"),
    ] {
        assert!(!o[i].success, "request {i} should fail");
        assert!(o[i].error.contains(want), "request {i}: {}", o[i].error);
    }
    assert!(o[1].error.starts_with("Internal Server Error (HTTP 500)"));
    let m = metrics::calculate(o, out.duration, None, &[99.0], &Goodput::default());
    assert_eq!((m.completed, m.failed), (2, 6));
    assert_eq!(m.actual_output_lens, vec![6, 0, 0, 0, 0, 0, 0, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_every_request() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = target(
        &format!("http://127.0.0.1:{port}"),
        Api::Completions,
        Map::new(),
    );
    let (out, _) = bench(t, requests(&["a", "b", "c"], 4), None, None).await;
    for o in &out.outputs {
        assert!(!o.success);
        assert!(o.error.to_lowercase().contains("connect"), "{}", o.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_output_tokens_come_from_the_tokenizer() {
    let server = start(ServerOpts::default()).await;
    let t = target(&server.base_url(), Api::Completions, Map::new());
    let (out, _) = bench(t, requests(&["no_usage please"], 7), None, None).await;
    assert!(out.outputs[0].success);
    assert_eq!(out.outputs[0].output_tokens, 0);
    let m = metrics::calculate(
        &out.outputs,
        out.duration,
        Some(&WordTokenizer),
        &[99.0],
        &Goodput::default(),
    );
    assert_eq!(m.actual_output_lens, vec![7]);
    let m = metrics::calculate(
        &out.outputs,
        out.duration,
        None,
        &[99.0],
        &Goodput::default(),
    );
    assert_eq!(
        m.actual_output_lens,
        vec![1],
        "vLLM counts 1 without a tokenizer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_requests_in_flight() {
    let server = start(ServerOpts {
        ttft: Duration::from_millis(15),
        ..Default::default()
    })
    .await;
    let t = target(&server.base_url(), Api::Completions, Map::new());
    let (out, _) = bench(t, requests(&["x"; 12], 3), None, Some(3)).await;
    assert!(out.outputs.iter().all(|o| o.success));
    let max = server.stats.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max} in flight");
    // Keep-alive: connections are reused, at most one per request in flight.
    let conns = server.stats.accepted.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&conns),
        "{conns} connections for 12 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_dropped_is_not_reused() {
    let server = start(ServerOpts::default()).await;
    let t = target(&server.base_url(), Api::Completions, Map::new());
    // One at a time: the dropped stream's connection must not serve the next request.
    let prompts = ["ok", "early_close", "ok", "http500", "ok"];
    let (out, _) = bench(t, requests(&prompts, 3), None, Some(1)).await;
    let ok: Vec<bool> = out.outputs.iter().map(|o| o.success).collect();
    assert_eq!(ok, [true, false, true, false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_out_at_their_offsets() {
    let server = start(ServerOpts {
        ttft: Duration::from_millis(1),
        ..Default::default()
    })
    .await;
    let t = target(&server.base_url(), Api::Completions, Map::new());
    let offsets = send_offsets(8, 20.0, 1.0, 3).unwrap();
    let (out, _) = bench(t, requests(&["x"; 8], 2), Some(offsets.clone()), None).await;
    // Never early against the schedule's own start (a late first request must not make the
    // next ones look early).
    let t0 = out.started_at;
    for (o, off) in out.outputs.iter().zip(&offsets) {
        assert!(
            o.start_time - t0 >= off - 1e-3,
            "sent at {} for {off}",
            o.start_time - t0
        );
    }
    assert!(out.duration >= offsets[7]);
}
