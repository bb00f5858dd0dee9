//! Served fleets whose members depend on each other: expert-parallel ranks in lockstep and
//! prefill/decode instances with the KV transfer between them, over HTTP. The fleets are the
//! ones `simulate` runs (`llm-emu-fleet`); each test runs the same fleet on a virtual clock
//! first, and the served times, on the wall clock, can only be later than those (a loaded
//! machine wakes the engine thread late, never early). Where requests went is read from the
//! per-engine metrics, which do not depend on timing.

mod support;

use llm_emu_core::latency::{LatencyModel, LinearLatency};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput,
    SamplingParams, Wake,
};
use llm_emu_fleet::{router_by_name, AllToAll, DataParallel, Disaggregated, EpGroup, Link, PdRole};
use llm_emu_serve::fleet_front::{FleetKind, ServedCore};
use llm_emu_serve::text::IdText;
use llm_emu_serve::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{options, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const PROMPT: [u32; 5] = [11, 12, 13, 14, 15];

fn config() -> EngineConfig {
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    // Lockstep ranks and the P/D tests' hand derivation schedule synchronously.
    cfg.async_scheduling = false;
    cfg.enforce_eager = true;
    cfg
}

/// Two lockstep ranks, each step 1 ms; the all-to-all's link has 20 ms of latency, so a step
/// lasts 1 ms + (20 ms + T·2048 B / 16 GB/s) + (20 ms + T·2000 B / 16 GB/s): the dispatch of
/// hidden states and 24 router logits per token, the combine of hidden states.
fn ep_fleet() -> DataParallel {
    let models: Vec<Box<dyn LatencyModel>> = (0..2)
        .map(|_| Box::new(LinearLatency::new(1000.0, 0.0)) as _)
        .collect();
    let a2a = AllToAll {
        hidden_size: 1000,
        dtype_bytes: 2,
        num_experts: 24,
        moe_layers: 1,
        ranks: 2,
        link: Link {
            bandwidth_gbs: 16.0,
            latency_ns: 20_000_000.0,
        },
    };
    let (group, lats) = EpGroup::new(models, a2a);
    let engines = lats
        .into_iter()
        .map(|l| Engine::new(config(), Box::new(l), Box::new(HashSampler::default())).unwrap())
        .collect();
    DataParallel::expert_parallel(engines, 1, group)
}

/// Instance 0 prefills, instance 1 decodes; steps 20 ms; the KV link has 60 ms of latency.
fn pd_fleet() -> Disaggregated {
    Disaggregated::new(
        (0..2)
            .map(|_| {
                Engine::new(
                    config(),
                    Box::new(LinearLatency::new(20_000.0, 0.0)),
                    Box::new(HashSampler::default()),
                )
                .unwrap()
            })
            .collect(),
        vec![PdRole::Prefill, PdRole::Decode],
        vec![1_000_000; 2],
        Link {
            bandwidth_gbs: 16.0,
            latency_ns: 60_000_000.0,
        },
        router_by_name("round-robin").unwrap(),
        router_by_name("round-robin").unwrap(),
    )
    .unwrap()
}

/// Times of the first token and the finish, from the arrival.
#[derive(Default)]
struct Times {
    first: Option<Nanos>,
    last: Option<Nanos>,
    tokens: usize,
}

impl EngineSink for Times {
    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        for o in outputs {
            if o.new_token.is_some() {
                self.first.get_or_insert(it.iteration_timestamp);
                self.tokens += 1;
            }
            if o.finish.is_some() {
                self.last = Some(it.iteration_timestamp);
            }
        }
    }
}

/// One request of `max_tokens` tokens, placed on engine `engine` if given, run on a virtual
/// clock from 0 until the fleet is idle.
fn virtual_times(
    core: &mut dyn ServedCore,
    engine: Option<usize>,
    max_tokens: u32,
) -> (Nanos, Nanos) {
    let req = NewRequest {
        request_id: "r".into(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(PROMPT.to_vec()),
        sampling: SamplingParams {
            max_tokens,
            min_tokens: max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        tenant: None,
        arrival: Nanos::ZERO,
    };
    let placement = llm_emu_serve::fleet_front::Placement {
        engine,
        ..Default::default()
    };
    core.add_placed(req, 0, &placement).unwrap();
    let mut times = Times::default();
    let mut now = Nanos::ZERO;
    while let Wake::At(t) = core.run(now, &mut times) {
        now = t;
    }
    assert_eq!(times.tokens, max_tokens as usize);
    (times.first.unwrap(), times.last.unwrap())
}

struct Running {
    addr: SocketAddr,
    instances: Vec<SocketAddr>,
    stop: oneshot::Sender<()>,
    join: tokio::task::JoinHandle<()>,
}

async fn start<E: ServedCore + Send + 'static>(core: E, kind: FleetKind, ports: usize) -> Running {
    let mut opts = options();
    opts.instance_ports = vec![0; ports];
    let server = Server::bind_fleet(core, kind, &config(), Arc::new(IdText), opts)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let instances = server.instance_addrs().unwrap();
    let (stop, rx) = oneshot::channel();
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
        instances,
        stop,
        join,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.join)
            .await
            .expect("the server stops")
            .unwrap();
    }
}

/// Streams one completion; returns the client's time to the first token and to the end.
async fn stream(addr: SocketAddr, headers: &str, max_tokens: u32) -> (Duration, Duration) {
    let body = serde_json::json!({
        "model": support::MODEL,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "stream": true,
    })
    .to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: \
         application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let t0 = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if first.is_none() && String::from_utf8_lossy(&seen).contains("\"text\"") {
            first = Some(t0.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    (first.expect("a token arrived"), t0.elapsed())
}

/// A per-engine series' value in `/metrics` (0 when absent).
async fn series(addr: SocketAddr, name: &str, engine: usize) -> f64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (status, text) = read_response(&mut s).await;
    assert_eq!(status, 200);
    let label = format!("engine=\"{engine}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expert_parallel_ranks_step_in_lockstep_on_the_wall_clock() {
    // Virtual time: each step is 1 ms + the all-to-all of the group's (padded) token count T:
    // the prefill step (T = 5) takes 1 ms + (20 ms + 640 ns) + (20 ms + 625 ns), each of the
    // two decode steps (T = 1, the idle rank's dummy batch padded to it) 1 ms + (20 ms +
    // 128 ns) + (20 ms + 125 ns).
    let prefill = Nanos(1_000_000 + 40_001_265);
    let decode = Nanos(1_000_000 + 40_000_253);
    let (first, last) = virtual_times(&mut ep_fleet(), Some(1), 3);
    assert_eq!(first, prefill);
    assert_eq!(last, Nanos(prefill.0 + 2 * decode.0));

    let fleet = start(ep_fleet(), FleetKind::DataParallel, 0).await;
    let (ttft, e2e) = stream(fleet.addr, "X-data-parallel-rank: 1\r\n", 3).await;
    assert!(ttft >= Duration::from_nanos(first.0), "TTFT {ttft:?}");
    assert!(e2e >= Duration::from_nanos(last.0), "E2E {e2e:?}");
    // The rank named ran it; rank 0 only ran dummy batches, which no request counts.
    let ok = "vllm:request_success_total";
    assert_eq!(series(fleet.addr, ok, 1).await, 1.0);
    assert_eq!(series(fleet.addr, ok, 0).await, 0.0);
    assert_eq!(
        series(fleet.addr, "vllm:generation_tokens_total", 1).await,
        3.0
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefill_decode_answers_one_stream_with_the_transfer_on_the_wall_clock() {
    // Virtual time: TTFT = prefill step (20 ms) + transfer of one block (60 ms + 10⁶ B /
    // 16 GB/s = 62.5 µs) + the decode instance's first step (20 ms); then 2 decode steps.
    let ttft_v = Nanos(20_000_000 + 60_062_500 + 20_000_000);
    let (first, last) = virtual_times(&mut pd_fleet(), None, 3);
    assert_eq!(first, ttft_v);
    assert_eq!(last, Nanos(ttft_v.0 + 2 * 20_000_000));

    let fleet = start(
        pd_fleet(),
        FleetKind::PrefillDecode {
            router: "round-robin".into(),
        },
        2,
    )
    .await;
    let (ttft, e2e) = stream(fleet.addr, "", 3).await;
    assert!(ttft >= Duration::from_nanos(first.0), "TTFT {ttft:?}");
    assert!(e2e >= Duration::from_nanos(last.0), "E2E {e2e:?}");
    // The prompt was computed on the prefill instance; the client's tokens, its TTFT and the
    // finish come from the decode instance.
    let (p, d) = (0, 1);
    assert_eq!(
        series(fleet.addr, "vllm:prompt_tokens_total", p).await,
        PROMPT.len() as f64
    );
    assert_eq!(
        series(fleet.addr, "vllm:generation_tokens_total", p).await,
        0.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:generation_tokens_total", d).await,
        3.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:request_success_total", p).await,
        0.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:request_success_total", d).await,
        1.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:time_to_first_token_seconds_count", p).await,
        0.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:time_to_first_token_seconds_count", d).await,
        1.0
    );

    // The prefill instance's own port runs a request whole there, as vLLM runs a request
    // that carries no KV transfer parameters: its tokens, TTFT and finish are counted there.
    let (_, _) = stream(fleet.instances[p], "", 4).await;
    assert_eq!(
        series(fleet.addr, "vllm:generation_tokens_total", p).await,
        4.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:request_success_total", p).await,
        1.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:time_to_first_token_seconds_count", p).await,
        1.0
    );
    assert_eq!(
        series(fleet.addr, "vllm:request_success_total", d).await,
        1.0
    );
    fleet.stop().await;
}
