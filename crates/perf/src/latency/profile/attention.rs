//! The 4-D attention table: slices per profiled `(prefill_chunk, n_decode)` pair, each a grid
//! over `(kv_prefill, kv_decode)`, looked up the way the peer does (`_lookup_attention`).

use super::tables::{axis_bracket, interp, Csv};
use super::ProfileError;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One `(pc, nd)` slice: sorted kv_prefill values, and per kv_prefill a kv_decode row.
#[derive(Clone, Debug)]
struct Slice {
    kp_vals: Vec<f64>,
    /// `(kv_decode keys, values ns)` per entry of `kp_vals`.
    rows: Vec<(Vec<f64>, Vec<f64>)>,
}

impl Slice {
    #[inline]
    fn lookup(&self, kp: f64, kd: f64) -> f64 {
        let (lo, hi, t) = axis_bracket(&self.kp_vals, kp);
        let row = |i: usize| {
            let (k, v) = &self.rows[i];
            interp(k, v, kd)
        };
        let v_lo = row(lo);
        if lo == hi {
            return v_lo;
        }
        v_lo + t * (row(hi) - v_lo)
    }
}

#[derive(Clone, Debug)]
pub struct AttentionTable {
    pc_vals: Vec<f64>,
    nd_vals: Vec<f64>,
    /// Shared by the table's clones, like [`super::tables::Table1D`]'s values.
    slices: Arc<[Slice]>,
    /// `corner[pc_idx * nd_vals.len() + nd_idx]`: the slice for that grid corner, or for a
    /// corner never profiled the nearest profiled `(pc, nd)` pair (squared distance in raw
    /// units, ties to the lowest `(pc, nd)`).
    corner: Arc<[usize]>,
}

impl AttentionTable {
    /// The largest profiled value of each axis: (prefill_chunk, kv_prefill, n_decode,
    /// kv_decode). Lookups beyond them extrapolate.
    pub fn extent(&self) -> [u64; 4] {
        let last = |v: &[f64]| v.last().copied().unwrap_or(0.0) as u64;
        let kp = self.slices.iter().map(|s| last(&s.kp_vals)).max();
        let kd = self
            .slices
            .iter()
            .flat_map(|s| s.rows.iter().map(|(k, _)| last(k)))
            .max();
        [
            last(&self.pc_vals),
            kp.unwrap_or(0),
            last(&self.nd_vals),
            kd.unwrap_or(0),
        ]
    }

    pub fn load(path: &Path) -> Result<AttentionTable, ProfileError> {
        let csv = Csv::read(
            path,
            &[
                "prefill_chunk",
                "kv_prefill",
                "n_decode",
                "kv_decode",
                "time_us",
            ],
        )?;
        // (pc, nd) -> kp -> kd -> ns; a grid point given twice is refused.
        type Grid = BTreeMap<(u64, u64), BTreeMap<u64, BTreeMap<u64, f64>>>;
        let mut grid: Grid = BTreeMap::new();
        let mut seen = std::collections::HashMap::new();
        for row in &csv.rows {
            let pc = csv.uint(row, 0)?;
            let kp = csv.uint(row, 1)?;
            let nd = csv.uint(row, 2)?;
            let kd = csv.uint(row, 3)?;
            let ns = csv.time_ns(row, 4)?;
            csv.once(&mut seen, (pc, kp, nd, kd), row, || {
                format!("grid point (prefill_chunk {pc}, kv_prefill {kp}, n_decode {nd}, kv_decode {kd})")
            })?;
            grid.entry((pc, nd))
                .or_default()
                .entry(kp)
                .or_default()
                .insert(kd, ns);
        }
        Ok(Self::from_grid(grid))
    }

    fn from_grid(grid: BTreeMap<(u64, u64), BTreeMap<u64, BTreeMap<u64, f64>>>) -> Self {
        let mut pcs: Vec<u64> = grid.keys().map(|k| k.0).collect();
        let mut nds: Vec<u64> = grid.keys().map(|k| k.1).collect();
        pcs.sort_unstable();
        pcs.dedup();
        nds.sort_unstable();
        nds.dedup();
        let pairs: Vec<(u64, u64)> = grid.keys().copied().collect(); // sorted
        let slices: Vec<Slice> = grid
            .into_values()
            .map(|by_kp| Slice {
                kp_vals: by_kp.keys().map(|&k| k as f64).collect(),
                rows: by_kp
                    .into_values()
                    .map(|by_kd| {
                        (
                            by_kd.keys().map(|&k| k as f64).collect(),
                            by_kd.into_values().collect(),
                        )
                    })
                    .collect(),
            })
            .collect();
        let mut corner = Vec::with_capacity(pcs.len() * nds.len());
        for &pc in &pcs {
            for &nd in &nds {
                let idx = match pairs.binary_search(&(pc, nd)) {
                    Ok(i) => i,
                    Err(_) => {
                        let d = |p: &(u64, u64)| {
                            let a = p.0 as i128 - pc as i128;
                            let b = p.1 as i128 - nd as i128;
                            a * a + b * b
                        };
                        // `min_by_key` keeps the first minimum, as Python's `min` does.
                        let (i, _) = pairs
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, p)| d(p))
                            .expect("a loaded table has at least one row");
                        i
                    }
                };
                corner.push(idx);
            }
        }
        AttentionTable {
            pc_vals: pcs.iter().map(|&x| x as f64).collect(),
            nd_vals: nds.iter().map(|&x| x as f64).collect(),
            slices: slices.into(),
            corner: corner.into(),
        }
    }

    /// Time of one attention layer in ns (whole, at least 1) for `pc` new prefill tokens over
    /// `kp` computed ones plus `nd` decodes at context `kd` each.
    #[inline]
    pub fn lookup_ns(&self, pc: u64, kp: u64, nd: u64, kd: u64) -> f64 {
        let (pc_lo, pc_hi, t_pc) = axis_bracket(&self.pc_vals, pc as f64);
        let (nd_lo, nd_hi, t_nd) = axis_bracket(&self.nd_vals, nd as f64);
        let w = self.nd_vals.len();
        let (kp, kd) = (kp as f64, kd as f64);
        let c = |i: usize, j: usize| self.slices[self.corner[i * w + j]].lookup(kp, kd);
        let c00 = c(pc_lo, nd_lo);
        let c01 = c(pc_lo, nd_hi);
        let c10 = c(pc_hi, nd_lo);
        let c11 = c(pc_hi, nd_hi);
        let v0 = c00 + t_nd * (c01 - c00);
        let v1 = c10 + t_nd * (c11 - c10);
        (v0 + t_pc * (v1 - v0)).trunc().max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(u64, u64, u64, u64, f64)]) -> AttentionTable {
        let mut g: BTreeMap<(u64, u64), BTreeMap<u64, BTreeMap<u64, f64>>> = BTreeMap::new();
        for &(pc, kp, nd, kd, ns) in rows {
            g.entry((pc, nd))
                .or_default()
                .entry(kp)
                .or_default()
                .insert(kd, ns);
        }
        AttentionTable::from_grid(g)
    }

    #[test]
    fn bilinear_and_corners() {
        // Pure decode: nd ∈ {1, 2}, kd ∈ {16, 32}; pure prefill: pc ∈ {16, 32}, kp ∈ {0, 64};
        // one mixed corner (16, 1).
        let t = table(&[
            (0, 0, 1, 16, 100.0),
            (0, 0, 1, 32, 200.0),
            (0, 0, 2, 16, 300.0),
            (0, 0, 2, 32, 500.0),
            (16, 0, 0, 0, 1000.0),
            (16, 64, 0, 0, 2000.0),
            (32, 0, 0, 0, 3000.0),
            (32, 64, 0, 0, 5000.0),
            (16, 0, 1, 16, 1100.0),
            (16, 0, 1, 32, 1300.0),
        ]);
        // Exact points.
        assert_eq!(t.lookup_ns(0, 0, 1, 16), 100.0);
        assert_eq!(t.lookup_ns(0, 0, 2, 32), 500.0);
        // Decode KV below the first profiled value clamps to it.
        assert_eq!(t.lookup_ns(0, 0, 1, 3), 100.0);
        // Along kd, along nd, and both.
        assert_eq!(t.lookup_ns(0, 0, 1, 24), 150.0);
        assert_eq!(t.lookup_ns(0, 0, 2, 24), 400.0);
        // nd beyond the last profiled value extrapolates: nd=3 → 2×(400)−150 at kd 24.
        assert_eq!(t.lookup_ns(0, 0, 3, 24), 650.0);
        // Pure prefill: bilinear in (pc, kp), nd = 0 exact.
        assert_eq!(t.lookup_ns(16, 32, 0, 0), 1500.0);
        assert_eq!(t.lookup_ns(24, 32, 0, 0), 2750.0);
        // Mixed (pc 24, kp 0, nd 1, kd 16): pc brackets (16, 32) at t 0.5, nd an exact hit
        // brackets (1, 2) at t 0. Corner (16, 1) = 1100 exists; (32, 1) is missing and takes
        // the nearest profiled pair, (32, 0) = 3000 (squared distance 1).
        assert_eq!(t.lookup_ns(24, 0, 1, 16), (1100.0 + 3000.0) / 2.0);
    }
}
