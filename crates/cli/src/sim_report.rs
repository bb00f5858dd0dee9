//! What `llm-emu simulate` says around its table: a header of what it simulated (model, GPU,
//! parallelism, latency model, KV cache, workload), a footer with the wall time and the
//! speed-up over virtual time, and its progress bar (tqdm's layout: percentage, bar, ETA).

use crate::engine_args::{FleetPlan, Prepared};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;

/// The workload, in words.
pub enum WorkloadDesc<'a> {
    File(&'a Path),
    Synthetic { n: usize, rate: f64, seed: u64 },
}

/// The header lines (vLLM bench's table style: `label:` padded to 40 columns).
pub fn header(
    prepared: &Prepared,
    plan: &FleetPlan,
    latency: &str,
    workload: &WorkloadDesc,
) -> String {
    let a = &prepared.args;
    let cfg = prepared.config();
    let model = match (&a.model_config, &a.model) {
        (Some(p), _) => format!("{} (--model-config)", p.display()),
        (None, Some(m)) => m.clone(),
        (None, None) => "meta-llama/Llama-3.1-8B (default)".into(),
    };
    let gpu = a.gpu_spec().map(|g| g.name).unwrap_or("?");
    let tp = a.tensor_parallel_size.unwrap_or(1);
    let fleet = match plan {
        FleetPlan::Single => "one engine".to_string(),
        FleetPlan::DataParallel { size, api_servers } => {
            format!("data parallel: {size} ranks, {api_servers} API server(s)")
        }
        FleetPlan::Replicas { count, router } => {
            format!("{count} replicas behind a {router} router")
        }
        FleetPlan::ExpertParallel { size, ep, .. } => {
            format!("data parallel in expert-parallel lockstep: {size} ranks, EP {ep}")
        }
        FleetPlan::ReplicatedDp {
            count,
            size,
            router,
            ep,
            ..
        } => format!(
            "{count} replicas of {size} data-parallel ranks{} behind a {router} router",
            if *ep > 1 {
                format!(" (EP {ep})")
            } else {
                String::new()
            }
        ),
        FleetPlan::Cluster { spec, router } => format!(
            "cluster file: {} instance(s), {router} router",
            spec.instances.len()
        ),
    };
    let work = match workload {
        WorkloadDesc::File(p) => format!("{} (replayed at its arrival times)", p.display()),
        WorkloadDesc::Synthetic { n, rate, seed } => format!(
            "{n} synthetic ShareGPT-like requests, {} (seed {seed})",
            if rate.is_finite() {
                format!("Poisson at {rate} req/s")
            } else {
                "all at once".into()
            }
        ),
    };
    let kv_tokens = cfg.num_gpu_blocks as u64 * cfg.block_size as u64;
    let rows = [
        ("Model:", model),
        ("GPU:", format!("{gpu}, TP {tp}")),
        ("Engines:", fleet),
        ("Latency model:", latency.to_string()),
        (
            "KV cache:",
            format!(
                "{} blocks of {} tokens ({} tokens), prefix caching {}",
                cfg.num_gpu_blocks,
                cfg.block_size,
                crate::serve_log::thousands(kv_tokens),
                if cfg.enable_prefix_caching {
                    "on"
                } else {
                    "off"
                }
            ),
        ),
        (
            "Batch limits:",
            format!(
                "max_num_seqs {}, max_num_batched_tokens {}, max_model_len {}",
                cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.max_model_len
            ),
        ),
        ("Workload:", work),
    ];
    let mut out = format!("{:=^50}\n", " llm-emu simulate ");
    for (k, v) in rows {
        out += &format!("{k:<40}{v}\n");
    }
    out
}

/// The footer: wall time against the virtual time simulated.
pub fn footer(wall: Duration, virtual_s: f64) -> String {
    let wall_s = wall.as_secs_f64();
    let speedup = if wall_s > 0.0 {
        let x = virtual_s / wall_s;
        if x >= 100.0 {
            format!("{x:.0}x")
        } else {
            format!("{x:.1}x")
        }
    } else {
        "-".into()
    };
    format!(
        "{:<40}{wall_s:.3}\n{:<40}{virtual_s:.3}\n{:<40}{speedup}\n",
        "Wall time (s):", "Simulated time (s):", "Speed-up over real time:"
    )
}

/// The progress bar on stderr when it is a terminal and the run is not `--quiet`: tqdm's
/// layout, with an ETA; hidden otherwise.
pub fn progress_bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
    }
    let b = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{percent:>3}%|{wide_bar}| {pos}/{len} requests [{elapsed_precise}<{eta_precise}, {per_sec}]"
    } else {
        "{spinner} {pos} requests done [{elapsed_precise}, {per_sec}]"
    };
    b.set_style(ProgressStyle::with_template(template).expect("valid template"));
    b
}

/// Non-blank lines of a workload file: the request count the bar runs to (unusable lines
/// count too; the bar is cleared at the end either way). `None` if it cannot be read.
pub fn count_requests(path: &Path) -> Option<u64> {
    let f = std::fs::File::open(path).ok()?;
    let mut n = 0u64;
    for line in std::io::BufReader::new(f).split(b'\n') {
        if line.ok()?.iter().any(|b| !b.is_ascii_whitespace()) {
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_gives_wall_time_and_speedup() {
        let f = footer(Duration::from_millis(500), 300.0);
        assert!(f.contains("Wall time (s):"), "{f}");
        assert!(
            f.contains("Wall time (s):                          0.500\n"),
            "{f}"
        );
        assert!(
            f.contains("Speed-up over real time:                600x"),
            "{f}"
        );
        let f = footer(Duration::from_secs(2), 15.0);
        assert!(
            f.contains("Speed-up over real time:                7.5x"),
            "{f}"
        );
    }
}
