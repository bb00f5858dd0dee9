//! Per-engine figures of any [`EngineCore`], gathered from the stats it emits: the
//! per-instance section of reports.

use llm_emu_core::engine::RequestError;
use llm_emu_core::{
    EngineCore, EngineSink, FinishReason, IterationStats, Nanos, NewRequest, RequestOutput,
    SchedulerStats, StepStats, Wake,
};

/// What one engine (by engine index) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineTally {
    pub engine_index: usize,
    /// Requests that finished other than by an abort.
    pub completed: usize,
    /// Requests finished by an abort.
    pub aborted: usize,
    /// Prompt and generated tokens of the finished requests.
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    /// Steps with tokens.
    pub steps: u64,
    /// The engine's latest scheduler stats (cumulative preemptions and prefix-cache counters).
    pub scheduler: SchedulerStats,
}

impl EngineTally {
    /// Prefix-cache hits over queries, in tokens (0 without queries).
    pub fn prefix_cache_hit_rate(&self) -> f64 {
        let s = &self.scheduler;
        if s.prefix_cache_queries > 0 {
            s.prefix_cache_hits as f64 / s.prefix_cache_queries as f64
        } else {
            0.0
        }
    }
}

/// An [`EngineCore`] whose stats are also tallied per engine index.
pub struct Tallied<E> {
    pub inner: E,
    tallies: Vec<EngineTally>,
}

impl<E> Tallied<E> {
    pub fn new(inner: E) -> Tallied<E> {
        Tallied {
            inner,
            tallies: Vec::new(),
        }
    }

    /// One entry per engine index seen, in index order.
    pub fn tallies(&self) -> &[EngineTally] {
        &self.tallies
    }
}

fn entry(tallies: &mut Vec<EngineTally>, index: usize) -> &mut EngineTally {
    while tallies.len() <= index {
        let engine_index = tallies.len();
        tallies.push(EngineTally {
            engine_index,
            ..Default::default()
        });
    }
    &mut tallies[index]
}

struct TallySink<'a> {
    tallies: &'a mut Vec<EngineTally>,
    out: &'a mut dyn EngineSink,
}

impl EngineSink for TallySink<'_> {
    fn on_step(&mut self, s: &StepStats) {
        let t = entry(self.tallies, s.engine_index);
        if s.num_scheduled_tokens > 0 {
            t.steps += 1;
        }
        t.scheduler = s.scheduler;
        self.out.on_step(s);
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        let t = entry(self.tallies, it.engine_index);
        t.scheduler = it.scheduler;
        for f in &it.finished_requests {
            if f.finish_reason == FinishReason::Abort {
                t.aborted += 1;
            } else {
                t.completed += 1;
            }
            t.prompt_tokens += f.num_prompt_tokens as u64;
            t.generation_tokens += f.num_generation_tokens as u64;
        }
        self.out.on_iteration(it, outputs);
    }

    fn takes_decode_runs(&self) -> bool {
        self.out.takes_decode_runs()
    }
}

impl<E: EngineCore> EngineCore for Tallied<E> {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.inner.add(req, tag)
    }
    fn abort(&mut self, request_id: &str) {
        self.inner.abort(request_id)
    }
    fn finish_stopped(&mut self, request_id: &str) {
        self.inner.finish_stopped(request_id)
    }
    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        let mut tap = TallySink {
            tallies: &mut self.tallies,
            out: sink,
        };
        self.inner.run(now, &mut tap)
    }
    fn run_until(&mut self, now: Nanos, horizon: Nanos, sink: &mut dyn EngineSink) -> Wake {
        let mut tap = TallySink {
            tallies: &mut self.tallies,
            out: sink,
        };
        self.inner.run_until(now, horizon, &mut tap)
    }
    fn has_work(&self) -> bool {
        self.inner.has_work()
    }
    fn num_unfinished(&self) -> usize {
        self.inner.num_unfinished()
    }
}
