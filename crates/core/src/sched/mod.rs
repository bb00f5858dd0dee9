//! Scheduling (vLLM `v1/core/sched/`).

pub mod queue;
pub mod scheduler;
pub mod store;

pub use scheduler::{RequestUpdate, ScheduledRequest, Scheduler, SchedulerOutput};
pub use store::ReqKey;
