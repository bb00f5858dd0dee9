//! The latency model a run asks for, typed: parsed once from `--latency KIND:key=value,...`
//! (or detected from a `--profile PATH`, or chosen by the engine-argument rules), shown in
//! reports, and built into a [`LatencyModel`] for the model shape and hardware of the engine.
//! Paths stay [`PathBuf`]s from start to end, so they may hold any character, `,` included.

use super::aiconfigurator::AiconfiguratorLatency;
use super::profile::overheads::parse_figure;
use super::roofline::{self, LinearDtype, RooflineParams};
use super::step_cycle::DEFAULT_MIN_SAMPLES;
use super::vidur::VidurLatency;
use super::StepCycleLatency;
use super::{LatencyModel, LatencySpecError, LinearLatency, ProfileLatency, RooflineLatency};
use crate::gpu::{GpuSpec, DEFAULT_GPU};
use crate::sizing::ModelShape;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// One latency model and its parameters; `None` fields take the engine's value or the model's
/// default when built.
#[derive(Clone, Debug, PartialEq)]
pub enum LatencySpec {
    /// `linear:base_us=B,per_token_us=P[,per_req_us=R,per_ctx_us=C]`, µs (absent keys are 0).
    Linear {
        base_us: f64,
        per_token_us: f64,
        per_req_us: f64,
        per_ctx_us: f64,
    },
    /// `profile:dir=PATH[,tp=N,ep=N,step_overhead_us=F,tp_link_gbps=F,tp_link_latency_us=F]`:
    /// operator profiles measured on a GPU.
    Profile {
        dir: PathBuf,
        /// Tables of this TP degree (default: the engine's).
        tp: Option<u32>,
        /// Replaces the profile's measured per-step overhead, µs.
        step_overhead_us: Option<f64>,
        /// Replaces the TP all-reduce link bandwidth, GB/s.
        tp_link_gbps: Option<f64>,
        /// Replaces the latency of one ring hop, µs.
        tp_link_latency_us: Option<f64>,
        /// Expert-parallel ranks a mixture-of-experts model's experts are split over (default
        /// 1: every rank holds every expert, as vLLM without `--enable-expert-parallel`).
        ep: Option<u32>,
    },
    /// `roofline[:gpu=NAME,tp=N,dtype=bf16|fp8,gemm_eff=F,...]`: the analytical model.
    Roofline {
        /// Default: the engine's GPU.
        gpu: Option<&'static GpuSpec>,
        /// Default: the engine's TP degree.
        tp: Option<u64>,
        /// Expert-parallel ranks a mixture-of-experts model's experts are split over (default
        /// 1; the engine's expert-parallel size when it runs `--enable-expert-parallel`).
        ep: Option<u64>,
        dtype: Option<LinearDtype>,
        gemm_eff: Option<f64>,
        mem_eff: Option<f64>,
        attn_eff: Option<f64>,
        link_eff: Option<f64>,
        kernel_us: Option<f64>,
        ar_latency_us: Option<f64>,
        overhead_us: Option<f64>,
        /// `eff=fitted`: the GEMM/memory efficiencies and kernel time fitted from public
        /// operator tables for the GPU, where there are some (default: published figures).
        fitted: bool,
        /// `attn_tiles=on|off`: FlashAttention-2 decode attention priced in whole query tiles
        /// (default: the model's, [`RooflineParams::fa2_query_tiles`]).
        attn_tiles: Option<bool>,
    },
    /// `vidur:dir=PATH[,tp=N,all_reduce=FILE,overhead_us=F]`: Vidur's public operator
    /// measurements ([`super::vidur`]).
    Vidur {
        dir: PathBuf,
        /// Default: the engine's TP degree.
        tp: Option<u32>,
        /// Vidur's network table (default: `all_reduce.csv` in `dir`).
        all_reduce: Option<PathBuf>,
        /// Per-step time outside Vidur's model time, µs (default 0).
        overhead_us: Option<f64>,
    },
    /// `aiconfigurator:dir=PATH[,tp=N,overhead_us=F]`: NVIDIA aiconfigurator's operator
    /// tables ([`super::aiconfigurator`]).
    Aiconfigurator {
        dir: PathBuf,
        /// Default: the engine's TP degree.
        tp: Option<u32>,
        /// Per-step time outside the tables, µs (default 0).
        overhead_us: Option<f64>,
    },
    /// `step-cycle:path=FILE[,seed=N,min_samples=M]`: whole steps drawn from a profile pack.
    StepCycle {
        path: PathBuf,
        /// Default: the engine's seed.
        seed: Option<u64>,
        min_samples: usize,
    },
}

/// What a latency model takes from the engine when its spec does not name it.
#[derive(Clone, Debug, Default)]
pub struct HardwareDefaults {
    /// `--gpu`; only `roofline` and the profile's default TP link read it.
    pub gpu: Option<&'static GpuSpec>,
    pub tensor_parallel_size: Option<u64>,
    /// The engine's seed, for models that draw (step-cycle) and are given none.
    pub seed: u64,
    /// The TP all-reduce link a real run's cluster config records; the profile model prices
    /// its all-reduces with it unless the spec names `tp_link_gbps`.
    pub tp_link: Option<RecordedTpLink>,
    /// The size of the data-parallel group a mixture-of-experts model runs in without expert
    /// parallelism (`None` or 1: none). vLLM 0.19 then splits every expert's width over
    /// DP × TP GPUs and runs each rank's MoE layers on the group's gathered batch; the
    /// `profile` and `roofline` models price those layers so (docs/fleet.md). A profile
    /// spec's own `ep=` (experts split instead) takes precedence.
    pub moe_data_parallel: Option<u64>,
}

/// A TP all-reduce link as a run recorded it: bandwidth per GPU and latency per ring hop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordedTpLink {
    /// GB/s (10⁹ B/s), used as the all-reduce bus bandwidth as recorded.
    pub gbps: f64,
    /// One ring hop, µs.
    pub hop_latency_us: f64,
    /// Where it was read, for reports.
    pub source: String,
}

/// The spec's TP degree, else the engine's, else 1.
fn engine_tp(tp: Option<u32>, hw: &HardwareDefaults) -> Result<u32, LatencySpecError> {
    match (tp, hw.tensor_parallel_size) {
        (Some(tp), _) => Ok(tp),
        (None, Some(tp)) => u32::try_from(tp).map_err(|_| bad(format!("tp={tp}"), "too large")),
        (None, None) => Ok(1),
    }
}

fn bad(key: impl Into<String>, why: impl Into<String>) -> LatencySpecError {
    LatencySpecError::BadParam(key.into(), why.into())
}

/// `key=value` pairs of a spec's parameters, trimmed, empty items skipped.
fn pairs(params: &str) -> Result<Vec<(&str, &str, &str)>, LatencySpecError> {
    params
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(kv, "expected key=value"))?;
            Ok((kv, k.trim(), v.trim()))
        })
        .collect()
}

impl LatencySpec {
    /// The spec's kind as `--latency` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            LatencySpec::Linear { .. } => "linear",
            LatencySpec::Profile { .. } => "profile",
            LatencySpec::Roofline { .. } => "roofline",
            LatencySpec::StepCycle { .. } => "step-cycle",
            LatencySpec::Vidur { .. } => "vidur",
            LatencySpec::Aiconfigurator { .. } => "aiconfigurator",
        }
    }

    /// The operator profile at `dir` with every parameter at its default.
    pub fn profile(dir: impl Into<PathBuf>) -> LatencySpec {
        LatencySpec::Profile {
            dir: dir.into(),
            tp: None,
            step_overhead_us: None,
            tp_link_gbps: None,
            tp_link_latency_us: None,
            ep: None,
        }
    }

    /// The roofline with every parameter at its default (the engine's GPU and TP).
    pub fn roofline() -> LatencySpec {
        LatencySpec::Roofline {
            gpu: None,
            tp: None,
            ep: None,
            dtype: None,
            gemm_eff: None,
            mem_eff: None,
            attn_eff: None,
            link_eff: None,
            kernel_us: None,
            ar_latency_us: None,
            overhead_us: None,
            fitted: false,
            attn_tiles: None,
        }
    }

    /// Vidur's tables at `dir` with every parameter at its default.
    pub fn vidur(dir: impl Into<PathBuf>) -> LatencySpec {
        LatencySpec::Vidur {
            dir: dir.into(),
            tp: None,
            all_reduce: None,
            overhead_us: None,
        }
    }

    fn parse_vidur(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let mut spec = LatencySpec::vidur("");
        let mut has_dir = false;
        if let LatencySpec::Vidur {
            dir,
            tp,
            all_reduce,
            overhead_us,
        } = &mut spec
        {
            for (kv, k, v) in pairs(params)? {
                match k {
                    "dir" => {
                        *dir = PathBuf::from(v);
                        has_dir = true;
                    }
                    "tp" => {
                        *tp = Some(
                            v.parse()
                                .ok()
                                .filter(|&t| t >= 1)
                                .ok_or_else(|| bad(kv, "must be an integer >= 1"))?,
                        )
                    }
                    "all_reduce" => *all_reduce = Some(PathBuf::from(v)),
                    "overhead_us" => *overhead_us = Some(parse_figure(v).map_err(|e| bad(kv, e))?),
                    other => {
                        return Err(bad(other, "unknown key (dir, tp, all_reduce, overhead_us)"))
                    }
                }
            }
        }
        if !has_dir {
            return Err(bad(params, "vidur needs dir=PATH"));
        }
        Ok(spec)
    }

    /// aiconfigurator's tables at `dir` with every parameter at its default.
    pub fn aiconfigurator(dir: impl Into<PathBuf>) -> LatencySpec {
        LatencySpec::Aiconfigurator {
            dir: dir.into(),
            tp: None,
            overhead_us: None,
        }
    }

    fn parse_aiconfigurator(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let (mut dir, mut tp, mut overhead_us) = (None, None, None);
        for (kv, k, v) in pairs(params)? {
            match k {
                "dir" => dir = Some(PathBuf::from(v)),
                "tp" => {
                    tp = Some(
                        v.parse()
                            .ok()
                            .filter(|&t| t >= 1)
                            .ok_or_else(|| bad(kv, "must be an integer >= 1"))?,
                    )
                }
                "overhead_us" => overhead_us = Some(parse_figure(v).map_err(|e| bad(kv, e))?),
                other => return Err(bad(other, "unknown key (dir, tp, overhead_us)")),
            }
        }
        Ok(LatencySpec::Aiconfigurator {
            dir: dir.ok_or_else(|| bad(params, "aiconfigurator needs dir=PATH"))?,
            tp,
            overhead_us,
        })
    }

    /// The step-cycle pack at `path` with the engine's seed and the default pooling.
    pub fn step_cycle(path: impl Into<PathBuf>) -> LatencySpec {
        LatencySpec::StepCycle {
            path: path.into(),
            seed: None,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }

    fn parse_linear(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let (mut base_us, mut per_token_us, mut per_req_us, mut per_ctx_us) = (0.0, 0.0, 0.0, 0.0);
        for (kv, k, v) in pairs(params)? {
            let x: f64 = v.parse().map_err(|_| bad(kv, "not a number"))?;
            if !x.is_finite() || x < 0.0 {
                return Err(bad(kv, "must be a finite number >= 0"));
            }
            match k {
                "base_us" => base_us = x,
                "per_token_us" => per_token_us = x,
                "per_req_us" => per_req_us = x,
                "per_ctx_us" => per_ctx_us = x,
                other => {
                    return Err(bad(
                        other,
                        "unknown key (base_us, per_token_us, per_req_us, per_ctx_us)",
                    ))
                }
            }
        }
        Ok(LatencySpec::Linear {
            base_us,
            per_token_us,
            per_req_us,
            per_ctx_us,
        })
    }

    fn parse_profile(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let mut dir = None;
        let (mut tp, mut ep, mut step_overhead_us, mut tp_link_gbps, mut tp_link_latency_us) =
            (None, None, None, None, None);
        for (kv, k, v) in pairs(params)? {
            let num = || parse_figure(v).map_err(|e| bad(kv, e));
            match k {
                "dir" => dir = Some(PathBuf::from(v)),
                "tp" => {
                    tp = Some(
                        v.parse()
                            .ok()
                            .filter(|&t| t >= 1)
                            .ok_or_else(|| bad(kv, "must be an integer >= 1"))?,
                    )
                }
                "ep" => {
                    ep = Some(
                        v.parse()
                            .ok()
                            .filter(|&e| e >= 1)
                            .ok_or_else(|| bad(kv, "must be an integer >= 1"))?,
                    )
                }
                "step_overhead_us" => step_overhead_us = Some(num()?),
                "tp_link_gbps" => tp_link_gbps = Some(num()?),
                "tp_link_latency_us" => tp_link_latency_us = Some(num()?),
                other => {
                    return Err(bad(
                        other,
                        "unknown key (dir, tp, ep, step_overhead_us, tp_link_gbps, \
                         tp_link_latency_us)",
                    ))
                }
            }
        }
        Ok(LatencySpec::Profile {
            dir: dir.ok_or_else(|| bad(params, "profile needs dir=PATH"))?,
            tp,
            step_overhead_us,
            tp_link_gbps,
            tp_link_latency_us,
            ep,
        })
    }

    pub(crate) fn parse_roofline(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let kv = pairs(params)?;
        let get = |key: &str| kv.iter().rev().find(|(_, k, _)| *k == key).map(|e| e.2);
        let gpu = match get("gpu") {
            Some(name) => Some(GpuSpec::lookup(name).map_err(|e| bad("gpu", e.to_string()))?),
            None => None,
        };
        let tp = match get("tp") {
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| bad("tp", format!("`{v}` is not a positive integer")))?,
            ),
            None => None,
        };
        let mut spec = LatencySpec::roofline();
        if let LatencySpec::Roofline {
            gpu: g,
            tp: t,
            ep,
            dtype,
            gemm_eff,
            mem_eff,
            attn_eff,
            link_eff,
            kernel_us,
            ar_latency_us,
            overhead_us,
            fitted,
            attn_tiles,
        } = &mut spec
        {
            (*g, *t) = (gpu, tp);
            for &(_, k, v) in &kv {
                let num = || -> Result<Option<f64>, LatencySpecError> {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .map(Some)
                        .ok_or_else(|| bad(k, format!("`{v}` is not a number")))
                };
                match k {
                    "gpu" | "tp" => {}
                    "ep" => {
                        *ep =
                            Some(v.parse::<u64>().ok().filter(|&e| e >= 1).ok_or_else(|| {
                                bad("ep", format!("`{v}` is not a positive integer"))
                            })?)
                    }
                    "dtype" => {
                        *dtype = Some(match v.to_ascii_lowercase().as_str() {
                            "bf16" | "bfloat16" => LinearDtype::Bf16,
                            "fp8" => LinearDtype::Fp8,
                            _ => return Err(bad("dtype", format!("`{v}`: expected bf16 or fp8"))),
                        })
                    }
                    "gemm_eff" => *gemm_eff = num()?,
                    "mem_eff" => *mem_eff = num()?,
                    "attn_eff" => *attn_eff = num()?,
                    "link_eff" => *link_eff = num()?,
                    "kernel_us" => *kernel_us = num()?,
                    "ar_latency_us" => *ar_latency_us = num()?,
                    "overhead_us" => *overhead_us = num()?,
                    "attn_tiles" => {
                        *attn_tiles = Some(match v.to_ascii_lowercase().as_str() {
                            "on" => true,
                            "off" => false,
                            _ => {
                                return Err(bad("attn_tiles", format!("`{v}`: expected on or off")))
                            }
                        })
                    }
                    "eff" => {
                        *fitted = match v.to_ascii_lowercase().as_str() {
                            "fitted" => true,
                            "published" => false,
                            _ => {
                                return Err(bad(
                                    "eff",
                                    format!("`{v}`: expected fitted or published"),
                                ))
                            }
                        }
                    }
                    other => {
                        return Err(bad(
                            other,
                            "unknown key (gpu, tp, ep, dtype, gemm_eff, mem_eff, attn_eff, \
                             link_eff, kernel_us, ar_latency_us, overhead_us, eff, attn_tiles)",
                        ))
                    }
                }
            }
        }
        Ok(spec)
    }

    fn parse_step_cycle(params: &str) -> Result<LatencySpec, LatencySpecError> {
        let mut path = None;
        let mut seed = None;
        let mut min_samples = DEFAULT_MIN_SAMPLES;
        for (kv, k, v) in pairs(params)? {
            let int = |what: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(kv, format!("{what} must be an integer >= 0")))
            };
            match k {
                "path" => path = Some(PathBuf::from(v)),
                "seed" => seed = Some(int("seed")?),
                "min_samples" => {
                    min_samples = int("min_samples")? as usize;
                    if min_samples == 0 {
                        return Err(bad(kv, "min_samples must be >= 1"));
                    }
                }
                other => return Err(bad(other, "unknown key (path, seed, min_samples)")),
            }
        }
        Ok(LatencySpec::StepCycle {
            path: path.ok_or_else(|| bad(params, "step-cycle needs path=FILE"))?,
            seed,
            min_samples,
        })
    }

    /// The model for this shape and hardware; loads the model's data (profile tables, packs).
    pub fn build(
        &self,
        shape: &ModelShape,
        hw: &HardwareDefaults,
    ) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
        self.build_for(Some(shape), hw)
    }

    /// [`LatencySpec::build`], where models that need the shape refuse without one.
    pub(crate) fn build_for(
        &self,
        shape: Option<&ModelShape>,
        hw: &HardwareDefaults,
    ) -> Result<Box<dyn LatencyModel>, LatencySpecError> {
        let needs_shape = || {
            bad(
                self.to_string(),
                format!(
                    "the {} model needs the model shape (parse_latency_spec_with)",
                    self.kind()
                ),
            )
        };
        match self {
            &LatencySpec::Linear {
                base_us,
                per_token_us,
                per_req_us,
                per_ctx_us,
            } => Ok(Box::new(LinearLatency {
                base_us,
                per_token_us,
                per_req_us,
                per_ctx_us,
            })),
            LatencySpec::StepCycle {
                path,
                seed,
                min_samples,
            } => Ok(Box::new(
                StepCycleLatency::load(path, seed.unwrap_or(hw.seed), *min_samples)
                    .map_err(|e| bad(format!("path={}", path.display()), e.to_string()))?,
            )),
            LatencySpec::Profile { .. } => Ok(Box::new(
                self.build_profile(shape.ok_or_else(needs_shape)?, hw)?,
            )),
            LatencySpec::Roofline { .. } => Ok(Box::new(
                self.build_roofline(shape.ok_or_else(needs_shape)?, hw)?,
            )),
            LatencySpec::Vidur {
                dir,
                tp,
                all_reduce,
                overhead_us,
            } => {
                let tp = engine_tp(*tp, hw)?;
                Ok(Box::new(
                    VidurLatency::load(
                        dir,
                        shape.ok_or_else(needs_shape)?,
                        tp,
                        all_reduce.as_deref(),
                        overhead_us.unwrap_or(0.0),
                    )
                    .map_err(|e| bad(format!("dir={}", dir.display()), e.to_string()))?,
                ))
            }
            LatencySpec::Aiconfigurator {
                dir,
                tp,
                overhead_us,
            } => {
                let tp = engine_tp(*tp, hw)?;
                Ok(Box::new(
                    AiconfiguratorLatency::load(
                        dir,
                        shape.ok_or_else(needs_shape)?,
                        tp,
                        overhead_us.unwrap_or(0.0),
                    )
                    .map_err(|e| bad(format!("dir={}", dir.display()), e.to_string()))?,
                ))
            }
        }
    }

    /// The roofline model: the spec's GPU and TP, else the engine's, else the default GPU at
    /// TP 1; the spec's factors over the model's defaults; a real run's recorded TP link over
    /// the GPU's datasheet link unless the spec names `link_eff` or `ar_latency_us`.
    pub(crate) fn build_roofline(
        &self,
        shape: &ModelShape,
        hw: &HardwareDefaults,
    ) -> Result<RooflineLatency, LatencySpecError> {
        let LatencySpec::Roofline {
            gpu,
            tp,
            ep,
            dtype,
            gemm_eff,
            mem_eff,
            attn_eff,
            link_eff,
            kernel_us,
            ar_latency_us,
            overhead_us,
            fitted,
            attn_tiles,
        } = self
        else {
            return Err(bad(self.to_string(), "not a roofline spec"));
        };
        let gpu = match gpu.or(hw.gpu) {
            Some(g) => g,
            None => GpuSpec::lookup(DEFAULT_GPU).map_err(|e| bad("gpu", e.to_string()))?,
        };
        let tp = tp.or(hw.tensor_parallel_size).unwrap_or(1);
        let mut p = if *fitted {
            RooflineParams::fitted(gpu, tp)
        } else {
            RooflineParams::new(gpu, tp)
        };
        p.dtype = *dtype;
        p.ep = ep.unwrap_or(1);
        let set = |field: &mut f64, v: &Option<f64>| {
            if let Some(v) = v {
                *field = *v;
            }
        };
        set(&mut p.gemm_efficiency, gemm_eff);
        set(&mut p.memory_efficiency, mem_eff);
        set(&mut p.attention_efficiency, attn_eff);
        set(&mut p.link_efficiency, link_eff);
        set(&mut p.kernel_us, kernel_us);
        set(&mut p.allreduce_latency_us, ar_latency_us);
        set(&mut p.step_overhead_us, overhead_us);
        p.moe_data_parallel = hw.moe_data_parallel.unwrap_or(1).max(1);
        if let Some(on) = attn_tiles {
            p.fa2_query_tiles = *on;
        }
        // The link a real run recorded prices the all-reduces as it does for the profile
        // model (bus bandwidth as given, latency per ring hop), unless the spec names a link
        // factor of its own.
        if let Some(link) = hw
            .tp_link
            .as_ref()
            .filter(|_| tp > 1 && link_eff.is_none() && ar_latency_us.is_none())
        {
            p.recorded_link_gbs = Some(link.gbps);
            p.allreduce_latency_us = link.hop_latency_us * 2.0 * (tp as f64 - 1.0);
        }
        RooflineLatency::new(shape, p)
    }

    /// The profile model: the engine's TP selects the per-rank tables unless the spec names
    /// one; the all-reduce link is the spec's, else the run's recorded one, else the GPU's
    /// datasheet link at the roofline's achievable fraction.
    fn build_profile(
        &self,
        shape: &ModelShape,
        hw: &HardwareDefaults,
    ) -> Result<ProfileLatency, LatencySpecError> {
        let LatencySpec::Profile {
            dir,
            tp,
            step_overhead_us,
            tp_link_gbps,
            tp_link_latency_us,
            ep,
        } = self
        else {
            return Err(bad(self.to_string(), "not a profile spec"));
        };
        let tp = match (tp, hw.tensor_parallel_size) {
            (Some(tp), _) => *tp,
            (None, Some(tp)) if tp > 1 => {
                u32::try_from(tp).map_err(|_| bad(format!("tp={tp}"), "too large"))?
            }
            _ => 1,
        };
        let ep = ep.unwrap_or(1);
        let moe_dp = match hw.moe_data_parallel {
            Some(dp) if ep == 1 => u32::try_from(dp)
                .map_err(|_| bad(format!("data-parallel size {dp}"), "too large"))?,
            _ => 1,
        };
        let mut m = ProfileLatency::load(dir, shape, tp)
            .and_then(|m| m.with_ep_size(ep))
            .and_then(|m| m.with_moe_data_parallel(moe_dp))
            .map_err(|e| bad(format!("dir={}", dir.display()), e.to_string()))?;
        m.spec_overrides(*step_overhead_us, *tp_link_gbps, *tp_link_latency_us);
        if let Some(link) = hw.tp_link.as_ref().filter(|_| tp_link_gbps.is_none()) {
            m.recorded_tp_link(link.gbps, link.hop_latency_us, &link.source);
        }
        if let Some(gpu) = hw.gpu {
            // Without a measured link figure, the GPU's datasheet link at the roofline's
            // achievable fraction, and its per-all-reduce latency spread over the ring hops.
            let tp = m.tp() as u64;
            if tp > 1 {
                let hop_us = if gpu.uses_nvlink(tp) {
                    roofline::NVLINK_ALLREDUCE_US
                } else {
                    roofline::PCIE_ALLREDUCE_US
                } / (2.0 * (tp as f64 - 1.0));
                m.default_tp_link(
                    gpu.link_gbs(tp) * roofline::LINK_EFFICIENCY,
                    hop_us,
                    gpu.name,
                );
            }
        }
        Ok(m)
    }
}

impl FromStr for LatencySpec {
    type Err = LatencySpecError;

    /// Parses `KIND[:key=value,...]`.
    fn from_str(spec: &str) -> Result<LatencySpec, LatencySpecError> {
        let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
        match kind {
            "linear" => Self::parse_linear(params),
            "profile" => Self::parse_profile(params),
            "roofline" => Self::parse_roofline(params),
            "step-cycle" => Self::parse_step_cycle(params),
            "vidur" => Self::parse_vidur(params),
            "aiconfigurator" => Self::parse_aiconfigurator(params),
            other => Err(LatencySpecError::UnknownKind(other.to_string())),
        }
    }
}

/// `KIND[:key=value,...]` with the parameters that are set, for reports. It parses back to the
/// same spec unless a path holds `,`.
impl fmt::Display for LatencySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut params: Vec<String> = Vec::new();
        let mut opt = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                params.push(format!("{k}={v}"));
            }
        };
        match self {
            LatencySpec::Linear {
                base_us,
                per_token_us,
                per_req_us,
                per_ctx_us,
            } => {
                opt("base_us", Some(base_us.to_string()));
                opt("per_token_us", Some(per_token_us.to_string()));
                opt("per_req_us", Some(per_req_us.to_string()));
                opt("per_ctx_us", Some(per_ctx_us.to_string()));
            }
            LatencySpec::Profile {
                dir,
                tp,
                step_overhead_us,
                tp_link_gbps,
                tp_link_latency_us,
                ep,
            } => {
                opt("dir", Some(dir.display().to_string()));
                opt("tp", tp.map(|v| v.to_string()));
                opt("ep", ep.map(|v| v.to_string()));
                opt("step_overhead_us", step_overhead_us.map(|v| v.to_string()));
                opt("tp_link_gbps", tp_link_gbps.map(|v| v.to_string()));
                opt(
                    "tp_link_latency_us",
                    tp_link_latency_us.map(|v| v.to_string()),
                );
            }
            LatencySpec::Roofline {
                gpu,
                tp,
                ep,
                dtype,
                gemm_eff,
                mem_eff,
                attn_eff,
                link_eff,
                kernel_us,
                ar_latency_us,
                overhead_us,
                fitted,
                attn_tiles,
            } => {
                let s = |v: &Option<f64>| v.map(|v| v.to_string());
                opt("gpu", gpu.map(|g| g.name.to_string()));
                opt("tp", tp.map(|v| v.to_string()));
                opt("ep", ep.map(|v| v.to_string()));
                opt(
                    "dtype",
                    dtype.map(|d| {
                        match d {
                            LinearDtype::Bf16 => "bf16",
                            LinearDtype::Fp8 => "fp8",
                        }
                        .to_string()
                    }),
                );
                opt("gemm_eff", s(gemm_eff));
                opt("mem_eff", s(mem_eff));
                opt("attn_eff", s(attn_eff));
                opt("link_eff", s(link_eff));
                opt("kernel_us", s(kernel_us));
                opt("ar_latency_us", s(ar_latency_us));
                opt("overhead_us", s(overhead_us));
                opt("eff", fitted.then(|| "fitted".to_string()));
                opt(
                    "attn_tiles",
                    attn_tiles.map(|on| if on { "on" } else { "off" }.to_string()),
                );
            }
            LatencySpec::StepCycle {
                path,
                seed,
                min_samples,
            } => {
                opt("path", Some(path.display().to_string()));
                opt("seed", seed.map(|v| v.to_string()));
                opt(
                    "min_samples",
                    (*min_samples != DEFAULT_MIN_SAMPLES).then(|| min_samples.to_string()),
                );
            }
            LatencySpec::Vidur {
                dir,
                tp,
                all_reduce,
                overhead_us,
            } => {
                opt("dir", Some(dir.display().to_string()));
                opt("tp", tp.map(|v| v.to_string()));
                opt(
                    "all_reduce",
                    all_reduce.as_ref().map(|p| p.display().to_string()),
                );
                opt("overhead_us", overhead_us.map(|v| v.to_string()));
            }
            LatencySpec::Aiconfigurator {
                dir,
                tp,
                overhead_us,
            } => {
                opt("dir", Some(dir.display().to_string()));
                opt("tp", tp.map(|v| v.to_string()));
                opt("overhead_us", overhead_us.map(|v| v.to_string()));
            }
        }
        match params.is_empty() {
            true => f.write_str(self.kind()),
            false => write!(f, "{}:{}", self.kind(), params.join(",")),
        }
    }
}
