//! `POST /v1/messages`, the Anthropic Messages API as vLLM 0.19 serves it
//! (`entrypoints/anthropic/`): the request is converted into a chat completion as vLLM's
//! `_convert_anthropic_to_openai_request` does (system prompt, content blocks, `tool_use` and
//! `tool_result`, tools and `tool_choice`), served by the chat route, and its answer converted
//! back (`messages_full_converter`); streamed answers are converted event by event
//! ([`crate::routes_messages_stream`]).

use crate::errors::ApiError;
use crate::routes::parse_request;
use crate::routes_translate::{serve_inner, Inner};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// vLLM's `AnthropicMessagesRequest` (the fields it converts).
#[derive(Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<AnthropicMessage>,
    pub max_tokens: i64,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub system: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Deserialize)]
pub struct AnthropicMessage {
    pub role: Role,
    pub content: Value,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: ToolChoiceKind,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceKind {
    Auto,
    Any,
    Tool,
    None,
}

impl crate::protocol::ValidateRequest for MessagesRequest {}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// vLLM's `_convert_system_message`: a string, or the text blocks joined (Claude Code's
/// attribution header block left out).
fn convert_system(system: &Option<Value>, out: &mut Vec<Value>) {
    match system {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => out.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) if blocks.is_empty() => {}
        Some(Value::Array(blocks)) => {
            let text: String = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .filter(|t| !t.starts_with("x-anthropic-billing-header"))
                .collect();
            out.push(json!({"role": "system", "content": text}));
        }
        Some(other) => out.push(json!({"role": "system", "content": other})),
    }
}

/// vLLM's `_convert_messages` and `_convert_block` (image blocks become `image_url` parts).
fn convert_messages(messages: &[AnthropicMessage], out: &mut Vec<Value>) {
    for msg in messages {
        let role = role_name(msg.role);
        let mut m = Map::new();
        m.insert("role".into(), json!(role));
        let Value::Array(blocks) = &msg.content else {
            m.insert("content".into(), msg.content.clone());
            out.push(Value::Object(m));
            continue;
        };
        let mut parts = Vec::new();
        let mut tool_calls = Vec::new();
        let mut reasoning = String::new();
        let mut has_reasoning = false;
        for b in blocks {
            match b["type"].as_str().unwrap_or("") {
                "text" => {
                    if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                        parts.push(json!({"type": "text", "text": t}));
                    }
                }
                "image" => {
                    let src = &b["source"];
                    let url = match src["type"].as_str() {
                        Some("url") => src["url"].as_str().unwrap_or("").to_string(),
                        _ => format!(
                            "data:{};base64,{}",
                            src["media_type"].as_str().unwrap_or("image/jpeg"),
                            src["data"].as_str().unwrap_or("")
                        ),
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                "thinking" => {
                    if let Some(t) = b["thinking"].as_str() {
                        reasoning.push_str(t);
                        has_reasoning = true;
                    }
                }
                "tool_use" => tool_calls.push(json!({
                    "id": b["id"].as_str().map(str::to_string).unwrap_or_else(|| format!(
                        "call_{}", crate::state::unix_now())),
                    "type": "function",
                    "function": {
                        "name": b["name"].as_str().unwrap_or(""),
                        "arguments": if b["input"].is_null() {
                            "{}".to_string()
                        } else {
                            b["input"].to_string()
                        },
                    },
                })),
                "tool_result" if msg.role == Role::User => {
                    let text = match &b["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(items) => items
                            .iter()
                            .filter(|i| i["type"] == "text")
                            .map(|i| i["text"].as_str().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    };
                    out.push(json!({
                        "role": "tool",
                        "tool_call_id": b["tool_use_id"].as_str().unwrap_or(""),
                        "content": text,
                    }));
                }
                "tool_result" => {
                    let text = match &b["content"] {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    parts.push(json!({"type": "text", "text": format!("Tool result: {text}")}));
                }
                _ => {}
            }
        }
        if has_reasoning {
            m.insert("reasoning".into(), json!(reasoning));
        }
        if !tool_calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        if parts.len() == 1 && parts[0]["type"] == "text" {
            m.insert("content".into(), parts[0]["text"].clone());
        } else if !parts.is_empty() {
            m.insert("content".into(), Value::Array(parts));
        }
        out.push(Value::Object(m));
    }
}

/// The chat completion request vLLM builds from a Messages request.
pub fn to_chat_request(req: &MessagesRequest) -> Value {
    let mut messages = Vec::new();
    convert_system(&req.system, &mut messages);
    convert_messages(&req.messages, &mut messages);
    let mut chat = json!({
        "model": req.model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        "max_completion_tokens": req.max_tokens,
    });
    if let Some(s) = &req.stop_sequences {
        chat["stop"] = json!(s);
    }
    for (k, v) in [
        ("temperature", req.temperature.map(|x| json!(x))),
        ("top_p", req.top_p.map(|x| json!(x))),
        ("top_k", req.top_k.map(|x| json!(x))),
    ] {
        if let Some(v) = v {
            chat[k] = v;
        }
    }
    if let Some(tc) = &req.tool_choice {
        chat["tool_choice"] = match tc.kind {
            ToolChoiceKind::Auto => json!("auto"),
            ToolChoiceKind::Any => json!("required"),
            ToolChoiceKind::None => json!("none"),
            ToolChoiceKind::Tool => {
                json!({"type": "function", "function": {"name": tc.name}})
            }
        };
    }
    if let Some(tools) = &req.tools {
        chat["tools"] = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema}})
            })
            .collect();
        if req.tool_choice.is_none() {
            chat["tool_choice"] = json!("auto");
        }
    }
    chat
}

/// vLLM's `messages_full_converter` (dumped without nulls).
pub fn to_messages_response(chat: &Value) -> Value {
    let choice = &chat["choices"][0];
    let mut out = json!({
        "id": chat["id"],
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": chat["model"],
    });
    if let Some(r) = match choice["finish_reason"].as_str() {
        Some("stop") => Some("end_turn"),
        Some("length") => Some("max_tokens"),
        Some("tool_calls") => Some("tool_use"),
        _ => None,
    } {
        out["stop_reason"] = json!(r);
    }
    out["usage"] = json!({
        "input_tokens": chat["usage"]["prompt_tokens"],
        "output_tokens": chat["usage"]["completion_tokens"],
    });
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for tc in msg["tool_calls"].as_array().into_iter().flatten() {
        let input: Value = tc["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_else(|| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": tc["id"],
            "name": tc["function"]["name"],
            "input": input,
        }));
    }
    out["content"] = Value::Array(content);
    out
}

/// vLLM's `translate_error_response`: an OpenAI error body as an Anthropic one, same status.
async fn anthropic_error(resp: Response) -> Response {
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let e = &v["error"];
    let (kind, message) = match (e["type"].as_str(), e["message"].as_str()) {
        (Some(k), Some(m)) => (k.to_string(), m.to_string()),
        _ => (
            "Bad Request".to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
    )
        .into_response()
}

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: MessagesRequest = parse_request(&state, body).await?;
    let mut chat = to_chat_request(&req);
    if req.stream.unwrap_or(false) {
        chat["stream"] = json!(true);
        chat["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
        return match crate::routes_translate::start_inner(state, headers, Inner::Chat, chat).await {
            Ok(resp) => Ok(crate::routes_messages_stream::convert(resp)),
            Err(resp) => Ok(anthropic_error(resp).await),
        };
    }
    match serve_inner(state, headers, Inner::Chat, chat).await {
        Ok(done) => Ok(axum::Json(to_messages_response(&done)).into_response()),
        Err(resp) => Ok(anthropic_error(resp).await),
    }
}
