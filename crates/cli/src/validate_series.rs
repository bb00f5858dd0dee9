//! `validate --real RUN`: the run's `timeseries.csv` (the engine's running and waiting
//! requests, token throughput and KV cache usage per tick) against the emulated run's, bucketed
//! by the same rule ([`llm_emu_sim::timeseries`]).

use llm_emu_core::Nanos;
use llm_emu_sim::timeseries::{compare, tick_origin, RealSeries, TickSeries, COLUMNS};
use llm_emu_sim::validate::{err_pct, RealRun};
use llm_emu_sim::RequestRecord;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The run's series, when it recorded one, with where it was read from; a file that cannot be
/// read is said and not compared.
pub fn load(real: &RealRun) -> Option<(PathBuf, RealSeries)> {
    let path = real.record.meta_path.parent()?.join("timeseries.csv");
    if !path.is_file() {
        return None;
    }
    match RealSeries::load(&path) {
        Ok(s) => Some((path, s)),
        Err(e) => {
            eprintln!("warning: {e}: the time series is not compared");
            None
        }
    }
}

/// Compares the emulated ticks with the run's; prints the table and returns its JSON.
pub fn report(
    real: &RealRun,
    (path, series): &(PathBuf, RealSeries),
    ticks: &TickSeries,
    records: &[RequestRecord],
) -> Value {
    let tick_s = match real.record.tick_seconds {
        Some(t) => t,
        None => {
            eprintln!("note: meta.json records no `tick_seconds`: timeseries.csv read as 1 s ticks, the runner's default");
            1.0
        }
    };
    // The ticks count from the stat logger's start, which the runner stamps as `started_at`;
    // the run's first request arrived that long after it.
    let started = real.record.started_at.as_deref().and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_micros() as f64 / 1e6)
    });
    let first_real = real
        .requests
        .iter()
        .filter_map(|r| r.arrival_time)
        .fold(f64::INFINITY, f64::min);
    let offset_s = match started {
        Some(s) if first_real.is_finite() => first_real - s,
        _ => {
            eprintln!(
                "note: meta.json's `started_at` or requests.jsonl's `arrival_time` is missing or \
                 unreadable: the emulated ticks count from the first request"
            );
            0.0
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
    let origin = tick_origin(Nanos::from_secs_f64(first_sim), offset_s);
    let rows = ticks.rows(tick_s, origin);
    let (cols, n_real, n_sim) = compare(series, &rows, tick_s);

    println!(
        "\ntime series ({}: {n_real} ticks of {tick_s} s real, {n_sim} emulated; the first request \
         {offset_s:.3} s into the first tick{}):",
        path.display(),
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
    json.insert("ticks_real".into(), n_real.into());
    json.insert("ticks_sim".into(), n_sim.into());
    json.insert("first_request_after_start_s".into(), offset_s.into());
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
