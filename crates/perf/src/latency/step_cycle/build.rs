//! Building a pack from per-step measurements. Reads three kinds of JSON step lines:
//!
//! - `llm-emu simulate --steps-out`: `num_tokens`, `num_reqs`, `num_prefill_tokens`,
//!   `duration_ms`, `context_tokens`;
//! - the vLLM reference server's `EMU_TRACE`: `tokens`, `reqs`, `decode_reqs`, `ctx`, `lat_us`;
//! - LLM-Emu's step-cycle traces: `total_tokens`, `num_new_reqs`, `num_decode_seqs`,
//!   `step_cycle_us`, optional `sum_kv` (its `_header` and `__marker__` lines are skipped).

use super::pack::{bucket_key, Bucketing, Cell, StepCyclePack, PROFILE_TYPE_2D, PROFILE_TYPE_CTX};
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// One measured step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSample {
    /// Σ scheduled tokens.
    pub tt: u64,
    /// Scheduled requests.
    pub conc: u64,
    /// Σ tokens computed before the step, when the record has it.
    pub ctx: Option<u64>,
    /// Whether the step carried prompt tokens (goes to the prefill table).
    pub prefill: bool,
    /// Whole step duration, µs.
    pub duration_us: f64,
}

#[derive(Debug, Error, PartialEq)]
pub enum StepRecordError {
    #[error("not a JSON object")]
    NotObject,
    #[error("unknown step record (expected llm-emu steps, vLLM reference EMU_TRACE or LLM-Emu step-cycle keys)")]
    UnknownKind,
    #[error("`{0}`: missing or not a non-negative integer")]
    BadInt(&'static str),
    #[error("`{0}`: missing or not a positive finite number")]
    BadDuration(&'static str),
}

impl StepSample {
    /// Reads one step record; `Ok(None)` for lines that hold no step (LLM-Emu headers and
    /// markers, steps with no tokens).
    pub fn from_json(v: &Value) -> Result<Option<StepSample>, StepRecordError> {
        let o = v.as_object().ok_or(StepRecordError::NotObject)?;
        if o.contains_key("_header") || o.contains_key("__marker__") {
            return Ok(None);
        }
        let int = |k: &'static str| {
            o.get(k)
                .and_then(Value::as_u64)
                .ok_or(StepRecordError::BadInt(k))
        };
        let opt_int = |k: &'static str| match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or(StepRecordError::BadInt(k)),
        };
        let dur = |k: &'static str, scale: f64| {
            o.get(k)
                .and_then(Value::as_f64)
                .map(|x| x * scale)
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or(StepRecordError::BadDuration(k))
        };
        let s = if o.contains_key("num_tokens") && o.contains_key("duration_ms") {
            StepSample {
                tt: int("num_tokens")?,
                conc: int("num_reqs")?,
                ctx: opt_int("context_tokens")?,
                prefill: int("num_prefill_tokens")? > 0,
                duration_us: if int("num_tokens")? == 0 {
                    return Ok(None);
                } else {
                    dur("duration_ms", 1000.0)?
                },
            }
        } else if o.contains_key("tokens") && o.contains_key("lat_us") {
            let reqs = int("reqs")?;
            StepSample {
                tt: int("tokens")?,
                conc: reqs,
                ctx: opt_int("ctx")?,
                prefill: reqs > int("decode_reqs")?,
                duration_us: dur("lat_us", 1.0)?,
            }
        } else if o.contains_key("total_tokens") && o.contains_key("step_cycle_us") {
            let new = opt_int("num_new_reqs")?.unwrap_or(0);
            StepSample {
                tt: int("total_tokens")?,
                conc: new + opt_int("num_decode_seqs")?.unwrap_or(0),
                ctx: opt_int("sum_kv")?,
                prefill: new > 0,
                duration_us: dur("step_cycle_us", 1.0)?,
            }
        } else {
            return Err(StepRecordError::UnknownKind);
        };
        if s.tt == 0 {
            return Ok(None);
        }
        Ok(Some(StepSample {
            conc: s.conc.max(1),
            ..s
        }))
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum BuildError {
    #[error("bucket widths must be >= 1")]
    ZeroWidth,
    #[error("no step records")]
    NoSamples,
    #[error("--ctx-bucket-width given but step record {0} has no context tokens")]
    NoCtx(usize),
}

/// Collects step samples into cells, as LLM-Emu's pack builder does: prefill, decode and
/// all-steps tables, each cell's samples rounded to 0.1 µs in input order.
#[derive(Debug)]
pub struct PackBuilder {
    bucketing: Bucketing,
    /// (table 0..3, tt, conc, ctx) → samples.
    cells: BTreeMap<(usize, u64, u64, u64), Vec<f64>>,
    count: usize,
}

impl PackBuilder {
    /// With `ctx_bucket_width`, the pack is our extended type keyed by context tokens too.
    pub fn new(tt: u64, conc: u64, ctx: Option<u64>) -> Result<PackBuilder, BuildError> {
        if tt == 0 || conc == 0 || ctx == Some(0) {
            return Err(BuildError::ZeroWidth);
        }
        Ok(PackBuilder {
            bucketing: Bucketing {
                tt_bucket_width: tt,
                conc_bucket_width: conc,
                ctx_bucket_width: ctx,
            },
            cells: BTreeMap::new(),
            count: 0,
        })
    }

    pub fn add(&mut self, s: &StepSample) -> Result<(), BuildError> {
        let b = &self.bucketing;
        let ctx = match b.ctx_bucket_width {
            Some(w) => bucket_key(s.ctx.ok_or(BuildError::NoCtx(self.count + 1))?, w),
            None => 0,
        };
        let tt = bucket_key(s.tt, b.tt_bucket_width);
        let conc = bucket_key(s.conc, b.conc_bucket_width);
        let v = (s.duration_us * 10.0).round() / 10.0;
        let table = if s.prefill { 0 } else { 1 };
        self.cells
            .entry((table, tt, conc, ctx))
            .or_default()
            .push(v);
        self.cells.entry((2, tt, conc, ctx)).or_default().push(v);
        self.count += 1;
        Ok(())
    }

    /// Samples added so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(
        self,
        gpu_model: Option<String>,
        model_name: Option<String>,
    ) -> Result<StepCyclePack, BuildError> {
        if self.count == 0 {
            return Err(BuildError::NoSamples);
        }
        let has_ctx = self.bucketing.ctx_bucket_width.is_some();
        let mut tables: [Vec<Cell>; 3] = Default::default();
        for ((t, tt, conc, ctx), samples) in self.cells {
            tables[t].push(Cell {
                tt,
                conc,
                ctx: has_ctx.then_some(ctx),
                num_samples: samples.len(),
                samples,
            });
        }
        let [prefill, decode, all] = tables;
        Ok(StepCyclePack {
            version: Some(if has_ctx { "1.0" } else { "2.0" }.into()),
            gpu_model: Some(gpu_model.unwrap_or_else(|| "unknown".into())),
            model_name: Some(model_name.unwrap_or_else(|| "unknown".into())),
            profile_type: if has_ctx {
                PROFILE_TYPE_CTX
            } else {
                PROFILE_TYPE_2D
            }
            .into(),
            alpha_kv: None,
            bucketing: Some(self.bucketing),
            prefill_2d_distribution: prefill,
            decode_2d_distribution: decode,
            step_cycle_2d_distribution: all,
        })
    }
}
