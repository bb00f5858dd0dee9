//! The emulated device's performance, everything of llm-emu that reads files, the environment
//! or embedded data: the GPU table ([`gpu`]), model shapes and KV sizing ([`sizing`]), the step
//! latency models the engine core's [`llm_emu_core::latency::LatencyModel`] trait is given
//! ([`latency`]).

pub mod gpu;
pub mod latency;
pub mod sizing;
