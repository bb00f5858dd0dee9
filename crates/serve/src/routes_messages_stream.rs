//! The streamed `/v1/messages`: the chat route's SSE stream (with usage on every chunk, as
//! vLLM asks for it) converted event by event into Anthropic's stream, as vLLM 0.19's
//! `message_stream_converter` does: `message_start` (from the first chunk, whose own content
//! is not forwarded), `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta`) / `content_block_stop` per block, `message_delta` with the stop reason
//! and usage (from the usage chunk), `message_stop` (from `[DONE]`). Each event is
//! `event: NAME\ndata: JSON\n\n`, the JSON compact with the fields vLLM sets, in its models'
//! field order.

use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The converter's state (vLLM's `_ActiveBlockState` and the stream's flags).
#[derive(Default)]
pub struct MessageStream {
    started: bool,
    finish_reason: Option<String>,
    content_block_index: usize,
    block_type: Option<&'static str>,
    block_index: Option<usize>,
    tool_use_id: Option<String>,
    tool_ids: HashMap<u64, String>,
}

impl MessageStream {
    fn stop_active_block(&mut self, out: &mut String) {
        if self.block_type.is_none() {
            return;
        }
        out.push_str(&event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.block_index}),
        ));
        self.block_type = None;
        self.block_index = None;
        self.tool_use_id = None;
        self.content_block_index += 1;
    }

    fn start_block(&mut self, kind: &'static str, block: Value, out: &mut String) {
        out.push_str(&event(
            "content_block_start",
            &json!({"type": "content_block_start", "content_block": block,
                    "index": self.content_block_index}),
        ));
        self.block_type = Some(kind);
        self.block_index = Some(self.content_block_index);
        self.tool_use_id = if kind == "tool_use" {
            block["id"].as_str().map(str::to_string)
        } else {
            None
        };
    }

    fn delta(&self, delta: Value, out: &mut String) {
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "delta": delta,
                    "index": self.block_index.unwrap_or(self.content_block_index)}),
        ));
    }

    /// The Anthropic events for one chat SSE event's data (`[DONE]` included).
    pub fn on_data(&mut self, data: &str) -> String {
        let mut out = String::new();
        if data == "[DONE]" {
            out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
            return out;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                out.push_str(&event(
                    "error",
                    &json!({"type": "error", "error": {"type": "internal_error",
                                                       "message": e.to_string()}}),
                ));
                return out;
            }
        };
        if let Some(err) = chunk.get("error") {
            out.push_str(&event(
                "error",
                &json!({"type": "error", "error": {"type": "internal_error",
                                                   "message": err["message"]}}),
            ));
            return out;
        }
        if !self.started {
            self.started = true;
            out.push_str(&event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": chunk["id"], "content": [], "model": chunk["model"],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                              "output_tokens": 0}}}),
            ));
            return out;
        }
        let choices = chunk["choices"].as_array().cloned().unwrap_or_default();
        if choices.is_empty() {
            self.stop_active_block(&mut out);
            let reason = match self.finish_reason.as_deref().unwrap_or("stop") {
                "stop" => json!("end_turn"),
                "length" => json!("max_tokens"),
                "tool_calls" => json!("tool_use"),
                _ => Value::Null,
            };
            out.push_str(&event(
                "message_delta",
                &json!({"type": "message_delta", "delta": {"stop_reason": reason},
                        "usage": {"input_tokens": chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                                  "output_tokens": chunk["usage"]["completion_tokens"].as_u64().unwrap_or(0)}}),
            ));
            return out;
        }
        let c = &choices[0];
        if let Some(f) = c["finish_reason"].as_str() {
            self.finish_reason = Some(f.to_string());
        }
        let delta = &c["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if self.block_type != Some("text") {
                self.stop_active_block(&mut out);
                self.start_block("text", json!({"type": "text", "text": ""}), &mut out);
            }
            self.delta(json!({"type": "text_delta", "text": text}), &mut out);
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = tc["index"].as_u64().unwrap_or(0);
            let args = tc["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty());
            if let Some(id) = tc["id"].as_str() {
                self.tool_ids.insert(index, id.to_string());
                if let Some(name) = tc["function"]["name"].as_str() {
                    if self.tool_use_id.as_deref() != Some(id) {
                        self.stop_active_block(&mut out);
                        self.start_block(
                            "tool_use",
                            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                            &mut out,
                        );
                    }
                }
                if let Some(a) = args.filter(|_| self.tool_use_id.as_deref() == Some(id)) {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": a}),
                        &mut out,
                    );
                }
            } else if let (Some(id), Some(a)) = (self.tool_ids.get(&index), args) {
                if self.tool_use_id.as_deref() == Some(id.as_str()) {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": a}),
                        &mut out,
                    );
                }
            }
        }
        out
    }
}

/// The chat route's streamed response as Anthropic's stream.
pub fn convert(chat: Response) -> Response {
    let mut conv = MessageStream::default();
    crate::routes_translate::restream(chat, move |data| conv.on_data(data))
}
