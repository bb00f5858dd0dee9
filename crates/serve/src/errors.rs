//! The one mapping from failures to HTTP: vLLM's `ErrorResponse` body
//! `{"error":{"message","type","param","code"}}` with the HTTP status equal to `code`, and the
//! few routes where vLLM (FastAPI) answers with another shape. Every source of errors the routes
//! meet (the text codec, the engine's refusals, the engine thread, the request body, response
//! serialization) has its `From` impl here, so call sites use `?`.

use crate::engine_loop::EngineGone;
use crate::text::TextError;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use llm_emu_core::RequestError;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// `BadRequestError` (400), as vLLM's serving code raises it; `param` names the field.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// A body that does not parse or validate against the request model: FastAPI's
    /// `RequestValidationError`, which vLLM answers with type `"Bad Request"`.
    Validation(String),
    /// A request-model validator's failure naming its field (vLLM's `VLLMValidationError`
    /// raised in a pydantic validator): type "Bad Request", `param` set.
    InvalidField { message: String, param: String },
    /// A JSON route called without `Content-Type: application/json` (vLLM's
    /// `validate_json_request`).
    UnsupportedMediaType,
    /// A body that is not UTF-8 (FastAPI's `{"detail": …}` answer).
    BodyNotParsable,
    /// `NotFoundError` (404) for an unknown model.
    ModelNotFound(String),
    /// Missing or wrong API key on a `/v1` route.
    Unauthorized,
    /// The body exceeds the server's limit, bytes (llm-emu's own: vLLM has no limit).
    PayloadTooLarge(usize),
    /// The body did not arrive within the server's limit (llm-emu's own).
    BodyTimeout(std::time::Duration),
    /// The engine is gone (503, vLLM's `EngineDeadError` maps to 500; we keep serving `/health`).
    EngineDead,
    /// Anything else (500 `InternalServerError`).
    Internal(String),
    /// vLLM's `create_error_response` with its own type and status (`InvalidUserInput` 400,
    /// `NotFoundError` 404 for an unknown adapter, …).
    Typed {
        status: u16,
        kind: &'static str,
        message: String,
        param: Option<String>,
    },
}

#[derive(Serialize)]
struct ErrorInfo<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: u16,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInfo<'a>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    /// vLLM's `VLLMValidationError`: the message carries `(parameter=…, value=…)`.
    pub fn invalid_param(message: &str, param: &str, value: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest {
            message: format!("{message} (parameter={param}, value={value})"),
            param: Some(param.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::Validation(_)
            | ApiError::InvalidField { .. }
            | ApiError::UnsupportedMediaType
            | ApiError::BodyNotParsable => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::EngineDead => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Typed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let code = self.status().as_u16();
        let (message, kind, param): (String, &str, Option<&str>) = match self {
            ApiError::BadRequest { message, param } => {
                (message.clone(), "BadRequestError", param.as_deref())
            }
            ApiError::Validation(m) => (m.clone(), "Bad Request", None),
            ApiError::InvalidField { message, param } => {
                (message.clone(), "Bad Request", Some(param.as_str()))
            }
            // vLLM's text byte for byte (FastAPI's `str(exc)` and `str(exc.errors())`).
            ApiError::UnsupportedMediaType => (
                "1 validation error:\n  Unsupported Media Type: Only 'application/json' is \
                 allowed [\"Unsupported Media Type: Only 'application/json' is allowed\"]"
                    .to_string(),
                "Bad Request",
                None,
            ),
            ApiError::BodyNotParsable => {
                return r#"{"detail":"There was an error parsing the body"}"#.to_string()
            }
            ApiError::Unauthorized => return r#"{"error":"Unauthorized"}"#.to_string(),
            ApiError::ModelNotFound(m) => (
                format!("The model `{m}` does not exist."),
                "NotFoundError",
                Some("model"),
            ),
            ApiError::PayloadTooLarge(limit) => (
                format!(
                    "The request body exceeds the server's limit of {limit} bytes \
                     (--max-request-body-mib)."
                ),
                "BadRequestError",
                None,
            ),
            ApiError::BodyTimeout(limit) => (
                format!(
                    "The request body did not arrive within {} s (--body-read-timeout-s).",
                    limit.as_secs_f64()
                ),
                "BadRequestError",
                None,
            ),
            ApiError::EngineDead => (
                "The engine is not running.".to_string(),
                "ServiceUnavailableError",
                None,
            ),
            ApiError::Internal(m) => (m.clone(), "InternalServerError", None),
            ApiError::Typed {
                kind,
                message,
                param,
                ..
            } => (message.clone(), *kind, param.as_deref()),
        };
        serde_json::to_string(&ErrorBody {
            error: ErrorInfo {
                message: &message,
                kind,
                param,
                code,
            },
        })
        .expect("error bodies serialize")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response()
    }
}

/// The codec's errors: the request's own faults stay 400 with their text; the text crate's
/// are placed by kind.
impl From<TextError> for ApiError {
    fn from(e: TextError) -> ApiError {
        match e {
            TextError::Model(e) => e.into(),
            TextError::Input(message) => ApiError::bad_request(message),
        }
    }
}

/// The text crate's errors by who is at fault, as vLLM's serving code answers them: the
/// request's messages, chat template or token ids (vLLM's `ValueError` and jinja2
/// `TemplateError`) are a 400 with the error's text; the server's tokenizer and its files are a
/// 500. The match names every kind, so that a new one must be placed.
impl From<llm_emu_text::TextError> for ApiError {
    fn from(e: llm_emu_text::TextError) -> ApiError {
        use llm_emu_text::TextError as T;
        match &e {
            T::InvalidMessages(_)
            | T::NoChatTemplate
            | T::UnknownChatTemplate(_)
            | T::Template(_)
            | T::TemplateLimit(_)
            | T::UnknownToken { .. } => ApiError::bad_request(e.to_string()),
            T::Tokenizer(_)
            | T::Io { .. }
            | T::MissingTokenizer(_)
            | T::BadTokenizer { .. }
            | T::BadConfig { .. }
            | T::ModelNotCached { .. }
            | T::BadModelName(_)
            | T::InvalidSampler(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// The engine's refusals, with the messages vLLM's input processor gives.
impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        match e {
            RequestError::EmptyPrompt => {
                ApiError::bad_request("The decoder prompt cannot be empty")
            }
            RequestError::PromptTooLong {
                prompt_len,
                max_model_len,
            } => ApiError::bad_request(format!(
                "The decoder prompt (length {prompt_len}) plus the number of requested output \
                 tokens (at least 1) is longer than the maximum model length of {max_model_len}. \
                 Make sure that `max_model_len` is no smaller than the number of text tokens \
                 (prompt + requested output tokens)."
            )),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// The engine thread is gone: its requests cannot be served.
impl From<EngineGone> for ApiError {
    fn from(_: EngineGone) -> ApiError {
        ApiError::EngineDead
    }
}

/// A body that could not be read is answered as one that does not parse (FastAPI's answer).
impl From<BytesRejection> for ApiError {
    fn from(_: BytesRejection) -> ApiError {
        ApiError::BodyNotParsable
    }
}

/// A response body that did not serialize: the server's fault, never the request's (a
/// request body that does not parse is [`ApiError::Validation`], built where it is parsed).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UnserializableBody(#[from] pub serde_json::Error);

impl From<UnserializableBody> for ApiError {
    fn from(e: UnserializableBody) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_vllm() {
        assert_eq!(
            ApiError::ModelNotFound("nope".into()).body(),
            r#"{"error":{"message":"The model `nope` does not exist.","type":"NotFoundError","param":"model","code":404}}"#
        );
        assert_eq!(
            ApiError::invalid_param("max_tokens must be at least 1, got 0.", "max_tokens", 0)
                .body(),
            r#"{"error":{"message":"max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)","type":"BadRequestError","param":"max_tokens","code":400}}"#
        );
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::UnsupportedMediaType.body(),
            r#"{"error":{"message":"1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed [\"Unsupported Media Type: Only 'application/json' is allowed\"]","type":"Bad Request","param":null,"code":400}}"#
        );
        // The limit itself, not the length of some other text.
        assert!(ApiError::PayloadTooLarge(64 << 20)
            .body()
            .contains("limit of 67108864 bytes"));
    }

    #[test]
    fn text_errors_are_the_request_s_fault_only_when_the_input_causes_them() {
        use llm_emu_text::TextError as T;
        let input = [
            T::InvalidMessages("messages[0] has no role".into()),
            T::NoChatTemplate,
            T::UnknownChatTemplate("tool_use".into()),
            T::Template("raise_exception: bad roles".into()),
            T::TemplateLimit("the chat template ran too long".into()),
            T::UnknownToken {
                id: 9,
                vocab_size: 5,
            },
        ];
        for e in input {
            let message = e.to_string();
            let api = ApiError::from(TextError::Model(e));
            assert_eq!(api.status(), StatusCode::BAD_REQUEST, "{message}");
            assert_eq!(api, ApiError::bad_request(message));
        }
        let internal = [
            T::Tokenizer("decoder failed".into()),
            T::BadConfig {
                path: "tokenizer_config.json".into(),
                message: "not JSON".into(),
            },
            T::MissingTokenizer("/nowhere".into()),
        ];
        for e in internal {
            let message = e.to_string();
            let api = ApiError::from(TextError::Model(e));
            assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR, "{message}");
            assert!(api.body().contains(r#""type":"InternalServerError""#));
            assert_eq!(api, ApiError::Internal(message));
        }
        let codec_input = ApiError::from(TextError::Input("messages must be a list".into()));
        assert_eq!(
            codec_input,
            ApiError::bad_request("messages must be a list")
        );
    }

    #[test]
    fn engine_refusals_keep_vllm_s_messages() {
        let e = ApiError::from(RequestError::PromptTooLong {
            prompt_len: 4096,
            max_model_len: 4096,
        });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.body().contains(
            "The decoder prompt (length 4096) plus the number of requested output tokens (at \
             least 1) is longer than the maximum model length of 4096."
        ));
        assert_eq!(
            ApiError::from(RequestError::EmptyPrompt),
            ApiError::bad_request("The decoder prompt cannot be empty")
        );
        assert_eq!(
            ApiError::from(EngineGone).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
