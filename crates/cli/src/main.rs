//! `llm-emu`: a GPU-free emulator of a vLLM inference server.

mod bench;
mod bench_tokenizer;
mod compare;
mod engine_args;
mod profile_pack;
mod profile_plan;
mod render_template;
mod serve;
mod simulate;
mod validate;

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
    /// Compare two result files (bench, simulate or validate JSON) metric by metric.
    Compare(compare::CompareArgs),
    /// Render one chat template from stdin (`serve` runs request templates this way).
    #[command(name = "render-template", hide = true)]
    RenderTemplate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Simulate(args) => simulate::run(*args),
        Command::Validate(args) => validate::run(*args),
        Command::ProfilePack(args) => profile_pack::run(args),
        Command::ProfilePlan(args) => profile_plan::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Compare(args) => compare::run(args),
        Command::RenderTemplate => return render_template::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
