//! Requests that used to kill, freeze or starve the server: request chat templates (refused
//! unless trusted; bounded when trusted), huge prompts (tokenized off the async workers, only as
//! far as the context needs), and `/health` once the engine thread is gone.

mod common;

use common::{while_polling_health, Setup, TestServer, MAX_MODEL_LEN, MODEL};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig};
use llm_emu_perf::latency::parse_latency_spec_with;
use llm_emu_perf::sizing::ModelShape;
use llm_emu_serve::engine_loop::EngineThread;
use llm_emu_serve::metrics::EngineMetrics;
use llm_emu_serve::state::AppState;
use llm_emu_serve::text::IdText;
use llm_emu_serve::thread_priority::PriorityRequest;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How fast `/health` must answer while a hostile request is served. Generous for a busy
/// 2-core machine: before these protections it took 56 s (two 20 MB prompts) or never
/// answered (a looping template).
const HEALTH_BOUND: Duration = Duration::from_secs(2);

/// Held by each test that measures `/health` under load for its whole run: on a 2-core
/// machine the text workers of another test's server would otherwise compete for the cores
/// and make the latencies that one's.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const UNTRUSTED: &str = "Chat template is passed with request, but \
     --trust-request-chat-template is not set. Refused request with untrusted chat template.";

fn chat(template: &str) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "chat_template": template,
        "max_tokens": 5,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_chat_templates_are_refused_unless_trusted() {
    let s = TestServer::start(Setup::default());
    let tpl = "{% for m in messages %}{{ m.content }}{% endfor %}";
    let with_kwargs = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "chat_template_kwargs": {"chat_template": tpl},
    });
    let tokenize = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "chat_template": tpl,
    });
    for (path, body) in [
        ("/v1/chat/completions", chat(tpl)),
        ("/v1/chat/completions", with_kwargs),
        ("/tokenize", tokenize),
    ] {
        let (st, v) = s.json(path, body).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(v["error"]["message"], UNTRUSTED, "{path}");
        assert_eq!(v["error"]["type"], "BadRequestError");
    }
    // Without a template the same requests are served; a null kwarg is no template.
    let (st, v) = s
        .json(
            "/v1/chat/completions",
            json!({
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3,
                "chat_template_kwargs": {"chat_template": null},
            }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_template_bombs_get_a_400_and_the_server_stays_up() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup {
        real_tokenizer: true,
        trust_request_chat_template: true,
        ..Setup::default()
    });
    // What took the server from 84 MB to an abort in 2 s, and what froze it.
    let output_bomb = "{% for i in range(100000) %}{% for j in range(100000) %}\
                       {{ 'x' * 10000000 }}{% endfor %}{% endfor %}";
    let cpu_loop = "{% for i in range(100000) %}{% for j in range(100000) %}\
                    {% endfor %}{% endfor %}";
    // The same output, captured instead of printed.
    let captured_bomb = "{% set s %}{% for i in range(100000) %}{{ 'x' * 10000000 }}\
                         {% endfor %}{% endset %}{{ s|length }}";
    let recursion = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let cases = [
        (output_bomb, "output exceeds 33554432 bytes"),
        (cpu_loop, "ran more than 10000000 instructions"),
        (captured_bomb, "output exceeds 33554432 bytes"),
        (recursion, "nests deeper than 100 levels"),
    ];
    for (tpl, expected) in cases {
        for path in ["/v1/chat/completions", "/tokenize"] {
            let ((st, v), worst, polls) =
                while_polling_health(s.addr, HEALTH_BOUND, s.json(path, chat(tpl))).await;
            assert_eq!(st, 400, "{path} {tpl}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("chat template rendering stopped") && msg.contains(expected),
                "{path} {tpl}: {msg}"
            );
            eprintln!("{path} {expected}: /health worst {worst:?} over {polls} polls");
        }
    }
    // A trusted template that stays within the bounds renders as before.
    let (st, v) = s
        .json(
            "/tokenize",
            json!({
                "messages": [{"role": "user", "content": "hi"}],
                "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
            }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["count"].as_u64().unwrap() > 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_20_mb_prompts_do_not_stall_health() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup {
        real_tokenizer: true,
        ..Setup::default()
    });
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(20_000_000 / 44);
    let completion = serde_json::to_vec(&json!({"model": MODEL, "prompt": prompt})).unwrap();
    let chat = serde_json::to_vec(&json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 96,
    }))
    .unwrap();
    assert!(completion.len() > 20_000_000 && chat.len() > 20_000_000);
    let both = async {
        tokio::join!(
            s.call("POST", "/v1/completions", completion),
            s.call("POST", "/v1/chat/completions", chat),
        )
    };
    let (((st1, b1), (st2, b2)), worst, polls) =
        while_polling_health(s.addr, HEALTH_BOUND, both).await;
    eprintln!("/health worst {worst:?} over {polls} polls during two 20 MB prompts");
    // vLLM tokenizes with truncation at max_input + 1 and reports "at least" that many
    // (completions' max_tokens defaults to 16).
    let max_input = MAX_MODEL_LEN;
    assert_eq!(st1, 400, "{b1}");
    assert!(
        b1.contains(&format!(
            "you requested 16 output tokens and your prompt contains at least {} input tokens",
            max_input - 16 + 1
        )),
        "{b1}"
    );
    assert_eq!(st2, 400, "{b2}");
    assert!(
        b2.contains(&format!(
            "you requested 96 output tokens and your prompt contains at least {} input tokens",
            max_input - 96 + 1
        )),
        "{b2}"
    );
    // A prompt that fits is still counted exactly, as /tokenize (which has no limit) counts it.
    let fits = "the quick brown fox ".repeat(500);
    let (st, v) = s
        .json("/v1/completions", json!({"prompt": fits, "max_tokens": 2}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, counted) = s.json("/tokenize", json!({"prompt": fits})).await;
    assert!(counted["count"].as_u64().unwrap() > 2000, "{counted}");
    assert_eq!(v["usage"]["prompt_tokens"], counted["count"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_once_the_engine_thread_is_gone() {
    let latency = parse_latency_spec_with(
        "linear:base_us=1000,per_token_us=1",
        &ModelShape::llama_3_1_8b(),
    )
    .unwrap();
    let engine = Engine::new(
        EngineConfig::with_defaults(2000, MAX_MODEL_LEN),
        latency,
        Box::new(HashSampler::default()),
    )
    .unwrap();
    let metrics = Arc::new(EngineMetrics::new(MODEL, MAX_MODEL_LEN));
    let thread = EngineThread::spawn(engine, metrics, PriorityRequest::Normal).unwrap();
    let state = Arc::new(AppState::new(
        thread.handle.clone(),
        Arc::new(IdText),
        vec![MODEL.into()],
        MODEL.into(),
        MAX_MODEL_LEN,
        vec![],
    ));
    let app = llm_emu_serve::routes::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(common::call(addr, "GET", "/health", vec![]).await.0, 200);
    // The engine thread ends (as if it had died); the HTTP side keeps running.
    tokio::task::spawn_blocking(move || thread.shutdown())
        .await
        .unwrap();
    let (status, body) = common::call(addr, "GET", "/health", vec![]).await;
    assert_eq!(status, 503);
    assert_eq!(body, "", "vLLM's /health answers 503 with an empty body");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_times_n_past_the_limit_is_refused_before_any_work() {
    let s = TestServer::start(Setup::default());
    let prompts: Vec<String> = (0..3).map(|i| format!("prompt {i}")).collect();
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": prompts, "n": 2048, "max_tokens": 1}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["error"]["message"],
        "The request asks for 6144 completions (3 prompts with n=2048); this server accepts \
         at most 4096 per request. (parameter=n, value=2048)"
    );
    assert_eq!(v["error"]["param"], "n");
    // An n outside vLLM's range keeps vLLM's own message.
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": prompts, "n": 2049, "max_tokens": 1}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("n must be at most 2048, got 2049."));
    s.stop().await;
}

/// `max_tokens` at the bottom of the 64-bit range: the room left for the prompt was computed
/// as `max_model_len − max_tokens`, which overflowed (a panic in the connection task, so the
/// client got no answer). Now the usual 400 of a `max_tokens` below 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_at_the_bottom_of_the_64_bit_range_is_a_400() {
    let s = TestServer::start(Setup::default());
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": i64::MIN}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}],
                   "max_completion_tokens": i64::MIN}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    s.stop().await;
}

/// Stop strings and stop token ids are copied into every choice and checked at every token,
/// so megabytes of them with a large `n` exhausted memory (a 10 MB body with `n` = 2048
/// aborted the server) or froze the HTTP workers; past llm-emu's bounds they are a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stop_lists_are_refused_before_any_work() {
    use llm_emu_serve::generate::{MAX_STOP_BYTES, MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS};
    let s = TestServer::start(Setup::default());
    let many: Vec<String> = (0..=MAX_STOP_STRINGS).map(|i| format!("s{i}")).collect();
    let long = "x".repeat(MAX_STOP_BYTES + 1);
    let ids: Vec<u32> = (0..=MAX_STOP_TOKEN_IDS as u32).collect();
    for (body, param) in [
        (
            json!({"prompt": "a", "stop": many, "n": 2048, "max_tokens": 1}),
            "stop",
        ),
        (
            json!({"prompt": "a", "stop": long, "max_tokens": 1}),
            "stop",
        ),
        (
            json!({"prompt": "a", "stop_token_ids": ids, "n": 2048, "max_tokens": 1}),
            "stop_token_ids",
        ),
    ] {
        let (st, v) = s.json("/v1/completions", body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // Within the bounds: served.
    let fits: Vec<String> = (0..MAX_STOP_STRINGS).map(|i| format!("s{i}")).collect();
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"prompt": "a", "stop": fits, "stop_token_ids": [7, 8], "max_tokens": 2}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

/// `echo` with `logprobs` of a long token-id prompt and `n` > 1: the prompt's
/// log-probabilities were built on the HTTP workers once per choice (two 0.7 MB bodies kept
/// `/health` waiting over 20 s). Now they are built once per prompt, on the text workers, and
/// every choice shares them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_prompt_logprobs_are_built_once_and_shared_by_the_choices() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup::default());
    let prompt: Vec<u32> = (0..4000).map(|i| i % 1000 + 5).collect();
    let body = json!({"prompt": prompt, "echo": true, "logprobs": 20, "n": 32, "max_tokens": 2});
    let both = async {
        tokio::join!(
            s.json("/v1/completions", body.clone()),
            s.json("/v1/completions", body.clone()),
        )
    };
    let (((st, v), (st2, _)), worst, polls) =
        while_polling_health(s.addr, HEALTH_BOUND, both).await;
    eprintln!("/health worst {worst:?} over {polls} polls during two echo + logprobs requests");
    assert_eq!((st, st2), (200, 200), "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 32);
    let first = &choices[0]["logprobs"];
    let head = |lp: &Value, key: &str| lp[key].as_array().unwrap()[..4000].to_vec();
    assert_eq!(first["tokens"].as_array().unwrap().len(), 4002);
    assert_eq!(first["token_logprobs"][0], Value::Null);
    assert_eq!(first["top_logprobs"][1].as_object().unwrap().len(), 20);
    for c in choices {
        let lp = &c["logprobs"];
        for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
            assert_eq!(
                head(lp, key),
                head(first, key),
                "{key} of choice {}",
                c["index"]
            );
        }
        // The output's offsets continue after the echoed prompt's.
        let offsets = lp["text_offset"].as_array().unwrap();
        let last_prompt_token = lp["tokens"][3999].as_str().unwrap().chars().count() as u64;
        assert_eq!(
            offsets[4000].as_u64().unwrap(),
            offsets[3999].as_u64().unwrap() + last_prompt_token
        );
    }
    s.stop().await;
}

/// A non-streamed answer of `n` 2048 with `logprobs` 20 (over 100 MB for a request of a
/// hundred bytes) was built and serialized on the HTTP workers: `/health` waited seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_non_streamed_answer_is_built_off_the_workers() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup {
        real_tokenizer: true,
        ..Setup::default()
    });
    let body = json!({"prompt": "a", "n": 2048, "logprobs": 20, "max_tokens": 24,
                      "ignore_eos": true})
    .to_string()
    .into_bytes();
    let both = async {
        tokio::join!(
            s.call("POST", "/v1/completions", body.clone()),
            s.call("POST", "/v1/completions", body.clone()),
        )
    };
    let (((st, b), (st2, _)), worst, polls) =
        while_polling_health(s.addr, HEALTH_BOUND, both).await;
    eprintln!(
        "/health worst {worst:?} over {polls} polls during two {} MB answers",
        b.len() >> 20
    );
    assert_eq!((st, st2), (200, 200));
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2048);
    assert_eq!(v["usage"]["completion_tokens"], 2048 * 24);
    s.stop().await;
}

/// `num_requests_running` of `/debug/engine`.
async fn running(addr: std::net::SocketAddr) -> u64 {
    let (_, b) = common::call(addr, "GET", "/debug/engine", vec![]).await;
    serde_json::from_str::<Value>(&b).unwrap()["num_requests_running"]
        .as_u64()
        .unwrap()
}

/// A client that leaves before its non-streamed answer is complete: its engine requests are
/// aborted (as the streamed path does), not run to `max_tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_non_streamed_request_aborts_it() {
    use std::io::Write;
    let s = TestServer::start(Setup {
        step_us: 5000,
        ..Setup::default()
    });
    let body = json!({"prompt": "a b c", "n": 4, "max_tokens": 3000}).to_string();
    let mut tcp = std::net::TcpStream::connect(s.addr).unwrap();
    write!(
        tcp,
        "POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = 0;
    for _ in 0..100 {
        seen = running(s.addr).await;
        if seen == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 4, "the request runs");
    drop(tcp);
    let t = std::time::Instant::now();
    while running(s.addr).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "engine requests still running 3 s after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("aborted {:?} after the client left", t.elapsed());
    s.stop().await;
}

/// `/detokenize` of millions of ids: the body (tens of MB of JSON) was parsed on the HTTP
/// workers, holding `/health` for over a second; now a large body is parsed on the text
/// workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detokenize_of_millions_of_ids_is_parsed_off_the_workers() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup::default());
    let ids: Vec<u32> = (0..8_000_000u32).map(|i| 100_000 + i % 900_000).collect();
    let body = serde_json::to_vec(&json!({ "tokens": ids })).unwrap();
    drop(ids);
    let both = async {
        tokio::join!(
            s.call("POST", "/detokenize", body.clone()),
            s.call("POST", "/detokenize", body.clone()),
        )
    };
    let (((st, b), (st2, _)), worst, polls) =
        while_polling_health(s.addr, DETOKENIZE_HEALTH_BOUND, both).await;
    eprintln!(
        "/health worst {worst:?} over {polls} polls during two /detokenize of {} MB",
        body.len() >> 20
    );
    assert_eq!((st, st2), (200, 200));
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(v["prompt"]
        .as_str()
        .unwrap()
        .starts_with(" <100000> <100001>"));
    s.stop().await;
}

/// Parsed and answered on the HTTP workers, two bodies of 8 M ids held `/health` over 300 ms
/// here (6 M: 450 ms); off them, under 100 ms.
const DETOKENIZE_HEALTH_BOUND: Duration = Duration::from_millis(300);

/// With `--trust-request-chat-template`, a template inside `chat_template_kwargs` is used as
/// vLLM 0.19 uses it (when the request gives no `chat_template` of its own), and a `null`
/// template, at either place, means the tokenizer's own. Both were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_templates_in_kwargs_and_null_templates_are_served_as_vllm_serves_them() {
    let s = TestServer::start(Setup {
        real_tokenizer: true,
        trust_request_chat_template: true,
        ..Setup::default()
    });
    let tpl = "{% for m in messages %}<<{{ m.content }}>>{% endfor %}";
    let messages = json!([{"role": "user", "content": "hi"}]);
    let (st, direct) = s
        .json(
            "/tokenize",
            json!({"messages": messages, "chat_template": tpl}),
        )
        .await;
    assert_eq!(st, 200, "{direct}");
    let (st, in_kwargs) = s
        .json(
            "/tokenize",
            json!({"messages": messages, "chat_template_kwargs": {"chat_template": tpl}}),
        )
        .await;
    assert_eq!(st, 200, "{in_kwargs}");
    assert_eq!(in_kwargs["tokens"], direct["tokens"]);
    // The request's own template wins over the one in the kwargs.
    let (_, both) = s
        .json(
            "/tokenize",
            json!({"messages": messages, "chat_template": tpl,
                   "chat_template_kwargs": {"chat_template": "{{ 'other' }}"}}),
        )
        .await;
    assert_eq!(both["tokens"], direct["tokens"]);
    let (_, own) = s.json("/tokenize", json!({"messages": messages})).await;
    assert_ne!(own["tokens"], direct["tokens"]);
    for nulls in [
        json!({"chat_template": null}),
        json!({"chat_template_kwargs": {"chat_template": null}}),
        json!({"chat_template": null, "chat_template_kwargs": {"chat_template": null}}),
    ] {
        let mut body = json!({"messages": messages, "max_tokens": 2});
        for (k, v) in nulls.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = s.json("/v1/chat/completions", body.clone()).await;
        assert_eq!(st, 200, "{body}: {v}");
        body.as_object_mut().unwrap().remove("max_tokens");
        let (st, v) = s.json("/tokenize", body.clone()).await;
        assert_eq!(st, 200, "{body}: {v}");
        assert_eq!(v["tokens"], own["tokens"], "{body}");
    }
    s.stop().await;
}
