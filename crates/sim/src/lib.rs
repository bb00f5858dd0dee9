//! llm-emu's offline simulator: workloads in, vLLM-style metrics out, in virtual time.

pub mod arrival;
pub mod client_run;
pub mod client_side;
pub mod client_timeout;
pub mod driver;
pub mod events;
pub mod inference_perf;
pub mod metrics;
pub mod mooncake_trace;
pub mod percentile;
pub mod pyrand;
pub mod report;
pub mod run_record;
pub mod scenario;
pub mod synthetic;
pub mod timeseries;
pub mod validate;
pub mod whole_number;
pub mod workload;

pub use driver::{run, run_client, run_limited, Client, RequestRecord, SimResult, Sinks};
pub use percentile::{median, percentile};
pub use workload::{LineError, LineErrorKind, WorkloadItem, WorkloadReader};
