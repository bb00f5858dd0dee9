//! What the driver tests share: a workload item of known shape.

use llm_emu_core::Nanos;
use llm_emu_sim::WorkloadItem;

/// A request `id` arriving at `arrival_ms` with `prompt` distinct token ids (no prefix shared
/// with a request of another length) and `output` tokens to generate.
pub fn item(id: &str, arrival_ms: u64, prompt: u32, output: u32) -> WorkloadItem {
    WorkloadItem {
        request_id: id.into(),
        arrival: Nanos::from_millis(arrival_ms),
        prompt_token_ids: llm_emu_core::PromptTokens::from(
            (0..prompt)
                .map(|i| 1000 + i + prompt * 7)
                .collect::<Vec<u32>>(),
        ),
        output_len: output,
        priority: 0,
        cache_salt: None,
        tenant: None,
    }
}
