//! Failure injection and the startup delay (test aids): each failure kind's status and body as
//! vLLM 0.19 gives them, streamed and not; the seeded rate; the header only when enabled;
//! mid-stream failures freeing KV blocks and counted as vLLM counts them; connections refused
//! until the startup delay has passed.

mod common;

use bytes::Bytes;
use common::{Setup, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use llm_emu_serve::fault::{FaultKind, FaultOptions, FAULT_HEADER};
use llm_emu_serve::ServeOptions;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One POST with extra headers: status and body.
async fn post(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The `data:` payloads of an SSE body.
fn data_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no metric line {prefix}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn header_server() -> TestServer {
    TestServer::start(Setup {
        adjust: |o| {
            o.faults = FaultOptions {
                header: true,
                ..FaultOptions::default()
            }
        },
        ..Setup::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_answers_as_vllm_does() {
    let s = header_server();
    let req = json!({"prompt": "a b c", "max_tokens": 4});
    let stream_req = json!({"prompt": "a b c", "max_tokens": 4, "stream": true});
    let fail = |k: &'static str| [(FAULT_HEADER, k)];

    let (st, b) = post(s.addr, "/v1/completions", &req, &fail("bad_request")).await;
    assert_eq!(st, 400);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(v["error"]["code"], 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("The decoder prompt (length 3)"));

    for (kind, message) in [
        ("internal", "Internal server error"),
        (
            "engine_dead",
            "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        ),
    ] {
        let want = json!({"error": {"message": message, "type": "InternalServerError",
                                    "param": null, "code": 500}});
        let (st, b) = post(s.addr, "/v1/completions", &req, &fail(kind)).await;
        assert_eq!(st, 500, "{kind}");
        assert_eq!(serde_json::from_str::<Value>(&b).unwrap(), want);
        // A stream has started before the engine answers: the error comes inside it.
        let (st, b) = post(s.addr, "/v1/completions", &stream_req, &fail(kind)).await;
        assert_eq!(st, 200, "{kind}");
        let ev = data_events(&b);
        assert_eq!(ev.len(), 2, "{b}");
        assert_eq!(serde_json::from_str::<Value>(&ev[0]).unwrap(), want);
        assert_eq!(ev[1], "[DONE]");
    }

    for r in [&req, &stream_req] {
        let (st, b) = post(s.addr, "/v1/completions", r, &fail("unavailable")).await;
        assert_eq!(st, 503);
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap(),
            json!({"error": "The model is currently scaling. Please try again later."})
        );
    }

    // Chat too, and an unknown kind is refused by name.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let (st, _) = post(s.addr, "/v1/chat/completions", &chat, &fail("internal")).await;
    assert_eq!(st, 500);
    let (st, b) = post(s.addr, "/v1/chat/completions", &chat, &fail("often")).await;
    assert_eq!(st, 400);
    assert!(b.contains("x-llm-emu-fail"), "{b}");
    // Without the header nothing fails.
    let (st, _) = post(s.addr, "/v1/chat/completions", &chat, &[]).await;
    assert_eq!(st, 200);

    // The HTTP metrics count them by status class, as vLLM's instrumentator does.
    let (_, text) = s.call("GET", "/metrics", Vec::new()).await;
    let five = metric(
        &text,
        "http_requests_total{handler=\"/v1/completions\",method=\"POST\",status=\"5xx\"}",
    );
    assert_eq!(five, 4.0, "2 non-streamed 500s and 2 503s");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_failure_aborts_and_frees_kv_blocks() {
    let s = TestServer::start(Setup {
        step_us: 2000,
        adjust: |o| {
            o.faults = FaultOptions {
                header: true,
                ..FaultOptions::default()
            }
        },
        ..Setup::default()
    });
    let prompt: Vec<u32> = (0..300).collect();
    let mid = [(FAULT_HEADER, "mid_stream")];
    let req = json!({"prompt": prompt, "max_tokens": 40, "ignore_eos": true, "stream": true});
    let (st, b) = post(s.addr, "/v1/completions", &req, &mid).await;
    assert_eq!(st, 200);
    let ev = data_events(&b);
    let tokens = ev.len() - 2;
    // Between 1 and half of max_tokens tokens, then vLLM's EngineGenerateError and [DONE].
    assert!((1..=20).contains(&tokens), "{tokens} tokens: {b}");
    assert_eq!(
        serde_json::from_str::<Value>(&ev[ev.len() - 2]).unwrap(),
        json!({"error": {"message": "", "type": "InternalServerError", "param": null,
                         "code": 500}})
    );
    assert_eq!(ev[ev.len() - 1], "[DONE]");
    assert!(
        !b.contains("finish_reason\":\"length"),
        "it did not finish: {b}"
    );

    // Not streamed: the 500 body.
    let mut plain = req.clone();
    plain["stream"] = json!(false);
    let (st, b) = post(s.addr, "/v1/completions", &plain, &mid).await;
    assert_eq!(st, 500, "{b}");
    assert!(b.contains("\"InternalServerError\""));

    // Both engine requests were aborted: KV blocks free again, counted as aborts.
    let mut text = String::new();
    for _ in 0..200 {
        text = s.call("GET", "/metrics", Vec::new()).await.1;
        if metric(&text, "vllm:num_requests_running") == 0.0
            && metric(&text, "vllm:kv_cache_usage_perc") == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&text, "vllm:kv_cache_usage_perc"), 0.0);
    assert_eq!(
        metric(
            &text,
            "vllm:request_success_total{engine=\"0\",finished_reason=\"abort\""
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "vllm:request_success_total{engine=\"0\",finished_reason=\"length\""
        ),
        0.0
    );
    s.stop().await;
}

fn rate_opts(seed: u64, header: bool) -> FaultOptions {
    FaultOptions {
        rate: 0.5,
        kinds: vec![FaultKind::Internal, FaultKind::Unavailable],
        seed,
        header,
    }
}

/// The statuses of 40 sequential requests to a server failing half of them with seed 11
/// (`other_seed`: 12), the failure header enabled or not.
async fn statuses(other_seed: bool, header: bool) -> Vec<u16> {
    let adjust: fn(&mut ServeOptions) = match (other_seed, header) {
        (false, false) => |o| o.faults = rate_opts(11, false),
        (false, true) => |o| o.faults = rate_opts(11, true),
        (true, _) => |o| o.faults = rate_opts(12, false),
    };
    let s = TestServer::start(Setup {
        step_us: 100,
        adjust,
        ..Setup::default()
    });
    let mut out = Vec::new();
    for _ in 0..40 {
        let (st, _) = post(
            s.addr,
            "/v1/completions",
            &json!({"prompt": "x y", "max_tokens": 2}),
            &[],
        )
        .await;
        out.push(st);
    }
    s.stop().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_seeded() {
    let a = statuses(false, false).await;
    let b = statuses(false, false).await;
    let c = statuses(true, false).await;
    assert_eq!(a, b, "the same seed fails the same requests");
    assert_ne!(a, c, "another seed fails others");
    for s in [200, 500, 503] {
        assert!(a.contains(&s), "{a:?} lacks {s}");
    }
    assert!(a.iter().all(|s| [200, 500, 503].contains(s)));
    // Enabling the header (unused) does not change the draws.
    assert_eq!(statuses(false, true).await, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_refused_during_the_startup_delay() {
    let t0 = Instant::now();
    let s = TestServer::start(Setup {
        adjust: |o| o.startup_delay = Duration::from_millis(1500),
        ..Setup::default()
    });
    // Bound but not listening: connecting is refused, as with vLLM while its engine loads,
    // so a readiness probe fails.
    let err = tokio::net::TcpStream::connect(s.addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let ready = loop {
        if tokio::net::TcpStream::connect(s.addr).await.is_ok() {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(ready >= Duration::from_millis(1500), "{ready:?}");
    let (st, _) = s.call("GET", "/health", Vec::new()).await;
    assert_eq!(st, 200);
    s.stop().await;
}
