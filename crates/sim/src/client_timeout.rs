//! A client's total time limit per request, as aiohttp (the HTTP client of inference-perf)
//! applies it.
//!
//! aiohttp 3.x (`client.py`, `helpers.py`): a session made without a timeout uses
//! `DEFAULT_TIMEOUT = ClientTimeout(total=5 * 60, sock_connect=30)`, so every request of a
//! client that sets none ends in `asyncio.TimeoutError` 300 s after it starts unless its
//! response was read whole by then. The deadline is a timer on the event loop,
//! `TimerHandle.start`: `when = loop.time() + total`, rounded up to the loop clock's next
//! whole second when `total ≥ ceil_threshold` (5 s by default). Failures of a 300 s limit so
//! end 300.0–301.0 s after their send (the lifecycle metrics of inference-perf runs show
//! exactly that spread). The phase of the loop clock against the run's clock is not recorded;
//! the emulated clock's whole seconds stand for it.
//!
//! When the limit fires, the client closes the connection; vLLM's API server sees the
//! disconnect and aborts the request, which frees its KV blocks. The replay does both: the
//! request counts as failed at its deadline, and the engine aborts it then.

use llm_emu_core::Nanos;

/// aiohttp's `DEFAULT_TIMEOUT.total`, s.
pub const AIOHTTP_DEFAULT_TOTAL_S: f64 = 300.0;

/// aiohttp's `ClientTimeout.ceil_threshold` default, s: limits at least this long end on a
/// whole second of the loop clock.
pub const AIOHTTP_CEIL_THRESHOLD_S: f64 = 5.0;

/// A total limit per request, from its send to its response's last byte.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientTimeout {
    /// Seconds, > 0.
    pub total_s: f64,
    /// Whether deadlines are rounded up to a whole second (aiohttp: `total ≥ 5 s`).
    pub ceil_to_second: bool,
}

impl ClientTimeout {
    /// aiohttp's limit of `total_s` seconds (`ClientTimeout(total=…)`); `None` for a total of
    /// 0 or less, for which aiohttp starts no timer.
    pub fn aiohttp(total_s: f64) -> Option<ClientTimeout> {
        ClientTimeout::exact(total_s).map(|t| ClientTimeout {
            ceil_to_second: total_s >= AIOHTTP_CEIL_THRESHOLD_S,
            ..t
        })
    }

    /// A limit of exactly `total_s` seconds from each send (`None` for a total ≤ 0).
    pub fn exact(total_s: f64) -> Option<ClientTimeout> {
        (total_s > 0.0 && total_s.is_finite()).then_some(ClientTimeout {
            total_s,
            ceil_to_second: false,
        })
    }

    /// When a request sent at `send` fails if its response has not ended.
    pub fn deadline(&self, send: Nanos) -> Nanos {
        let when = send.as_secs_f64() + self.total_s;
        let when = if self.ceil_to_second {
            when.ceil()
        } else {
            when
        };
        Nanos::from_secs_f64(when)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_limits_end_on_the_next_whole_second() {
        let t = ClientTimeout::aiohttp(AIOHTTP_DEFAULT_TOTAL_S).unwrap();
        assert!(t.ceil_to_second);
        assert_eq!(
            t.deadline(Nanos::from_secs_f64(10.25)),
            Nanos::from_secs_f64(311.0)
        );
        assert_eq!(
            t.deadline(Nanos::from_secs_f64(10.0)),
            Nanos::from_secs_f64(310.0)
        );
        // Every deadline is 300–301 s after its send.
        for i in 0..1000 {
            let send = Nanos::from_secs_f64(i as f64 * 0.137);
            let d = (t.deadline(send) - send).as_secs_f64();
            assert!((300.0..301.0 + 1e-6).contains(&d), "{d}");
        }
    }

    #[test]
    fn short_limits_are_exact_and_none_means_no_timer() {
        let t = ClientTimeout::aiohttp(2.5).unwrap();
        assert!(!t.ceil_to_second);
        assert_eq!(
            t.deadline(Nanos::from_secs_f64(1.25)),
            Nanos::from_secs_f64(3.75)
        );
        assert!(ClientTimeout::aiohttp(5.0).unwrap().ceil_to_second);
        assert_eq!(ClientTimeout::aiohttp(0.0), None);
        assert_eq!(ClientTimeout::aiohttp(-1.0), None);
        assert_eq!(ClientTimeout::aiohttp(f64::NAN), None);
    }
}
