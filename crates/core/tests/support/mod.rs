//! What several integration tests of the core share.

use llm_emu_core::request::{NewRequest, Request, SamplingParams};
use llm_emu_core::sched::store::RequestStore;
use llm_emu_core::sched::ReqKey;
use llm_emu_core::Nanos;

/// A key of a real request (8 prompt tokens, block size 16): latency models only read the
/// scheduled counts, but a `ScheduledRequest` names its request.
pub fn a_key() -> ReqKey {
    let mut store = RequestStore::default();
    store.insert(Request::new(
        NewRequest {
            request_id: "r".into(),
            prompt_token_ids: vec![1u32; 8].into(),
            sampling: SamplingParams::default(),
            priority: 0,
            cache_salt: None,
            arrival: Nanos(0),
        },
        Nanos(0),
        16,
        false,
    ))
}
