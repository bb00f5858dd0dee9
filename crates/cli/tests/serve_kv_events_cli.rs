//! `llm-emu serve --kv-events-config …` as a process: its KV cache events arrive over ZMQ as
//! vLLM 0.19 sends them, decoded here (pure-Rust ZMQ and msgpack) and by msgspec in Python
//! (`tests/python/kv_events_sub.py`), with classes mirroring vLLM's and, where the vLLM
//! reference environment exists, with vLLM's own classes.
//!
//! The subscriber binds an OS-chosen port on 127.0.0.1 and the server's PUB socket connects
//! to it (vLLM connects when the endpoint has no `*`). The KV cache is small (8 blocks of 16
//! tokens) so that four distinct 64-token prompts evict blocks cached by earlier ones.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BLOCK: usize = 16;
const PROMPT: usize = 64;
const PROMPTS: u32 = 4;

fn serve(kv_config: &str, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--served-model-name",
            "emu",
            "--max-model-len",
            "128",
            "--block-size",
            "16",
            "--num-gpu-blocks-override",
            "8",
            "--latency",
            "linear:base_us=200,per_token_us=1",
            "--engine-thread-priority",
            "normal",
            "--kv-events-config",
            kv_config,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on http://"), "{line}");
    ADDR.with(|a| {
        *a.borrow_mut() = line.trim().rsplit("http://").next().unwrap().to_string();
    });
    child
}

thread_local! {
    static ADDR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn addr() -> String {
    ADDR.with(|a| a.borrow().clone())
}

fn stop(mut child: Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}

/// The prompt of request `i`: distinct token ids per request, so no prefix is shared.
fn prompt(i: u32) -> Vec<u32> {
    (0..PROMPT as u32).map(|t| 1000 + i * 100 + t).collect()
}

fn complete(addr: &str, i: u32, headers: &str) {
    let body = serde_json::json!({"model": "emu", "prompt": prompt(i), "max_tokens": 4});
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// One decoded event (vLLM's `BlockStored`, `BlockRemoved`, `AllBlocksCleared`).
#[derive(Clone, Debug, PartialEq)]
enum Event {
    Stored {
        hashes: Vec<u64>,
        parent: Option<u64>,
        tokens: Vec<u64>,
        block_size: u64,
    },
    Removed {
        hashes: Vec<u64>,
    },
    Cleared,
}

fn uint(v: &rmpv::Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("an unsigned integer: {v}"))
}

/// Decodes a `KVEventBatch` payload: `(ts, events, data_parallel_rank)`.
fn decode(payload: &[u8]) -> (f64, Vec<Event>, u64) {
    let v = rmpv::decode::read_value(&mut &payload[..]).unwrap();
    let batch = v.as_array().expect("the batch is an array");
    assert_eq!(batch.len(), 3, "ts, events, data_parallel_rank: {v}");
    let ts = batch[0].as_f64().expect("ts is a float");
    let events = batch[1]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| {
            let e = e.as_array().expect("an event is an array");
            match e[0].as_str().expect("the tag is a string") {
                "BlockStored" => {
                    assert_eq!(e.len(), 9, "{e:?}");
                    assert!(e[5].is_nil() && e[7].is_nil(), "no LoRA: {e:?}");
                    assert!(e[8].is_nil(), "no extra keys: {e:?}");
                    assert_eq!(e[6].as_str(), Some("GPU"));
                    Event::Stored {
                        hashes: e[1].as_array().unwrap().iter().map(uint).collect(),
                        parent: (!e[2].is_nil()).then(|| uint(&e[2])),
                        tokens: e[3].as_array().unwrap().iter().map(uint).collect(),
                        block_size: uint(&e[4]),
                    }
                }
                "BlockRemoved" => {
                    assert_eq!(e.len(), 3, "{e:?}");
                    assert_eq!(e[2].as_str(), Some("GPU"));
                    Event::Removed {
                        hashes: e[1].as_array().unwrap().iter().map(uint).collect(),
                    }
                }
                "AllBlocksCleared" => Event::Cleared,
                other => panic!("unknown event tag {other}"),
            }
        })
        .collect();
    (ts, events, uint(&batch[2]))
}

/// Binds a SUB socket on 127.0.0.1 at `port` (0: any) subscribed to `topic`; its port.
async fn subscriber(port: u16, topic: &str) -> Option<(zeromq::SubSocket, u16)> {
    use zeromq::Socket;
    let mut sub = zeromq::SubSocket::new();
    let ep = sub.bind(&format!("tcp://127.0.0.1:{port}")).await.ok()?;
    let zeromq::Endpoint::Tcp(_, port) = ep else {
        panic!("a TCP endpoint: {ep}");
    };
    sub.subscribe(topic).await.unwrap();
    Some((sub, port))
}

/// Receives messages until `done` holds of the events so far or 20 s pass; each message's
/// `(topic, seq, ts, events, rank)`.
async fn collect(
    sub: &mut zeromq::SubSocket,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<(String, u64, f64, Vec<Event>, u64)> {
    use zeromq::SocketRecv;
    let mut got = Vec::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&events) && Instant::now() < deadline {
        let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await else {
            continue;
        };
        let frames = msg.into_vec();
        assert_eq!(frames.len(), 3, "topic, seq, payload");
        let topic = String::from_utf8(frames[0].to_vec()).unwrap();
        let seq = u64::from_be_bytes(frames[1].as_ref().try_into().expect("8-byte seq"));
        let (ts, evs, rank) = decode(&frames[2]);
        events.extend(evs.iter().cloned());
        got.push((topic, seq, ts, evs, rank));
    }
    got
}

fn has_removal(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Removed { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_block_stored_and_removed_over_zmq() {
    let (mut sub, port) = subscriber(0, "kv").await.unwrap();
    let config = format!(
        r#"{{"enable_kv_cache_events": true, "publisher": "zmq",
            "endpoint": "tcp://127.0.0.1:{port}", "topic": "kv"}}"#
    );
    let child = serve(&config, &[]);
    let addr = addr();
    // The PUB socket connects in the background; let it finish before events exist.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    tokio::task::spawn_blocking(move || {
        for i in 0..PROMPTS {
            complete(&addr, i, "");
        }
    })
    .await
    .unwrap();
    let got = collect(&mut sub, has_removal).await;
    stop(child);

    assert!(!got.is_empty(), "no KV events arrived");
    for (i, (topic, seq, ts, _, rank)) in got.iter().enumerate() {
        assert_eq!(topic, "kv");
        assert_eq!(*seq, i as u64, "sequence numbers count from 0 without gaps");
        assert!(*ts >= started - 1.0 && *ts < started + 60.0, "ts {ts}");
        assert_eq!(*rank, 0);
    }
    let events: Vec<&Event> = got.iter().flat_map(|g| &g.3).collect();
    // The first request's prompt fills 4 blocks, cached at once, chained from no parent.
    let Event::Stored {
        hashes,
        parent,
        tokens,
        block_size,
    } = events[0]
    else {
        panic!("first event is BlockStored: {:?}", events[0]);
    };
    assert_eq!(*block_size, BLOCK as u64);
    assert_eq!(*parent, None);
    assert_eq!(hashes.len(), PROMPT / BLOCK);
    let want: Vec<u64> = prompt(0).into_iter().map(u64::from).collect();
    assert_eq!(tokens, &want);
    // Every stored event covers block_size tokens per hash; every removed hash was stored.
    let mut stored = std::collections::HashSet::new();
    for e in &events {
        match e {
            Event::Stored {
                hashes,
                tokens,
                block_size,
                ..
            } => {
                assert_eq!(tokens.len(), hashes.len() * *block_size as usize);
                stored.extend(hashes.iter().copied());
            }
            Event::Removed { hashes } => {
                assert_eq!(hashes.len(), 1, "one hash per removal, as vLLM emits");
                assert!(stored.contains(&hashes[0]), "removed before stored");
            }
            Event::Cleared => panic!("no reset was asked for"),
        }
    }
    assert!(
        events.iter().any(|e| matches!(e, Event::Removed { .. })),
        "evictions were published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dp_rank_publishes_on_its_own_port_with_its_rank() {
    // Rank 1 publishes on the port after rank 0's (vLLM's offset_endpoint_port): find two
    // free neighbours.
    let mut pair = None;
    for _ in 0..20 {
        let Some((s0, p0)) = subscriber(0, "").await else {
            continue;
        };
        if p0 == u16::MAX {
            continue;
        }
        if let Some((s1, _)) = subscriber(p0 + 1, "").await {
            pair = Some((s0, s1, p0));
            break;
        }
    }
    let (mut s0, mut s1, port) = pair.expect("two neighbouring free ports");
    let config =
        format!(r#"{{"enable_kv_cache_events": true, "endpoint": "tcp://127.0.0.1:{port}"}}"#);
    let child = serve(&config, &["--data-parallel-size", "2"]);
    let addr = addr();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || {
        complete(&addr, 0, "X-data-parallel-rank: 0\r\n");
        complete(&addr, 1, "X-data-parallel-rank: 1\r\n");
    })
    .await
    .unwrap();
    let any = |e: &[Event]| !e.is_empty();
    let got0 = collect(&mut s0, any).await;
    let got1 = collect(&mut s1, any).await;
    stop(child);
    assert!(!got0.is_empty() && !got1.is_empty(), "both ranks publish");
    assert!(got0.iter().all(|g| g.4 == 0 && g.0.is_empty()));
    assert!(got1.iter().all(|g| g.4 == 1));
    let first_tokens = |got: &[(String, u64, f64, Vec<Event>, u64)]| match &got[0].3[0] {
        Event::Stored { tokens, .. } => tokens.clone(),
        e => panic!("BlockStored first: {e:?}"),
    };
    let want = |i| prompt(i).into_iter().map(u64::from).collect::<Vec<_>>();
    assert_eq!(first_tokens(&got0), want(0));
    assert_eq!(first_tokens(&got1), want(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_socket_resends_buffered_batches() {
    use zeromq::{Socket, SocketRecv, SocketSend};
    let (mut sub, port) = subscriber(0, "").await.unwrap();
    // vLLM binds the replay ROUTER socket on the address given: take a free port.
    let replay_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        r#"{{"enable_kv_cache_events": true, "endpoint": "tcp://127.0.0.1:{port}",
            "replay_endpoint": "tcp://127.0.0.1:{replay_port}", "buffer_steps": 100}}"#
    );
    let child = serve(&config, &[]);
    let addr = addr();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || {
        for i in 0..2 {
            complete(&addr, i, "");
        }
    })
    .await
    .unwrap();
    let live = collect(&mut sub, |e| e.len() >= 2).await;
    assert!(live.len() >= 2, "{} batches", live.len());
    // A DEALER frames its request as a REQ socket would: ["", start_seq].
    let mut dealer = zeromq::DealerSocket::new();
    dealer
        .connect(&format!("tcp://127.0.0.1:{replay_port}"))
        .await
        .unwrap();
    let request = vec![
        bytes::Bytes::new(),
        bytes::Bytes::copy_from_slice(&1u64.to_be_bytes()),
    ];
    dealer
        .send(zeromq::ZmqMessage::try_from(request).unwrap())
        .await
        .unwrap();
    let mut replayed = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
            .await
            .expect("a replay answer within 10 s")
            .unwrap()
            .into_vec();
        assert_eq!(msg.len(), 3, "empty delimiter, seq, payload");
        assert!(msg[0].is_empty());
        let seq = i64::from_be_bytes(msg[1].as_ref().try_into().unwrap());
        if seq == -1 {
            assert!(msg[2].is_empty(), "the end marker has no payload");
            break;
        }
        replayed.push((seq as u64, decode(&msg[2]).1));
    }
    stop(child);
    // Every batch from seq 1 on, as first sent (the live ones up to what was collected).
    assert!(!replayed.is_empty());
    for (i, (seq, events)) in replayed.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        if let Some(l) = live.iter().find(|l| l.1 == *seq) {
            assert_eq!(&l.3, events, "batch {seq} replayed as sent");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_before_its_subscriber_and_connects_later() {
    use zeromq::SocketRecv;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        format!(r#"{{"enable_kv_cache_events": true, "endpoint": "tcp://127.0.0.1:{port}"}}"#);
    // Nothing listens on the endpoint yet: the server must serve all the same.
    let child = serve(&config, &[]);
    let addr = addr();
    let (mut sub, _) = subscriber(port, "").await.expect("the port is still free");
    let mut got = None;
    for i in 0..20 {
        let a = addr.clone();
        tokio::task::spawn_blocking(move || complete(&a, i, ""))
            .await
            .unwrap();
        if let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(1), sub.recv()).await {
            got = Some(msg.into_vec());
            break;
        }
    }
    stop(child);
    let frames = got.expect("events once the subscriber is up (connect retries)");
    let (_, events, rank) = decode(&frames[2]);
    assert_eq!(rank, 0);
    assert!(
        events.iter().any(|e| matches!(e, Event::Stored { .. })),
        "{events:?}"
    );
}

#[test]
fn a_bad_kv_events_config_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "serve",
            "--kv-events-config",
            r#"{"enable_kv_cache_events": true, "publisher": "kafka"}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kv-events-config"), "{err}");
}

/// The Python decoders: `python` runs `kv_events_sub.py` (with `--vllm`: vLLM's classes);
/// the summary it prints is checked against what the server was sent.
fn python_decodes(python: &str, vllm: bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/kv_events_sub.py");
    let mut args = vec![script.to_string(), "kv".into(), "60".into()];
    if vllm {
        args.push("--vllm".into());
    }
    let mut py = Command::new(python)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(py.stdout.take().unwrap()).lines();
    // vLLM's import may log on stdout first.
    let mut tagged = |tag: &str| -> String {
        out.by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix(tag).map(str::to_string))
            .unwrap_or_else(|| panic!("no `{tag}` line from the subscriber"))
    };
    let port: u16 = tagged("PORT ").parse().unwrap();
    let config = format!(
        r#"{{"enable_kv_cache_events": true, "endpoint": "tcp://127.0.0.1:{port}", "topic": "kv"}}"#
    );
    let child = serve(&config, &[]);
    let addr = addr();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..PROMPTS {
        complete(&addr, i, "");
    }
    let summary = tagged("SUMMARY ");
    assert!(py.wait().unwrap().success());
    stop(child);
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["source"], if vllm { "vllm" } else { "mirror" });
    assert_eq!(s["topics_ok"], true);
    assert_eq!(
        s["reencoded_identical"], true,
        "msgspec re-encodes each decoded batch to the same bytes (received, re-encoded): {}",
        s["first_mismatch"]
    );
    let batches = s["batches"].as_u64().unwrap();
    assert!(batches > 0);
    let seqs: Vec<u64> = serde_json::from_value(s["seqs"].clone()).unwrap();
    assert_eq!(seqs, (0..batches).collect::<Vec<_>>());
    assert!(s["ranks"].as_array().unwrap().iter().all(|r| r == 0));
    let first = &s["stored"][0];
    assert_eq!(first["block_size"], BLOCK);
    assert_eq!(first["parent_block_hash"], serde_json::Value::Null);
    assert_eq!(first["medium"], "GPU");
    assert_eq!(first["lora_name"], serde_json::Value::Null);
    let want: Vec<u32> = prompt(0);
    assert_eq!(first["token_ids"], serde_json::json!(want));
    assert!(!s["removed"].as_array().unwrap().is_empty());
}

fn python_has(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn msgspec_decodes_the_events_with_classes_mirroring_vllm() {
    let py = std::env::var("LLM_EMU_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !python_has(&py, "zmq, msgspec") {
        eprintln!("skipping: `{py}` lacks pyzmq or msgspec (pip install pyzmq msgspec)");
        return;
    }
    python_decodes(&py, false);
}

#[test]
fn vllms_own_classes_decode_the_events() {
    let Some(home) = std::env::var_os("HOME") else {
        eprintln!("skipping: no HOME, so no vLLM reference environment");
        return;
    };
    let py = std::path::Path::new(&home).join(".cache/vllm-reference/venv/bin/python");
    let py = py.to_string_lossy().to_string();
    if !python_has(&py, "zmq, msgspec, vllm.distributed.kv_events") {
        eprintln!("skipping: no vLLM reference environment at {py}");
        return;
    }
    python_decodes(&py, true);
}
