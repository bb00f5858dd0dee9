//! `overheads.yaml` (an llm-emu file next to a profile's `meta.yaml`): device time per engine
//! step that the per-operator tables cannot contain.
//!
//! An operator profile times each operator alone, between CUDA events, one layer at a time. A
//! served step is one whole forward: the input tensors are copied to the device first
//! (token ids, positions, slot mapping, block tables), the sampled ids of the previous step are
//! scattered into the inputs, every operator boundary of 32+ layers leaves the GPU a short
//! drain-and-fill gap, and the sampled ids are handed back. None of that is in any operator's
//! row; together it is a per-step constant of a few hundred microseconds on a given GPU, host
//! and vLLM version: `step_overhead_us`. It is measured, not derived, so it lives with the
//! profile it completes, with a note of how it was obtained (`tools/fidelity/README.md`).
//! A profile directory without the file is matched against the calibrations compiled into the
//! binary by the identity its `meta.yaml` declares (`hardware`, `model`, `vllm_version`,
//! `profiled_at` — the `profile_*` keys of a calibration), so the same measured profile gets the
//! same overhead wherever its copy lives; an unknown profile gets no overhead (the composition
//! alone, which is right for a profile that is already accurate).
//!
//! ```yaml
//! step_overhead_us: 540
//! tp_link_gbps: 25          # optional: all-reduce bus bandwidth per GPU (GB/s), TP > 1
//! tp_link_latency_us: 5     # optional: one ring hop (µs)
//! obtained_by: "..."        # free text; any other key is documentation and ignored
//! ```

use super::skew::Meta;
use super::ProfileError;
use std::path::Path;

/// The file's name inside a profile directory.
pub const OVERHEADS_FILE: &str = "overheads.yaml";

/// Calibrations compiled into the binary: (name, `overheads.yaml` text with `profile_*` keys).
const BUILTIN_CALIBRATIONS: &[(&str, &str)] = &[(
    "rtxpro6000-llama-3.1-8b",
    include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/overheads.yaml"),
)];

/// The `meta.yaml` keys that identify a measured profile, and the calibration keys naming them.
const IDENTITY: [(&str, &str); 4] = [
    ("hardware", "profile_hardware"),
    ("model", "profile_model"),
    ("vllm_version", "profile_vllm_version"),
    ("profiled_at", "profile_profiled_at"),
];

/// Per-step device time outside the profiled operators.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overheads {
    /// Added to every non-empty step, in µs.
    pub step_overhead_us: f64,
    /// Where the values came from: `overheads.yaml`, a built-in calibration, or `None` (zero).
    pub source: Option<String>,
    /// Tensor-parallel all-reduce link: achievable bus bandwidth per GPU in GB/s (NVLink or
    /// PCIe), for the two all-reduces per layer the per-rank tables leave out.
    pub tp_link_gbps: Option<f64>,
    /// Latency of one ring hop in µs.
    pub tp_link_latency_us: f64,
}

impl Overheads {
    /// Reads `dir/overheads.yaml`; without one, the built-in calibration of the profile
    /// `profile_meta` identifies, else no overhead.
    pub(crate) fn load(dir: &Path, profile_meta: &Meta) -> Result<Overheads, ProfileError> {
        let path = dir.join(OVERHEADS_FILE);
        match super::tables::read_text(&path) {
            Ok(text) => Self::parse(&path, &text, OVERHEADS_FILE.to_string()),
            Err(ProfileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                for (name, text) in BUILTIN_CALIBRATIONS {
                    let cal_path = Path::new(name).join(OVERHEADS_FILE);
                    let cal = Meta::parse(&cal_path, text)?;
                    let same = IDENTITY.iter().all(|(mk, ck)| {
                        matches!((profile_meta.get(mk), cal.get(ck)), (Some(a), Some(b)) if a == b)
                    });
                    if same {
                        return Self::parse(
                            &cal_path,
                            text,
                            format!("built-in calibration `{name}`"),
                        );
                    }
                }
                Ok(Overheads::default())
            }
            Err(e) => Err(e),
        }
    }

    fn parse(path: &Path, text: &str, source: String) -> Result<Overheads, ProfileError> {
        let path = path.to_path_buf();
        let meta = Meta::parse(&path, text)?;
        let num = |key: &str| -> Result<Option<f64>, ProfileError> {
            meta.fields
                .get(key)
                .map(|(line, raw)| {
                    parse_figure(raw).map_err(|reason| ProfileError::Meta {
                        path: path.clone(),
                        line: *line,
                        key: key.into(),
                        reason,
                    })
                })
                .transpose()
        };
        let tp_link_gbps = num("tp_link_gbps")?;
        let tp_link_latency_us = num("tp_link_latency_us")?.unwrap_or(0.0);
        let Some((line, raw)) = meta.fields.get("step_overhead_us") else {
            return Err(ProfileError::Meta {
                path,
                line: 1,
                key: "step_overhead_us".into(),
                reason: "missing (the file exists, so it must say the overhead in µs)".into(),
            });
        };
        let us = parse_figure(raw).map_err(|reason| ProfileError::Meta {
            path: path.clone(),
            line: *line,
            key: "step_overhead_us".into(),
            reason,
        })?;
        Ok(Overheads {
            step_overhead_us: us,
            source: Some(source),
            tp_link_gbps,
            tp_link_latency_us,
        })
    }

    /// The overhead in whole nanoseconds.
    pub fn step_overhead_ns(&self) -> u64 {
        (self.step_overhead_us * 1e3).round() as u64
    }

    /// One ring all-reduce of `bytes` over `tp` ranks in ns: each rank sends and receives
    /// 2·(tp−1)/tp of the data over its link, in 2·(tp−1) latency-bound hops. `None` without a
    /// link bandwidth.
    pub fn all_reduce_ns(&self, bytes: f64, tp: u32) -> Option<f64> {
        let gbps = self.tp_link_gbps.filter(|&g| g > 0.0)?;
        if tp <= 1 {
            return Some(0.0);
        }
        let steps = 2.0 * (tp as f64 - 1.0);
        Some(steps / tp as f64 * bytes / gbps + steps * self.tp_link_latency_us * 1e3)
    }
}

/// A non-negative figure (µs, or GB/s for a link): finite, ≥ 0 and below 10⁶ (a larger one is
/// a unit error).
pub fn parse_figure(raw: &str) -> Result<f64, String> {
    let v: f64 = raw
        .trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| format!("`{raw}` is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{raw}` must be a finite number ≥ 0"));
    }
    if v >= 1e6 {
        return Err(format!(
            "`{raw}` is 10⁶ or more: check the unit (µs for times, GB/s for links)"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(OVERHEADS_FILE), text).unwrap();
    }

    #[test]
    fn reads_validates_and_defaults() {
        // Removed when `scratch` drops, whether the test passes or fails.
        let scratch = tempfile::Builder::new()
            .prefix("llm-emu-overheads-")
            .tempdir()
            .unwrap();
        let dir = scratch.path();
        let no_meta = Meta::parse(Path::new("meta.yaml"), "x: 1\n").unwrap();
        assert_eq!(
            Overheads::load(dir, &no_meta).unwrap(),
            Overheads::default()
        );
        // A profile whose meta.yaml identifies the built-in calibration gets it.
        let known = Meta::parse(
            Path::new("meta.yaml"),
            "vllm_version: 0.19.0\nhardware: RTXPRO6000\nprofiled_at: '2026-04-24T12:44:27+00:00'\nmodel: meta-llama/Llama-3.1-8B\n",
        )
        .unwrap();
        let cal = Overheads::load(dir, &known).unwrap();
        assert!(cal.step_overhead_us > 0.0);
        assert!(cal.source.unwrap().contains("built-in calibration"));
        let other = Meta::parse(
            Path::new("meta.yaml"),
            "vllm_version: 0.19.0\nhardware: H100\nprofiled_at: '2026-04-24T12:44:27+00:00'\nmodel: meta-llama/Llama-3.1-8B\n",
        )
        .unwrap();
        assert_eq!(Overheads::load(dir, &other).unwrap(), Overheads::default());
        write(
            dir,
            "# note\nstep_overhead_us: 540.5\nobtained_by: a note\n",
        );
        let o = Overheads::load(dir, &no_meta).unwrap();
        assert_eq!(o.step_overhead_us, 540.5);
        assert_eq!(o.step_overhead_ns(), 540_500);
        assert_eq!(o.all_reduce_ns(1e6, 2), None);
        write(
            dir,
            "step_overhead_us: 0\ntp_link_gbps: 50\ntp_link_latency_us: 5\n",
        );
        let o = Overheads::load(dir, &no_meta).unwrap();
        // 2 ranks: 1 MB crosses the 50 GB/s link once (20 µs) in 2 hops of 5 µs.
        assert_eq!(o.all_reduce_ns(1e6, 2), Some(20_000.0 + 10_000.0));
        assert_eq!(o.all_reduce_ns(1e6, 1), Some(0.0));
        for bad in [
            "step_overhead_us: -3\n",
            "step_overhead_us: nan\n",
            "step_overhead_us: 2.5e6\n",
            "step_overhead_us: 1\ntp_link_gbps: -5\n",
            "step_overhead_us: fast\n",
            "obtained_by: only a note\n",
        ] {
            write(dir, bad);
            let e = Overheads::load(dir, &no_meta).unwrap_err().to_string();
            let key = bad.lines().last().unwrap().split(':').next().unwrap();
            let key = if key == "obtained_by" {
                "step_overhead_us"
            } else {
                key
            };
            assert!(e.contains("overheads.yaml") && e.contains(key), "{e}");
        }
    }
}
