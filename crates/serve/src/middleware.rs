//! What every request passes before its route, in vLLM's order: the API key
//! (`AuthenticationMiddleware`), reading the body (bounded in size and time: llm-emu's own), and
//! the `Content-Type: application/json` check vLLM makes on its JSON routes
//! (`validate_json_request`, a FastAPI dependency, so it runs after the body is read).

use crate::errors::ApiError;
use crate::fleet_front::{place, FrontPlan};
use crate::http_metrics::{HttpMetrics, Observation};
use axum::body::Body;
use axum::body::HttpBody;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The POST routes whose body is a JSON request model: vLLM's routes that carry
/// `dependencies=[Depends(validate_json_request)]`.
pub const JSON_ROUTES: &[&str] = &[
    "/v1/completions",
    "/v1/chat/completions",
    "/tokenize",
    "/detokenize",
];

/// The accepted API keys, kept as SHA-256 digests and compared in constant time, as vLLM's
/// `AuthenticationMiddleware` does (neither the keys' contents nor their lengths show in the
/// time a wrong key takes).
#[derive(Clone, Debug, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys(keys.iter().map(|k| sha256(k.as_bytes())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `Authorization: Bearer <key>` names an accepted key. Every key is compared, as
    /// vLLM does (`token_match |= compare_digest(...)`).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // vLLM: `scheme, _, param = value.partition(" ")`, scheme compared case-insensitively.
        let (scheme, token) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &value[value.len()..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let digest = sha256(token);
        let mut matched = false;
        for key in &self.0 {
            matched |= digests_equal(&digest, key);
        }
        matched
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two digests (Python's `secrets.compare_digest`).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The edge's settings.
#[derive(Clone, Debug)]
pub struct Edge {
    pub api_keys: ApiKeys,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// From the request head until the whole body has arrived.
    pub body_read_timeout: Duration,
    /// This front's HTTP instrumentator series.
    pub http: Arc<HttpMetrics>,
    /// The fleet behind this front, for placing requests.
    pub plan: Arc<FrontPlan>,
}

/// Wraps the routes in the edge's checks (outermost first: API key, HTTP series, body,
/// placement, content type).
pub fn wrap(routes: Router, edge: Edge) -> Router {
    let edge = Arc::new(edge);
    routes
        .layer(from_fn(require_json))
        .layer(from_fn_with_state(edge.plan.clone(), place))
        .layer(from_fn_with_state(edge.clone(), read_body))
        .layer(from_fn_with_state(edge.http.clone(), instrument))
        .layer(from_fn_with_state(edge, authenticate))
        // The body is read (and bounded) once, in `read_body`.
        .layer(DefaultBodyLimit::disable())
}

/// vLLM's `AuthenticationMiddleware`: `/v1` paths need the key; OPTIONS requests never do.
async fn authenticate(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let exempt = edge.api_keys.is_empty()
        || req.method() == Method::OPTIONS
        || !req.uri().path().starts_with("/v1");
    if exempt || edge.api_keys.accepts(req.headers()) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// prometheus-fastapi-instrumentator's middleware: the route's path (`none` if no route
/// matched), method, grouped status, the `Content-Length` of request and response (the
/// response's exact body size where it is known, as the header hyper writes from it), and the
/// time until the response body has been sent or dropped.
async fn instrument(State(http): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "none".to_string(), |p| p.as_str().to_string());
    if !HttpMetrics::counts(&handler) {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let request_bytes = content_length(req.headers()).unwrap_or(0);
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let response_bytes = content_length(&parts.headers)
        .or_else(|| body.size_hint().exact())
        .unwrap_or(0);
    let timed = TimedBody {
        inner: body,
        done: Some(Done {
            http,
            handler,
            method,
            status: parts.status.as_u16(),
            request_bytes,
            response_bytes,
            start,
        }),
    };
    Response::from_parts(parts, Body::new(timed))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What is recorded once a response has been sent.
struct Done {
    http: Arc<HttpMetrics>,
    handler: String,
    method: String,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    start: Instant,
}

/// A response body that records its request in the HTTP series when it ends (its last frame
/// was sent, or the connection dropped it).
struct TimedBody {
    inner: Body,
    done: Option<Done>,
}

impl TimedBody {
    fn record(&mut self) {
        if let Some(d) = self.done.take() {
            d.http.observe(&Observation {
                handler: &d.handler,
                method: &d.method,
                status: d.status,
                request_bytes: d.request_bytes,
                response_bytes: d.response_bytes,
                seconds: d.start.elapsed().as_secs_f64(),
            });
        }
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.record();
    }
}

impl HttpBody for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.record();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the whole body, refusing it past `max_body_bytes` (413) or when it has not all arrived
/// within `body_read_timeout` (408); either way the connection is closed after the answer.
///
/// An oversized body is read to its end and discarded (constant memory, within the same time
/// bound) before the 413 goes out: a server that closes while the client is still sending
/// makes the kernel reset the connection, and the client then sees a broken pipe instead of
/// the answer. A client that keeps sending past the time bound is cut off all the same.
async fn read_body(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = edge.max_body_bytes;
    let mut read = BodyRead::new(declared.is_some_and(|n| n > limit as u64));
    let outcome = tokio::time::timeout(edge.body_read_timeout, read.run(body, limit)).await;
    if read.too_large {
        return closing(ApiError::PayloadTooLarge(limit));
    }
    match outcome {
        Err(_) => closing(ApiError::BodyTimeout(edge.body_read_timeout)),
        // The client went away or sent a malformed chunked body: nobody reads the answer.
        Ok(Err(_)) => closing(ApiError::BodyNotParsable),
        Ok(Ok(())) => {
            let bytes = std::mem::take(&mut read.kept).freeze();
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// A request body being read: kept while it fits the limit, discarded once it is known not to.
struct BodyRead {
    kept: BytesMut,
    too_large: bool,
}

impl BodyRead {
    fn new(too_large: bool) -> BodyRead {
        BodyRead {
            kept: BytesMut::new(),
            too_large,
        }
    }

    /// Reads frames to the body's end; the outcome stays in `self` if the caller's timeout
    /// cuts it short.
    async fn run(&mut self, mut body: Body, limit: usize) -> Result<(), axum::Error> {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if !self.too_large && self.kept.len() + data.len() > limit {
                self.too_large = true;
                self.kept = BytesMut::new();
            }
            if !self.too_large {
                self.kept.extend_from_slice(&data);
            }
        }
        Ok(())
    }
}

/// An error answer after which the connection closes.
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// vLLM's `validate_json_request` on its JSON routes: the media type must be
/// `application/json`. FastAPI parses the body as JSON before it runs the dependency when the
/// header is missing, so a malformed body without a `Content-Type` still gets the JSON decode
/// error (from the route); an empty body is never parsed.
async fn require_json(req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !JSON_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let media_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    let ok = match &media_type {
        Some(ct) => ct.split(';').next() == Some("application/json"),
        None => false,
    };
    if ok {
        return next.run(req).await;
    }
    if media_type.is_none() {
        let (parts, body) = req.into_parts();
        // `read_body` has buffered it already: this does not wait.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let parses =
            bytes.is_empty() || serde_json::from_slice::<serde_json::Value>(&bytes).is_ok();
        if !parses {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
    }
    ApiError::UnsupportedMediaType.into_response()
}
