//! `llm-emu sweep`: many `simulate` runs over a grid or list of settings, in parallel on the
//! local cores, each point deterministic (its seed is its own `seed` setting, default 0, never
//! the run order); one table, a throughput–latency curve per configuration and each
//! configuration's saturation rate. `--shard i/n` splits a sweep over machines and
//! `sweep merge` joins the parts (docs/sweep.md).

mod exact_json;
pub(crate) mod grid;
mod output;
pub(crate) mod pool;
pub(crate) mod slo;
pub(crate) mod yaml;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use grid::{Point, Setting, Sweep, CONCURRENCY, RATE};
use output::Results;
use serde_json::{json, Map, Value};
use slo::Slo;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// Grid file (JSON or YAML): `base` (settings every point shares), `grid` (each `simulate`
    /// flag by its long name with a list of values; every combination runs) and optionally
    /// `rates` (request rates, crossed with every combination).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "list",
        required_unless_present = "list"
    )]
    grid: Option<PathBuf>,
    /// List file (JSON or YAML): `base`, `points` (a list of flag: value objects) and
    /// optionally `rates` (crossed with every point).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// Where the table, curves and saturation files go.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Points run at once, each on one thread [default: the number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard I of N (0-based I): every N-th point from point I, or with
    /// `--find-saturation` every N-th configuration (its search needs all its rates).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// TTFT objective, `STAT:MS` with STAT mean, median, p90 or p99 (e.g. `p99:500`).
    #[arg(long, value_name = "STAT:MS")]
    slo_ttft_ms: Option<String>,
    /// TPOT objective, `STAT:MS` (e.g. `p99:50`).
    #[arg(long, value_name = "STAT:MS")]
    slo_tpot_ms: Option<String>,
    /// Inter-token latency objective, `STAT:MS`.
    #[arg(long, value_name = "STAT:MS")]
    slo_itl_ms: Option<String>,
    /// End-to-end latency objective, `STAT:MS`.
    #[arg(long, value_name = "STAT:MS")]
    slo_e2el_ms: Option<String>,
    /// Narrow each configuration's saturation rate by bisection between the highest grid rate
    /// that meets the objectives and the lowest that does not.
    #[arg(long)]
    find_saturation: bool,
    /// Bisection steps per configuration (each halves the interval; one run each).
    #[arg(long, default_value_t = 6)]
    bisect_steps: u32,
    /// No per-point progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Merge shard outputs (`--shard i/n` runs) into the table the whole sweep would write.
    Merge {
        /// The shards' output directories (or their `sweep.json`).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where the merged table, curves and saturation files go.
        #[arg(long, value_name = "DIR")]
        output_dir: PathBuf,
    },
}

pub fn run(a: SweepArgs) -> Result<()> {
    if let Some(SweepCommand::Merge { inputs, output_dir }) = &a.command {
        let res = output::merge(inputs)?;
        output::write(output_dir, &res)?;
        summarize(&res, output_dir);
        return Ok(());
    }
    let (path, list) = match (&a.grid, &a.list) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => bail!("give --grid FILE or --list FILE"),
    };
    let output_dir = a
        .output_dir
        .as_deref()
        .context("--output-dir DIR is needed")?;
    let mut slos = Vec::new();
    for (metric, spec) in [
        ("ttft", &a.slo_ttft_ms),
        ("tpot", &a.slo_tpot_ms),
        ("itl", &a.slo_itl_ms),
        ("e2el", &a.slo_e2el_ms),
    ] {
        if let Some(s) = spec {
            slos.push(Slo::parse(metric, s)?);
        }
    }
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let sweep = grid::load(path, list).with_context(|| format!("{}", path.display()))?;
    validate(&sweep)?;

    let mut meta = Map::new();
    meta.insert("format".into(), "llm-emu-sweep/1".into());
    meta.insert(
        "base".into(),
        Value::Object(sweep.base.iter().cloned().collect()),
    );
    meta.insert("axes".into(), json!(sweep.axes));
    meta.insert("points".into(), sweep.points.len().into());
    meta.insert("configs".into(), sweep.configs.into());
    meta.insert(
        "slos".into(),
        slos.iter()
            .map(|s| json!({"key": s.key, "limit_ms": s.limit_ms}))
            .collect::<Vec<_>>()
            .into(),
    );
    if sweep.curve != RATE {
        meta.insert("curve".into(), sweep.curve.into());
    }
    meta.insert("find_saturation".into(), a.find_saturation.into());
    meta.insert("bisect_steps".into(), a.bisect_steps.into());
    if let Some((i, n)) = shard.filter(|&(_, n)| n > 1) {
        meta.insert("shard".into(), format!("{i}/{n}").into());
    }

    let mine: Vec<&Point> = sweep
        .points
        .iter()
        .filter(|p| match shard {
            None => true,
            Some((i, n)) if a.find_saturation => p.config as u64 % n == i,
            Some((i, n)) => p.index as u64 % n == i,
        })
        .collect();
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = mine.len();
    let rows = pool::map(&mine, jobs, |p| {
        let row = run_row(&sweep.base, p, &slos);
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !a.quiet {
            eprintln!("sweep: {k}/{total} point {} done", p.index);
        }
        row
    });

    let mut probes = Vec::new();
    if a.find_saturation {
        let configs: Vec<usize> = {
            let mut c: Vec<usize> = mine.iter().map(|p| p.config).collect();
            c.dedup();
            c
        };
        let searched = pool::map(&configs, jobs, |&c| {
            bisect(&sweep, c, &rows, &slos, a.bisect_steps)
        });
        for s in searched {
            probes.extend(s);
        }
    }
    let res = Results { meta, rows, probes };
    output::write(output_dir, &res)?;
    if !a.quiet {
        eprintln!(
            "sweep: {total} point(s) and {} bisection run(s) in {:.1} s on {jobs} job(s)",
            res.probes.len(),
            started.elapsed().as_secs_f64()
        );
    }
    summarize(&res, output_dir);
    Ok(())
}

/// `I/N` with `0 <= I < N`.
pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64)> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard `{s}`: expected I/N with 0 <= I < N (e.g. 0/4)"),
    }
}

/// Checks every point before anything runs: its flags parse as `simulate`'s, its rate is
/// positive, and its engine and fleet resolve. A failure names the axis and value that cause
/// it (or the combination, when each value alone is fine).
fn validate(sweep: &Sweep) -> Result<()> {
    let mut checked: Vec<usize> = Vec::new();
    for p in &sweep.points {
        // Engines resolve once per configuration; every point's flags parse.
        let resolve = !checked.contains(&p.config);
        if let Err(e) = check(&sweep.base, &p.settings, resolve) {
            if let Err(be) = check(&sweep.base, &[], true) {
                bail!("the base settings: {be:#}");
            }
            for s in &p.settings {
                if let Err(se) = check(&sweep.base, std::slice::from_ref(s), true) {
                    bail!("axis `{}` value {}: {se:#}", s.0, s.1);
                }
            }
            bail!("point {} ({}): {e:#}", p.index, describe(&p.settings));
        }
        checked.push(p.config);
    }
    Ok(())
}

/// One point's flags checked as `simulate` would check them; `resolve` also resolves its
/// engines.
pub(crate) fn check(base: &[Setting], settings: &[Setting], resolve: bool) -> Result<()> {
    let args = grid::parse(base, settings)?;
    if let Some((_, v)) = settings.iter().find(|(k, _)| k == RATE) {
        match grid::rate_value(v) {
            Some(r) if r > 0.0 => {}
            _ => bail!("a request rate must be a positive number or inf"),
        }
    }
    if args.max_concurrency == Some(0) {
        bail!("a concurrency cap must be at least 1");
    }
    if resolve {
        crate::fleet_build::prepare_fleet(&args.engine, &args.fleet, None)?;
    }
    Ok(())
}

fn describe(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one point and makes its row: index, configuration, settings, the summary's scalar
/// keys, the waiting-queue samples and whether it grew without bound (a run that fails is a
/// row with its `error`).
fn run_row(base: &[Setting], p: &Point, slos: &[Slo]) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("point".into(), p.index.into());
    row.insert("config".into(), p.config.into());
    for (k, v) in &p.settings {
        row.insert(k.clone(), v.clone());
    }
    fill_row(&mut row, base, &p.settings, slos);
    row
}

fn fill_row(row: &mut Map<String, Value>, base: &[Setting], settings: &[Setting], slos: &[Slo]) {
    fill_row_with(row, base, settings, slos, &|_, _| {});
}

/// Adds keys to a row from its run's per-request records.
pub(crate) type RecordsHook<'a> =
    &'a dyn Fn(&[llm_emu_sim::RequestRecord], &mut Map<String, Value>);

/// [`fill_row`], with `extra` adding keys computed from the run's per-request records before
/// the objectives are judged.
pub(crate) fn fill_row_with(
    row: &mut Map<String, Value>,
    base: &[Setting],
    settings: &[Setting],
    slos: &[Slo],
    extra: RecordsHook<'_>,
) {
    let run = grid::parse(base, settings).and_then(|a| crate::simulate::run_point(&a, true));
    match run {
        Ok(point) => {
            for (k, v) in point.summary {
                if !(v.is_object() || v.is_array()) {
                    row.insert(k, v);
                }
            }
            let records = point.records.unwrap_or_default();
            let samples = slo::waiting_samples(&records);
            row.insert(
                "queue_waiting_samples".into(),
                samples
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(";")
                    .into(),
            );
            row.insert(
                "queue_unbounded".into(),
                slo::unbounded(&samples, records.len()).into(),
            );
            extra(&records, row);
        }
        Err(e) => {
            row.insert("completed".into(), 0.into());
            row.insert("error".into(), format!("{e:#}").into());
        }
    }
    if !slos.is_empty() {
        row.insert("slo_met".into(), slo::judge(row, slos).ok.into());
    }
}

/// Bisects configuration `c`'s saturation rate between its highest grid rate meeting the
/// objectives (or 0) and its lowest failing one, `steps` runs; the probes in search order.
fn bisect(
    sweep: &Sweep,
    c: usize,
    rows: &[Map<String, Value>],
    slos: &[Slo],
    steps: u32,
) -> Vec<Map<String, Value>> {
    let curve = sweep.curve;
    let mut pts: Vec<(&Point, &Map<String, Value>)> = sweep
        .points
        .iter()
        .filter(|p| p.config == c)
        .filter_map(|p| {
            rows.iter()
                .find(|r| r.get("point").and_then(Value::as_u64) == Some(p.index as u64))
                .map(|r| (p, r))
        })
        .filter(|(p, _)| p.value(curve).is_some())
        .collect();
    pts.sort_by(|a, b| {
        a.0.value(curve)
            .unwrap_or(0.0)
            .total_cmp(&b.0.value(curve).unwrap_or(0.0))
    });
    let (mut lo, mut hi) = (0.0, None);
    for (p, r) in &pts {
        if slo::judge(r, slos).ok {
            lo = p.value(curve).unwrap_or(0.0);
        } else {
            hi = p.value(curve);
            break;
        }
    }
    let Some(mut hi) = hi.filter(|h| h.is_finite()) else {
        return Vec::new();
    };
    let Some((first, _)) = pts.first() else {
        return Vec::new();
    };
    let config_settings: Vec<Setting> = first
        .settings
        .iter()
        .filter(|(k, _)| k != curve)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for step in 0..steps {
        // Concurrency caps are whole requests: the search ends when no count lies between.
        let value = if curve == CONCURRENCY {
            let mid = ((lo + hi) / 2.0).floor();
            if mid <= lo {
                break;
            }
            Value::from(mid as u64)
        } else {
            match serde_json::Number::from_f64((lo + hi) / 2.0) {
                Some(n) => Value::Number(n),
                None => break,
            }
        };
        let mid = grid::rate_value(&value).unwrap_or(lo);
        let mut settings = config_settings.clone();
        settings.push((curve.into(), value));
        let mut row = Map::new();
        row.insert("config".into(), c.into());
        row.insert("step".into(), step.into());
        for (k, v) in &settings {
            row.insert(k.clone(), v.clone());
        }
        fill_row(&mut row, &sweep.base, &settings, slos);
        if slo::judge(&row, slos).ok {
            lo = mid;
        } else {
            hi = mid;
        }
        out.push(row);
    }
    out
}

/// Says on stdout where the results are, each configuration's saturation, and, when no point
/// meets the objectives, which came closest.
fn summarize(res: &Results, dir: &Path) {
    println!(
        "{} point(s) → {}",
        res.rows.len(),
        dir.join("sweep.csv").display()
    );
    let slos = output::slos(&res.meta);
    for s in output::saturation(&res.meta, &res.rows, &res.probes) {
        let settings = s
            .get("settings")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let note = s.get("note").and_then(Value::as_str).unwrap_or("");
        let c = s.get("config").and_then(Value::as_u64).unwrap_or(0);
        println!("config {c} [{settings}]: {note}");
        let word = output::curve_word(output::curve(&res.meta));
        let unbounded = format!("unbounded_queue_from_{word}");
        if let Some(u) = s.get(&unbounded).and_then(Value::as_f64) {
            println!("  waiting queue grows without bound from {word} {u}");
        }
    }
    let met = res
        .rows
        .iter()
        .chain(&res.probes)
        .any(|r| slo::judge(r, &slos).ok);
    if !slos.is_empty() && !met && !res.rows.is_empty() {
        if let Some((point, ratio, reason)) = output::closest(&res.rows, &slos) {
            let settings = res
                .rows
                .iter()
                .find(|r| r.get("point").and_then(Value::as_u64) == Some(point as u64))
                .map(|r| {
                    output::axes(&res.meta)
                        .iter()
                        .filter_map(|a| r.get(a).map(|v| format!("{a}={v}")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "no point meets the objectives; the closest is point {point} [{settings}] \
                 at {ratio:.2}x the bound ({reason})"
            );
        }
    }
}
