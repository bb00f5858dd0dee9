//! One streaming request, measured as `vllm bench serve`'s request functions
//! (`vllm/benchmarks/lib/endpoint_request_func.py`) measure it.
//!
//! `start_time` is taken just before the request is sent; every received body frame is
//! timestamped once on arrival (vLLM calls `perf_counter()` as it handles each chunk). A
//! message with a non-empty `choices` is a token event: the first sets TTFT, later ones add
//! an inter-token gap. A usage chunk gives `output_tokens`. Latency (E2EL) ends at the last
//! token event for completions, and at the last non-`[DONE]` message for chat (vLLM's chat
//! function also moves its clock on the usage chunk).

use crate::dataset::Prompt;
use crate::sse::{SseMessage, SseSplitter};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::net::TcpStream;

/// Which OpenAI API the backend speaks (vLLM's `--backend`: `openai`/`vllm` → completions,
/// `openai-chat` → chat completions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

impl Api {
    /// The API of a `--backend` name, as vLLM's `ASYNC_REQUEST_FUNCS` maps it.
    pub fn from_backend(backend: &str) -> Option<Api> {
        match backend {
            "openai" | "vllm" => Some(Api::Completions),
            "openai-chat" => Some(Api::Chat),
            _ => None,
        }
    }

    /// vLLM refuses a URL that does not end with the API's path.
    pub fn check_url(self, url: &str) -> Result<(), ClientError> {
        let (name, suffix) = match self {
            Api::Completions => ("OpenAI Completions API", "completions"),
            Api::Chat => ("OpenAI Chat Completions API", "chat/completions"),
        };
        if url.ends_with(suffix) || url.ends_with("profile") {
            Ok(())
        } else {
            Err(ClientError::Config(format!(
                "{name} URL must end with one of: {{'{suffix}', 'profile'}} (got {url})"
            )))
        }
    }
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
}

/// Seconds on the benchmark's monotonic clock (vLLM's `time.perf_counter()`).
#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }
    pub fn secs(&self, t: Instant) -> f64 {
        t.duration_since(self.origin).as_secs_f64()
    }
    pub fn now(&self) -> f64 {
        self.secs(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What one request sends (vLLM's `RequestFuncInput`).
pub struct RequestInput<'a> {
    pub prompt: &'a Prompt,
    pub prompt_len: usize,
    pub output_len: usize,
    pub request_id: Option<&'a str>,
    /// The OpenAI `user` field (a scenario's session), sent when set.
    pub user: Option<&'a str>,
}

/// Settings shared by every request of a run.
pub struct Target {
    pub api: Api,
    pub uri: Uri,
    /// `model` of the request: `--served-model-name` if given, else `--model`.
    pub model: String,
    pub logprobs: Option<i64>,
    pub ignore_eos: bool,
    /// `--extra-body` merged with the sampling flags; overrides the built-in fields.
    pub extra_body: Map<String, Value>,
    /// `Authorization` (from `OPENAI_API_KEY`) and `--header` pairs.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Longest a request may take (vLLM: aiohttp's 6 h total timeout).
    pub timeout: Duration,
}

/// What one request measured (vLLM's `RequestFuncOutput`); times in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestOutput {
    pub generated_text: String,
    pub success: bool,
    /// E2EL.
    pub latency: f64,
    /// From the usage chunk; 0 when the server sent none (then counted from the text).
    pub output_tokens: u64,
    pub ttft: f64,
    pub itl: Vec<f64>,
    pub prompt_len: usize,
    pub error: String,
    pub start_time: f64,
}

type ConnFuture = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// An HTTP/1.1 connection. It is driven by the task of the request using it (no connection
/// task, no hand-over between tasks per received chunk), and parked in the pool between requests.
struct PooledConn {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: ConnFuture,
    idle_since: Instant,
}

/// The HTTP/1.1 client: a keep-alive pool per `host:port`, idle connections kept 60 s
/// (aiohttp's `keepalive_timeout`), no limit on connections (vLLM's connector without
/// `--max-concurrency`).
#[derive(Clone, Default)]
pub struct HttpClient {
    idle: Arc<Mutex<HashMap<String, Vec<PooledConn>>>>,
}

const KEEPALIVE: Duration = Duration::from_secs(60);

/// A new client.
pub fn http_client() -> HttpClient {
    HttpClient::default()
}

impl HttpClient {
    fn checkout(&self, authority: &str) -> Option<PooledConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(authority)?;
        while let Some(c) = list.pop() {
            if c.idle_since.elapsed() < KEEPALIVE && !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, authority: &str, mut c: PooledConn) {
        c.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.entry(authority.to_string()).or_default().push(c);
    }

    async fn connect(authority: &str) -> Result<PooledConn, String> {
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with {authority}: {}", error_chain(&e)))?;
        Ok(PooledConn {
            sender,
            conn: Box::pin(conn),
            idle_since: Instant::now(),
        })
    }
}

/// Whether a connection has ended, and how.
type ConnEnd = Option<Result<(), hyper::Error>>;

/// Waits for `fut` while driving the connection.
async fn driving<F: std::future::Future>(
    fut: F,
    conn: &mut ConnFuture,
    end: &mut ConnEnd,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            r = conn.as_mut(), if end.is_none() => *end = Some(r),
        }
    }
}

/// Sends `req` on a pooled connection (or a new one), driving the connection until the
/// response head arrives. A pooled connection the server has closed meanwhile is replaced by a
/// new one once, before anything was sent.
async fn open(
    client: &HttpClient,
    authority: &str,
    make: impl Fn() -> Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, PooledConn, ConnEnd), String> {
    let mut reused = client.checkout(authority);
    loop {
        let was_reused = reused.is_some();
        let mut pc = match reused.take() {
            Some(c) => c,
            None => HttpClient::connect(authority).await?,
        };
        let mut end: ConnEnd = None;
        if was_reused {
            // A connection the server closed while it sat in the pool (a keep-alive timeout)
            // ends when polled. Polled once here, before a request is queued on it: a request
            // queued on a connection that has already ended is never sent and never answered.
            tokio::select! {
                biased;
                r = pc.conn.as_mut() => end = Some(r),
                _ = std::future::ready(()) => {}
            }
            if end.is_some() {
                reused = client.checkout(authority);
                continue;
            }
        }
        let ready = driving(pc.sender.ready(), &mut pc.conn, &mut end).await;
        if ready.is_err() && was_reused {
            continue;
        }
        ready.map_err(|e| error_chain(&e))?;
        let fut = pc.sender.send_request(make());
        match driving(fut, &mut pc.conn, &mut end).await {
            Ok(resp) => return Ok((resp, pc, end)),
            Err(e) if was_reused && e.is_canceled() => continue,
            Err(e) => return Err(error_chain(&e)),
        }
    }
}

/// The JSON body, as vLLM's request functions build it.
pub fn request_body(t: &Target, r: &RequestInput<'_>) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("model".into(), t.model.clone().into());
    match t.api {
        Api::Completions => {
            p.insert(
                "prompt".into(),
                serde_json::to_value(r.prompt).expect("prompt serializes"),
            );
            p.insert("repetition_penalty".into(), 1.0.into());
            p.insert("max_tokens".into(), r.output_len.into());
            p.insert("logprobs".into(), t.logprobs.into());
        }
        Api::Chat => {
            let text = match r.prompt {
                Prompt::Text(s) => Value::String(s.clone()),
                Prompt::Tokens(ids) => serde_json::to_value(ids).expect("ids serialize"),
            };
            p.insert(
                "messages".into(),
                serde_json::json!([{"role": "user", "content": [{"type": "text", "text": text}]}]),
            );
            p.insert("max_completion_tokens".into(), r.output_len.into());
        }
    }
    p.insert("stream".into(), true.into());
    p.insert(
        "stream_options".into(),
        serde_json::json!({"include_usage": true}),
    );
    if t.ignore_eos {
        p.insert("ignore_eos".into(), true.into());
    }
    if let Some(u) = r.user {
        p.insert("user".into(), u.into());
    }
    for (k, v) in &t.extra_body {
        p.insert(k.clone(), v.clone());
    }
    p
}

/// A streamed chunk; only the fields the benchmark reads, borrowed from the buffer.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<FirstChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// The first element of `choices` (`None` if empty): vLLM reads only `choices[0]`.
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Choice<'a>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// The per-request stream state.
struct StreamState {
    api: Api,
    st: f64,
    most_recent: f64,
    first: bool,
    out: RequestOutput,
}

impl StreamState {
    fn on_message(&mut self, msg: SseMessage<'_>, ts: f64) -> Result<(), String> {
        let payload = match msg {
            SseMessage::Done => return Ok(()),
            SseMessage::Data(p) => p,
        };
        let chunk: Chunk<'_> = serde_json::from_slice(payload).map_err(|e| {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            format!("malformed SSE event ({e}): {shown}")
        })?;
        if let Some(err) = chunk.error {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(format!("error event in the stream: {msg}"));
        }
        match chunk.choices {
            Some(FirstChoice(Some(c))) => {
                let text = match self.api {
                    Api::Completions => c.text,
                    Api::Chat => {
                        c.delta
                            .ok_or_else(|| "chat chunk without `delta`".to_string())?
                            .content
                    }
                };
                if !self.first {
                    self.first = true;
                    self.out.ttft = ts - self.st;
                } else {
                    self.out.itl.push(ts - self.most_recent);
                }
                if let Some(t) = text {
                    self.out.generated_text.push_str(&t);
                }
                self.most_recent = ts;
            }
            _ => {
                if let Some(n) = chunk.usage.and_then(|u| u.completion_tokens) {
                    self.out.output_tokens = n;
                }
                if self.api == Api::Chat {
                    self.most_recent = ts;
                }
            }
        }
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s += &format!(": {inner}");
        src = inner.source();
    }
    s
}

/// Sends one request and measures it; never fails: problems end up in `error`.
pub async fn send(
    client: &HttpClient,
    target: &Target,
    input: &RequestInput<'_>,
    clock: &Clock,
) -> RequestOutput {
    let body =
        Bytes::from(serde_json::to_vec(&request_body(target, input)).expect("body serializes"));
    let host = target
        .uri
        .host()
        .map(|h| match target.uri.port_u16() {
            Some(p) => format!("{h}:{p}"),
            None => format!("{h}:80"),
        })
        .unwrap_or_default();
    let make = || {
        let mut req = Request::post(target.uri.clone())
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .expect("valid request");
        let h = req.headers_mut();
        for (k, v) in &target.headers {
            h.insert(k.clone(), v.clone());
        }
        if let Some(id) = input.request_id {
            if let Ok(v) = HeaderValue::from_str(id) {
                h.insert(HeaderName::from_static("x-request-id"), v);
            }
        }
        req
    };
    let st = clock.now();
    let mut state = StreamState {
        api: target.api,
        st,
        most_recent: st,
        first: false,
        out: RequestOutput {
            prompt_len: input.prompt_len,
            start_time: st,
            ..Default::default()
        },
    };
    let result = tokio::time::timeout(
        target.timeout,
        stream(client, &host, make, &mut state, clock),
    )
    .await;
    let outcome = match result {
        Ok(r) => r,
        Err(_) => Err(format!(
            "timed out after {} s",
            target.timeout.as_secs_f64()
        )),
    };
    let mut out = state.out;
    match outcome {
        Ok(()) if state.first => {
            out.success = true;
            out.latency = state.most_recent - st;
        }
        Ok(()) => {
            out.error = "Never received a valid chunk to calculate TTFT.This response will be marked as failed!".into();
            out.latency = state.most_recent - st;
        }
        Err(e) => {
            out.success = false;
            out.error = e;
        }
    }
    out
}

async fn stream(
    client: &HttpClient,
    authority: &str,
    make: impl Fn() -> Request<Full<Bytes>>,
    state: &mut StreamState,
    clock: &Clock,
) -> Result<(), String> {
    let (resp, mut pc, mut end) = open(client, authority, make).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != hyper::StatusCode::OK {
        // Keep a bounded excerpt of the error body for the record.
        let mut text = Vec::new();
        while text.len() < 4096 {
            match driving(body.frame(), &mut pc.conn, &mut end).await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        let room = 4096 - text.len();
                        text.extend_from_slice(&d[..d.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
        let detail = serde_json::from_slice::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(|e| e.get("message").or(Some(e)))
                    .map(|m| m.as_str().map(str::to_string).unwrap_or(m.to_string()))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&text).trim().to_string());
        let reason = status.canonical_reason().unwrap_or("");
        return Err(if detail.is_empty() {
            format!("{reason} (HTTP {})", status.as_u16())
        } else {
            format!("{reason} (HTTP {}): {detail}", status.as_u16())
        });
    }
    let mut sse = SseSplitter::default();
    loop {
        let frame = match driving(body.frame(), &mut pc.conn, &mut end).await {
            None => break,
            Some(f) => f.map_err(|e| format!("stream broken: {}", error_chain(&e)))?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let ts = clock.now();
        sse.feed(&data, |m| state.on_message(m, ts))?;
    }
    if end.is_none() {
        client.checkin(authority, pc);
    }
    Ok(())
}

/// `GET {base_url}/v1/models`: the first model's `(id, root)`, as vLLM's
/// `get_first_model_from_server` takes them when `--model` is not given.
pub async fn first_model(
    client: &HttpClient,
    base_url: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<(String, String), String> {
    let url = format!("{base_url}/v1/models");
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let mut req = Request::get(uri.clone())
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    for (k, v) in headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let fail = |e: String| {
        format!(
            "Failed to fetch models from server at {url}. Check that:\n1. The server is running\n2. The server URL is correct\nError: {e}"
        )
    };
    let authority = uri
        .authority()
        .map(|a| match a.port_u16() {
            Some(_) => a.to_string(),
            None => format!("{}:80", a.host()),
        })
        .ok_or_else(|| fail("the URL has no host".into()))?;
    let fetch = async {
        let (resp, mut pc, mut end) = open(client, &authority, || {
            let mut r = Request::get(uri.clone())
                .header(hyper::header::HOST, authority.as_str())
                .body(Full::new(Bytes::new()))
                .expect("valid request");
            r.headers_mut().extend(req.headers().clone());
            r
        })
        .await?;
        let status = resp.status();
        let body = driving(resp.into_body().collect(), &mut pc.conn, &mut end)
            .await
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(fail)?;
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
    let first = v
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .ok_or_else(|| {
            format!("No models found on the server at {base_url}. Make sure the server is running and has models loaded.")
        })?;
    let id = first.get("id").and_then(Value::as_str);
    let root = first.get("root").and_then(Value::as_str).or(id);
    match (id, root) {
        (Some(id), Some(root)) => Ok((id.to_string(), root.to_string())),
        _ => Err(fail("the first model has no `id`".into())),
    }
}

/// HTTP headers from `KEY=VALUE` strings (`--header`), plus `Authorization: Bearer
/// $OPENAI_API_KEY` when that variable is set, as vLLM sends them.
pub fn headers(
    pairs: &[String],
    api_key: Option<&str>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    if let Some(k) = api_key.filter(|k| !k.is_empty()) {
        let v = HeaderValue::from_str(&format!("Bearer {k}"))
            .map_err(|_| "OPENAI_API_KEY is not a valid header value".to_string())?;
        out.push((hyper::header::AUTHORIZATION, v));
    }
    for item in pairs {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            format!("Invalid header format `{item}`. Please use KEY=VALUE format.")
        })?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", k.trim()))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("`{}` is not a valid header value", v.trim()))?;
        out.retain(|(n, _)| *n != name);
        out.push((name, value));
    }
    Ok(out)
}
