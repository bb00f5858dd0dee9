//! The emulated device's performance, everything of llm-emu that reads files, the environment
//! or embedded data: the GPU table ([`gpu`]), model shapes and KV sizing ([`sizing`]), the step
//! latency models the engine core's [`llm_emu_core::latency::LatencyModel`] trait is given
//! ([`latency`]), and the engine arguments resolved against them by vLLM's rules ([`args`]).

pub mod args;
pub mod cluster_link;
pub mod frontend;
pub mod gpu;
pub mod latency;
pub mod link_units;
pub mod sizing;
pub mod text_file;

pub use args::{resolve, BatchContext, EngineArgs, Notice, ResolveError, ResolvedEngine, RunFacts};
pub use frontend::{ApiServerQueue, FrontendError, FrontendLatency, FrontendSpec};
pub use latency::LatencySpec;
