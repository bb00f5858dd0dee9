//! The one mapping from failures to HTTP: vLLM's `ErrorResponse` body
//! `{"error":{"message","type","param","code"}}` with the HTTP status equal to `code`, and the
//! few routes where vLLM (FastAPI) answers with another shape.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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
}
