//! KV-cache sizing against vLLM 0.19.0's own code: page sizes, KV-cache groups, the block pool
//! for a given memory, and the memory one `max_model_len` request needs, for every built-in model
//! at TP 1/2/8/16 (`tools/kv-golden/generate.py` → `tests/data/kv_sizing.json`).

use llm_emu_perf::sizing::{blocks_for_available, kv_bytes_for_one_request, GpuBudget, ModelShape};
use serde_json::Value;

#[test]
fn sizing_matches_vllm_for_every_builtin_model() {
    let text = include_str!("data/kv_sizing.json");
    let golden: Value = serde_json::from_str(text).unwrap();
    let block = golden["block_size"].as_u64().unwrap();
    let available = golden["available_bytes"].as_u64().unwrap();
    let batched = golden["max_num_batched_tokens"].as_u64().unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 100, "{}", cases.len());
    for c in cases {
        let name = c["model"].as_str().unwrap();
        let tp = c["tp"].as_u64().unwrap();
        let want = |k: &str| c[k].as_u64().unwrap();
        let shape = ModelShape::builtin(name).unwrap();
        let layout = shape.kv_layout(block, tp);
        let at = format!("{name} tp={tp}");
        assert_eq!(layout.page_bytes, want("page_bytes"), "{at}: page bytes");
        assert_eq!(layout.num_groups, want("num_groups"), "{at}: groups");
        assert_eq!(layout.group_size, want("group_size"), "{at}: group size");
        assert_eq!(
            blocks_for_available(&shape, block, tp, available),
            want("num_blocks"),
            "{at}: blocks"
        );
        let gpu = GpuBudget {
            expert_shards: 1,
            gpu_memory_bytes: 0,
            gpu_memory_utilization: 0.9,
            tensor_parallel_size: tp,
            block_size: block,
            max_num_batched_tokens: batched,
            max_num_seqs: 256,
        };
        assert_eq!(
            kv_bytes_for_one_request(&shape, &gpu, want("max_model_len")),
            want("needed_bytes"),
            "{at}: bytes for one max_model_len request"
        );
    }
}
