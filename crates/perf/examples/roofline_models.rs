//! Prints roofline step times for a grid of built-in models and GPUs (Markdown), for
//! docs/roofline.md: `cargo run -p llm-emu-perf --example roofline_models`.

use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::latency::roofline::{RooflineLatency, RooflineParams};
use llm_emu_perf::sizing::ModelShape;

fn main() {
    let cases: [(&str, &str, u64); 10] = [
        ("meta-llama/Llama-3.1-8B", "rtx-pro-6000", 1),
        ("meta-llama/Llama-3.1-8B", "h100", 1),
        ("meta-llama/Llama-3.1-8B", "rtx-4090", 1),
        ("meta-llama/Llama-3.1-70B", "h100", 4),
        ("meta-llama/Llama-3.1-70B", "l40s", 4),
        ("Qwen/Qwen3-30B-A3B", "h100", 1),
        ("Qwen/Qwen3-235B-A22B", "h200", 8),
        ("openai/gpt-oss-120b", "h100", 1),
        ("deepseek-ai/DeepSeek-V3", "h200", 8),
        ("deepseek-ai/DeepSeek-V3", "b200", 8),
    ];
    println!("| model | GPU × TP | 1 decode, KV 1k (ms) | 64 decodes, KV 2k (ms) | 2048-token prefill (ms) |");
    println!("|---|---|---:|---:|---:|");
    for (model, gpu, tp) in cases {
        let shape = ModelShape::builtin(model).expect("built in");
        let gpu = GpuSpec::lookup(gpu).expect("known GPU");
        let m = RooflineLatency::new(&shape, RooflineParams::new(gpu, tp)).expect("valid");
        let one = m.step_us(&[(1, 1000)]) / 1000.0;
        let batch = m.step_us(&vec![(1, 2000); 64]) / 1000.0;
        let prefill = m.step_us(&[(2048, 0)]) / 1000.0;
        println!(
            "| {model} | {} × {tp} | {one:.2} | {batch:.2} | {prefill:.1} |",
            gpu.name
        );
    }
}
