//! Roofline cost of one kernel: `max(FLOPs / (peak × compute efficiency), bytes / (bandwidth ×
//! memory efficiency)) + fixed kernel time`, and of a ring all-reduce.

/// Effective rates of one GPU rank, in units per microsecond so costs come out in µs.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Achieved GEMM FLOP/µs in BF16 (LM head, router, MLA absorption).
    pub bf16_gemm_flops_per_us: f64,
    /// Achieved attention FLOP/µs (BF16 tensor cores at the attention kernel's efficiency).
    pub attention_flops_per_us: f64,
    /// Achieved memory bytes/µs.
    pub bytes_per_us: f64,
    /// Achieved link bytes/µs per direction for the all-reduce group.
    pub link_bytes_per_us: f64,
    /// Fixed time of every kernel (launch, ramp-up, tail), µs.
    pub kernel_us: f64,
    /// Fixed time of one all-reduce (synchronisation, small-message latency), µs.
    pub allreduce_latency_us: f64,
}

/// What limits an operator's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
    /// Link bandwidth or latency (all-reduce, gather), or a fixed overhead.
    Fixed,
}

/// One operator's cost in a step.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// Operator name (the operator profile's names where they exist: `qkv_proj`, `o_proj`,
    /// `gate_up_proj`, `down_proj`, `attention`, `lm_head`, `sampler`, ...).
    pub name: &'static str,
    /// How many times it runs in the step (layers × per-layer count).
    pub count: u64,
    /// Time of one run, µs.
    pub each_us: f64,
    pub bound: Bound,
}

impl OpTime {
    pub fn total_us(&self) -> f64 {
        self.each_us * self.count as f64
    }
}

/// The roofline time of a kernel doing `flops` at `flops_per_us` and moving `bytes`.
pub fn kernel(name: &'static str, flops: f64, flops_per_us: f64, bytes: f64, r: &Rates) -> OpTime {
    let compute = flops / flops_per_us;
    let memory = bytes / r.bytes_per_us;
    OpTime {
        name,
        count: 1,
        each_us: compute.max(memory) + r.kernel_us,
        bound: if compute > memory {
            Bound::Compute
        } else {
            Bound::Memory
        },
    }
}

/// `[m × k] · [k × n]` with weights of `weight_bytes` per element and `act_bytes` activations.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    name: &'static str,
    m: f64,
    k: f64,
    n: f64,
    weight_bytes: f64,
    act_bytes: f64,
    flops_per_us: f64,
    r: &Rates,
) -> OpTime {
    let flops = 2.0 * m * k * n;
    let bytes = k * n * weight_bytes + m * (k + n) * act_bytes;
    kernel(name, flops, flops_per_us, bytes, r)
}

/// A memory-bound elementwise or reduction kernel moving `bytes`.
pub fn elementwise(name: &'static str, bytes: f64, r: &Rates) -> OpTime {
    kernel(name, 0.0, 1.0, bytes, r)
}

/// Ring all-reduce of `bytes` over `tp` ranks: each rank sends and receives
/// `2 (tp − 1) / tp × bytes`, plus the fixed latency.
pub fn all_reduce(name: &'static str, bytes: f64, tp: u64, r: &Rates) -> OpTime {
    let n = tp as f64;
    OpTime {
        name,
        count: 1,
        each_us: r.allreduce_latency_us + 2.0 * (n - 1.0) / n * bytes / r.link_bytes_per_us,
        bound: Bound::Fixed,
    }
}

/// Ring all-gather ending with `bytes` on every rank: `(tp − 1) / tp × bytes` each.
pub fn all_gather(name: &'static str, bytes: f64, tp: u64, r: &Rates) -> OpTime {
    let n = tp as f64;
    OpTime {
        name,
        count: 1,
        each_us: r.allreduce_latency_us + (n - 1.0) / n * bytes / r.link_bytes_per_us,
        bound: Bound::Fixed,
    }
}

/// Expected number of distinct experts hit when `tokens` tokens each pick `k` of `e` experts,
/// uniformly: `e × (1 − (1 − k/e)^tokens)`.
pub fn expected_distinct_experts(e: u64, k: u64, tokens: u64) -> f64 {
    if e == 0 {
        return 0.0;
    }
    let e = e as f64;
    let miss = 1.0 - (k as f64 / e).min(1.0);
    e * (1.0 - miss.powf(tokens as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_experts() {
        assert_eq!(expected_distinct_experts(128, 8, 0), 0.0);
        assert!((expected_distinct_experts(128, 8, 1) - 8.0).abs() < 1e-9);
        let two = expected_distinct_experts(128, 8, 2);
        assert!(two > 15.0 && two < 16.0, "{two}");
        assert!((expected_distinct_experts(128, 8, 4096) - 128.0).abs() < 1e-6);
        assert!((expected_distinct_experts(8, 2, 1000) - 8.0).abs() < 1e-9);
    }
}
