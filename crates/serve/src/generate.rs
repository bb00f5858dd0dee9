//! From a parsed request to engine requests and back: vLLM's serving layer
//! (`completion/serving.py`, `chat_completion/serving.py`) and output processor
//! (`v1/engine/output_processor.py`): validation with vLLM's messages, one engine request per
//! prompt and choice, detokenization and stop strings per choice, SSE chunks or one response.

use crate::engine_loop::{EngineEvent, EngineHandle, Finish};
use crate::errors::ApiError;
use crate::logprobs::{
    chat_logprobs, completion_logprobs, echo_logprobs, synthesize, ChatLogprobs, ChoiceLogprobs,
    EchoLogprobs, PositionLogprobs,
};
use crate::protocol::*;
use crate::state::AppState;
use crate::text::{DetokOptions, Detokenizer, SharedCodec, TextCodec};
use bytes::{BufMut, Bytes, BytesMut};
use llm_emu_core::{FinishReason, NewRequest, RequestError, SamplingParams};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

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
    /// The request's `max_tokens` as sent (for `vllm:request_params_max_tokens`).
    pub max_tokens_param: Option<u32>,
    /// Top log-probabilities asked for per output token (completions' `logprobs`, chat's
    /// `top_logprobs` when `logprobs` is true); `None`: no log-probabilities.
    pub logprobs: Option<i64>,
}

/// vLLM's `max_logprobs` (`ModelConfig`, default 20): the most log-probabilities a request may
/// ask for; −1 asks for the whole vocabulary.
pub const MAX_LOGPROBS: i64 = 20;

/// `SamplingParams._validate_logprobs` for one kind (`kind`: "sample" for `logprobs`, "prompt"
/// for `prompt_logprobs`).
fn check_max_logprobs(
    logprobs: Option<i64>,
    vocab_size: Option<usize>,
    kind: &str,
    param: &str,
) -> Result<(), ApiError> {
    let Some(n) = logprobs.filter(|&n| n != 0) else {
        return Ok(());
    };
    let n = if n == -1 {
        vocab_size.map_or(i64::MAX, |v| v as i64)
    } else {
        n
    };
    if n > MAX_LOGPROBS {
        return Err(ApiError::invalid_param(
            &format!(
                "Requested {kind} logprobs of {n}, which is greater than max allowed: \
                 {MAX_LOGPROBS}"
            ),
            param,
            n,
        ));
    }
    Ok(())
}

/// `SamplingParams.from_optional`'s `int(token)` of each `logit_bias` key: Python's `int()` of
/// a string (surrounding whitespace, a sign, `_` between digits).
fn logit_bias_ids(bias: &LogitBias) -> Result<Vec<i64>, ApiError> {
    bias.0
        .iter()
        .map(|(key, _)| {
            let t = key.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            let well_formed = !digits.is_empty()
                && !digits.starts_with('_')
                && !digits.ends_with('_')
                && !digits.contains("__")
                && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
            let parsed = well_formed
                .then(|| t.replace('_', "").parse::<i64>().ok())
                .flatten();
            parsed.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid literal for int() with base 10: {}",
                    py_repr(key)
                ))
            })
        })
        .collect()
}

/// A string as Python's `repr` writes it (enough for error messages: quotes and backslashes).
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// `SamplingParams._validate_logit_bias`: every id inside the vocabulary.
fn check_logit_bias_vocab(ids: &[i64], vocab_size: Option<usize>) -> Result<(), ApiError> {
    let Some(v) = vocab_size else {
        return Ok(());
    };
    let bad: Vec<String> = ids
        .iter()
        .filter(|&&id| id < 0 || id >= v as i64)
        .map(i64::to_string)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let list = format!("[{}]", bad.join(", "));
    Err(ApiError::invalid_param(
        &format!(
            "token_id(s) {list} in logit_bias contain out-of-vocab token ids. Vocabulary size: {v}"
        ),
        "logit_bias",
        &list,
    ))
}

/// The sampling fields vLLM checks: `from_optional`'s `logit_bias` conversion, then
/// `SamplingParams._verify_args` in its order, then `verify` (`_validate_logprobs`,
/// `_validate_logit_bias`) against a vocabulary of `vocab_size` tokens. `prompt_logprobs` is the
/// value vLLM passes on (the request's, or with `echo` the sample `logprobs`).
pub fn verify_sampling(
    c: &CommonParams,
    max_tokens: i64,
    logprobs: Option<i64>,
    prompt_logprobs: Option<i64>,
    vocab_size: Option<usize>,
) -> Result<(), ApiError> {
    let bias_ids = match &c.logit_bias {
        Some(b) => logit_bias_ids(b)?,
        None => Vec::new(),
    };
    if c.n < 1 {
        return Err(ApiError::bad_request(format!(
            "n must be at least 1, got {}.",
            c.n
        )));
    }
    if c.n > 2048 {
        return Err(ApiError::bad_request(format!(
            "n must be at most 2048, got {}. To increase this limit, set the \
             VLLM_MAX_N_SEQUENCES environment variable.",
            c.n
        )));
    }
    let presence = c.presence_penalty.unwrap_or(0.0);
    if !(-2.0..=2.0).contains(&presence) {
        return Err(ApiError::bad_request(format!(
            "presence_penalty must be in [-2, 2], got {}.",
            py_float(presence)
        )));
    }
    let frequency = c.frequency_penalty.unwrap_or(0.0);
    if !(-2.0..=2.0).contains(&frequency) {
        return Err(ApiError::bad_request(format!(
            "frequency_penalty must be in [-2, 2], got {}.",
            py_float(frequency)
        )));
    }
    let repetition = c.repetition_penalty.unwrap_or(1.0);
    if repetition <= 0.0 {
        return Err(ApiError::bad_request(format!(
            "repetition_penalty must be greater than zero, got {}.",
            py_float(repetition)
        )));
    }
    if let Some(t) = c.temperature {
        if t < 0.0 || t.is_nan() {
            return Err(ApiError::invalid_param(
                &format!("temperature must be non-negative, got {}.", py_float(t)),
                "temperature",
                py_float(t),
            ));
        }
    }
    if let Some(p) = c.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid_param(
                &format!("top_p must be in (0, 1], got {}.", py_float(p)),
                "top_p",
                py_float(p),
            ));
        }
    }
    if let Some(k) = c.top_k {
        if k < -1 {
            return Err(ApiError::bad_request(format!(
                "top_k must be 0 (disable), or at least 1, got {k}."
            )));
        }
    }
    let min_p = c.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(ApiError::bad_request(format!(
            "min_p must be in [0, 1], got {}.",
            py_float(min_p)
        )));
    }
    if max_tokens < 1 {
        return Err(ApiError::invalid_param(
            &format!("max_tokens must be at least 1, got {max_tokens}."),
            "max_tokens",
            max_tokens,
        ));
    }
    if c.min_tokens < 0 {
        return Err(ApiError::bad_request(format!(
            "min_tokens must be greater than or equal to 0, got {}.",
            c.min_tokens
        )));
    }
    if c.min_tokens > max_tokens {
        return Err(ApiError::bad_request(format!(
            "min_tokens must be less than or equal to max_tokens={max_tokens}, got {}.",
            c.min_tokens
        )));
    }
    if let Some(l) = logprobs {
        if l < 0 && l != -1 {
            return Err(ApiError::invalid_param(
                &format!("logprobs must be non-negative or -1, got {l}."),
                "logprobs",
                l,
            ));
        }
    }
    if let Some(p) = prompt_logprobs {
        if p < 0 && p != -1 {
            return Err(ApiError::invalid_param(
                &format!("prompt_logprobs must be non-negative or -1, got {p}."),
                "prompt_logprobs",
                p,
            ));
        }
    }
    let empty_stop = match &c.stop {
        Some(StopInput::One(s)) => s.is_empty(),
        Some(StopInput::Many(v)) => v.iter().any(String::is_empty),
        None => false,
    };
    if empty_stop {
        return Err(ApiError::bad_request(
            "stop cannot contain an empty string.",
        ));
    }
    check_stop_sizes(c)?;
    check_max_logprobs(logprobs, vocab_size, "sample", "logprobs")?;
    check_max_logprobs(prompt_logprobs, vocab_size, "prompt", "prompt_logprobs")?;
    check_logit_bias_vocab(&bias_ids, vocab_size)
}

/// Stop strings one request may give (llm-emu's bound; vLLM has none). Every choice checks
/// every stop string against each new piece of text, on the HTTP workers, so their number and
/// size multiply the cost of every token; real clients send a handful (OpenAI's API takes 4).
pub const MAX_STOP_STRINGS: usize = 64;
/// Bytes of all stop strings of one request together (llm-emu's bound; vLLM has none).
pub const MAX_STOP_BYTES: usize = 4096;
/// Stop token ids one request may give (llm-emu's bound; vLLM has none). The engine thread
/// looks every sampled token up in them, for every running request.
pub const MAX_STOP_TOKEN_IDS: usize = 1024;

/// `stop` and `stop_token_ids` within [`MAX_STOP_STRINGS`], [`MAX_STOP_BYTES`] and
/// [`MAX_STOP_TOKEN_IDS`], so that no request makes every token of every request dear.
fn check_stop_sizes(c: &CommonParams) -> Result<(), ApiError> {
    let (count, bytes) = match &c.stop {
        Some(StopInput::One(s)) => (1, s.len()),
        Some(StopInput::Many(v)) => (v.len(), v.iter().map(String::len).sum()),
        None => (0, 0),
    };
    if count > MAX_STOP_STRINGS || bytes > MAX_STOP_BYTES {
        return Err(ApiError::invalid_param(
            &format!(
                "stop may hold at most {MAX_STOP_STRINGS} strings of {MAX_STOP_BYTES} bytes in \
                 all on this server, got {count} strings of {bytes} bytes."
            ),
            "stop",
            count,
        ));
    }
    let ids = c.stop_token_ids.as_ref().map_or(0, Vec::len);
    if ids > MAX_STOP_TOKEN_IDS {
        return Err(ApiError::invalid_param(
            &format!(
                "stop_token_ids may hold at most {MAX_STOP_TOKEN_IDS} ids on this server, got \
                 {ids}."
            ),
            "stop_token_ids",
            ids,
        ));
    }
    Ok(())
}

/// A stable hash of a string (FNV-1a), to key a choice's synthetic values.
fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A float as Python's `str` writes it.
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// `TokenizeParams.__post_init__`: the requested output alone may not exceed the context.
pub fn check_max_output(
    max_output: Option<i64>,
    param: &str,
    max_model_len: usize,
) -> Result<(), ApiError> {
    if let Some(m) = max_output {
        if m > max_model_len as i64 {
            return Err(ApiError::invalid_param(
                &format!(
                    "{param}={m}cannot be greater than max_model_len=max_total_tokens=\
                     {max_model_len}. Please request fewer output tokens."
                ),
                param,
                m,
            ));
        }
    }
    Ok(())
}

/// `TokenizeParams.__post_init__`: `truncate_prompt_tokens` may keep at most what the context
/// leaves for the prompt (`max_model_len - max_output`).
pub fn check_truncation(
    truncate: Option<i64>,
    max_output: Option<i64>,
    max_output_param: &str,
    max_model_len: usize,
) -> Result<(), ApiError> {
    let max_input = (max_model_len as i64).saturating_sub(max_output.unwrap_or(0));
    match truncate {
        Some(t) if t > max_input => Err(ApiError::invalid_param(
            &format!(
                "truncate_prompt_tokens={t} cannot be greater than max_model_len - \
                 {max_output_param} = {max_input}. Please request a smaller truncation size."
            ),
            "truncate_prompt_tokens",
            t,
        )),
        _ => Ok(()),
    }
}

/// `TokenizeParams._token_truncation`: keep the first `truncate` ids (−1: the first
/// `max_input`), as vLLM does with the tokenizer's default right-side truncation.
pub fn truncate_prompt(ids: &mut Vec<u32>, truncate: Option<i64>, max_input: usize) {
    match truncate {
        Some(-1) => ids.truncate(max_input),
        Some(t) if t >= 0 => ids.truncate(t as usize),
        _ => {}
    }
}

/// The input processor's `_validate_prompt_len` and out-of-vocabulary check, for a prompt as
/// it goes to the engine.
pub fn check_prompt_ids(ids: &[u32], vocab_size: Option<usize>) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad_request("The decoder prompt cannot be empty"));
    }
    if let (Some(v), Some(&max_id)) = (vocab_size, ids.iter().max()) {
        if max_id as usize >= v {
            return Err(ApiError::bad_request(format!(
                "Token id {max_id} is out of vocabulary"
            )));
        }
    }
    Ok(())
}

/// `TokenizeParams._token_len_check` then `get_max_tokens`: the prompt must leave room for the
/// requested output; `max_tokens` defaults to the room left. `from_text`: the ids come from
/// tokenizing text, which vLLM stops at `max_input + 1` tokens (`get_encode_kwargs`), so a longer
/// prompt is reported as containing "at least" that many.
pub fn prompt_max_tokens(
    prompt_len: usize,
    requested: Option<i64>,
    max_model_len: usize,
    from_text: bool,
) -> Result<i64, ApiError> {
    let max_output = requested.unwrap_or(0);
    // Saturating: `max_tokens` may be any 64-bit value here (its range is checked later).
    let max_input = (max_model_len as i64).saturating_sub(max_output);
    if prompt_len as i64 > max_input {
        let count = if from_text {
            (prompt_len as i64).min(max_input.saturating_add(1))
        } else {
            prompt_len as i64
        };
        let qualifier = if count == max_input.saturating_add(1) {
            "at least "
        } else {
            ""
        };
        return Err(ApiError::invalid_param(
            &format!(
                "This model's maximum context length is {max_model_len} tokens. However, you \
                 requested {max_output} output tokens and your prompt contains {qualifier}{count} \
                 input tokens, for a total of {qualifier}{} tokens. Please reduce the length of \
                 the input prompt or the number of requested output tokens.",
                count.saturating_add(max_output)
            ),
            "input_tokens",
            count,
        ));
    }
    let room = max_model_len as i64 - prompt_len as i64;
    Ok(match requested {
        Some(r) => r.min(room),
        None => room,
    })
}

/// vLLM's `_validate_chat_template`: a request's own template (`chat_template`, or
/// `chat_template` inside `chat_template_kwargs`) is refused unless the server trusts them.
pub fn check_request_template(
    trusted: bool,
    chat_template: &Option<String>,
    chat_template_kwargs: &Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let in_kwargs = chat_template_kwargs
        .as_ref()
        .and_then(|k| k.get("chat_template"))
        .is_some_and(|t| !t.is_null());
    if !trusted && (chat_template.is_some() || in_kwargs) {
        return Err(ApiError::bad_request(
            "Chat template is passed with request, but --trust-request-chat-template is not \
             set. Refused request with untrusted chat template.",
        ));
    }
    Ok(())
}

/// Engine requests one HTTP request may create (prompts × `n`). vLLM has no such limit beyond
/// `n ≤ 2048` per prompt; llm-emu keeps each choice's state (detokenizer, engine request,
/// output) for the request's lifetime, so a batch of many prompts times a large `n` is refused
/// before any of it is built. One prompt with vLLM's largest `n` always fits.
pub const MAX_CHOICES_PER_REQUEST: usize = 4096;

/// Refuses a request whose prompts × `n` exceed [`MAX_CHOICES_PER_REQUEST`]. An `n` outside
/// vLLM's range is left to [`verify_sampling`], which reports it as vLLM does.
pub fn check_fan_out(num_prompts: usize, n: i64) -> Result<(), ApiError> {
    if !(1..=2048).contains(&n) {
        return Ok(());
    }
    let choices = num_prompts.saturating_mul(n as usize);
    if choices > MAX_CHOICES_PER_REQUEST {
        return Err(ApiError::invalid_param(
            &format!(
                "The request asks for {choices} completions ({num_prompts} prompts with n={n}); \
                 this server accepts at most {MAX_CHOICES_PER_REQUEST} per request."
            ),
            "n",
            n,
        ));
    }
    Ok(())
}

/// Bytes of the HTTP request id kept in engine request ids (which only need to be unique and
/// readable in logs), so that a long `request_id` is not copied once per choice.
const ENGINE_ID_PREFIX_BYTES: usize = 64;

/// The engine request id of choice `c` of prompt `pi`.
fn engine_request_id(http_id: &str, pi: usize, c: u32, seq: u64) -> String {
    let mut end = http_id.len().min(ENGINE_ID_PREFIX_BYTES);
    while !http_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{pi}-{c}-{seq:x}", &http_id[..end])
}

/// The engine's refusals, with the messages vLLM's input processor gives.
pub fn engine_error(e: &RequestError, max_model_len: usize) -> ApiError {
    match e {
        RequestError::EmptyPrompt => ApiError::bad_request("The decoder prompt cannot be empty"),
        RequestError::PromptTooLong { prompt_len, .. } => ApiError::bad_request(format!(
            "The decoder prompt (length {prompt_len}) plus the number of requested output \
             tokens (at least 1) is longer than the maximum model length of {max_model_len}. \
             Make sure that `max_model_len` is no smaller than the number of text tokens \
             (prompt + requested output tokens)."
        )),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// One choice's output processing state.
struct Choice {
    prompt: usize,
    detok: Box<dyn Detokenizer>,
    token_ids: Vec<u32>,
    text: String,
    num_tokens: u64,
    finished: Option<(&'static str, Option<StopReason>)>,
    engine_id: String,
    /// The engine no longer holds it (finished or aborted there).
    engine_done: bool,
    /// Synthetic log-probabilities of each output token, when the request asks for them.
    logprobs: Vec<PositionLogprobs>,
    /// Keys this choice's synthetic log-probabilities.
    salt: u64,
    /// Characters of output text sent so far (vLLM's `previous_text_lens`, the base of
    /// streamed completion `text_offset`s).
    text_chars_sent: usize,
}

/// What one event produced for one choice.
struct Delta {
    choice: u32,
    text: String,
    ids_from: usize,
    finish: Option<(&'static str, Option<StopReason>)>,
}

/// The engine requests of one HTTP request, aborted if it goes away before they finish (client
/// disconnect: vLLM aborts on `CancelledError`).
struct Submission {
    engine: EngineHandle,
    codec: SharedCodec,
    /// [`Prepared::logprobs`].
    logprobs: Option<i64>,
    choices: Vec<Choice>,
    rx: UnboundedReceiver<(u32, EngineEvent)>,
    unfinished: usize,
    error: Option<ApiError>,
}

impl Drop for Submission {
    fn drop(&mut self) {
        for c in &self.choices {
            if !c.engine_done {
                self.engine.abort(&c.engine_id);
            }
        }
    }
}

impl Submission {
    fn start(state: &AppState, p: &Prepared) -> Result<Submission, ApiError> {
        let (tx, rx) = unbounded_channel();
        let mut choices = Vec::new();
        // vLLM's `update_from_generation_config`.
        let mut stop_token_ids = p.stop_token_ids.clone();
        if !p.ignore_eos {
            for t in state.codec.generation_eos_ids() {
                if !stop_token_ids.contains(&t) {
                    stop_token_ids.push(t);
                }
            }
        }
        let seq = state.next_seq();
        let mut requests = Vec::with_capacity(p.prompts.len() * p.n as usize);
        for (pi, prompt) in p.prompts.iter().enumerate() {
            state
                .engine
                .metrics
                .observe_request_params(p.n, p.max_tokens_param, prompt.max_tokens);
            for c in 0..p.n {
                let tag = choices.len() as u32;
                let engine_id = engine_request_id(&p.id, pi, c, seq);
                let sampling = SamplingParams {
                    max_tokens: prompt.max_tokens,
                    min_tokens: p.min_tokens,
                    ignore_eos: p.ignore_eos,
                    eos_token_id: state.codec.eos_token_id(),
                    stop_token_ids: stop_token_ids.clone(),
                };
                let req = NewRequest {
                    request_id: engine_id.clone(),
                    prompt_token_ids: prompt.ids.clone(),
                    sampling,
                    priority: p.priority,
                    cache_salt: p.cache_salt.clone(),
                    arrival: state.engine.clock.now(),
                };
                let detok = state.codec.detokenizer(
                    &prompt.ids,
                    DetokOptions {
                        skip_special_tokens: p.skip_special_tokens,
                        spaces_between_special_tokens: p.spaces_between_special_tokens,
                        stop: p.stop.clone(),
                        include_stop_str_in_output: p.include_stop_str_in_output,
                        streaming: p.stream,
                        min_tokens: p.min_tokens,
                    },
                );
                choices.push(Choice {
                    prompt: pi,
                    detok,
                    token_ids: Vec::new(),
                    text: String::new(),
                    num_tokens: 0,
                    finished: None,
                    salt: hash_str(&engine_id),
                    engine_id,
                    engine_done: false,
                    logprobs: Vec::new(),
                    text_chars_sent: 0,
                });
                requests.push((req, tag));
            }
        }
        state
            .engine
            .add(requests, tx)
            .map_err(|_| ApiError::EngineDead)?;
        let unfinished = choices.len();
        Ok(Submission {
            engine: state.engine.clone(),
            codec: state.codec.clone(),
            logprobs: p.logprobs,
            choices,
            rx,
            unfinished,
            error: None,
        })
    }

    /// A token's text as vLLM shows it in log-probabilities (`tokenizer.decode([id])`).
    fn token_text(&self, id: u32) -> String {
        self.codec.decode(&[id], false).unwrap_or_default()
    }

    /// Completions `logprobs` of choice `i`: the echoed prompt's part when `echo` is given (shared,
    /// built once per prompt), then output tokens `from..`, whose offsets count characters from
    /// `initial_text_offset` (plus the echoed prompt's); `None` unless the request asked for them.
    fn completion_logprobs(
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
    fn chat_logprobs(&self, i: usize, from: usize) -> Option<ChatLogprobs> {
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
    fn apply(&mut self, tag: u32, ev: EngineEvent, max_model_len: usize) -> Option<Delta> {
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
                self.error.get_or_insert(engine_error(&e, max_model_len));
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
                        self.error.get_or_insert(ApiError::Internal(e.0));
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
    let max_model_len = state.max_model_len;
    while sub.unfinished > 0 {
        let Some((tag, ev)) = sub.rx.recv().await else {
            return Err(ApiError::EngineDead);
        };
        if let Some(d) = sub.apply(tag, ev, max_model_len) {
            sub.choices[d.choice as usize].text.push_str(&d.text);
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
    let body = match p.endpoint {
        Endpoint::Completions => {
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
                        prompt_token_ids: p
                            .return_token_ids
                            .then_some(&p.prompts[c.prompt].ids[..]),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            serde_json::to_vec(&CompletionResponse {
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
        }
        Endpoint::Chat => {
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
            serde_json::to_vec(&ChatResponse {
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
        }
    };
    body.map_err(|e| ApiError::Internal(e.to_string()))
}

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
    sub: Submission,
    p: Prepared,
    max_model_len: usize,
    /// Chat: role chunks written so far (vLLM sends every choice's role chunk before the
    /// request's first output; they may span several writes).
    roles_written: usize,
    /// A delta waiting for the role chunks before it.
    held: Option<Delta>,
    echoed: Vec<bool>,
    done: bool,
}

/// Submits the request; errors (engine gone) come back before any byte is sent.
pub fn start_stream(state: &Arc<AppState>, p: Prepared) -> Result<EventStream, ApiError> {
    let sub = Submission::start(state, &p)?;
    let n = sub.choices.len();
    Ok(EventStream {
        sub,
        p,
        max_model_len: state.max_model_len,
        roles_written: 0,
        held: None,
        echoed: vec![false; n],
        done: false,
    })
}

fn push_data(out: &mut BytesMut, json: &impl serde::Serialize) {
    out.put_slice(b"data: ");
    let mut w = out.writer();
    serde_json::to_writer(&mut w, json).expect("chunks serialize");
    let out = w.into_inner();
    out.put_slice(b"\n\n");
}

impl EventStream {
    /// The next bytes to send, `None` when the stream has ended.
    pub async fn next_bytes(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = BytesMut::with_capacity(512);
        if self.held.is_none() {
            // Wait for one event, then take what else is queued.
            let Some((tag, ev)) = self.sub.rx.recv().await else {
                self.done = true;
                push_data(&mut out, &error_json(&ApiError::EngineDead));
                out.put_slice(b"data: [DONE]\n\n");
                return Some(out.freeze());
            };
            self.held = self.sub.apply(tag, ev, self.max_model_len);
        }
        loop {
            if let Some(d) = self.held.take() {
                if !self.write_roles(&mut out) {
                    self.held = Some(d);
                    return Some(out.freeze());
                }
                self.write_delta(&mut out, d);
            }
            if self.sub.unfinished == 0 || out.len() >= SSE_WRITE_COALESCE_BYTES {
                break;
            }
            match self.sub.rx.try_recv() {
                Ok((tag, ev)) => self.held = self.sub.apply(tag, ev, self.max_model_len),
                Err(_) => break,
            }
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
        Some(out.freeze())
    }

    /// Chat: writes the role chunks not yet written while the write has room; true once all
    /// are out (always for completions).
    fn write_roles(&mut self, out: &mut BytesMut) -> bool {
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

    fn usage_of(&self, choice: usize) -> Usage {
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
        let i = d.choice as usize;
        match self.p.endpoint {
            Endpoint::Completions => {
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
                            prompt_token_ids: first_ids
                                .then_some(&self.p.prompts[c.prompt].ids[..]),
                            token_ids: self
                                .p
                                .return_token_ids
                                .then_some(&c.token_ids[d.ids_from..]),
                        }],
                        usage: self.p.continuous_usage.then(|| self.usage_of(i).into()),
                    },
                );
            }
            Endpoint::Chat => {
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
    }
}

/// An error sent inside a stream (vLLM's `create_streaming_error_response`).
fn error_json(e: &ApiError) -> serde_json::Value {
    serde_json::from_str(&e.body()).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(body: serde_json::Value, vocab: usize) -> Result<(), ApiError> {
        let r: CompletionRequest = serde_json::from_value(body).unwrap();
        let prompt_logprobs = r.common.prompt_logprobs;
        verify_sampling(&r.common, 4, r.logprobs, prompt_logprobs, Some(vocab))
    }

    fn message(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { message, .. } => message,
            other => panic!("not a BadRequestError: {other:?}"),
        }
    }

    #[test]
    fn logit_bias_ids_parse_as_python_int_and_lie_in_the_vocabulary() {
        let ok =
            serde_json::json!({"prompt": "x", "logit_bias": {" -0 ": 1, "+9": -200, "1_2": 5}});
        assert!(verify(ok, 100).is_ok());
        for key in ["1__2", "_1", "1.0", "", "0x1"] {
            let body = serde_json::json!({"prompt": "x", "logit_bias": {key: 1}});
            assert_eq!(
                message(verify(body, 100).unwrap_err()),
                format!("invalid literal for int() with base 10: '{key}'")
            );
        }
        let body = serde_json::json!({"prompt": "x", "logit_bias": {"100": 1, "3": 1, "-1": 1}});
        assert_eq!(
            message(verify(body, 100).unwrap_err()),
            "token_id(s) [100, -1] in logit_bias contain out-of-vocab token ids. Vocabulary \
             size: 100 (parameter=logit_bias, value=[100, -1])"
        );
    }

    #[test]
    fn prompt_logprobs_of_the_whole_vocabulary_exceed_the_limit() {
        let body = serde_json::json!({"prompt": "x", "prompt_logprobs": -1});
        assert_eq!(
            message(verify(body, 100).unwrap_err()),
            "Requested prompt logprobs of 100, which is greater than max allowed: 20 \
             (parameter=prompt_logprobs, value=100)"
        );
        let body = serde_json::json!({"prompt": "x", "prompt_logprobs": 20});
        assert!(verify(body, 100).is_ok());
    }
}
