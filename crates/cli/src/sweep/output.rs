//! The sweep's results on disk: `sweep.json` (meta, rows, saturation, bisection probes),
//! `sweep.csv` (one row per point), `saturation.csv` and `curves/config-NNN.csv` (one
//! throughput–latency curve per configuration). `merge` reads shards' `sweep.json` back and
//! writes the same files the unsharded sweep would.

use super::grid::{CONCURRENCY, RATE};
use super::slo::{judge, Slo};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The columns of a curve file, after the rate.
const CURVE_KEYS: &[&str] = &[
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "p99_e2el_ms",
    "num_preemptions",
    "queue_unbounded",
    "slo_met",
];

/// The axis the curves run over: `meta`'s `curve`, the rate when it names none.
pub fn curve(meta: &Map<String, Value>) -> &'static str {
    match meta.get("curve").and_then(Value::as_str) {
        Some(CONCURRENCY) => CONCURRENCY,
        _ => RATE,
    }
}

/// The word the saturation columns use for the curve's axis: `rate` or `concurrency`.
pub fn curve_word(curve: &str) -> &'static str {
    if curve == CONCURRENCY {
        "concurrency"
    } else {
        "rate"
    }
}

/// The results of a sweep or a shard of one.
pub struct Results {
    /// What the sweep was: base settings, axes, point and configuration counts, objectives,
    /// bisection settings and (for a shard) `shard`.
    pub meta: Map<String, Value>,
    /// One per point run, with `point`, `config`, the settings and the summary's scalars.
    pub rows: Vec<Map<String, Value>>,
    /// Bisection runs, in the order each configuration's search made them.
    pub probes: Vec<Map<String, Value>>,
}

/// The objectives `meta` records.
pub fn slos(meta: &Map<String, Value>) -> Vec<Slo> {
    meta.get("slos")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some(Slo {
                        key: s.get("key")?.as_str()?.to_string(),
                        limit_ms: s.get("limit_ms")?.as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn axes(meta: &Map<String, Value>) -> Vec<String> {
    meta.get("axes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn num(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(super::grid::rate_value)
}

fn index(m: &Map<String, Value>, k: &str) -> usize {
    m.get(k).and_then(Value::as_u64).unwrap_or(0) as usize
}

/// The table's columns: point, configuration, the axes, then every other key in name order.
pub fn columns(meta: &Map<String, Value>, rows: &[Map<String, Value>]) -> Vec<String> {
    let mut cols = vec!["point".to_string(), "config".to_string()];
    cols.extend(axes(meta));
    let mut rest: Vec<String> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| !cols.contains(k))
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    cols.extend(rest);
    cols
}

/// Each configuration's saturation: the highest rate meeting the objectives (from the grid's
/// rates, narrowed by the bisection probes), what broke above it, and the lowest rate whose
/// waiting queue grew without bound.
pub fn saturation(
    meta: &Map<String, Value>,
    rows: &[Map<String, Value>],
    probes: &[Map<String, Value>],
) -> Vec<Value> {
    let slos = slos(meta);
    let axes = axes(meta);
    let curve = curve(meta);
    let word = curve_word(curve);
    let configs = meta.get("configs").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut out = Vec::new();
    for c in 0..configs {
        let mut pts: Vec<&Map<String, Value>> =
            rows.iter().filter(|r| index(r, "config") == c).collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| {
            num(a, curve)
                .unwrap_or(f64::NAN)
                .total_cmp(&num(b, curve).unwrap_or(f64::NAN))
        });
        let settings: Map<String, Value> = axes
            .iter()
            .filter(|a| *a != curve)
            .filter_map(|a| pts[0].get(a).map(|v| (a.clone(), v.clone())))
            .collect();
        let (mut lo, mut hi, mut reason) = (None::<f64>, None::<f64>, String::new());
        for p in &pts {
            let Some(rate) = num(p, curve) else { continue };
            let v = judge(p, &slos);
            if v.ok {
                lo = Some(rate);
            } else {
                hi = Some(rate);
                reason = v.reason;
                break;
            }
        }
        let mut unbounded_from = pts
            .iter()
            .filter(|p| p.get("queue_unbounded") == Some(&Value::Bool(true)))
            .filter_map(|p| num(p, curve))
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))));
        let mine: Vec<&Map<String, Value>> =
            probes.iter().filter(|p| index(p, "config") == c).collect();
        for p in &mine {
            let Some(rate) = num(p, curve) else { continue };
            let v = judge(p, &slos);
            if v.ok {
                lo = Some(rate);
            } else {
                hi = Some(rate);
                reason = v.reason;
                if p.get("queue_unbounded") == Some(&Value::Bool(true)) {
                    unbounded_from = Some(unbounded_from.map_or(rate, |u| u.min(rate)));
                }
            }
        }
        let meets = if slos.is_empty() {
            "keeps its queue bounded"
        } else {
            "meets the objectives"
        };
        let note = match (lo, hi) {
            (Some(l), None) => format!("{meets} at every {word} tried: saturation above {l}"),
            (None, Some(h)) => format!("no {word} tried {meets} (lowest tried {h}: {reason})"),
            (Some(l), Some(h)) => format!("saturates between {l} and {h}: {reason}"),
            (None, None) => "no rates to judge".to_string(),
        };
        let mut m = Map::new();
        m.insert("config".into(), c.into());
        m.insert("settings".into(), settings.into());
        let tried: Vec<f64> = pts.iter().filter_map(|p| num(p, curve)).collect();
        let plural = if curve == RATE {
            "rates"
        } else {
            "concurrencies"
        };
        m.insert(plural.into(), tried.into());
        // Concurrency caps are whole requests, and written so.
        let value = |v: Option<f64>| match v {
            Some(x) if curve == CONCURRENCY && x.fract() == 0.0 && x >= 0.0 => {
                Value::from(x as u64)
            }
            v => v.into(),
        };
        m.insert(format!("max_{word}_meeting_slos"), value(lo));
        m.insert(format!("first_failing_{word}"), value(hi));
        m.insert(
            "failing_reason".into(),
            if hi.is_some() {
                Value::from(reason.clone())
            } else {
                Value::Null
            },
        );
        m.insert(
            format!("unbounded_queue_from_{word}"),
            value(unbounded_from),
        );
        m.insert("bisection_probes".into(), mine.len().into());
        m.insert("note".into(), note.into());
        out.push(Value::Object(m));
    }
    out
}

/// The point that comes closest to the objectives when none meets them: its row and how far
/// off it is (the worst objective's value over its bound; points whose queue grows come last).
pub fn closest(rows: &[Map<String, Value>], slos: &[Slo]) -> Option<(usize, f64, String)> {
    rows.iter()
        .map(|r| {
            let v = judge(r, slos);
            let grows = r.get("queue_unbounded") == Some(&Value::Bool(true));
            (grows, v.worst_ratio, index(r, "point"), v.reason)
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, ratio, point, reason)| (point, ratio, reason))
}

/// Writes every output file under `dir`.
pub fn write(dir: &Path, res: &Results) -> Result<()> {
    std::fs::create_dir_all(dir.join("curves"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let cols = columns(&res.meta, &res.rows);
    let sat = saturation(&res.meta, &res.rows, &res.probes);
    let doc = json!({
        "meta": res.meta,
        "columns": cols,
        "rows": res.rows,
        "saturation": sat,
        "probes": res.probes,
    });
    write_file(&dir.join("sweep.json"), &serde_json::to_vec_pretty(&doc)?)?;
    write_file(&dir.join("sweep.csv"), csv(&cols, &res.rows).as_bytes())?;

    let curve = curve(&res.meta);
    let word = curve_word(curve);
    let axes: Vec<String> = axes(&res.meta).into_iter().filter(|a| a != curve).collect();
    let mut sat_cols = vec!["config".to_string()];
    sat_cols.extend(axes.iter().cloned());
    sat_cols.extend([
        format!("max_{word}_meeting_slos"),
        format!("first_failing_{word}"),
        "failing_reason".to_string(),
        format!("unbounded_queue_from_{word}"),
        "bisection_probes".to_string(),
        "note".to_string(),
    ]);
    let sat_rows: Vec<Map<String, Value>> = sat
        .iter()
        .filter_map(|s| {
            let mut m = s.as_object()?.clone();
            if let Some(Value::Object(set)) = m.remove("settings") {
                m.extend(set);
            }
            Some(m)
        })
        .collect();
    write_file(
        &dir.join("saturation.csv"),
        csv(&sat_cols, &sat_rows).as_bytes(),
    )?;

    let configs = res.meta.get("configs").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut curve_cols = vec![curve.to_string()];
    curve_cols.extend(CURVE_KEYS.iter().map(|k| k.to_string()));
    for c in 0..configs {
        let mut pts: Vec<Map<String, Value>> = res
            .rows
            .iter()
            .filter(|r| index(r, "config") == c)
            .cloned()
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| {
            num(a, curve)
                .unwrap_or(f64::NAN)
                .total_cmp(&num(b, curve).unwrap_or(f64::NAN))
        });
        write_file(
            &dir.join("curves").join(format!("config-{c:03}.csv")),
            csv(&curve_cols, &pts).as_bytes(),
        )?;
    }
    Ok(())
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<()> {
    llm_emu_sim::report::write_atomic(p, bytes).with_context(|| format!("writing {}", p.display()))
}

/// RFC 4180 CSV of `rows` under the header `cols` (absent values empty).
fn csv(cols: &[String], rows: &[Map<String, Value>]) -> String {
    let mut out = String::new();
    out.push_str(&cols.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
    out.push('\n');
    for r in rows {
        let line: Vec<String> = cols
            .iter()
            .map(|c| match r.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => field(s),
                Some(v) => field(&v.to_string()),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Reads the shards' `sweep.json` (each DIR, or the file itself) and checks they are shards
/// of one sweep covering it once.
pub fn merge(inputs: &[std::path::PathBuf]) -> Result<Results> {
    if inputs.is_empty() {
        bail!("merge: name at least one shard output directory");
    }
    let mut meta: Option<Map<String, Value>> = None;
    let mut seen: Vec<u64> = Vec::new();
    let mut total = None;
    let (mut rows, mut probes) = (Vec::new(), Vec::new());
    for input in inputs {
        let path = if input.is_dir() {
            input.join("sweep.json")
        } else {
            input.clone()
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // Read exactly so that the merged table has the very floats the shards computed.
        let doc: Value = super::exact_json::parse(&text)
            .with_context(|| format!("{}: not a sweep output", path.display()))?;
        let mut m = doc
            .get("meta")
            .and_then(Value::as_object)
            .cloned()
            .with_context(|| format!("{}: no `meta`", path.display()))?;
        let shard = m.remove("shard");
        let (i, n) = match shard.as_ref().and_then(|s| s.as_str()) {
            Some(s) => super::parse_shard(s)?,
            None => (0, 1),
        };
        match total {
            None => total = Some(n),
            Some(t) if t != n => bail!(
                "{}: shard {i}/{n} of a sweep split {n} ways, the others {t} ways",
                path.display()
            ),
            _ => {}
        }
        if seen.contains(&i) {
            bail!("{}: shard {i}/{n} given twice", path.display());
        }
        seen.push(i);
        match &meta {
            None => meta = Some(m),
            Some(first) if *first != m => bail!(
                "{}: not a shard of the same sweep as {} (its grid, base or objectives differ)",
                path.display(),
                inputs[0].display()
            ),
            _ => {}
        }
        for (key, out) in [("rows", &mut rows), ("probes", &mut probes)] {
            if let Some(a) = doc.get(key).and_then(Value::as_array) {
                out.extend(a.iter().filter_map(|v| v.as_object().cloned()));
            }
        }
    }
    let n = total.unwrap_or(1);
    let missing: Vec<String> = (0..n)
        .filter(|i| !seen.contains(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!("merge: missing shard(s) {}", missing.join(", "));
    }
    rows.sort_by_key(|r| index(r, "point"));
    // Probes keep each configuration's search order; configurations in index order.
    probes.sort_by_key(|p| (index(p, "config"), index(p, "step")));
    Ok(Results {
        meta: meta.unwrap_or_default(),
        rows,
        probes,
    })
}
