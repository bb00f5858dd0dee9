//! Step latency: the only part of a vLLM step the emulator does not run. The engine asks the
//! model once per step with the step's batch and advances its device clock by the answer.
//!
//! The trait and the batch it sees live here; the measured and analytical models (operator
//! profiles, roofline, step-cycle packs) live in `llm-emu-perf`, which reads their data.

pub mod linear;

pub use linear::LinearLatency;

use crate::time::Nanos;

/// One scheduled request as a latency model sees it: token counts only, no identity.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchRequest {
    /// Tokens computed for the request in this step.
    pub num_tokens: usize,
    /// Tokens already computed (or cached) before this step: the request's attention context.
    pub num_computed_before: usize,
    /// The request's prompt length, tokens.
    pub num_prompt_tokens: usize,
    /// Whether the step ends with a sampled token for the request (a decode or the last chunk
    /// of a prefill).
    pub samples: bool,
}

/// A step's batch as the latency model sees it.
#[derive(Copy, Clone, Debug)]
pub struct StepBatch<'a> {
    /// Every scheduled request, in the scheduler's order.
    pub requests: &'a [BatchRequest],
    /// Σ tokens scheduled.
    pub total_tokens: usize,
    /// Tokens the device computes: `total_tokens` padded up to the next CUDA-graph capture
    /// size (see [`crate::cudagraph`]); equal to `total_tokens` when graphs are off or the step
    /// is larger than the largest captured size.
    pub padded_tokens: usize,
    /// Running requests after scheduling (the batch's concurrency).
    pub num_running: usize,
}

impl StepBatch<'_> {
    /// Σ tokens already computed of the scheduled requests (the attention context).
    pub fn context_tokens(&self) -> usize {
        self.requests.iter().map(|r| r.num_computed_before).sum()
    }
}

/// Gives the duration of one engine step on the emulated device.
pub trait LatencyModel: Send {
    /// Duration of the step with this batch; called once per non-empty step, in order.
    fn step_time(&mut self, batch: &StepBatch<'_>) -> Nanos;

    /// Duration of the step of one data-parallel rank whose mixture-of-experts layers run
    /// their local experts on `moe_tokens` tokens: the batch gathered from every rank of the
    /// group (vLLM 0.19's default `allgather_reducescatter` all-to-all dispatches each rank's
    /// tokens to every rank before the experts run). A model that does not price MoE layers
    /// separately prices `batch` alone, as `step_time` does.
    fn step_time_gathered(&mut self, batch: &StepBatch<'_>, moe_tokens: usize) -> Nanos {
        let _ = moe_tokens;
        self.step_time(batch)
    }

    /// One line describing the model and its parameters, for reports.
    fn describe(&self) -> String;

    /// What the model had to extrapolate or approximate so far (batch shapes outside its
    /// data), one sentence each, for the end of a run. Empty when every step was covered.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The GPU and model a measured model was measured with (names as its data writes
    /// them), for a check against the engine it is used for; `(None, None)` when it does not
    /// say or is not measured.
    fn measured_on(&self) -> (Option<&str>, Option<&str>) {
        (None, None)
    }

    /// A copy of the model as it is now, or `None` when the model cannot be copied. A fleet
    /// of instances alike copies the first instance's freshly built model for the others
    /// instead of loading the same data once per instance: a copy taken before any step is
    /// the model a second build would load.
    fn try_clone(&self) -> Option<Box<dyn LatencyModel>> {
        None
    }
}
