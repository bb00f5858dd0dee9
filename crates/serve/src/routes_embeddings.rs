//! `/v1/embeddings` as vLLM 0.19 serves it with `--runner pooling` (`pooling/embed/`):
//! the request's inputs tokenized as vLLM does, each answered with a synthetic unit vector of
//! the model's hidden size, the same for the same tokens. Without the pooling runner vLLM does
//! not mount the route (404), and neither does llm-emu.
//!
//! The vectors are computed here, without the engine: an embedding request takes no engine
//! time and does not appear in the engine's metrics.

use crate::errors::{ApiError, UnserializableBody};
use crate::generate::{
    check_prompt_ids, check_request_template, prompt_max_tokens, truncate_prompt,
};
use crate::protocol::{FullUsage, PromptInput, Usage, ValidateRequest};
use crate::routes::{check_model, parse_request, request_renderer, response_model};
use crate::state::{unix_now, AppState};
use crate::structured::rng::mix;
use crate::text::{encode_within, ChatOptions};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// vLLM's `EmbeddingCompletionRequest` / `EmbeddingChatRequest`: `input` or `messages`.
#[derive(Deserialize)]
pub struct EmbeddingRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input: Option<PromptInput>,
    #[serde(default)]
    pub messages: Option<Vec<serde_json::Value>>,
    #[serde(default = "float_format")]
    pub encoding_format: String,
    #[serde(default)]
    pub dimensions: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub truncate_prompt_tokens: Option<i64>,
    /// Default: true for `input`, false for `messages` (the template adds them).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    #[serde(default)]
    pub add_generation_prompt: bool,
    #[serde(default)]
    pub continue_final_message: bool,
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub chat_template_kwargs: Option<serde_json::Value>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "float32")]
    pub embed_dtype: String,
    #[serde(default = "native")]
    pub endianness: String,
}

fn float_format() -> String {
    "float".into()
}
fn float32() -> String {
    "float32".into()
}
fn native() -> String {
    "native".into()
}

fn validation(loc: &str, msg: &str) -> ApiError {
    ApiError::Validation(format!(
        "1 validation error:\n  {{'type': 'value_error', 'loc': ('body', '{loc}'), 'msg': '{msg}'}}"
    ))
}

impl ValidateRequest for EmbeddingRequest {
    fn validate(&self) -> Result<(), ApiError> {
        if self.input.is_none() && self.messages.is_none() {
            return Err(ApiError::Validation(
                "1 validation error:\n  {'type': 'missing', 'loc': ('body', 'input'), 'msg': \
                 'Field required'}"
                    .into(),
            ));
        }
        if !["float", "base64"].contains(&self.encoding_format.as_str()) {
            // vLLM also knows `bytes` and `bytes_only` (binary responses); llm-emu does not.
            return Err(validation(
                "encoding_format",
                "Input should be \\'float\\' or \\'base64\\'",
            ));
        }
        if self.embed_dtype != "float32" {
            return Err(validation(
                "embed_dtype",
                "llm-emu encodes embeddings as float32 only",
            ));
        }
        if !["native", "little"].contains(&self.endianness.as_str()) {
            return Err(validation(
                "endianness",
                "llm-emu encodes embeddings little-endian (native) only",
            ));
        }
        if self.truncate_prompt_tokens.is_some_and(|t| t < -1) {
            return Err(validation(
                "truncate_prompt_tokens",
                "Input should be greater than or equal to -1",
            ));
        }
        if self.continue_final_message && self.add_generation_prompt {
            return Err(ApiError::bad_request(
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            ));
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct EmbeddingData {
    index: usize,
    object: &'static str,
    embedding: Embedding,
}

/// One vector as the response carries it. The floats are held as the f64 values Python's
/// `float()` of each f32 gives, serialized straight into the body: no JSON value tree, so a
/// response costs about its own size once more in memory, not several times.
#[derive(Serialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f64>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingResponse<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    data: Vec<EmbeddingData>,
    usage: FullUsage,
}

/// A deterministic unit vector of `dim` components for a token sequence: the same tokens give
/// the same vector, different ones (almost surely) different vectors.
pub fn synthetic_embedding(ids: &[u32], dim: usize) -> Vec<f32> {
    let seed = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut v: Vec<f64> = (0..dim as u64)
        .map(|i| (mix(seed ^ mix(i)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v.into_iter().map(|x| x as f32).collect()
}

/// Standard base64 (with padding), as `pybase64.b64encode`.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(dim) = state.pooling_hidden_size else {
        return Err(ApiError::Internal(
            "The model does not support Embeddings API".into(),
        ));
    };
    let req: EmbeddingRequest = parse_request(&state, body).await?;
    check_model(&state, &req.model)?;
    if req.dimensions.is_some() {
        // vLLM's `PoolingParams` check for a model without matryoshka dimensions.
        return Err(ApiError::bad_request(format!(
            "Model \"{}\" does not support matryoshka representation, changing output \
             dimensions will lead to poor results.",
            state.model_name()
        )));
    }
    if req.messages.is_some() {
        check_request_template(
            state.trust_request_chat_template,
            &req.chat_template,
            &req.chat_template_kwargs,
        )?;
    }
    let max_len = state.max_model_len;
    let codec = state.codec.clone();
    let mut opts = ChatOptions {
        add_generation_prompt: req.add_generation_prompt,
        continue_final_message: req.continue_final_message,
        chat_template: req.chat_template.clone(),
        chat_template_kwargs: req.chat_template_kwargs.clone(),
        tools: None,
        request_renderer: None,
    };
    if req.messages.is_some() {
        // A template the request brings renders in the template sandbox, as on chat.
        opts.request_renderer = request_renderer(&state, &opts).await;
    }
    let (messages, input) = (req.messages.clone(), req.input.clone());
    let add_special = req.add_special_tokens;
    let prompts: Vec<(Vec<u32>, bool)> = state
        .text_jobs
        .run(move || {
            let enc = |t: &str, special: bool| encode_within(&*codec, t, special, max_len);
            let out = match (messages, input) {
                (Some(m), _) => {
                    let text = codec.render_chat(&serde_json::Value::Array(m), &opts)?;
                    vec![(enc(&text, add_special.unwrap_or(false))?, true)]
                }
                (None, Some(p)) => {
                    let special = add_special.unwrap_or(true);
                    match p {
                        PromptInput::Text(t) => vec![(enc(&t, special)?, true)],
                        PromptInput::Texts(ts) => ts
                            .iter()
                            .map(|t| Ok((enc(t, special)?, true)))
                            .collect::<Result<_, crate::text::TextError>>()?,
                        PromptInput::Ids(ids) => vec![(ids, false)],
                        PromptInput::IdLists(l) => l.into_iter().map(|i| (i, false)).collect(),
                    }
                }
                (None, None) => Vec::new(),
            };
            Ok::<_, crate::text::TextError>(out)
        })
        .await??;
    if prompts.is_empty() {
        return Err(ApiError::bad_request("You must pass at least one prompt"));
    }
    let base64_out = req.encoding_format == "base64";
    let vocab = state.codec.vocab_size();
    let truncate = req.truncate_prompt_tokens;
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(req.request_id.clone())
        .unwrap_or_else(|| state.random_id());
    let model = response_model(&state, &req.model);
    // Checking, building and serializing every vector is CPU work proportional to
    // inputs × hidden size: on the text workers, not the async ones.
    let body = state
        .text_jobs
        .run(move || {
            let mut data = Vec::with_capacity(prompts.len());
            let mut prompt_tokens = 0u64;
            for (index, (mut ids, from_text)) in prompts.into_iter().enumerate() {
                truncate_prompt(&mut ids, truncate, max_len);
                prompt_max_tokens(ids.len(), Some(0), max_len, from_text)?;
                check_prompt_ids(&ids, vocab)?;
                prompt_tokens += ids.len() as u64;
                let v = synthetic_embedding(&ids, dim);
                let embedding = if base64_out {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Embedding::Base64(base64(&bytes))
                } else {
                    Embedding::Floats(v.iter().map(|&x| f64::from(x)).collect())
                };
                data.push(EmbeddingData {
                    index,
                    object: "embedding",
                    embedding,
                });
            }
            serde_json::to_vec(&EmbeddingResponse {
                id: format!("embd-{id}"),
                object: "list",
                created: unix_now(),
                model: &model,
                data,
                usage: FullUsage::from(Usage::new(prompt_tokens, 0)),
            })
            .map_err(|e| ApiError::from(UnserializableBody(e)))
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let a = synthetic_embedding(&[1, 2, 3], 64);
        let b = synthetic_embedding(&[1, 2, 3], 64);
        let c = synthetic_embedding(&[1, 2, 4], 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
