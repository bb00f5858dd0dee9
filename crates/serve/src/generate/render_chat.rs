//! Rendering of `/v1/chat/completions` answers: the whole `chat.completion` response, and the
//! streamed chunks (every choice's role chunk first, then one chunk per delta).

use super::fanout::Submission;
use super::output::Delta;
use super::sse::{push_data, EventStream, SSE_WRITE_COALESCE_BYTES};
use super::{gone, Endpoint, Prepared};
use crate::errors::{ApiError, UnserializableBody};
use crate::protocol::{
    ChatChoice, ChatDeltaChoice, ChatDeltaChunk, ChatMessage, ChatResponse, ChatRoleChoice,
    ChatRoleChunk, Usage,
};
use crate::protocol_tools::{DeltaFunctionCall, DeltaToolCall, FunctionCall, ToolCall};
use crate::structured::tools::{args_in_delta, calls_in, ToolKind};
use crate::structured::ToolPlan;
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, Ordering};

/// The whole answer of a finished chat request, serialized; stops early once `cancelled` is
/// set.
pub(super) fn full_body(
    sub: &Submission,
    p: &Prepared,
    cancelled: &AtomicBool,
    usage: Usage,
) -> Result<Vec<u8>, ApiError> {
    let choices = sub
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if cancelled.load(Ordering::Relaxed) {
                return Err(gone());
            }
            let (reason, stop) = c.finished.as_ref().expect("finished");
            let (content, tool_calls, reason) = match &c.tool {
                None => (Some(c.text.as_str()), Vec::new(), *reason),
                Some(plan) => tool_message(plan, &c.text, reason),
            };
            Ok(ChatChoice {
                index: i as u32,
                message: ChatMessage {
                    role: "assistant",
                    content,
                    refusal: None,
                    annotations: None,
                    audio: None,
                    function_call: None,
                    tool_calls,
                    reasoning: None,
                },
                logprobs: sub.chat_logprobs(i, 0),
                finish_reason: reason,
                stop_reason: stop.as_ref(),
                token_ids: p.return_token_ids.then_some(&c.token_ids[..]),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let body = serde_json::to_vec(&ChatResponse {
        id: &p.id,
        object: "chat.completion",
        created: p.created,
        model: &p.model,
        choices,
        service_tier: None,
        system_fingerprint: None,
        usage: usage.into(),
        prompt_logprobs: None,
        prompt_token_ids: p.return_token_ids.then_some(&p.prompts[0].ids[..]),
        kv_transfer_params: None,
    })
    .map_err(UnserializableBody)?;
    Ok(body)
}

impl EventStream {
    /// Chat: writes the role chunks not yet written while the write has room; true once all
    /// are out (always for completions).
    pub(super) fn write_roles(&mut self, out: &mut BytesMut) -> bool {
        if self.p.endpoint != Endpoint::Chat {
            return true;
        }
        let prompt_len = self.p.prompts[0].ids.len() as u64;
        while self.roles_written < self.sub.choices.len() {
            if out.len() >= SSE_WRITE_COALESCE_BYTES {
                return false;
            }
            push_data(
                out,
                &ChatRoleChunk {
                    id: &self.p.id,
                    object: "chat.completion.chunk",
                    created: self.p.created,
                    model: &self.p.model,
                    choices: [ChatRoleChoice {
                        index: self.roles_written as u32,
                        delta: crate::protocol::Delta {
                            role: Some("assistant"),
                            content: Some(""),
                            tool_calls: None,
                        },
                        logprobs: None,
                        finish_reason: None,
                    }],
                    usage: self.p.continuous_usage.then(|| Usage::new(prompt_len, 0)),
                    prompt_token_ids: self
                        .p
                        .return_token_ids
                        .then_some(&self.p.prompts[0].ids[..]),
                },
            );
            self.roles_written += 1;
        }
        true
    }

    /// One delta's chunk; nothing for an empty delta that ends nothing (unless token ids are
    /// asked for). A tool-call choice sends its arguments as tool-call deltas instead of
    /// content.
    pub(super) fn write_chat_delta(&mut self, out: &mut BytesMut, d: Delta) {
        let i = d.choice as usize;
        let tool_delta = self.tool_delta(&d);
        let carries = match &self.sub.choices[i].tool {
            Some(_) => tool_delta.is_some(),
            None => !d.text.is_empty(),
        };
        if !carries && d.finish.is_none() && !self.p.return_token_ids {
            return;
        }
        let logprobs = self.sub.chat_logprobs(i, d.ids_from);
        let c = &self.sub.choices[i];
        let (reason, stop) = match &d.finish {
            Some((r, s)) => (Some(tool_finish(c, r)), Some(s.as_ref())),
            None => (None, None),
        };
        let content = match c.tool {
            Some(_) => None,
            None => (!d.text.is_empty()).then_some(d.text.as_str()),
        };
        let tool_calls = match (&tool_delta, &c.tool) {
            (Some(t), Some(plan)) => Some(tool_call_deltas(t, plan, &d.text[t.args.clone()])),
            _ => None,
        };
        push_data(
            out,
            &ChatDeltaChunk {
                id: &self.p.id,
                object: "chat.completion.chunk",
                created: self.p.created,
                model: &self.p.model,
                choices: [ChatDeltaChoice {
                    index: d.choice,
                    delta: crate::protocol::Delta {
                        role: None,
                        content,
                        tool_calls,
                    },
                    logprobs,
                    finish_reason: reason,
                    stop_reason: stop,
                    token_ids: self
                        .p
                        .return_token_ids
                        .then_some(&c.token_ids[d.ids_from..]),
                }],
                usage: self.p.continuous_usage.then(|| self.usage_of(i)),
            },
        );
    }
}

/// The tool-call part of a delta about to be written.
struct ToolStep {
    /// The call's first delta: id, type and name go with it.
    first: bool,
    /// `index`: the choice's for a named function (vLLM's streaming uses `i`), the call's
    /// place in the list otherwise.
    index: u32,
    /// Later deltas of `"required"` carry `name: null` (vLLM sets `name=None` explicitly).
    name_null: bool,
    /// Bytes of the delta's text that are arguments.
    args: std::ops::Range<usize>,
}

impl EventStream {
    /// The tool-call part of delta `d` (its bytes that are arguments), advancing the choice's
    /// streamed position; `None` when the choice is text or the delta has no arguments.
    fn tool_delta(&mut self, d: &Delta) -> Option<ToolStep> {
        let c = &mut self.sub.choices[d.choice as usize];
        let from = c.text_bytes_sent;
        c.text_bytes_sent += d.text.len();
        let plan = c.tool.as_ref()?;
        let args = args_in_delta(plan, from, d.text.len());
        if args.is_empty() {
            return None;
        }
        let first = !c.tool_started;
        c.tool_started = true;
        Some(ToolStep {
            first,
            index: if plan.kind == ToolKind::Named {
                d.choice
            } else {
                0
            },
            name_null: !first && plan.kind == ToolKind::Required,
            args,
        })
    }
}

/// The tool-call entries of one delta. A named function and `"required"` send id, type,
/// name and the first arguments together (`serving_chat.py`); `"auto"` sends them as the
/// Hermes parser does (`hermes_tool_parser.py`): an entry with id, type and name only, then one
/// with the arguments.
fn tool_call_deltas<'a>(t: &ToolStep, plan: &'a ToolPlan, args: &'a str) -> Vec<DeltaToolCall<'a>> {
    let header = |arguments| DeltaToolCall {
        id: Some(plan.id.as_str()),
        kind: Some("function"),
        index: t.index,
        function: DeltaFunctionCall {
            name: Some(Some(plan.name.as_str())),
            arguments,
        },
    };
    let more = DeltaToolCall {
        id: None,
        kind: None,
        index: t.index,
        function: DeltaFunctionCall {
            name: t.name_null.then_some(None),
            arguments: Some(args),
        },
    };
    match (t.first, plan.kind) {
        (true, ToolKind::Auto) => vec![header(None), more],
        (true, _) => vec![header(Some(args))],
        (false, _) => vec![more],
    }
}

/// The finish reason of a streamed choice: `"tool_calls"` once a `"required"` or `"auto"` call
/// was streamed (vLLM: `tools_streamed and not named`), else the engine's.
fn tool_finish(c: &super::output::Choice, engine_reason: &'static str) -> &'static str {
    match &c.tool {
        Some(p) if p.kind != ToolKind::Named && c.tool_started => "tool_calls",
        _ => engine_reason,
    }
}

/// Content, tool calls and finish reason of a finished tool-call choice, as vLLM's
/// `chat_completion_full_generator` builds them: a named function gets `content: ""` and the
/// engine's reason; `"required"` gets `content: ""`, the calls its text parses to, and
/// `"tool_calls"` when the engine stopped; `"auto"` gets the calls with `content: null` and
/// `"tool_calls"`, or its text as content when it does not parse.
fn tool_message<'a>(
    plan: &ToolPlan,
    text: &'a str,
    reason: &'static str,
) -> (Option<&'a str>, Vec<ToolCall>, &'static str) {
    let calls: Vec<ToolCall> = calls_in(plan, text)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, arguments)| ToolCall {
            id: plan.id.clone(),
            kind: "function",
            function: FunctionCall { name, arguments },
        })
        .collect();
    match plan.kind {
        ToolKind::Named => (Some(""), calls, reason),
        ToolKind::Required => {
            let r = if reason == "stop" {
                "tool_calls"
            } else {
                reason
            };
            (Some(""), calls, r)
        }
        ToolKind::Auto if calls.is_empty() => (Some(text), calls, reason),
        ToolKind::Auto => (None, calls, "tool_calls"),
    }
}
