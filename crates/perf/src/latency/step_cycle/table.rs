//! One table of cells, ready for drawing: exact-cell lookup, pooling of neighbouring cells
//! weighted by distance where a cell is sparse or missing, and a fitted linear trend that moves
//! a neighbour's samples to the queried shape (which is also how shapes outside the table are
//! extrapolated).

use super::pack::Cell;
use super::rng::SplitMix64;
use std::collections::HashMap;

/// Axis names, in key order.
pub const AXES: [&str; 3] = ["tt", "conc", "ctx"];

/// Cells pooled for a shape at most (ties with the last one are always kept).
const MAX_POOL: usize = 16;

#[derive(Debug)]
struct TCell {
    key: [u64; 3],
    samples: Vec<f64>,
}

/// The neighbourhood a bucket key draws from: cells with cumulative weights and the shift (µs)
/// that moves each cell's samples to the queried key.
#[derive(Clone, Debug)]
struct Pool {
    /// (cell index, cumulative weight, shift µs)
    members: Vec<(usize, f64, f64)>,
}

/// Where a key lies outside the table's key range: per axis, -1 below, +1 above, 0 inside.
pub type OutOfRange = [i8; 3];

#[derive(Debug)]
pub struct Table {
    cells: Vec<TCell>,
    index: HashMap<[u64; 3], usize>,
    /// Cell indices sorted by tt key, for the neighbour sweep.
    by_tt: Vec<usize>,
    /// Bucket widths per axis (ctx width 1 and every ctx key 0 when the pack has no ctx axis).
    widths: [u64; 3],
    /// Trend slopes, µs per unit of each axis (>= 0).
    slopes: [f64; 3],
    lo: [u64; 3],
    hi: [u64; 3],
    /// Smallest sample of the table: a floor for shifted draws, so a draw is never <= 0.
    floor_us: f64,
    /// A cell with at least this many samples is drawn from alone.
    min_samples: usize,
    pools: HashMap<[u64; 3], Pool>,
}

impl Table {
    /// Builds a table from validated, non-empty cells; `ctx_width` is `None` for 2-D packs.
    pub fn new(
        cells: &[Cell],
        tt_w: u64,
        conc_w: u64,
        ctx_w: Option<u64>,
        min_samples: usize,
    ) -> Table {
        assert!(!cells.is_empty(), "validated pack tables are non-empty");
        let cells: Vec<TCell> = cells
            .iter()
            .map(|c| TCell {
                key: [
                    c.tt,
                    c.conc,
                    if ctx_w.is_some() {
                        c.ctx.unwrap_or(0)
                    } else {
                        0
                    },
                ],
                samples: c.samples.clone(),
            })
            .collect();
        let index = cells.iter().enumerate().map(|(i, c)| (c.key, i)).collect();
        let mut lo = [u64::MAX; 3];
        let mut hi = [0u64; 3];
        for c in &cells {
            for a in 0..3 {
                lo[a] = lo[a].min(c.key[a]);
                hi[a] = hi[a].max(c.key[a]);
            }
        }
        let floor_us = cells
            .iter()
            .flat_map(|c| c.samples.iter().copied())
            .fold(f64::INFINITY, f64::min);
        let slopes = fit_slopes(&cells, ctx_w.is_some());
        let mut by_tt: Vec<usize> = (0..cells.len()).collect();
        by_tt.sort_by_key(|&i| (cells[i].key[0], i));
        Table {
            cells,
            index,
            by_tt,
            widths: [tt_w, conc_w, ctx_w.unwrap_or(1)],
            slopes,
            lo,
            hi,
            floor_us,
            min_samples: min_samples.max(1),
            pools: HashMap::new(),
        }
    }

    /// The fitted trend slopes, µs per token (tt), per request (conc), per context token (ctx).
    pub fn slopes(&self) -> [f64; 3] {
        self.slopes
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Always false: tables are built from non-empty cell lists.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The key range per axis, (lowest, highest) cell key.
    pub fn range(&self) -> [(u64, u64); 3] {
        [0, 1, 2].map(|a| (self.lo[a], self.hi[a]))
    }

    /// Where `key` lies relative to the table's key range.
    pub fn out_of_range(&self, key: [u64; 3]) -> OutOfRange {
        [0, 1, 2].map(|a| {
            if key[a] < self.lo[a] {
                -1
            } else if key[a] > self.hi[a] {
                1
            } else {
                0
            }
        })
    }

    /// Draws one step duration (µs) for the bucket `key`.
    pub fn draw(&mut self, key: [u64; 3], rng: &mut SplitMix64) -> f64 {
        if !self.pools.contains_key(&key) {
            let pool = self.pool_for(key);
            self.pools.insert(key, pool);
        }
        let pool = &self.pools[&key];
        let total = pool.members.last().expect("pool is non-empty").1;
        let (cell, shift) = if pool.members.len() == 1 {
            (pool.members[0].0, pool.members[0].2)
        } else {
            let u = rng.next_f64() * total;
            let m = pool
                .members
                .iter()
                .find(|m| u < m.1)
                .unwrap_or_else(|| pool.members.last().expect("non-empty"));
            (m.0, m.2)
        };
        let samples = &self.cells[cell].samples;
        let s = samples[rng.below(samples.len())];
        (s + shift).max(self.floor_us)
    }

    /// The cells `key` draws from: its own cell alone when it holds `min_samples`, else the
    /// nearest cells (Euclidean distance in bucket widths) until they hold `min_samples`
    /// together, each weighted `min(n, min_samples) / (1 + distance)`.
    fn pool_for(&self, key: [u64; 3]) -> Pool {
        if let Some(&i) = self.index.get(&key) {
            if self.cells[i].samples.len() >= self.min_samples {
                return Pool {
                    members: vec![(i, 1.0, 0.0)],
                };
            }
        }
        let by_dist = self.nearest(key);
        let mut members = Vec::new();
        let mut held = 0usize;
        let mut cum = 0.0;
        let mut last_d = f64::NAN;
        for (d, i) in by_dist {
            let enough = held >= self.min_samples || members.len() >= MAX_POOL;
            if enough && d != last_d {
                break;
            }
            let n = self.cells[i].samples.len().min(self.min_samples);
            held += n;
            cum += n as f64 / (1.0 + d);
            members.push((i, cum, self.shift(key, self.cells[i].key)));
            last_d = d;
        }
        Pool { members }
    }

    /// The cells a pool for `key` can take, sorted by (distance, index): every cell no farther
    /// than the pool's cutoff. Sweeps outwards from `key` along the tt-sorted cells and stops
    /// once the tt distance alone exceeds the cutoff, so a pool costs a few cells, not the table.
    fn nearest(&self, key: [u64; 3]) -> Vec<(f64, usize)> {
        let n = self.by_tt.len();
        let tt = |j: usize| self.cells[self.by_tt[j]].key[0];
        let w = self.widths[0] as f64;
        let pos = self
            .by_tt
            .partition_point(|&i| self.cells[i].key[0] < key[0]);
        let (mut lo, mut hi) = (pos, pos);
        let mut cands: Vec<(f64, usize)> = Vec::new();
        loop {
            let below = (lo > 0).then(|| (key[0] - tt(lo - 1)) as f64 / w);
            let above = (hi < n).then(|| (tt(hi) - key[0]) as f64 / w);
            let (bound, take_below) = match (below, above) {
                (None, None) => break,
                (Some(b), None) => (b, true),
                (None, Some(a)) => (a, false),
                (Some(b), Some(a)) => (b.min(a), b <= a),
            };
            if self.cutoff(&cands).is_some_and(|cut| bound > cut) {
                break;
            }
            let i = if take_below {
                lo -= 1;
                self.by_tt[lo]
            } else {
                hi += 1;
                self.by_tt[hi - 1]
            };
            let c = (self.distance(key, self.cells[i].key), i);
            let at = cands.partition_point(|x| x.0.total_cmp(&c.0).then(x.1.cmp(&c.1)).is_lt());
            cands.insert(at, c);
            if let Some(cut) = self.cutoff(&cands) {
                cands.retain(|x| x.0 <= cut);
            }
        }
        cands
    }

    /// Distance of the cell that completes a pool from the sorted candidates (`min_samples`
    /// held or `MAX_POOL` cells), if they complete one.
    fn cutoff(&self, sorted: &[(f64, usize)]) -> Option<f64> {
        let mut held = 0;
        for (k, &(d, i)) in sorted.iter().enumerate() {
            held += self.cells[i].samples.len().min(self.min_samples);
            if held >= self.min_samples || k + 1 >= MAX_POOL {
                return Some(d);
            }
        }
        None
    }

    fn distance(&self, a: [u64; 3], b: [u64; 3]) -> f64 {
        (0..3)
            .map(|i| {
                let d = (a[i] as f64 - b[i] as f64) / self.widths[i] as f64;
                d * d
            })
            .sum::<f64>()
            .sqrt()
    }

    /// µs that move a sample of cell `from` to key `to` along the fitted trend.
    fn shift(&self, to: [u64; 3], from: [u64; 3]) -> f64 {
        (0..3)
            .map(|i| self.slopes[i] * (to[i] as f64 - from[i] as f64))
            .sum()
    }
}

/// Least-squares plane through the cell means (weighted by sample count): mean ≈ a + b·tt +
/// c·conc (+ d·ctx). An axis without spread gets slope 0; a negative slope (noise: a step
/// never gets faster with more work) is set to 0.
fn fit_slopes(cells: &[TCell], use_ctx: bool) -> [f64; 3] {
    let mut axes: Vec<usize> = (0..if use_ctx { 3 } else { 2 })
        .filter(|&a| cells.iter().any(|c| c.key[a] != cells[0].key[a]))
        .collect();
    // Collinear axes (a decode table keyed with both widths 1 has tt == conc): drop the later
    // axis and fit again, so the trend rides on tt first.
    while !axes.is_empty() {
        if let Some(s) = fit_axes(cells, &axes) {
            return s;
        }
        axes.pop();
    }
    [0.0; 3]
}

/// The plane fit over `axes` (non-empty); `None` when they are collinear.
fn fit_axes(cells: &[TCell], axes: &[usize]) -> Option<[f64; 3]> {
    let mut slopes = [0.0; 3];
    let w: Vec<f64> = cells.iter().map(|c| c.samples.len() as f64).collect();
    let mean: Vec<f64> = cells
        .iter()
        .map(|c| c.samples.iter().sum::<f64>() / c.samples.len() as f64)
        .collect();
    let wsum: f64 = w.iter().sum();
    let xbar: Vec<f64> = axes
        .iter()
        .map(|&a| {
            cells
                .iter()
                .zip(&w)
                .map(|(c, w)| w * c.key[a] as f64)
                .sum::<f64>()
                / wsum
        })
        .collect();
    let ybar = mean.iter().zip(&w).map(|(m, w)| m * w).sum::<f64>() / wsum;
    let k = axes.len();
    // Normal equations on centred data: M s = v.
    let mut m = vec![vec![0.0; k + 1]; k];
    for (ci, c) in cells.iter().enumerate() {
        let x: Vec<f64> = axes
            .iter()
            .enumerate()
            .map(|(j, &a)| c.key[a] as f64 - xbar[j])
            .collect();
        for r in 0..k {
            for s in 0..k {
                m[r][s] += w[ci] * x[r] * x[s];
            }
            m[r][k] += w[ci] * x[r] * (mean[ci] - ybar);
        }
    }
    let sol = solve(m)?;
    for (j, &a) in axes.iter().enumerate() {
        slopes[a] = if sol[j].is_finite() {
            sol[j].max(0.0)
        } else {
            0.0
        };
    }
    Some(slopes)
}

/// Gaussian elimination with partial pivoting on an augmented k×(k+1) matrix; `None` when
/// singular (collinear axes), in which case no trend is used.
fn solve(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = m.len();
    // A pivot this small next to the largest diagonal entry means collinear axes.
    let tol = 1e-9 * (0..k).map(|i| m[i][i].abs()).fold(0.0, f64::max);
    for col in 0..k {
        let p = (col..k).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        let piv = m[p][col].abs();
        if piv.is_nan() || piv <= tol {
            return None;
        }
        m.swap(col, p);
        let pivot = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot[col];
                for (x, pv) in row.iter_mut().zip(&pivot).skip(col) {
                    *x -= f * pv;
                }
            }
        }
    }
    Some((0..k).map(|r| m[r][k] / m[r][r]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    /// A decode table keyed with widths 1 has tt == conc: the fit keeps the tt slope.
    #[test]
    fn collinear_axes_keep_the_tt_trend() {
        let cells: Vec<Cell> = (1..20u64)
            .map(|c| Cell {
                tt: c,
                conc: c,
                ctx: None,
                num_samples: 3,
                samples: vec![5000.0 + 60.0 * c as f64; 3],
            })
            .collect();
        let t = Table::new(&cells, 1, 1, None, 5);
        let s = t.slopes();
        assert!((s[0] - 60.0).abs() < 1e-6 && s[1] == 0.0, "{s:?}");
        // Plane data with independent axes: both slopes recovered.
        let cells: Vec<Cell> = (0..50u64)
            .map(|i| {
                let (tt, conc) = (16 + 32 * (i % 10), 2 + 5 * (i / 10));
                Cell {
                    tt,
                    conc,
                    ctx: None,
                    num_samples: 1,
                    samples: vec![100.0 + 3.0 * tt as f64 + 7.0 * conc as f64],
                }
            })
            .collect();
        let s = Table::new(&cells, 32, 5, None, 5).slopes();
        assert!(
            (s[0] - 3.0).abs() < 1e-9 && (s[1] - 7.0).abs() < 1e-9,
            "{s:?}"
        );
    }

    /// The sweep finds the same neighbours as sorting every cell by distance.
    #[test]
    fn the_sweep_matches_a_full_sort() {
        let mut rng = Pcg64::seed_from_u64(11);
        for round in 0..40 {
            let (tt_w, conc_w, ctx_w) = [(1, 5, None), (16, 5, Some(512)), (4, 1, None)][round % 3];
            let mut cells = vec![];
            let mut seen = std::collections::HashSet::new();
            for _ in 0..rng.random_range(1..300) {
                let tt =
                    crate::latency::step_cycle::pack::bucket_key(rng.random_range(1..400), tt_w);
                let conc =
                    crate::latency::step_cycle::pack::bucket_key(rng.random_range(1..40), conc_w);
                let ctx = ctx_w.map(|w| {
                    crate::latency::step_cycle::pack::bucket_key(rng.random_range(0..5000), w)
                });
                if !seen.insert((tt, conc, ctx)) {
                    continue;
                }
                let n = rng.random_range(1..8);
                cells.push(Cell {
                    tt,
                    conc,
                    ctx,
                    num_samples: n,
                    samples: vec![1000.0; n],
                });
            }
            let t = Table::new(&cells, tt_w, conc_w, ctx_w, rng.random_range(1..12));
            for _ in 0..50 {
                let key = [
                    rng.random_range(0..500),
                    rng.random_range(0..50),
                    if ctx_w.is_some() {
                        rng.random_range(0..6000)
                    } else {
                        0
                    },
                ];
                let mut all: Vec<(f64, usize)> = t
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (t.distance(key, c.key), i))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let cut = t.cutoff(&all).unwrap_or(f64::INFINITY);
                all.retain(|x| x.0 <= cut);
                assert_eq!(t.nearest(key), all, "key {key:?}");
            }
        }
    }
}
