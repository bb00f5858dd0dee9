//! A server in-process on 127.0.0.1 with an OS-chosen port, for the hardening tests: the
//! stand-in or the real (embedded Llama 3.1) tokenizer, a chosen body limit and template trust.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig};
use llm_emu_perf::latency::parse_latency_spec_with;
use llm_emu_perf::sizing::ModelShape;
use llm_emu_serve::text::{IdText, ModelText, SharedCodec};
use llm_emu_serve::{ServeOptions, Server};
use llm_emu_text::{OutputLengthDistribution, TextModel, TokenizerSource, VocabSampler};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const MODEL: &str = "test/model";

/// The context length of every test server, tokens.
pub const MAX_MODEL_LEN: usize = 4096;

/// A server on its own runtime (two worker threads, as on a 2-core machine) in its own thread,
/// so that a server whose workers are stuck cannot stop the test's client from noticing.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct Setup {
    /// The real tokenizer (else the whitespace stand-in).
    pub real_tokenizer: bool,
    pub max_body_bytes: usize,
    pub trust_request_chat_template: bool,
    /// Engine step time, µs (plus 1 µs per token).
    pub step_us: u64,
    /// Tool-call flags and the output mode.
    pub structured: llm_emu_serve::structured::StructuredOptions,
    /// Sets any other server option (LoRA, the runner, …) on the options built from the rest.
    pub adjust: fn(&mut ServeOptions),
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            real_tokenizer: false,
            max_body_bytes: 64 << 20,
            trust_request_chat_template: false,
            step_us: 1000,
            structured: Default::default(),
            adjust: |_| {},
        }
    }
}

/// Structured-output flags with a tool-call parser named: vLLM 0.19 needs one before it forces
/// a tool (`tool_choice` `"required"` or a named function).
pub fn with_tool_parser() -> llm_emu_serve::structured::StructuredOptions {
    llm_emu_serve::structured::StructuredOptions {
        tool_call_parser: Some("hermes".into()),
        ..Default::default()
    }
}

/// A server with the real tokenizer, 200 µs steps and the given structured-output flags (the
/// structured-output, Messages and Responses tests).
pub fn structured_server(structured: llm_emu_serve::structured::StructuredOptions) -> TestServer {
    TestServer::start(Setup {
        real_tokenizer: true,
        step_us: 200,
        structured,
        ..Setup::default()
    })
}

impl TestServer {
    pub fn start(setup: Setup) -> TestServer {
        let mut cfg = EngineConfig::with_defaults(2000, MAX_MODEL_LEN);
        cfg.max_num_seqs = 256;
        let latency = parse_latency_spec_with(
            &format!("linear:base_us={},per_token_us=1", setup.step_us),
            &ModelShape::llama_3_1_8b(),
        )
        .unwrap();
        let (codec, sampler): (SharedCodec, Box<dyn llm_emu_core::sampler::TokenSampler>) = if setup
            .real_tokenizer
        {
            let model = TextModel::load(&TokenizerSource::Builtin).unwrap();
            let sampler = VocabSampler::new(&model, OutputLengthDistribution::Fixed(6), 7).unwrap();
            (Arc::new(ModelText(model)), Box::new(sampler))
        } else {
            (Arc::new(IdText), Box::new(HashSampler::default()))
        };
        let engine = Engine::new(cfg, latency, sampler).unwrap();
        let mut opts = ServeOptions {
            served_model_names: vec![MODEL.into()],
            model_root: MODEL.into(),
            max_body_bytes: setup.max_body_bytes,
            shutdown_grace: Duration::from_secs(5),
            trust_request_chat_template: setup.trust_request_chat_template,
            structured: setup.structured.clone(),
            ..ServeOptions::default()
        };
        (setup.adjust)(&mut opts);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = Server::bind(engine, codec, opts).await.unwrap();
                addr_tx.send(server.local_addr().unwrap()).unwrap();
                server
                    .run(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server starts");
        TestServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the server and waits (up to 30 s) for its thread.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    }

    /// One request on a fresh connection: status and body.
    pub async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
        call(self.addr, method, path, body).await
    }

    pub async fn json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (s, b) = self
            .call("POST", path, serde_json::to_vec(&body).unwrap())
            .await;
        (
            s,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b)),
        )
    }
}

pub async fn call(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs `work` while `/health` is polled every 100 ms; returns its output, the slowest
/// `/health` answer and the number of polls. Panics as soon as one poll takes longer than
/// `bound` or is not 200.
pub async fn while_polling_health<F: std::future::Future>(
    addr: SocketAddr,
    bound: Duration,
    work: F,
) -> (F::Output, Duration, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_poller = stop.clone();
    let mut poller = tokio::spawn(async move {
        let (mut worst, mut polls) = (Duration::ZERO, 0usize);
        while !stop_poller.load(Ordering::Relaxed) {
            let t = Instant::now();
            let answer = tokio::time::timeout(bound, call(addr, "GET", "/health", vec![])).await;
            let took = t.elapsed();
            match answer {
                Ok((200, _)) if took <= bound => {}
                Ok((status, _)) => return Err(format!("/health answered {status} after {took:?}")),
                Err(_) => return Err(format!("/health did not answer within {bound:?}")),
            }
            worst = worst.max(took);
            polls += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((worst, polls))
    });
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => {
            stop.store(true, Ordering::Relaxed);
            let (worst, polls) = poller.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
            (out, worst, polls)
        }
        res = &mut poller => panic!("{}", res.unwrap().err().unwrap_or_default()),
    }
}

/// The process's resident set size, bytes (`VmRSS` of /proc/self/status).
pub fn rss_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// The process's peak resident set size so far, bytes (`VmHWM`).
pub fn peak_rss_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

fn proc_status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
