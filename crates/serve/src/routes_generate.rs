//! vLLM 0.19's token-in/token-out route, `POST /inference/v1/generate`
//! (`serve/disagg/`): `token_ids` and `sampling_params` in, each choice's token ids and finish
//! reason out. Served by the completions route with the same prompt ids and sampling fields.
//!
//! vLLM answers with `GenerateResponse`: `request_id` (a fresh random id: vLLM's serving code
//! passes its request id under another name, which the model drops), `choices` (`index`,
//! `logprobs`, `finish_reason`, `token_ids`), `prompt_logprobs` and `kv_transfer_params`; it
//! has no streaming (`stream` is accepted and ignored). llm-emu answers `logprobs` with null.

use crate::errors::ApiError;
use crate::routes::parse_request;
use crate::routes_translate::{copy_fields, serve_inner, Inner};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// vLLM's `GenerateRequest`.
#[derive(Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub request_id: Option<String>,
    pub token_ids: Vec<i64>,
    pub sampling_params: serde_json::Map<String, Value>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub cache_salt: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub kv_transfer_params: Option<Value>,
}

impl crate::protocol::ValidateRequest for GenerateRequest {
    fn validate(&self) -> Result<(), ApiError> {
        if self.token_ids.iter().any(|&t| t < 0) {
            return Err(ApiError::Validation(
                "1 validation error:\n  {'type': 'value_error', 'loc': ('body', 'token_ids'), \
                 'msg': 'Value error, token_ids must not contain negative values'}"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `SamplingParams` fields that the completions route takes under the same name.
const SAMPLING_FIELDS: [&str; 17] = [
    "n",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "max_tokens",
    "min_tokens",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "include_stop_str_in_output",
];

pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: GenerateRequest = parse_request(&state, body).await?;
    let params = Value::Object(req.sampling_params.clone());
    let mut inner = json!({
        "prompt": req.token_ids,
        "stream": false,
        "return_token_ids": true,
        "priority": req.priority,
        // SamplingParams' default (the completions route's too).
        "max_tokens": 16,
    });
    copy_fields(&params, &mut inner, &SAMPLING_FIELDS);
    if let Some(m) = &req.model {
        inner["model"] = json!(m);
    }
    if let Some(s) = &req.cache_salt {
        inner["cache_salt"] = json!(s);
    }
    if let Some(id) = &req.request_id {
        inner["request_id"] = json!(id);
    }
    let done = match serve_inner(state.clone(), headers, Inner::Completions, inner).await {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    let choices: Vec<Value> = done["choices"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    json!({
                        "index": c["index"],
                        "logprobs": null,
                        "finish_reason": c["finish_reason"].as_str().unwrap_or("stop"),
                        "token_ids": c["token_ids"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(json!({
        "request_id": state.random_id(),
        "choices": choices,
        "prompt_logprobs": null,
        "kv_transfer_params": null,
    }))
    .into_response())
}
