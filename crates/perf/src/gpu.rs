//! Data-centre and workstation GPUs as their vendor datasheets state them: dense tensor-core
//! throughput, memory bandwidth and size, and the links tensor-parallel all-reduces use.
//! Sources per entry are in `docs/roofline.md`. Throughputs are *dense* (the datasheets' "with
//! sparsity" figures are twice these) with FP32 accumulation, as PyTorch's GEMMs use.

use thiserror::Error;

/// Which attention kernel family vLLM 0.19 runs on the GPU, and so how close prefill attention
/// gets to the tensor-core peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// FlashAttention 2 (Ampere, Ada, consumer/workstation Blackwell sm_120).
    FlashAttention2,
    /// FlashAttention 3 (Hopper: warp-specialised, TMA, wgmma).
    FlashAttention3,
    /// FlashInfer / TRT-LLM kernels for data-centre Blackwell (sm_100, tcgen05).
    BlackwellDatacenter,
}

impl AttentionKernel {
    /// Achievable fraction of the dense BF16 peak for causal prefill attention at long
    /// sequences, head dim 128. FlashAttention-2 paper (Dao 2023): 50–73 % of A100 peak forward,
    /// less for causal; FlashAttention-3 paper (Shah et al. 2024): up to 75 % of H100 BF16 peak,
    /// ~60 % causal at 2–8k. Blackwell data-centre kernels are taken as FA3-class. The operator
    /// profile of the RTX PRO 6000 (sm_120, FA2) measures 0.38–0.40 (docs/roofline.md).
    pub fn prefill_efficiency(self) -> f64 {
        match self {
            AttentionKernel::FlashAttention2 => 0.45,
            AttentionKernel::FlashAttention3 => 0.60,
            AttentionKernel::BlackwellDatacenter => 0.60,
        }
    }
}

/// One GPU model.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpec {
    /// Canonical key (`h100-sxm`).
    pub name: &'static str,
    /// What `torch.cuda.get_device_name()` reports (vLLM's batch defaults look for "a100").
    pub device_name: &'static str,
    /// Other accepted names (matched case-insensitively, `_` and spaces read as `-`).
    pub aliases: &'static [&'static str],
    /// Dense BF16 tensor throughput, TFLOP/s (10¹² FLOP/s).
    pub bf16_tflops: f64,
    /// Dense FP8 tensor throughput, TFLOP/s; `None` without FP8 tensor cores (Ampere).
    pub fp8_tflops: Option<f64>,
    /// Peak memory bandwidth, GB/s (10⁹ B/s).
    pub mem_bandwidth_gbs: f64,
    /// Memory capacity, GiB (HBM/GDDR capacities are binary; the driver reports slightly less,
    /// and ECC on GDDR parts reserves a few percent more — `--gpu-memory-gib` overrides).
    pub memory_gib: f64,
    /// NVLink bandwidth per GPU per direction, GB/s (AMD's Infinity Fabric on the MI300X: its
    /// seven peer links together); `None` without NVLink.
    pub nvlink_gbs: Option<f64>,
    /// Largest group NVLink joins all-to-all (8 on HGX baseboards, 2 with bridges).
    pub nvlink_max_gpus: u64,
    /// PCIe x16 bandwidth per direction, GB/s (Gen4 32, Gen5 64).
    pub pcie_gbs: f64,
    pub attention_kernel: AttentionKernel,
}

impl GpuSpec {
    /// Link bandwidth per direction for an all-reduce across `tp` GPUs, GB/s: NVLink when it
    /// joins them all, else PCIe.
    pub fn link_gbs(&self, tp: u64) -> f64 {
        match self.nvlink_gbs {
            Some(bw) if tp <= self.nvlink_max_gpus => bw,
            _ => self.pcie_gbs,
        }
    }

    /// Whether the link for `tp` GPUs is NVLink.
    pub fn uses_nvlink(&self, tp: u64) -> bool {
        self.nvlink_gbs.is_some() && tp <= self.nvlink_max_gpus
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("unknown GPU `{name}` (known: {known})")]
pub struct UnknownGpu {
    pub name: String,
    pub known: String,
}

/// The built-in table.
pub const GPUS: &[GpuSpec] = &[
    GpuSpec {
        name: "h100-sxm",
        device_name: "NVIDIA H100 80GB HBM3",
        aliases: &[
            "h100",
            "h100-sxm5",
            "h100-80gb",
            "h100-sxm-80gb",
            "h100-sxm5-80gb",
        ],
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        mem_bandwidth_gbs: 3350.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(450.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "h100-pcie",
        device_name: "NVIDIA H100 PCIe",
        aliases: &["h100-pcie-80gb"],
        bf16_tflops: 756.5,
        fp8_tflops: Some(1513.0),
        mem_bandwidth_gbs: 2000.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 2,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "h100-nvl",
        device_name: "NVIDIA H100 NVL",
        aliases: &["h100-nvl-94gb"],
        bf16_tflops: 835.5,
        fp8_tflops: Some(1670.5),
        mem_bandwidth_gbs: 3900.0,
        memory_gib: 94.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 2,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "h800",
        device_name: "NVIDIA H800",
        aliases: &["h800-sxm", "h800-sxm5", "h800-80gb"],
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        mem_bandwidth_gbs: 3350.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(200.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "gh200",
        device_name: "NVIDIA GH200 480GB",
        aliases: &["gh200-96gb", "gh200-480gb", "grace-hopper"],
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        mem_bandwidth_gbs: 4000.0,
        memory_gib: 96.0,
        nvlink_gbs: Some(450.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "h200",
        device_name: "NVIDIA H200",
        aliases: &["h200-sxm", "h200-141gb"],
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        mem_bandwidth_gbs: 4800.0,
        memory_gib: 141.0,
        nvlink_gbs: Some(450.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "h200-nvl",
        device_name: "NVIDIA H200 NVL",
        aliases: &["h200-nvl-141gb"],
        bf16_tflops: 835.5,
        fp8_tflops: Some(1670.5),
        mem_bandwidth_gbs: 4800.0,
        memory_gib: 141.0,
        nvlink_gbs: Some(450.0),
        nvlink_max_gpus: 4,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention3,
    },
    GpuSpec {
        name: "b200",
        device_name: "NVIDIA B200",
        aliases: &["b200-sxm", "hgx-b200"],
        bf16_tflops: 2250.0,
        fp8_tflops: Some(4500.0),
        mem_bandwidth_gbs: 7700.0,
        memory_gib: 180.0,
        nvlink_gbs: Some(900.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::BlackwellDatacenter,
    },
    GpuSpec {
        name: "a100-40gb",
        device_name: "NVIDIA A100-SXM4-40GB",
        aliases: &["a100-sxm4-40gb", "a100-40g"],
        bf16_tflops: 312.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 1555.0,
        memory_gib: 40.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a100-80gb",
        device_name: "NVIDIA A100-SXM4-80GB",
        aliases: &["a100", "a100-sxm4-80gb", "a100-80g", "a100-sxm"],
        bf16_tflops: 312.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 2039.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a100-40gb-pcie",
        device_name: "NVIDIA A100-PCIE-40GB",
        aliases: &["a100-pcie-40gb"],
        bf16_tflops: 312.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 1555.0,
        memory_gib: 40.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a100-80gb-pcie",
        device_name: "NVIDIA A100 80GB PCIe",
        aliases: &["a100-pcie-80gb", "a100-pcie"],
        bf16_tflops: 312.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 1935.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(300.0),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a800-80gb",
        device_name: "NVIDIA A800-SXM4-80GB",
        aliases: &["a800", "a800-sxm4-80gb", "a800-sxm"],
        bf16_tflops: 312.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 2039.0,
        memory_gib: 80.0,
        nvlink_gbs: Some(200.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a30",
        device_name: "NVIDIA A30",
        aliases: &["a30-24gb"],
        bf16_tflops: 165.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 933.0,
        memory_gib: 24.0,
        nvlink_gbs: Some(100.0),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "gb200",
        device_name: "NVIDIA GB200",
        aliases: &["gb200-nvl72", "gb200-nvl"],
        bf16_tflops: 2500.0,
        fp8_tflops: Some(5000.0),
        mem_bandwidth_gbs: 8000.0,
        memory_gib: 186.0,
        nvlink_gbs: Some(900.0),
        nvlink_max_gpus: 72,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::BlackwellDatacenter,
    },
    GpuSpec {
        name: "mi300x",
        device_name: "AMD Instinct MI300X",
        aliases: &["amd-instinct-mi300x", "instinct-mi300x"],
        bf16_tflops: 1307.4,
        fp8_tflops: Some(2614.9),
        mem_bandwidth_gbs: 5300.0,
        memory_gib: 192.0,
        nvlink_gbs: Some(448.0),
        nvlink_max_gpus: 8,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "l40s",
        device_name: "NVIDIA L40S",
        aliases: &["l40s-48gb"],
        bf16_tflops: 362.05,
        fp8_tflops: Some(733.0),
        mem_bandwidth_gbs: 864.0,
        memory_gib: 48.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "l40",
        device_name: "NVIDIA L40",
        aliases: &["l40-48gb"],
        bf16_tflops: 181.05,
        fp8_tflops: Some(362.0),
        mem_bandwidth_gbs: 864.0,
        memory_gib: 48.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a40",
        device_name: "NVIDIA A40",
        aliases: &["a40-48gb"],
        bf16_tflops: 149.7,
        fp8_tflops: None,
        mem_bandwidth_gbs: 696.0,
        memory_gib: 48.0,
        nvlink_gbs: Some(56.25),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "l4",
        device_name: "NVIDIA L4",
        aliases: &["l4-24gb"],
        bf16_tflops: 121.0,
        fp8_tflops: Some(242.5),
        mem_bandwidth_gbs: 300.0,
        memory_gib: 24.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "a10",
        device_name: "NVIDIA A10",
        aliases: &["a10-24gb"],
        bf16_tflops: 125.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 600.0,
        memory_gib: 24.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-6000-ada",
        device_name: "NVIDIA RTX 6000 Ada Generation",
        aliases: &["rtx6000-ada", "rtx-6000-ada-generation"],
        bf16_tflops: 364.2,
        fp8_tflops: Some(728.5),
        mem_bandwidth_gbs: 960.0,
        memory_gib: 48.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-a6000",
        device_name: "NVIDIA RTX A6000",
        aliases: &["a6000", "rtxa6000", "rtx-a6000-48gb"],
        bf16_tflops: 154.8,
        fp8_tflops: None,
        mem_bandwidth_gbs: 768.0,
        memory_gib: 48.0,
        nvlink_gbs: Some(56.25),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-3090",
        device_name: "NVIDIA GeForce RTX 3090",
        aliases: &["3090", "rtx3090", "geforce-rtx-3090"],
        bf16_tflops: 71.0,
        fp8_tflops: None,
        mem_bandwidth_gbs: 936.0,
        memory_gib: 24.0,
        nvlink_gbs: Some(56.25),
        nvlink_max_gpus: 2,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-4090",
        device_name: "NVIDIA GeForce RTX 4090",
        aliases: &["4090", "rtx4090", "geforce-rtx-4090"],
        bf16_tflops: 165.2,
        fp8_tflops: Some(330.3),
        mem_bandwidth_gbs: 1008.0,
        memory_gib: 24.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 32.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-5090",
        device_name: "NVIDIA GeForce RTX 5090",
        aliases: &["5090", "rtx5090", "geforce-rtx-5090"],
        bf16_tflops: 209.5,
        fp8_tflops: Some(419.0),
        mem_bandwidth_gbs: 1792.0,
        memory_gib: 32.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-pro-6000",
        device_name: "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        aliases: &[
            "rtx-pro-6000-server",
            "rtx-pro-6000-blackwell",
            "rtx-pro-6000-blackwell-server-edition",
            "rtxpro6000",
            "rtx6000-pro",
        ],
        bf16_tflops: 503.8,
        fp8_tflops: Some(1007.6),
        mem_bandwidth_gbs: 1597.0,
        memory_gib: 96.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-pro-6000-workstation",
        device_name: "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        aliases: &[
            "rtx-pro-6000-blackwell-workstation-edition",
            "rtx-pro-6000-ws",
        ],
        bf16_tflops: 503.8,
        fp8_tflops: Some(1007.6),
        mem_bandwidth_gbs: 1792.0,
        memory_gib: 96.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
    GpuSpec {
        name: "rtx-pro-6000-max-q",
        device_name: "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
        aliases: &[
            "rtx-pro-6000-max-q-workstation-edition",
            "rtx-pro-6000-blackwell-max-q-workstation-edition",
            "rtx-pro-6000-blackwell-max-q",
        ],
        bf16_tflops: 438.9,
        fp8_tflops: Some(877.8),
        mem_bandwidth_gbs: 1792.0,
        memory_gib: 96.0,
        nvlink_gbs: None,
        nvlink_max_gpus: 1,
        pcie_gbs: 64.0,
        attention_kernel: AttentionKernel::FlashAttention2,
    },
];

/// The GPU the built-in operator profile and the shared real run were measured on.
pub const DEFAULT_GPU: &str = "rtx-pro-6000";

fn normalise(name: &str) -> String {
    let s: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    s.strip_prefix("nvidia-").map(str::to_string).unwrap_or(s)
}

impl GpuSpec {
    /// Whether a recorded memory of `gib` GiB can be this GPU's: within 15 % of the datasheet
    /// capacity, as drivers report a few percent less (ECC, reserved memory) and a 24 GiB
    /// card is not a 96 GiB one.
    pub fn holds_about(&self, gib: f64) -> bool {
        (gib - self.memory_gib).abs() / self.memory_gib <= 0.15
    }

    /// Whether this GPU is a variant of the family a cluster config's `label` names (`label`
    /// resolving to `labelled`): the label, or the GPU it resolves to, is a leading part of
    /// this GPU's canonical name up to a `-` (`RTXPRO6000` → `rtx-pro-6000` of
    /// `rtx-pro-6000-max-q`; `H100` of `h100-nvl`; not `L4` of `l40s`).
    pub fn is_variant_of(&self, label: &str, labelled: &GpuSpec) -> bool {
        let leads = |head: &str| {
            self.name
                .strip_prefix(head)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        };
        leads(&normalise(label)) || leads(labelled.name)
    }

    /// Looks a GPU up by name or alias (case-insensitive; `_`, spaces and an `nvidia-` prefix
    /// are tolerated; the driver's device name works too).
    pub fn lookup(name: &str) -> Result<&'static GpuSpec, UnknownGpu> {
        let want = normalise(name);
        GPUS.iter()
            .find(|g| {
                normalise(g.name) == want
                    || normalise(g.device_name) == want
                    || g.aliases.iter().any(|a| normalise(a) == want)
            })
            .ok_or_else(|| UnknownGpu {
                name: name.to_string(),
                known: GPUS.iter().map(|g| g.name).collect::<Vec<_>>().join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_name_alias_and_device_name() {
        assert_eq!(GpuSpec::lookup("H100").unwrap().name, "h100-sxm");
        assert_eq!(GpuSpec::lookup("h100_sxm").unwrap().name, "h100-sxm");
        assert_eq!(
            GpuSpec::lookup("RTX-PRO-6000").unwrap().mem_bandwidth_gbs,
            1597.0
        );
        assert_eq!(
            GpuSpec::lookup("NVIDIA A100-SXM4-80GB").unwrap().name,
            "a100-80gb"
        );
        let e = GpuSpec::lookup("tpu-v5e").unwrap_err().to_string();
        assert!(
            e.contains("tpu-v5e") && e.contains("h100-sxm") && e.contains("l40s"),
            "{e}"
        );
        // Every name and alias is unique across the table.
        let mut all: Vec<String> = GPUS
            .iter()
            .flat_map(|g| std::iter::once(g.name).chain(g.aliases.iter().copied()))
            .map(normalise)
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn driver_device_names_resolve() {
        // What `torch.cuda.get_device_name()` reports, as a run's meta.json records it.
        for (driver, name) in [
            ("NVIDIA H100 80GB HBM3", "h100-sxm"),
            (
                "NVIDIA RTX PRO 6000 Blackwell Server Edition",
                "rtx-pro-6000",
            ),
            ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
            ("NVIDIA GeForce RTX 4090", "rtx-4090"),
            ("NVIDIA L40S", "l40s"),
            ("NVIDIA H200", "h200"),
            ("NVIDIA B200", "b200"),
            ("NVIDIA H100 NVL", "h100-nvl"),
            ("NVIDIA H200 NVL", "h200-nvl"),
            ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"),
            ("NVIDIA A100-PCIE-40GB", "a100-40gb-pcie"),
            ("H100-SXM5-80GB", "h100-sxm"),
            ("A100 80GB PCIe", "a100-80gb-pcie"),
            ("NVIDIA L4", "l4"),
            ("NVIDIA A10", "a10"),
            ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
            ("NVIDIA GeForce RTX 3090", "rtx-3090"),
            ("AMD Instinct MI300X", "mi300x"),
            ("NVIDIA GB200", "gb200"),
            ("NVIDIA RTX A6000", "rtx-a6000"),
            ("NVIDIA GeForce RTX 5090", "rtx-5090"),
            ("NVIDIA L40", "l40"),
            ("NVIDIA A30", "a30"),
            ("NVIDIA A800-SXM4-80GB", "a800-80gb"),
            ("NVIDIA H800", "h800"),
            ("NVIDIA GH200 480GB", "gh200"),
            (
                "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
                "rtx-pro-6000-max-q",
            ),
        ] {
            assert_eq!(GpuSpec::lookup(driver).unwrap().name, name, "{driver}");
        }
    }

    #[test]
    fn a_recorded_memory_is_the_gpu_s_within_fifteen_percent() {
        let pro = GpuSpec::lookup("rtx-pro-6000").unwrap();
        // The driver's 97887 MiB of the 96 GiB card.
        assert!(pro.holds_about(95.59));
        assert!(pro.holds_about(96.0 * 0.851) && !pro.holds_about(96.0 * 0.849));
        assert!(!pro.holds_about(24.0) && !pro.holds_about(1e12));
    }

    #[test]
    fn variants_of_a_family_label() {
        let g = |n: &str| GpuSpec::lookup(n).unwrap();
        let pro = g("RTXPRO6000");
        assert!(g("rtx-pro-6000-max-q").is_variant_of("RTXPRO6000", pro));
        assert!(g("h100-nvl").is_variant_of("H100", g("H100")));
        assert!(g("a100-80gb-pcie").is_variant_of("A100", g("A100")));
        assert!(!g("l40s").is_variant_of("L4", g("L4")));
        assert!(!g("h200").is_variant_of("H100", g("H100")));
        // LLMServingSim's `A6000` label is the RTX A6000, not the RTX 6000 Ada; `L40` is not
        // the L40S.
        assert!(g("NVIDIA RTX A6000").is_variant_of("A6000", g("A6000")));
        assert!(!g("rtx-6000-ada").is_variant_of("A6000", g("A6000")));
        assert!(!g("l40s").is_variant_of("L40", g("L40")));
    }

    #[test]
    fn links() {
        let h = GpuSpec::lookup("h100-pcie").unwrap();
        assert!(h.uses_nvlink(2) && !h.uses_nvlink(4));
        assert_eq!(h.link_gbs(4), 64.0);
        assert_eq!(GpuSpec::lookup("l40s").unwrap().link_gbs(2), 32.0);
    }
}
