//! Routes that are another API's shape over the same generation: the request is rewritten as
//! a `/v1/completions` or `/v1/chat/completions` body, served by that route (validation,
//! engine, detokenization: one implementation), and its JSON answer rewritten in the other
//! API's shape. Errors from the inner route are passed on as they are.

use crate::errors::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
