//! The OpenAI/vLLM wire types (vLLM `entrypoints/openai/{completion,chat_completion,engine}/
//! protocol.py`). Requests are parsed leniently as vLLM's pydantic models are: unknown fields are
//! ignored; absent fields take vLLM's defaults. Responses are written with vLLM's field order and
//! its choice of which `null` fields appear (`exclude_unset` for chat chunks, not for completion
//! chunks), so the bytes on the wire match.

use crate::errors::ApiError;
use crate::logprobs::{ChatLogprobs, ChoiceLogprobs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `prompt`: a string, a list of strings, a list of token ids or a list of such lists.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StopInput {
    One(String),
    Many(Vec<String>),
}

impl StopInput {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopInput::One(s) => vec![s],
            StopInput::Many(v) => v,
        }
    }
}

/// `stream_options`. `given` records whether the object had any key at all: vLLM's check that
/// it comes with `stream` tests the raw object's truth (`{}` passes, `{"include_usage": null}`
/// does not).
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    pub continuous_usage_stats: Option<bool>,
    pub given: bool,
}

impl<'de> Deserialize<'de> for StreamOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, Value>::deserialize(d)?;
        let flag = |key: &str| match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(D::Error::custom(format!(
                "stream_options.{key}: expected a boolean, got {other}"
            ))),
        };
        Ok(StreamOptions {
            include_usage: flag("include_usage")?,
            continuous_usage_stats: flag("continuous_usage_stats")?,
            given: !map.is_empty(),
        })
    }
}

impl StreamOptions {
    /// vLLM's `should_include_usage`: `(include_usage, continuous_usage_stats)`.
    pub fn flags(o: &Option<StreamOptions>) -> (bool, bool) {
        match o {
            Some(o) => {
                let usage = o.include_usage.unwrap_or(false);
                (usage, usage && o.continuous_usage_stats.unwrap_or(false))
            }
            None => (false, false),
        }
    }
}

fn default_16() -> Option<i64> {
    Some(16)
}
fn default_1() -> i64 {
    1
}
fn default_true() -> bool {
    true
}

/// The sampling and output fields common to both endpoints.
#[derive(Clone, Debug, Deserialize)]
pub struct CommonParams {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub stop: Option<StopInput>,
    #[serde(default)]
    pub stop_token_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub ignore_eos: bool,
    #[serde(default)]
    pub min_tokens: i64,
    #[serde(default)]
    pub include_stop_str_in_output: bool,
    #[serde(default = "default_1")]
    pub n: i64,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub cache_salt: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub return_token_ids: Option<bool>,
    #[serde(default = "default_true")]
    pub skip_special_tokens: bool,
    #[serde(default = "default_true")]
    pub spaces_between_special_tokens: bool,
    #[serde(default)]
    pub echo: bool,
    /// `[-2, 2]` (vLLM's `_verify_args`); no effect on synthetic tokens.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// `[-2, 2]`; no effect on synthetic tokens.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Greater than 0; no effect on synthetic tokens.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// `[0, 1]`; no effect on synthetic tokens.
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Token id (as a decimal string) → bias, in the request's order; ids must parse and lie in
    /// the vocabulary. No effect on synthetic tokens.
    #[serde(default)]
    pub logit_bias: Option<LogitBias>,
    /// Ignored, as vLLM ignores it; must be a string.
    #[serde(default)]
    pub user: Option<String>,
    /// Structured output (`text`, `json_object`, `json_schema`, `structural_tag`): checked as
    /// vLLM's model checks it; the output is a synthetic document that satisfies it
    /// (`crate::structured`).
    #[serde(default)]
    pub response_format: Option<Value>,
    /// vLLM's `StructuredOutputsParams` (`json`, `regex`, `choice`, `grammar`, `json_object`,
    /// `structural_tag`, …), merged under `response_format` as vLLM merges them.
    #[serde(default)]
    pub structured_outputs: Option<Value>,
    /// Keep only the first N prompt tokens (−1: as many as the context leaves room for).
    #[serde(default)]
    pub truncate_prompt_tokens: Option<i64>,
    /// Prompt log-probabilities asked for: checked as vLLM checks them; the response's
    /// `prompt_logprobs` stays `null` (llm-emu has no prompt log-probabilities).
    #[serde(default)]
    pub prompt_logprobs: Option<i64>,
}

/// `logit_bias`: a JSON object of token id (string) → bias, kept in the request's order so that
/// an error lists the bad ids as vLLM does.
#[derive(Clone, Debug, Default)]
pub struct LogitBias(pub Vec<(String, f64)>);

impl<'de> Deserialize<'de> for LogitBias {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = LogitBias;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of token id to bias")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<LogitBias, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(LogitBias(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A failure of one of vLLM's `model_validator(mode="before")` checks, as FastAPI reports it:
/// a `VLLMValidationError` names its field (`param`, and `value` when vLLM gives one), a plain
/// `ValueError` does not.
pub(crate) fn model_validator_error(
    msg: &str,
    param: Option<&str>,
    value: Option<String>,
) -> ApiError {
    let extras: Vec<String> = param
        .map(|p| format!("parameter={p}"))
        .into_iter()
        .chain(value.map(|v| format!("value={v}")))
        .collect();
    let text = if extras.is_empty() {
        msg.to_string()
    } else {
        format!("{msg} ({})", extras.join(", "))
    };
    // Python's `repr` of the message: double quotes when it holds a single quote.
    let msg = format!("Value error, {text}");
    let quoted = if msg.contains('\'') && !msg.contains('"') {
        format!("\"{msg}\"")
    } else {
        format!("'{msg}'")
    };
    let message = format!(
        "1 validation error:\n  {{'type': 'value_error', 'loc': ('body',), 'msg': {quoted}}}"
    );
    match param {
        Some(p) => ApiError::InvalidField {
            message,
            param: p.to_string(),
        },
        None => ApiError::Validation(message),
    }
}

/// The `response_format` types of vLLM's `AnyResponseFormat`.
const RESPONSE_FORMAT_TYPES: [&str; 4] = ["text", "json_object", "json_schema", "structural_tag"];

/// The checks vLLM's request models make in their own validators, after the fields parsed.
pub trait ValidateRequest {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

impl CommonParams {
    /// vLLM's `validate_stream_options` (both request models): `stream_options` only with
    /// `stream: true`.
    fn validate_stream_options(&self) -> Result<(), ApiError> {
        let given = self.stream_options.as_ref().is_some_and(|o| o.given);
        if given && !self.stream.unwrap_or(false) {
            return Err(model_validator_error(
                "Stream options can only be defined when `stream=True`.",
                Some("stream_options"),
                None,
            ));
        }
        Ok(())
    }

    /// vLLM's `validate_response_format` and the shape pydantic checks: an object whose `type`
    /// is one of [`RESPONSE_FORMAT_TYPES`]; `json_schema` needs its `json_schema` field.
    fn validate_response_format(&self) -> Result<(), ApiError> {
        let Some(rf) = self.response_format.as_ref().filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let kind = rf.get("type").and_then(Value::as_str);
        if kind == Some("json_schema") && rf.get("json_schema").is_none_or(Value::is_null) {
            return Err(model_validator_error(
                "When response_format type is 'json_schema', the 'json_schema' field must be \
                 provided.",
                Some("response_format"),
                None,
            ));
        }
        if !kind.is_some_and(|k| RESPONSE_FORMAT_TYPES.contains(&k)) {
            return Err(ApiError::Validation(format!(
                "1 validation error:\n  {{'type': 'literal_error', 'loc': ('body', \
                 'response_format', 'type'), 'msg': \"Input should be 'text', 'json_object', \
                 'json_schema' or 'structural_tag'\", 'input': {}}}",
                rf.get("type").map_or("None".to_string(), Value::to_string)
            )));
        }
        Ok(())
    }

    /// vLLM's `check_logprobs` for `prompt_logprobs` (both request models).
    fn validate_prompt_logprobs(&self) -> Result<(), ApiError> {
        let Some(p) = self.prompt_logprobs else {
            return Ok(());
        };
        if self.stream.unwrap_or(false) && (p > 0 || p == -1) {
            return Err(model_validator_error(
                "`prompt_logprobs` are not available when `stream=True`.",
                Some("prompt_logprobs"),
                None,
            ));
        }
        if p < 0 && p != -1 {
            return Err(model_validator_error(
                "`prompt_logprobs` must be a positive value or -1.",
                Some("prompt_logprobs"),
                Some(p.to_string()),
            ));
        }
        Ok(())
    }

    /// vLLM's `check_cache_salt_support` (both request models).
    fn validate_cache_salt(&self) -> Result<(), ApiError> {
        if self.cache_salt.as_deref() == Some("") {
            return Err(model_validator_error(
                "Parameter 'cache_salt' must be a non-empty string if provided.",
                None,
                None,
            ));
        }
        Ok(())
    }

    /// pydantic's `Field(ge=-1)` on `truncate_prompt_tokens`.
    fn validate_truncate_prompt_tokens(&self) -> Result<(), ApiError> {
        match self.truncate_prompt_tokens {
            Some(t) if t < -1 => Err(ApiError::Validation(format!(
                "1 validation error:\n  {{'type': 'greater_than_equal', 'loc': ('body', \
                 'truncate_prompt_tokens'), 'msg': 'Input should be greater than or equal to \
                 -1', 'input': {t}, 'ctx': {{'ge': -1}}}}"
            ))),
            _ => Ok(()),
        }
    }
}

/// pydantic runs a model's `mode="before"` validators in the reverse of their order in vLLM's
/// source, then checks the fields; the `validate` methods below keep that order, so a request
/// with several faults gets the error vLLM reports.
impl ValidateRequest for CompletionRequest {
    fn validate(&self) -> Result<(), ApiError> {
        let c = &self.common;
        c.validate_cache_salt()?;
        c.validate_stream_options()?;
        c.validate_prompt_logprobs()?;
        c.validate_response_format()?;
        c.validate_truncate_prompt_tokens()
    }
}

impl ChatCompletionRequest {
    /// vLLM's `check_logprobs` for `top_logprobs`.
    fn validate_top_logprobs(&self) -> Result<(), ApiError> {
        let Some(t) = self.top_logprobs else {
            return Ok(());
        };
        if t < 0 && t != -1 {
            return Err(model_validator_error(
                "`top_logprobs` must be a positive value or -1.",
                Some("top_logprobs"),
                Some(t.to_string()),
            ));
        }
        if (t == -1 || t > 0) && !self.logprobs.unwrap_or(false) {
            return Err(model_validator_error(
                "when using `top_logprobs`, `logprobs` must be set to true.",
                Some("top_logprobs"),
                None,
            ));
        }
        Ok(())
    }

    /// vLLM's `check_tool_usage`: a `tool_choice` other than `"none"` needs `tools`, and is
    /// `"auto"`, `"required"` or a named function among them. (The choice has no effect here:
    /// llm-emu generates no tool calls.)
    fn validate_tool_choice(&self) -> Result<(), ApiError> {
        let err = |m: String| model_validator_error(&m, None, None);
        let choice = match &self.tool_choice {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(s)) if s == "none" => return Ok(()),
            Some(c) => c,
        };
        let Some(tools) = self.tools.as_ref().filter(|t| !t.is_null()) else {
            return Err(err("When using `tool_choice`, `tools` must be set.".into()));
        };
        let Value::Object(named) = choice else {
            if choice == "auto" || choice == "required" {
                return Ok(());
            }
            let shown = match choice {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Err(err(format!(
                "Invalid value for `tool_choice`: {shown}! Only named tools, \"none\", \"auto\" \
                 or \"required\" are supported."
            )));
        };
        let usage = "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \
                     \"my_function\"}}`";
        let Some(function) = named.get("function").and_then(Value::as_object) else {
            let shown = named
                .get("function")
                .map_or("None".into(), Value::to_string);
            return Err(err(format!(
                "Invalid value for `function`: `{shown}` in `tool_choice`! {usage}"
            )));
        };
        let Some(name) = function.get("name") else {
            return Err(err(format!(
                "Expected field `name` in `function` in `tool_choice`! {usage}"
            )));
        };
        let Some(name) = name.as_str().filter(|n| !n.is_empty()) else {
            return Err(err(format!(
                "Invalid `name` in `function`: `{name}` in `tool_choice`! {usage}"
            )));
        };
        let listed = tools.as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
        });
        if !listed {
            return Err(err(
                "The tool specified in `tool_choice` does not match any of the specified `tools`"
                    .into(),
            ));
        }
        Ok(())
    }

    /// pydantic's check of the message union: only an assistant (or legacy function) message
    /// may have `content: null`.
    fn validate_null_content(&self) -> Result<(), ApiError> {
        for (i, m) in self.messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if m.get("content").is_some_and(Value::is_null)
                && role != "assistant"
                && role != "function"
            {
                return Err(ApiError::Validation(format!(
                    "1 validation error:\n  {{'type': 'string_type', 'loc': ('body', 'messages', \
                     {i}, 'content'), 'msg': 'Input should be a valid string', 'input': None}}"
                )));
            }
        }
        Ok(())
    }
}

impl ValidateRequest for ChatCompletionRequest {
    fn validate(&self) -> Result<(), ApiError> {
        let c = &self.common;
        c.validate_cache_salt()?;
        self.validate_tool_choice()?;
        c.validate_prompt_logprobs()?;
        self.validate_top_logprobs()?;
        c.validate_stream_options()?;
        c.validate_response_format()?;
        crate::structured::check_structured_outputs(c.structured_outputs.as_ref())?;
        self.validate_null_content()?;
        c.validate_truncate_prompt_tokens()
    }
}

impl ValidateRequest for TokenizeRequest {}
impl ValidateRequest for DetokenizeRequest {}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub prompt: Option<PromptInput>,
    /// Absent: 16; `null`: up to the context.
    #[serde(default = "default_16")]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub logprobs: Option<i64>,
    #[serde(default = "default_true")]
    pub add_special_tokens: bool,
    /// Refused when given, as vLLM refuses it ("suffix is not currently supported").
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub common: CommonParams,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub messages: Vec<Value>,
    /// Deprecated in favour of `max_completion_tokens`, still honoured.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    #[serde(default = "default_true")]
    pub add_generation_prompt: bool,
    #[serde(default)]
    pub continue_final_message: bool,
    #[serde(default)]
    pub add_special_tokens: bool,
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub chat_template_kwargs: Option<Value>,
    #[serde(default)]
    pub tools: Option<Value>,
    /// `"none"`, `"auto"`, `"required"` or a named function: the reply is a synthetic tool
    /// call for the last three (`crate::structured::tools`).
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Must be a bool; no effect (one call per reply).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// RAG documents for the chat template: a list of string → string objects. Checked;
    /// llm-emu's templates are not given them.
    #[serde(default)]
    pub documents: Option<Vec<std::collections::HashMap<String, String>>>,
    #[serde(flatten)]
    pub common: CommonParams,
}

/// `POST /tokenize`: a completion-style prompt or chat messages.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    #[serde(default = "default_true")]
    pub add_special_tokens: bool,
    #[serde(default = "default_true")]
    pub add_generation_prompt: bool,
    #[serde(default)]
    pub continue_final_message: bool,
    #[serde(default)]
    pub return_token_strs: Option<bool>,
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub chat_template_kwargs: Option<Value>,
    #[serde(default)]
    pub tools: Option<Value>,
}

/// `POST /detokenize`.
#[derive(Clone, Debug, Deserialize)]
pub struct DetokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// `UsageInfo` (field order as vLLM's model: prompt, total, completion).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn new(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            total_tokens: prompt + completion,
            completion_tokens: completion,
        }
    }
}

/// `UsageInfo` dumped with every field (`prompt_tokens_details: null`).
#[derive(Serialize)]
pub struct FullUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
    pub completion_tokens: u64,
    pub prompt_tokens_details: Option<()>,
}

impl From<Usage> for FullUsage {
    fn from(u: Usage) -> FullUsage {
        FullUsage {
            prompt_tokens: u.prompt_tokens,
            total_tokens: u.total_tokens,
            completion_tokens: u.completion_tokens,
            prompt_tokens_details: None,
        }
    }
}

/// `stop_reason`: the stop string or stop token id that ended a choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StopReason {
    Token(u32),
    Text(String),
}

#[derive(Serialize)]
pub struct CompletionStreamChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'a str>,
    pub stop_reason: Option<&'a StopReason>,
    pub prompt_token_ids: Option<&'a [u32]>,
    pub token_ids: Option<&'a [u32]>,
}

/// A completion stream chunk (`exclude_unset=False`: every field, `usage: null` included).
#[derive(Serialize)]
pub struct CompletionStreamChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [CompletionStreamChoice<'a>; 1],
    pub usage: Option<FullUsage>,
}

/// The last chunk with `include_usage` (`exclude_none`), either endpoint.
#[derive(Serialize)]
pub struct UsageChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [(); 0],
    pub usage: Usage,
}

#[derive(Serialize)]
pub struct CompletionChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'a str>,
    pub stop_reason: Option<&'a StopReason>,
    pub token_ids: Option<&'a [u32]>,
    pub prompt_logprobs: Option<()>,
    pub prompt_token_ids: Option<&'a [u32]>,
}

#[derive(Serialize)]
pub struct CompletionResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<CompletionChoice<'a>>,
    pub service_tier: Option<()>,
    pub system_fingerprint: Option<()>,
    pub usage: FullUsage,
    pub kv_transfer_params: Option<()>,
}

/// `DeltaMessage` with only the fields vLLM sets (`exclude_unset`).
#[derive(Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<crate::protocol_tools::DeltaToolCall<'a>>>,
}

/// The first chat chunk of a choice: the role.
#[derive(Serialize)]
pub struct ChatRoleChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<()>,
}

#[derive(Serialize)]
pub struct ChatRoleChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatRoleChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub prompt_token_ids: Option<&'a [u32]>,
}

/// A content chunk; the finishing one adds `stop_reason`.
#[derive(Serialize)]
pub struct ChatDeltaChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Option<&'a StopReason>>,
    pub token_ids: Option<&'a [u32]>,
}

#[derive(Serialize)]
pub struct ChatDeltaChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatDeltaChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Serialize)]
pub struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: Option<&'a str>,
    pub refusal: Option<()>,
    pub annotations: Option<()>,
    pub audio: Option<()>,
    pub function_call: Option<()>,
    pub tool_calls: Vec<crate::protocol_tools::ToolCall>,
    pub reasoning: Option<()>,
}

#[derive(Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: ChatMessage<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'a str,
    pub stop_reason: Option<&'a StopReason>,
    pub token_ids: Option<&'a [u32]>,
}

#[derive(Serialize)]
pub struct ChatResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChatChoice<'a>>,
    pub service_tier: Option<()>,
    pub system_fingerprint: Option<()>,
    pub usage: FullUsage,
    pub prompt_logprobs: Option<()>,
    pub prompt_token_ids: Option<&'a [u32]>,
    pub kv_transfer_params: Option<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden strings: vLLM 0.19.0's pydantic models dumped as its serving code dumps them.
    #[test]
    fn completion_chunk_matches_vllm_bytes() {
        let c = CompletionStreamChunk {
            id: "cmpl-x",
            object: "text_completion",
            created: 1,
            model: "m",
            choices: [CompletionStreamChoice {
                index: 0,
                text: "hi",
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
                prompt_token_ids: None,
                token_ids: None,
            }],
            usage: Some(Usage::new(3, 1).into()),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"hi","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1,"prompt_tokens_details":null}}"#
        );
    }

    #[test]
    fn chat_chunks_match_vllm_bytes() {
        let first = ChatRoleChunk {
            id: "chatcmpl-x",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            choices: [ChatRoleChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: None,
            }],
            usage: Some(Usage::new(3, 0)),
            prompt_token_ids: None,
        };
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":3,"completion_tokens":0},"prompt_token_ids":null}"#
        );
        let stop = StopReason::Text("\n".into());
        let fin = ChatDeltaChunk {
            id: "chatcmpl-x",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            choices: [ChatDeltaChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: None,
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: Some("stop"),
                stop_reason: Some(Some(&stop)),
                token_ids: None,
            }],
            usage: None,
        };
        assert_eq!(
            serde_json::to_string(&fin).unwrap(),
            r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop","stop_reason":"\n","token_ids":null}]}"#
        );
    }

    #[test]
    fn responses_match_vllm_bytes() {
        let r = ChatResponse {
            id: "chatcmpl-x",
            object: "chat.completion",
            created: 1,
            model: "m",
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: Some("hi"),
                    refusal: None,
                    annotations: None,
                    audio: None,
                    function_call: None,
                    tool_calls: Vec::new(),
                    reasoning: None,
                },
                logprobs: None,
                finish_reason: "length",
                stop_reason: None,
                token_ids: None,
            }],
            service_tier: None,
            system_fingerprint: None,
            usage: Usage::new(3, 2).into(),
            prompt_logprobs: None,
            prompt_token_ids: None,
            kv_transfer_params: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2,"prompt_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}"#
        );
        let u = UsageChunk {
            id: "cmpl-x",
            object: "text_completion",
            created: 1,
            model: "m",
            choices: [],
            usage: Usage::new(3, 2),
        };
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}}"#
        );
    }

    #[test]
    fn requests_take_vllm_defaults_and_ignore_unknown_fields() {
        let r: CompletionRequest =
            serde_json::from_str(r#"{"prompt":[1,2],"foo":1,"stream":true}"#).unwrap();
        assert_eq!(r.max_tokens, Some(16));
        assert_eq!(r.common.n, 1);
        let r: CompletionRequest =
            serde_json::from_str(r#"{"prompt":"x","max_tokens":null}"#).unwrap();
        assert_eq!(r.max_tokens, None);
        assert!(
            serde_json::from_str::<CompletionRequest>(r#"{"prompt":"x","max_tokens":"x"}"#)
                .is_err()
        );
    }
}

/// `/detokenize`'s answer (`DetokenizeResponse`).
#[derive(Serialize)]
pub struct DetokenizeResponse<'a> {
    pub prompt: &'a str,
}

/// `/tokenize`'s answer (`TokenizeResponse`), serialized from the ids as they are.
#[derive(Serialize)]
pub struct TokenizeResponse<'a> {
    pub count: usize,
    pub max_model_len: usize,
    pub tokens: &'a [u32],
    pub token_strs: Option<TokenStrs<'a>>,
}

/// Each token's string, made [`TOKEN_STRS_BLOCK`] ids at a time while serializing, so that
/// the strings of millions of ids are never all held at once.
pub struct TokenStrs<'a> {
    pub codec: &'a dyn crate::text::TextCodec,
    pub ids: &'a [u32],
}

/// Ids whose strings [`TokenStrs`] makes at a time.
pub const TOKEN_STRS_BLOCK: usize = 4096;

impl Serialize for TokenStrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.ids.len()))?;
        for block in self.ids.chunks(TOKEN_STRS_BLOCK) {
            for t in self.codec.token_strs(block) {
                seq.serialize_element(&t)?;
            }
        }
        seq.end()
    }
}
