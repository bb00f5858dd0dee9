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
use bytes::{BufMut, BytesMut};
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

/// The chunk of a delta that carries text only (no log-probabilities, token ids, usage, echo
/// or finish: every chunk of a plain stream but its last), split around the text: the bytes
/// are those of [`CompletionStreamChunk`] itself, rendered once per choice, so a token costs
/// one string escape instead of the whole chunk's serialization.
pub(super) struct TextFrame {
    /// `data: ` and the chunk up to the text's opening quote.
    head: Vec<u8>,
    /// From after the text's closing quote to the event's end (`\n\n`).
    tail: Vec<u8>,
}

impl TextFrame {
    /// The frame of choice `index` of request `id` (created at `created`, for `model`).
    pub(super) fn new(id: &str, created: u64, model: &str, index: u32) -> TextFrame {
        let render = |text: &str| text_chunk(id, created, model, index, text);
        // Rendered with two one-character texts: the first byte where they differ is the
        // text's, between its quotes.
        let (a, b) = (render("a"), render("b"));
        let at = a
            .iter()
            .zip(b.iter())
            .position(|(x, y)| x != y)
            .expect("the texts differ");
        TextFrame {
            head: a[..at - 1].to_vec(),
            tail: a[at + 2..].to_vec(),
        }
    }

    /// Appends the event of a delta with text `text`.
    pub(super) fn push(&self, out: &mut BytesMut, text: &str) {
        out.extend_from_slice(&self.head);
        let mut w = out.writer();
        serde_json::to_writer(&mut w, text).expect("a string serializes");
        w.into_inner().extend_from_slice(&self.tail);
    }
}

/// The event of a text-only delta, rendered from [`CompletionStreamChunk`].
fn text_chunk(id: &str, created: u64, model: &str, index: u32, text: &str) -> BytesMut {
    let mut out = BytesMut::new();
    push_data(
        &mut out,
        &CompletionStreamChunk {
            id,
            object: "text_completion",
            created,
            model,
            choices: [CompletionStreamChoice {
                index,
                text,
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
                prompt_token_ids: None,
                token_ids: None,
            }],
            usage: None,
        },
    );
    out
}

impl EventStream {
    /// One delta's chunk; the echoed prompt comes before a choice's first text.
    pub(super) fn write_completion_delta(&mut self, out: &mut BytesMut, d: Delta) {
        let i = d.choice as usize;
        let plain = d.finish.is_none()
            && self.sub.logprobs.is_none()
            && !self.p.return_token_ids
            && !self.p.continuous_usage
            && (!self.p.echo || self.echoed[i]);
        if plain {
            self.sub.choices[i].text_chars_sent += d.text.chars().count();
            if self.text_frames.len() <= i {
                self.text_frames.resize_with(i + 1, || None);
            }
            let p = &self.p;
            self.text_frames[i]
                .get_or_insert_with(|| TextFrame::new(&p.id, p.created, &p.model, d.choice))
                .push(out, &d.text);
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_frame_renders_the_bytes_of_the_whole_chunk() {
        let texts = [
            "",
            " the",
            "a",
            "\"quoted\"",
            "back\\slash",
            "line\nbreak\t",
            "\u{1}\u{1f}",
            "é 漢字 🙂",
            "</script>",
            "data: [DONE]\n\n",
        ];
        for (id, model) in [("cmpl-abc", "m"), ("cmpl-\"x\"", "org/model \\ é")] {
            for index in [0, 7, 4095] {
                let frame = TextFrame::new(id, 1_700_000_000, model, index);
                for text in texts {
                    let mut out = BytesMut::new();
                    frame.push(&mut out, text);
                    assert_eq!(
                        out,
                        text_chunk(id, 1_700_000_000, model, index, text),
                        "{text:?}"
                    );
                }
            }
        }
    }
}
