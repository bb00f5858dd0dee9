//! An in-process server on 127.0.0.1 with an OS-chosen port, for the connection and bad-input
//! suites, and the raw-socket helpers they share.
#![allow(dead_code)]

use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig};
use llm_emu_perf::latency::parse_latency_spec_with;
use llm_emu_perf::sizing::ModelShape;
use llm_emu_serve::conn::ConnStats;
use llm_emu_serve::text::{IdText, SharedCodec};
use llm_emu_serve::{ServeOptions, Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const MODEL: &str = "test/model";

pub struct Running {
    pub addr: SocketAddr,
    pub stats: Arc<ConnStats>,
    stop: Option<oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<()>,
}

/// Options with the test model's names; the caller sets the rest.
pub fn options() -> ServeOptions {
    ServeOptions {
        served_model_names: vec![MODEL.into()],
        model_root: MODEL.into(),
        ..ServeOptions::default()
    }
}

/// A server whose steps take `step_us` µs plus 1 µs per token, on word-id text.
pub async fn start(step_us: u64, max_model_len: usize, opts: ServeOptions) -> Running {
    start_with(step_us, max_model_len, opts, Arc::new(IdText)).await
}

pub async fn start_with(
    step_us: u64,
    max_model_len: usize,
    opts: ServeOptions,
    codec: SharedCodec,
) -> Running {
    let mut cfg = EngineConfig::with_defaults(20000, max_model_len);
    cfg.max_num_seqs = 256;
    let latency = parse_latency_spec_with(
        &format!("linear:base_us={step_us},per_token_us=1"),
        &ModelShape::llama_3_1_8b(),
    )
    .unwrap();
    let engine = Engine::new(cfg, latency, Box::new(HashSampler::default())).unwrap();
    let server = Server::bind(engine, codec, opts).await.unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.conn_stats();
    let (tx, rx) = oneshot::channel();
    let join = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        stats,
        stop: Some(tx),
        join,
    }
}

impl Running {
    /// Signals shutdown and waits (at most `limit`) for `run` to return; how long it took.
    pub async fn stop_within(mut self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(limit, self.join)
            .await
            .unwrap_or_else(|_| panic!("the server did not stop within {limit:?}"))
            .unwrap();
        t0.elapsed()
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// One request on a fresh connection (`Connection: close`); status and body.
    pub async fn raw(&self, head_and_body: &[u8]) -> (u16, String) {
        let mut s = self.connect().await;
        s.write_all(head_and_body).await.unwrap();
        read_response(&mut s).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
    }

    /// `/debug/engine`'s `server_load`.
    pub async fn server_load(&self) -> u64 {
        let (_, body) = self.get("/debug/engine").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["server_load"].as_u64().unwrap()
    }
}

/// Reads a `Connection: close` response to its end: status and body (chunked bodies are
/// returned with their framing).
pub async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits until the server closes `s` (reads until EOF or a reset, discarding what comes);
/// `None` if it is still open after `limit`.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, until_closed)
        .await
        .ok()
        .map(|()| t0.elapsed())
}
