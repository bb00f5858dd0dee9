//! `llm-emu`: a GPU-free emulator of a vLLM inference server.

mod bench;
mod bench_tokenizer;
mod compare;
mod engine_args;
mod fleet_build;
mod plan;
mod profile_pack;
mod profile_plan;
mod render_template;
mod report;
mod serve;
mod serve_log;
mod sim_report;
mod simulate;
mod sweep;
mod validate;
mod validate_ip;
mod validate_series;
mod vllm_flags;
mod workload_flags;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "llm-emu",
    version,
    about = "A GPU-free emulator of a vLLM inference server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve vLLM's OpenAI-compatible API on the emulated engine, on the wall clock.
    #[command(mut_arg("model", |a| a.help(
        "The model to serve: the same as the positional MODEL, as in vLLM (both must name the same model)"
    )))]
    Serve(Box<serve::ServeArgs>),
    /// Run a workload through the emulated engine in virtual time and report vLLM-style metrics.
    Simulate(Box<simulate::SimulateArgs>),
    /// Replay a real vLLM run's workload and compare emulated with real per-request latencies.
    Validate(Box<validate::ValidateArgs>),
    /// Build a step-cycle latency pack (`--profile`/`--latency step-cycle:path=`) from measured
    /// step records.
    ProfilePack(profile_pack::ProfilePackArgs),
    /// Write a capture workload covering the step shapes a pack needs, for `bench` to send to a
    /// vLLM server running the capture plug-in.
    ProfilePlan(profile_plan::ProfilePlanArgs),
    /// Benchmark a running OpenAI-compatible server, as `vllm bench serve` does (same flags,
    /// metrics, result JSON and table).
    Bench(Box<bench::BenchArgs>),
    /// Run `simulate` over a grid or list of settings in parallel: one table, a
    /// throughput–latency curve per configuration and each one's saturation rate.
    Sweep(Box<sweep::SweepArgs>),
    /// Find the cheapest fleet (GPU, TP, engine caps, replicas or DP ranks) that serves a
    /// workload at a target rate within TTFT/TPOT objectives, and the command to serve it.
    Plan(Box<plan::PlanArgs>),
    /// Compare two result files (bench, simulate or validate JSON) metric by metric.
    Compare(compare::CompareArgs),
    /// Draw an HTML report (inline SVG charts) from simulate, validate, bench and sweep outputs.
    Report(report::ReportArgs),
    /// Render one chat template from stdin (`serve` runs request templates this way).
    #[command(name = "render-template", hide = true)]
    RenderTemplate,
}

/// mimalloc rather than the system allocator: it takes memory in large aligned arenas, which the
/// kernel backs with transparent huge pages (2 MiB) where it allows them only on request
/// (`madvise` mode, as on the project's machines), while glibc's heap stays on 4 KiB pages.
/// A fleet's working set (each instance's block pool, cache index and request records) spans
/// tens of MiB, and with small pages its TLB misses cost a tenth to a sixth of the wall time of a
/// 16-replica simulation (docs/performance.md, "One cache line per index probe, records on
/// whole lines, and huge pages"). No result depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = vllm_flags::normalize(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => match vllm_flags::explain_unknown(&e, &args) {
            Some(msg) => {
                eprintln!("{msg}");
                return std::process::ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Simulate(args) => simulate::run(*args),
        Command::Validate(args) => validate::run(*args),
        Command::ProfilePack(args) => profile_pack::run(args),
        Command::ProfilePlan(args) => profile_plan::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Plan(args) => plan::run(*args),
        Command::Compare(args) => compare::run(args),
        Command::Report(args) => report::run(args),
        Command::RenderTemplate => return render_template::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once: an error whose message already
/// quotes its cause (`cannot listen on ADDR: Address in use (os error 98)`) does not repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
