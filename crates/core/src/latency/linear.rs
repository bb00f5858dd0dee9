//! `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]`: step time =
//! B + P × scheduled tokens + R × scheduled requests + C × context tokens, in microseconds —
//! the same function the vLLM reference server sleeps for, so both can be compared exactly.

use super::{LatencyModel, StepBatch};
use crate::time::Nanos;

#[derive(Clone, Debug, PartialEq)]
pub struct LinearLatency {
    /// Fixed cost per step, µs.
    pub base_us: f64,
    /// Cost per scheduled token, µs.
    pub per_token_us: f64,
    /// Cost per scheduled request, µs.
    pub per_req_us: f64,
    /// Cost per token of context already computed, µs.
    pub per_ctx_us: f64,
}

impl Default for LinearLatency {
    fn default() -> Self {
        LinearLatency {
            base_us: 5000.0,
            per_token_us: 0.0,
            per_req_us: 0.0,
            per_ctx_us: 0.0,
        }
    }
}

impl LinearLatency {
    pub fn new(base_us: f64, per_token_us: f64) -> LinearLatency {
        LinearLatency {
            base_us,
            per_token_us,
            ..Default::default()
        }
    }
}

impl LatencyModel for LinearLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        let us = self.base_us
            + self.per_token_us * batch.total_tokens as f64
            + self.per_req_us * batch.requests.len() as f64
            + self.per_ctx_us * batch.context_tokens() as f64;
        Nanos((us * 1000.0).round() as u64)
    }

    fn describe(&self) -> String {
        format!(
            "linear: {} µs + {} µs/token + {} µs/request + {} µs/context token",
            self.base_us, self.per_token_us, self.per_req_us, self.per_ctx_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes() {
        let mut m = LinearLatency::new(1000.0, 2.5);
        let b = StepBatch {
            requests: &[],
            total_tokens: 100,
            padded_tokens: 100,
            num_running: 0,
        };
        assert_eq!(m.step_time(&b), Nanos(1_250_000));
    }
}
