//! The step latency models the engine is given through [`LatencyModel`]: operator profiles
//! measured on a GPU, the roofline of any model on any known GPU, step-cycle packs, and the
//! linear model of the engine core; with the `--latency KIND:key=value,...` spec that picks one.

pub mod detect;
pub mod profile;
pub mod roofline;
pub mod step_cycle;

pub use detect::latency_spec_for_profile;
pub use llm_emu_core::latency::{BatchRequest, LatencyModel, LinearLatency, StepBatch};
pub use profile::{BatchShape, ProfileError, ProfileLatency};
pub use roofline::RooflineLatency;
pub use step_cycle::StepCycleLatency;

use crate::gpu::GpuSpec;
use crate::sizing::ModelShape;
use thiserror::Error;

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
        "linear" => Ok(Box::new(parse_linear(params)?)),
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

/// Parses `base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]` (µs, each finite and >= 0;
/// absent keys are 0).
fn parse_linear(params: &str) -> Result<LinearLatency, LatencySpecError> {
    let mut m = LinearLatency {
        base_us: 0.0,
        ..Default::default()
    };
    for kv in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| LatencySpecError::BadParam(kv.into(), "expected key=value".into()))?;
        let x: f64 = v
            .trim()
            .parse()
            .map_err(|_| LatencySpecError::BadParam(kv.into(), "not a number".into()))?;
        if !x.is_finite() || x < 0.0 {
            return Err(LatencySpecError::BadParam(
                kv.into(),
                "must be a finite number >= 0".into(),
            ));
        }
        match k.trim() {
            "base_us" => m.base_us = x,
            "per_token_us" => m.per_token_us = x,
            "per_req_us" => m.per_req_us = x,
            "per_ctx_us" => m.per_ctx_us = x,
            other => {
                return Err(LatencySpecError::BadParam(
                    other.into(),
                    "unknown key (base_us, per_token_us, per_req_us, per_ctx_us)".into(),
                ))
            }
        }
    }
    Ok(m)
}
