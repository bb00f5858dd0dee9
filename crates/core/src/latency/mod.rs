//! Step latency: the only part of a vLLM step the emulator does not run. The engine asks the
//! model once per step with the step's batch and advances its device clock by the answer.

pub mod detect;
pub mod linear;
pub mod profile;
pub mod step_cycle;

pub use detect::latency_spec_for_profile;
pub use linear::LinearLatency;
pub use profile::{BatchShape, ProfileError, ProfileLatency};
pub use step_cycle::StepCycleLatency;

use crate::sched::ScheduledRequest;
use crate::sizing::ModelShape;
use crate::time::Nanos;
use thiserror::Error;

/// A step's batch as the latency model sees it.
#[derive(Copy, Clone, Debug)]
pub struct StepBatch<'a> {
    /// Every scheduled request: tokens this step, tokens computed before, prompt length, whether
    /// it samples (a decode or the last chunk of a prefill).
    pub requests: &'a [ScheduledRequest],
    /// Σ tokens scheduled.
    pub total_tokens: usize,
    /// Running requests after scheduling (the batch's concurrency).
    pub num_running: usize,
}

impl StepBatch<'_> {
    /// Σ tokens already computed of the scheduled requests (the attention context).
    pub fn context_tokens(&self) -> usize {
        self.requests.iter().map(|r| r.num_computed_before).sum()
    }
}

/// Gives the duration of one engine step on the emulated device.
pub trait LatencyModel: Send {
    /// Duration of the step with this batch; called once per non-empty step, in order.
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos;

    /// One line describing the model and its parameters, for reports.
    fn describe(&self) -> String;
}

#[derive(Debug, Error, PartialEq)]
pub enum LatencySpecError {
    #[error("unknown latency model `{0}` (known: linear, profile, step-cycle)")]
    UnknownKind(String),
    #[error("bad latency parameter `{0}`: {1}")]
    BadParam(String, String),
}

/// Parses `--latency KIND:key=value,...` for models that need no model shape (`linear`);
/// `profile` needs the shape: use [`parse_latency_spec_with`].
pub fn parse_latency_spec(spec: &str) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    parse_latency_spec_inner(spec, None)
}

/// Parses `--latency KIND:key=value,...` for every kind, `profile:dir=PATH[,tp=N]` included
/// (its layer count comes from `shape`).
pub fn parse_latency_spec_with(
    spec: &str,
    shape: &ModelShape,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    parse_latency_spec_inner(spec, Some(shape))
}

fn parse_latency_spec_inner(
    spec: &str,
    shape: Option<&ModelShape>,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "linear" => Ok(Box::new(LinearLatency::parse_params(params)?)),
        "step-cycle" => Ok(Box::new(StepCycleLatency::parse_params(params)?)),
        "profile" => match shape {
            Some(shape) => Ok(Box::new(ProfileLatency::parse_params(params, shape)?)),
            None => Err(LatencySpecError::BadParam(
                spec.into(),
                "the profile model needs the model shape (parse_latency_spec_with)".into(),
            )),
        },
        other => Err(LatencySpecError::UnknownKind(other.to_string())),
    }
}
