//! Rendering of `/v1/completions` answers: the whole `text_completion` response, and the
//! streamed chunk of one delta (with the echoed prompt before a choice's first text).

use super::fanout::Submission;
use super::output::Delta;
use super::sse::{push_data, EventStream};
use super::{gone, Prepared};
use crate::errors::{ApiError, UnserializableBody};
use crate::protocol::{
    CompletionChoice, CompletionResponse, CompletionStreamChoice, CompletionStreamChunk, Usage,
};
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, Ordering};

/// The whole answer of a finished completions request, serialized; stops early once
/// `cancelled` is set.
pub(super) fn full_body(
    sub: &Submission,
    p: &Prepared,
    cancelled: &AtomicBool,
    usage: Usage,
) -> Result<Vec<u8>, ApiError> {
    let texts: Vec<String> = sub
        .choices
        .iter()
        .map(|c| match (&p.echo, &p.prompts[c.prompt].text) {
            (true, Some(t)) => format!("{t}{}", c.text),
            _ => c.text.clone(),
        })
        .collect();
    let choices = sub
        .choices
        .iter()
        .zip(&texts)
        .enumerate()
        .map(|(i, (c, text))| {
            if cancelled.load(Ordering::Relaxed) {
                return Err(gone());
            }
            let (reason, stop) = c.finished.as_ref().expect("finished");
            let echo = p
                .echo
                .then(|| p.prompts[c.prompt].echo_logprobs.as_ref())
                .flatten();
            Ok(CompletionChoice {
                index: i as u32,
                text,
                logprobs: sub.completion_logprobs(i, 0, echo, 0),
                finish_reason: Some(reason),
                stop_reason: stop.as_ref(),
                token_ids: p.return_token_ids.then_some(&c.token_ids[..]),
                prompt_logprobs: None,
                prompt_token_ids: p.return_token_ids.then_some(&p.prompts[c.prompt].ids[..]),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let body = serde_json::to_vec(&CompletionResponse {
        id: &p.id,
        object: "text_completion",
        created: p.created,
        model: &p.model,
        choices,
        service_tier: None,
        system_fingerprint: None,
        usage: usage.into(),
        kv_transfer_params: None,
    })
    .map_err(UnserializableBody)?;
    Ok(body)
}

impl EventStream {
    /// One delta's chunk; the echoed prompt comes before a choice's first text.
    pub(super) fn write_completion_delta(&mut self, out: &mut BytesMut, d: Delta) {
        let i = d.choice as usize;
        let mut text = d.text;
        let output_chars = text.chars().count();
        let prompt = &self.p.prompts[self.sub.choices[i].prompt];
        let mut echo = None;
        if self.p.echo && !self.echoed[i] {
            self.echoed[i] = true;
            echo = prompt.echo_logprobs.as_ref();
            if let Some(t) = &prompt.text {
                text = format!("{t}{text}");
            }
        }
        let offset = self.sub.choices[i].text_chars_sent;
        let logprobs = self.sub.completion_logprobs(i, d.ids_from, echo, offset);
        // vLLM's `previous_text_lens` counts output text only, not the echoed prompt.
        self.sub.choices[i].text_chars_sent += output_chars;
        let c = &self.sub.choices[i];
        let (reason, stop) = match &d.finish {
            Some((r, s)) => (Some(*r), s.as_ref()),
            None => (None, None),
        };
        let first_ids = self.p.return_token_ids && d.ids_from == 0;
        push_data(
            out,
            &CompletionStreamChunk {
                id: &self.p.id,
                object: "text_completion",
                created: self.p.created,
                model: &self.p.model,
                choices: [CompletionStreamChoice {
                    index: d.choice,
                    text: &text,
                    logprobs,
                    finish_reason: reason,
                    stop_reason: stop,
                    prompt_token_ids: first_ids.then_some(&self.p.prompts[c.prompt].ids[..]),
                    token_ids: self
                        .p
                        .return_token_ids
                        .then_some(&c.token_ids[d.ids_from..]),
                }],
                usage: self.p.continuous_usage.then(|| self.usage_of(i).into()),
            },
        );
    }
}
