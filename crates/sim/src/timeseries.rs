//! A run's per-tick series of the engine's state and throughput, and the same series of the
//! emulated run, for `validate` to compare.
//!
//! LLMServingSim's vLLM runner records `timeseries.csv` with a stat logger of its own
//! (`bench/core/stat_logger.py`, `BenchStatLogger`): vLLM calls it once per engine iteration
//! with the iteration's `SchedulerStats` and `IterationStats`; it keeps every call, stamped
//! with `time.monotonic()` since the logger was created, and writes one row per `tick_seconds`
//! bucket that has calls: the end of the bucket, prompt and generation tokens summed over the
//! bucket (and the data-parallel engines) over the tick, and running and waiting requests and
//! KV cache usage at each engine's latest call in the bucket (summed over engines; usage
//! averaged, in %). [`TickSeries`] buckets the emulator's iterations by that rule.
//!
//! The logger is created when the engine is, right before the runner stamps `started_at`, so a
//! tick's place in time is `started_at` + its end: [`tick_origin`] puts the emulated buckets on
//! the same grid. Runs recorded before the runner read `kv_cache_usage` correctly hold 0.0 in
//! every `kv_cache_pct` row: such a column counts as not recorded.

use llm_emu_core::{IterationStats, Nanos};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("{path}: {msg}")]
pub struct TimeseriesError {
    pub path: String,
    pub msg: String,
}

/// One tick: tokens/s over it, and the state at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TickRow {
    /// The end of the tick, s from the series' origin.
    pub t: f64,
    pub prompt_tps: f64,
    pub gen_tps: f64,
    pub running: f64,
    pub waiting: f64,
    /// KV cache usage, % (averaged over engines).
    pub kv_pct: f64,
}

/// The columns compared, as `timeseries.csv` names them, with what they hold.
pub const COLUMNS: [(&str, &str); 5] = [
    ("running", "requests running"),
    ("waiting", "requests waiting"),
    ("gen_throughput", "generation tokens/s"),
    ("prompt_throughput", "prompt tokens/s"),
    ("kv_cache_pct", "KV cache usage, %"),
];

impl TickRow {
    fn get(&self, column: &str) -> f64 {
        match column {
            "running" => self.running,
            "waiting" => self.waiting,
            "gen_throughput" => self.gen_tps,
            "prompt_throughput" => self.prompt_tps,
            _ => self.kv_pct,
        }
    }
}

/// A run's `timeseries.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct RealSeries {
    pub rows: Vec<TickRow>,
    /// Whether `kv_cache_pct` holds a value other than 0 (else it was not recorded).
    pub kv_recorded: bool,
}

impl RealSeries {
    /// Reads `timeseries.csv`: a header naming `t`, `prompt_throughput`, `gen_throughput`,
    /// `running`, `waiting` and `kv_cache_pct` (any order), then one row per tick.
    pub fn load(path: &Path) -> Result<RealSeries, TimeseriesError> {
        let bad = |msg: String| TimeseriesError {
            path: path.display().to_string(),
            msg,
        };
        let text = llm_emu_perf::text_file::read_text(path).map_err(|e| bad(e.to_string()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| bad("empty".into()))?;
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| {
            names.iter().position(|n| *n == name).ok_or_else(|| {
                let shown: String = header.chars().take(120).collect();
                let more = if shown.len() < header.len() {
                    "…"
                } else {
                    ""
                };
                bad(format!("no `{name}` column in the header `{shown}{more}`"))
            })
        };
        let idx = [
            col("t")?,
            col("prompt_throughput")?,
            col("gen_throughput")?,
            col("running")?,
            col("waiting")?,
            col("kv_cache_pct")?,
        ];
        let mut rows: Vec<TickRow> = Vec::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let mut v = [0.0f64; 6];
            for (slot, &c) in v.iter_mut().zip(&idx) {
                *slot = cells
                    .get(c)
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        bad(format!(
                            "line {}: `{}` is not a number ≥ 0",
                            i + 1,
                            names[c]
                        ))
                    })?;
            }
            let row = TickRow {
                t: v[0],
                prompt_tps: v[1],
                gen_tps: v[2],
                running: v[3],
                waiting: v[4],
                kv_pct: v[5],
            };
            if rows.last().is_some_and(|p| p.t >= row.t) {
                return Err(bad(format!("line {}: `t` does not increase", i + 1)));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(bad("no rows".into()));
        }
        let kv_recorded = rows.iter().any(|r| r.kv_pct > 0.0);
        Ok(RealSeries { rows, kv_recorded })
    }
}

/// The emulated buckets' origin: the run's first request arrived `first_arrival_after_start_s`
/// after `started_at` (its `arrival_time` less `started_at`, both wall clock), and the emulated
/// one arrives at `first_arrival`.
pub fn tick_origin(first_arrival: Nanos, first_arrival_after_start_s: f64) -> f64 {
    first_arrival.as_secs_f64() - first_arrival_after_start_s.max(0.0)
}

#[derive(Default)]
struct Bucket {
    prompt: u64,
    gen: u64,
    /// Per engine: its latest iteration's running, waiting and KV usage (0–1).
    latest: BTreeMap<usize, (usize, usize, f64)>,
}

/// One engine iteration as the stat logger sees it.
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: Nanos,
    engine: usize,
    prompt: u64,
    gen: u64,
    running: usize,
    waiting: usize,
    kv_usage: f64,
}

/// The emulated run's iterations, bucketed as the run's stat logger buckets vLLM's. They are
/// kept (a few dozen bytes each) until the origin is known: it depends on the emulated first
/// arrival ([`tick_origin`]).
#[derive(Default)]
pub struct TickSeries {
    samples: Vec<Sample>,
}

impl TickSeries {
    /// One engine iteration (a step's output processed, or a batch of aborts applied).
    pub fn on_iteration(&mut self, it: &IterationStats) {
        let s = &it.scheduler;
        self.samples.push(Sample {
            t: it.iteration_timestamp,
            engine: it.engine_index,
            prompt: it.num_prompt_tokens,
            gen: it.num_generation_tokens,
            running: s.num_running_reqs,
            waiting: s.num_waiting_reqs,
            kv_usage: s.kv_cache_usage,
        });
    }

    /// One row per `tick_s` bucket from `origin_s` (emulated time, s) with iterations, as
    /// `timeseries.csv` has them.
    pub fn rows(&self, tick_s: f64, origin_s: f64) -> Vec<TickRow> {
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        for s in &self.samples {
            let k = ((s.t.as_secs_f64() - origin_s) / tick_s).floor() as i64;
            let b = buckets.entry(k).or_default();
            b.prompt += s.prompt;
            b.gen += s.gen;
            // An engine's iterations come in time order: the last one seen is its latest.
            b.latest
                .insert(s.engine, (s.running, s.waiting, s.kv_usage));
        }
        buckets
            .iter()
            .map(|(&k, b)| {
                let engines = b.latest.len().max(1) as f64;
                TickRow {
                    t: (k as f64 + 1.0) * tick_s,
                    prompt_tps: b.prompt as f64 / tick_s,
                    gen_tps: b.gen as f64 / tick_s,
                    running: b.latest.values().map(|v| v.0).sum::<usize>() as f64,
                    waiting: b.latest.values().map(|v| v.1).sum::<usize>() as f64,
                    kv_pct: b.latest.values().map(|v| v.2).sum::<f64>() * 100.0 / engines,
                }
            })
            .collect()
    }
}

/// One column of both series: each one's mean over its own ticks (a throughput's mean is the
/// run's throughput), peaks, and the two compared tick by tick over the ticks either has (a
/// tick without a row counts as 0: no iteration in it, an idle engine).
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnComparison {
    pub column: &'static str,
    pub real_mean: f64,
    pub sim_mean: f64,
    pub real_peak: f64,
    pub sim_peak: f64,
    /// Mean over ticks of |emulated − real|.
    pub mean_abs_diff: f64,
}

/// Both series column by column (KV usage only where the run recorded it), with the number of
/// ticks each spans. Rows are matched by their tick (the one their `t` ends); nothing is laid
/// out per tick, so a series whose `t` runs far costs its rows, not its span.
pub fn compare(
    real: &RealSeries,
    sim: &[TickRow],
    tick_s: f64,
) -> (Vec<ColumnComparison>, f64, f64) {
    // Tick k, from 0, ends at (k + 1) · tick.
    let index = |t: f64| ((t / tick_s).round() - 1.0).max(0.0);
    let span = |rows: &[TickRow]| rows.last().map_or(0.0, |r| index(r.t) + 1.0);
    let (n_real, n_sim) = (span(&real.rows), span(sim));
    let n = n_real.max(n_sim);
    let by_tick = |rows: &[TickRow]| -> BTreeMap<u64, TickRow> {
        rows.iter().map(|r| (index(r.t) as u64, *r)).collect()
    };
    let (r, s) = (by_tick(&real.rows), by_tick(sim));
    let per = |sum: f64, ticks: f64| if ticks > 0.0 { sum / ticks } else { 0.0 };
    let out = COLUMNS
        .iter()
        .filter(|(c, _)| *c != "kv_cache_pct" || real.kv_recorded)
        .map(|&(column, _)| {
            let value =
                |m: &BTreeMap<u64, TickRow>, k: &u64| m.get(k).map_or(0.0, |x| x.get(column));
            let sum = |m: &BTreeMap<u64, TickRow>| m.values().map(|x| x.get(column)).sum::<f64>();
            let peak =
                |m: &BTreeMap<u64, TickRow>| m.values().map(|x| x.get(column)).fold(0.0, f64::max);
            let diff: f64 = r
                .keys()
                .chain(s.keys().filter(|k| !r.contains_key(k)))
                .map(|k| (value(&s, k) - value(&r, k)).abs())
                .sum();
            ColumnComparison {
                column,
                real_mean: per(sum(&r), n_real),
                sim_mean: per(sum(&s), n_sim),
                real_peak: peak(&r),
                sim_peak: peak(&s),
                mean_abs_diff: per(diff, n),
            }
        })
        .collect();
    (out, n_real, n_sim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_emu_core::SchedulerStats;

    fn it(
        ms: u64,
        engine: usize,
        prompt: u64,
        gen: u64,
        running: usize,
        waiting: usize,
    ) -> IterationStats {
        IterationStats {
            engine_index: engine,
            iteration_timestamp: Nanos::from_millis(ms),
            num_prompt_tokens: prompt,
            num_generation_tokens: gen,
            scheduler: SchedulerStats {
                num_running_reqs: running,
                num_waiting_reqs: waiting,
                kv_cache_usage: 0.25 * engine as f64,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Two data-parallel engines: tokens sum over the bucket and the engines; running and
    /// waiting are each engine's latest in the bucket, summed; usage is averaged. An empty
    /// tick has no row.
    #[test]
    fn iterations_are_bucketed_as_the_runs_stat_logger_does() {
        let mut s = TickSeries::default();
        s.on_iteration(&it(100, 0, 500, 3, 3, 2));
        s.on_iteration(&it(600, 1, 0, 4, 4, 0));
        s.on_iteration(&it(700, 0, 0, 5, 5, 1));
        s.on_iteration(&it(2900, 0, 0, 1, 1, 0));
        let rows = s.rows(1.0, -0.25);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            TickRow {
                t: 1.0,
                prompt_tps: 500.0,
                gen_tps: 12.0,
                running: 9.0,
                waiting: 1.0,
                kv_pct: 12.5,
            }
        );
        // 2.9 s is 3.15 s after the origin: the fourth tick.
        assert_eq!(rows[1].t, 4.0);
        assert_eq!((rows[1].gen_tps, rows[1].running), (1.0, 1.0));
    }

    #[test]
    fn the_origin_is_the_first_arrival_less_its_offset_from_started_at() {
        assert_eq!(tick_origin(Nanos::from_millis(500), 0.125), 0.375);
        assert_eq!(tick_origin(Nanos::ZERO, -3.0), 0.0);
    }

    #[test]
    fn series_are_compared_tick_by_tick_with_missing_ticks_idle() {
        let real = RealSeries {
            rows: vec![
                TickRow {
                    t: 1.0,
                    running: 4.0,
                    ..Default::default()
                },
                TickRow {
                    t: 3.0,
                    running: 2.0,
                    ..Default::default()
                },
            ],
            kv_recorded: false,
        };
        let sim = [
            TickRow {
                t: 1.0,
                running: 2.0,
                ..Default::default()
            },
            TickRow {
                t: 2.0,
                running: 2.0,
                ..Default::default()
            },
            TickRow {
                t: 4.0,
                running: 1.0,
                ..Default::default()
            },
        ];
        let (cols, n_real, n_sim) = compare(&real, &sim, 1.0);
        assert_eq!((n_real, n_sim), (3.0, 4.0));
        assert!(cols.iter().all(|c| c.column != "kv_cache_pct"));
        let running = &cols[0];
        assert_eq!(running.column, "running");
        // Real 4, 0, 2 (then idle); emulated 2, 2, 0, 1.
        assert_eq!((running.real_mean, running.sim_mean), (2.0, 1.25));
        assert_eq!((running.real_peak, running.sim_peak), (4.0, 2.0));
        assert_eq!(running.mean_abs_diff, (2.0 + 2.0 + 2.0 + 1.0) / 4.0);
    }

    /// A row far out in time costs its row, not its span.
    #[test]
    fn a_far_tick_is_compared_without_laying_out_its_span() {
        for far in [1e15, 1e300] {
            let real = RealSeries {
                rows: vec![
                    TickRow {
                        t: 1.0,
                        running: 2.0,
                        ..Default::default()
                    },
                    TickRow {
                        t: far,
                        running: 2.0,
                        ..Default::default()
                    },
                ],
                kv_recorded: false,
            };
            let (cols, n_real, n_sim) = compare(&real, &[], 1.0);
            assert_eq!((n_real, n_sim), (far, 0.0));
            assert_eq!(cols[0].real_peak, 2.0);
        }
    }

    #[test]
    fn a_csv_is_read_by_its_header_and_bad_cells_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("timeseries.csv");
        std::fs::write(
            &p,
            "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n\
             1.0,3392.0,2.0,5,2,13.22\n2.0,9045.0,79.0,16,0,39.7\n",
        )
        .unwrap();
        let s = RealSeries::load(&p).unwrap();
        assert!(s.kv_recorded);
        assert_eq!(s.rows[1].running, 16.0);
        assert_eq!(s.rows[0].kv_pct, 13.22);
        std::fs::write(&p, "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n1.0,1,1,1,1,0\n2.0,1,x,1,1,0\n").unwrap();
        let e = RealSeries::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 3: `gen_throughput` is not a number"),
            "{e}"
        );
        std::fs::write(&p, "t,running\n1.0,1\n").unwrap();
        let e = RealSeries::load(&p).unwrap_err().to_string();
        assert!(e.contains("no `prompt_throughput` column"), "{e}");
        std::fs::write(&p, "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n2.0,1,1,1,1,0\n1.0,1,1,1,1,0\n").unwrap();
        let e = RealSeries::load(&p).unwrap_err().to_string();
        assert!(e.contains("`t` does not increase"), "{e}");
    }
}
