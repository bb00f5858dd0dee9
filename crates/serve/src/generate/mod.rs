//! From a parsed request to engine requests and back: vLLM's serving layer
//! (`completion/serving.py`, `chat_completion/serving.py`) and output processor
//! (`v1/engine/output_processor.py`): validation with vLLM's messages, one engine request per
//! prompt and choice, detokenization and stop strings per choice, SSE chunks or one response.
//!
//! This module holds the request flow; `validate`, `fanout`, `output`, `sse`,
//! `render_completions` and `render_chat` each hold one step of it.

mod fanout;
mod output;
mod render_chat;
mod render_completions;
mod sse;
mod validate;

pub use fanout::{check_fan_out, MAX_CHOICES_PER_REQUEST};
pub use output::{build_echo_logprobs, echo_salt};
pub use sse::{start_stream, EventStream, SSE_WRITE_COALESCE_BYTES};
pub use validate::{
    check_max_output, check_prompt_ids, check_request_template, check_truncation,
    prompt_max_tokens, truncate_prompt, verify_sampling, MAX_LOGPROBS, MAX_STOP_BYTES,
    MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS,
};

use crate::errors::ApiError;
use crate::logprobs::EchoLogprobs;
use crate::protocol::Usage;
use crate::state::AppState;
use crate::structured::{Constraint, ToolChoice};
use fanout::Submission;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which endpoint a request came through (chunk shapes differ).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// One prompt, tokenized.
pub struct Prompt {
    pub ids: Arc<[u32]>,
    /// The prompt's text, for `echo`.
    pub text: Option<String>,
    /// `max_tokens` after vLLM's `get_max_tokens`.
    pub max_tokens: u32,
    /// With `echo` and `logprobs` (completions): the prompt's part of every choice's
    /// `logprobs`, built once on the text workers.
    pub echo_logprobs: Option<Arc<EchoLogprobs>>,
}

/// A validated request, ready for the engine.
pub struct Prepared {
    pub endpoint: Endpoint,
    /// `cmpl-…` / `chatcmpl-…`.
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompts: Vec<Prompt>,
    pub n: u32,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    pub return_token_ids: bool,
    pub echo: bool,
    pub stop: Vec<String>,
    pub include_stop_str_in_output: bool,
    pub skip_special_tokens: bool,
    pub spaces_between_special_tokens: bool,
    pub min_tokens: u32,
    pub ignore_eos: bool,
    pub stop_token_ids: Vec<u32>,
    pub priority: i32,
    pub cache_salt: Option<String>,
    /// The OpenAI `user` field: the tenant of per-tenant scheduling policies.
    pub user: Option<String>,
    /// The request's `max_tokens` as sent (for `vllm:request_params_max_tokens`).
    pub max_tokens_param: Option<u32>,
    /// Top log-probabilities asked for per output token (completions' `logprobs`, chat's
    /// `top_logprobs` when `logprobs` is true); `None`: no log-probabilities.
    pub logprobs: Option<i64>,
    /// What the output must be (structured outputs, `response_format`); `None`: free text.
    pub constraint: Option<Constraint>,
    /// Chat's `tool_choice` resolved against `tools` and the server's flags.
    pub tool_choice: ToolChoice,
    /// The request's `seed`: the same seed and request give the same tokens.
    pub seed: Option<i64>,
    /// An injected mid-way failure ([`crate::fault`]): the request fails once its choices
    /// have this many output tokens together, unless it ended before.
    pub fail_after_tokens: Option<u64>,
}

/// Set when the response a text job builds is no longer wanted (its client went away), so the
/// job stops early.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs a request to the end and builds the JSON response. Waiting for the engine happens here
/// (dropping this future, as hyper does when the client goes away, aborts the engine requests);
/// building and serializing the answer, which can be a hundred megabytes for a request of a
/// hundred bytes (`n` 2048 with `logprobs` 20), runs on the text workers and stops if the
/// client goes away meanwhile.
pub async fn respond_full(state: Arc<AppState>, p: Prepared) -> Result<Vec<u8>, ApiError> {
    let mut sub = Submission::start(&state, &p)?;
    let mut pace =
        crate::frontend_pace::Pacer::new(&state, p.prompts.iter().map(|x| x.ids.len()).sum());
    while sub.unfinished > 0 {
        let Some((tag, ev)) = pace.recv(&mut sub.rx).await else {
            return Err(ApiError::EngineDead);
        };
        if let Some(d) = sub.apply(tag, ev) {
            sub.choices[d.choice as usize].text.push_str(&d.text);
        }
        if sub.fails_now(p.fail_after_tokens) {
            // Dropping the submission aborts its engine requests.
            return Err(crate::fault::mid_stream_error());
        }
    }
    if let Some(e) = sub.error.take() {
        return Err(e);
    }
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = cancel.0.clone();
    let body = state
        .text_jobs
        .run(move || render_full(&sub, &p, &cancelled))
        .await?;
    drop(cancel);
    body
}

/// The client went away while its answer was being built.
fn gone() -> ApiError {
    ApiError::Internal("the client went away".into())
}

/// The whole answer of a finished request, serialized; stops early once `cancelled` is set.
fn render_full(
    sub: &Submission,
    p: &Prepared,
    cancelled: &AtomicBool,
) -> Result<Vec<u8>, ApiError> {
    let prompt_tokens: u64 = p.prompts.iter().map(|x| x.ids.len() as u64).sum();
    let completion_tokens: u64 = sub.choices.iter().map(|c| c.num_tokens).sum();
    let usage = Usage::new(prompt_tokens, completion_tokens);
    match p.endpoint {
        Endpoint::Completions => render_completions::full_body(sub, p, cancelled, usage),
        Endpoint::Chat => render_chat::full_body(sub, p, cancelled, usage),
    }
}
