//! llm-emu's serving benchmark client, compatible with `vllm bench serve`: the same datasets,
//! arrival process, request bodies, metric definitions, result JSON and final table, on a
//! tokio/hyper client that keeps up with thousands of concurrent streams.

pub mod client;
pub mod compare;
pub mod dataset;
pub mod metrics;
pub mod result;
pub mod run;
pub mod sse;
pub mod tokenizer;

/// The arrival process and Python/numpy generators live in the simulator, so that `simulate`
/// and `bench` draw the same arrival times from one implementation.
pub use llm_emu_sim::{arrival, pyrand};
