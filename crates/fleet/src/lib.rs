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
//! - [`ep`]: a mixture-of-experts model's DP ranks in lockstep, with or without expert
//!   parallelism (waves, dummy batches, padding, MoE layers on the gathered batch, the expert
//!   all-to-all).
//! - [`Disaggregated`]: prefill and decode instances with the KV transfer between them.
//! - [`cluster`]: LLMServingSim's cluster config, read as it is.

pub mod cluster;
pub mod dp;
pub mod dp_lb;
pub mod ep;
mod member;
pub mod pd;
pub mod replicas;
pub mod router;
pub mod tally;
mod unprefilled;

pub use cluster::{ClusterError, ClusterSpec, InstanceSpec, Link, PdRole, Topology};
pub use dp::{AddError, DataParallel, LockstepReport};
pub use dp_lb::{LoadBalancer, LB_PUBLISH_INTERVAL};
pub use ep::{AllToAll, EpGroup, ExpertLayout, PricedStep, RankLatency};
pub use pd::{Disaggregated, PdError};
pub use replicas::Replicas;
pub use router::{router_by_name, Router, RouterError, ROUTER_NAMES};
pub use tally::{EngineTally, Tallied};
