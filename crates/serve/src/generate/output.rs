//! Output processing, as vLLM's `OutputProcessor` (`v1/engine/output_processor.py`): each
//! engine event of a choice detokenized with its stop strings, its synthetic
//! log-probabilities, and the finish reason (an engine refusal becomes the request's error).

use super::fanout::Submission;
use crate::engine_loop::{EngineEvent, Finish};
use crate::errors::ApiError;
use crate::logprobs::{
    chat_logprobs, completion_logprobs, echo_logprobs, synthesize, ChatLogprobs, ChoiceLogprobs,
    EchoLogprobs, PositionLogprobs,
};
use crate::protocol::StopReason;
use crate::structured::ToolPlan;
use crate::text::{Detokenizer, TextCodec};
use llm_emu_core::FinishReason;
use std::sync::Arc;

/// The salt of the synthetic log-probabilities of prompt `pi` of request `id` (the same for
/// every choice: prompt log-probabilities depend on the prompt only).
pub fn echo_salt(id: &str, pi: usize) -> u64 {
    !hash_str(id) ^ (pi as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The echoed prompt's log-probabilities with `num_top` top tokens per position: CPU work
/// proportional to the prompt's length, for the text workers.
pub fn build_echo_logprobs(
    codec: &dyn TextCodec,
    ids: &[u32],
    num_top: usize,
    salt: u64,
) -> EchoLogprobs {
    echo_logprobs(ids, num_top, salt, &|h| codec.alternative_token(h), &|id| {
        codec.decode(&[id], false).unwrap_or_default()
    })
}

/// A stable hash of a string (FNV-1a), to key a choice's synthetic values.
pub(super) fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One choice's output processing state.
pub(super) struct Choice {
    pub(super) prompt: usize,
    pub(super) detok: Box<dyn Detokenizer>,
    pub(super) token_ids: Vec<u32>,
    pub(super) text: String,
    pub(super) num_tokens: u64,
    pub(super) finished: Option<(&'static str, Option<StopReason>)>,
    pub(super) engine_id: String,
    /// The engine no longer holds it (finished or aborted there).
    pub(super) engine_done: bool,
    /// Synthetic log-probabilities of each output token, when the request asks for them.
    pub(super) logprobs: Vec<PositionLogprobs>,
    /// Keys this choice's synthetic log-probabilities.
    pub(super) salt: u64,
    /// Characters of output text sent so far (vLLM's `previous_text_lens`, the base of
    /// streamed completion `text_offset`s).
    pub(super) text_chars_sent: usize,
    /// When the choice's text is a tool call: what it calls and where its arguments are.
    pub(super) tool: Option<ToolPlan>,
    /// Bytes of output text streamed so far (tool-call argument fragments are cut by them).
    pub(super) text_bytes_sent: usize,
    /// The first delta of the tool call (id, type, name) went out.
    pub(super) tool_started: bool,
    /// The engine request has a script registered (cleared when the submission ends).
    pub(super) scripted: bool,
}

/// What one event produced for one choice.
pub(super) struct Delta {
    pub(super) choice: u32,
    pub(super) text: String,
    pub(super) ids_from: usize,
    pub(super) finish: Option<(&'static str, Option<StopReason>)>,
}

impl Submission {
    /// A token's text as vLLM shows it in log-probabilities (`tokenizer.decode([id])`).
    fn token_text(&self, id: u32) -> String {
        self.codec.decode(&[id], false).unwrap_or_default()
    }

    /// Completions `logprobs` of choice `i`: the echoed prompt's part when `echo` is given (shared,
    /// built once per prompt), then output tokens `from..`, whose offsets count characters from
    /// `initial_text_offset` (plus the echoed prompt's); `None` unless the request asked for them.
    pub(super) fn completion_logprobs(
        &self,
        i: usize,
        from: usize,
        echo: Option<&Arc<EchoLogprobs>>,
        initial_text_offset: usize,
    ) -> Option<ChoiceLogprobs> {
        let n = self.logprobs?.max(0) as usize;
        let c = &self.choices[i];
        let positions: Vec<(u32, Option<&PositionLogprobs>)> = c.token_ids[from..]
            .iter()
            .zip(&c.logprobs[from..])
            .map(|(&t, lp)| (t, Some(lp)))
            .collect();
        let start = initial_text_offset + echo.map_or(0, |e| e.chars);
        Some(ChoiceLogprobs {
            echo: echo.cloned(),
            output: completion_logprobs(&positions, n, start, &|id| self.token_text(id)),
        })
    }

    /// Chat `logprobs` of choice `i` for output tokens `from..`; `None` unless asked for.
    pub(super) fn chat_logprobs(&self, i: usize, from: usize) -> Option<ChatLogprobs> {
        let n = self.logprobs?;
        let c = &self.choices[i];
        let positions: Vec<(u32, &PositionLogprobs)> = c.token_ids[from..]
            .iter()
            .copied()
            .zip(&c.logprobs[from..])
            .collect();
        Some(chat_logprobs(&positions, n, &|id| self.token_text(id)))
    }

    /// Applies one engine event; returns the choice's output, if it has one.
    pub(super) fn apply(&mut self, tag: u32, ev: EngineEvent) -> Option<Delta> {
        let c = self.choices.get_mut(tag as usize)?;
        if c.finished.is_some() {
            if !matches!(ev, EngineEvent::Token { finish: None, .. }) {
                c.engine_done = true;
            }
            return None;
        }
        let ids_from = c.token_ids.len();
        let (text, finish) = match ev {
            EngineEvent::Rejected(e) => {
                c.engine_done = true;
                c.finished = Some(("error", None));
                self.unfinished -= 1;
                self.error.get_or_insert(ApiError::from(e));
                return None;
            }
            EngineEvent::Finished(f) => {
                c.engine_done = true;
                (c.detok.finish(), Some(finish_of(&f)))
            }
            EngineEvent::Token {
                token,
                finish,
                step_end,
            } => {
                let first = c.num_tokens == 0;
                let taken = self.engine.clock.now();
                if let Some(n) = self.logprobs {
                    let codec = &self.codec;
                    let lp = synthesize(token, c.token_ids.len(), n.max(0) as usize, c.salt, |h| {
                        codec.alternative_token(h)
                    });
                    c.logprobs.push(lp);
                }
                c.token_ids.push(token);
                c.num_tokens += 1;
                let stop_terminated = finish
                    .as_ref()
                    .is_some_and(|f| f.reason == FinishReason::Stop);
                let detokenized = c.detok.update(token, stop_terminated, finish.is_some());
                if first {
                    // The first step primes the detokenizer with the whole prompt.
                    let done = self.engine.clock.now();
                    if let Ok(mut s) = self.engine.delivery.lock() {
                        s.record_first_token(taken.saturating_sub(step_end), done - taken);
                    }
                }
                let step = match detokenized {
                    Ok(s) => s,
                    Err(e) => {
                        // Output tokens come from the engine, not the request: whatever their
                        // detokenizing fails on is the server's fault.
                        self.error.get_or_insert(ApiError::Internal(e.to_string()));
                        Default::default()
                    }
                };
                let text = step.delta;
                if let Some(s) = step.stop_matched {
                    // vLLM's output processor ends the request on a stop string and aborts it
                    // in the engine.
                    if finish.is_none() {
                        self.engine.stop(&c.engine_id);
                    }
                    c.engine_done = true;
                    (text, Some(("stop", Some(StopReason::Text(s)))))
                } else if let Some(f) = finish {
                    c.engine_done = true;
                    (text, Some(finish_of(&f)))
                } else {
                    (text, None)
                }
            }
        };
        if finish.is_some() {
            c.finished = finish.clone();
            self.unfinished -= 1;
        }
        Some(Delta {
            choice: tag,
            text,
            ids_from,
            finish,
        })
    }
}

fn finish_of(f: &Finish) -> (&'static str, Option<StopReason>) {
    (f.reason.as_str(), f.stop_token.map(StopReason::Token))
}
