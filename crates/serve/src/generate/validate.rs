//! Request validation with vLLM's messages: the sampling fields (`SamplingParams._verify_args`,
//! `_validate_logprobs`, `_validate_logit_bias`), the prompt against the context
//! (`TokenizeParams`, the input processor's length and vocabulary checks), truncation, and the
//! request's own chat template; plus llm-emu's bounds on stop strings.

use crate::errors::ApiError;
use crate::protocol::{CommonParams, LogitBias, StopInput};

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
                    llm_emu_text::python_str_repr(key)
                ))
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CompletionRequest;

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
