//! Routes that are another API's shape over the same generation: the request is rewritten as
//! a `/v1/completions` or `/v1/chat/completions` body, served by that route (validation,
//! engine, detokenization: one implementation), and its JSON answer rewritten in the other
//! API's shape. Errors from the inner route are passed on as they are.

use crate::errors::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::Arc;

/// Which inner route serves a translated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    Completions,
    Chat,
}

/// Largest inner answer read back, bytes (a response of thousands of choices is far below).
const MAX_INNER_BYTES: usize = 1 << 30;

/// The inner route's response when it succeeded (a stream, for a streamed request), else the
/// response to pass on unchanged.
pub async fn start_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    inner: Inner,
    body: serde_json::Value,
) -> Result<Response, Response> {
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|e| {
        ApiError::Internal(format!("cannot serialize the inner request: {e}")).into_response()
    })?);
    let resp = match inner {
        Inner::Completions => {
            crate::routes::completions(axum::extract::State(state), headers, Ok(bytes)).await
        }
        Inner::Chat => {
            crate::routes::chat_completions(axum::extract::State(state), headers, Ok(bytes)).await
        }
    };
    match resp {
        Ok(r) if r.status() == StatusCode::OK => Ok(r),
        Ok(r) => Err(r),
        Err(e) => Err(e.into_response()),
    }
}

/// The inner route's answer: `Ok` with its JSON when it succeeded, else the response to pass
/// on unchanged.
pub async fn serve_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    inner: Inner,
    body: serde_json::Value,
) -> Result<serde_json::Value, Response> {
    let resp = start_inner(state, headers, inner, body).await?;
    let body = axum::body::to_bytes(resp.into_body(), MAX_INNER_BYTES)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()).into_response())?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::Internal(format!("inner answer is not JSON: {e}")).into_response())
}

/// Copies the fields of `from` named in `keys` that are present onto `to`.
pub fn copy_fields(from: &serde_json::Value, to: &mut serde_json::Value, keys: &[&str]) {
    for k in keys {
        if let Some(v) = from.get(*k) {
            to[*k] = v.clone();
        }
    }
}

/// The chat route's streamed answer re-framed as another API's stream: each SSE event of the
/// chat stream is cut out whole (events may span body chunks), the payload of its `data:`
/// line handed to `on_data`, and what `on_data` returns (the other API's events, possibly
/// none) sent on in its place.
pub fn restream<F>(chat: Response, mut on_data: F) -> Response
where
    F: FnMut(&str) -> String + Send + 'static,
{
    let mut buf: Vec<u8> = Vec::new();
    let body = chat.into_body().into_data_stream().map(move |chunk| {
        let bytes = chunk.map_err(std::io::Error::other)?;
        buf.extend_from_slice(&bytes);
        let mut out = String::new();
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let ev: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&ev);
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    out.push_str(&on_data(data.trim()));
                }
            }
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}
