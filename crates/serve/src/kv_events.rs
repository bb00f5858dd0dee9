//! KV cache events published as vLLM 0.19 publishes them (`vllm/distributed/kv_events.py`,
//! `--kv-events-config`): each engine's block-pool events, drained once per engine run, go as a
//! `KVEventBatch` over a ZMQ PUB socket, one socket per data-parallel rank.
//!
//! Wire format (what vLLM's `ZmqEventPublisher` sends): a three-frame message
//! `[topic, sequence number (8 bytes, big-endian, from 0 per socket), payload]`, the payload a
//! msgpack array as msgspec encodes vLLM's `array_like`, tagged structs (every field, in
//! declaration order: `omit_defaults` does not apply to array-like structs):
//!
//! - batch: `[ts (float64, Unix seconds), [event, …], data_parallel_rank]`;
//! - `["BlockStored", [hash, …], parent_hash | nil, [token, …], block_size, lora_id | nil,
//!   medium, lora_name | nil, extra_keys | nil]`;
//! - `["BlockRemoved", [hash, …], medium]`;
//! - `["AllBlocksCleared"]`.
//!
//! Hashes are integers, as vLLM sends them by default (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1`:
//! the low 64 bits of the block hash). llm-emu's block hash is XXH3-128 over the parent hash,
//! the tokens and the salt (`llm_emu_core::kv::hash`), not vLLM's `sha256_cbor`, so the values
//! are consistent within one server (a stored hash is the one later removed, parents chain) but
//! differ from a real vLLM's for the same tokens.
//!
//! The engine thread only drains events into a bounded channel ([`KvEventSender::publish`],
//! never blocking: a full queue drops the batch, counted); one tokio task per rank encodes and
//! sends, and answers replay requests on `replay_endpoint` (a ROUTER socket) from its buffer of
//! the last `buffer_steps` batches.

use bytes::Bytes;
use llm_emu_core::kv::{BlockHash, KvCacheEvent};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// The end-of-replay marker's sequence number (vLLM `END_SEQ`: -1 as 8 signed big-endian bytes).
const END_SEQ: [u8; 8] = (-1i64).to_be_bytes();

/// vLLM's `KVEventsConfig`, parsed from `--kv-events-config` JSON (same keys, same defaults).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KvEventsConfig {
    pub enable_kv_cache_events: bool,
    /// `None`: `"zmq"` when events are enabled, else `"null"` (vLLM's `__post_init__`).
    pub publisher: Option<PublisherKind>,
    /// PUB address; bound when it holds `*` or `::` (or is `ipc://`/`inproc://`), else
    /// connected to, as vLLM does. Rank r > 0 uses the port plus r.
    pub endpoint: String,
    /// ROUTER address for replay requests (rank r > 0: port plus r).
    pub replay_endpoint: Option<String>,
    /// Batches kept for replay, per rank.
    pub buffer_steps: usize,
    /// vLLM's PUB high-water mark; accepted, but the pure-Rust ZMQ socket has no such limit
    /// to set (a slow subscriber's queue is the library's own).
    pub hwm: usize,
    /// Batches queued between the engine thread and the sending task, per rank; beyond it a
    /// batch is dropped (vLLM's queue blocks the scheduler instead).
    pub max_queue_size: usize,
    /// First frame of every message; subscribers filter on it.
    pub topic: String,
}

/// vLLM's `publisher` values.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    Null,
    Zmq,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        KvEventsConfig {
            enable_kv_cache_events: false,
            publisher: None,
            endpoint: "tcp://*:5557".into(),
            replay_endpoint: None,
            buffer_steps: 10_000,
            hwm: 100_000,
            max_queue_size: 100_000,
            topic: String::new(),
        }
    }
}

impl KvEventsConfig {
    /// Parses vLLM's JSON form (`--kv-events-config '{"enable_kv_cache_events": true}'`).
    pub fn from_json(text: &str) -> Result<KvEventsConfig, KvEventsError> {
        let c: KvEventsConfig =
            serde_json::from_str(text).map_err(|e| KvEventsError::Config(e.to_string()))?;
        if c.max_queue_size == 0 {
            return Err(KvEventsError::Config(
                "max_queue_size must be at least 1".into(),
            ));
        }
        Ok(c)
    }

    /// The publisher in effect (vLLM's default rule when `publisher` is absent).
    pub fn publisher(&self) -> PublisherKind {
        self.publisher.unwrap_or(if self.enable_kv_cache_events {
            PublisherKind::Zmq
        } else {
            PublisherKind::Null
        })
    }

    /// Whether events are recorded and sent anywhere (vLLM's `EventPublisherFactory.create`
    /// returns the null publisher otherwise).
    pub fn publishes(&self) -> bool {
        self.enable_kv_cache_events && self.publisher() == PublisherKind::Zmq
    }
}

#[derive(Debug, Error)]
pub enum KvEventsError {
    #[error("invalid --kv-events-config: {0}")]
    Config(String),
    #[error("invalid KV events endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("KV events socket on {endpoint}: {source}")]
    Socket {
        endpoint: String,
        source: zeromq::ZmqError,
    },
}

/// vLLM's `offset_endpoint_port`: rank 0 keeps the endpoint; rank r > 0 adds r to a TCP port,
/// or appends `_dp{r}` to an `inproc` name.
pub fn offset_endpoint_port(endpoint: &str, rank: usize) -> Result<String, KvEventsError> {
    if endpoint.is_empty() || rank == 0 {
        return Ok(endpoint.to_string());
    }
    if endpoint.contains("inproc") {
        return Ok(format!("{endpoint}_dp{rank}"));
    }
    if endpoint.contains("tcp") {
        let Some((base, port)) = endpoint.rsplit_once(':') else {
            return Ok(endpoint.to_string());
        };
        let port: usize = port.parse().map_err(|_| KvEventsError::Endpoint {
            endpoint: endpoint.into(),
            reason: "the port is not a number".into(),
        })?;
        return Ok(format!("{base}:{}", port + rank));
    }
    Err(KvEventsError::Endpoint {
        endpoint: endpoint.into(),
        reason: "must contain 'inproc' or 'tcp'".into(),
    })
}

/// Whether vLLM binds `endpoint` (else it connects): a wildcard host, `::`, or a local
/// transport.
pub fn binds(endpoint: &str) -> bool {
    endpoint.contains('*')
        || endpoint.contains("::")
        || endpoint.starts_with("ipc://")
        || endpoint.starts_with("inproc://")
}

/// The address the ZMQ library understands: libzmq's `*` wildcard host is `0.0.0.0` here.
fn socket_address(endpoint: &str) -> String {
    endpoint.replace("tcp://*:", "tcp://0.0.0.0:")
}

/// The integer vLLM publishes for a block hash (`maybe_convert_block_hash`: the digest read
/// big-endian, masked to 64 bits, i.e. its low 64 bits).
pub fn external_hash(h: BlockHash) -> u64 {
    h.0 as u64
}

/// One engine run's events, stamped on the engine thread.
#[derive(Debug)]
struct Batch {
    /// Wall-clock Unix time, seconds (vLLM's `time.time()`).
    ts: f64,
    events: Vec<KvCacheEvent>,
}

/// Encodes a `KVEventBatch` as msgspec does (see the module docs).
pub fn encode_batch(ts: f64, events: &[KvCacheEvent], rank: usize) -> Vec<u8> {
    use rmp::encode::{write_array_len, write_f64, write_nil, write_str, write_uint};
    // Writing to a Vec cannot fail.
    fn opt_hash(out: &mut Vec<u8>, h: Option<BlockHash>) {
        match h {
            Some(h) => {
                let _ = write_uint(out, external_hash(h));
            }
            None => {
                let _ = write_nil(out);
            }
        }
    }
    fn hashes(out: &mut Vec<u8>, hs: &[BlockHash]) {
        let _ = write_array_len(out, hs.len() as u32);
        for &h in hs {
            let _ = write_uint(out, external_hash(h));
        }
    }
    fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => {
                let _ = write_str(out, s);
            }
            None => {
                let _ = write_nil(out);
            }
        }
    }
    let mut out = Vec::with_capacity(64 + events.len() * 64);
    let _ = write_array_len(&mut out, 3);
    let _ = write_f64(&mut out, ts);
    let _ = write_array_len(&mut out, events.len() as u32);
    for e in events {
        match e {
            KvCacheEvent::BlockStored {
                block_hashes,
                parent_block_hash,
                token_ids,
                block_size,
                lora_id,
                medium,
            } => {
                let _ = write_array_len(&mut out, 9);
                let _ = write_str(&mut out, "BlockStored");
                hashes(&mut out, block_hashes);
                opt_hash(&mut out, *parent_block_hash);
                let _ = write_array_len(&mut out, token_ids.len() as u32);
                for &t in token_ids {
                    let _ = write_uint(&mut out, u64::from(t));
                }
                let _ = write_uint(&mut out, *block_size as u64);
                match lora_id {
                    Some(id) => {
                        let _ = write_uint(&mut out, *id);
                    }
                    None => {
                        let _ = write_nil(&mut out);
                    }
                }
                opt_str(&mut out, *medium);
                // lora_name (llm-emu serves no adapters), then extra_keys (not exposed: the
                // only extra key llm-emu hashes is the first block's cache salt).
                let _ = write_nil(&mut out);
                let _ = write_nil(&mut out);
            }
            KvCacheEvent::BlockRemoved {
                block_hashes,
                medium,
            } => {
                let _ = write_array_len(&mut out, 3);
                let _ = write_str(&mut out, "BlockRemoved");
                hashes(&mut out, block_hashes);
                opt_str(&mut out, *medium);
            }
            KvCacheEvent::AllBlocksCleared => {
                let _ = write_array_len(&mut out, 1);
                let _ = write_str(&mut out, "AllBlocksCleared");
            }
        }
    }
    let _ = write_uint(&mut out, rank as u64);
    out
}

/// The engine thread's end of the publishers: one bounded queue per rank.
#[derive(Clone, Debug)]
pub struct KvEventSender {
    queues: Vec<mpsc::Sender<Batch>>,
    dropped: Arc<AtomicU64>,
}

impl KvEventSender {
    /// Queues one run's events of engine `rank` (nothing when `events` is empty, as vLLM
    /// publishes only non-empty batches). Never blocks: a full queue drops the batch.
    pub fn publish(&self, rank: usize, events: Vec<KvCacheEvent>) {
        if events.is_empty() {
            return;
        }
        let Some(q) = self.queues.get(rank) else {
            return;
        };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if q.try_send(Batch { ts, events }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Batches dropped because a rank's queue was full or its task had ended.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Opens one PUB socket (and replay ROUTER socket if configured) per rank and starts the
/// tasks that send on them (inside a tokio runtime). The tasks end once every
/// [`KvEventSender`] is dropped and their queues are sent. Returns each rank's endpoint as
/// opened, for the startup log.
pub async fn start(
    config: &KvEventsConfig,
    ranks: usize,
) -> Result<(KvEventSender, Vec<String>), KvEventsError> {
    let mut queues = Vec::with_capacity(ranks);
    let mut described = Vec::with_capacity(ranks);
    for rank in 0..ranks {
        let endpoint = offset_endpoint_port(&config.endpoint, rank)?;
        let (pub_sock, connect_to, where_) = open_pub(&endpoint).await?;
        let replay = match &config.replay_endpoint {
            Some(e) => {
                let e = offset_endpoint_port(e, rank)?;
                let mut r = zeromq::RouterSocket::new();
                r.bind(&socket_address(&e))
                    .await
                    .map_err(|source| KvEventsError::Socket {
                        endpoint: e.clone(),
                        source,
                    })?;
                Some(r)
            }
            None => None,
        };
        described.push(where_);
        let (tx, rx) = mpsc::channel(config.max_queue_size);
        queues.push(tx);
        let task = RankTask {
            rank,
            topic: Bytes::from(config.topic.clone().into_bytes()),
            replay,
            buffer: VecDeque::new(),
            buffer_steps: config.buffer_steps,
            next_seq: 0,
        };
        tokio::spawn(task.run(pub_sock, connect_to, rx));
    }
    Ok((
        KvEventSender {
            queues,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        described,
    ))
}

/// A PUB socket for `endpoint`, bound now when vLLM would bind it; else the address its task
/// connects to in the background (libzmq connects asynchronously and retries: the server must
/// not wait for its subscriber). Also where it publishes, for the log.
async fn open_pub(
    endpoint: &str,
) -> Result<(zeromq::PubSocket, Option<String>, String), KvEventsError> {
    let mut options = zeromq::SocketOptions::default();
    options.no_connect_timeout();
    let mut s = zeromq::PubSocket::with_options(options);
    let addr = socket_address(endpoint);
    if binds(endpoint) {
        let ep = s
            .bind(&addr)
            .await
            .map_err(|source| KvEventsError::Socket {
                endpoint: endpoint.to_string(),
                source,
            })?;
        Ok((s, None, format!("{ep} (bound)")))
    } else {
        Ok((s, Some(addr), format!("{endpoint} (connecting)")))
    }
}

/// One rank's sender: encodes, numbers and sends its batches, keeps them for replay.
struct RankTask {
    rank: usize,
    topic: Bytes,
    replay: Option<zeromq::RouterSocket>,
    /// The last `buffer_steps` (sequence number, payload) pairs.
    buffer: VecDeque<(u64, Bytes)>,
    buffer_steps: usize,
    next_seq: u64,
}

impl RankTask {
    /// Sends until the engine side is gone. With `connect_to`, connects first, meanwhile
    /// numbering and buffering batches that reach no one (as a PUB socket without
    /// subscribers drops them).
    async fn run(
        mut self,
        mut pub_sock: zeromq::PubSocket,
        connect_to: Option<String>,
        mut rx: mpsc::Receiver<Batch>,
    ) {
        if let Some(addr) = connect_to {
            let mut connecting = std::pin::pin!(pub_sock.connect(&addr));
            loop {
                let replaying = self.replay.is_some();
                tokio::select! {
                    r = &mut connecting => {
                        if let Err(e) = r {
                            eprintln!("llm-emu serve: KV events cannot connect to {addr}: {e}");
                        }
                        break;
                    }
                    batch = rx.recv() => match batch {
                        Some(b) => {
                            self.number(b);
                        }
                        None => return,
                    },
                    request = recv_replay(&mut self.replay), if replaying => {
                        if let Some(frames) = request {
                            self.answer_replay(frames).await;
                        }
                    }
                }
            }
        }
        loop {
            let replaying = self.replay.is_some();
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => {
                        let (seq, payload) = self.number(b);
                        let frames = vec![
                            self.topic.clone(),
                            Bytes::copy_from_slice(&seq.to_be_bytes()),
                            payload,
                        ];
                        if let Ok(msg) = ZmqMessage::try_from(frames) {
                            // Without subscribers a PUB socket discards; a send error is not
                            // the engine's concern either.
                            let _ = pub_sock.send(msg).await;
                        }
                    }
                    None => break,
                },
                request = recv_replay(&mut self.replay), if replaying => {
                    if let Some(frames) = request {
                        self.answer_replay(frames).await;
                    }
                }
            }
        }
    }

    /// Encodes a batch, gives it the next sequence number and keeps it for replay.
    fn number(&mut self, batch: Batch) -> (u64, Bytes) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let payload = Bytes::from(encode_batch(batch.ts, &batch.events, self.rank));
        if self.buffer_steps > 0 {
            if self.buffer.len() == self.buffer_steps {
                self.buffer.pop_front();
            }
            self.buffer.push_back((seq, payload.clone()));
        }
        (seq, payload)
    }

    /// vLLM's `_service_replay`: `[identity, "", start seq]` asks for every buffered batch
    /// from that sequence number, each sent as `[identity, "", seq, payload]`, then the end
    /// marker `[identity, "", -1, ""]`.
    async fn answer_replay(&mut self, frames: Vec<Bytes>) {
        let (id, start) = match frames.as_slice() {
            [id, _, start] | [id, start] => (id.clone(), start),
            _ => return,
        };
        let Ok(start) = <[u8; 8]>::try_from(start.as_ref()) else {
            return;
        };
        let start = u64::from_be_bytes(start);
        let Some(router) = self.replay.as_mut() else {
            return;
        };
        for (seq, payload) in self.buffer.iter().filter(|(s, _)| *s >= start) {
            let frames = vec![
                id.clone(),
                Bytes::new(),
                Bytes::copy_from_slice(&seq.to_be_bytes()),
                payload.clone(),
            ];
            if let Ok(msg) = ZmqMessage::try_from(frames) {
                let _ = router.send(msg).await;
            }
        }
        let end = vec![
            id,
            Bytes::new(),
            Bytes::copy_from_slice(&END_SEQ),
            Bytes::new(),
        ];
        if let Ok(msg) = ZmqMessage::try_from(end) {
            let _ = router.send(msg).await;
        }
    }
}

/// The next replay request's frames (`None` on a receive error).
async fn recv_replay(router: &mut Option<zeromq::RouterSocket>) -> Option<Vec<Bytes>> {
    match router {
        Some(r) => r.recv().await.ok().map(|m| m.into_vec()),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_emu_core::kv::MEDIUM_GPU;

    #[test]
    fn config_defaults_follow_vllm() {
        let c = KvEventsConfig::from_json(r#"{"enable_kv_cache_events": true}"#).unwrap();
        assert_eq!(c.publisher(), PublisherKind::Zmq);
        assert_eq!(c.endpoint, "tcp://*:5557");
        assert!(c.publishes());
        let off = KvEventsConfig::from_json("{}").unwrap();
        assert_eq!(off.publisher(), PublisherKind::Null);
        assert!(!off.publishes());
        let null =
            KvEventsConfig::from_json(r#"{"enable_kv_cache_events": true, "publisher": "null"}"#)
                .unwrap();
        assert!(!null.publishes());
        assert!(KvEventsConfig::from_json(r#"{"enable_kv_events": true}"#).is_err());
        assert!(KvEventsConfig::from_json(r#"{"publisher": "kafka"}"#).is_err());
    }

    #[test]
    fn endpoints_are_offset_per_rank_as_vllm_does() {
        assert_eq!(
            offset_endpoint_port("tcp://*:5557", 0).unwrap(),
            "tcp://*:5557"
        );
        assert_eq!(
            offset_endpoint_port("tcp://*:5557", 2).unwrap(),
            "tcp://*:5559"
        );
        assert_eq!(
            offset_endpoint_port("inproc://cache", 1).unwrap(),
            "inproc://cache_dp1"
        );
        assert!(offset_endpoint_port("udp://x:1", 1).is_err());
        assert!(binds("tcp://*:5557"));
        assert!(!binds("tcp://127.0.0.1:5557"));
    }

    #[test]
    fn a_batch_encodes_as_msgspec_tagged_arrays() {
        let h = BlockHash((7u128 << 64) | 0x0102);
        let events = vec![
            KvCacheEvent::BlockStored {
                block_hashes: vec![h],
                parent_block_hash: None,
                token_ids: vec![1, 300],
                block_size: 2,
                lora_id: None,
                medium: Some(MEDIUM_GPU),
            },
            KvCacheEvent::BlockRemoved {
                block_hashes: vec![h],
                medium: Some(MEDIUM_GPU),
            },
            KvCacheEvent::AllBlocksCleared,
        ];
        let got = encode_batch(1.5, &events, 1);
        let mut want = vec![0x93, 0xcb];
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.push(0x93);
        // ["BlockStored", [0x0102], nil, [1, 300], 2, nil, "GPU", nil, nil]
        want.push(0x99);
        want.push(0xab);
        want.extend_from_slice(b"BlockStored");
        want.extend_from_slice(&[0x91, 0xcd, 0x01, 0x02, 0xc0, 0x92, 0x01, 0xcd, 0x01, 0x2c]);
        want.extend_from_slice(&[0x02, 0xc0, 0xa3]);
        want.extend_from_slice(b"GPU");
        want.extend_from_slice(&[0xc0, 0xc0]);
        // ["BlockRemoved", [0x0102], "GPU"]
        want.extend_from_slice(&[0x93, 0xac]);
        want.extend_from_slice(b"BlockRemoved");
        want.extend_from_slice(&[0x91, 0xcd, 0x01, 0x02, 0xa3]);
        want.extend_from_slice(b"GPU");
        // ["AllBlocksCleared"], then the rank.
        want.extend_from_slice(&[0x91, 0xb0]);
        want.extend_from_slice(b"AllBlocksCleared");
        want.push(0x01);
        assert_eq!(got, want);
    }
}
