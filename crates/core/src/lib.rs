//! llm-emu's engine core: everything a vLLM V1 engine does on the CPU — request lifecycle,
//! scheduler, paged KV cache with prefix caching, stop rules — synchronous and deterministic.
//! It never reads a clock, the environment, files or sockets: drivers pass time in. The
//! exceptions are explicit loaders a driver calls once at start-up: operator profiles from a
//! directory, and [`sizing::ModelShape::resolve`] (config.json paths, the Hugging Face cache).

pub mod config;
pub mod cudagraph;
pub mod engine;
pub mod engine_core;
pub mod gpu;
pub mod kv;
pub mod latency;
pub mod request;
pub mod sampler;
pub mod sched;
pub mod sizing;
pub mod stats;
pub mod time;

pub use config::{EngineConfig, SchedulingPolicy};
pub use engine::{Engine, EngineObserver, NoObserver, RequestError, StepRecord, Wake};
pub use engine_core::EngineCore;
pub use request::{FinishReason, NewRequest, Request, SamplingParams};
pub use sched::Scheduler;
pub use stats::{
    EngineSink, FinishOutput, FinishedRequestStats, IterationStats, NoSink, RequestOutput,
    SchedulerStats, StepStats,
};
pub use time::Nanos;
