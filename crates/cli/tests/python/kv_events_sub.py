"""Subscribes to llm-emu's KV cache events and decodes them as vLLM 0.19's consumers do.

Binds a ZMQ SUB socket on 127.0.0.1 (an OS-chosen port, printed as `PORT n`; vLLM's import may log to stdout before it), then
decodes each `[topic, seq, payload]` message with msgspec into `KVEventBatch`: vLLM's own class
(`vllm.distributed.kv_events`) with `--vllm`, else the mirror below, field for field the same.
Each decoded batch is encoded again and must give the payload's exact bytes. Stops once it has
seen a `BlockStored` and a `BlockRemoved` (or on timeout) and prints `SUMMARY {json}`.
"""

import json
import sys
import time

import msgspec
import zmq

if "--vllm" in sys.argv:
    from vllm.distributed.kv_events import (  # noqa: E402
        AllBlocksCleared,
        BlockRemoved,
        BlockStored,
        KVEventBatch,
    )

    SOURCE = "vllm"
else:
    SOURCE = "mirror"

    class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
        ts: float
        events: list
        data_parallel_rank: int | None = None

    class KVCacheEvent(
        msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True
    ):
        pass

    class BlockStored(KVCacheEvent):
        block_hashes: list[bytes | int]
        parent_block_hash: bytes | int | None
        token_ids: list[int]
        block_size: int
        lora_id: int | None
        medium: str | None
        lora_name: str | None
        extra_keys: list[tuple | None] | None = None

    class BlockRemoved(KVCacheEvent):
        block_hashes: list[bytes | int]
        medium: str | None

    class AllBlocksCleared(KVCacheEvent):
        pass

    class KVEventBatch(EventBatch):
        events: list[BlockStored | BlockRemoved | AllBlocksCleared]


def main() -> None:
    topic = sys.argv[1].encode()
    timeout_s = float(sys.argv[2])
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    print(f"PORT {port}", flush=True)
    decoder = msgspec.msgpack.Decoder(type=KVEventBatch)
    encoder = msgspec.msgpack.Encoder()
    summary = {
        "source": SOURCE,
        "batches": 0,
        "seqs": [],
        "ranks": [],
        "stored": [],
        "removed": [],
        "cleared": 0,
        "reencoded_identical": True,
        "topics_ok": True,
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sub.poll(100):
            continue
        frames = sub.recv_multipart()
        if len(frames) != 3:
            raise SystemExit(f"expected 3 frames, got {len(frames)}")
        got_topic, seq, payload = frames
        summary["topics_ok"] &= got_topic == topic
        summary["seqs"].append(int.from_bytes(seq, "big"))
        batch = decoder.decode(payload)
        summary["batches"] += 1
        summary["ranks"].append(batch.data_parallel_rank)
        again = encoder.encode(batch)
        if again != payload and summary["reencoded_identical"]:
            summary["reencoded_identical"] = False
            summary["first_mismatch"] = [payload.hex(), again.hex()]
        for e in batch.events:
            if isinstance(e, BlockStored):
                summary["stored"].append(
                    {
                        "block_hashes": e.block_hashes,
                        "parent_block_hash": e.parent_block_hash,
                        "token_ids": e.token_ids,
                        "block_size": e.block_size,
                        "lora_id": e.lora_id,
                        "medium": e.medium,
                        "lora_name": e.lora_name,
                    }
                )
            elif isinstance(e, BlockRemoved):
                summary["removed"].append(
                    {"block_hashes": e.block_hashes, "medium": e.medium}
                )
            elif isinstance(e, AllBlocksCleared):
                summary["cleared"] += 1
        if summary["stored"] and summary["removed"]:
            break
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
