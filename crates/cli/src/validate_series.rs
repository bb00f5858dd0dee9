//! `validate --real RUN`: the run's `timeseries.csv` (the engine's running and waiting
//! requests, token throughput and KV cache usage per tick) against the emulated run's, bucketed
//! by the same rule ([`llm_emu_sim::timeseries`]). Means are each series' own over its ticks;
//! the mean absolute difference is tick by tick, also given as a share of the real mean.
//!
//! The series is a second look at a run whose requests are compared anyway: a file or a
//! `meta.json` fact that does not fit the run (ticks outside 1 ms – 1 h, rows off the tick
//! grid, a series far longer than the run's requests, a `started_at` after the first request or
//! long before it) is said in one line and the series left out, never compared on a guess.

use llm_emu_core::Nanos;
use llm_emu_sim::timeseries::{compare, tick_origin, RealSeries, TickSeries, COLUMNS};
use llm_emu_sim::validate::{err_pct, RealRun};
use llm_emu_sim::RequestRecord;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Tick widths a runner can have meant, s.
const TICK_RANGE_S: std::ops::RangeInclusive<f64> = 0.001..=3600.0;

/// How long after `started_at` the first request may arrive, s: the runner stamps it right
/// before it submits (65–90 ms on the published runs).
const FIRST_REQUEST_WITHIN_S: f64 = 60.0;

/// Ticks a series may run past the run's requests (the runner's shutdown, idle ticks).
const SPAN_MARGIN_TICKS: f64 = 60.0;

/// The run's series, when it recorded one and it fits the run, with where it was read from and
/// its tick width; otherwise `Err` with why it is not compared (`Ok(None)`: no file).
pub fn load(real: &RealRun) -> Result<Option<(PathBuf, RealSeries, f64)>, String> {
    let Some(path) = real
        .record
        .meta_path
        .parent()
        .map(|d| d.join("timeseries.csv"))
    else {
        return Ok(None);
    };
    if !path.is_file() {
        return Ok(None);
    }
    let series = RealSeries::load(&path).map_err(|e| e.to_string())?;
    let tick_s = match real.record.tick_seconds {
        None => {
            eprintln!(
                "note: meta.json records no `tick_seconds`: {} read as 1 s ticks, the runner's \
                 default",
                path.display()
            );
            1.0
        }
        Some(t) if TICK_RANGE_S.contains(&t) => t,
        Some(t) => {
            return Err(format!(
                "meta.json's `tick_seconds` {t} is not a tick of 1 ms to 1 h"
            ))
        }
    };
    if let Some(r) = series
        .rows
        .iter()
        .find(|r| ((r.t / tick_s) - (r.t / tick_s).round()).abs() > 1e-3)
    {
        return Err(format!(
            "{}: a row at t = {} does not end a tick of {tick_s} s",
            path.display(),
            r.t
        ));
    }
    let (first, last) = real
        .requests
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), r| {
            (a.min(r.queued_ts), b.max(r.last_token_ts))
        });
    let run_ticks = if first.is_finite() {
        ((last - first) / tick_s).max(0.0)
    } else {
        0.0
    };
    let series_end = series.rows.last().map_or(0.0, |r| r.t / tick_s);
    if series_end > run_ticks + SPAN_MARGIN_TICKS + FIRST_REQUEST_WITHIN_S / tick_s {
        let end_s = series_end * tick_s;
        let shown = if end_s < 1e7 {
            format!("{end_s:.0}")
        } else {
            format!("{end_s:.3e}")
        };
        return Err(format!(
            "{}: its last tick ends {shown} s in, where the run's requests span {:.0} s",
            path.display(),
            run_ticks * tick_s
        ));
    }
    Ok(Some((path, series, tick_s)))
}

/// `started_at` as seconds since the epoch: RFC 3339, or without an offset (then UTC, as the
/// runner writes `datetime.utcnow()`).
fn epoch_s(started_at: &str) -> Option<f64> {
    let utc = chrono::DateTime::parse_from_rfc3339(started_at)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(started_at, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc())
        })
        .ok()?;
    Some(utc.timestamp_micros() as f64 / 1e6)
}

/// Compares the emulated ticks with the run's; prints the table and returns its JSON.
pub fn report(
    real: &RealRun,
    (path, series, tick_s): &(PathBuf, RealSeries, f64),
    ticks: &TickSeries,
    records: &[RequestRecord],
) -> Value {
    let tick_s = *tick_s;
    // The ticks count from the stat logger's start, which the runner stamps as `started_at`;
    // the run's first request arrived that long after it.
    let first_real = real
        .requests
        .iter()
        .filter_map(|r| r.arrival_time)
        .fold(f64::INFINITY, f64::min);
    let started = real.record.started_at.as_deref().and_then(epoch_s);
    let offset_s = match started {
        Some(s) if first_real.is_finite() => {
            let off = first_real - s;
            if (0.0..=FIRST_REQUEST_WITHIN_S).contains(&off) {
                Some(off)
            } else {
                eprintln!(
                    "note: the run's first request arrived {off:.3} s after meta.json's \
                     `started_at`, not within the {FIRST_REQUEST_WITHIN_S} s the runner takes: \
                     the emulated ticks count from the first request"
                );
                None
            }
        }
        _ => {
            eprintln!(
                "note: meta.json's `started_at` or requests.jsonl's `arrival_time` is missing or \
                 unreadable: the emulated ticks count from the first request"
            );
            None
        }
    };
    let first_sim = records
        .iter()
        .map(|r| r.arrival_s)
        .fold(f64::INFINITY, f64::min);
    let first_sim = if first_sim.is_finite() {
        first_sim
    } else {
        0.0
    };
    let origin = tick_origin(Nanos::from_secs_f64(first_sim), offset_s.unwrap_or(0.0));
    let rows = ticks.rows(tick_s, origin);
    let (cols, n_real, n_sim) = compare(series, &rows, tick_s);

    println!(
        "\ntime series ({}: {n_real} ticks of {tick_s} s real, {n_sim} emulated; {}{}):",
        path.display(),
        match offset_s {
            Some(o) => format!("the first request {o:.3} s into the first tick"),
            None => "ticks from the first request".to_string(),
        },
        if series.kv_recorded {
            ""
        } else {
            "; kv_cache_pct is 0 in every row: not recorded, not compared"
        }
    );
    println!(
        "{:<24}{:>12}{:>12}{:>10}{:>12}{:>12}{:>14}{:>9}",
        "per tick",
        "real mean",
        "emulated",
        "error",
        "real peak",
        "emul. peak",
        "mean |diff|",
        "of mean"
    );
    let mut json = Map::new();
    json.insert("path".into(), path.display().to_string().into());
    json.insert("tick_s".into(), tick_s.into());
    json.insert("ticks_real".into(), (n_real as u64).into());
    json.insert("ticks_sim".into(), (n_sim as u64).into());
    json.insert(
        "first_request_after_start_s".into(),
        offset_s.map_or(Value::Null, Value::from),
    );
    for c in &cols {
        let label = COLUMNS
            .iter()
            .find(|(k, _)| *k == c.column)
            .map_or(c.column, |(_, l)| *l);
        let err = err_pct(c.real_mean, c.sim_mean);
        // The tick-by-tick difference relative to the real level.
        let diff_pct = err_pct(c.real_mean, c.real_mean + c.mean_abs_diff);
        println!(
            "{label:<24}{:>12.2}{:>12.2}{err:>+9.2}%{:>12.2}{:>12.2}{:>14.2}{diff_pct:>8.1}%",
            c.real_mean, c.sim_mean, c.real_peak, c.sim_peak, c.mean_abs_diff
        );
        let mut m = Map::new();
        m.insert("real_mean".into(), c.real_mean.into());
        m.insert("sim_mean".into(), c.sim_mean.into());
        m.insert("mean_err_pct".into(), err.into());
        m.insert("real_peak".into(), c.real_peak.into());
        m.insert("sim_peak".into(), c.sim_peak.into());
        m.insert("mean_abs_diff".into(), c.mean_abs_diff.into());
        m.insert("mean_abs_diff_pct_of_mean".into(), diff_pct.into());
        json.insert(c.column.into(), m.into());
    }
    Value::Object(json)
}
