//! Prints per-operator roofline times next to an operator profile's measured times (Markdown),
//! for docs/roofline.md:
//!
//! ```text
//! cargo run -p llm-emu-perf --example roofline_vs_profile -- \
//!     ../shared/data/real-runs/rtxpro6000-llama-3.1-8b/profile/tp1 rtx-pro-6000 [tiles]
//! ```
//!
//! `tiles` prices FlashAttention-2 decode attention in whole query tiles (`attn_tiles=on`).

use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::latency::roofline::{RooflineLatency, RooflineParams};
use llm_emu_perf::latency::{BatchShape, ProfileLatency};
use llm_emu_perf::sizing::ModelShape;
use std::collections::HashMap;

fn read_csv(path: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: roofline_vs_profile PROFILE_TP1_DIR [GPU]");
    let gpu =
        GpuSpec::lookup(&args.next().unwrap_or_else(|| "rtx-pro-6000".into())).expect("known GPU");
    let shape = ModelShape::llama_3_1_8b();
    let mut params = RooflineParams::new(gpu, 1);
    params.fa2_query_tiles = args.next().is_some_and(|a| a == "tiles");
    let m = RooflineLatency::new(&shape, params).expect("valid");
    let mut measured: HashMap<(String, u64), f64> = HashMap::new();
    for f in ["dense.csv", "per_sequence.csv"] {
        for row in read_csv(&format!("{dir}/{f}")) {
            measured.insert(
                (row[0].clone(), row[1].parse().unwrap()),
                row[2].parse().unwrap(),
            );
        }
    }
    println!("| operator | tokens | roofline µs | measured µs | ratio | bound |");
    println!("|---|---:|---:|---:|---:|---|");
    for name in [
        "qkv_proj",
        "o_proj",
        "gate_up_proj",
        "down_proj",
        "layernorm",
        "act_fn",
    ] {
        for t in [1u64, 16, 128, 512, 2048] {
            let ops = m.breakdown(&[(t, 0)]);
            let op = ops.iter().find(|o| o.name == name).expect("op present");
            let real = measured[&(name.to_string(), t)];
            println!(
                "| {name} | {t} | {:.1} | {:.1} | {:.2} | {:?} |",
                op.each_us,
                real,
                op.each_us / real,
                op.bound
            );
        }
    }
    for name in ["lm_head", "sampler"] {
        for s in [1u64, 16, 128, 256] {
            let reqs: Vec<(u64, u64)> = (0..s).map(|_| (1, 100)).collect();
            let ops = m.breakdown(&reqs);
            let op = ops.iter().find(|o| o.name == name).expect("op present");
            let real = measured[&(name.to_string(), s)];
            println!(
                "| {name} | {s} seqs | {:.1} | {:.1} | {:.2} | {:?} |",
                op.each_us,
                real,
                op.each_us / real,
                op.bound
            );
        }
    }
    // Attention: (prefill_chunk, kv_prefill, n_decode, kv_decode).
    let mut att: HashMap<(u64, u64, u64, u64), f64> = HashMap::new();
    for row in read_csv(&format!("{dir}/attention.csv")) {
        let k: Vec<u64> = row[..4].iter().map(|x| x.parse().unwrap()).collect();
        att.insert((k[0], k[1], k[2], k[3]), row[4].parse().unwrap());
    }
    println!();
    println!("| attention (one layer) | roofline µs | measured µs | ratio | bound |");
    println!("|---|---:|---:|---:|---|");
    let cases: [(u64, u64, u64, u64); 13] = [
        (0, 0, 1, 1024),
        (0, 0, 16, 1024),
        (0, 0, 64, 1024),
        (0, 0, 256, 1024),
        (0, 0, 64, 4096),
        (0, 0, 256, 4096),
        (128, 0, 0, 0),
        (512, 0, 0, 0),
        (2048, 0, 0, 0),
        (512, 4096, 0, 0),
        (16, 0, 128, 1024),
        (512, 0, 128, 1024),
        (512, 1024, 64, 1024),
    ];
    for (pc, kp, nd, kv) in cases {
        let mut reqs: Vec<(u64, u64)> = (0..nd).map(|_| (1, kv)).collect();
        if pc > 0 {
            reqs.push((pc, kp));
        }
        let ops = m.breakdown(&reqs);
        // One layer's attention: the prefill and decode kernels of a mixed batch together.
        let attention: Vec<_> = ops
            .iter()
            .filter(|o| o.name.starts_with("attention"))
            .collect();
        assert!(!attention.is_empty(), "attention present");
        let each_us: f64 = attention.iter().map(|o| o.each_us).sum();
        let bound = attention.last().expect("attention present").bound;
        let Some(real) = att.get(&(pc, kp, nd, kv)) else {
            continue;
        };
        let label = match (pc, nd) {
            (0, _) => format!("{nd} decodes at KV {kv}"),
            (_, 0) => format!("prefill {pc} on {kp} context"),
            _ => format!("prefill {pc} on {kp} context + {nd} decodes at KV {kv}"),
        };
        println!(
            "| {label} | {each_us:.1} | {real:.1} | {:.2} | {bound:?} |",
            each_us / real,
        );
    }

    // Whole steps: the roofline against the operator profile composed as LLMServingSim does.
    let profile_dir = std::path::Path::new(&dir)
        .parent()
        .expect("tp1 has a parent");
    let composed = ProfileLatency::load(profile_dir, &shape, 1).expect("profile loads");
    println!();
    println!("| step | roofline ms | profile composition ms | ratio |");
    println!("|---|---:|---:|---:|");
    let steps: [(&str, Vec<(u64, u64)>); 6] = [
        ("1 decode at KV 1000", vec![(1, 1000)]),
        ("32 decodes at KV 1000", vec![(1, 1000); 32]),
        ("128 decodes at KV 1000", vec![(1, 1000); 128]),
        ("2048-token prefill", vec![(2048, 0)]),
        (
            "512-token prefill + 127 decodes at KV 1000",
            std::iter::once((512, 0))
                .chain(vec![(1, 1000); 127])
                .collect(),
        ),
        ("8 decodes at KV 8000", vec![(1, 8000); 8]),
    ];
    for (label, reqs) in steps {
        let ours = m.step_us(&reqs) / 1000.0;
        let theirs = composed.step_ms(&BatchShape::from_requests(
            reqs.iter().map(|&(q, c)| (q as usize, c as usize)),
        ));
        println!(
            "| {label} | {ours:.2} | {theirs:.2} | {:.2} |",
            ours / theirs
        );
    }
}
