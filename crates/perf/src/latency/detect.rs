//! `--profile PATH`: which latency model a profile path is, detected from what it holds.
//!
//! - a JSON file whose `profile_type` is `serving_step_cycle_2d` or `llm_emu_step_cycle` →
//!   `step-cycle:path=PATH`;
//! - a directory with `meta.yaml` and at least one `tp*/` folder (the operator-profile layout)
//!   → `profile:dir=PATH`;
//! - a directory with Vidur's `mlp.csv` and `attention.csv` (`data/profiling/compute/<gpu>/
//!   <org>/<model>/`) → `vidur:dir=PATH`;
//! - a directory with aiconfigurator's `gemm_perf.txt` and `context_attention_perf.txt` →
//!   `aiconfigurator:dir=PATH`.

use super::step_cycle::{PROFILE_TYPE_2D, PROFILE_TYPE_CTX};
use super::{aiconfigurator, vidur};
use super::{LatencySpec, LatencySpecError};
use std::path::Path;

/// The latency spec that loads the profile at `path` (any path: it is not re-parsed).
pub fn latency_spec_for_profile(path: &Path) -> Result<LatencySpec, LatencySpecError> {
    let err = |reason: String| LatencySpecError::BadParam(path.display().to_string(), reason);
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.is_dir() {
        let has_meta = path.join("meta.yaml").is_file();
        let has_tp = std::fs::read_dir(path)
            .map_err(|e| err(e.to_string()))?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("tp") && e.path().is_dir());
        if has_meta && has_tp {
            return Ok(LatencySpec::profile(path));
        }
        if path.join(vidur::MLP_FILE).is_file() && path.join(vidur::ATTENTION_FILE).is_file() {
            return Ok(LatencySpec::vidur(path));
        }
        if path.join(aiconfigurator::GEMM_FILE).is_file()
            && path.join(aiconfigurator::CONTEXT_FILE).is_file()
        {
            return Ok(LatencySpec::aiconfigurator(path));
        }
        return Err(err(
            "a directory, but not an operator profile (expected meta.yaml and tp*/ folders, Vidur's \
             mlp.csv and attention.csv, or aiconfigurator's gemm_perf.txt and \
             context_attention_perf.txt)"
                .into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "not a profile directory and not valid JSON ({e}); expected a step-cycle pack \
             or an operator-profile directory"
        ))
    })?;
    match v.get("profile_type").and_then(|t| t.as_str()) {
        Some(PROFILE_TYPE_2D | PROFILE_TYPE_CTX) => Ok(LatencySpec::step_cycle(path)),
        Some(other) => Err(err(format!(
            "unknown profile_type `{other}` (known: {PROFILE_TYPE_2D}, {PROFILE_TYPE_CTX})"
        ))),
        None => Err(err("JSON without a string `profile_type`".into())),
    }
}
