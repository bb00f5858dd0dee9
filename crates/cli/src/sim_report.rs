//! What `llm-emu simulate` says around its table: a header of what it simulated (model, GPU,
//! parallelism, latency model, KV cache, workload), a footer with the wall time and the
//! speed-up over virtual time, and its progress bar (tqdm's layout: percentage, bar, ETA).

use crate::engine_args::{FleetPlan, Prepared};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llm_emu_fleet::{ClusterSpec, Topology};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;

/// The workload, in words.
pub enum WorkloadDesc<'a> {
    File(&'a Path),
    Synthetic { n: usize, rate: f64, seed: u64 },
}

/// How the header names vLLM's data-parallel load balancer (`DPLBAsyncMPClient`).
const DP_BALANCER: &str = "vLLM's DP load balancer";

/// What places requests among one set of engines (a fleet, or one side of a prefill/decode
/// fleet): the `--router` policy, or vLLM's DP load balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placer {
    Router(String),
    /// vLLM's DP load balancer (named `vllm-dp` in `--output-json`).
    DpBalancer,
}

impl Placer {
    /// Its name in `--output-json`.
    pub fn json_name(&self) -> &str {
        match self {
            Placer::Router(r) => r,
            Placer::DpBalancer => "vllm-dp",
        }
    }

    fn words(&self) -> String {
        match self {
            Placer::Router(r) => format!("a {r} router"),
            Placer::DpBalancer => DP_BALANCER.to_string(),
        }
    }
}

/// What places a cluster's requests: `None` for one instance; for a prefill/decode cluster,
/// the prefill side's and the decode side's placers; else the fleet's.
pub fn cluster_placers(spec: &ClusterSpec, router: &str) -> Vec<Placer> {
    let routed = || Placer::Router(router.to_string());
    match &spec.topology {
        Topology::Single => Vec::new(),
        Topology::Replicas | Topology::DataParallelGroups { .. } => vec![routed()],
        Topology::DataParallel { .. } => vec![Placer::DpBalancer],
        Topology::Disaggregated {
            prefill_group,
            decode_group,
            ..
        } => vec![
            match prefill_group {
                Some(_) => Placer::DpBalancer,
                // Prefill instances are taken in turn (fleet_build.rs).
                None => Placer::Router("round-robin".into()),
            },
            match decode_group {
                Some(_) => Placer::DpBalancer,
                None => routed(),
            },
        ],
    }
}

/// A cluster's fleet in words: its topology, sizes and what places requests.
fn cluster_desc(spec: &ClusterSpec, router: &str) -> String {
    let placers = cluster_placers(spec, router);
    let n = spec.instances.len();
    match &spec.topology {
        Topology::Single => "cluster file: one instance".into(),
        Topology::Replicas => format!("cluster file: {n} replicas behind {}", placers[0].words()),
        Topology::DataParallel { group, ep } => format!(
            "cluster file: dp_group `{group}` of {n} data-parallel ranks{}, {}",
            if *ep > 1 {
                format!(" in expert-parallel lockstep (EP {ep})")
            } else {
                String::new()
            },
            placers[0].words()
        ),
        Topology::DataParallelGroups { groups } => format!(
            "cluster file: {} dp_groups ({n} ranks) behind {}",
            groups.len(),
            placers[0].words()
        ),
        Topology::Disaggregated {
            prefill,
            decode,
            prefill_group,
            decode_group,
        } => {
            let side = |k: usize, group: &Option<String>, p: &Placer| match group {
                Some(g) => format!("dp_group `{g}` of {k} ranks, {}", p.words()),
                None => format!("{k} instance(s), {}", p.words()),
            };
            format!(
                "cluster file: prefill/decode; prefill: {}; decode: {}",
                side(prefill.len(), prefill_group, &placers[0]),
                side(decode.len(), decode_group, &placers[1])
            )
        }
    }
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
        FleetPlan::DataParallel { size, api_servers } => format!(
            "data parallel{}: {size} ranks, {api_servers} API server(s), {DP_BALANCER}",
            if prepared.is_moe() && *size > 1 {
                " in MoE lockstep without expert parallelism"
            } else {
                ""
            }
        ),
        FleetPlan::Replicas { count, router } => {
            format!("{count} replicas behind a {router} router")
        }
        FleetPlan::ExpertParallel {
            size,
            ep,
            api_servers,
        } => format!(
            "data parallel in expert-parallel lockstep: {size} ranks, EP {ep}, \
             {api_servers} API server(s), {DP_BALANCER}"
        ),
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
        FleetPlan::Cluster { spec, router } => cluster_desc(spec, router),
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
