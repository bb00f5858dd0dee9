//! Fleets of engines that stand where one [`Engine`](llm_emu_core::Engine) stands: each type
//! here implements [`EngineCore`](llm_emu_core::EngineCore), so the drivers (`llm-emu-sim`'s
//! virtual-time loop, `llm-emu-serve`'s engine thread) run a fleet unchanged.
//!
//! - [`DataParallel`]: vLLM 0.19's `--data-parallel-size N` — N engine cores, each with its own
//!   scheduler and KV cache, requests placed by the API server's load balancer
//!   (`DPLBAsyncMPClient`) from the counts the DP coordinator publishes ([`dp_lb`]).
//! - [`Replicas`]: independent instances (each its own configuration and latency model) behind
//!   a [`Router`] (`round-robin`, `least-loaded`, `prefix-aware`, `session`).
//! - [`Tallied`]: per-engine figures (requests, tokens, preemptions, prefix hits) of any
//!   [`EngineCore`](llm_emu_core::EngineCore), for reports.
//!
//! Expert-parallel lockstep (DP waves and dummy batches) and prefill/decode disaggregation are
//! not modelled yet (docs/fleet.md).

pub mod dp;
pub mod dp_lb;
mod member;
pub mod replicas;
pub mod router;
pub mod tally;

pub use dp::{AddError, DataParallel};
pub use dp_lb::{LoadBalancer, LB_PUBLISH_INTERVAL};
pub use replicas::Replicas;
pub use router::{router_by_name, Router, RouterError, ROUTER_NAMES};
pub use tally::{EngineTally, Tallied};
