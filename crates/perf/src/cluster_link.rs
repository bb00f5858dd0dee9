//! Which of a cluster config's links prices which collective: LLMServingSim's `link_bw` and
//! `link_latency` are a number for every dimension of the ASTRA-sim topology it builds, or a
//! list of one number per dimension (`serving/core/config_builder.py`,
//! `_normalize_network_dim_values`).
//!
//! The dimensions are the peer's `_compute_network_dims`, innermost first: with data-parallel
//! groups, `[tp_size, group size]` of the first group (`[tp, pp, group size]` with pipeline
//! stages); otherwise `[GPUs per instance, instances]` (a prefill instance counts twice), or
//! `[GPUs per stage, stages]` with pipeline stages; trailing dimensions of 1 dropped. Dimension
//! 0 is the tensor-parallel group, whose all-reduces it carries; the last dimension spans the
//! instances or data-parallel ranks, and carries the expert all-gather / reduce-scatter and
//! the prefill-to-decode KV transfer.

use serde_json::Value;

/// One instance of the cluster config, as the topology reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopologyInstance<'a> {
    pub tp_size: u64,
    pub pp_size: u64,
    pub num_npus: u64,
    pub dp_group: Option<&'a str>,
    /// `pd_type` "prefill": the peer counts such an instance twice.
    pub prefill: bool,
}

/// The topology's dimensions (GPUs along each), innermost first: the peer's
/// `_compute_network_dims`.
pub fn network_dims(instances: &[TopologyInstance<'_>]) -> Vec<u64> {
    let first_group = instances
        .iter()
        .find_map(|i| i.dp_group)
        .map(|g| instances.iter().filter(|i| i.dp_group == Some(g)));
    let mut dims = match first_group {
        Some(group) => {
            let members: Vec<_> = group.collect();
            let (tp, pp) = (members[0].tp_size, members[0].pp_size);
            let n = members.len() as u64;
            if pp > 1 {
                vec![tp, pp, n]
            } else {
                vec![tp, n]
            }
        }
        None => {
            let twice = |i: &TopologyInstance<'_>, x: u64| if i.prefill { 2 * x } else { x };
            let npus: u64 = instances.iter().map(|i| twice(i, i.num_npus)).sum();
            let pps: u64 = instances.iter().map(|i| twice(i, i.pp_size)).sum();
            let count = instances.iter().map(|i| twice(i, 1)).sum::<u64>().max(1);
            if npus == pps {
                vec![npus / count, count]
            } else {
                vec![npus / pps.max(1), pps]
            }
        }
    };
    while dims.len() > 1 && dims.last() == Some(&1) {
        dims.pop();
    }
    dims
}

/// What a link figure measures, and the values it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkQuantity {
    /// `link_bw`, ASTRA-sim GB/s (GiB/s): positive, from [`MIN_LINK_BW`] to [`MAX_LINK_BW`].
    Bandwidth,
    /// `link_latency`, ns per hop: from 0 to [`MAX_LINK_LATENCY_NS`].
    Latency,
}

/// The slowest link read, GiB/s: a tenth of 1 Gbit/s Ethernet. Below it (and above
/// [`MAX_LINK_BW`]) a figure is a typo, and the transfer times it gives lose their precision.
pub const MIN_LINK_BW: f64 = 0.0125;
/// The fastest link read, GiB/s: over fifty times NVLink 5's 1.8 TB/s per GPU.
pub const MAX_LINK_BW: f64 = 100_000.0;
/// The longest hop latency read, ns: one second.
pub const MAX_LINK_LATENCY_NS: f64 = 1e9;

/// A recorded `link_bw` or `link_latency` as one value per dimension: a number holds for every
/// dimension, a list must have one number per dimension (as the peer requires), and every
/// value must be in the quantity's range. Messages do not name the field: the caller does.
pub fn per_dimension(raw: &Value, dims: usize, what: LinkQuantity) -> Result<Vec<f64>, String> {
    let values = match raw {
        Value::Array(values) => {
            if values.len() != dims {
                return Err(format!(
                    "lists {} value(s), but the cluster's topology has {dims} dimension(s) \
                     (LLMServingSim needs one value per dimension)",
                    values.len()
                ));
            }
            values
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| format!("holds {v}, not a number")))
                .collect::<Result<Vec<f64>, String>>()?
        }
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN); dims.max(1)],
        other => return Err(format!("is {other}: not a number or a list of numbers")),
    };
    for &v in &values {
        let ok = match what {
            LinkQuantity::Bandwidth => (MIN_LINK_BW..=MAX_LINK_BW).contains(&v),
            LinkQuantity::Latency => (0.0..=MAX_LINK_LATENCY_NS).contains(&v),
        };
        if !ok {
            return Err(match what {
                LinkQuantity::Bandwidth => format!(
                    "{v}: must be a bandwidth from {MIN_LINK_BW} to {MAX_LINK_BW} GB/s \
                     (ASTRA-sim's GB of 2^30 bytes)"
                ),
                LinkQuantity::Latency => {
                    format!("{v}: must be a latency from 0 to {MAX_LINK_LATENCY_NS} ns per hop")
                }
            });
        }
    }
    Ok(values)
}

/// Which dimension's link prices a collective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRole {
    /// The tensor-parallel all-reduce: dimension 0.
    TensorParallel,
    /// Between instances or data-parallel ranks: the last dimension.
    BetweenInstances,
}

impl LinkRole {
    /// The index of the role's dimension among `dims` dimensions.
    pub fn dimension(self, dims: usize) -> usize {
        match self {
            LinkRole::TensorParallel => 0,
            LinkRole::BetweenInstances => dims.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inst(tp: u64, dp_group: Option<&str>) -> TopologyInstance<'_> {
        TopologyInstance {
            tp_size: tp,
            pp_size: 1,
            num_npus: tp,
            dp_group,
            prefill: false,
        }
    }

    #[test]
    fn dimensions_follow_the_peer() {
        // The peer's dual-node MoE example: two TP2 instances of one DP group.
        assert_eq!(
            network_dims(&[inst(2, Some("A")), inst(2, Some("A"))]),
            [2, 2]
        );
        // DP2 of TP1 ranks keeps the inner 1 (only trailing ones are dropped).
        assert_eq!(
            network_dims(&[inst(1, Some("A")), inst(1, Some("A"))]),
            [1, 2]
        );
        // One TP4 instance; one GPU.
        assert_eq!(network_dims(&[inst(4, None)]), [4]);
        assert_eq!(network_dims(&[inst(1, None)]), [1]);
        // Four TP2 instances; a prefill instance counts twice.
        assert_eq!(network_dims(&[inst(2, None); 4]), [2, 4]);
        let mut p = inst(1, None);
        p.prefill = true;
        assert_eq!(network_dims(&[p, inst(1, None)]), [1, 3]);
        // Pipeline stages.
        let mut pp = inst(2, Some("A"));
        pp.pp_size = 2;
        pp.num_npus = 4;
        assert_eq!(network_dims(&[pp, pp]), [2, 2, 2]);
    }

    #[test]
    fn a_number_holds_for_every_dimension_and_a_list_must_match() {
        use LinkQuantity::{Bandwidth, Latency};
        assert_eq!(
            per_dimension(&json!(16), 2, Bandwidth),
            Ok(vec![16.0, 16.0])
        );
        assert_eq!(
            per_dimension(&json!([128, 16]), 2, Bandwidth),
            Ok(vec![128.0, 16.0])
        );
        let e = per_dimension(&json!([128, 16]), 1, Bandwidth).unwrap_err();
        assert!(e.contains("lists 2") && e.contains("1 dimension"), "{e}");
        let e = per_dimension(&json!([128, "x"]), 2, Bandwidth).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        assert!(per_dimension(&json!("16"), 1, Bandwidth).is_err());
        // Every value is checked, not only the one a collective reads.
        for bad in [
            json!([16, -1]),
            json!([16, 0]),
            json!(1e-18),
            json!([16, 1e300]),
        ] {
            let e = per_dimension(&bad, 2, Bandwidth).unwrap_err();
            assert!(e.contains("must be a bandwidth"), "{bad}: {e}");
        }
        for bad in [json!([20000, -5]), json!(1e25)] {
            let e = per_dimension(&bad, 2, Latency).unwrap_err();
            assert!(e.contains("must be a latency"), "{bad}: {e}");
        }
        assert_eq!(
            per_dimension(&json!([0, 20000]), 2, Latency),
            Ok(vec![0.0, 20000.0])
        );
        assert_eq!(LinkRole::TensorParallel.dimension(2), 0);
        assert_eq!(LinkRole::BetweenInstances.dimension(2), 1);
        assert_eq!(LinkRole::BetweenInstances.dimension(1), 0);
    }
}
