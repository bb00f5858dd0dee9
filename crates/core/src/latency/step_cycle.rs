//! `step-cycle:path=FILE[,seed=N][,min_samples=K]`: each step's duration drawn from empirical
//! samples of whole engine steps of the same shape, measured on a real GPU (the published
//! LLM-Emu's method and pack format, see [`pack`]).
//!
//! A step's shape is bucketed like the pack's cells: `tt` = scheduled tokens, `conc` = running
//! requests, and, when the pack has the axis, `ctx` = Σ tokens already computed of the
//! scheduled requests. The draw comes from the step's own cell when it holds at least
//! `min_samples` samples (default 16); otherwise neighbouring cells are pooled, nearest first (by
//! Euclidean distance in bucket units) until the pool holds `min_samples`, all cells at the
//! last distance included, each sample weighted by `1/(1+d)²`. A shape beyond the pack's range
//! takes the nearest cells at the edge; beyond the largest `tt` bucket the drawn duration is
//! scaled by `tt / tt_edge` (step time grows about linearly with tokens once compute-bound), and
//! the run reports what was extrapolated. The RNG is seeded (`seed`, default the engine's
//! `--seed`), so a run is reproducible.

pub mod pack;

use super::{LatencyModel, LatencySpecError, StepBatch};
use crate::time::Nanos;
use pack::Pack;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use rustc_hash::FxHashMap;
use std::path::PathBuf;

/// Samples a draw needs before neighbours stop being pooled in (default).
pub const DEFAULT_MIN_SAMPLES: usize = 16;

type Key = (i64, i64, i64);

/// The cells a bucket draws from: cumulative weights over (cell, sample) choices.
#[derive(Clone, Debug)]
struct Pool {
    cells: Vec<usize>,
    cumulative: Vec<f64>,
}

#[derive(Clone, Debug)]
pub struct StepCycleLatency {
    pack: Pack,
    seed: u64,
    min_samples: usize,
    rng: Pcg64,
    pools: FxHashMap<Key, Pool>,
    /// Largest bucket of each axis in the pack.
    max_key: Key,
    /// Largest shape seen beyond the pack on each axis (0 = none): tt tokens, conc, ctx tokens.
    beyond: [u64; 3],
    /// Steps whose own cell was missing or too small, so neighbours were pooled.
    pooled_steps: u64,
    steps: u64,
}

impl StepCycleLatency {
    pub fn new(pack: Pack, seed: u64, min_samples: usize) -> StepCycleLatency {
        let max_key = pack.cells.iter().fold((0, 0, 0), |m, c| {
            (
                m.0.max(c.tt_bucket),
                m.1.max(c.conc_bucket),
                m.2.max(c.ctx_bucket),
            )
        });
        StepCycleLatency {
            pack,
            seed,
            min_samples: min_samples.max(1),
            rng: Pcg64::seed_from_u64(seed),
            pools: FxHashMap::default(),
            max_key,
            beyond: [0; 3],
            pooled_steps: 0,
            steps: 0,
        }
    }

    /// `path=FILE[,seed=N][,min_samples=K]`; `default_seed` when no `seed` is given.
    pub fn parse_params(params: &str, default_seed: u64) -> Result<Self, LatencySpecError> {
        let mut path = None;
        let mut seed = default_seed;
        let mut min_samples = DEFAULT_MIN_SAMPLES;
        for kv in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                LatencySpecError::BadParam(kv.into(), "expected key=value".into())
            })?;
            let int = || {
                v.trim().parse::<u64>().map_err(|_| {
                    LatencySpecError::BadParam(kv.into(), "must be a non-negative integer".into())
                })
            };
            match k.trim() {
                "path" => path = Some(PathBuf::from(v.trim())),
                "seed" => seed = int()?,
                "min_samples" => {
                    min_samples = int()? as usize;
                    if min_samples == 0 {
                        return Err(LatencySpecError::BadParam(kv.into(), "must be ≥ 1".into()));
                    }
                }
                other => {
                    return Err(LatencySpecError::BadParam(
                        other.into(),
                        "unknown key (path, seed, min_samples)".into(),
                    ))
                }
            }
        }
        let path = path.ok_or_else(|| {
            LatencySpecError::BadParam(params.into(), "step-cycle needs path=FILE".into())
        })?;
        let pack = Pack::read(&path).map_err(|e| {
            LatencySpecError::BadParam(format!("path={}", path.display()), e.to_string())
        })?;
        Ok(StepCycleLatency::new(pack, seed, min_samples))
    }

    /// The bucket of a step, before clamping to the pack.
    fn key_of(&self, tt: u64, conc: u64, ctx: u64) -> Key {
        let p = &self.pack;
        (
            (tt as f64 / p.tt_width).floor() as i64,
            (conc as f64 / p.conc_width).floor() as i64,
            p.ctx_width.map_or(0, |w| (ctx as f64 / w).floor() as i64),
        )
    }

    fn build_pool(&self, key: Key) -> Pool {
        let dist = |i: usize| {
            let c = &self.pack.cells[i];
            let d = [
                (c.tt_bucket - key.0) as f64,
                (c.conc_bucket - key.1) as f64,
                (c.ctx_bucket - key.2) as f64,
            ];
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        };
        let mut order: Vec<(f64, usize)> =
            (0..self.pack.cells.len()).map(|i| (dist(i), i)).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut cells = Vec::new();
        let mut cumulative = Vec::new();
        let (mut total_samples, mut total_w) = (0usize, 0.0);
        let mut last_d = f64::NEG_INFINITY;
        for (d, i) in order {
            if total_samples >= self.min_samples && d > last_d {
                break;
            }
            let n = self.pack.cells[i].samples_ns.len();
            total_samples += n;
            total_w += n as f64 / ((1.0 + d) * (1.0 + d));
            cells.push(i);
            cumulative.push(total_w);
            last_d = d;
        }
        Pool { cells, cumulative }
    }

    fn draw(&mut self, key: Key) -> f64 {
        if !self.pools.contains_key(&key) {
            let pool = self.build_pool(key);
            self.pools.insert(key, pool);
        }
        let pool = &self.pools[&key];
        let total = *pool.cumulative.last().expect("pools are never empty");
        let x = self.rng.random::<f64>() * total;
        let at = pool
            .cumulative
            .partition_point(|&c| c <= x)
            .min(pool.cells.len() - 1);
        let samples = &self.pack.cells[pool.cells[at]].samples_ns;
        let is_own = pool.cells.len() == 1;
        let pick = self.rng.random_range(0..samples.len());
        if !is_own {
            self.pooled_steps += 1;
        }
        samples[pick]
    }

    /// The pack's path.
    pub fn path(&self) -> &std::path::Path {
        &self.pack.path
    }
}

impl LatencyModel for StepCycleLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        self.steps += 1;
        let (tt, conc, ctx) = (
            batch.total_tokens as u64,
            batch.num_running as u64,
            batch.context_tokens() as u64,
        );
        let raw = self.key_of(tt, conc, ctx);
        let key = (
            raw.0.min(self.max_key.0),
            raw.1.min(self.max_key.1),
            raw.2.min(self.max_key.2),
        );
        let mut scale = 1.0;
        if raw.0 > self.max_key.0 {
            self.beyond[0] = self.beyond[0].max(tt);
            let edge = (self.max_key.0 as f64 + 0.5) * self.pack.tt_width;
            scale = tt as f64 / edge;
        }
        if raw.1 > self.max_key.1 {
            self.beyond[1] = self.beyond[1].max(conc);
        }
        if raw.2 > self.max_key.2 {
            self.beyond[2] = self.beyond[2].max(ctx);
        }
        let ns = self.draw(key) * scale;
        Nanos(ns.round().max(1.0) as u64)
    }

    fn describe(&self) -> String {
        let p = &self.pack;
        let samples: usize = p.cells.iter().map(|c| c.samples_ns.len()).sum();
        format!(
            "step-cycle: {} ({} cells, {samples} samples; tt bucket {}, conc bucket {}{}; pooled below {} samples; seed {})",
            p.path.display(),
            p.cells.len(),
            p.tt_width,
            p.conc_width,
            p.ctx_width
                .map(|w| format!(", ctx bucket {w}"))
                .unwrap_or_default(),
            self.min_samples,
            self.seed
        )
    }

    fn warnings(&self) -> Vec<String> {
        let p = &self.pack;
        let mut w = Vec::new();
        let edge = |k: i64, width: f64| ((k + 1) as f64 * width) as u64;
        if self.beyond[0] > 0 {
            w.push(format!(
                "steps of up to {} tokens exceed the pack's largest tt bucket (< {}): drawn from \
                 the edge cells and scaled linearly in tokens",
                self.beyond[0],
                edge(self.max_key.0, p.tt_width)
            ));
        }
        if self.beyond[1] > 0 {
            w.push(format!(
                "up to {} running requests exceed the pack's largest conc bucket (< {}): drawn \
                 from the edge cells unscaled",
                self.beyond[1],
                edge(self.max_key.1, p.conc_width)
            ));
        }
        if let (true, Some(width)) = (self.beyond[2] > 0, p.ctx_width) {
            w.push(format!(
                "context of up to {} tokens exceeds the pack's largest ctx bucket (< {}): drawn \
                 from the edge cells unscaled",
                self.beyond[2],
                edge(self.max_key.2, width)
            ));
        }
        if self.pooled_steps > 0 {
            w.push(format!(
                "{} of {} steps fell in cells with fewer than {} samples and were drawn from \
                 pooled neighbouring cells",
                self.pooled_steps, self.steps, self.min_samples
            ));
        }
        if p.empty_cells > 0 {
            w.push(format!(
                "{} cells of the pack have no samples (ignored)",
                p.empty_cells
            ));
        }
        if p.count_mismatches > 0 {
            w.push(format!(
                "{} cells' num_samples disagree with their sample lists (the lists were used)",
                p.count_mismatches
            ));
        }
        w
    }
}
