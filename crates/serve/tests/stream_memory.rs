//! Memory per request, measured as the process's RSS (the tests of this binary take turns, so
//! that the RSS is one test's): a client that sends a request with a 4 MB `request_id` and then
//! does not read the stream (every SSE chunk repeats the id, so the server must not gather the
//! queued events into one ever larger buffer), and `/tokenize` of a long text.

mod common;

use common::{rss_bytes, Setup, TestServer, MODEL};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How much the process may grow while a stalled stream with a 4 MB id is held. Before SSE
/// writes were capped by bytes, 256 queued events went into one write: over 400 MB here for
/// the completion (100 events) and the chat request (16 role chunks, then 16 × 8 deltas).
const GROWTH_BOUND: u64 = 128 << 20;

/// Sends `body` to `path` as a streamed request and leaves the response unread (a blocking
/// socket: the server runs on its own runtime).
fn send_and_stall(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body).unwrap();
    tcp
}

/// Reads the rest of a chunked SSE response until its end; returns the bytes read and whether
/// it ended with `data: [DONE]`.
fn drain(tcp: &mut TcpStream) -> (usize, bool) {
    let mut total = 0;
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = tcp.read(&mut buf).expect("the stream goes on");
        if n == 0 {
            break;
        }
        total += n;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 256 {
            tail.drain(..tail.len() - 256);
        }
        if tail.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    let done = String::from_utf8_lossy(&tail).contains("data: [DONE]");
    (total, done)
}

/// Largest RSS growth over `before` seen in 3 s of sampling.
async fn growth_over(before: u64) -> u64 {
    let mut peak = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_bytes().saturating_sub(before));
    }
    peak
}

/// Held by each test for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_mb_request_id_to_a_reader_that_does_not_read_keeps_memory_bounded() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup {
        step_us: 200,
        ..Setup::default()
    });
    let (st, _) = s
        .json(
            "/v1/completions",
            json!({"prompt": "warm up", "max_tokens": 4, "stream": true}),
        )
        .await;
    assert_eq!(st, 200);
    let id = "r".repeat(4 << 20);
    let completion = serde_json::to_vec(&json!({
        "model": MODEL, "prompt": "hello world", "max_tokens": 100, "ignore_eos": true,
        "stream": true, "request_id": id,
    }))
    .unwrap();
    let chat = serde_json::to_vec(&json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hello"}], "n": 16,
        "max_tokens": 8, "ignore_eos": true, "stream": true, "request_id": id,
    }))
    .unwrap();
    drop(id);

    for (path, body, events) in [
        ("/v1/completions", completion, 100),
        ("/v1/chat/completions", chat, 16 + 16 * 8),
    ] {
        let before = rss_bytes();
        let mut tcp = send_and_stall(s.addr, path, &body);
        // The engine produces every token within a second; the stream waits on this reader.
        let growth = growth_over(before).await;
        eprintln!(
            "{path}: RSS {} MiB before, grew by at most {} MiB while the reader stalled",
            before >> 20,
            growth >> 20
        );
        assert!(
            growth < GROWTH_BOUND,
            "{path}: RSS grew by {} MiB",
            growth >> 20
        );
        // Nothing was lost: once read, the stream carries every event and ends.
        let (bytes, done) = drain(&mut tcp);
        assert!(done, "{path}: the stream ends with [DONE]");
        assert!(bytes > events * (4 << 20), "{path}: {bytes} bytes");
    }
    s.stop().await;
}

/// Largest RSS over `before` while `work` runs, sampled every 10 ms.
async fn peak_growth_during<F: std::future::Future>(before: u64, work: F) -> (F::Output, u64) {
    tokio::pin!(work);
    let mut peak = 0;
    loop {
        tokio::select! {
            out = &mut work => {
                peak = peak.max(rss_bytes().saturating_sub(before));
                return (out, peak);
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                peak = peak.max(rss_bytes().saturating_sub(before));
            }
        }
    }
}

/// How much `/tokenize` may cost per byte of body: the ids, their strings and the answer (its
/// ids and strings as JSON, held by this test's client too) are a few times the text, plus
/// about 110 MiB for the piece of text being tokenized. Tokenized in one piece (the tokenizers
/// library holds about 110 bytes per byte of text while it encodes), with the answer built as a
/// JSON tree, 9.5 MB grew the process by 1095 MiB (114 times); now by 156 MiB.
const TOKENIZE_GROWTH_PER_BODY_BYTE: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_of_a_long_text_costs_a_few_times_its_size() {
    let _alone = ALONE.lock().await;
    let s = TestServer::start(Setup {
        real_tokenizer: true,
        ..Setup::default()
    });
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(10_000_000 / 44);
    let body = serde_json::to_vec(&json!({"prompt": prompt, "return_token_strs": true})).unwrap();
    drop(prompt);
    let size = body.len() as u64;
    let before = rss_bytes();
    let ((st, answer), growth) =
        peak_growth_during(before, s.call("POST", "/tokenize", body)).await;
    eprintln!(
        "/tokenize of {} MB: RSS {} MiB before, peak growth {} MiB ({}x the body)",
        size >> 20,
        before >> 20,
        growth >> 20,
        growth / size
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let count = v["count"].as_u64().unwrap();
    assert!(count > 1_000_000, "{count} tokens");
    assert_eq!(v["tokens"].as_array().unwrap().len() as u64, count);
    assert_eq!(v["token_strs"].as_array().unwrap().len() as u64, count);
    assert_eq!(v["token_strs"][2], "Ġquick");
    drop(v);
    assert!(
        growth < TOKENIZE_GROWTH_PER_BODY_BYTE * size,
        "RSS grew by {} MiB for a {} MB body",
        growth >> 20,
        size >> 20
    );
    s.stop().await;
}
