//! What the engine reports about itself, as vLLM's `v1/metrics/stats.py` defines it: a
//! [`SchedulerStats`] snapshot, per-step [`StepStats`] (vLLM's `SchedulerStats` plus the step's
//! batch shape), per-iteration [`IterationStats`] (tokens, time to first token, inter-token
//! gaps) and per-request [`FinishedRequestStats`].
//!
//! Latencies a client sees are derived here and nowhere else: [`time_to_first_token`] and the
//! inter-token gaps are computed once, by [`StatsRecorder`], and every consumer (the offline
//! collector, the server's Prometheus metrics) reads them from these records.

use crate::engine::{DecodeRunStep, DecodeRunUpdate, EngineObserver, RunGaps, StepRecord};
use crate::request::{FinishReason, Request, RequestStatus, RequestTimes};
use crate::sched::{DecodeUpdate, RequestUpdate, Scheduler};
use crate::time::Nanos;

/// Scheduler state after a step or an output (vLLM `SchedulerStats`). Counters are cumulative
/// since the engine started.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct SchedulerStats {
    pub num_running_reqs: usize,
    pub num_waiting_reqs: usize,
    /// Fraction of KV blocks in use, 0–1.
    pub kv_cache_usage: f64,
    /// Preemptions since start.
    pub num_preemptions: u64,
    /// Prefix-cache queries and hits since start, in tokens.
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
}

impl SchedulerStats {
    pub fn of(sched: &Scheduler) -> SchedulerStats {
        let kv = sched.kv();
        let pc = kv.prefix_cache_stats();
        SchedulerStats {
            num_running_reqs: sched.num_running(),
            num_waiting_reqs: sched.num_waiting(),
            kv_cache_usage: kv.usage(),
            num_preemptions: sched.num_preemptions(),
            prefix_cache_queries: pc.queries,
            prefix_cache_hits: pc.hits,
        }
    }
}

/// One `schedule()` call, with the step submitted to the device.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct StepStats {
    /// Which engine of a fleet (the `engine` label of vLLM's metrics).
    pub engine_index: usize,
    /// Sequence number of the `schedule()` call, from 0.
    pub index: u64,
    pub scheduled_at: Nanos,
    /// When the device starts and ends the step (both `scheduled_at` for an empty step).
    pub device_start: Nanos,
    pub device_end: Nanos,
    pub num_reqs: usize,
    pub num_scheduled_tokens: usize,
    /// Σ tokens already computed of the scheduled requests (the attention context).
    pub num_context_tokens: usize,
    /// Tokens of requests still in their prompt.
    pub num_prefill_tokens: usize,
    /// Requests past their prompt.
    pub num_decode_reqs: usize,
    /// Requests preempted by this `schedule()` call.
    pub num_preempted_reqs: u64,
    /// After scheduling.
    pub scheduler: SchedulerStats,
}

/// A finished request (vLLM `FinishedRequestStats`, with the raw timestamps kept so that each
/// consumer derives intervals by the one rule of the methods below).
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRequestStats {
    pub request_id: String,
    /// The caller's tag given at submission.
    pub tag: u64,
    pub finish_reason: FinishReason,
    /// The stop token id that ended it, if one did.
    pub stop_token: Option<u32>,
    pub times: RequestTimes,
    /// When the engine finished it (output processed, or abort applied).
    pub finished_at: Nanos,
    pub num_prompt_tokens: usize,
    pub num_generation_tokens: usize,
    /// Prompt tokens found in the prefix cache (0 if never scheduled).
    pub num_cached_tokens: usize,
    pub num_preemptions: u32,
}

fn between(a: Option<Nanos>, b: Option<Nanos>) -> Nanos {
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Nanos::ZERO,
    }
}

/// Time to first token: from the client's send (arrival) to the output with the first token.
pub fn time_to_first_token(arrival: Nanos, first_token: Nanos) -> Nanos {
    first_token.saturating_sub(arrival)
}

impl FinishedRequestStats {
    fn of(r: &Request, finished_at: Nanos) -> FinishedRequestStats {
        FinishedRequestStats {
            request_id: r.request_id.clone(),
            tag: r.tag,
            finish_reason: match r.status {
                RequestStatus::Finished(f) => f,
                _ => FinishReason::Abort,
            },
            stop_token: r.stop_reason,
            times: r.times,
            finished_at,
            num_prompt_tokens: r.num_prompt_tokens(),
            num_generation_tokens: r.num_output_tokens(),
            num_cached_tokens: r.num_cached_tokens.unwrap_or(0),
            num_preemptions: r.num_preemptions,
        }
    }

    /// `e2e_latency`: arrival to finish.
    pub fn e2e_latency(&self) -> Nanos {
        self.finished_at.saturating_sub(self.times.arrival)
    }

    /// Time to first token, if it had one.
    pub fn time_to_first_token(&self) -> Option<Nanos> {
        self.times
            .first_token
            .map(|t| time_to_first_token(self.times.arrival, t))
    }

    /// `queued_time`: taken in to first scheduled (0 if never scheduled).
    pub fn queued_time(&self) -> Nanos {
        between(Some(self.times.queued), self.times.first_scheduled)
    }

    /// `prefill_time`: first scheduled to first token.
    pub fn prefill_time(&self) -> Nanos {
        between(self.times.first_scheduled, self.times.first_token)
    }

    /// `inference_time`: first scheduled to last token.
    pub fn inference_time(&self) -> Nanos {
        between(self.times.first_scheduled, self.times.last_token)
    }

    /// `decode_time`: first token to last token.
    pub fn decode_time(&self) -> Nanos {
        between(self.times.first_token, self.times.last_token)
    }

    /// `mean_time_per_output_token`, seconds: decode time over the outputs after the first.
    pub fn mean_time_per_output_token_s(&self) -> f64 {
        if self.num_generation_tokens > 1 {
            self.decode_time().as_secs_f64() / (self.num_generation_tokens - 1) as f64
        } else {
            0.0
        }
    }

    /// Prompt tokens whose KV was computed (not found in the prefix cache).
    pub fn num_prefill_kv_computed_tokens(&self) -> usize {
        self.num_prompt_tokens
            .saturating_sub(self.num_cached_tokens)
    }
}

/// Inter-token gaps in output order, kept as runs of equal gaps: the requests of a step mostly
/// share one gap (their previous tokens came with the same earlier step), so a step of `n`
/// decoding requests is usually one run, not `n` entries. Equal neighbours always merge, so two
/// lists of the same gaps are equal whichever way they were pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GapRuns {
    /// `(gap, how many in a row)`, counts ≥ 1, neighbours different.
    runs: Vec<(Nanos, u64)>,
    len: usize,
}

impl GapRuns {
    pub fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
    }

    pub fn push(&mut self, gap: Nanos) {
        self.push_n(gap, 1);
    }

    /// `count` gaps of `gap` in a row.
    pub fn push_n(&mut self, gap: Nanos, count: usize) {
        if count == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some((g, n)) if *g == gap => *n += count as u64,
            _ => self.runs.push((gap, count as u64)),
        }
        self.len += count;
    }

    /// How many gaps.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in order: `(gap, count)`.
    pub fn runs(&self) -> &[(Nanos, u64)] {
        &self.runs
    }
}

/// One step's output processing, or one batch of aborts (vLLM `IterationStats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IterationStats {
    pub engine_index: usize,
    pub iteration_timestamp: Nanos,
    /// Prompt tokens of the requests that got their first token.
    pub num_prompt_tokens: u64,
    pub num_generation_tokens: u64,
    /// In output order.
    pub time_to_first_tokens_iter: Vec<Nanos>,
    pub inter_token_latencies_iter: GapRuns,
    /// In finishing order.
    pub finished_requests: Vec<FinishedRequestStats>,
    /// After the output (or the aborts).
    pub scheduler: SchedulerStats,
}

/// What one request got from an iteration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RequestOutput {
    /// The caller's tag given at submission.
    pub tag: u64,
    /// The token appended (none when aborted or stopped from outside).
    pub new_token: Option<u32>,
    /// Set when this output ends the request.
    pub finish: Option<FinishOutput>,
}

/// How a request ended, as the caller needs it to answer its client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FinishOutput {
    pub reason: FinishReason,
    pub stop_token: Option<u32>,
    pub num_cached_tokens: usize,
}

/// Receives an engine's stats and per-request outputs. All methods default to doing nothing.
pub trait EngineSink {
    /// After each `schedule()`, with the step submitted to the device.
    fn on_step(&mut self, _step: &StepStats) {}
    /// After a step's output is processed or a batch of aborts is applied: the iteration's stats
    /// and then each request's output, in order. Stats come first in the same call so that a
    /// consumer can count a finish before a client learns of it.
    fn on_iteration(&mut self, _stats: &IterationStats, _outputs: &[RequestOutput]) {}
    /// Whether the sink does without per-request outputs for the steps of a decode run
    /// ([`crate::Engine::run_until`]): their iterations then come with empty `outputs` (stats
    /// complete). `false` by default: the engine then takes no decode runs for this sink.
    fn takes_decode_runs(&self) -> bool {
        false
    }
}

/// A sink that ignores everything.
pub struct NoSink;
impl EngineSink for NoSink {}

/// Buffers reused across iterations (no allocation per step once warm).
#[derive(Default)]
pub(crate) struct StatsBuffers {
    iteration: IterationStats,
    outputs: Vec<RequestOutput>,
}

/// Turns the engine's detailed observer calls into stats for an [`EngineSink`].
pub(crate) struct StatsRecorder<'a> {
    pub(crate) engine_index: usize,
    pub(crate) sink: &'a mut dyn EngineSink,
    pub(crate) buffers: &'a mut StatsBuffers,
    /// Cumulative preemptions before the next `schedule()`.
    pub(crate) preemptions_before: u64,
}

impl StatsRecorder<'_> {
    fn begin(&mut self, now: Nanos) {
        let it = &mut self.buffers.iteration;
        it.engine_index = self.engine_index;
        it.iteration_timestamp = now;
        it.num_prompt_tokens = 0;
        it.num_generation_tokens = 0;
        it.time_to_first_tokens_iter.clear();
        it.inter_token_latencies_iter.clear();
        it.finished_requests.clear();
        self.buffers.outputs.clear();
    }

    fn finish(&mut self, r: &Request, now: Nanos) -> FinishOutput {
        let f = FinishedRequestStats::of(r, now);
        let out = FinishOutput {
            reason: f.finish_reason,
            stop_token: f.stop_token,
            num_cached_tokens: f.num_cached_tokens,
        };
        self.buffers.iteration.finished_requests.push(f);
        out
    }

    fn emit(&mut self, sched: &Scheduler) {
        self.buffers.iteration.scheduler = SchedulerStats::of(sched);
        self.sink
            .on_iteration(&self.buffers.iteration, &self.buffers.outputs);
    }
}

impl EngineObserver for StatsRecorder<'_> {
    fn on_schedule(&mut self, s: &StepRecord<'_>) {
        let out = s.output;
        let scheduler = SchedulerStats::of(s.scheduler);
        let preempted = scheduler
            .num_preemptions
            .saturating_sub(self.preemptions_before);
        self.preemptions_before = scheduler.num_preemptions;
        // One pass over the step's requests for its context, prefill and decode counts.
        let (mut context, mut prefill, mut decode) = (0usize, 0usize, 0usize);
        for r in &out.scheduled {
            context += r.num_computed_before;
            if r.num_computed_before < r.num_prompt_tokens {
                prefill += r.num_tokens;
            } else {
                decode += 1;
            }
        }
        self.sink.on_step(&StepStats {
            engine_index: self.engine_index,
            index: s.index,
            scheduled_at: s.scheduled_at,
            device_start: s.device_start,
            device_end: s.device_end,
            num_reqs: out.scheduled.len(),
            num_scheduled_tokens: out.total_num_scheduled_tokens,
            num_context_tokens: context,
            num_prefill_tokens: prefill,
            num_decode_reqs: decode,
            num_preempted_reqs: preempted,
            scheduler,
        });
    }

    fn on_update(&mut self, now: Nanos, updates: &[RequestUpdate], sched: &Scheduler) {
        self.begin(now);
        // Every update carries a token and the request's fields stats need (the scheduler
        // makes an update only for a live request that got one).
        for u in updates {
            if u.new_token.is_some() {
                let it = &mut self.buffers.iteration;
                it.num_generation_tokens += 1;
                if u.first_output {
                    it.num_prompt_tokens += u.num_prompt_tokens as u64;
                    it.time_to_first_tokens_iter
                        .push(time_to_first_token(u.arrival, now));
                }
                if let Some(prev) = u.prev_token_at {
                    it.inter_token_latencies_iter.push(now.saturating_sub(prev));
                }
            }
            let finish = u.finished.as_ref().map(|r| self.finish(r, now));
            self.buffers.outputs.push(RequestOutput {
                tag: u.tag,
                new_token: u.new_token,
                finish,
            });
        }
        self.emit(sched);
    }

    fn accepts_decode_updates(&self) -> bool {
        true
    }

    fn accepts_decode_runs(&self) -> bool {
        self.sink.takes_decode_runs()
    }

    /// The [`Self::on_schedule`] of a whole step of a decode run, from its counts: a decode
    /// step preempts nobody, and its requests are all past their prompts.
    fn on_decode_run_step(&mut self, s: &DecodeRunStep<'_>) {
        self.sink.on_step(&StepStats {
            engine_index: self.engine_index,
            index: s.index,
            scheduled_at: s.scheduled_at,
            device_start: s.device_start,
            device_end: s.device_end,
            num_reqs: s.num_reqs,
            num_scheduled_tokens: s.num_reqs,
            num_context_tokens: s.num_context_tokens,
            num_prefill_tokens: 0,
            num_decode_reqs: s.num_reqs,
            num_preempted_reqs: 0,
            scheduler: SchedulerStats::of(s.scheduler),
        });
    }

    /// The [`Self::on_update`] of that step: a token per request, none a first one; its
    /// iteration carries no per-request outputs ([`EngineSink::takes_decode_runs`]).
    fn on_decode_run_update(&mut self, u: &DecodeRunUpdate<'_>) {
        let now = u.now;
        self.begin(now);
        let it = &mut self.buffers.iteration;
        it.num_generation_tokens = u.num_tokens as u64;
        match u.gaps {
            RunGaps::Since(prev) => {
                for &p in prev {
                    it.inter_token_latencies_iter.push(now.saturating_sub(p));
                }
            }
            RunGaps::Uniform(gap) => it.inter_token_latencies_iter.push_n(gap, u.num_tokens),
        }
        for r in u.finished {
            self.finish(r, now);
        }
        self.emit(u.scheduler);
    }

    /// [`Self::on_update`] for updates that all carry a token, none a first one, none a
    /// finish.
    fn on_decode_update(&mut self, now: Nanos, updates: &[DecodeUpdate], sched: &Scheduler) {
        self.begin(now);
        let it = &mut self.buffers.iteration;
        it.num_generation_tokens += updates.len() as u64;
        for u in updates {
            it.inter_token_latencies_iter
                .push(now.saturating_sub(u.prev_token_at));
        }
        self.buffers
            .outputs
            .extend(updates.iter().map(|u| RequestOutput {
                tag: u.tag,
                new_token: Some(u.token),
                finish: None,
            }));
        self.emit(sched);
    }

    fn on_abort(&mut self, now: Nanos, finished: &[Box<Request>], sched: &Scheduler) {
        self.begin(now);
        for r in finished {
            let finish = Some(self.finish(r, now));
            self.buffers.outputs.push(RequestOutput {
                tag: r.tag,
                new_token: None,
                finish,
            });
        }
        self.emit(sched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(times: RequestTimes, at: u64, gen: usize) -> FinishedRequestStats {
        FinishedRequestStats {
            request_id: "r".into(),
            tag: 7,
            finish_reason: FinishReason::Length,
            stop_token: None,
            times,
            finished_at: Nanos(at),
            num_prompt_tokens: 10,
            num_generation_tokens: gen,
            num_cached_tokens: 4,
            num_preemptions: 0,
        }
    }

    #[test]
    fn intervals_follow_vllm_definitions() {
        let t = RequestTimes {
            arrival: Nanos(100),
            queued: Nanos(150),
            first_scheduled: Some(Nanos(200)),
            first_token: Some(Nanos(400)),
            last_token: Some(Nanos(1000)),
        };
        let f = finished(t, 1000, 4);
        assert_eq!(f.e2e_latency(), Nanos(900));
        assert_eq!(f.time_to_first_token(), Some(Nanos(300)));
        assert_eq!(f.queued_time(), Nanos(50));
        assert_eq!(f.prefill_time(), Nanos(200));
        assert_eq!(f.inference_time(), Nanos(800));
        assert_eq!(f.decode_time(), Nanos(600));
        assert_eq!(f.mean_time_per_output_token_s(), 600e-9 / 3.0);
        assert_eq!(f.num_prefill_kv_computed_tokens(), 6);
    }

    #[test]
    fn never_scheduled_request_has_zero_intervals() {
        let t = RequestTimes {
            arrival: Nanos(100),
            queued: Nanos(150),
            ..Default::default()
        };
        let f = finished(t, 500, 0);
        assert_eq!(f.e2e_latency(), Nanos(400));
        assert_eq!(f.time_to_first_token(), None);
        assert_eq!(f.queued_time(), Nanos::ZERO);
        assert_eq!(f.decode_time(), Nanos::ZERO);
        assert_eq!(f.mean_time_per_output_token_s(), 0.0);
    }
}
