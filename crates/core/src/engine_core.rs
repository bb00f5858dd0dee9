//! The one interface a driver needs from an engine: submit, abort, run at a time, and receive
//! stats and per-request outputs through an [`EngineSink`]. [`Engine`] implements it; a fleet
//! (several engines behind a balancer or a router, prefill and decode pools) implements it too,
//! and the drivers (`llm-emu-sim`'s virtual-time loop, `llm-emu-serve`'s engine thread) run
//! either unchanged.
//!
//! Callers tag each request with a `u64` of their choosing; every [`RequestOutput`] and
//! [`FinishedRequestStats`](crate::stats::FinishedRequestStats) for it carries the tag back, so a
//! caller routes outputs without keeping an id → request map.

use crate::engine::{Engine, RequestError, Wake};
use crate::request::NewRequest;
use crate::stats::EngineSink;
use crate::time::Nanos;

pub use crate::stats::RequestOutput;

/// An engine (or a group of engines) driven by an outside clock.
pub trait EngineCore {
    /// Validates `req` and queues it; `tag` comes back with each of its outputs. An error
    /// means it will never run (and no output will carry `tag`).
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError>;
    /// Queues an abort; unknown or finished ids are ignored. Finish reason `abort`.
    fn abort(&mut self, request_id: &str);
    /// Queues the end of a request its caller stopped (a stop string matched in the text):
    /// applied as an abort, reported with finish reason `stop`, as vLLM's output processor
    /// does.
    fn finish_stopped(&mut self, request_id: &str);
    /// Does everything due at `now`, reporting to `sink`, and says when to run next.
    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake;
    /// [`EngineCore::run`], told that nothing will be added or aborted before `horizon`: an
    /// engine may then go on by itself through what happens before it
    /// ([`Engine::run_until`]), reporting what `run` at each of those instants would. By
    /// default it does not.
    fn run_until(&mut self, now: Nanos, horizon: Nanos, sink: &mut dyn EngineSink) -> Wake {
        let _ = horizon;
        self.run(now, sink)
    }
    /// Whether anything is queued, scheduled or in flight.
    fn has_work(&self) -> bool;
    /// Requests submitted and not yet finished.
    fn num_unfinished(&self) -> usize;
}

impl EngineCore for Engine {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        Engine::add_tagged(self, req, tag)
    }

    fn abort(&mut self, request_id: &str) {
        Engine::abort(self, request_id)
    }

    fn finish_stopped(&mut self, request_id: &str) {
        Engine::finish_stopped(self, request_id)
    }

    fn run(&mut self, now: Nanos, sink: &mut dyn EngineSink) -> Wake {
        Engine::run_with_stats(self, now, sink)
    }

    fn run_until(&mut self, now: Nanos, horizon: Nanos, sink: &mut dyn EngineSink) -> Wake {
        Engine::run_with_stats_until(self, now, horizon, sink)
    }

    fn has_work(&self) -> bool {
        Engine::has_work(self)
    }

    fn num_unfinished(&self) -> usize {
        Engine::num_unfinished(self)
    }
}
