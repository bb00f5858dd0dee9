//! `step-cycle:path=FILE[,seed=N,min_samples=M]`: whole engine-step durations drawn from
//! empirical samples keyed by batch shape — LLM-Emu's profile packs
//! (`"profile_type": "serving_step_cycle_2d"`) and our extension with a context-token axis.
//! See `docs/step-cycle.md` for the format, the sampling and pooling rules and the limits.
//!
//! A step's shape is tt = Σ scheduled tokens, conc = scheduled requests (at least 1), ctx = Σ
//! tokens computed before the step. A step carrying prompt tokens draws from the prefill table,
//! any other from the decode table (the all-steps table stands in for a missing one).

pub mod build;
pub mod pack;
mod rng;
pub mod table;

use super::{LatencyModel, StepBatch};
use llm_emu_core::Nanos;
use pack::{bucket_key, StepCyclePack, TABLE_NAMES};
use rng::SplitMix64;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use table::{Table, AXES};

pub use pack::{PackError, PROFILE_TYPE_2D, PROFILE_TYPE_CTX};

/// A cell holding fewer samples than this is pooled with its neighbours (default).
pub const DEFAULT_MIN_SAMPLES: usize = 5;

/// Receives one-line warnings (shapes outside the table); by default printed to stderr.
pub type WarnSink = Box<dyn FnMut(&str) + Send>;

pub struct StepCycleLatency {
    path: PathBuf,
    seed: u64,
    min_samples: usize,
    widths: [u64; 3],
    has_ctx: bool,
    /// LLM-Emu's tt_eff = tt + alpha_kv × context tokens, when the pack was keyed so.
    alpha_kv: Option<f64>,
    /// Tables for prefill steps and decode steps, with the pack table each came from.
    prefill: (Table, &'static str),
    decode: Option<(Table, &'static str)>,
    notes: Vec<String>,
    rng: SplitMix64,
    warned: HashSet<(&'static str, usize, i8)>,
    /// Extra receiver of warnings (tests); every warning is also kept for `warnings()`.
    warn: Option<WarnSink>,
    /// The warnings so far, once each.
    said: Vec<String>,
}

impl std::fmt::Debug for StepCycleLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCycleLatency")
            .field("path", &self.path)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl StepCycleLatency {
    /// A model over a pack (validated again here, so a pack built in code is checked too);
    /// `path` names it in messages. A `min_samples` of 0 counts as 1.
    pub fn new(
        pack: &StepCyclePack,
        path: &Path,
        seed: u64,
        min_samples: usize,
    ) -> Result<Self, PackError> {
        pack.validate(path)?;
        let min_samples = min_samples.max(1);
        let b = pack
            .bucketing
            .as_ref()
            .expect("validated pack has bucketing");
        let ctx_w = if pack.has_ctx() {
            b.ctx_bucket_width
        } else {
            None
        };
        let mk = |cells: &[pack::Cell]| {
            Table::new(
                cells,
                b.tt_bucket_width,
                b.conc_bucket_width,
                ctx_w,
                min_samples,
            )
        };
        let [p, d, all] = pack.tables();
        let mut notes = Vec::new();
        let pick = |own: &'static str,
                    cells: &[pack::Cell],
                    other: (&'static str, &[pack::Cell]),
                    notes: &mut Vec<String>| {
            if !cells.is_empty() {
                return (mk(cells), own);
            }
            let (name, cells) = if !all.is_empty() {
                (TABLE_NAMES[2], all)
            } else {
                other
            };
            notes.push(format!("{own} missing, using {name}"));
            (mk(cells), name)
        };
        let prefill = pick(TABLE_NAMES[0], p, (TABLE_NAMES[1], d), &mut notes);
        let decode = pick(TABLE_NAMES[1], d, (TABLE_NAMES[0], p), &mut notes);
        let decode = if decode.1 == prefill.1 {
            None
        } else {
            Some(decode)
        };
        Ok(StepCycleLatency {
            path: path.into(),
            seed,
            min_samples,
            widths: [b.tt_bucket_width, b.conc_bucket_width, ctx_w.unwrap_or(1)],
            has_ctx: ctx_w.is_some(),
            alpha_kv: pack.alpha_kv.filter(|a| *a > 0.0),
            prefill,
            decode,
            notes,
            rng: SplitMix64::new(seed),
            warned: HashSet::new(),
            warn: None,
            said: Vec::new(),
        })
    }

    /// Loads `path` and builds the model.
    pub fn load(path: &Path, seed: u64, min_samples: usize) -> Result<Self, PackError> {
        Self::new(&StepCyclePack::load(path)?, path, seed, min_samples)
    }

    /// Also sends each warning to `sink` as it happens.
    pub fn with_warn_sink(mut self, sink: WarnSink) -> Self {
        self.warn = Some(sink);
        self
    }

    /// The bucket key of a batch: (tt, conc, ctx) bucket centres.
    fn key(&self, batch: &StepBatch<'_>) -> [u64; 3] {
        let conc = batch.requests.len().max(1) as u64;
        let context = batch.context_tokens();
        let ctx = if self.has_ctx {
            bucket_key(context as u64, self.widths[2])
        } else {
            0
        };
        let tt = match self.alpha_kv {
            Some(a) => (batch.total_tokens as f64 + a * context as f64).floor() as u64,
            None => batch.total_tokens as u64,
        };
        [
            bucket_key(tt, self.widths[0]),
            bucket_key(conc, self.widths[1]),
            ctx,
        ]
    }
}

/// Whether a step carries prompt tokens (a prefill or a prefill chunk).
fn has_prefill(batch: &StepBatch<'_>) -> bool {
    batch
        .requests
        .iter()
        .any(|r| r.num_computed_before < r.num_prompt_tokens)
}

impl LatencyModel for StepCycleLatency {
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos {
        let key = self.key(batch);
        let (table, name) = match (&mut self.decode, has_prefill(batch)) {
            (Some((t, n)), false) => (t, *n),
            _ => (&mut self.prefill.0, self.prefill.1),
        };
        let oor = table.out_of_range(key);
        for (axis, dir) in oor.iter().enumerate().filter(|(_, d)| **d != 0) {
            if self.warned.insert((name, axis, *dir)) {
                let (lo, hi) = table.range()[axis];
                let slope = table.slopes()[axis];
                let msg = format!(
                    "step-cycle {}: a step with {} bucket {} is {} the table {name} ({lo}..={hi}); \
                     drawing from the nearest cells shifted along the table's linear trend \
                     ({slope:.3} µs per {}), floored at its smallest sample (warned once)",
                    self.path.display(),
                    AXES[axis],
                    key[axis],
                    if *dir > 0 { "above" } else { "below" },
                    AXES[axis],
                );
                if let Some(sink) = self.warn.as_mut() {
                    sink(&msg);
                }
                self.said.push(msg);
            }
        }
        let us = table.draw(key, &mut self.rng);
        Nanos((us * 1000.0).round() as u64)
    }

    fn warnings(&self) -> Vec<String> {
        self.said.clone()
    }

    fn describe(&self) -> String {
        let t = |(tb, n): &(Table, &str)| {
            let s = tb.slopes();
            format!(
                "{n}: {} cells, trend {:.3} µs/token {:.3} µs/request {:.5} µs/ctx token",
                tb.len(),
                s[0],
                s[1],
                s[2]
            )
        };
        let mut d = format!(
            "step-cycle: {} (seed {}, min_samples {}, buckets tt{} {} conc {}{}); {}",
            self.path.display(),
            self.seed,
            self.min_samples,
            match self.alpha_kv {
                Some(a) => format!("_eff (tt + {a} × ctx)"),
                None => String::new(),
            },
            self.widths[0],
            self.widths[1],
            if self.has_ctx {
                format!(" ctx {}", self.widths[2])
            } else {
                String::new()
            },
            t(&self.prefill)
        );
        if let Some(dt) = &self.decode {
            d.push_str("; ");
            d.push_str(&t(dt));
        }
        for n in &self.notes {
            d.push_str("; ");
            d.push_str(n);
        }
        d
    }
}
