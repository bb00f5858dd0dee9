//! The engine's side of a decode run ([`crate::sched::scheduler::decode_run`]): when the driver
//! says nothing will reach the engine before a horizon ([`Engine::run_until`]), the decode
//! steps that end before it are taken as one run, and the step that crosses it is scheduled
//! from the same run and left in flight, as the step-by-step loop would leave it.
//!
//! The step times come first, one step at a time, from the latency model with each step's
//! batch (contexts one token longer per step, requests that finished in the step before
//! gone), so the model sees the same calls in the same order; then the scheduler's two
//! phases; then, step by step, the pool operations, the observer's record of the step
//! ([`DecodeRunStep`]), the requests that finished in it, and the record of its output
//! ([`DecodeRunUpdate`]).

use super::{Engine, EngineObserver, InFlight, StepRecord};
use crate::latency::StepBatch;
use crate::request::Request;
use crate::sched::Scheduler;
use crate::time::Nanos;

/// The most steps one decode run takes (a bound on its scratch storage; a longer stretch is
/// taken as several runs).
const MAX_RUN_STEPS: usize = 256;

/// The inter-token gaps of one step of a decode run, one per request in the step.
#[derive(Copy, Clone, Debug)]
pub enum RunGaps<'a> {
    /// Each request's previous token was processed at this time, in running order (the run's
    /// first step): its gap ends at the step's end.
    Since(&'a [Nanos]),
    /// Every request's previous token came with the previous step: one gap for all.
    Uniform(Nanos),
}

/// The scheduling of one whole step of a decode run: every running request decodes one token.
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
    /// After the step's scheduling.
    pub scheduler: &'a Scheduler,
}

/// The output of one whole step of a decode run, processed at `now` (the step's end): every
/// request in it got a token, and those that reached a length limit finished.
#[derive(Copy, Clone, Debug)]
pub struct DecodeRunUpdate<'a> {
    pub now: Nanos,
    /// Tokens appended: one per request in the step.
    pub num_tokens: usize,
    pub gaps: RunGaps<'a>,
    /// Finished in this step, in running order (freed and removed).
    pub finished: &'a [Box<Request>],
    /// After the output.
    pub scheduler: &'a Scheduler,
}

/// How a decode run ended.
pub(super) enum RunEnd {
    /// Its whole steps ended by this time, and it left no step in flight.
    At(Nanos),
    /// It left the step that crosses the horizon in flight, scheduled at this time.
    InFlight(Nanos),
}

/// One step of a run as the latency model priced it (its end is kept beside it, in
/// `run_ends`, which the scheduler reads too).
#[derive(Copy, Clone, Debug, Default)]
pub(super) struct RunStepShape {
    num_reqs: usize,
    num_context_tokens: usize,
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
        let max_steps = self.sched.plan_decode_run(
            MAX_RUN_STEPS,
            &mut self.scratch.batch_requests,
            &mut self.scratch.run,
        )?;
        let first_start = now.max(self.device_free_at);
        let in_flight = self.decode_run_times(first_start, horizon, max_steps);
        let (shapes, ends) = (&self.scratch.run_steps, &self.scratch.run_ends);
        let complete = ends.len();
        let mut sampled = std::mem::take(&mut self.sampled_buf);
        let output = self.sched.decode_run_requests(
            complete,
            in_flight.is_some(),
            ends,
            self.sampler.as_mut(),
            &mut self.scratch.run,
            &mut sampled,
        );
        let mut finished = std::mem::take(&mut self.scratch.run_finished);
        let (mut scheduled_at, mut start) = (now, first_start);
        for (step, (shape, &end)) in shapes.iter().zip(ends).enumerate() {
            self.sched.decode_run_schedule(step, &self.scratch.run);
            obs.on_decode_run_step(&DecodeRunStep {
                index: self.num_schedule_calls,
                scheduled_at,
                device_start: start,
                device_end: end,
                num_reqs: shape.num_reqs,
                num_context_tokens: shape.num_context_tokens,
                scheduler: &self.sched,
            });
            self.num_schedule_calls += 1;
            self.sched
                .decode_run_finish(step, &self.scratch.run, &mut finished);
            let gaps = match step {
                0 => RunGaps::Since(&self.scratch.run.prev_token_at),
                _ => RunGaps::Uniform(end - ends[step - 1]),
            };
            obs.on_decode_run_update(&DecodeRunUpdate {
                now: end,
                num_tokens: shape.num_reqs,
                gaps,
                finished: &finished,
                scheduler: &self.sched,
            });
            finished.clear();
            (scheduled_at, start) = (end, end);
        }
        self.scratch.run_finished = finished;
        self.num_decode_steps += complete as u64;
        self.num_decode_run_steps += complete as u64;
        self.device_free_at = start;
        let (Some(end), Some(output)) = (in_flight, output) else {
            self.sampled_buf = sampled;
            self.debug_check();
            return Some(RunEnd::At(scheduled_at));
        };
        self.sched.decode_run_schedule(complete, &self.scratch.run);
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
        // A request whose token in this step reaches its length limit stops in it: then its
        // output is not a plain one.
        let plain = !self.scratch.run.stop_steps.contains(&complete);
        self.batch_queue.push_front(InFlight {
            output,
            sampled,
            end,
            decode: plain,
        });
        self.debug_check();
        Some(RunEnd::InFlight(scheduled_at))
    }

    /// The steps of a run from `start`, one at a time from the latency model, into
    /// `scratch.run_steps` and `scratch.run_ends` while they end before `horizon` (at most `max_steps`, and while a
    /// request is left): the end of the step that reaches the horizon, which the run leaves in
    /// flight, if one does.
    fn decode_run_times(
        &mut self,
        start: Nanos,
        horizon: Nanos,
        max_steps: usize,
    ) -> Option<Nanos> {
        let batch = &mut self.scratch.batch_requests;
        let stops = &self.scratch.run.stop_steps;
        // `alive[i]` is the running-order index of batch entry `i`.
        let alive = &mut self.scratch.run_alive;
        alive.clear();
        alive.extend(0..batch.len());
        let mut context: usize = batch.iter().map(|b| b.num_computed_before).sum();
        let shapes = &mut self.scratch.run_steps;
        shapes.clear();
        let ends = &mut self.scratch.run_ends;
        ends.clear();
        let mut start = start;
        for step in 0..max_steps {
            if batch.is_empty() {
                break;
            }
            let num_reqs = batch.len();
            let end = start
                + self.latency.step_time(&StepBatch {
                    requests: batch,
                    total_tokens: num_reqs,
                    padded_tokens: self.cuda_graphs.padded_tokens(num_reqs),
                    num_running: num_reqs,
                });
            if end >= horizon {
                return Some(end);
            }
            ends.push(end);
            shapes.push(RunStepShape {
                num_reqs,
                num_context_tokens: context,
            });
            start = end;
            // The next step: each context one token longer, without the requests that ended.
            for b in batch.iter_mut() {
                b.num_computed_before += 1;
            }
            context += num_reqs;
            if alive.iter().any(|&i| stops[i] == step) {
                let mut k = 0;
                batch.retain(|b| {
                    let keep = stops[alive[k]] != step;
                    if !keep {
                        context -= b.num_computed_before;
                    }
                    k += 1;
                    keep
                });
                alive.retain(|&i| stops[i] != step);
            }
        }
        None
    }
}
