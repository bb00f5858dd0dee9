//! The mixture-of-experts block of an operator profile: `tp1/moe.csv`
//! (`tokens,activated_experts,time_us`), and the peer's rule for which of its rows one MoE layer
//! of a step costs.
//!
//! A row is one call of the whole sparse-MoE block (router gate, top-k selection, the fused
//! grouped experts and, for models that have them, shared experts: the profiler times the
//! model's MoE module as a unit) with `tokens` tokens entering the block and routing forced so
//! that exactly `activated_experts` distinct experts receive tokens. The block is profiled once,
//! at TP 1, with the model's full expert set on one GPU.
//!
//! Under expert parallelism of size `ep`, each rank owns `E / ep` experts and the peer's default
//! routing (`BALANCED`, a load-balanced gate) gives every rank the same load:
//!
//! ```text
//! activated per rank = min(round(T·k / ep), E / ep)
//! tokens per rank    = round(T · (1 − ((ep − 1)/ep)^k))      (T when ep = 1)
//! MoE layer time     = moe.csv at (tokens per rank, activated per rank)
//! ```
//!
//! (the slowest rank's time; all ranks are equal here). `round` is Python's, ties to even; a
//! step with tokens prices at least one token and one expert per rank (the peer prices 0).
//! See `docs/operator-profiles-moe.md`.

use super::tables::{axis_bracket, interp, Csv, Table1D};
use super::ProfileError;
use std::path::Path;

/// The MoE table's file name, in the profile's `tp1/` folder whatever the TP degree.
pub const MOE_FILE: &str = "moe.csv";

/// `moe.csv` as the peer's `_build_moe_table` holds it: one token-axis row per profiled
/// `activated_experts` value.
#[derive(Clone, Debug)]
pub(crate) struct MoeTable {
    /// Profiled `activated_experts` values, ascending.
    experts: Vec<f64>,
    /// Per `experts` value: time (whole ns) against tokens entering the block.
    rows: Vec<Table1D>,
}

impl MoeTable {
    /// Reads `path`; each `(tokens, activated_experts)` pair is measured once, and both are at
    /// least 1.
    pub fn load(path: &Path) -> Result<MoeTable, ProfileError> {
        let csv = Csv::read(path, &["tokens", "activated_experts", "time_us"])?;
        let mut by_experts: std::collections::BTreeMap<u64, Vec<(u64, f64)>> = Default::default();
        let mut seen = std::collections::HashMap::new();
        for row in &csv.rows {
            let tokens = csv.uint(row, 0)?;
            let experts = csv.uint(row, 1)?;
            for (col, v) in [(0, tokens), (1, experts)] {
                if v == 0 {
                    return Err(csv.label_error(row, col, "zero (at least 1)"));
                }
            }
            let ns = csv.time_ns(row, 2)?;
            csv.once(&mut seen, (tokens, experts), row, || {
                format!("tokens {tokens} with {experts} activated experts")
            })?;
            by_experts.entry(experts).or_default().push((tokens, ns));
        }
        Ok(MoeTable {
            experts: by_experts.keys().map(|&e| e as f64).collect(),
            rows: by_experts.into_values().map(Table1D::from_pairs).collect(),
        })
    }

    /// The peer's `_lookup_moe`: both queries at least 1; the token axis interpolated within
    /// the two bracketing `activated_experts` rows (each row by the 1-D rules), then linearly
    /// between them; truncated to whole ns, at least 1.
    pub fn lookup_ns(&self, tokens: u64, activated: u64) -> f64 {
        let (t, a) = (tokens.max(1) as f64, activated.max(1) as f64);
        let (lo, hi, f) = axis_bracket(&self.experts, a);
        let at = |i: usize| interp(&self.rows[i].keys, &self.rows[i].vals, t);
        let v = if lo == hi {
            at(lo)
        } else {
            let (v0, v1) = (at(lo), at(hi));
            v0 + f * (v1 - v0)
        };
        v.trunc().max(1.0)
    }

    /// The largest profiled token count (any row).
    pub fn max_tokens(&self) -> u64 {
        self.rows
            .iter()
            .filter_map(|r| r.keys.last())
            .fold(0.0f64, |m, &k| m.max(k)) as u64
    }
}

/// How a step's tokens reach the experts: the model's expert count and top-k, and the
/// expert-parallel degree the experts are split over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoeRouting {
    /// Routed experts per MoE layer (E).
    pub num_experts: u64,
    /// Experts per token (k), at most E.
    pub top_k: u64,
    /// Expert-parallel ranks (ep), dividing E.
    pub ep: u64,
    /// GPUs each expert's intermediate width is split over when the experts are not split
    /// (`ep` 1) and the MoE layers take a data-parallel group's gathered batch: vLLM without
    /// `--enable-expert-parallel` flattens the MoE layers' tensor parallelism over DP × TP
    /// (`FusedMoEParallelConfig.make`, `flatten_tp_across_dp_and_pcp`), so every GPU holds
    /// every expert at `1 / tp_shards` of its width. 1: whole experts. Only the gathered
    /// pricing ([`MoeRouting::gathered_per_rank`]) reads it.
    pub tp_shards: u64,
}

impl MoeRouting {
    /// `E`, `k` from the model, `ep` ≥ 1 dividing `E` (the peer's rule), else
    /// [`ProfileError::BadEp`].
    pub fn new(num_experts: u64, top_k: u64, ep: u64) -> Result<MoeRouting, ProfileError> {
        if ep == 0 || num_experts == 0 || !num_experts.is_multiple_of(ep) {
            return Err(ProfileError::BadEp { ep, num_experts });
        }
        Ok(MoeRouting {
            num_experts,
            top_k: top_k.clamp(1, num_experts),
            ep,
            tp_shards: 1,
        })
    }

    /// The routing with each expert's width split over `shards` GPUs (DP × TP of a
    /// data-parallel group without expert parallelism, see [`MoeRouting::tp_shards`]).
    /// Refused with [`ProfileError::BadMoeShards`] when the experts are already split (vLLM
    /// shards an expert's width only without EP) or `shards` is 0.
    pub fn with_tp_shards(mut self, shards: u64) -> Result<MoeRouting, ProfileError> {
        if shards == 0 || (self.ep > 1 && shards > 1) {
            return Err(ProfileError::BadMoeShards {
                shards,
                ep: self.ep,
            });
        }
        self.tp_shards = shards;
        Ok(self)
    }

    /// The GPUs one MoE layer's work is divided over on the gathered batch: the EP ranks, or
    /// the TP shards of every expert (at most one of the two is above 1).
    pub fn shards(&self) -> u64 {
        self.ep.max(self.tp_shards)
    }

    /// `(tokens, activated experts)` on each rank for `tokens` entering the block: the peer's
    /// `GateRouter._balanced_route_ep`.
    pub fn per_rank(&self, tokens: u64) -> (u64, u64) {
        let (t, k, ep) = (tokens as f64, self.top_k as f64, self.ep as f64);
        let experts_per_rank = (self.num_experts / self.ep).max(1);
        let activated = ((t * k / ep).round_ties_even() as u64).min(experts_per_rank);
        let hit = if self.ep <= 1 {
            1.0
        } else {
            1.0 - ((ep - 1.0) / ep).powf(k)
        };
        ((t * hit).round_ties_even() as u64, activated)
    }

    /// `(tokens, activated experts)` of the `moe.csv` row one rank's MoE layer costs when it
    /// takes `gathered` tokens from every data-parallel rank, its work divided over
    /// `s` = [`MoeRouting::shards`] GPUs:
    ///
    /// - **expert parallelism** (`s` = ep): vLLM's fused-MoE kernel computes only the
    ///   token-expert pairs routed to the rank's own `E / ep` experts, `gathered · k / ep` of
    ///   them under a balanced gate; a row of `t` tokens computes `t · k` pairs, so the row of
    ///   `gathered / ep` tokens over `min(gathered · k, E) / ep` experts.
    ///   [`MoeRouting::per_rank`] applied to `gathered` would charge the rank `k` pairs for each
    ///   gathered token with a local expert, about `ep` times the pairs it computes.
    /// - **experts TP-sharded** (`s` = tp_shards, no EP): every GPU computes all
    ///   `gathered · k` pairs over the `min(gathered · k, E)` experts hit, each at `1 / s` of
    ///   its width. `moe.csv` has no width axis (it times whole experts at TP 1), so the layer
    ///   is priced at the row with the same work per GPU: `gathered / s` tokens over
    ///   `min(gathered · k, E) / s` whole experts — the same FLOPs (`gathered · k / s` whole
    ///   pairs) and the same expert-weight bytes (`min(gathered · k, E) / s` whole experts),
    ///   with the row's fixed per-call costs (kernel launches, the gate) kept whole. What it
    ///   cannot represent: the GEMMs' width (`I / s` against the row's `I`), the top-k
    ///   selection, which vLLM runs on every gathered token on every GPU, and the gate GEMM,
    ///   which it runs on the rank's own tokens (docs/fleet.md).
    ///
    /// Both rounded ties to even, at least 1. The two rules are one formula: with `s` dividing
    /// `E`, `round(min(g · k, E) / s)` is `min(round(g · k / s), E / s)`.
    pub fn gathered_per_rank(&self, gathered: u64) -> (u64, u64) {
        let (g, k, s) = (gathered as f64, self.top_k as f64, self.shards() as f64);
        let tokens = ((g / s).round_ties_even() as u64).max(1);
        let pairs_experts = (g * k).min(self.num_experts as f64);
        let activated = ((pairs_experts / s).round_ties_even() as u64).max(1);
        (tokens, activated)
    }
}

/// One MoE layer's cost: the table and the routing.
#[derive(Clone, Debug)]
pub(crate) struct MoeBlock {
    pub table: MoeTable,
    pub routing: MoeRouting,
}

impl MoeBlock {
    /// One MoE layer in ns for `tokens` entering it (0 for none). Beyond the peer: the busiest
    /// rank has at least one token and one expert when any token enters (the peer's expected
    /// load rounds to 0 below half a token, e.g. 1 token, k = 2, ep = 4, and drops the layer).
    pub fn layer_ns(&self, tokens: u64) -> f64 {
        if tokens == 0 {
            return 0.0;
        }
        let (local, activated) = self.routing.per_rank(tokens);
        self.table.lookup_ns(local.max(1), activated.max(1))
    }

    /// One MoE layer in ns on a data-parallel rank whose layer takes `gathered` tokens: every
    /// rank's, all-gathered by vLLM's default dispatch (`allgather_reducescatter`), priced at
    /// [`MoeRouting::gathered_per_rank`] (0 for none).
    pub fn layer_ns_gathered(&self, gathered: u64) -> f64 {
        if gathered == 0 {
            return 0.0;
        }
        let (tokens, activated) = self.routing.gathered_per_rank(gathered);
        self.table.lookup_ns(tokens, activated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> MoeTable {
        // One fresh folder per call (tests running at once may load the same text), removed
        // when `dir` drops on return.
        let dir = tempfile::Builder::new()
            .prefix("llm-emu-moe-")
            .tempdir()
            .unwrap();
        let p = dir.path().join("table.csv");
        std::fs::write(&p, text).unwrap();
        MoeTable::load(&p).unwrap()
    }

    #[test]
    fn bilinear_lookup_with_the_peer_edges() {
        // experts 8: tokens 1→10 µs, 4→40 µs; experts 16: tokens 2→100 µs, 4→200 µs.
        let t = table("tokens,activated_experts,time_us\n1,8,10\n4,8,40\n2,16,100\n4,16,200\n");
        assert_eq!(t.lookup_ns(1, 8), 10_000.0);
        assert_eq!(t.lookup_ns(2, 8), 20_000.0);
        // experts 12 at tokens 4: halfway between 40 and 200 µs.
        assert_eq!(t.lookup_ns(4, 12), 120_000.0);
        // tokens 1 is below the experts-16 row: its first value (100 µs); 12 → (10+100)/2.
        assert_eq!(t.lookup_ns(1, 12), 55_000.0);
        // Below the first experts value: that row; above the last: the line through both rows.
        assert_eq!(t.lookup_ns(4, 2), 40_000.0);
        assert_eq!(t.lookup_ns(4, 24), 360_000.0);
        assert_eq!(t.max_tokens(), 4);
    }

    #[test]
    fn gathered_batch_priced_at_the_local_pairs() {
        // experts 8: tokens 1→10 µs, 4→40 µs; experts 16: tokens 2→100 µs, 4→200 µs.
        let table = table("tokens,activated_experts,time_us\n1,8,10\n4,8,40\n2,16,100\n4,16,200\n");
        let block = MoeBlock {
            table,
            routing: MoeRouting::new(32, 8, 2).unwrap(),
        };
        // 8 gathered tokens, k = 8, ep = 2: 32 local pairs = the row of 4 tokens, on
        // min(32, 16) = 16 experts: 200 µs. The peer's rule charges 8 tokens (all but
        // 8·0.5^8 have a local expert) with k pairs each: twice the pairs, 400 µs.
        assert_eq!(block.layer_ns_gathered(8), 200_000.0);
        assert_eq!(block.layer_ns(8), 400_000.0);
        // 3 gathered: 1.5 → 2 tokens (ties to even), 12 experts: halfway between 20 and 100 µs.
        assert_eq!(block.layer_ns_gathered(3), 60_000.0);
        assert_eq!(block.layer_ns_gathered(0), 0.0);
    }

    #[test]
    fn tp_sharded_experts_priced_at_the_row_of_the_same_work() {
        // experts 8: tokens 1→10 µs, 4→40 µs; experts 16: tokens 2→100 µs, 4→200 µs.
        let table = table("tokens,activated_experts,time_us\n1,8,10\n4,8,40\n2,16,100\n4,16,200\n");
        // 32 experts, top-8, no EP, each expert split over DP 2 × TP 1 = 2 GPUs.
        let routing = MoeRouting::new(32, 8, 1)
            .unwrap()
            .with_tp_shards(2)
            .unwrap();
        assert_eq!(routing.shards(), 2);
        let block = MoeBlock { table, routing };
        // 8 gathered tokens: 64 pairs over min(64, 32) = 32 experts hit, each at half width:
        // the row of 8 / 2 = 4 tokens over 32 / 2 = 16 whole experts, 200 µs.
        assert_eq!(block.routing.gathered_per_rank(8), (4, 16));
        assert_eq!(block.layer_ns_gathered(8), 200_000.0);
        // 1 gathered token: 8 experts hit at half width = the row of 1 token (at least 1) over
        // 4 experts: below the first profiled experts value, its row: 10 µs.
        assert_eq!(block.routing.gathered_per_rank(1), (1, 4));
        assert_eq!(block.layer_ns_gathered(1), 10_000.0);
        // Sharding the width is refused where the experts are split already, and 0 shards.
        assert!(MoeRouting::new(32, 8, 2)
            .unwrap()
            .with_tp_shards(2)
            .is_err());
        assert!(MoeRouting::new(32, 8, 1)
            .unwrap()
            .with_tp_shards(0)
            .is_err());
        // One shard is whole experts: the EP-less routing unchanged.
        let one = MoeRouting::new(32, 8, 1)
            .unwrap()
            .with_tp_shards(1)
            .unwrap();
        assert_eq!(one, MoeRouting::new(32, 8, 1).unwrap());
    }

    #[test]
    fn balanced_routing_per_rank() {
        let r = MoeRouting::new(128, 8, 1).unwrap();
        assert_eq!(r.per_rank(1), (1, 8));
        assert_eq!(r.per_rank(20), (20, 128));
        let r = MoeRouting::new(128, 8, 4).unwrap();
        // 10·8/4 = 20 activated of 32 owned; 10·(1 − 0.75^8) = 8.999 → 9 tokens.
        assert_eq!(r.per_rank(10), (9, 20));
        // Half-way cases round to even, as Python's round: 1·2/4 = 0.5 → 0.
        assert_eq!(MoeRouting::new(8, 2, 4).unwrap().per_rank(1), (0, 0));
        assert!(MoeRouting::new(128, 8, 3).is_err());
        assert!(MoeRouting::new(128, 8, 0).is_err());
    }
}
