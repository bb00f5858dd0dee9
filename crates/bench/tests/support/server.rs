//! A tiny OpenAI-compatible streaming server for tests and the client benchmark: it frames
//! SSE as vLLM does (`data: {json}\n\n`, a usage chunk with `"choices": []`, `data: [DONE]`),
//! and injects faults chosen by the prompt's first word:
//! `http500`, `http400`, `early_close` (connection dropped mid-stream), `malformed` (a broken
//! JSON event), `error_event` (vLLM's in-stream error), `no_usage` (no usage chunk),
//! `no_tokens` (only `[DONE]`). Anything else streams `max_tokens` tokens `" tok"`.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct ServerOpts {
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay between token events.
    pub itl: Duration,
    /// Token events written together in one chunk (vLLM's stream_interval-like bundling).
    pub events_per_write: usize,
    /// Keep request bodies and headers for inspection.
    pub record: bool,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            ttft: Duration::from_millis(20),
            itl: Duration::from_millis(2),
            events_per_write: 1,
            record: true,
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    pub request_id: Option<String>,
}

#[derive(Default)]
pub struct Stats {
    pub seen: Mutex<Vec<Seen>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub served: AtomicUsize,
    /// TCP connections accepted.
    pub accepted: AtomicUsize,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server on 127.0.0.1:0 on the current runtime.
pub async fn start(opts: ServerOpts) -> TestServer {
    start_on("127.0.0.1:0", opts).await
}

/// Starts the server on `addr` on the current runtime.
pub async fn start_on(addr: &str, opts: ServerOpts) -> TestServer {
    // A deep accept queue: thousands of clients connect at once (the kernel caps it at
    // net.core.somaxconn).
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(65535).unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            st.accepted.fetch_add(1, Ordering::SeqCst);
            let (opts, st) = (opts.clone(), st.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (opts, st) = (opts.clone(), st.clone());
                    async move { Ok::<_, std::convert::Infallible>(handle(req, opts, st).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer { addr, stats, task }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(v.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

async fn handle(req: Request<Incoming>, opts: ServerOpts, st: Arc<Stats>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if path == "/v1/models" {
        return full(
            StatusCode::OK,
            json!({"object": "list", "data": [{"id": "served-name", "object": "model", "root": "org/test-model"}]}),
        );
    }
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if opts.record {
        st.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            body: body.clone(),
            request_id,
        });
    }
    let chat = path.ends_with("/chat/completions");
    let prompt = if chat {
        body["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    } else {
        match &body["prompt"] {
            Value::String(s) => s.clone(),
            _ => String::new(),
        }
    };
    let mode = prompt.split_whitespace().next().unwrap_or("").to_string();
    let max_tokens = body
        .get(if chat {
            "max_completion_tokens"
        } else {
            "max_tokens"
        })
        .and_then(Value::as_u64)
        .unwrap_or(16) as usize;
    match mode.as_str() {
        "http500" => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}),
            )
        }
        "http400" => {
            return full(
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "This model's maximum context length is 10 tokens.", "type": "BadRequestError", "param": null, "code": 400}}),
            )
        }
        _ => {}
    }
    let (mut tx, rx) = Channel::<Bytes, std::io::Error>::new(4);
    let st2 = st.clone();
    tokio::spawn(async move {
        let n = st2.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st2.max_in_flight.fetch_max(n, Ordering::SeqCst);
        stream_tokens(&mut tx, &opts, chat, &mode, max_tokens).await;
        st2.in_flight.fetch_sub(1, Ordering::SeqCst);
        st2.served.fetch_add(1, Ordering::SeqCst);
        if mode == "early_close" {
            tx.abort(std::io::Error::other("dropped"));
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(rx.boxed())
        .unwrap()
}

fn token_event(chat: bool, i: usize, last: bool) -> String {
    let finish = if last { "\"length\"" } else { "null" };
    if chat {
        format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    } else {
        format!(
            "data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\" tok{i}\",\"logprobs\":null,\"finish_reason\":{finish},\"stop_reason\":null}}]}}\n\n"
        )
    }
}

async fn stream_tokens(
    tx: &mut http_body_util::channel::Sender<Bytes, std::io::Error>,
    opts: &ServerOpts,
    chat: bool,
    mode: &str,
    max_tokens: usize,
) {
    // Absolute deadlines, so that timer slack does not accumulate into the schedule.
    let t0 = tokio::time::Instant::now() + opts.ttft;
    tokio::time::sleep_until(t0).await;
    if mode == "no_tokens" {
        let _ = tx.send_data(Bytes::from_static(b"data: [DONE]\n\n")).await;
        return;
    }
    let mut buf = String::new();
    if chat {
        buf += "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    }
    let per = opts.events_per_write.max(1);
    for i in 0..max_tokens {
        if i > 0 && i % per == 0 {
            if tx
                .send_data(Bytes::from(std::mem::take(&mut buf)))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep_until(t0 + opts.itl * i as u32).await;
        }
        buf += &token_event(chat, i, i + 1 == max_tokens);
        match mode {
            "early_close" if i == 1 => {
                let _ = tx.send_data(Bytes::from(std::mem::take(&mut buf))).await;
                return;
            }
            "malformed" if i == 1 => buf += "data: {\"choices\": [{\"text\": \n\n",
            "error_event" if i == 1 => {
                buf += "data: {\"error\": {\"message\": \"engine failed mid-stream\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n";
                buf += "data: [DONE]\n\n";
                let _ = tx.send_data(Bytes::from(std::mem::take(&mut buf))).await;
                return;
            }
            _ => {}
        }
    }
    if mode != "no_usage" {
        buf += &format!(
            "data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"total_tokens\":{},\"completion_tokens\":{max_tokens}}}}}\n\n",
            max_tokens + 3
        );
    }
    buf += "data: [DONE]\n\n";
    let _ = tx.send_data(Bytes::from(buf)).await;
}
