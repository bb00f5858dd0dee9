//! Step latency: the only part of a vLLM step the emulator does not run. The engine asks the
//! model once per step with the step's batch and advances its device clock by the answer.

pub mod detect;
pub mod linear;
pub mod profile;
pub mod roofline;
pub mod step_cycle;

pub use detect::latency_spec_for_profile;
pub use linear::LinearLatency;
pub use profile::{BatchShape, ProfileError, ProfileLatency};
pub use roofline::RooflineLatency;
pub use step_cycle::StepCycleLatency;

use crate::gpu::GpuSpec;
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
    /// Tokens the device computes: `total_tokens` padded up to the next CUDA-graph capture
    /// size (see [`crate::cudagraph`]); equal to `total_tokens` when graphs are off or the step
    /// is larger than the largest captured size.
    pub padded_tokens: usize,
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

    /// What the model had to extrapolate or approximate so far (batch shapes outside its
    /// data), one sentence each, for the end of a run. Empty when every step was covered.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The GPU and model a measured model was measured with (names as its data writes
    /// them), for a check against the engine it is used for; `(None, None)` when it does not
    /// say or is not measured.
    fn measured_on(&self) -> (Option<&str>, Option<&str>) {
        (None, None)
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum LatencySpecError {
    #[error("unknown latency model `{0}` (known: linear, profile, roofline, step-cycle)")]
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

/// The hardware a latency model defaults to when its spec does not name it (`--gpu`,
/// `--tensor-parallel-size`); only `roofline` reads it.
#[derive(Clone, Debug, Default)]
pub struct HardwareDefaults {
    pub gpu: Option<&'static GpuSpec>,
    pub tensor_parallel_size: Option<u64>,
    /// The engine's seed, for models that draw (step-cycle) and are given none.
    pub seed: u64,
    /// The TP all-reduce link a real run's cluster config records; the profile model prices
    /// its all-reduces with it unless the spec names `tp_link_gbps`.
    pub tp_link: Option<RecordedTpLink>,
}

/// A TP all-reduce link as a run recorded it: bandwidth per GPU and latency per ring hop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordedTpLink {
    /// GB/s (10⁹ B/s), used as the all-reduce bus bandwidth as recorded.
    pub gbps: f64,
    /// One ring hop, µs.
    pub hop_latency_us: f64,
    /// Where it was read, for reports.
    pub source: String,
}

/// [`parse_latency_spec_with`], with `roofline`'s `gpu` and `tp` defaulting to `hw`.
pub fn parse_latency_spec_on(
    spec: &str,
    shape: &ModelShape,
    hw: &HardwareDefaults,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    match spec.split_once(':').unwrap_or((spec, "")) {
        ("roofline", params) => Ok(Box::new(RooflineLatency::parse_params(
            params,
            shape,
            hw.gpu,
            hw.tensor_parallel_size.unwrap_or(1),
        )?)),
        ("step-cycle", params) => Ok(Box::new(StepCycleLatency::parse_params(params, hw.seed)?)),
        ("profile", params) => {
            // The engine's TP selects the per-rank tables unless the spec names one.
            let has_key = |key: &str| {
                params
                    .split(',')
                    .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == key))
            };
            let has_tp = has_key("tp");
            let params = match (has_tp, hw.tensor_parallel_size) {
                (false, Some(tp)) if tp > 1 => format!("{params},tp={tp}"),
                _ => params.to_string(),
            };
            let mut m = ProfileLatency::parse_params(&params, shape)?;
            if let Some(link) = hw.tp_link.as_ref().filter(|_| !has_key("tp_link_gbps")) {
                m.recorded_tp_link(link.gbps, link.hop_latency_us, &link.source);
            }
            if let Some(gpu) = hw.gpu {
                // Without a measured link figure, the GPU's datasheet link at the roofline's
                // achievable fraction, and its per-all-reduce latency spread over the ring hops.
                let tp = m.tp() as u64;
                if tp > 1 {
                    let hop_us = if gpu.uses_nvlink(tp) {
                        roofline::NVLINK_ALLREDUCE_US
                    } else {
                        roofline::PCIE_ALLREDUCE_US
                    } / (2.0 * (tp as f64 - 1.0));
                    m.default_tp_link(
                        gpu.link_gbs(tp) * roofline::LINK_EFFICIENCY,
                        hop_us,
                        gpu.name,
                    );
                }
            }
            Ok(Box::new(m))
        }
        _ => parse_latency_spec_with(spec, shape),
    }
}

fn parse_latency_spec_inner(
    spec: &str,
    shape: Option<&ModelShape>,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "linear" => Ok(Box::new(LinearLatency::parse_params(params)?)),
        "step-cycle" => Ok(Box::new(StepCycleLatency::parse_params(params, 0)?)),
        "profile" => match shape {
            Some(shape) => Ok(Box::new(ProfileLatency::parse_params(params, shape)?)),
            None => Err(LatencySpecError::BadParam(
                spec.into(),
                "the profile model needs the model shape (parse_latency_spec_with)".into(),
            )),
        },
        "roofline" => match shape {
            Some(shape) => Ok(Box::new(RooflineLatency::parse_params(
                params, shape, None, 1,
            )?)),
            None => Err(LatencySpecError::BadParam(
                spec.into(),
                "the roofline model needs the model shape (parse_latency_spec_with)".into(),
            )),
        },
        other => Err(LatencySpecError::UnknownKind(other.to_string())),
    }
}
