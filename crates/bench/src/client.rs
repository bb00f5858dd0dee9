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
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::time::{Duration, Instant};
use thiserror::Error;

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

/// The HTTP/1.1 client with its keep-alive pool.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client whose pool keeps every idle connection for 60 s (aiohttp's keepalive_timeout).
pub fn http_client() -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::MAX)
        .build(conn)
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
    let body = serde_json::to_vec(&request_body(target, input)).expect("body serializes");
    let mut req = Request::post(target.uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
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
    let result = tokio::time::timeout(target.timeout, stream(client, req, &mut state, clock)).await;
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
    req: Request<Full<Bytes>>,
    state: &mut StreamState,
    clock: &Clock,
) -> Result<(), String> {
    let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != hyper::StatusCode::OK {
        // Keep a bounded excerpt of the error body for the record.
        let mut text = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        text.extend_from_slice(&d[..d.len().min(4096 - text.len().min(4096))]);
                    }
                }
                Err(_) => break,
            }
            if text.len() >= 4096 {
                break;
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
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("stream broken: {}", error_chain(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let ts = clock.now();
        sse.feed(&data, |m| state.on_message(m, ts))?;
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
    let mut req = Request::get(uri)
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
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(error_chain(&e)))?;
    let status = resp.status();
    let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(error_chain(&e)))?
        .to_bytes();
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
