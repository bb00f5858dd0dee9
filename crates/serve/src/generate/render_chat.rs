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
            Ok(ChatChoice {
                index: i as u32,
                message: ChatMessage {
                    role: "assistant",
                    content: &c.text,
                    refusal: None,
                    annotations: None,
                    audio: None,
                    function_call: None,
                    tool_calls: [],
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
    /// asked for).
    pub(super) fn write_chat_delta(&mut self, out: &mut BytesMut, d: Delta) {
        let i = d.choice as usize;
        if d.text.is_empty() && d.finish.is_none() && !self.p.return_token_ids {
            return;
        }
        let logprobs = self.sub.chat_logprobs(i, d.ids_from);
        let c = &self.sub.choices[i];
        let (reason, stop) = match &d.finish {
            Some((r, s)) => (Some(*r), Some(s.as_ref())),
            None => (None, None),
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
                        content: (!d.text.is_empty()).then_some(d.text.as_str()),
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
