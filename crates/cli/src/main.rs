//! `llm-emu`: a GPU-free emulator of a vLLM inference server.

mod engine_args;
mod profile_pack;
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
    /// Run a workload through the emulated engine in virtual time and report vLLM-style metrics.
    Simulate(Box<simulate::SimulateArgs>),
    /// Replay a real vLLM run's workload and compare emulated with real per-request latencies.
    Validate(Box<validate::ValidateArgs>),
    /// Build a step-cycle latency pack (`--profile`/`--latency step-cycle:path=`) from measured
    /// step records.
    ProfilePack(profile_pack::ProfilePackArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(*args),
        Command::Validate(args) => validate::run(*args),
        Command::ProfilePack(args) => profile_pack::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
