//! The step-cycle pack on disk: LLM-Emu's `serving_step_cycle_2d` profile (v2.x) and our
//! extension `llm_emu_step_cycle`, which adds a context-token axis. Both are JSON; unknown keys
//! are ignored so packs carrying extra metadata (model_config, alpha_kv, 3-D axis tables…) load.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// LLM-Emu's profile type: cells keyed by (tt, conc).
pub const PROFILE_TYPE_2D: &str = "serving_step_cycle_2d";
/// Our extension: cells keyed by (tt, conc, ctx), `bucketing.ctx_bucket_width` required.
pub const PROFILE_TYPE_CTX: &str = "llm_emu_step_cycle";

/// Why a pack could not be loaded. Cell errors name the table and the 0-based cell index.
#[derive(Debug, Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid step-cycle pack: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path}: profile_type is `{found}`, expected `{PROFILE_TYPE_2D}` or `{PROFILE_TYPE_CTX}`"
    )]
    ProfileType { path: PathBuf, found: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {table}[{index}] (tt={tt}, conc={conc}): {reason}")]
    Cell {
        path: PathBuf,
        table: &'static str,
        index: usize,
        tt: u64,
        conc: u64,
        reason: String,
    },
}

/// Bucket widths: a value `x` falls in the bucket whose key is `(x / w) * w + w / 2` (integer
/// division), the bucket's centre as LLM-Emu's pack builder writes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bucketing {
    /// Width of total-scheduled-token buckets (1 = no bucketing).
    pub tt_bucket_width: u64,
    /// Width of concurrency (scheduled requests) buckets.
    pub conc_bucket_width: u64,
    /// Width of context-token buckets (extension only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx_bucket_width: Option<u64>,
}

/// Bucket key of `x` for width `w` (LLM-Emu's `(x // w) * w + w // 2`).
pub fn bucket_key(x: u64, w: u64) -> u64 {
    (x / w) * w + w / 2
}

/// One cell: the measured durations of steps whose shape fell in this bucket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Bucket key of Σ scheduled tokens.
    pub tt: u64,
    /// Bucket key of the number of scheduled requests.
    pub conc: u64,
    /// Bucket key of Σ context tokens (tokens computed before the step) — extension only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<u64>,
    /// Count of `samples` (checked).
    pub num_samples: usize,
    /// Whole step-cycle durations, microseconds.
    pub samples: Vec<f64>,
}

/// A step-cycle pack as written on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepCyclePack {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub gpu_model: Option<String>,
    #[serde(default)]
    pub model_name: Option<String>,
    pub profile_type: String,
    /// Absent in LLM-Emu's v1.0 packs, which this reader does not take.
    #[serde(default)]
    pub bucketing: Option<Bucketing>,
    /// LLM-Emu's KV adjustment: when present, cells are keyed by tt_eff = tt + alpha_kv × Σ
    /// context tokens instead of tt (its `--alpha-kv model` packs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_kv: Option<f64>,
    /// Steps that admit at least one new request (see docs/step-cycle.md for our rule).
    #[serde(default)]
    pub prefill_2d_distribution: Vec<Cell>,
    /// Steps without prefill work.
    #[serde(default)]
    pub decode_2d_distribution: Vec<Cell>,
    /// All steps.
    #[serde(default)]
    pub step_cycle_2d_distribution: Vec<Cell>,
}

/// The three tables a pack may carry, by name.
pub const TABLE_NAMES: [&str; 3] = [
    "prefill_2d_distribution",
    "decode_2d_distribution",
    "step_cycle_2d_distribution",
];

impl StepCyclePack {
    /// Reads and validates a pack.
    pub fn load(path: &Path) -> Result<StepCyclePack, PackError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates a pack's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<StepCyclePack, PackError> {
        // Check the type first so a foreign JSON gets "wrong profile_type", not a field error;
        // this pass skips everything else without building it in memory.
        #[derive(Deserialize)]
        struct TypeOnly {
            profile_type: Option<serde_json::Value>,
        }
        let json_err = |source| PackError::Json {
            path: path.into(),
            source,
        };
        let t: TypeOnly = serde_json::from_str(text).map_err(json_err)?;
        match t.profile_type.as_ref().and_then(|t| t.as_str()) {
            Some(PROFILE_TYPE_2D | PROFILE_TYPE_CTX) => {}
            Some(other) => {
                return Err(PackError::ProfileType {
                    path: path.into(),
                    found: other.into(),
                })
            }
            None => {
                return Err(PackError::Invalid {
                    path: path.into(),
                    reason: "no string `profile_type`".into(),
                })
            }
        }
        let pack: StepCyclePack = serde_json::from_str(text).map_err(json_err)?;
        pack.validate(path)?;
        Ok(pack)
    }

    /// Whether cells carry the context-token axis.
    pub fn has_ctx(&self) -> bool {
        self.profile_type == PROFILE_TYPE_CTX
    }

    /// The tables in [`TABLE_NAMES`] order.
    pub fn tables(&self) -> [&[Cell]; 3] {
        [
            &self.prefill_2d_distribution,
            &self.decode_2d_distribution,
            &self.step_cycle_2d_distribution,
        ]
    }

    /// Checks the pack (see docs/step-cycle.md for the rules); `path` names it in errors.
    pub fn validate(&self, path: &Path) -> Result<(), PackError> {
        let invalid = |reason: String| PackError::Invalid {
            path: path.into(),
            reason,
        };
        let b = self.bucketing.as_ref().ok_or_else(|| {
            invalid(
                "no `bucketing` (tt_bucket_width, conc_bucket_width); LLM-Emu v1.0 packs \
                 without 2-D distributions are not supported"
                    .into(),
            )
        })?;
        if b.tt_bucket_width == 0 || b.conc_bucket_width == 0 {
            return Err(invalid("bucket widths must be >= 1".into()));
        }
        if let Some(a) = self.alpha_kv {
            if !a.is_finite() || a < 0.0 {
                return Err(invalid(format!(
                    "alpha_kv {a} must be a finite number >= 0"
                )));
            }
        }
        let ctx = self.has_ctx();
        match (ctx, b.ctx_bucket_width) {
            (true, None) | (true, Some(0)) => {
                return Err(invalid(format!(
                    "profile_type `{PROFILE_TYPE_CTX}` needs bucketing.ctx_bucket_width >= 1"
                )))
            }
            _ => {}
        }
        if self.tables().iter().all(|t| t.is_empty()) {
            return Err(invalid(format!(
                "no cells: none of {} has any",
                TABLE_NAMES.join(", ")
            )));
        }
        for (table, cells) in TABLE_NAMES.iter().zip(self.tables()) {
            let mut seen = std::collections::HashSet::new();
            for (index, c) in cells.iter().enumerate() {
                let bad = |reason: String| PackError::Cell {
                    path: path.into(),
                    table,
                    index,
                    tt: c.tt,
                    conc: c.conc,
                    reason,
                };
                if c.samples.is_empty() {
                    return Err(bad("no samples (empty cell)".into()));
                }
                if c.num_samples != c.samples.len() {
                    return Err(bad(format!(
                        "num_samples is {} but {} samples are listed",
                        c.num_samples,
                        c.samples.len()
                    )));
                }
                if let Some(s) = c.samples.iter().find(|s| !s.is_finite() || **s <= 0.0) {
                    return Err(bad(format!(
                        "sample {s} µs is not a positive finite duration"
                    )));
                }
                if c.conc == 0 {
                    return Err(bad("conc must be >= 1".into()));
                }
                if ctx && c.ctx.is_none() {
                    return Err(bad(format!(
                        "no `ctx` key (required by profile_type `{PROFILE_TYPE_CTX}`)"
                    )));
                }
                let key = (c.tt, c.conc, if ctx { c.ctx } else { None });
                if !seen.insert(key) {
                    return Err(bad("duplicate cell key".into()));
                }
            }
        }
        Ok(())
    }
}
