//! The step-cycle pack file: empirical samples of whole engine-step durations keyed by the
//! step's shape.
//!
//! The published LLM-Emu's format (`"profile_type": "serving_step_cycle_2d"`):
//!
//! ```json
//! {"profile_type": "serving_step_cycle_2d",
//!  "bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8},
//!  "prefill_2d_distribution": [{"tt": 128, "conc": 16, "num_samples": 3, "samples": [21500.0, 21720.5, 21610.2]}, ...]}
//! ```
//!
//! `tt` is the step's total scheduled tokens, `conc` the requests running in it, samples are
//! whole step durations in µs. A cell's `tt`/`conc` may be any value inside its bucket (its
//! bucket is `floor(tt / tt_bucket_width)`). llm-emu's own packs use the same type and add, when
//! given, a third axis: `bucketing.ctx_bucket_width` and a `ctx` per cell (Σ tokens already
//! computed of the scheduled requests, which drives attention cost). Other keys are ignored, so
//! packs with further metadata stay readable.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const PROFILE_TYPE: &str = "serving_step_cycle_2d";

#[derive(Debug, Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid step-cycle pack: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: prefill_2d_distribution[{index}] (tt {tt}, conc {conc}): {reason}")]
    Cell {
        path: PathBuf,
        index: usize,
        tt: f64,
        conc: f64,
        reason: String,
    },
}

/// One cell: its bucket and its samples (ns).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub tt_bucket: i64,
    pub conc_bucket: i64,
    /// 0 when the pack has no context axis.
    pub ctx_bucket: i64,
    pub samples_ns: Vec<f64>,
}

/// A loaded pack.
#[derive(Clone, Debug)]
pub struct Pack {
    pub path: PathBuf,
    pub tt_width: f64,
    pub conc_width: f64,
    /// `Some` when the pack has the context axis.
    pub ctx_width: Option<f64>,
    pub cells: Vec<Cell>,
    /// Cells present in the file without samples (not used).
    pub empty_cells: usize,
    /// Cells whose `num_samples` disagreed with their sample list (the list is used).
    pub count_mismatches: usize,
}

#[derive(Deserialize)]
struct RawPack {
    profile_type: Option<String>,
    bucketing: Option<Value>,
    prefill_2d_distribution: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct RawBucketing {
    tt_bucket_width: f64,
    conc_bucket_width: f64,
    ctx_bucket_width: Option<f64>,
}

#[derive(Deserialize)]
struct RawCell {
    tt: f64,
    conc: f64,
    ctx: Option<f64>,
    num_samples: Option<u64>,
    samples: Vec<f64>,
}

/// Whether `text` looks like a step-cycle pack (for `--profile` format detection).
pub fn is_step_cycle_json(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("profile_type")?.as_str().map(|t| t == PROFILE_TYPE))
        .unwrap_or(false)
}

impl Pack {
    pub fn read(path: &Path) -> Result<Pack, PackError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Pack::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Pack, PackError> {
        let invalid = |reason: String| PackError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawPack = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        match raw.profile_type.as_deref() {
            Some(PROFILE_TYPE) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "profile_type is `{other}`, expected `{PROFILE_TYPE}`"
                )))
            }
            None => return Err(invalid("no profile_type".into())),
        }
        let b: RawBucketing = raw
            .bucketing
            .ok_or_else(|| invalid("no `bucketing` (tt_bucket_width, conc_bucket_width)".into()))
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| invalid(format!("bucketing: {e}")))
            })?;
        for (name, w) in [
            ("tt_bucket_width", Some(b.tt_bucket_width)),
            ("conc_bucket_width", Some(b.conc_bucket_width)),
            ("ctx_bucket_width", b.ctx_bucket_width),
        ] {
            if let Some(w) = w {
                if !(w.is_finite() && w > 0.0) {
                    return Err(invalid(format!("bucketing.{name} must be > 0, got {w}")));
                }
            }
        }
        let cells_raw = raw
            .prefill_2d_distribution
            .ok_or_else(|| invalid("no `prefill_2d_distribution`".into()))?;
        let mut pack = Pack {
            path: path.to_path_buf(),
            tt_width: b.tt_bucket_width,
            conc_width: b.conc_bucket_width,
            ctx_width: b.ctx_bucket_width,
            cells: Vec::new(),
            empty_cells: 0,
            count_mismatches: 0,
        };
        for (index, v) in cells_raw.into_iter().enumerate() {
            let c: RawCell = serde_json::from_value(v)
                .map_err(|e| invalid(format!("prefill_2d_distribution[{index}]: {e}")))?;
            let cell_err = |reason: String| PackError::Cell {
                path: path.to_path_buf(),
                index,
                tt: c.tt,
                conc: c.conc,
                reason,
            };
            if !(c.tt.is_finite() && c.tt >= 0.0 && c.conc.is_finite() && c.conc >= 0.0) {
                return Err(cell_err("tt and conc must be finite and ≥ 0".into()));
            }
            if let Some(bad) = c.samples.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(cell_err(format!(
                    "sample {bad} is not a positive duration in µs"
                )));
            }
            if c.samples.is_empty() {
                pack.empty_cells += 1;
                continue;
            }
            if c.num_samples.is_some_and(|n| n as usize != c.samples.len()) {
                pack.count_mismatches += 1;
            }
            let ctx_bucket =
                match (pack.ctx_width, c.ctx) {
                    (Some(w), Some(x)) if x.is_finite() && x >= 0.0 => (x / w).floor() as i64,
                    (Some(_), _) => return Err(cell_err(
                        "the pack has bucketing.ctx_bucket_width but this cell has no valid ctx"
                            .into(),
                    )),
                    (None, _) => 0,
                };
            pack.cells.push(Cell {
                tt_bucket: (c.tt / pack.tt_width).floor() as i64,
                conc_bucket: (c.conc / pack.conc_width).floor() as i64,
                ctx_bucket,
                samples_ns: c.samples.iter().map(|us| us * 1e3).collect(),
            });
        }
        if pack.cells.is_empty() {
            return Err(invalid("no cell has samples".into()));
        }
        Ok(pack)
    }
}

/// Builds a pack from measured steps `(tt, conc, ctx, duration µs)`: one cell per occupied
/// bucket, its `tt`/`conc`/`ctx` the bucket's lower edge. With `ctx_width` the pack has the
/// context axis (llm-emu's extension); without it, it is LLM-Emu's 2-D format.
pub fn build_pack(
    steps: impl IntoIterator<Item = (u64, u64, u64, f64)>,
    tt_width: f64,
    conc_width: f64,
    ctx_width: Option<f64>,
) -> Value {
    use std::collections::BTreeMap;
    let mut cells: BTreeMap<(i64, i64, i64), Vec<f64>> = BTreeMap::new();
    for (tt, conc, ctx, us) in steps {
        let key = (
            (tt as f64 / tt_width).floor() as i64,
            (conc as f64 / conc_width).floor() as i64,
            ctx_width.map_or(0, |w| (ctx as f64 / w).floor() as i64),
        );
        cells.entry(key).or_default().push(us);
    }
    let dist: Vec<Value> = cells
        .into_iter()
        .map(|((t, c, x), samples)| {
            let mut cell = serde_json::json!({
                "tt": t as f64 * tt_width,
                "conc": c as f64 * conc_width,
                "num_samples": samples.len(),
                "samples": samples,
            });
            if let Some(w) = ctx_width {
                cell["ctx"] = (x as f64 * w).into();
            }
            cell
        })
        .collect();
    let mut bucketing = serde_json::json!({
        "tt_bucket_width": tt_width,
        "conc_bucket_width": conc_width,
    });
    if let Some(w) = ctx_width {
        bucketing["ctx_bucket_width"] = w.into();
    }
    serde_json::json!({
        "profile_type": PROFILE_TYPE,
        "bucketing": bucketing,
        "prefill_2d_distribution": dist,
    })
}
