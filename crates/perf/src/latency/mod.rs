//! The step latency models the engine is given through [`LatencyModel`]: operator profiles
//! measured on a GPU, the roofline of any model on any known GPU, step-cycle packs, and the
//! linear model of the engine core; with the typed [`LatencySpec`] that picks one
//! (`--latency KIND:key=value,...`).

pub mod aiconfigurator;
pub mod curve;
pub mod detect;
pub mod named_csv;
pub mod profile;
pub mod roofline;
pub mod spec;
pub mod step_cycle;
pub mod vidur;

pub use aiconfigurator::AiconfiguratorLatency;
pub use detect::latency_spec_for_profile;
pub use llm_emu_core::latency::{BatchRequest, LatencyModel, LinearLatency, StepBatch};
pub use profile::{BatchShape, MoeRouting, ProfileError, ProfileLatency, MOE_FILE};
pub use roofline::RooflineLatency;
pub use spec::{HardwareDefaults, LatencySpec, RecordedTpLink};
pub use step_cycle::StepCycleLatency;
pub use vidur::VidurLatency;

use crate::sizing::ModelShape;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum LatencySpecError {
    #[error(
        "unknown latency model `{0}` (known: linear, profile, roofline, step-cycle, vidur, \
         aiconfigurator)"
    )]
    UnknownKind(String),
    #[error("bad latency parameter `{0}`: {1}")]
    BadParam(String, String),
}

/// Parses and builds `--latency KIND:key=value,...` for models that need no model shape
/// (`linear`, `step-cycle`); `profile` and `roofline` need the shape: use
/// [`parse_latency_spec_with`].
pub fn parse_latency_spec(spec: &str) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    spec.parse::<LatencySpec>()?
        .build_for(None, &HardwareDefaults::default())
}

/// Parses and builds `--latency KIND:key=value,...` for every kind, with the default GPU at
/// TP 1 where the spec names none.
pub fn parse_latency_spec_with(
    spec: &str,
    shape: &ModelShape,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    spec.parse::<LatencySpec>()?
        .build(shape, &HardwareDefaults::default())
}

/// [`parse_latency_spec_with`], with what the spec does not name taken from `hw`.
pub fn parse_latency_spec_on(
    spec: &str,
    shape: &ModelShape,
    hw: &HardwareDefaults,
) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
    spec.parse::<LatencySpec>()?.build(shape, hw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::GpuSpec;
    use llm_emu_core::Nanos;

    #[test]
    fn linear_specs_parse_and_compute() {
        let mut m = parse_latency_spec("linear:base_us=1000, per_token_us=2.5").unwrap();
        let b = StepBatch {
            requests: &[],
            total_tokens: 100,
            padded_tokens: 100,
            num_running: 0,
        };
        assert_eq!(m.step_time(&b), Nanos(1_250_000));
        assert!(parse_latency_spec("linear:base_us=x").is_err());
        assert!(parse_latency_spec("linear:speed=1").is_err());
        assert!(parse_latency_spec("linear:base_us=-1").is_err());
        assert_eq!(
            parse_latency_spec("cubic:a=1").err(),
            Some(LatencySpecError::UnknownKind("cubic".into()))
        );
    }

    #[test]
    fn specs_display_as_they_parse() {
        for text in [
            "linear:base_us=5000,per_token_us=0,per_req_us=1.5,per_ctx_us=0",
            "profile:dir=/data/p,tp=2,step_overhead_us=300",
            "roofline",
            "roofline:gpu=h100-sxm,tp=8,dtype=fp8,gemm_eff=0.7",
            "roofline:gpu=h100-sxm,eff=fitted",
            "roofline:tp=2,ep=4",
            "step-cycle:path=/tmp/pack.json,seed=3,min_samples=2",
            "step-cycle:path=/tmp/pack.json",
            "aiconfigurator:dir=/data/h100_sxm/vllm/0.19.0,tp=2,overhead_us=80",
            "vidur:dir=/data/compute/h100/meta-llama/Llama-2-7b-hf,tp=2,all_reduce=/n/ar.csv,overhead_us=50",
        ] {
            let spec: LatencySpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(spec.to_string().parse::<LatencySpec>().unwrap(), spec);
        }
        let spec: LatencySpec = "roofline:tp=2,gpu=h100".parse().unwrap();
        let LatencySpec::Roofline { gpu, tp, .. } = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(
            gpu.map(|g| g.name),
            Some(GpuSpec::lookup("h100").unwrap().name)
        );
        assert_eq!(*tp, Some(2));
    }
}
