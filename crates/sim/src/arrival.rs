//! When each request is sent, in seconds from the start of the run.
//!
//! As `vllm bench serve`'s `get_request`: gaps drawn from gamma(shape = burstiness,
//! scale = 1/(rate·burstiness)) with numpy's legacy generator seeded by `--seed` (so the same
//! seed gives vLLM's very arrival times), summed, then rescaled so that the last request goes
//! out at exactly N/rate. Rate `inf` sends everything at 0; burstiness `inf` spaces requests
//! evenly by 1/rate. A replayed workload brings its own times.

use crate::pyrand::NumpyLegacy;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ArrivalError {
    #[error("--request-rate must be a positive number or inf, got {0}")]
    BadRate(f64),
    #[error("--burstiness must be a positive number, got {0}")]
    BadBurstiness(f64),
    #[error("--seed must be in [0, 2^32) to seed numpy's generator as vLLM does, got {0}")]
    BadSeed(i64),
    #[error("no requests to send")]
    Empty,
}

/// The send offsets (seconds from the start) of `n` requests at `rate` requests/s.
pub fn send_offsets(
    n: usize,
    rate: f64,
    burstiness: f64,
    seed: i64,
) -> Result<Vec<f64>, ArrivalError> {
    if rate.is_nan() || rate <= 0.0 {
        return Err(ArrivalError::BadRate(rate));
    }
    if burstiness.is_nan() || burstiness <= 0.0 {
        return Err(ArrivalError::BadBurstiness(burstiness));
    }
    if n == 0 {
        return Err(ArrivalError::Empty);
    }
    let seed = u32::try_from(seed).map_err(|_| ArrivalError::BadSeed(seed))?;
    let mut rng = NumpyLegacy::new(seed);
    let mut delays: Vec<f64> = (0..n)
        .map(|_| {
            if rate == f64::INFINITY {
                0.0
            } else if burstiness == f64::INFINITY {
                1.0 / rate
            } else {
                rng.gamma(burstiness, 1.0 / (rate * burstiness))
            }
        })
        .collect();
    for i in 1..n {
        delays[i] += delays[i - 1];
    }
    let last = delays[n - 1];
    if last != 0.0 {
        let factor = (n as f64 / rate) / last;
        for d in &mut delays {
            *d *= factor;
        }
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_rescaled_to_n_over_rate() {
        let d = send_offsets(1000, 50.0, 1.0, 0).unwrap();
        assert!((d[999] - 20.0).abs() < 1e-9);
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        // Same seed, same times; another seed, other times.
        assert_eq!(d, send_offsets(1000, 50.0, 1.0, 0).unwrap());
        assert_ne!(d, send_offsets(1000, 50.0, 1.0, 1).unwrap());
    }

    #[test]
    fn matches_vllm_get_request() {
        // vLLM 0.19's get_request after np.random.seed(0), 5 requests at 40/s (its delay_ts).
        let d = send_offsets(5, 40.0, 1.0, 0).unwrap();
        let want = [
            0.023064665001544856,
            0.059461888453015095,
            0.08621715245662005,
            0.10903046118909028,
            0.125,
        ];
        for (x, y) in d.iter().zip(want) {
            assert!((x - y).abs() < 1e-15, "{d:?}");
        }
    }

    #[test]
    fn infinite_rate_and_burstiness() {
        assert_eq!(
            send_offsets(3, f64::INFINITY, 1.0, 0).unwrap(),
            vec![0.0; 3]
        );
        let d = send_offsets(4, 2.0, f64::INFINITY, 0).unwrap();
        assert_eq!(d, vec![0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            send_offsets(3, 0.0, 1.0, 0),
            Err(ArrivalError::BadRate(0.0))
        );
        assert!(send_offsets(3, f64::NAN, 1.0, 0).is_err());
        assert!(send_offsets(3, 1.0, -1.0, 0).is_err());
        assert_eq!(send_offsets(0, 1.0, 1.0, 0), Err(ArrivalError::Empty));
        assert_eq!(
            send_offsets(3, 1.0, 1.0, -5),
            Err(ArrivalError::BadSeed(-5))
        );
    }
}
