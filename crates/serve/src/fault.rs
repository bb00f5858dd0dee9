//! Failure injection, a test aid for routers and clients: a share of the generation requests
//! (`--fail-rate`, drawn from a seeded sequence, so the same seed and arrival order fail the
//! same requests) or the requests that ask for it in the [`FAULT_HEADER`] header (only with
//! `--enable-fail-header`) fail as vLLM 0.19 fails them, with vLLM's status and JSON body:
//!
//! - `bad_request`: 400 `BadRequestError`, the context-length refusal of vLLM's input
//!   processor (its most common 400), with the request's prompt length;
//! - `internal`: 500 `InternalServerError` "Internal server error", vLLM's `GenerationError`
//!   (a request the engine finished with `finish_reason` error, e.g. a KV load failure);
//! - `engine_dead`: 500 `InternalServerError` with `EngineDeadError`'s message;
//! - `unavailable`: 503 `{"error": "The model is currently scaling. …"}`, the only 503 vLLM's
//!   routes give (its `ScalingMiddleware`);
//! - `mid_stream`: the request runs, then fails after some output tokens as vLLM's
//!   `EngineGenerateError` does (an empty message, type `InternalServerError`, 500): its engine
//!   requests are aborted (their KV blocks freed, counted `finished_reason="abort"` as vLLM
//!   counts them), a stream ends with `data: {"error": …}` and `data: [DONE]`, a non-streamed
//!   request gets the 500 body.
//!
//! vLLM returns a streamed response before the engine answers, so `internal` and
//! `engine_dead` reach a streamed request inside the stream (HTTP 200), as in vLLM; the others
//! are HTTP statuses either way.

use crate::errors::ApiError;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use llm_emu_core::RequestError;
use std::sync::atomic::{AtomicU64, Ordering};

/// The request header that forces a failure kind (honoured with `--enable-fail-header`).
pub const FAULT_HEADER: &str = "x-llm-emu-fail";

/// `EngineDeadError`'s message (vllm/v1/engine/exceptions.py).
pub const ENGINE_DEAD_MESSAGE: &str =
    "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/// `ScalingMiddleware`'s message (vllm/entrypoints/serve/elastic_ep/middleware.py).
pub const SCALING_MESSAGE: &str = "The model is currently scaling. Please try again later.";

/// A way a request fails, as vLLM 0.19 fails it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    BadRequest,
    Internal,
    EngineDead,
    Unavailable,
    MidStream,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::BadRequest,
        FaultKind::Internal,
        FaultKind::EngineDead,
        FaultKind::Unavailable,
        FaultKind::MidStream,
    ];

    /// The name flags and the header use.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BadRequest => "bad_request",
            FaultKind::Internal => "internal",
            FaultKind::EngineDead => "engine_dead",
            FaultKind::Unavailable => "unavailable",
            FaultKind::MidStream => "mid_stream",
        }
    }

    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name.trim())
    }

    /// Every name, comma-separated (for messages).
    pub fn names() -> String {
        FaultKind::ALL.map(FaultKind::name).join(", ")
    }
}

/// `--fail-rate`, `--fail-kinds`, `--fail-seed`, `--enable-fail-header`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultOptions {
    /// Share of generation requests that fail, 0..=1.
    pub rate: f64,
    /// The kinds a failing request draws from (uniformly); empty: every kind.
    pub kinds: Vec<FaultKind>,
    pub seed: u64,
    /// Honour [`FAULT_HEADER`].
    pub header: bool,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            seed: 0,
            header: false,
        }
    }
}

/// Parses one kind's name (`--fail-kinds` takes a comma-separated list of them).
pub fn parse_kind(name: &str) -> Result<FaultKind, String> {
    FaultKind::parse(name).ok_or_else(|| {
        format!(
            "unknown failure kind {:?}: expected {}",
            name.trim(),
            FaultKind::names()
        )
    })
}

/// One request's failure: its kind and a random draw that places a mid-stream failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    draw: u64,
}

impl Fault {
    /// The number of output tokens (all choices together) after which a `mid_stream` failure
    /// happens: 1 to half of `max_tokens` (at least 1). A request that ends sooner does not fail.
    pub fn after_tokens(&self, max_tokens: u32) -> u64 {
        1 + self.draw % u64::from((max_tokens / 2).max(1))
    }
}

/// What a failing request gets before it reaches the engine, or how it fails later.
pub enum Injected {
    /// An HTTP error answer.
    Answer(Response),
    /// A streamed request: an SSE stream holding only this error and `[DONE]`.
    StreamError(ApiError),
    /// Run, then fail after this many output tokens.
    FailAfter(u64),
}

/// The seeded decision of which requests fail.
pub struct FaultInjector {
    opts: FaultOptions,
    seq: AtomicU64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FaultInjector {
    pub fn new(mut opts: FaultOptions) -> FaultInjector {
        if opts.kinds.is_empty() {
            opts.kinds = FaultKind::ALL.to_vec();
        }
        FaultInjector {
            opts,
            seq: AtomicU64::new(0),
        }
    }

    /// Whether any request can fail (else [`FaultInjector::decide`] is not worth calling).
    pub fn enabled(&self) -> bool {
        self.opts.rate > 0.0 || self.opts.header
    }

    /// The failure of the next generation request, if it fails: the header's kind when the
    /// header is honoured and present, else the seeded draw (one per request, whether or not
    /// the header decided, so that a header does not shift which later requests fail). An
    /// unknown header value is a 400.
    pub fn decide(&self, headers: &HeaderMap) -> Result<Option<Fault>, ApiError> {
        if !self.enabled() {
            return Ok(None);
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let r = splitmix(self.opts.seed ^ splitmix(n));
        let draw = splitmix(r);
        if self.opts.header {
            if let Some(v) = headers.get(FAULT_HEADER) {
                let name = v.to_str().unwrap_or("");
                let kind = FaultKind::parse(name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown {FAULT_HEADER} value {name:?}: expected one of {}",
                        FaultKind::names()
                    ))
                })?;
                return Ok(Some(Fault { kind, draw }));
            }
        }
        // 53 random bits as a number in [0, 1).
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.opts.rate {
            return Ok(None);
        }
        let kind = self.opts.kinds[(draw >> 32) as usize % self.opts.kinds.len()];
        Ok(Some(Fault { kind, draw }))
    }
}

/// How `fault` strikes a request of `prompt_len` tokens (its first prompt) that may generate
/// up to `max_tokens` tokens per choice.
pub fn inject(
    fault: Fault,
    stream: bool,
    prompt_len: usize,
    max_tokens: u32,
    max_model_len: usize,
) -> Injected {
    match fault.kind {
        FaultKind::BadRequest => Injected::Answer(
            ApiError::from(RequestError::PromptTooLong {
                prompt_len,
                max_model_len,
            })
            .into_response(),
        ),
        FaultKind::Unavailable => Injected::Answer(unavailable()),
        FaultKind::Internal | FaultKind::EngineDead => {
            let e = engine_error(fault.kind);
            if stream {
                Injected::StreamError(e)
            } else {
                Injected::Answer(e.into_response())
            }
        }
        FaultKind::MidStream => Injected::FailAfter(fault.after_tokens(max_tokens)),
    }
}

/// The 500 of an engine failure kind.
fn engine_error(kind: FaultKind) -> ApiError {
    match kind {
        FaultKind::EngineDead => ApiError::Internal(ENGINE_DEAD_MESSAGE.into()),
        _ => ApiError::Internal("Internal server error".into()),
    }
}

/// `EngineGenerateError` (no message) as vLLM answers it: what a request that fails mid-way
/// gets.
pub fn mid_stream_error() -> ApiError {
    ApiError::Internal(String::new())
}

/// vLLM's `ScalingMiddleware` answer.
pub fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": SCALING_MESSAGE })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injector(rate: f64, kinds: Vec<FaultKind>, seed: u64) -> FaultInjector {
        FaultInjector::new(FaultOptions {
            rate,
            kinds,
            seed,
            header: false,
        })
    }

    fn run(inj: &FaultInjector, n: usize) -> Vec<Option<FaultKind>> {
        (0..n)
            .map(|_| {
                inj.decide(&HeaderMap::new())
                    .unwrap()
                    .map(|f: Fault| f.kind)
            })
            .collect()
    }

    #[test]
    fn the_same_seed_fails_the_same_requests_and_the_rate_holds() {
        let a = run(&injector(0.25, vec![], 7), 4000);
        let b = run(&injector(0.25, vec![], 7), 4000);
        assert_eq!(a, b);
        let c = run(&injector(0.25, vec![], 8), 4000);
        assert_ne!(a, c);
        let failed = a.iter().filter(|k| k.is_some()).count();
        // Binomial(4000, 0.25): mean 1000, sd about 27.
        assert!((880..=1120).contains(&failed), "{failed}");
        // Every kind is drawn.
        for k in FaultKind::ALL {
            assert!(a.contains(&Some(k)), "{k:?} never drawn");
        }
        assert!(run(&injector(0.0, vec![], 7), 1000)
            .iter()
            .all(Option::is_none));
        assert!(run(&injector(1.0, vec![FaultKind::Internal], 7), 100)
            .iter()
            .all(|k| *k == Some(FaultKind::Internal)));
    }

    #[test]
    fn the_header_forces_a_kind_only_when_enabled() {
        let mut h = HeaderMap::new();
        h.insert(FAULT_HEADER, "unavailable".parse().unwrap());
        assert_eq!(injector(0.0, vec![], 1).decide(&h).unwrap(), None);
        let inj = FaultInjector::new(FaultOptions {
            header: true,
            ..FaultOptions::default()
        });
        assert_eq!(
            inj.decide(&h).unwrap().map(|f| f.kind),
            Some(FaultKind::Unavailable)
        );
        assert_eq!(inj.decide(&HeaderMap::new()).unwrap(), None);
        h.insert(FAULT_HEADER, "sometimes".parse().unwrap());
        let e = inj.decide(&h).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.body().contains("mid_stream"), "{}", e.body());
    }

    #[test]
    fn bodies_are_vllm_s() {
        assert_eq!(
            engine_error(FaultKind::Internal).body(),
            r#"{"error":{"message":"Internal server error","type":"InternalServerError","param":null,"code":500}}"#
        );
        assert_eq!(
            engine_error(FaultKind::EngineDead).body(),
            r#"{"error":{"message":"EngineCore encountered an issue. See stack trace (above) for the root cause.","type":"InternalServerError","param":null,"code":500}}"#
        );
        assert_eq!(
            mid_stream_error().body(),
            r#"{"error":{"message":"","type":"InternalServerError","param":null,"code":500}}"#
        );
        assert_eq!(unavailable().status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn mid_stream_failures_fall_within_half_of_max_tokens() {
        for draw in 0..100u64 {
            let f = Fault {
                kind: FaultKind::MidStream,
                draw,
            };
            assert!((1..=8).contains(&f.after_tokens(16)));
            assert_eq!(f.after_tokens(1), 1);
        }
    }

    #[test]
    fn kinds_parse_and_unknown_ones_are_named() {
        assert_eq!(parse_kind(" mid_stream"), Ok(FaultKind::MidStream));
        assert!(parse_kind("oops").unwrap_err().contains("\"oops\""));
    }
}
