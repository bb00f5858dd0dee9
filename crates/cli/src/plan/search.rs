//! The search for the cheapest fleet.
//!
//! 1. Every *unit* (GPU × TP × `max_num_seqs` × `max_num_batched_tokens`: one engine) is run
//!    alone at the target rate; when it fails, its saturation rate (the highest rate at which
//!    one engine meets the objectives) is bisected between 0 and the target.
//! 2. Each unit and scale-out (replicas behind the router, or data-parallel ranks) gets an
//!    estimate, `n = ceil(target / saturation)` engines, and an optimistic size, one less than
//!    `ceil(target / lowest failing rate)`: a fleet whose engines each see more on average
//!    than a rate a lone engine fails at is taken to fail too, but for one engine of slack.
//! 3. Candidates run in order of optimistic cost, in waves of [`WAVE`]: each one's smallest
//!    meeting size is found by running the whole fleet at the target rate (down from the
//!    estimate while it passes, up by doubling while it fails, then bisection, assuming more
//!    engines never hurt). A candidate whose optimistic cost exceeds the `top`-th cheapest
//!    fleet found is not run.
//!
//! Every run is one `simulate` point, deterministic from its settings and cached by them; the
//! waves are of fixed size, so the same plan runs the same points whatever `--jobs`.

use super::objectives::Objectives;
use crate::sweep::grid::{Setting, RATE};
use crate::sweep::{pool, slo::Verdict};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Candidates run together; fixed so that the points run never depend on `--jobs`.
pub const WAVE: usize = 8;

/// One engine's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The GPU's canonical name.
    pub gpu: String,
    pub tp: u64,
    pub max_num_seqs: Option<u64>,
    pub max_num_batched_tokens: Option<u64>,
}

impl Unit {
    pub fn settings(&self) -> Vec<Setting> {
        let mut s: Vec<Setting> = vec![
            ("gpu".into(), self.gpu.clone().into()),
            ("tensor-parallel-size".into(), self.tp.into()),
        ];
        if let Some(m) = self.max_num_seqs {
            s.push(("max-num-seqs".into(), m.into()));
        }
        if let Some(m) = self.max_num_batched_tokens {
            s.push(("max-num-batched-tokens".into(), m.into()));
        }
        s
    }

    pub fn describe(&self) -> String {
        let mut d = format!("{} tp={}", self.gpu, self.tp);
        if let Some(m) = self.max_num_seqs {
            d.push_str(&format!(" max-num-seqs={m}"));
        }
        if let Some(m) = self.max_num_batched_tokens {
            d.push_str(&format!(" max-num-batched-tokens={m}"));
        }
        d
    }
}

/// How a fleet grows past one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScaleOut {
    /// Independent servers behind `--router` (`--replicas N`).
    Replicas,
    /// Data-parallel ranks of one server (`--data-parallel-size N`).
    DataParallel,
}

impl ScaleOut {
    pub fn parse(s: &str) -> Option<ScaleOut> {
        match s.trim() {
            "replicas" => Some(ScaleOut::Replicas),
            "data-parallel" | "dp" => Some(ScaleOut::DataParallel),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScaleOut::Replicas => "replicas",
            ScaleOut::DataParallel => "data-parallel",
        }
    }

    /// The fleet flags for `n` engines (none for one: a single engine either way).
    pub fn settings(self, n: u64, router: &str) -> Vec<Setting> {
        match (self, n) {
            (_, 1) => Vec::new(),
            (ScaleOut::Replicas, n) => vec![
                ("replicas".into(), n.into()),
                ("router".into(), router.into()),
            ],
            (ScaleOut::DataParallel, n) => vec![("data-parallel-size".into(), n.into())],
        }
    }
}

/// What the search needs besides the units.
pub struct Space<'a> {
    /// Workload and engine settings every run shares.
    pub base: &'a [Setting],
    /// The target rate, requests/s, when the workload is synthetic (a file's own arrivals are
    /// the load otherwise).
    pub rate: Option<f64>,
    pub objectives: &'a Objectives,
    pub router: &'a str,
    pub scale_outs: &'a [ScaleOut],
    pub max_gpus: u64,
    pub bisect_steps: u32,
    pub top: usize,
    pub jobs: usize,
}

/// One run: its settings (beyond the base), its summary row and verdict.
#[derive(Clone, Debug)]
pub struct Run {
    pub settings: Vec<Setting>,
    pub row: Map<String, Value>,
    pub verdict: Verdict,
}

/// A unit's first stage: alone at the target, and its saturation rate.
#[derive(Clone, Debug)]
pub struct UnitResult {
    pub unit: Unit,
    /// Why the unit cannot be used at all (its engine does not resolve or run).
    pub error: Option<String>,
    /// The highest rate one engine met the objectives at (the target when it meets it).
    pub saturation_rate: Option<f64>,
    /// The lowest rate one engine failed at.
    pub failing_rate: Option<f64>,
    /// Engines estimated to be needed.
    pub estimate: u64,
    /// Fewest engines the search will consider.
    pub optimistic: u64,
}

/// A fleet the search ran to the end: the smallest size of a unit and scale-out that meets
/// the objectives, with its run at that size.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub unit: Unit,
    pub scale_out: ScaleOut,
    pub engines: u64,
    pub gpus: u64,
    pub cost_per_hour: f64,
    pub run: Run,
}

/// A candidate that was not run to the end, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub unit: Unit,
    pub scale_out: ScaleOut,
    pub reason: String,
}

/// What the search found.
pub struct Outcome {
    pub units: Vec<UnitResult>,
    /// Fleets meeting the objectives, cheapest first.
    pub fleets: Vec<Fleet>,
    pub skipped: Vec<Skipped>,
    /// Every run, in the order of their settings' key (for the closest miss and the count).
    pub runs: Vec<Run>,
}

/// Runs once per distinct settings: simulation is deterministic, so a repeat is the same run.
struct Runner<'a> {
    space: &'a Space<'a>,
    cache: Mutex<BTreeMap<String, Run>>,
}

impl Runner<'_> {
    fn run(&self, settings: Vec<Setting>) -> Run {
        let key = settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(r) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return r;
        }
        let o = self.space.objectives;
        let mut row = Map::new();
        crate::sweep::fill_row_with(
            &mut row,
            self.space.base,
            &settings,
            &o.slos,
            &|records, row| o.add_goodput(records, row),
        );
        let verdict = o.judge(&row);
        let run = Run {
            settings,
            row,
            verdict,
        };
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, run.clone());
        }
        run
    }

    /// `unit` alone, at `rate` (the workload's own arrivals when `None`).
    fn alone(&self, unit: &Unit, rate: Option<f64>) -> Run {
        let mut s = unit.settings();
        if let Some(r) = rate {
            s.push((RATE.into(), rate_value(r)));
        }
        self.run(s)
    }

    /// `n` engines of `unit` grown by `scale`, at the target.
    fn fleet(&self, unit: &Unit, scale: ScaleOut, n: u64) -> Run {
        let mut s = unit.settings();
        s.extend(scale.settings(n, self.space.router));
        if let Some(r) = self.space.rate {
            s.push((RATE.into(), rate_value(r)));
        }
        self.run(s)
    }
}

fn rate_value(r: f64) -> Value {
    serde_json::Number::from_f64(r)
        .map(Value::Number)
        .unwrap_or_else(|| Value::from("inf"))
}

/// Stage 1 for one unit.
fn saturate(runner: &Runner<'_>, unit: &Unit) -> UnitResult {
    let space = runner.space;
    let mut res = UnitResult {
        unit: unit.clone(),
        error: None,
        saturation_rate: None,
        failing_rate: None,
        estimate: 1,
        optimistic: 1,
    };
    let first = runner.alone(unit, space.rate);
    if let Some(e) = first.row.get("error").and_then(Value::as_str) {
        res.error = Some(e.to_string());
        return res;
    }
    let Some(target) = space.rate else {
        // A file's arrivals cannot be scaled: the fleet search starts from one engine.
        return res;
    };
    if first.verdict.ok {
        res.saturation_rate = Some(target);
        return res;
    }
    let (mut lo, mut hi) = (0.0f64, target);
    for _ in 0..space.bisect_steps {
        let mid = (lo + hi) / 2.0;
        if runner.alone(unit, Some(mid)).verdict.ok {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    res.failing_rate = Some(hi);
    let cap = (space.max_gpus / unit.tp.max(1)).max(1);
    res.optimistic = ((target / hi).ceil() as u64)
        .saturating_sub(1)
        .clamp(1, cap);
    if lo > 0.0 {
        res.saturation_rate = Some(lo);
        res.estimate = ((target / lo).ceil() as u64).clamp(1, cap);
    } else {
        // Even the lowest rate probed fails alone: more engines may still help (they split
        // the load), so the fleet search starts at the most the GPU budget allows.
        res.estimate = cap;
    }
    res.estimate = res.estimate.max(res.optimistic);
    res
}

/// What stage 3 finds for one candidate.
enum Sizing {
    /// The smallest size that meets the objectives, and its run.
    Met(u64, Run),
    /// No size up to the cap does; the largest size's run.
    Missed(Run),
}

/// Stage 3 for one candidate: the smallest size in `1..=cap` that meets the objectives,
/// searched from `start`.
fn smallest(runner: &Runner<'_>, unit: &Unit, scale: ScaleOut, start: u64, cap: u64) -> Sizing {
    let ok = |n: u64| {
        let r = runner.fleet(unit, scale, n);
        (r.verdict.ok, r)
    };
    let start = start.clamp(1, cap);
    let (start_ok, start_run) = ok(start);
    // `lo` fails (0: none), `hi` passes.
    let (mut lo, mut hi, mut best) = if start_ok {
        if start == 1 {
            return Sizing::Met(1, start_run);
        }
        let (below_ok, below) = ok(start - 1);
        if !below_ok {
            return Sizing::Met(start, start_run);
        }
        (0, start - 1, below)
    } else {
        let mut lo = start;
        let mut step = 1;
        let mut last = start_run;
        loop {
            if lo >= cap {
                return Sizing::Missed(last);
            }
            let n = (start + step).min(cap);
            let (pass, r) = ok(n);
            if pass {
                break (lo, n, r);
            }
            lo = n;
            last = r;
            step *= 2;
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let (pass, r) = ok(mid);
        if pass {
            hi = mid;
            best = r;
        } else {
            lo = mid;
        }
    }
    Sizing::Met(hi, best)
}

/// Runs the search over `units`; `price(gpu)` is dollars per GPU-hour.
pub fn search(space: &Space<'_>, units: &[Unit], price: &dyn Fn(&str) -> f64) -> Outcome {
    let runner = Runner {
        space,
        cache: Mutex::new(BTreeMap::new()),
    };
    let unit_results = pool::map(units, space.jobs, |u| saturate(&runner, u));

    struct Cand {
        unit: Unit,
        scale: ScaleOut,
        start: u64,
        optimistic_cost: f64,
        cap: u64,
    }
    let mut cands = Vec::new();
    for u in unit_results.iter().filter(|u| u.error.is_none()) {
        let per_engine = u.unit.tp as f64 * price(&u.unit.gpu);
        let cap = space.max_gpus / u.unit.tp.max(1);
        for &scale in space.scale_outs {
            cands.push(Cand {
                unit: u.unit.clone(),
                scale,
                start: u.estimate,
                optimistic_cost: u.optimistic as f64 * per_engine,
                cap,
            });
        }
    }
    // Cheapest first; ties in the order the space lists them.
    cands.sort_by(|a, b| a.optimistic_cost.total_cmp(&b.optimistic_cost));

    let mut fleets: Vec<Fleet> = Vec::new();
    let mut skipped = Vec::new();
    let top = space.top.max(1);
    let mut rest = cands.into_iter().peekable();
    while rest.peek().is_some() {
        let bound = if fleets.len() >= top {
            fleets[top - 1].cost_per_hour
        } else {
            f64::INFINITY
        };
        let mut wave = Vec::new();
        while wave.len() < WAVE {
            let Some(c) = rest.next() else { break };
            if c.cap == 0 {
                skipped.push(Skipped {
                    reason: format!(
                        "one engine needs {} GPUs, more than --max-gpus {}",
                        c.unit.tp, space.max_gpus
                    ),
                    unit: c.unit,
                    scale_out: c.scale,
                });
            } else if c.optimistic_cost > bound {
                skipped.push(Skipped {
                    unit: c.unit,
                    scale_out: c.scale,
                    reason: format!(
                        "at least ${:.2}/h, above the {top} cheapest found",
                        c.optimistic_cost
                    ),
                });
            } else {
                wave.push(c);
            }
        }
        let found = pool::map(&wave, space.jobs, |c| {
            smallest(&runner, &c.unit, c.scale, c.start, c.cap)
        });
        for (c, f) in wave.into_iter().zip(found) {
            match f {
                // One engine is the same fleet whatever the scale-out: listed once.
                Sizing::Met(1, _) if fleets.iter().any(|f| f.unit == c.unit && f.engines == 1) => {}
                Sizing::Met(n, run) => {
                    let gpus = n * c.unit.tp;
                    fleets.push(Fleet {
                        cost_per_hour: gpus as f64 * price(&c.unit.gpu),
                        gpus,
                        engines: n,
                        scale_out: c.scale,
                        unit: c.unit,
                        run,
                    });
                }
                Sizing::Missed(run) => skipped.push(Skipped {
                    reason: format!(
                        "no size up to {} engines meets the objectives ({} at the largest)",
                        c.cap, run.verdict.reason
                    ),
                    unit: c.unit,
                    scale_out: c.scale,
                }),
            }
        }
        fleets.sort_by(|a, b| {
            a.cost_per_hour
                .total_cmp(&b.cost_per_hour)
                .then(a.gpus.cmp(&b.gpus))
                .then(
                    a.run
                        .verdict
                        .worst_ratio
                        .total_cmp(&b.run.verdict.worst_ratio),
                )
        });
    }
    let runs = runner
        .cache
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .collect();
    Outcome {
        units: unit_results,
        fleets,
        skipped,
        runs,
    }
}
