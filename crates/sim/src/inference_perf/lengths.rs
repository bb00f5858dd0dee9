//! Token counts that inference-perf draws from a distribution: a shared-prefix run's system
//! prompt, question and output lengths written as a `Distribution` (inline, or the legacy
//! `question_distribution` / `output_distribution`), and a `random` run's
//! `input_distribution` / `output_distribution`.
//!
//! Read from inference-perf's source (`config/common.py` `Distribution`,
//! `utils/numeric/distribution/utils.py`, whose two samplers differ):
//!
//! - `sample_from_distribution` (the shared-prefix generator since its distributions, April
//!   2026): `normal`, `skew_normal` (Azzalini's two-normal method), `lognormal` (moments
//!   matched to `mean` and `std_dev`), `uniform` over `[min, max + 1)`, `poisson` of `mean`,
//!   `fixed` (`int(mean)`).
//! - `generate_distribution` (the `random` generator, and the shared-prefix one before April
//!   2026, which knew `normal` only): `normal` with a `mean` inside `[min, max]`, `lognormal`
//!   shifted so that `min` is its zero, `uniform` over `[min, max)`, `fixed`; other types raise.
//!
//! Both clip a draw to `[min, max]`, round it half to even (`np.round`) and clip again.
//! inference-perf draws with numpy's generator, seeded by the run's `seed` or by the clock; the
//! draws here come from the emulator's own seeded generator: the same distribution, not the
//! same numbers, so a run's lengths agree in distribution, not request by request.

use crate::whole_number::value_i64;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson, StandardNormal};
use serde_json::Value;

/// The shape of a `Distribution` (`DistributionType`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Normal,
    /// Skewness parameter α of the skew-normal.
    SkewNormal(f64),
    LogNormal,
    Uniform,
    Poisson,
    Fixed,
}

/// Which of inference-perf's two samplers a generator calls (they differ for `uniform` and
/// `lognormal`, and in the shapes they accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    /// `sample_from_distribution` (shared-prefix lengths).
    SampleFromDistribution,
    /// `generate_distribution` (`random` data).
    GenerateDistribution,
}

/// inference-perf's `Distribution`: clipped to `[min, max]` (tokens).
#[derive(Clone, Debug, PartialEq)]
pub struct LengthDistribution {
    pub shape: Shape,
    pub min: i64,
    pub max: i64,
    pub mean: f64,
    pub std_dev: f64,
    /// `total_count`: how many lengths the `random` generator draws (its prompt count).
    pub total_count: Option<usize>,
}

/// A length setting: a whole number, or a distribution to draw from.
#[derive(Clone, Debug, PartialEq)]
pub enum Lengths {
    Fixed(usize),
    Drawn(LengthDistribution),
}

impl Lengths {
    /// `n` lengths (each ≥ 0).
    pub fn draw(&self, n: usize, sampler: Sampler, rng: &mut impl Rng) -> Vec<usize> {
        match self {
            Lengths::Fixed(v) => vec![*v; n],
            Lengths::Drawn(d) => d.draw(n, sampler, rng),
        }
    }

    /// The longest length the setting allows (`fixed` gives `int(mean)`, unclipped).
    pub fn longest(&self) -> usize {
        match self {
            Lengths::Fixed(v) => *v,
            Lengths::Drawn(d) => d.longest(),
        }
    }

    /// In words, for reports: `50`, or `normal(mean 200, sd 80) in [10, 2000]`.
    pub fn describe(&self) -> String {
        match self {
            Lengths::Fixed(v) => v.to_string(),
            Lengths::Drawn(d) => d.describe(),
        }
    }
}

impl LengthDistribution {
    /// Reads a `Distribution` object, with pydantic's defaults for absent keys (min 10, max
    /// 1024, mean 512, std_dev 200, normal). `Err` holds the message, naming the key.
    pub fn from_json(v: &Value) -> Result<LengthDistribution, String> {
        let Some(o) = v.as_object() else {
            return Err(
                "neither a whole number nor a distribution (min, max, mean, std_dev)".into(),
            );
        };
        // pydantic's `extra="forbid"` (`StrictBaseModel`): a misspelt key is an error there.
        if let Some(k) = o.keys().find(|k| !DISTRIBUTION_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "`{k}`: not a key of a distribution ({})",
                DISTRIBUTION_KEYS.join(", ")
            ));
        }
        let present = |k: &str| o.get(k).filter(|x| !x.is_null());
        let int = |k: &str, default: i64| -> Result<i64, String> {
            match present(k) {
                None => Ok(default),
                Some(x) => value_i64(x).ok_or_else(|| format!("`{k}`: not a whole number")),
            }
        };
        let num = |k: &str, default: f64| -> Result<f64, String> {
            match present(k) {
                None => Ok(default),
                Some(x) => x
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("`{k}`: not a number")),
            }
        };
        let min = int("min", 10)?;
        let max = int("max", 1024)?;
        let mean = num("mean", 512.0)?;
        let mut std_dev = num("std_dev", 200.0)?;
        if let Some(var) = present("variance") {
            let var = var
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or("`variance`: not a number ≥ 0")?;
            // The validator sets `std_dev = sqrt(variance)`, so a dumped config holds both;
            // given by hand, `variance` with a non-zero `std_dev` (200 when absent) is refused.
            let dumped = present("std_dev").is_some()
                && (std_dev - var.sqrt()).abs() <= 1e-9 * std_dev.max(1.0);
            if !dumped && std_dev > 0.0 {
                return Err(
                    "`std_dev` and `variance` both set (inference-perf: \"Specify either \
                     'std_dev' or 'variance', not both\"; `std_dev` is 200 when absent)"
                        .into(),
                );
            }
            std_dev = var.sqrt();
        }
        if min > max {
            return Err(format!("min ({min}) is greater than max ({max})"));
        }
        if std_dev < 0.0 {
            return Err("`std_dev` is negative".into());
        }
        let shape = match present("type").map(|t| t.as_str()) {
            None | Some(Some("normal")) => Shape::Normal,
            Some(Some("skew_normal")) => Shape::SkewNormal(num("skew", 0.0)?),
            Some(Some("lognormal")) => Shape::LogNormal,
            Some(Some("uniform")) => Shape::Uniform,
            Some(Some("poisson")) => Shape::Poisson,
            Some(Some("fixed")) => Shape::Fixed,
            Some(other) => {
                return Err(format!(
                    "`type` {}: not one of normal, skew_normal, lognormal, uniform, poisson, fixed",
                    other.map_or_else(|| present("type").unwrap().to_string(), str::to_string)
                ))
            }
        };
        let total_count = match present("total_count") {
            None => None,
            Some(x) => Some(
                value_i64(x)
                    .filter(|&n| n > 0)
                    .ok_or("`total_count`: not a whole number > 0")? as usize,
            ),
        };
        Ok(LengthDistribution {
            shape,
            min,
            max,
            mean,
            std_dev,
            total_count,
        })
    }

    /// Whether `sampler` accepts these settings, as inference-perf checks them before drawing;
    /// `Err` holds its complaint.
    pub fn check(&self, sampler: Sampler) -> Result<(), String> {
        // Parameters whose derived figures overflow (Python raises `OverflowError` there).
        match self.shape {
            Shape::LogNormal => {
                let m = match sampler {
                    Sampler::SampleFromDistribution => self.mean,
                    Sampler::GenerateDistribution if self.mean - (self.min as f64) > 0.0 => {
                        self.mean - self.min as f64
                    }
                    Sampler::GenerateDistribution => 1.0,
                };
                if m > 0.0 && !(self.std_dev / m).powi(2).is_finite() {
                    return Err(format!(
                        "a lognormal of mean {} and std_dev {} overflows",
                        self.mean, self.std_dev
                    ));
                }
            }
            Shape::SkewNormal(a) if !(a * a).is_finite() => {
                return Err(format!("skew {a}: its square overflows"));
            }
            // numpy's limit on λ (`lam value too large`), and rand_distr's.
            Shape::Poisson if self.mean > MAX_POISSON_MEAN => {
                return Err(format!(
                    "a Poisson mean of {} is too large (at most {MAX_POISSON_MEAN:e})",
                    self.mean
                ));
            }
            _ => {}
        }
        match (sampler, self.shape) {
            (Sampler::SampleFromDistribution, Shape::LogNormal) if self.mean <= 0.0 => {
                Err("a lognormal distribution needs a mean > 0".into())
            }
            (Sampler::GenerateDistribution, Shape::Normal)
                if self.mean < self.min as f64 || self.mean > self.max as f64 =>
            {
                Err(format!(
                    "the mean {} is outside [min, max] = [{}, {}]",
                    self.mean, self.min, self.max
                ))
            }
            (Sampler::GenerateDistribution, Shape::SkewNormal(_) | Shape::Poisson) => Err(
                "the `random` generator's sampler knows normal, lognormal, uniform and fixed only"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The longest length these settings draw (`fixed`: `int(mean)`, which is not clipped).
    pub fn longest(&self) -> usize {
        match self.shape {
            Shape::Fixed => self.mean.trunc().max(0.0) as usize,
            _ => self.max.max(0) as usize,
        }
    }

    /// `n` lengths, each clipped to `[min, max]` and rounded half to even (then never below 0).
    /// The settings must pass [`Self::check`].
    pub fn draw(&self, n: usize, sampler: Sampler, rng: &mut impl Rng) -> Vec<usize> {
        if self.shape == Shape::Fixed {
            // Python's `int(mean)` truncates; no clipping applies.
            return vec![self.mean.trunc().max(0.0) as usize; n];
        }
        let (lo, hi) = (self.min as f64, self.max as f64);
        (0..n)
            .map(|_| {
                let x = self.raw(sampler, rng);
                x.clamp(lo, hi).round_ties_even().clamp(lo, hi).max(0.0) as usize
            })
            .collect()
    }

    /// One unclipped draw.
    fn raw(&self, sampler: Sampler, rng: &mut impl Rng) -> f64 {
        let (lo, hi) = (self.min as f64, self.max as f64);
        match (self.shape, sampler) {
            (Shape::Fixed, _) => self.mean.trunc(),
            (Shape::Normal, _) => Normal::new(self.mean, self.std_dev)
                .expect("std_dev ≥ 0, finite")
                .sample(rng),
            (Shape::SkewNormal(alpha), _) => {
                let delta = alpha / (1.0 + alpha * alpha).sqrt();
                let u0: f64 = StandardNormal.sample(rng);
                let v: f64 = StandardNormal.sample(rng);
                let u1 = delta * u0 + (1.0 - delta * delta).sqrt() * v;
                self.mean + self.std_dev * if u0 >= 0.0 { u1 } else { -u1 }
            }
            (Shape::LogNormal, Sampler::SampleFromDistribution) => {
                if self.std_dev <= 0.0 {
                    self.mean
                } else {
                    moment_matched(self.mean, self.std_dev).sample(rng)
                }
            }
            (Shape::LogNormal, Sampler::GenerateDistribution) => {
                let shifted = if self.mean - lo <= 0.0 {
                    1.0
                } else {
                    self.mean - lo
                };
                moment_matched(shifted, self.std_dev).sample(rng) + lo
            }
            (Shape::Uniform, s) => {
                let top = match s {
                    Sampler::SampleFromDistribution => hi + 1.0,
                    Sampler::GenerateDistribution => hi,
                };
                let u: f64 = rng.random();
                lo + (top - lo) * u
            }
            (Shape::Poisson, _) => {
                let lambda = if self.mean > 0.0 { self.mean } else { 1.0 };
                Poisson::new(lambda).expect("λ > 0").sample(rng)
            }
        }
    }

    pub fn describe(&self) -> String {
        let shape = match self.shape {
            Shape::Normal => "normal(",
            Shape::SkewNormal(_) => "skew_normal(",
            Shape::LogNormal => "lognormal(",
            Shape::Uniform => "uniform(",
            Shape::Poisson => "poisson(",
            Shape::Fixed => "fixed(",
        };
        let skew = match self.shape {
            Shape::SkewNormal(a) => format!("skew {a}, "),
            _ => String::new(),
        };
        format!(
            "{shape}{skew}mean {}, sd {}) in [{}, {}]",
            self.mean, self.std_dev, self.min, self.max
        )
    }
}

/// The keys of inference-perf's `Distribution`.
const DISTRIBUTION_KEYS: [&str; 8] = [
    "min",
    "max",
    "mean",
    "std_dev",
    "total_count",
    "type",
    "variance",
    "skew",
];

/// The largest Poisson mean drawn (numpy refuses λ above about 9.2e18, rand_distr above
/// 1.8e19).
const MAX_POISSON_MEAN: f64 = 9.2e18;

/// The lognormal whose own mean and standard deviation are `mean` and `sd` (`sd` ≥ 0).
fn moment_matched(mean: f64, sd: f64) -> LogNormal<f64> {
    let sigma2 = (1.0 + (sd / mean).powi(2)).ln();
    LogNormal::new(mean.ln() - sigma2 / 2.0, sigma2.sqrt()).expect("σ ≥ 0, finite")
}

/// Reads a length key: a whole number ≥ 0 or a `Distribution` object.
pub fn lengths_from_json(v: &Value) -> Result<Lengths, String> {
    if v.is_number() {
        return value_i64(v)
            .filter(|&n| n >= 0)
            .map(|n| Lengths::Fixed(n as usize))
            .ok_or_else(|| "not a whole number ≥ 0".into());
    }
    LengthDistribution::from_json(v).map(Lengths::Drawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;
    use serde_json::json;

    fn dist(v: Value) -> LengthDistribution {
        LengthDistribution::from_json(&v).unwrap()
    }

    fn mean_sd(xs: &[usize]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<usize>() as f64 / n;
        let v = xs.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        (m, v.sqrt())
    }

    #[test]
    fn draws_follow_the_configured_shape_within_bounds() {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let n = 40_000;
        let s = Sampler::SampleFromDistribution;
        // A normal far from its bounds keeps its mean and spread.
        let d = dist(json!({"mean": 500, "std_dev": 50, "min": 1, "max": 2000}));
        let (m, sd) = mean_sd(&d.draw(n, s, &mut rng));
        assert!(
            (m - 500.0).abs() < 2.0 && (sd - 50.0).abs() < 1.5,
            "{m} {sd}"
        );
        // Clipped: nothing outside [min, max], and the bounds collect the tails.
        let d = dist(json!({"mean": 100, "std_dev": 100, "min": 50, "max": 150}));
        let xs = d.draw(n, s, &mut rng);
        assert!(xs.iter().all(|&x| (50..=150).contains(&x)));
        assert!(xs.iter().filter(|&&x| x == 50).count() > n / 5);
        // Lognormal: moments matched to mean and std_dev.
        let d =
            dist(json!({"type": "lognormal", "mean": 150, "std_dev": 60, "min": 1, "max": 100000}));
        let (m, sd) = mean_sd(&d.draw(n, s, &mut rng));
        assert!(
            (m - 150.0).abs() < 2.0 && (sd - 60.0).abs() < 3.0,
            "{m} {sd}"
        );
        // Skew-normal with a positive skew: the mean sits above the location parameter.
        let d = dist(
            json!({"type": "skew_normal", "mean": 200, "std_dev": 80, "skew": 2.5, "min": 10, "max": 2000}),
        );
        let (m, _) = mean_sd(&d.draw(n, s, &mut rng));
        let delta = 2.5 / (1.0f64 + 6.25).sqrt();
        let expected = 200.0 + 80.0 * delta * (2.0 / std::f64::consts::PI).sqrt();
        assert!((m - expected).abs() < 2.0, "{m} {expected}");
        // Uniform over [min, max + 1) here, [min, max) for the random generator's sampler.
        let d = dist(json!({"type": "uniform", "min": 10, "max": 12}));
        let xs = d.draw(n, s, &mut rng);
        assert!(xs.iter().all(|x| (10..=12).contains(x)));
        // [10, 13) clipped to 12 then rounded: 10 a sixth, 11 a third, 12 half the time;
        // [10, 12): 10 and 12 a quarter each.
        let (m, _) = mean_sd(&xs);
        assert!((m - 34.0 / 3.0).abs() < 0.05, "{m}");
        let (m, _) = mean_sd(&d.draw(n, Sampler::GenerateDistribution, &mut rng));
        assert!((m - 11.0).abs() < 0.05, "{m}");
        // Poisson of the mean; fixed is int(mean) without a draw.
        let d = dist(json!({"type": "poisson", "mean": 30, "min": 0, "max": 1000}));
        let (m, sd) = mean_sd(&d.draw(n, s, &mut rng));
        assert!(
            (m - 30.0).abs() < 0.3 && (sd - 30f64.sqrt()).abs() < 0.2,
            "{m} {sd}"
        );
        let d = dist(json!({"type": "fixed", "mean": 41.9}));
        assert_eq!(d.draw(3, s, &mut rng), vec![41, 41, 41]);
    }

    #[test]
    fn the_random_generators_lognormal_starts_at_min() {
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let d = dist(
            json!({"type": "lognormal", "mean": 600, "std_dev": 100, "min": 500, "max": 100000}),
        );
        let (m, sd) = mean_sd(&d.draw(40_000, Sampler::GenerateDistribution, &mut rng));
        // Shifted: a lognormal of mean 100, sd 100, plus 500.
        assert!(
            (m - 600.0).abs() < 2.0 && (sd - 100.0).abs() < 6.0,
            "{m} {sd}"
        );
    }

    #[test]
    fn rounding_is_half_to_even() {
        // A zero-width normal at 2.5 rounds to 2, at 3.5 to 4 (numpy's round).
        let at = |mean: f64| {
            dist(json!({"mean": mean, "std_dev": 0, "min": 0, "max": 10})).draw(
                1,
                Sampler::SampleFromDistribution,
                &mut Pcg64Mcg::seed_from_u64(1),
            )[0]
        };
        assert_eq!((at(2.5), at(3.5), at(3.2)), (2, 4, 3));
    }

    #[test]
    fn settings_inference_perf_refuses_are_refused() {
        let err = |v: Value| LengthDistribution::from_json(&v).unwrap_err();
        assert!(err(json!({"min": 5, "max": 4})).contains("greater than max"));
        assert!(err(json!({"std_dev": -1})).contains("negative"));
        assert!(err(json!({"type": "zipf"})).contains("zipf"));
        assert!(err(json!({"std_dev": 3, "variance": 4})).contains("both"));
        // Given alone, `std_dev` is 200: refused as inference-perf refuses it.
        assert!(err(json!({"variance": 16})).contains("both"));
        // As inference-perf dumps a validated config: both, std_dev = sqrt(variance).
        assert_eq!(dist(json!({"std_dev": 4.0, "variance": 16.0})).std_dev, 4.0);
        assert!(err(json!({"mean": 5, "std": 3})).contains("`std`: not a key"));
        assert!(
            dist(json!({"type": "lognormal", "mean": 1, "std_dev": 1e160}))
                .check(Sampler::SampleFromDistribution)
                .unwrap_err()
                .contains("overflows")
        );
        assert!(dist(json!({"type": "poisson", "mean": 1e20}))
            .check(Sampler::SampleFromDistribution)
            .unwrap_err()
            .contains("too large"));
        assert!(dist(json!({"type": "skew_normal", "skew": 1e200}))
            .check(Sampler::SampleFromDistribution)
            .is_err());
        assert_eq!(
            dist(json!({"type": "fixed", "mean": 4000, "min": 0, "max": 1})).longest(),
            4000
        );
        assert_eq!(lengths_from_json(&json!(7.0)).unwrap(), Lengths::Fixed(7));
        assert!(err(json!("many")).contains("neither"));
        let v = dist(json!({"variance": 16, "std_dev": 0}));
        assert_eq!(v.std_dev, 4.0);
        let g = Sampler::GenerateDistribution;
        assert!(dist(json!({"mean": 5000, "max": 100}))
            .check(g)
            .unwrap_err()
            .contains("outside"));
        assert!(dist(json!({"type": "poisson"})).check(g).is_err());
        assert!(dist(json!({"type": "poisson"}))
            .check(Sampler::SampleFromDistribution)
            .is_ok());
        let ln = dist(json!({"type": "lognormal", "mean": 0, "min": 0}));
        assert!(ln.check(Sampler::SampleFromDistribution).is_err());
        assert_eq!(lengths_from_json(&json!(7)).unwrap(), Lengths::Fixed(7));
        assert!(lengths_from_json(&json!(-7)).is_err());
        assert!(lengths_from_json(&json!(7.5)).is_err());
    }
}
