//! The real server's front end: the CPU time vLLM's OpenAI API server spends between a client and
//! the engine core, which a client sees and llm-emu's own front end does not have.
//!
//! Two parts, both measured on the vLLM reference server by `tools/measure-frontend/measure.py`
//! (data files in `crates/perf/data/frontend/`, documented in its README):
//! - **request in** (client send → the engine core sees the request): HTTP parse, pydantic
//!   validation, chat template, tokenization, hand-over over ZMQ;
//!   `per_request_us + per_prompt_token_ns × prompt tokens`.
//! - **token out** (end of the engine step → the client reads the chunk): output serialisation,
//!   ZMQ, detokenisation, output processing, SSE framing; `per_output_token_us +
//!   per_batch_output_us × (requests in the step − 1)`, since the API server handles a step's
//!   outputs one request after another. It is a delay, not a cost per gap: each token arrives
//!   that much later, so inter-token gaps keep the engine's spacing.
//!
//! Under load the ways in queue ([`ApiServerQueue`]): vLLM's API server is one Python process
//! whose event loop runs one request's way in after another, so requests sent together reach
//! the engine core one way in apart (measured against the reference server in
//! docs/fidelity.md, "The front end under load").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

/// The built-in measurement (`--frontend-latency vllm`): vLLM 0.19 on the reference server.
pub const VLLM_BUILTIN: &str = include_str!("../data/frontend/vllm-0.19-amd-epyc-2c.json");
/// Its file name, shown in reports.
pub const VLLM_BUILTIN_NAME: &str = "vllm-0.19-amd-epyc-2c.json";

/// Front-end delays, in the units their names say. All non-negative and finite.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontendLatency {
    /// Fixed part of a request's way in (completions), µs.
    pub per_request_us: f64,
    /// Per prompt token on the way in (tokenization), ns.
    pub per_prompt_token_ns: f64,
    /// A token's way out when its step ran alone, µs.
    pub per_output_token_us: f64,
    /// Added to a token's way out per other request in the same step, µs.
    #[serde(default)]
    pub per_batch_output_us: f64,
}

#[derive(Debug, Error)]
pub enum FrontendError {
    #[error("--frontend-latency {path}: {msg}")]
    File { path: String, msg: String },
    #[error("--frontend-latency {path}: `{key}` must be a finite number ≥ 0, not {value}")]
    Value {
        path: String,
        key: &'static str,
        value: f64,
    },
}

impl FrontendLatency {
    /// Parses a front-end file (the JSON `measure.py` writes; other keys are documentation).
    pub fn from_json(text: &str, name: &str) -> Result<FrontendLatency, FrontendError> {
        let f: FrontendLatency = serde_json::from_str(text).map_err(|e| FrontendError::File {
            path: name.to_string(),
            msg: e.to_string(),
        })?;
        for (key, value) in [
            ("per_request_us", f.per_request_us),
            ("per_prompt_token_ns", f.per_prompt_token_ns),
            ("per_output_token_us", f.per_output_token_us),
            ("per_batch_output_us", f.per_batch_output_us),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(FrontendError::Value {
                    path: name.to_string(),
                    key,
                    value,
                });
            }
        }
        Ok(f)
    }

    pub fn load(path: &Path) -> Result<FrontendLatency, FrontendError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FrontendError::File {
            path: name.clone(),
            msg: e.to_string(),
        })?;
        Self::from_json(&text, &name)
    }

    /// The built-in vLLM 0.19 measurement.
    pub fn vllm() -> FrontendLatency {
        Self::from_json(VLLM_BUILTIN, VLLM_BUILTIN_NAME).expect("the built-in file is valid")
    }

    /// Client send → the engine core has the request, seconds.
    pub fn request_in_s(&self, prompt_tokens: usize) -> f64 {
        (self.per_request_us * 1e3 + self.per_prompt_token_ns * prompt_tokens as f64) * 1e-9
    }

    /// End of the step that made a token → the client has it, seconds, for a step of
    /// `requests_in_step` requests (0 counts as 1).
    pub fn token_out_s(&self, requests_in_step: usize) -> f64 {
        let others = requests_in_step.saturating_sub(1) as f64;
        (self.per_output_token_us + self.per_batch_output_us * others) * 1e-6
    }
}

/// The API server's ways in, one after another: a request's way in starts when the requests
/// sent before it are through theirs (vLLM's API server is a single Python event loop, and a
/// way in is its CPU work: HTTP parsing, validation, tokenization, the hand-over). The service
/// time is the whole alone way in ([`FrontendLatency::request_in_s`]), which counts as serial
/// the parts that are not (the ZMQ hop, the engine core picking the request up); the measured
/// bursts agree with that within their noise (docs/fidelity.md).
///
/// Requests must be admitted in the order they were sent. Times are seconds on any one clock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ApiServerQueue {
    /// When the API server is through the ways in admitted so far, s.
    free_at_s: f64,
}

impl ApiServerQueue {
    /// Admits a request sent at `send_s` with `prompt_tokens` prompt tokens; returns its way
    /// in under the queue: the wait for the requests sent before it plus its own way in, s.
    pub fn admit(&mut self, fe: &FrontendLatency, send_s: f64, prompt_tokens: usize) -> f64 {
        let start = send_s.max(self.free_at_s);
        self.free_at_s = start + fe.request_in_s(prompt_tokens);
        self.free_at_s - send_s
    }
}

/// `--frontend-latency`: `none`, `vllm` (built in) or a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FrontendSpec {
    #[default]
    None,
    Vllm,
    File(PathBuf),
}

impl FromStr for FrontendSpec {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => FrontendSpec::None,
            "vllm" => FrontendSpec::Vllm,
            p => FrontendSpec::File(PathBuf::from(p)),
        })
    }
}

impl fmt::Display for FrontendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendSpec::None => f.write_str("none"),
            FrontendSpec::Vllm => write!(f, "vllm ({VLLM_BUILTIN_NAME})"),
            FrontendSpec::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl FrontendSpec {
    /// The model, or `None` for `none`.
    pub fn build(&self) -> Result<Option<FrontendLatency>, FrontendError> {
        Ok(match self {
            FrontendSpec::None => None,
            FrontendSpec::Vllm => Some(FrontendLatency::vllm()),
            FrontendSpec::File(p) => Some(FrontendLatency::load(p)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_is_positive() {
        let f = FrontendLatency::vllm();
        assert!(f.per_request_us > 0.0 && f.per_output_token_us > 0.0);
        assert!(f.request_in_s(1000) > f.request_in_s(10));
        assert!(f.token_out_s(32) >= f.token_out_s(1));
        assert_eq!(f.token_out_s(0), f.token_out_s(1));
    }

    #[test]
    fn units() {
        let f = FrontendLatency {
            per_request_us: 1000.0,
            per_prompt_token_ns: 500.0,
            per_output_token_us: 200.0,
            per_batch_output_us: 10.0,
        };
        assert!((f.request_in_s(2000) - 0.002).abs() < 1e-12);
        assert!((f.token_out_s(11) - 0.0003).abs() < 1e-12);
    }

    /// Three requests sent together leave one way in apart; one sent after the API server is
    /// free again waits for nothing.
    #[test]
    fn ways_in_sent_together_queue_one_after_another() {
        let f = FrontendLatency {
            per_request_us: 1000.0,
            per_prompt_token_ns: 1000.0,
            per_output_token_us: 0.0,
            per_batch_output_us: 0.0,
        };
        let mut q = ApiServerQueue::default();
        // 1 ms + 1000 tokens × 1 µs = 2 ms each.
        let ins: Vec<f64> = (0..3).map(|_| q.admit(&f, 1.0, 1000)).collect();
        for (got, want) in ins.iter().zip([0.002, 0.004, 0.006]) {
            assert!((got - want).abs() < 1e-12, "{ins:?}");
        }
        // Sent 1 ms into the third way in: waits 1 ms, then its own (no prompt: 1 ms).
        assert!((q.admit(&f, 1.005, 0) - 0.002).abs() < 1e-12);
        // Sent after the queue has drained: the alone way in.
        assert!((q.admit(&f, 2.0, 1000) - f.request_in_s(1000)).abs() < 1e-12);
    }

    #[test]
    fn bad_files_are_errors() {
        let e = FrontendLatency::from_json(r#"{"per_request_us": 1}"#, "x.json").unwrap_err();
        assert!(e.to_string().contains("x.json"), "{e}");
        let e = FrontendLatency::from_json(
            r#"{"per_request_us": -1, "per_prompt_token_ns": 0, "per_output_token_us": 0}"#,
            "y.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("per_request_us"), "{e}");
    }

    #[test]
    fn spec_round_trip() {
        assert_eq!("none".parse::<FrontendSpec>().unwrap(), FrontendSpec::None);
        assert_eq!("vllm".parse::<FrontendSpec>().unwrap(), FrontendSpec::Vllm);
        assert_eq!(
            "a/b.json".parse::<FrontendSpec>().unwrap(),
            FrontendSpec::File("a/b.json".into())
        );
        assert!(FrontendSpec::None.build().unwrap().is_none());
    }
}
