//! Client-side latencies: what a client of the real server would see, the engine's times plus
//! the API server's front end ([`FrontendLatency`]).
//!
//! A request is sent at its workload arrival time; the engine sees it then too (the way in is
//! added to the client's figures only: it delays every request by about the same amount, which
//! leaves the engine's queueing as it is). With [`ClientSide::queued_ways_in`] a request's way in
//! also waits for the ways in of the requests sent before it ([`ApiServerQueue`]), as on vLLM's
//! one API server; the engine still sees it at its send time. Each token reaches the client
//! `token_out_s(tokens in that iteration)` after the iteration that made it, so TTFT gets the way
//! in plus one way out, E2E the way in plus the last token's way out, and an inter-token gap the
//! difference of two ways out (zero when the batch did not change).
//!
//! Statistics follow `vllm bench serve` ([`crate::metrics`]): TTFT = first chunk − send, E2E =
//! last chunk − send, TPOT = (E2E − TTFT)/(outputs − 1), ITL = every gap between chunks.

use crate::client_timeout::ClientTimeout;
use crate::metrics::LatencyStats;
use llm_emu_core::{FinishReason, FinishedRequestStats, IterationStats, Nanos, RequestOutput};
use llm_emu_perf::{ApiServerQueue, FrontendLatency};
use rustc_hash::FxHashMap;

/// One finished request as its client saw it, ms from its send.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRequest {
    pub request_id: String,
    pub send_s: f64,
    pub prompt_len: usize,
    pub output_len: usize,
    pub ttft_ms: f64,
    pub e2el_ms: f64,
}

impl ClientRequest {
    /// `(E2E − TTFT)/(outputs − 1)`, for more than one output.
    pub fn tpot_ms(&self) -> Option<f64> {
        (self.output_len > 1).then(|| (self.e2el_ms - self.ttft_ms) / (self.output_len - 1) as f64)
    }
}

/// A request its client gave up on at its timeout ([`ClientSide::with_timeout`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TimedOut {
    pub request_id: String,
    pub send_s: f64,
    /// When the client gave up (its deadline), s.
    pub end_s: f64,
}

struct InFlight {
    send_s: f64,
    prompt_len: usize,
    in_s: f64,
    first_s: Option<f64>,
    last_s: f64,
    /// With a client timeout: when the client gives up, s, and the request's gaps between
    /// tokens, s, held until it is known to have ended in time (a failed request's gaps are
    /// not in the client's figures).
    deadline_s: Option<f64>,
    gaps_s: Vec<f64>,
}

/// Follows each request through the engine's outputs and keeps client-side figures.
pub struct ClientSide {
    fe: FrontendLatency,
    live: FxHashMap<u64, InFlight>,
    /// `vllm bench serve`'s summary statistics of the client-side figures.
    pub stats: LatencyStats,
    /// Finished requests, in finishing order (kept when asked for: `validate` pairs them).
    pub requests: Option<Vec<ClientRequest>>,
    /// Every inter-token gap, ms (kept when asked for: exact percentiles for `validate`).
    pub itl_ms: Option<Vec<f64>>,
    /// The API server's queue of ways in, when ways in queue ([`ClientSide::queued_ways_in`]).
    queue: Option<ApiServerQueue>,
    /// The client's total limit per request ([`ClientSide::with_timeout`]).
    timeout: Option<ClientTimeout>,
    /// Requests that failed at their timeout, in the order they were found to.
    pub timed_out: Vec<TimedOut>,
}

impl ClientSide {
    /// `keep` keeps the per-request figures and every gap (memory grows with the run).
    pub fn new(fe: FrontendLatency, keep: bool) -> ClientSide {
        ClientSide {
            fe,
            live: FxHashMap::default(),
            stats: LatencyStats::default(),
            requests: keep.then(Vec::new),
            itl_ms: keep.then(Vec::new),
            queue: None,
            timeout: None,
            timed_out: Vec::new(),
        }
    }

    /// A client that gives up on a request whose last chunk has not reached it by its
    /// deadline ([`ClientTimeout::deadline`] of its send): the request is a failure
    /// ([`ClientSide::timed_out`]), kept out of every figure. The engine is told by the driver
    /// ([`crate::driver::Client::timeout`]), which aborts it then.
    pub fn with_timeout(mut self, timeout: Option<ClientTimeout>) -> ClientSide {
        self.timeout = timeout;
        self
    }

    /// Queues each way in behind the ways in of the requests sent before it (the command line
    /// always does; requests must then be added in send order).
    pub fn queued_ways_in(mut self) -> ClientSide {
        self.queue = Some(ApiServerQueue::default());
        self
    }

    pub fn frontend(&self) -> &FrontendLatency {
        &self.fe
    }

    /// A request the engine accepted, sent at `send_s` (s).
    pub fn on_add(&mut self, tag: u64, send_s: f64, prompt_len: usize) {
        self.live.insert(
            tag,
            InFlight {
                send_s,
                prompt_len,
                in_s: match self.queue.as_mut() {
                    Some(q) => q.admit(&self.fe, send_s, prompt_len),
                    None => self.fe.request_in_s(prompt_len),
                },
                first_s: None,
                last_s: 0.0,
                deadline_s: self
                    .timeout
                    .map(|t| t.deadline(Nanos::from_secs_f64(send_s)).as_secs_f64()),
                gaps_s: Vec::new(),
            },
        );
    }

    /// One engine iteration: each token out reaches its client after the way out of a step of
    /// that many tokens; finished requests are recorded.
    pub fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        let tokens = outputs.iter().filter(|o| o.new_token.is_some()).count();
        let t = it.iteration_timestamp.as_secs_f64();
        let out_s = self.fe.token_out_s(tokens);
        for o in outputs.iter().filter(|o| o.new_token.is_some()) {
            let Some(r) = self.live.get_mut(&o.tag) else {
                continue;
            };
            // Chunks of one stream are written in order.
            let at = (t + r.in_s + out_s).max(r.last_s);
            if r.first_s.is_some() {
                let gap = at - r.last_s;
                if r.deadline_s.is_some() {
                    r.gaps_s.push(gap);
                } else {
                    record_gap(&mut self.stats, &mut self.itl_ms, gap);
                }
            } else {
                r.first_s = Some(at);
            }
            r.last_s = at;
        }
        for f in &it.finished_requests {
            self.finish(f);
        }
    }

    fn finish(&mut self, f: &FinishedRequestStats) {
        let Some(r) = self.live.remove(&f.tag) else {
            return;
        };
        if let Some(deadline_s) = r.deadline_s {
            // Aborted here only at its deadline; or it ended in the engine in time but its
            // last chunk reached the client too late.
            if f.finish_reason == FinishReason::Abort || r.last_s > deadline_s {
                self.timed_out.push(TimedOut {
                    request_id: f.request_id.clone(),
                    send_s: r.send_s,
                    end_s: deadline_s,
                });
                return;
            }
        }
        let Some(first) = r.first_s else {
            return;
        };
        if f.finish_reason == FinishReason::Abort {
            return;
        }
        for &gap in &r.gaps_s {
            record_gap(&mut self.stats, &mut self.itl_ms, gap);
        }
        let c = ClientRequest {
            request_id: f.request_id.clone(),
            send_s: r.send_s,
            prompt_len: r.prompt_len,
            output_len: f.num_generation_tokens,
            ttft_ms: (first - r.send_s) * 1e3,
            e2el_ms: (r.last_s - r.send_s) * 1e3,
        };
        self.stats
            .record_request(c.ttft_ms, c.e2el_ms, c.output_len);
        if let Some(v) = self.requests.as_mut() {
            v.push(c);
        }
    }
}

/// One gap between a request's chunks, `gap_s` seconds, into the statistics (ns) and, when
/// kept, the list of gaps (ms).
fn record_gap(stats: &mut LatencyStats, itl_ms: &mut Option<Vec<f64>>, gap_s: f64) {
    stats.record_itl((gap_s * 1e9).round() as u64);
    if let Some(v) = itl_ms.as_mut() {
        v.push(gap_s * 1e3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(tag: u64) -> RequestOutput {
        RequestOutput {
            tag,
            new_token: Some(7),
            finish: None,
        }
    }

    fn iteration(ms: u64, finished: &[(u64, usize)]) -> IterationStats {
        IterationStats {
            iteration_timestamp: Nanos::from_millis(ms),
            finished_requests: finished
                .iter()
                .map(|&(tag, n)| FinishedRequestStats {
                    request_id: format!("r{tag}"),
                    tag,
                    finish_reason: FinishReason::Length,
                    stop_token: None,
                    times: Default::default(),
                    finished_at: Nanos::from_millis(ms),
                    num_prompt_tokens: 1000,
                    num_generation_tokens: n,
                    num_cached_tokens: 0,
                    num_preemptions: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Two requests decoding together, sent at 0: each token 2 ms (in) + 1.5 ms (out, two in
    /// the step) after its step; the gaps keep the engine's 10 ms.
    #[test]
    fn ways_in_and_out_shift_tokens_not_gaps() {
        let fe = FrontendLatency {
            per_request_us: 1000.0,
            per_prompt_token_ns: 1000.0,
            per_output_token_us: 1000.0,
            per_batch_output_us: 500.0,
        };
        let mut c = ClientSide::new(fe, true);
        c.on_add(1, 0.0, 1000);
        c.on_add(2, 0.0, 1000);
        c.on_iteration(&iteration(20, &[]), &[token(1), token(2)]);
        c.on_iteration(&iteration(30, &[]), &[token(1), token(2)]);
        c.on_iteration(&iteration(40, &[(1, 3), (2, 3)]), &[token(1), token(2)]);
        let reqs = c.requests.unwrap();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert!((r.ttft_ms - 23.5).abs() < 1e-9, "{r:?}");
            assert!((r.e2el_ms - 43.5).abs() < 1e-9, "{r:?}");
            assert!((r.tpot_ms().unwrap() - 10.0).abs() < 1e-9);
        }
        let itl = c.itl_ms.unwrap();
        assert_eq!(itl.len(), 4);
        assert!(itl.iter().all(|g| (g - 10.0).abs() < 1e-9), "{itl:?}");
    }

    /// Queued ways in: two requests sent together reach the engine one way in (2 ms) apart, so
    /// the second's tokens all come 2 ms later; gaps keep the engine's spacing.
    #[test]
    fn queued_ways_in_delay_the_later_request_by_the_earlier_way_in() {
        let fe = FrontendLatency {
            per_request_us: 1000.0,
            per_prompt_token_ns: 1000.0,
            per_output_token_us: 1000.0,
            per_batch_output_us: 500.0,
        };
        let mut c = ClientSide::new(fe, true).queued_ways_in();
        c.on_add(1, 0.0, 1000);
        c.on_add(2, 0.0, 1000);
        c.on_iteration(&iteration(20, &[]), &[token(1), token(2)]);
        c.on_iteration(&iteration(30, &[(1, 2), (2, 2)]), &[token(1), token(2)]);
        let reqs = c.requests.unwrap();
        let ttft: Vec<f64> = reqs.iter().map(|r| r.ttft_ms).collect();
        // 20 ms + way in (2 ms; 4 ms queued) + way out of a step of two (1.5 ms).
        assert!(
            (ttft[0] - 23.5).abs() < 1e-9 && (ttft[1] - 25.5).abs() < 1e-9,
            "{ttft:?}"
        );
        assert!(c.itl_ms.unwrap().iter().all(|g| (g - 10.0).abs() < 1e-9));
    }

    /// A step with more requests has a longer way out: the gap into it grows by the difference.
    #[test]
    fn a_growing_batch_widens_the_gap_by_the_difference() {
        let fe = FrontendLatency {
            per_request_us: 0.0,
            per_prompt_token_ns: 0.0,
            per_output_token_us: 1000.0,
            per_batch_output_us: 100.0,
        };
        let mut c = ClientSide::new(fe, true);
        for tag in 1..=11 {
            c.on_add(tag, 0.0, 10);
        }
        c.on_iteration(&iteration(10, &[]), &[token(1)]);
        let all: Vec<_> = (1..=11).map(token).collect();
        c.on_iteration(&iteration(20, &[(1, 2)]), &all);
        let r = &c.requests.as_ref().unwrap()[0];
        assert!((r.ttft_ms - 11.0).abs() < 1e-9);
        // 10 ms of engine gap + (2.0 − 1.0) ms of way out.
        assert!((c.itl_ms.as_ref().unwrap()[0] - 11.0).abs() < 1e-9);
    }
}
