//! Scheduling (vLLM `v1/core/sched/`).

pub mod policy;
pub mod scheduler;
pub mod store;

pub use policy::{BudgetSplit, Policy};
pub use scheduler::{
    DecodeRunScratch, DecodeStep, DecodeUpdate, RequestUpdate, ScheduledRequest, Scheduler,
    SchedulerOutput,
};
pub use store::{ReqKey, RequestStore};
