//! One engine of a fleet and when it must run next.

use llm_emu_core::{Engine, EngineScratch, EngineSink, Nanos, Wake};

/// An engine with its pending wake-up: a fleet runs a member only when its wake-up is due or
/// it was given an input since it last ran (running it at other times would be a no-op).
pub(crate) struct Member {
    pub(crate) engine: Engine,
    /// When the engine asked to run again (`None`: idle).
    pub(crate) wake: Option<Nanos>,
    /// An input (request, abort, stop) was queued since it last ran.
    pub(crate) pending: bool,
}

impl Member {
    pub(crate) fn new(engine: Engine) -> Member {
        Member {
            engine,
            wake: None,
            pending: false,
        }
    }

    pub(crate) fn is_due(&self, now: Nanos) -> bool {
        self.pending || self.wake.is_some_and(|w| w <= now)
    }

    /// Runs the engine at `now` with the fleet's shared `scratch` buffers lent to it for the
    /// call (the fleet runs one member at a time, so one set serves all and stays cached).
    pub(crate) fn run(
        &mut self,
        now: Nanos,
        sink: &mut dyn EngineSink,
        scratch: &mut EngineScratch,
    ) {
        self.pending = false;
        self.engine.swap_scratch(scratch);
        let wake = self.engine.run_with_stats(now, sink);
        self.engine.swap_scratch(scratch);
        self.wake = match wake {
            Wake::At(t) => Some(t),
            Wake::Idle => None,
        };
    }
}

/// The earliest wake-up of `members`.
pub(crate) fn earliest_wake<'a>(members: impl Iterator<Item = &'a Member>) -> Wake {
    members
        .filter_map(|m| m.wake)
        .min()
        .map_or(Wake::Idle, Wake::At)
}
