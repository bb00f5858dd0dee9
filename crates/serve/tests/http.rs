//! The server in-process on 127.0.0.1 with an OS-chosen port, driven by a small HTTP/1.1 client:
//! responses, SSE chunks, errors, metrics, client disconnects, shutdown.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig};
use llm_emu_perf::latency::parse_latency_spec_with;
use llm_emu_perf::sizing::ModelShape;
use llm_emu_serve::text::IdText;
use llm_emu_serve::{ServeOptions, Server};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const MODEL: &str = "test/model";

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// A server whose steps take `step_us` µs plus 1 µs per token.
    async fn start(step_us: u64, api_keys: Vec<String>) -> TestServer {
        Self::start_with(
            step_us,
            api_keys,
            Arc::new(IdText),
            Box::new(HashSampler::default()),
        )
        .await
    }

    async fn start_with(
        step_us: u64,
        api_keys: Vec<String>,
        codec: llm_emu_serve::text::SharedCodec,
        sampler: Box<dyn llm_emu_core::sampler::TokenSampler>,
    ) -> TestServer {
        let mut cfg = EngineConfig::with_defaults(2000, 4096);
        cfg.max_num_seqs = 256;
        let latency = parse_latency_spec_with(
            &format!("linear:base_us={step_us},per_token_us=1"),
            &ModelShape::llama_3_1_8b(),
        )
        .unwrap();
        let engine = Engine::new(cfg, latency, sampler).unwrap();
        let opts = ServeOptions {
            served_model_names: vec![MODEL.into()],
            model_root: MODEL.into(),
            api_keys,
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(5),
            ..ServeOptions::default()
        };
        let server = Server::bind(engine, codec, opts).await.unwrap();
        let addr = server.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (tx, rx) = oneshot::channel();
        let join = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            stop: Some(tx),
            join,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.join)
            .await
            .expect("server stops")
            .unwrap();
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> hyper::Response<Incoming> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        sender
            .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap()
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.call_with(method, path, body.as_bytes().to_vec(), &[])
            .await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let resp = self.send(method, path, body, headers).await;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn json(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, b) = self.call("POST", path, &body.to_string()).await;
        (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }

    async fn debug(&self) -> Value {
        let (_, b) = self.call("GET", "/debug/engine", "").await;
        serde_json::from_str(&b).unwrap()
    }

    async fn metric(&self, line_prefix: &str) -> f64 {
        let (_, text) = self.call("GET", "/metrics", "").await;
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .unwrap_or_else(|| panic!("no metric line {line_prefix}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
fn sse_events(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "stream ends with [DONE]: {body}"
    );
    body.split_terminator("\n\n")
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without data: prefix: {e:?}"))
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_returns_max_tokens_with_usage() {
    let s = TestServer::start(200, vec![]).await;
    let (status, v) = s
        .json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": [1, 2, 3, 4], "max_tokens": 5}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .matches('<')
            .count(),
        5
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "total_tokens": 9, "completion_tokens": 5, "prompt_tokens_details": null})
    );
    // Text prompts are tokenized; the default max_tokens is 16.
    let (_, v) = s
        .json("/v1/completions", json!({"prompt": "one two three"}))
        .await;
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_completion_has_one_chunk_per_token_then_usage_then_done() {
    let s = TestServer::start(200, vec![]).await;
    let (status, body) = s
        .call(
            "POST",
            "/v1/completions",
            &json!({"prompt": [5, 6, 7], "max_tokens": 4, "stream": true,
                    "stream_options": {"include_usage": true, "continuous_usage_stats": true}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let ev = sse_events(&body);
    assert_eq!(ev.len(), 4 + 1 + 1, "{body}");
    for (i, e) in ev[..4].iter().enumerate() {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["choices"][0]["index"], 0);
        let fr = &v["choices"][0]["finish_reason"];
        assert_eq!(*fr, if i == 3 { json!("length") } else { Value::Null });
        assert_eq!(v["usage"]["completion_tokens"], i as u64 + 1);
    }
    let usage: Value = serde_json::from_str(&ev[4]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 7, "completion_tokens": 4})
    );
    assert_eq!(ev[5], "[DONE]");
    // The serving path is measured once per request: admission and first-token delivery.
    let d = s.debug().await;
    assert_eq!(d["step_lateness"]["admit"]["count"], 1, "{d}");
    assert_eq!(d["first_token_delivery"]["taken"]["count"], 1, "{d}");
    assert_eq!(d["first_token_delivery"]["detokenized"]["count"], 1, "{d}");
    assert!(d["engine_thread_priority"]
        .as_str()
        .is_some_and(|p| !p.is_empty()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_sends_roles_then_deltas_for_each_choice() {
    let s = TestServer::start(200, vec![]).await;
    let (status, body) = s
        .call(
            "POST",
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hello there"}],
                    "max_completion_tokens": 3, "n": 2, "stream": true,
                    "stream_options": {"include_usage": true}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let ev = sse_events(&body);
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["index"], 1);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    for i in 0..2 {
        let content: Vec<&Value> = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["index"] == i && c["choices"][0]["delta"]["content"].is_string()
            })
            .filter(|c| c["choices"][0]["delta"]["content"] != "")
            .collect();
        assert_eq!(content.len(), 3);
        assert_eq!(content[2]["choices"][0]["finish_reason"], "length");
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 6);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_without_limit_may_fill_the_context_and_n_gives_choices() {
    let s = TestServer::start(100, vec![]).await;
    let (status, v) = s
        .json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a b"}], "max_tokens": 2, "n": 3}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    assert_eq!(v["choices"][2]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 6);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_choice_and_free_the_engine() {
    let s = TestServer::start(200, vec![]).await;
    // Every token reads " <id>", so ">" matches in the first token.
    let (status, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [1, 2], "max_tokens": 50, "stop": [">"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["stop_reason"], ">");
    assert!(!c["text"].as_str().unwrap().contains('>'));
    assert_eq!(v["usage"]["completion_tokens"], 1);
    let (_, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [1, 2], "max_tokens": 50, "stop": ">", "include_stop_str_in_output": true}),
        )
        .await;
    assert!(v["choices"][0]["text"].as_str().unwrap().ends_with('>'));
    // The engine was told: nothing stays running.
    for _ in 0..100 {
        if s.debug().await["num_requests_running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.debug().await["num_requests_running"], 0);
    // Counted as vLLM counts them: finished with reason `stop`.
    let stopped = s
        .metric("vllm:request_success_total{engine=\"0\",finished_reason=\"stop\"")
        .await;
    assert_eq!(stopped, 2.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_vllm_status_codes_and_bodies() {
    let s = TestServer::start(100, vec![]).await;
    let (st, v) = s
        .json("/v1/completions", json!({"model": "nope", "prompt": [1]}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        v,
        json!({"error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}})
    );
    let (st, v) = s
        .json("/v1/completions", json!({"prompt": [1], "max_tokens": 0}))
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"]["message"],
        "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
    );
    assert_eq!(v["error"]["param"], "max_tokens");
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [1], "max_tokens": 5000}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["message"], "max_tokens=5000cannot be greater than max_model_len=max_total_tokens=4096. Please request fewer output tokens. (parameter=max_tokens, value=5000)");
    let long: Vec<u32> = (0..4090).collect();
    let (st, v) = s
        .json("/v1/completions", json!({"prompt": long, "max_tokens": 16}))
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["message"], "This model's maximum context length is 4096 tokens. However, you requested 16 output tokens and your prompt contains 4090 input tokens, for a total of 4106 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=4090)");
    assert_eq!(v["error"]["type"], "BadRequestError");
    // A text prompt is tokenized only up to max_input + 1 tokens, so vLLM says "at least".
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": "x ".repeat(10_000), "max_tokens": 16}),
        )
        .await;
    assert_eq!(st, 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "your prompt contains at least 4081 input tokens, for a total of at least 4097 tokens"
        ),
        "{msg}"
    );
    // Unknown routes and methods: Starlette's bodies.
    let (st, b) = s.call("GET", "/v1/nothing", "").await;
    assert_eq!((st, b.as_str()), (404, r#"{"detail":"Not Found"}"#));
    let (st, b) = s.call("GET", "/v1/completions", "").await;
    assert_eq!(
        (st, b.as_str()),
        (405, r#"{"detail":"Method Not Allowed"}"#)
    );
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [1], "max_tokens": 2, "min_tokens": 5}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"]["message"],
        "min_tokens must be less than or equal to max_tokens=2, got 5."
    );
    let (st, v) = s
        .json("/v1/completions", json!({"prompt": [1], "n": 0}))
        .await;
    assert_eq!(
        (st, v["error"]["message"].clone()),
        (400, json!("n must be at least 1, got 0."))
    );
    let (st, v) = s
        .json("/v1/chat/completions", json!({"messages": []}))
        .await;
    assert_eq!(
        (st, v["error"]["message"].clone()),
        (400, json!("list index out of range"))
    );
    let (st, v) = s.json("/v1/completions", json!({"prompt": []})).await;
    assert_eq!(
        (st, v["error"]["message"].clone()),
        (400, json!("You must pass at least one prompt"))
    );
    // Malformed JSON and wrong types: FastAPI's validation error.
    let (st, b) = s.call("POST", "/v1/completions", "{bad").await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (st, v["error"]["type"].clone()),
        (400, json!("Bad Request"))
    );
    let (st, v) = s
        .json("/v1/completions", json!({"prompt": [1], "max_tokens": "x"}))
        .await;
    assert_eq!((st, v["error"]["code"].clone()), (400, json!(400)));
    // Not UTF-8.
    let (st, b) = s
        .call_with("POST", "/v1/completions", vec![b'{', 0xff, 0xfe, b'}'], &[])
        .await;
    assert_eq!(
        (st, b.as_str()),
        (400, r#"{"detail":"There was an error parsing the body"}"#)
    );
    // Too large.
    let huge = vec![b' '; 2 << 20];
    let (st, _) = s.call_with("POST", "/v1/completions", huge, &[]).await;
    assert_eq!(st, 413);
    // Unknown fields are ignored, and the server still serves.
    let (st, _) = s
        .json(
            "/v1/completions",
            json!({"prompt": [1], "max_tokens": 1, "frobnicate": true}),
        )
        .await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_v1_routes_only() {
    let s = TestServer::start(100, vec!["sekrit".into()]).await;
    let (st, b) = s.call("GET", "/v1/models", "").await;
    assert_eq!((st, b.as_str()), (401, r#"{"error":"Unauthorized"}"#));
    let (st, _) = s
        .call_with(
            "GET",
            "/v1/models",
            vec![],
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(st, 401);
    let (st, b) = s
        .call_with(
            "GET",
            "/v1/models",
            vec![],
            &[("authorization", "Bearer sekrit")],
        )
        .await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["max_model_len"], 4096);
    let (st, _) = s.call("GET", "/health", "").await;
    assert_eq!(st, 200);
    let (st, b) = s.call("GET", "/version", "").await;
    assert_eq!((st, b.as_str()), (200, r#"{"version":"0.19.0"}"#));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_aborts_and_frees_kv_blocks() {
    // 5 ms steps: the request is still running when the client goes away.
    let s = TestServer::start(5000, vec![]).await;
    let before = s.metric("vllm:kv_cache_usage_perc").await;
    let prompt: Vec<u32> = (0..500).collect();
    let resp = s
        .send(
            "POST",
            "/v1/completions",
            json!({"prompt": prompt, "max_tokens": 3000, "stream": true})
                .to_string()
                .into_bytes(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Read until a first token chunk arrives.
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"data: "));
    let during = s.metric("vllm:kv_cache_usage_perc").await;
    assert!(
        during > before,
        "KV in use while running: {during} vs {before}"
    );
    assert_eq!(s.debug().await["num_requests_running"], 1);
    drop(body);
    let mut after = during;
    for _ in 0..200 {
        after = s.metric("vllm:kv_cache_usage_perc").await;
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(after, before, "KV usage returns to its previous value");
    assert_eq!(s.debug().await["num_requests_running"], 0);
    let aborted = s
        .metric("vllm:request_success_total{engine=\"0\",finished_reason=\"abort\"")
        .await;
    assert_eq!(aborted, 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_tokens_and_requests() {
    let s = TestServer::start(100, vec![]).await;
    for _ in 0..3 {
        let (st, _) = s
            .json(
                "/v1/completions",
                json!({"prompt": [1, 2, 3], "max_tokens": 7}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let (_, text) = s.call("GET", "/metrics", "").await;
    let labels = format!("{{engine=\"0\",model_name=\"{MODEL}\"}}");
    let get = |name: &str| -> f64 {
        let prefix = format!("{name}{labels} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    assert_eq!(get("vllm:prompt_tokens_total"), 9.0);
    assert_eq!(get("vllm:generation_tokens_total"), 21.0);
    assert_eq!(get("vllm:time_to_first_token_seconds_count"), 3.0);
    assert_eq!(get("vllm:inter_token_latency_seconds_count"), 18.0);
    assert_eq!(get("vllm:e2e_request_latency_seconds_count"), 3.0);
    assert_eq!(get("vllm:num_requests_running"), 0.0);
    assert!(text.contains(&format!(
        "vllm:request_success_total{{engine=\"0\",finished_reason=\"length\",model_name=\"{MODEL}\"}} 3.0"
    )));
    assert!(text.contains("# TYPE vllm:time_to_first_token_seconds histogram"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let s = TestServer::start(1000, vec![]).await;
    let addr = s.addr;
    let req = tokio::spawn(async move {
        let t = TestServer {
            addr,
            stop: None,
            join: tokio::spawn(async {}),
        };
        t.json("/v1/completions", json!({"prompt": [1], "max_tokens": 50}))
            .await
    });
    // Stop once the request is being served.
    for _ in 0..500 {
        if s.debug().await["server_load"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.stop().await;
    let (st, v) = req.await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["usage"]["completion_tokens"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_and_detokenize() {
    let s = TestServer::start(100, vec![]).await;
    let (st, v) = s.json("/tokenize", json!({"prompt": "<5> <6> <7>"})).await;
    assert_eq!(st, 200);
    assert_eq!(v["count"], 3);
    assert_eq!(v["tokens"], json!([5, 6, 7]));
    assert_eq!(v["max_model_len"], 4096);
    let (_, v) = s.json("/detokenize", json!({"tokens": [5, 6]})).await;
    assert_eq!(v["prompt"], " <5> <6>");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_come_in_vllms_shapes() {
    let s = TestServer::start(200, vec![]).await;
    // Completions, whole response: one entry per output token, `logprobs` top entries each.
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [5, 6, 7], "max_tokens": 4, "logprobs": 2}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let keys: Vec<&String> = lp.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["text_offset", "token_logprobs", "tokens", "top_logprobs"]
    );
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 4);
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    for k in 1..4 {
        let prev = tokens[k - 1].as_str().unwrap().chars().count() as u64;
        assert_eq!(offsets[k], offsets[k - 1] + prev, "{lp}");
    }
    for (k, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 2, "{lp}");
        // The sampled token leads, with its own log-probability, and ranks fall.
        let (first, first_lp) = top.iter().next().unwrap();
        assert_eq!(first, tokens[k].as_str().unwrap());
        assert_eq!(*first_lp, lp["token_logprobs"][k]);
        let vals: Vec<f64> = top.values().map(|x| x.as_f64().unwrap()).collect();
        assert!(vals[0] > vals[1] && vals[0] < 0.0, "{lp}");
    }
    // Without `logprobs`, null.
    let (_, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [5, 6], "max_tokens": 2}),
        )
        .await;
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);

    // Streamed: each chunk carries its own token, offsets continue across chunks.
    let (st, body) = s
        .call(
            "POST",
            "/v1/completions",
            &json!({"prompt": [5, 6, 7], "max_tokens": 3, "logprobs": 0, "stream": true})
                .to_string(),
        )
        .await;
    assert_eq!(st, 200);
    let mut sent = 0u64;
    for e in sse_events(&body).iter().filter(|e| *e != "[DONE]") {
        let c: Value = serde_json::from_str(e).unwrap();
        let lp = &c["choices"][0]["logprobs"];
        assert_eq!(lp["tokens"].as_array().unwrap().len(), 1, "{c}");
        assert_eq!(lp["text_offset"][0], sent, "{c}");
        assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 1);
        sent += c["choices"][0]["text"].as_str().unwrap().chars().count() as u64;
    }

    // Chat: `top_logprobs` entries per token, the sampled token first, with UTF-8 bytes.
    let (st, v) = s
        .json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                   "logprobs": true, "top_logprobs": 3}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    for c in content {
        let token = c["token"].as_str().unwrap();
        let bytes: Vec<u8> = c["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, token.as_bytes());
        let top = c["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], c["token"]);
        assert_eq!(top[0]["logprob"], c["logprob"]);
    }

    // More than vLLM's max_logprobs (20): 400.
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": [5], "max_tokens": 2, "logprobs": 21}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"]["message"],
        "Requested sample logprobs of 21, which is greater than max allowed: 20 \
         (parameter=logprobs, value=21)"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_choices_of_one_request_run_in_the_same_steps() {
    // The engine takes a request's `n` choices in together, so each step gives every choice a
    // token: the stream alternates between them as vLLM's does.
    let s = TestServer::start(200, vec![]).await;
    for _ in 0..5 {
        let (st, body) = s
            .call(
                "POST",
                "/v1/completions",
                &json!({"prompt": [5, 6, 7], "max_tokens": 3, "n": 2, "stream": true}).to_string(),
            )
            .await;
        assert_eq!(st, 200);
        let order: Vec<(u64, bool)> = sse_events(&body)
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                let c = &v["choices"][0];
                (c["index"].as_u64().unwrap(), c["finish_reason"].is_null())
            })
            .collect();
        assert_eq!(
            order,
            [
                (0, true),
                (1, true),
                (0, true),
                (1, true),
                (0, false),
                (1, false)
            ],
            "{body}"
        );
    }
    s.stop().await;
}

/// The real embedded Llama 3.1 tokenizer, and replies that end with EOS after 6 tokens.
async fn real_text_server() -> TestServer {
    use llm_emu_text::{OutputLengthDistribution, TextModel, TokenizerSource, VocabSampler};
    let model = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let sampler = VocabSampler::new(&model, OutputLengthDistribution::Fixed(6), 7).unwrap();
    TestServer::start_with(
        100,
        vec![],
        Arc::new(llm_emu_serve::text::ModelText(model)),
        Box::new(sampler),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_tokenizer_counts_prompts_and_ends_replies_with_eos() {
    let s = real_text_server().await;
    // "Hello world" is BOS + 2 tokens in Llama 3.1.
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": "Hello world", "max_tokens": 100}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    // Six tokens, the last EOS: finish "stop" with a null stop_reason, EOS not in the text.
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["stop_reason"], Value::Null);
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty() && !text.contains("<|"), "{text:?}");
    // ignore_eos runs to max_tokens.
    let (_, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": "Hello world", "max_tokens": 9, "ignore_eos": true}),
        )
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 9);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // A chat reply streams one content delta per (readable) token.
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                      "ignore_eos": true, "seed": 1, "request_id": "same"});
    let (_, full) = s.json("/v1/chat/completions", body.clone()).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, sse) = s
        .call("POST", "/v1/chat/completions", &streamed.to_string())
        .await;
    let deltas: Vec<String> = sse_events(&sse)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(deltas.len(), 4, "{sse}");
    assert_eq!(full["usage"]["completion_tokens"], 4);
    // Llama 3.1's template adds its system turn ("Cutting Knowledge Date: December 2023",
    // "Today Date: 26 Jul 2024", 25 tokens) before the user turn (BOS + 10 more).
    assert_eq!(full["usage"]["prompt_tokens"], 36, "{full}");
    assert!(!full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    s.stop().await;
}

/// Fields vLLM 0.19 checks before generating: the same status, error type and message
/// (`SamplingParams._verify_args` and `from_optional`, the request models' validators, the
/// completion renderer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fields_are_checked_as_vllm_checks_them() {
    let s = TestServer::start(100, vec![]).await;
    let cmpl = |extra: Value| {
        let mut b = json!({"prompt": [1, 2, 3], "max_tokens": 2});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let bad = "BadRequestError";
    let validation = "Bad Request";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("/v1/completions", cmpl(json!({"presence_penalty": 2.5})), bad,
         "presence_penalty must be in [-2, 2], got 2.5."),
        ("/v1/completions", cmpl(json!({"frequency_penalty": -3})), bad,
         "frequency_penalty must be in [-2, 2], got -3.0."),
        ("/v1/completions", cmpl(json!({"repetition_penalty": 0})), bad,
         "repetition_penalty must be greater than zero, got 0.0."),
        ("/v1/completions", cmpl(json!({"min_p": 2})), bad, "min_p must be in [0, 1], got 2.0."),
        ("/v1/completions", cmpl(json!({"stop": ["a", ""]})), bad,
         "stop cannot contain an empty string."),
        ("/v1/completions", cmpl(json!({"logit_bias": {"5": 1, "x": 1}})), bad,
         "invalid literal for int() with base 10: 'x'"),
        ("/v1/completions", cmpl(json!({"logit_bias": {"a'\\b": 1}})), bad,
         "invalid literal for int() with base 10: \"a'\\\\b\""),
        ("/v1/completions", cmpl(json!({"suffix": "x"})), bad, "suffix is not currently supported"),
        ("/v1/completions", cmpl(json!({"truncate_prompt_tokens": 0})), bad,
         "The decoder prompt cannot be empty"),
        ("/v1/completions", cmpl(json!({"truncate_prompt_tokens": 4095})), bad,
         "truncate_prompt_tokens=4095 cannot be greater than max_model_len - max_tokens = 4094. \
          Please request a smaller truncation size. (parameter=truncate_prompt_tokens, value=4095)"),
        ("/v1/completions", cmpl(json!({"prompt_logprobs": 21})), bad,
         "Requested prompt logprobs of 21, which is greater than max allowed: 20 \
          (parameter=prompt_logprobs, value=21)"),
        ("/v1/completions", cmpl(json!({"prompt_logprobs": -2})), validation,
         "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, \
          `prompt_logprobs` must be a positive value or -1. (parameter=prompt_logprobs, value=-2)'}"),
        ("/v1/completions", cmpl(json!({"cache_salt": ""})), validation,
         "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': \"Value error, \
          Parameter 'cache_salt' must be a non-empty string if provided.\"}"),
        ("/v1/chat/completions", chat(json!({"top_logprobs": 5})), validation,
         "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, \
          when using `top_logprobs`, `logprobs` must be set to true. (parameter=top_logprobs)'}"),
        ("/v1/chat/completions", chat(json!({"top_logprobs": 21, "logprobs": true})), bad,
         "Requested sample logprobs of 21, which is greater than max allowed: 20 \
          (parameter=logprobs, value=21)"),
        ("/v1/chat/completions", chat(json!({"tool_choice": "required"})), validation,
         "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, \
          When using `tool_choice`, `tools` must be set.'}"),
        ("/v1/chat/completions",
         chat(json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                     "tool_choice": {"type": "function", "function": {"name": "g"}}})),
         validation,
         "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, \
          The tool specified in `tool_choice` does not match any of the specified `tools`'}"),
        // vLLM 0.19 (`serve/render/serving.py`) asks for a tool-call parser before forcing a
        // tool; this server is started without one.
        ("/v1/chat/completions",
         chat(json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                     "tool_choice": "required"})),
         bad,
         "tool_choice=\"required\" requires --tool-call-parser to be set"),
        ("/v1/chat/completions",
         chat(json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                     "tool_choice": {"type": "function", "function": {"name": "f"}}})),
         bad,
         "tool_choice=\"function=ChatCompletionNamedFunction(name='f') type='function'\" \
          requires --tool-call-parser to be set"),
    ];
    for (path, body, kind, message) in cases {
        let (st, v) = s.json(path, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], kind, "{body}: {v}");
        assert_eq!(v["error"]["message"], message, "{body}");
    }
    // Wrong types are refused while parsing; a `null` content only on an assistant message.
    for (path, body) in [
        ("/v1/completions", cmpl(json!({"user": 5}))),
        (
            "/v1/completions",
            cmpl(json!({"response_format": {"type": "nope"}})),
        ),
        (
            "/v1/completions",
            cmpl(json!({"truncate_prompt_tokens": -5})),
        ),
        ("/v1/chat/completions", chat(json!({"documents": "x"}))),
        (
            "/v1/chat/completions",
            chat(json!({"parallel_tool_calls": "x"})),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": null}]}),
        ),
    ] {
        let (st, v) = s.json(path, body.clone()).await;
        assert_eq!(
            (st, v["error"]["type"].as_str()),
            (400, Some(validation)),
            "{body}: {v}"
        );
    }
    // What vLLM accepts is accepted; `truncate_prompt_tokens` keeps the first N prompt tokens
    // (−1: all that fit), `logit_bias` is clamped, not refused.
    for (path, body, prompt_tokens) in [
        (
            "/v1/completions",
            cmpl(json!({"truncate_prompt_tokens": 2})),
            Some(2),
        ),
        (
            "/v1/completions",
            cmpl(json!({"truncate_prompt_tokens": -1})),
            Some(3),
        ),
        (
            "/v1/completions",
            json!({"prompt": (0..5000).collect::<Vec<u32>>(), "max_tokens": 2, "truncate_prompt_tokens": -1}),
            Some(4094),
        ),
        (
            "/v1/completions",
            cmpl(json!({"logit_bias": {" +5 ": 200, "1_0": -1}, "min_p": 0.5,
                                        "presence_penalty": -2, "user": "u", "prompt_logprobs": 3,
                                        "response_format": {"type": "json_object"}})),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": null}],
                                        "max_tokens": 1}),
            None,
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                     "tool_choice": "none",
                     "parallel_tool_calls": false, "documents": [{"title": "t", "text": "x"}],
                     "top_logprobs": 0}),
            ),
            None,
        ),
    ] {
        let (st, v) = s.json(path, body.clone()).await;
        assert_eq!(st, 200, "{body}: {v}");
        if let Some(n) = prompt_tokens {
            assert_eq!(v["usage"]["prompt_tokens"], n, "{body}: {v}");
        }
    }
    s.stop().await;
}
