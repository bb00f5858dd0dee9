//! The streamed `/v1/responses`: the chat route's SSE stream (with usage on every chunk)
//! converted event by event into the Responses API's stream, as vLLM 0.19's
//! `responses_stream_generator` and `_process_simple_streaming_events` emit it for a model
//! without a reasoning parser: `response.created` and `response.in_progress` (the response
//! `in_progress`, no output), then per output item `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`… (or, for a tool call,
//! `response.function_call_arguments.delta`…), their `.done` events, and
//! `response.completed` with the whole response. Each event is `event: TYPE\ndata: JSON\n\n`
//! with a `sequence_number` counting from 0 and the fields vLLM sets; no `[DONE]`. vLLM's quirks are kept: the `.done` events of a message follow only when its last
//! delta carried text, and a tool call whose first delta has no arguments first closes an
//! empty message item.

use crate::routes_responses::Outcome;
use crate::state::AppState;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// Builds the final response from what the stream produced.
pub type Finish = Box<dyn FnOnce(&Outcome) -> Value + Send>;

/// One delta as vLLM's simple processor sees it (`DeltaMessage`).
struct Delta {
    content: Option<String>,
    /// The first tool call's (name, arguments), when the delta has tool calls.
    tool_call: Option<(Option<String>, Option<String>)>,
}

/// The converter's state (the locals of `_process_simple_streaming_events`).
pub struct ResponseStream {
    state: Arc<AppState>,
    seq: u64,
    content_index: u64,
    output_index: u64,
    item_id: String,
    first_delta_sent: bool,
    tool_call_id: String,
    tool_call_name: Option<String>,
    previous: Vec<Delta>,
    /// What the final response reports, gathered from the chunks.
    outcome: Outcome,
    /// Chat tool calls by index: (id, name, arguments so far).
    calls: Vec<(String, String, String)>,
    initial: Option<Value>,
    finish: Option<Finish>,
    ended: bool,
}

impl ResponseStream {
    pub fn new(state: Arc<AppState>, initial: Value, finish: Finish) -> ResponseStream {
        ResponseStream {
            state,
            seq: 0,
            content_index: 0,
            output_index: 0,
            item_id: String::new(),
            first_delta_sent: false,
            tool_call_id: String::new(),
            tool_call_name: None,
            previous: Vec::new(),
            outcome: Outcome::default(),
            calls: Vec::new(),
            initial: Some(initial),
            finish: Some(finish),
            ended: false,
        }
    }

    /// Appends one event, numbering it.
    fn emit(&mut self, out: &mut String, mut ev: Value) {
        let kind = ev["type"].as_str().unwrap_or("").to_string();
        ev["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push_str(&format!("event: {kind}\ndata: {ev}\n\n"));
    }

    /// vLLM's `random_uuid()` (16 hex digits).
    fn uuid(&self) -> String {
        self.state.random_id()
    }

    fn text_part(text: &str, logprobs: Value) -> Value {
        json!({"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs})
    }

    fn message_item(&self, status: &str, content: Value) -> Value {
        json!({"id": self.item_id, "content": content, "role": "assistant",
               "status": status, "type": "message", "phase": null})
    }

    fn function_item(&self, arguments: &str, status: &str) -> Value {
        json!({"arguments": arguments, "call_id": self.tool_call_id,
               "name": self.tool_call_name, "type": "function_call",
               "id": self.item_id, "status": status})
    }

    /// The events for the first lines of the stream.
    fn start(&mut self, out: &mut String) {
        if let Some(initial) = self.initial.take() {
            for kind in ["response.created", "response.in_progress"] {
                let ev = json!({"response": initial, "sequence_number": 0, "type": kind});
                self.emit(out, ev);
            }
        }
    }

    /// One delta of the engine's output.
    fn on_delta(&mut self, d: Delta, out: &mut String) {
        if !self.first_delta_sent {
            self.item_id = self.uuid();
            if let Some((name, args)) = &d.tool_call {
                self.tool_call_id = format!("call_{}", self.uuid());
                self.tool_call_name = name.clone();
                let item = self.function_item(args.as_deref().unwrap_or(""), "in_progress");
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.added"});
                self.emit(out, ev);
            } else {
                let item = self.message_item("in_progress", json!([]));
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.added"});
                self.emit(out, ev);
                let ev = json!({"content_index": self.content_index, "item_id": self.item_id,
                                "output_index": self.output_index,
                                "part": Self::text_part("", json!([])),
                                "sequence_number": 0, "type": "response.content_part.added"});
                self.emit(out, ev);
            }
            self.first_delta_sent = true;
        }
        if let Some((name, args)) = &d.tool_call {
            if let Some(a) = args.as_deref().filter(|a| !a.is_empty()) {
                let ev = json!({"delta": a, "item_id": self.item_id,
                                "output_index": self.output_index, "sequence_number": 0,
                                "type": "response.function_call_arguments.delta"});
                self.emit(out, ev);
            } else if let Some(name) = name {
                // A tool call starting without arguments: vLLM closes the current (message)
                // item and opens a function call item.
                let ev = json!({"content_index": self.content_index, "item_id": self.item_id,
                                "logprobs": [], "output_index": self.output_index,
                                "sequence_number": 0, "text": "",
                                "type": "response.output_text.done"});
                self.emit(out, ev);
                let ev = json!({"content_index": self.content_index, "item_id": self.item_id,
                                "output_index": self.output_index,
                                "part": Self::text_part("", json!([])),
                                "sequence_number": 0, "type": "response.content_part.done"});
                self.emit(out, ev);
                let item = self.message_item("completed", json!([]));
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.done"});
                self.emit(out, ev);
                self.output_index += 1;
                self.item_id = self.uuid();
                self.tool_call_name = Some(name.clone());
                self.tool_call_id = format!("call_{}", self.uuid());
                let item = self.function_item("", "in_progress");
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.added"});
                self.emit(out, ev);
                self.content_index = 1;
                return;
            }
        } else if let Some(text) = d.content.as_deref().filter(|t| !t.is_empty()) {
            let ev = json!({"content_index": self.content_index, "delta": text,
                            "item_id": self.item_id, "logprobs": [],
                            "output_index": self.output_index, "sequence_number": 0,
                            "type": "response.output_text.delta"});
            self.emit(out, ev);
        }
        self.previous.push(d);
    }

    /// The `.done` events after the last output, then `response.completed`.
    fn end(&mut self, out: &mut String) {
        if let Some(last) = self.previous.last() {
            let args: String = self
                .previous
                .iter()
                .filter_map(|d| d.tool_call.as_ref())
                .map(|(_, a)| a.as_deref().unwrap_or(""))
                .collect();
            let last_has_text = last.content.as_deref().is_some_and(|t| !t.is_empty());
            if !args.is_empty() {
                let ev = json!({"arguments": args, "item_id": self.item_id,
                                "output_index": self.output_index, "sequence_number": 0,
                                "type": "response.function_call_arguments.done",
                                "name": self.tool_call_name});
                self.emit(out, ev);
                self.content_index = 0;
                let item = self.function_item(&args, "completed");
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.done"});
                self.emit(out, ev);
            } else if last_has_text {
                let text: String = self
                    .previous
                    .iter()
                    .filter_map(|d| d.content.as_deref())
                    .collect();
                let ev = json!({"content_index": self.content_index, "item_id": self.item_id,
                                "logprobs": [], "output_index": self.output_index,
                                "sequence_number": 0, "text": text,
                                "type": "response.output_text.done"});
                self.emit(out, ev);
                let part = Self::text_part(&text, Value::Null);
                let ev = json!({"content_index": self.content_index, "item_id": self.item_id,
                                "output_index": self.output_index, "part": part,
                                "sequence_number": 0, "type": "response.content_part.done"});
                self.emit(out, ev);
                let mut item = self.message_item("completed", json!([part]));
                item["summary"] = json!([]);
                let ev = json!({"item": item, "output_index": self.output_index,
                                "sequence_number": 0, "type": "response.output_item.done"});
                self.emit(out, ev);
            }
        }
        self.outcome.done = true;
        self.outcome.tool_calls = self
            .calls
            .iter()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function",
                       "function": {"name": name, "arguments": args}})
            })
            .collect();
        if let Some(finish) = self.finish.take() {
            let resp = finish(&self.outcome);
            let ev = json!({"response": resp, "sequence_number": 0,
                            "type": "response.completed"});
            self.emit(out, ev);
        }
    }

    /// The Responses events for one chat SSE event's data (`[DONE]` included).
    pub fn on_data(&mut self, data: &str) -> String {
        let mut out = String::new();
        if self.ended {
            return out;
        }
        self.start(&mut out);
        if data == "[DONE]" {
            self.ended = true;
            self.end(&mut out);
            return out;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => return out,
        };
        if let Some(err) = chunk.get("error") {
            // vLLM validates the error body as a stream event and ends the stream.
            self.ended = true;
            let ev = json!({"type": "error", "code": err["code"], "message": err["message"],
                            "param": err["param"], "sequence_number": 0});
            self.emit(&mut out, ev);
            return out;
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.outcome.input_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
            self.outcome.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0);
        }
        let Some(c) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return out;
        };
        if let Some(f) = c["finish_reason"].as_str() {
            self.outcome.finish_reason = Some(f.to_string());
        }
        let delta = &c["delta"];
        if delta.get("role").is_some() {
            // The chat route's role chunk is not an engine output.
            return out;
        }
        let content = delta["content"].as_str().map(str::to_string);
        if let Some(t) = &content {
            self.outcome.text.push_str(t);
        }
        let tool_call = delta["tool_calls"].as_array().and_then(|tcs| {
            for tc in tcs {
                let i = tc["index"].as_u64().unwrap_or(0) as usize;
                if self.calls.len() <= i {
                    self.calls.resize(i + 1, Default::default());
                }
                let call = &mut self.calls[i];
                if let Some(id) = tc["id"].as_str() {
                    call.0 = id.to_string();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    call.1 = n.to_string();
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    call.2.push_str(a);
                }
            }
            tcs.first().map(|tc| {
                (
                    tc["function"]["name"].as_str().map(str::to_string),
                    tc["function"]["arguments"].as_str().map(str::to_string),
                )
            })
        });
        if tool_call.is_none()
            && content.as_deref().unwrap_or("").is_empty()
            && !self.calls.is_empty()
        {
            // A tool parser's delta with nothing in it (vLLM's parser returns None).
            return out;
        }
        self.on_delta(Delta { content, tool_call }, &mut out);
        out
    }
}

/// The chat route's streamed response as the Responses API's stream.
pub fn convert(chat: Response, state: Arc<AppState>, initial: Value, finish: Finish) -> Response {
    let mut conv = ResponseStream::new(state, initial, finish);
    crate::routes_translate::restream(chat, move |data| conv.on_data(data))
}
