//! A streaming OpenAI-compatible load source for measuring the client (`tools/bench-client.sh`):
//! every request streams `max_tokens` vLLM-framed completion chunks, the first after
//! `--ttft-ms`, then one every `--itl-ms` (written `--events-per-write` at a time).
//!
//! `cargo run --release -p llm-emu-bench --example sse_server -- --port 8199 --itl-ms 25`

#[path = "../tests/support/server.rs"]
mod server;

use std::time::Duration;

fn main() {
    let mut port = 8199u16;
    let mut opts = server::ServerOpts {
        record: false,
        ..Default::default()
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let num = || -> f64 {
            val.parse().unwrap_or_else(|_| {
                eprintln!("{} needs a number, got `{val}`", args[i]);
                std::process::exit(2)
            })
        };
        match args[i].as_str() {
            "--port" => port = num() as u16,
            "--ttft-ms" => opts.ttft = Duration::from_secs_f64(num() / 1e3),
            "--itl-ms" => opts.itl = Duration::from_secs_f64(num() / 1e3),
            "--events-per-write" => opts.events_per_write = num() as usize,
            other => {
                eprintln!(
                    "unknown flag {other}; flags: --port --ttft-ms --itl-ms --events-per-write"
                );
                std::process::exit(2)
            }
        }
        i += 2;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let s = server::start_on(&format!("127.0.0.1:{port}"), opts).await;
        eprintln!("listening on {}", s.base_url());
        std::future::pending::<()>().await;
    });
}
