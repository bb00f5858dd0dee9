//! llm-emu's serving benchmark client, compatible with `vllm bench serve`: the same datasets,
//! arrival process, request bodies, metric definitions, result JSON and final table, on a
//! tokio/hyper client that keeps up with thousands of concurrent streams.

pub mod arrival;
pub mod client;
pub mod compare;
pub mod dataset;
pub mod metrics;
pub mod pyrand;
pub mod result;
pub mod run;
pub mod sse;
pub mod tokenizer;
