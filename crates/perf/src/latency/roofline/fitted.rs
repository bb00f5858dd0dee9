//! Per-GPU roofline efficiencies fitted from public operator measurements
//! (`data/roofline-fit.json`, written by `tools/fit-roofline/fit.py` from NVIDIA
//! aiconfigurator's vLLM GEMM tables; never from a run being validated): the fraction of the
//! dense BF16 peak large GEMMs reach, the fraction of DRAM bandwidth weight-streaming GEMMs
//! reach, and the fixed time of one small kernel. GPUs without an entry keep the published
//! defaults of [`super::RooflineParams::new`]. The file records, per GPU, which tables and rows
//! were fitted, the residuals, and a leave-one-model-out check (docs/roofline.md).

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

const FIT_JSON: &str = include_str!("../../../data/roofline-fit.json");

/// One GPU's fitted quantities.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FittedGpu {
    /// aiconfigurator system the tables are of (`h100_sxm`).
    pub system: String,
    pub vllm_version: String,
    /// The peak and bandwidth the fit divided by (must be the GPU table's).
    pub bf16_tflops: f64,
    pub mem_bandwidth_gbs: f64,
    pub gemm_efficiency: f64,
    pub memory_efficiency: f64,
    /// µs.
    pub kernel_us: f64,
}

#[derive(Deserialize)]
struct FitFile {
    gpus: HashMap<String, FittedGpu>,
}

fn table() -> &'static HashMap<String, FittedGpu> {
    static T: OnceLock<HashMap<String, FittedGpu>> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str::<FitFile>(FIT_JSON)
            .expect("data/roofline-fit.json is valid")
            .gpus
    })
}

/// The fitted quantities of the GPU named `name` (the GPU table's canonical name), if any.
pub fn fitted(name: &str) -> Option<&'static FittedGpu> {
    table().get(name)
}

/// Every GPU with fitted quantities, by canonical name.
pub fn fitted_gpus() -> Vec<&'static str> {
    let mut v: Vec<&str> = table().keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}
