//! The unit of a cluster config's link bandwidth (LLMServingSim's `link_bw`).
//!
//! LLMServingSim hands `link_bw` unchanged to ASTRA-sim's network config
//! (`serving/core/config_builder.py`, `_create_network_config`), and ASTRA-sim's analytical
//! network backend reads it as "GB/s" with 1 GB = 2³⁰ bytes (astra-network-analytical,
//! `common/NetworkFunction.cpp`, `bw_GBps_to_Bpns`: `bw * (1 << 30) / 1e9` bytes per ns). The
//! peer's timings were therefore produced with `link_bw` GiB/s, and llm-emu, whose link figures
//! are GB/s of 10⁹ bytes, converts once here (the same cluster config's `npu_mem.mem_size` is
//! GiB too). `link_latency` is ns in both.

/// Bytes in one of ASTRA-sim's "GB" (2³⁰).
pub const ASTRA_SIM_GB_BYTES: f64 = (1u64 << 30) as f64;

/// A cluster config's `link_bw` (ASTRA-sim GB/s, 2³⁰ B/s) in GB/s of 10⁹ B/s: 16 → 17.18.
pub fn cluster_link_gbs(link_bw: f64) -> f64 {
    link_bw * ASTRA_SIM_GB_BYTES / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_astra_gb_per_s_is_seventeen_point_two_gb_per_s() {
        assert_eq!(cluster_link_gbs(16.0), 16.0 * 1.073_741_824);
        assert!((cluster_link_gbs(16.0) - 17.179_869_184).abs() < 1e-9);
        assert_eq!(cluster_link_gbs(0.0), 0.0);
    }
}
