//! llm-emu's engine core: everything a vLLM V1 engine does on the CPU — request lifecycle,
//! scheduler, paged KV cache with prefix caching, stop rules — synchronous and deterministic.
//! It never reads a clock, the environment, files or sockets, and embeds no data: drivers pass
//! time in, and the step latency comes through the [`latency::LatencyModel`] trait (the
//! measured and analytical models, GPU data and model sizing live in `llm-emu-perf`).

pub mod config;
pub mod cudagraph;
pub mod engine;
pub mod engine_core;
pub mod kv;
pub mod latency;
pub mod modulus;
mod prefetch;
pub mod prompt;
pub mod request;
pub mod sampler;
pub mod sched;
pub mod stats;
pub mod time;

pub use config::{EngineConfig, SchedulingPolicy};
pub use engine::{
    Engine, EngineObserver, EngineScratch, NoObserver, RequestError, StepRecord, Wake,
};
pub use engine_core::EngineCore;
pub use prompt::{HashIdPrompt, PromptTokens, SyntheticPrompt};
pub use request::{FinishReason, NewRequest, Request, SamplingParams};
pub use sched::Scheduler;
pub use stats::{
    EngineSink, FinishOutput, FinishedRequestStats, GapRuns, IterationStats, NoSink, RequestOutput,
    SchedulerStats, StepStats,
};
pub use time::Nanos;
