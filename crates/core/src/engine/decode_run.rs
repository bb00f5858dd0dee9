//! The engine's side of a decode run ([`crate::sched::scheduler::decode_run`]): when the driver
//! says nothing will reach the engine before a horizon ([`Engine::run_until`]), the decode
//! steps that end before it are taken as one run, and the step that crosses it is scheduled
//! from the same run and left in flight, as the step-by-step loop would leave it.
//!
//! The step times come first, one step at a time, from the latency model with each step's
//! batch (contexts one token longer per step), so the model sees the same calls in the same
//! order; then the scheduler's two phases; then, step by step, the pool operations and the
//! observer's record of each whole step ([`DecodeRunStep`]).

use super::{Engine, EngineObserver, InFlight, StepRecord};
use crate::latency::StepBatch;
use crate::sched::Scheduler;
use crate::time::Nanos;

/// The most steps one decode run takes (a bound on its scratch storage; a longer stretch is
/// taken as several runs).
const MAX_RUN_STEPS: usize = 256;

/// The inter-token gaps of one step of a decode run, one per running request.
#[derive(Copy, Clone, Debug)]
pub enum RunGaps<'a> {
    /// Each request's previous token was processed at this time, in running order (the run's
    /// first step): its gap ends at the step's end.
    Since(&'a [Nanos]),
    /// Every request's previous token came with the previous step: one gap for all.
    Uniform(Nanos),
}

/// One whole step of a decode run, scheduled at `scheduled_at` and processed at
/// `device_end`: every running request decoded one token and none stopped.
#[derive(Copy, Clone, Debug)]
pub struct DecodeRunStep<'a> {
    /// Sequence number of the `schedule()` call, from 0.
    pub index: u64,
    pub scheduled_at: Nanos,
    pub device_start: Nanos,
    pub device_end: Nanos,
    /// Requests (and tokens) in the step: every running request.
    pub num_reqs: usize,
    /// Σ tokens computed before the step (the attention context).
    pub num_context_tokens: usize,
    pub gaps: RunGaps<'a>,
    /// After the step's pool operations (the state both after its scheduling and after its
    /// output is processed: a decode step's output changes neither the queues nor the pool).
    pub scheduler: &'a Scheduler,
}

/// How a decode run ended.
pub(super) enum RunEnd {
    /// Its whole steps ended by this time, and it left no step in flight.
    At(Nanos),
    /// It left the step that crosses the horizon in flight, scheduled at this time.
    InFlight(Nanos),
}

impl Engine {
    /// Takes the decode steps that end before `horizon` as one run, if the engine is in a state
    /// for it (synchronous scheduling with nothing in flight or queued, an observer that takes
    /// runs, a stateless sampler) and the scheduler allows one
    /// ([`Scheduler::plan_decode_run`]). `None`, with nothing changed, otherwise.
    pub(super) fn decode_run(
        &mut self,
        now: Nanos,
        horizon: Nanos,
        obs: &mut dyn EngineObserver,
    ) -> Option<RunEnd> {
        if horizon <= now
            || self.batch_queue_size != 1
            || !self.batch_queue.is_empty()
            || !self.inputs.is_empty()
            || !obs.accepts_decode_runs()
            || !self.sampler.is_stateless()
        {
            return None;
        }
        let bound = self
            .sched
            .plan_decode_run(MAX_RUN_STEPS, &mut self.scratch.batch_requests)?;
        let first_start = now.max(self.device_free_at);
        let num_reqs = self.scratch.batch_requests.len();
        let in_flight_end = self.decode_run_times(first_start, horizon, bound.max_steps);
        let ends = &self.scratch.run_ends;
        let complete = ends.len();
        let mut sampled = std::mem::take(&mut self.sampled_buf);
        let output = self.sched.decode_run_requests(
            complete,
            in_flight_end.is_some(),
            ends,
            self.sampler.as_mut(),
            &mut self.scratch.run,
            &mut sampled,
        );
        let (mut scheduled_at, mut start) = (now, first_start);
        for (step, &end) in ends.iter().enumerate() {
            self.sched.decode_run_step_ops(step, &self.scratch.run);
            let gaps = match step {
                0 => RunGaps::Since(&self.scratch.run.prev_token_at),
                _ => RunGaps::Uniform(end - ends[step - 1]),
            };
            obs.on_decode_run_step(&DecodeRunStep {
                index: self.num_schedule_calls,
                scheduled_at,
                device_start: start,
                device_end: end,
                num_reqs,
                num_context_tokens: bound.context_tokens + step * num_reqs,
                gaps,
                scheduler: &self.sched,
            });
            self.num_schedule_calls += 1;
            (scheduled_at, start) = (end, end);
        }
        self.num_decode_steps += complete as u64;
        self.num_decode_run_steps += complete as u64;
        self.device_free_at = start;
        let (Some(end), Some(output)) = (in_flight_end, output) else {
            self.sampled_buf = sampled;
            self.debug_check();
            return Some(RunEnd::At(scheduled_at));
        };
        self.sched.decode_run_step_ops(complete, &self.scratch.run);
        obs.on_schedule(&StepRecord {
            index: self.num_schedule_calls,
            scheduled_at,
            device_start: start,
            device_end: end,
            output: &output,
            scheduler: &self.sched,
        });
        self.num_schedule_calls += 1;
        self.num_decode_steps += 1;
        self.num_decode_run_steps += 1;
        self.device_free_at = end;
        self.batch_queue.push_front(InFlight {
            output,
            sampled,
            end,
            decode: true,
        });
        self.debug_check();
        Some(RunEnd::InFlight(scheduled_at))
    }

    /// The ends of a run's steps from `start`, one step at a time from the latency model, into
    /// `scratch.run_ends` while they fall before `horizon` (at most `max_steps`); the end of
    /// the step that reaches the horizon, which the run leaves in flight, if one does.
    fn decode_run_times(
        &mut self,
        start: Nanos,
        horizon: Nanos,
        max_steps: usize,
    ) -> Option<Nanos> {
        let batch = &mut self.scratch.batch_requests;
        let num_reqs = batch.len();
        let padded_tokens = self.cuda_graphs.padded_tokens(num_reqs);
        let num_running = self.sched.num_running();
        let ends = &mut self.scratch.run_ends;
        ends.clear();
        let mut start = start;
        for step in 0..max_steps {
            if step > 0 {
                // Each step's context is one token longer for every request.
                for b in batch.iter_mut() {
                    b.num_computed_before += 1;
                }
            }
            let end = start
                + self.latency.step_time(&StepBatch {
                    requests: batch,
                    total_tokens: num_reqs,
                    padded_tokens,
                    num_running,
                });
            if end >= horizon {
                return Some(end);
            }
            ends.push(end);
            start = end;
        }
        None
    }
}
