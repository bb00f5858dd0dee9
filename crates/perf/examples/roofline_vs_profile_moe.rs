//! Prices a mixture-of-experts model with the roofline next to its operator profile
//! (Markdown, for docs/roofline.md): the MoE block at the rows of `tp1/moe.csv`, then whole
//! steps of one expert-parallel data-parallel rank whose MoE layers take the gathered batch.
//!
//! ```text
//! cargo run -p llm-emu-perf --example roofline_vs_profile_moe -- \
//!     /work/runs/rtxpro6000-qwen3-30b-a3b-dp2/profile Qwen/Qwen3-30B-A3B rtx-pro-6000 2
//! ```
//!
//! Arguments: the profile folder (with `tp1/moe.csv`), the model, the GPU, the EP degree (the
//! data-parallel ranks the batch is gathered from; default 2).

use llm_emu_perf::gpu::GpuSpec;
use llm_emu_perf::latency::roofline::{RooflineLatency, RooflineParams, RoutedWork};
use llm_emu_perf::latency::{BatchShape, ProfileLatency};
use llm_emu_perf::sizing::ModelShape;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: roofline_vs_profile_moe PROFILE_DIR [MODEL] [GPU] [EP]";
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let model = args.next().unwrap_or_else(|| "Qwen/Qwen3-30B-A3B".into());
    let gpu =
        GpuSpec::lookup(&args.next().unwrap_or_else(|| "rtx-pro-6000".into())).expect("known GPU");
    let ep: u64 = args
        .next()
        .map_or(2, |e| e.parse().expect("EP is an integer"));
    let shape = ModelShape::builtin(&model).expect("a built-in model");
    let moe = shape.moe.clone().expect("a mixture-of-experts model");
    let mut params = RooflineParams::new(gpu, 1);
    params.ep = ep;
    let roof = RooflineLatency::new(&shape, params).expect("valid roofline");
    let k = moe.experts_per_token as f64;

    // The MoE block as moe.csv measures it: `tokens` tokens routed so that exactly
    // `activated` experts (all on the one GPU) receive them.
    let text = std::fs::read_to_string(dir.join("tp1/moe.csv")).expect("tp1/moe.csv");
    println!("| MoE block: tokens | experts hit | roofline µs | measured µs | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let (t, a, measured) = (f[0], f[1], f[2]);
        if ![1.0, 16.0, 64.0, 128.0, 512.0, 2048.0].contains(&t) {
            continue;
        }
        let work = RoutedWork {
            rows: t * k,
            experts_hit: a,
            intermediate: moe.expert_intermediate_size as f64,
        };
        let router = roof
            .breakdown(&[(t as u64, 0)])
            .iter()
            .find(|o| o.name == "moe_router")
            .map_or(0.0, |o| o.each_us);
        let us = router
            + roof
                .routed_expert_ops(work)
                .iter()
                .map(|o| o.total_us())
                .sum::<f64>();
        println!(
            "| {t} | {a} | {us:.1} | {measured:.1} | {:.2} |",
            us / measured
        );
    }

    // Whole steps of one rank: its own batch, the MoE layers on the gathered batch of `ep`
    // ranks with the same batch (profile: its measured per-step overhead, if any, included).
    let profile = ProfileLatency::load(&dir, &shape, 1)
        .and_then(|p| p.with_ep_size(ep as u32))
        .expect("profile loads");
    println!();
    println!(
        "| one rank's step (EP {ep}, gathered = {ep} × own) | roofline ms | profile ms | ratio |"
    );
    println!("|---|---:|---:|---:|");
    let steps: [(&str, Vec<(u64, u64)>); 7] = [
        ("1 decode at KV 1000", vec![(1, 1000)]),
        ("16 decodes at KV 1000", vec![(1, 1000); 16]),
        ("64 decodes at KV 1000", vec![(1, 1000); 64]),
        ("128 decodes at KV 1000", vec![(1, 1000); 128]),
        ("2048-token prefill", vec![(2048, 0)]),
        (
            "512-token prefill + 63 decodes at KV 1000",
            std::iter::once((512, 0))
                .chain(vec![(1, 1000); 63])
                .collect(),
        ),
        ("8 decodes at KV 8000", vec![(1, 8000); 8]),
    ];
    for (label, reqs) in steps {
        let own: u64 = reqs.iter().map(|&(q, _)| q).sum();
        let gathered = own * ep;
        let ours = roof.step_us_gathered(&reqs, gathered) / 1000.0;
        let b = BatchShape::from_requests(reqs.iter().map(|&(q, c)| (q as usize, c as usize)));
        let theirs = profile.step_ns_moe(&b, Some(gathered)) as f64 / 1e6;
        println!(
            "| {label} | {ours:.2} | {theirs:.2} | {:.2} |",
            ours / theirs
        );
    }
}
