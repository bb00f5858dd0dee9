//! A closed-loop streaming load client for the server's benchmark (`tools/serve-bench.sh`):
//! `CONCURRENCY` connections each send streaming `/v1/completions` requests back to back for
//! `DURATION_S` seconds and count the `data:` chunks (one token each) they receive.
//!
//! Usage: `load ADDR CONCURRENCY DURATION_S PROMPT_LEN MAX_TOKENS [WORKLOAD_OUT]` (ADDR as
//! `127.0.0.1:8000`). Prints one JSON line: requests completed, chunks/s, mean TTFT.
//!
//! With `WORKLOAD_OUT`, also writes the requests it completed as an `llm-emu simulate` workload
//! (plain JSONL, every arrival at 0 s, line `i` carrying client `i mod CONCURRENCY`'s prompt):
//! replayed with `--max-concurrency CONCURRENCY`, the same closed loop in virtual time, where
//! the server costs nothing, which is the emulated GPU's own throughput for this load.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    chunks: AtomicU64,
    errors: AtomicU64,
    ttft_us_sum: AtomicU64,
}

async fn client(addr: String, body: Bytes, until: Instant, counts: Arc<Counts>) {
    'conn: while Instant::now() < until {
        let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            let req = Request::post("/v1/completions")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .expect("valid request");
            let start = Instant::now();
            let Ok(resp) = sender.send_request(req).await else {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                continue 'conn;
            };
            if resp.status() != 200 {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'conn;
            }
            let mut body = resp.into_body();
            let mut first = true;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    continue 'conn;
                };
                if let Some(data) = frame.data_ref() {
                    let n = data.windows(6).filter(|w| w == b"data: ").count() as u64;
                    let done = data.ends_with(b"data: [DONE]\n\n");
                    let tokens = n - done as u64;
                    if first && tokens > 0 {
                        first = false;
                        counts
                            .ttft_us_sum
                            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    counts.chunks.fetch_add(tokens, Ordering::Relaxed);
                }
            }
            counts.requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(6..=7).contains(&args.len()) {
        eprintln!("usage: load ADDR CONCURRENCY DURATION_S PROMPT_LEN MAX_TOKENS [WORKLOAD_OUT]");
        std::process::exit(2);
    }
    let parse = |i: usize| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("argument {i} ({}) is not a number", args[i]);
            std::process::exit(2)
        })
    };
    let addr = args[1].clone();
    let (concurrency, duration, prompt_len, max_tokens) = (parse(2), parse(3), parse(4), parse(5));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let counts = Arc::new(Counts::default());
        let start = Instant::now();
        let until = start + Duration::from_secs(duration);
        let mut tasks = Vec::new();
        let mut prompts = Vec::new();
        for c in 0..concurrency {
            // Distinct prompts: no prefix-cache sharing between clients.
            let prompt: Vec<u64> = (0..prompt_len)
                .map(|i| 1000 + (c * 7919 + i) % 30000)
                .collect();
            let body = serde_json::json!({
                "prompt": prompt, "max_tokens": max_tokens, "stream": true, "ignore_eos": true,
            })
            .to_string();
            prompts.push(prompt);
            tasks.push(tokio::spawn(client(
                addr.clone(),
                Bytes::from(body),
                until,
                counts.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        let requests = counts.requests.load(Ordering::Relaxed);
        let chunks = counts.chunks.load(Ordering::Relaxed);
        println!(
            "{}",
            serde_json::json!({
                "concurrency": concurrency,
                "duration_s": secs,
                "requests": requests,
                "errors": counts.errors.load(Ordering::Relaxed),
                "tokens": chunks,
                "tokens_per_s": chunks as f64 / secs,
                "mean_ttft_ms": counts.ttft_us_sum.load(Ordering::Relaxed) as f64
                    / requests.max(1) as f64 / 1000.0,
            })
        );
        if let Some(path) = args.get(6) {
            if let Err(e) = write_workload(path, &prompts, requests, max_tokens) {
                eprintln!("writing {path}: {e}");
                std::process::exit(1);
            }
        }
    });
}

/// Writes `requests` lines of the closed loop's requests (see the module doc), atomically.
fn write_workload(
    path: &str,
    prompts: &[Vec<u64>],
    requests: u64,
    max_tokens: u64,
) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = format!("{path}.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for i in 0..requests as usize {
        let line = serde_json::json!({
            "arrival_s": 0.0,
            "prompt_token_ids": prompts[i % prompts.len()],
            "output_len": max_tokens,
        });
        writeln!(out, "{line}")?;
    }
    out.into_inner()?.sync_all()?;
    std::fs::rename(tmp, path)
}
