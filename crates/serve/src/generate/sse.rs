//! The SSE stream of a request: engine events become `data:` chunks, coalesced into writes of
//! bounded size, then the usage chunk and `[DONE]`; an error after the response started is sent
//! as a `data: {"error":…}` event.

use super::fanout::Submission;
use super::output::Delta;
use super::{Endpoint, Prepared};
use crate::engine_loop::EngineEvent;
use crate::errors::ApiError;
use crate::frontend_pace::Pacer;
use crate::protocol::{Usage, UsageChunk};
use crate::state::AppState;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Bytes after which an SSE write stops taking in further queued events. One write is at most
/// this plus the chunks of one event (one delta chunk, or the last role chunk), so a reader that
/// falls behind makes the server hold at most about this much per write; hyper stops polling a
/// response body once its write buffer holds about 400 KiB, so a connection that does not read
/// costs a bounded amount of memory whatever the request's id length or `n`.
pub const SSE_WRITE_COALESCE_BYTES: usize = 64 << 10;

/// The SSE stream of a request: the engine requests are submitted before the response starts
/// (so refusals become HTTP errors), events become `data:` chunks, and what is already queued
/// is written together, up to [`SSE_WRITE_COALESCE_BYTES`] per write.
pub struct EventStream {
    pub(super) sub: Submission,
    pub(super) p: Prepared,
    /// Chat: role chunks written so far (vLLM sends every choice's role chunk before the
    /// request's first output; they may span several writes).
    pub(super) roles_written: usize,
    /// A delta waiting for the role chunks before it.
    pub(super) held: Option<Delta>,
    pub(super) echoed: Vec<bool>,
    /// Per choice, its text-only chunk, rendered at its first use.
    pub(super) text_frames: Vec<Option<super::render_completions::TextFrame>>,
    pub(super) done: bool,
    /// Hands events over as a real server's front end would (`--frontend-latency`).
    pace: Pacer<(u32, EngineEvent)>,
}

/// Submits the request; errors (engine gone) come back before any byte is sent.
pub fn start_stream(state: &Arc<AppState>, p: Prepared) -> Result<EventStream, ApiError> {
    let sub = Submission::start(state, &p)?;
    let n = sub.choices.len();
    let pace = Pacer::new(state, p.prompts.iter().map(|x| x.ids.len()).sum());
    Ok(EventStream {
        pace,
        sub,
        p,
        roles_written: 0,
        held: None,
        echoed: vec![false; n],
        text_frames: Vec::new(),
        done: false,
    })
}

pub(super) fn push_data(out: &mut BytesMut, json: &impl serde::Serialize) {
    out.put_slice(b"data: ");
    let mut w = out.writer();
    serde_json::to_writer(&mut w, json).expect("chunks serialize");
    let out = w.into_inner();
    out.put_slice(b"\n\n");
}

impl EventStream {
    /// The response body that sends this stream, holding `guard` until the body is dropped.
    pub fn into_body<G: Send + Unpin + 'static>(self, guard: G) -> SseBody<G> {
        SseBody {
            stream: self,
            _guard: guard,
        }
    }

    /// The next bytes to send, `Ready(None)` when the stream has ended; polled from the
    /// response body's `poll_frame`, so waiting for the first event registers `cx` with the
    /// request's channel (and pacing timer).
    pub fn poll_next_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.held.is_none() {
            // Wait for one event, then take what else is queued.
            let Some((tag, ev)) = ready!(self.pace.poll_recv(&mut self.sub.rx, cx)) else {
                self.done = true;
                let mut out = BytesMut::with_capacity(512);
                push_data(&mut out, &error_json(&ApiError::EngineDead));
                out.put_slice(b"data: [DONE]\n\n");
                return Poll::Ready(Some(out.freeze()));
            };
            self.held = self.sub.apply(tag, ev);
        }
        Poll::Ready(Some(self.write_queued()))
    }

    /// Writes the held delta and what else is queued (up to [`SSE_WRITE_COALESCE_BYTES`]),
    /// then the stream's end if every choice has finished.
    fn write_queued(&mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(512);
        loop {
            if let Some(d) = self.held.take() {
                if !self.write_roles(&mut out) {
                    self.held = Some(d);
                    return out.freeze();
                }
                self.write_delta(&mut out, d);
            }
            if self.sub.unfinished == 0 || out.len() >= SSE_WRITE_COALESCE_BYTES {
                break;
            }
            match self.pace.try_recv(&mut self.sub.rx) {
                Some((tag, ev)) => self.held = self.sub.apply(tag, ev),
                None => break,
            }
        }
        if self.sub.fails_now(self.p.fail_after_tokens) {
            // An injected mid-way failure: the stream ends with the error, and dropping the
            // submission aborts the engine requests.
            self.sub.unfinished = 0;
            self.sub.error = Some(crate::fault::mid_stream_error());
        }
        if self.sub.unfinished == 0 {
            self.done = true;
            if let Some(e) = self.sub.error.take() {
                push_data(&mut out, &error_json(&e));
            } else if self.p.include_usage {
                self.write_usage(&mut out);
            }
            out.put_slice(b"data: [DONE]\n\n");
        }
        out.freeze()
    }

    pub(super) fn usage_of(&self, choice: usize) -> Usage {
        let c = &self.sub.choices[choice];
        Usage::new(self.p.prompts[c.prompt].ids.len() as u64, c.num_tokens)
    }

    fn write_usage(&self, out: &mut BytesMut) {
        let prompt: u64 = match self.p.endpoint {
            Endpoint::Completions => self.p.prompts.iter().map(|x| x.ids.len() as u64).sum(),
            Endpoint::Chat => self.p.prompts[0].ids.len() as u64,
        };
        let completion = self.sub.choices.iter().map(|c| c.num_tokens).sum();
        push_data(
            out,
            &UsageChunk {
                id: &self.p.id,
                object: match self.p.endpoint {
                    Endpoint::Completions => "text_completion",
                    Endpoint::Chat => "chat.completion.chunk",
                },
                created: self.p.created,
                model: &self.p.model,
                choices: [],
                usage: Usage::new(prompt, completion),
            },
        );
    }

    fn write_delta(&mut self, out: &mut BytesMut, d: Delta) {
        match self.p.endpoint {
            Endpoint::Completions => self.write_completion_delta(out, d),
            Endpoint::Chat => self.write_chat_delta(out, d),
        }
    }
}

/// The body of a streamed response: polls its [`EventStream`] directly, one frame per write.
pub struct SseBody<G> {
    stream: EventStream,
    /// Held while the body lives (the request's count in the server's load).
    _guard: G,
}

impl<G: Send + Unpin + 'static> HttpBody for SseBody<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.stream
            .poll_next_bytes(cx)
            .map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.done
    }
}

/// An error sent inside a stream (vLLM's `create_streaming_error_response`).
fn error_json(e: &ApiError) -> serde_json::Value {
    serde_json::from_str(&e.body()).unwrap_or(serde_json::Value::Null)
}
