//! `POST /v1/responses`, the OpenAI Responses API as vLLM 0.19 serves it for a model without a
//! tool or reasoning parser (`openai/responses/`): `instructions` and `input` become chat
//! messages (`construct_input_messages`), the chat route serves them, and the answer is a
//! `ResponsesResponse` with one `message` output item (and a `function_call` item per tool
//! call), vLLM's usage details and `status` "incomplete" when the length limit stopped it.
//!
//! A streamed request (`stream: true`) is the chat route's stream converted event by event
//! ([`crate::routes_responses_stream`]). Not served: `previous_response_id` (llm-emu stores no
//! responses, so every id is unknown, as vLLM answers an unknown one).

use crate::errors::ApiError;
use crate::routes::parse_request;
use crate::routes_translate::{serve_inner, start_inner, Inner};
use crate::state::{unix_now, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// vLLM's `ResponsesRequest` (the fields it uses on this path).
#[derive(Deserialize)]
pub struct ResponsesRequest {
    pub input: Value,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    #[serde(default)]
    pub max_tool_calls: Option<i64>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "yes")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default = "auto")]
    pub service_tier: String,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default = "auto_value")]
    pub tool_choice: Value,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default = "disabled")]
    pub truncation: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub priority: i64,
}

fn yes() -> Option<bool> {
    Some(true)
}
fn auto() -> String {
    "auto".into()
}
fn auto_value() -> Value {
    json!("auto")
}
fn disabled() -> Option<String> {
    Some("disabled".into())
}

impl crate::protocol::ValidateRequest for ResponsesRequest {
    fn validate(&self) -> Result<(), ApiError> {
        if !(self.input.is_string() || self.input.is_array()) {
            return Err(ApiError::Validation(
                "1 validation error:\n  {'type': 'value_error', 'loc': ('body', 'input'), \
                 'msg': 'Input should be a valid string or list'}"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A message content part as the chat renderer reads it (`input_text` / `output_text` are
/// text parts).
fn convert_part(p: &Value) -> Value {
    match p["type"].as_str() {
        Some("input_text") | Some("output_text") => json!({"type": "text", "text": p["text"]}),
        Some("input_image") => json!({"type": "image_url", "image_url": {"url": p["image_url"]}}),
        _ => p.clone(),
    }
}

/// vLLM's `construct_input_messages` without stored history.
pub fn input_messages(req: &ResponsesRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(i) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        out.push(json!({"role": "system", "content": i}));
    }
    match &req.input {
        Value::String(s) => out.push(json!({"role": "user", "content": s})),
        Value::Array(items) => {
            for item in items {
                let m = match item["type"].as_str() {
                    Some("function_call") => json!({"role": "assistant", "tool_calls": [{
                        "id": item["call_id"], "type": "function",
                        "function": {"name": item["name"], "arguments": item["arguments"]}}]}),
                    Some("function_call_output") => json!({"role": "tool",
                        "content": item["output"], "tool_call_id": item["call_id"]}),
                    Some("reasoning") => json!({"role": "assistant",
                        "reasoning": item["content"][0]["text"].as_str()
                            .or(item["summary"][0]["text"].as_str()).unwrap_or("")}),
                    _ if item["role"] == "assistant" && item["type"] == "message" => {
                        json!({"role": "assistant", "content": item["content"][0]["text"]})
                    }
                    _ => {
                        let content = match &item["content"] {
                            Value::Array(parts) => {
                                Value::Array(parts.iter().map(convert_part).collect())
                            }
                            other => other.clone(),
                        };
                        json!({"role": item["role"], "content": content})
                    }
                };
                out.push(m);
            }
        }
        _ => {}
    }
    out
}

/// A Responses function tool (`{"type": "function", "name", "parameters", …}`) as a chat tool.
fn chat_tool(t: &Value) -> Value {
    json!({"type": "function", "function": {
        "name": t["name"], "description": t["description"], "parameters": t["parameters"]}})
}

pub async fn responses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ResponsesRequest = parse_request(&state, body).await?;
    if let Some(id) = &req.previous_response_id {
        return Err(ApiError::Typed {
            status: 404,
            kind: "invalid_request_error",
            message: format!("Response with id '{id}' not found."),
            param: Some("response_id".into()),
        });
    }
    let mut chat = json!({"messages": input_messages(&req), "priority": req.priority});
    for (k, v) in [
        ("model", req.model.as_ref().map(|m| json!(m))),
        ("max_tokens", req.max_output_tokens.map(|m| json!(m))),
        ("temperature", req.temperature.map(|x| json!(x))),
        ("top_p", req.top_p.map(|x| json!(x))),
        ("top_k", req.top_k.map(|x| json!(x))),
        ("request_id", req.request_id.as_ref().map(|x| json!(x))),
    ] {
        if let Some(v) = v {
            chat[k] = v;
        }
    }
    let function_tools: Vec<Value> = req
        .tools
        .iter()
        .filter(|t| t["type"] == "function")
        .map(chat_tool)
        .collect();
    if !function_tools.is_empty() {
        chat["tools"] = Value::Array(function_tools);
        chat["tool_choice"] = match &req.tool_choice {
            Value::Object(o) if o.get("type") == Some(&json!("function")) => {
                json!({"type": "function", "function": {"name": o.get("name")}})
            }
            other => other.clone(),
        };
    }
    let created = unix_now();
    let id = req
        .request_id
        .clone()
        .unwrap_or_else(|| format!("resp_{}", state.random_id()));
    if req.stream.unwrap_or(false) {
        chat["stream"] = json!(true);
        chat["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
        let resp = match start_inner(state.clone(), headers, Inner::Chat, chat).await {
            Ok(r) => r,
            Err(resp) => return Ok(resp),
        };
        let model = crate::routes::response_model(&state, &req.model);
        let initial = response_body(&state, &req, &id, created, &model, &Outcome::in_progress());
        let finish_state = state.clone();
        let finish = Box::new(move |outcome: &Outcome| {
            response_body(&finish_state, &req, &id, created, &model, outcome)
        });
        return Ok(crate::routes_responses_stream::convert(
            resp, state, initial, finish,
        ));
    }
    let done = match serve_inner(state.clone(), headers, Inner::Chat, chat).await {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    let choice = &done["choices"][0];
    let msg = &choice["message"];
    let outcome = Outcome {
        text: msg["content"].as_str().unwrap_or("").to_string(),
        tool_calls: msg["tool_calls"].as_array().cloned().unwrap_or_default(),
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        input_tokens: done["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: done["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        done: true,
    };
    let model = done["model"].as_str().unwrap_or("").to_string();
    Ok(axum::Json(response_body(&state, &req, &id, created, &model, &outcome)).into_response())
}

/// What the chat route produced for a Responses request.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub text: String,
    /// Chat-shaped tool calls (`{"id", "function": {"name", "arguments"}}`).
    pub tool_calls: Vec<Value>,
    pub finish_reason: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Finished (else the response is `in_progress`, with no output and no usage, as a
    /// stream's first events carry it).
    pub done: bool,
}

impl Outcome {
    pub fn in_progress() -> Outcome {
        Outcome::default()
    }
}

/// vLLM's `ResponsesResponse` for `req` with `outcome` (`from_request`).
pub fn response_body(
    state: &AppState,
    req: &ResponsesRequest,
    id: &str,
    created: u64,
    model: &str,
    outcome: &Outcome,
) -> Value {
    let mut output = Vec::new();
    let text = outcome.text.as_str();
    let tool_calls = &outcome.tool_calls;
    if outcome.done && (tool_calls.is_empty() || !text.is_empty()) {
        let content = if text.is_empty() {
            json!([])
        } else {
            json!([{"annotations": [], "text": text, "type": "output_text", "logprobs": null}])
        };
        output.push(json!({
            "id": format!("msg_{}", state.random_id()),
            "content": content,
            "role": "assistant",
            "status": "completed",
            "type": "message",
            "phase": null,
        }));
    }
    for tc in tool_calls.iter().filter(|_| outcome.done) {
        output.push(json!({
            "arguments": tc["function"]["arguments"],
            "call_id": tc["id"],
            "name": tc["function"]["name"],
            "type": "function_call",
            "id": format!("fc_{}", state.random_id()),
            "status": "completed",
        }));
    }
    let incomplete = outcome.finish_reason.as_deref() == Some("length");
    let (input_tokens, output_tokens) = (outcome.input_tokens, outcome.output_tokens);
    // vLLM reports the sampling parameters it used: max_tokens defaults to the rest of the
    // context.
    let max_output = req
        .max_output_tokens
        .unwrap_or((state.max_model_len as u64).saturating_sub(input_tokens) as i64);
    let status = match (outcome.done, incomplete) {
        (false, _) => "in_progress",
        (true, true) => "incomplete",
        (true, false) => "completed",
    };
    let usage = if outcome.done {
        json!({
            "input_tokens": input_tokens,
            // vLLM 0.19 fills the per-turn lists only for multi-turn (tool) contexts.
            "input_tokens_details": {"cached_tokens": 0, "input_tokens_per_turn": [],
                                     "cached_tokens_per_turn": []},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0, "tool_output_tokens": 0,
                                      "output_tokens_per_turn": [],
                                      "tool_output_tokens_per_turn": []},
            "total_tokens": input_tokens + output_tokens,
        })
    } else {
        Value::Null
    };
    json!({
        "id": id,
        "created_at": created,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": req.instructions,
        "metadata": req.metadata,
        "model": model,
        "object": "response",
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls,
        "temperature": req.temperature.unwrap_or(1.0),
        "tool_choice": req.tool_choice,
        "tools": req.tools,
        "top_p": req.top_p.unwrap_or(1.0),
        "background": req.background.unwrap_or(false),
        "max_output_tokens": max_output,
        "max_tool_calls": req.max_tool_calls,
        "previous_response_id": null,
        "prompt": req.prompt,
        "reasoning": req.reasoning,
        "service_tier": req.service_tier,
        "status": status,
        "text": req.text,
        "top_logprobs": null,
        "truncation": req.truncation,
        "usage": usage,
        "user": req.user,
        "kv_transfer_params": null,
        "input_messages": null,
        "output_messages": null,
    })
}
